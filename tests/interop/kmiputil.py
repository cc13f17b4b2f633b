"""A PyKMIP server (Debian python3-pykmip 0.10) for the kmip KMS provider's tests, owned by one
test: its own config, SQLite database, log and policy directory under the test's temp dir, on a
free loopback port, with certificates made here (tlsutil): an ECDSA P-256 CA, a server
certificate for 127.0.0.1 (PyKMIP's TLS 1.2 suites have no ECDHE-RSA-GCM, so EC it is) and a
client certificate carrying the clientAuth EKU, which PyKMIP insists on. The client's CN is its
KMIP identity and owns the keys it creates: keep one client certificate across broker restarts.

Never the defaults: /etc/pykmip/server.conf, /var/log/pykmip and /tmp/pykmip.database would be
shared between tests and runs."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import tlsutil
from conftest import free_port

PYKMIP_SERVER = "/usr/bin/pykmip-server"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0


class KmipServer:
    def __init__(self, workdir, client_cn="sluice-broker", server_dns=None):
        """`server_dns`: give the server a certificate for that DNS name only (no IP SAN), to
        check that clients verify the name."""
        self.dir = Path(workdir) / "kmip"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "policies").mkdir(exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.endpoint = f"{self.host}:{self.port}"
        self.ca = tlsutil.CA("CN=KMIP Test CA,O=Sluice Tests")
        self.ca_file = self.ca.write(self.dir / "ca.crt")
        if server_dns is None:
            cert, key = self.ca.issue("CN=127.0.0.1,O=Sluice Tests", server=True)
        else:
            cert, key = self._issue_server_for(server_dns)
        self.server_cert, self.server_key = tlsutil.write_cert_and_key(self.dir, "server", cert,
                                                                       key)
        self.client_cert, self.client_key = self.issue_client(client_cn, "client")
        self.log_path = self.dir / "server.log"
        self.out_path = self.dir / "server.out"
        self.conf_path = self.dir / "server.conf"
        self.conf_path.write_text(
            "[server]\n"
            f"hostname={self.host}\nport={self.port}\n"
            f"certificate_path={self.server_cert}\nkey_path={self.server_key}\n"
            f"ca_path={self.ca_file}\n"
            "auth_suite=TLS1.2\nenable_tls_client_auth=True\nlogging_level=DEBUG\n"
            f"database_path={self.dir / 'pykmip.db'}\n")
        self.proc = None

    def _issue_server_for(self, dns):
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
                .issuer_name(self.ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
                .sign(self.ca.key, hashes.SHA256()))
        return cert, key

    def issue_client(self, cn, stem, ca=None):
        """A client certificate (clientAuth EKU) signed by `ca` (default: the server's CA)."""
        cert, key = (ca or self.ca).issue(f"CN={cn},O=Sluice Tests", server=False)
        return tlsutil.write_cert_and_key(self.dir, stem, cert, key)

    def broker_config(self, cert=None, key=None):
        return {
            "sluice.kms.provider": "kmip",
            "sluice.kms.kmip.endpoint": self.endpoint,
            "sluice.kms.kmip.ca.file": str(self.ca_file),
            "sluice.kms.kmip.cert.file": str(cert or self.client_cert),
            "sluice.kms.kmip.key.file": str(key or self.client_key),
        }

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "KMIP server already running"
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [PYKMIP_SERVER, "-f", str(self.conf_path), "-l", str(self.log_path),
                 "-o", str(self.dir / "policies")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(self.dir),
                start_new_session=True)
        # Ready when the log says so for this start (a TCP probe would count as a failed TLS
        # session in its log).
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"pykmip-server exited with {self.proc.returncode}\n"
                                     + self.tail())
            text = self.log_text()[mark:]
            if f"Server successfully bound socket handler to {self.endpoint}" in text:
                return self
            if time.monotonic() >= deadline:
                raise AssertionError(f"pykmip-server not listening within {START_DEADLINE_S}s\n"
                                     + self.tail())
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (SIGCONT first, in case a test stopped it), SIGKILL after a deadline; returns
        once the port is free again, so a restart can bind it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._wait_port_free()

    def kill(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._wait_port_free()

    def pause(self):
        """SIGSTOP: the kernel still accepts connections, nothing answers (a hung server)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def _wait_port_free(self):
        deadline = time.monotonic() + STOP_DEADLINE_S
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
            except OSError:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"port {self.port} still accepting after the server stopped")
            time.sleep(0.05)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=40):
        lines = self.log_text().splitlines()[-n:]
        try:
            out = self.out_path.read_text(errors="replace").splitlines()[-10:]
        except FileNotFoundError:
            out = []
        return ("--- pykmip-server log tail ---\n" + "\n".join(lines)
                + "\n--- pykmip-server stdout/stderr ---\n" + "\n".join(out))
