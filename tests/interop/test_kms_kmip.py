"""The kmip KMS provider against a real KMIP server (PyKMIP 0.10, kmiputil.KmipServer) over mutual
TLS.

The provider itself is driven by the unit test binary's kms_kmip_live (tests/unit/
test_kms_kmip.c), which runs only when SLUICE_TEST_KMIP_* point it at a server: Create +
Activate, Get Attributes, Encrypt/Decrypt with AES-GCM and the caller's context as AAD (tamper and
wrong-context cases), Revoke + Destroy."""
import os
import subprocess
from pathlib import Path

import pytest

import tlsutil
from conftest import SLUICE_BIN
from kmiputil import KmipServer

# The unit test binary of the same build as the broker under test (ASan by default).
UNIT_TESTS = Path(SLUICE_BIN).parent / "unit_tests"
if not UNIT_TESTS.exists():
    UNIT_TESTS = Path(__file__).resolve().parents[2] / "build" / "asan" / "unit_tests"


@pytest.fixture
def kmip(tmp_path):
    s = KmipServer(tmp_path)
    s.start()
    yield s
    s.kill()  # SIGTERM takes PyKMIP ~10 s (its accept loop's timeout); nothing to keep


def need_unit_tests():
    if not os.access(UNIT_TESTS, os.X_OK):
        pytest.fail(f"{UNIT_TESTS} missing (build it: make asan)")


def live_env(server, cert=None, key=None, ca=None, extra=None):
    """The environment that points kms_kmip_live & co. at `server`."""
    env = dict(os.environ)
    env.update({"SLUICE_TEST_KMIP_ENDPOINT": server.endpoint,
                "SLUICE_TEST_KMIP_CA": str(ca or server.ca_file),
                "SLUICE_TEST_KMIP_CERT": str(cert or server.client_cert),
                "SLUICE_TEST_KMIP_KEY": str(key or server.client_key)})
    env.update(extra or {})
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def run_live(server, cert=None, key=None, ca=None, test="kms_kmip_live", extra=None,
             timeout=120):
    need_unit_tests()
    env = live_env(server, cert, key, ca, extra)
    r = subprocess.run([str(UNIT_TESTS), test], env=env, capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_provider_round_trip_against_pykmip(kmip):
    rc, out = run_live(kmip)
    assert rc == 0 and "1 passed, 0 failed" in out and "kmip live: ok" in out, \
        out + "\n" + kmip.tail()
    assert "state=Active algorithm=AES length=256" in out, out
    # PyKMIP speaks TLS 1.2 only and prefers CBC suites; the provider offers only AEAD ones.
    assert "tls=TLSv1.2 cipher=ECDHE-ECDSA-AES128-GCM-SHA256" in out \
        or "tls=TLSv1.2 cipher=ECDHE-ECDSA-AES256-GCM-SHA384" in out, out
    # What the server saw: the operations the provider is documented to use, at KMIP 1.4.
    log = kmip.log_text()
    for op in ("Create", "Activate", "Encrypt", "Decrypt", "GetAttributes", "Revoke", "Destroy"):
        assert f"Processing operation: {op}" in log, (op, kmip.tail())


def test_untrusted_client_certificate_refused(kmip, tmp_path):
    """mTLS is enforced: a client certificate from another CA gets no session, and the provider
    says so as an outage (SL_EKMS_UNAVAILABLE) naming the TLS failure."""
    rogue = tlsutil.CA("CN=Rogue CA,O=Elsewhere")
    cert, key = kmip.issue_client("sluice-broker", "rogue", ca=rogue)
    rc, out = run_live(kmip, cert=cert, key=key)
    assert rc != 0 and "1 failed" in out, out
    assert "SL_EKMS_UNAVAILABLE" in out, out
    assert "TLS handshake with " + kmip.endpoint + " failed: tlsv1 alert unknown ca" in out, out
    assert "kmip live: ok" not in out
    assert "Processing operation" not in kmip.log_text()


def test_untrusted_server_certificate_refused(kmip, tmp_path):
    """The provider verifies the server against sluice.kms.kmip.ca.file: a server whose
    certificate another CA signed is not talked to."""
    other = tlsutil.CA("CN=Other CA,O=Elsewhere").write(tmp_path / "other-ca.crt")
    rc, out = run_live(kmip, ca=other)
    assert rc != 0 and "SL_EKMS_UNAVAILABLE" in out, out
    assert f"certificate of {kmip.endpoint} not trusted" in out, out
    assert "Processing operation" not in kmip.log_text()


def test_provider_outage_and_recovery(kmip):
    """SIGSTOP (a hung server: TCP accepted, nothing answers) costs the kept connection and a new
    one each one sluice.kms.timeout.ms, reported as SL_EKMS_UNAVAILABLE; after SIGCONT the same
    provider object reconnects and unwraps again. Signals are sent by the C test itself
    (kms_kmip_outage) so they fall exactly between its calls."""
    rc, out = run_live(kmip, test="kms_kmip_outage", extra={"SLUICE_TEST_KMIP_PID":
                                                             str(kmip.proc.pid)})
    kmip.resume()  # whatever happened, never leave it stopped
    assert rc == 0 and "kmip outage: ok" in out and "1 passed, 0 failed" in out, out
    assert "kept connection: SL_EKMS_UNAVAILABLE" in out, out
    assert "new connection: SL_EKMS_UNAVAILABLE" in out and "timed out" in out, out
    assert "resumed server: SL_OK" in out, out
    assert 'msg="kmip server unreachable"' in out and 'msg="kmip server reachable again"' in out, out


def test_provider_reconnects_after_server_restart(kmip, tmp_path):
    """The server is killed and started again between two calls of one provider object: the
    first call afterwards succeeds (the dead kept connection is noticed and replaced) and the
    key created before the restart still unwraps (PyKMIP's database outlives it)."""
    need_unit_tests()
    flag = tmp_path / "restarted"
    p = subprocess.Popen([str(UNIT_TESTS), "kms_kmip_restart"],
                         env=live_env(kmip, extra={"SLUICE_TEST_KMIP_RESTARTED": str(flag)}),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if "kmip restart: ready" in line:
                kmip.kill()
                kmip.start()
                flag.touch()
                break
        lines += p.stdout.readlines()
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines)
    assert rc == 0 and "kmip restart: ok" in out and "1 passed, 0 failed" in out, \
        out + kmip.tail()
    assert "first call after the restart: SL_OK" in out, out
    assert "kmip server unreachable" not in out, out
