"""The provisioned secure default probed as an attacker on the network would (issue 10): what an
unauthenticated peer can learn (SCRAM server-first for real and unknown names), how much of the
broker it can take (TLS key-exchange groups, handshake floods, connection counts) and how much
log it can write (failed-login floods).

Every connection stays on 127.0.0.0/8; the "other address" is 127.0.0.2 (the client socket is
bound to it), which Linux routes over loopback."""
import base64
import os
import socket
import ssl
import subprocess
import time

import pytest

import kproto
from conftest import SLUICE_BIN, Broker, sanitizer_env, wait_until

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
SASL_AUTHENTICATION_FAILED = 58


# ---- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture
def secure(request, tmp_path):
    """The secure default: one SASL_SSL listener, no TLS material and no users given, so the
    broker provisions a CA, its certificate and the admin user on first start."""
    marker = request.node.get_closest_marker("broker_config")
    b = Broker(tmp_path)
    b.config = {"listeners": f"SASL_SSL://{b.bootstrap}", "log.dirs": str(b.data_dir),
                **{k: str(v) for k, v in (dict(marker.args[0]) if marker else {}).items()}}
    b.write_config()
    request.node._sluice_broker = b
    b.start()
    wait_until(lambda: (b.data_dir / "client.properties").exists(), 30, "provisioned files")
    b.ca_pem = b.data_dir / "ca.pem"
    yield b
    if b.alive():
        b.stop(check=True)
    else:
        b.assert_no_sanitizer_report()
        if not b.exit_expected:
            pytest.fail(f"broker died during the test\n{b.log_tail()}")


def props(path):
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def tls_context(ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the provisioned certificate names the host, we dial an IP
    return ctx


class TlsConn(kproto.Conn):
    """kproto.Conn over TLS, optionally from a chosen source address (127.0.0.x)."""

    def __init__(self, bootstrap, ca, source="127.0.0.1", timeout=15.0, ctx=None):
        self.timeout = timeout
        host, port = kproto.split_host_port(bootstrap)
        raw = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = (ctx or tls_context(ca)).wrap_socket(raw, server_hostname="localhost")
        self.corr = 0
        self._versions = None


def handshake(conn, mechanism):
    r = conn.call(SASL_HANDSHAKE, 1, kproto.Writer().string(mechanism).bytes())
    return r.i16()


def authenticate(conn, token):
    """SaslAuthenticate v1. Returns (error, message, bytes)."""
    r = conn.call(SASL_AUTHENTICATE, 1, len(token).to_bytes(4, "big") + token)
    err, msg = r.i16(), r.string()
    n = r.i32()
    return err, msg, (r.take(n) if n > 0 else b"")


def server_first(conn, mechanism, user):
    """SaslHandshake + client-first for `user`; returns the server-first attributes."""
    assert handshake(conn, mechanism) == 0
    bare = f"n={user},r={base64.b64encode(os.urandom(18)).decode()}"
    err, msg, data = authenticate(conn, b"n,," + bare.encode())
    assert err == 0, f"client-first for {user!r} refused: {err} {msg}"
    return dict(kv.split("=", 1) for kv in data.decode().split(","))


# ---- 2. SCRAM: real and unknown names look the same before login ------------------------------

@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_server_first_same_for_admin_added_and_unknown_users(secure, mechanism):
    """The provisioned admin, a user added with `sluice user add` (no --iterations) and unknown
    names get server-first messages of the same shape: same iteration count, same salt length
    (the admin used to answer i=8192 and every unknown name i=4096)."""
    res = subprocess.run([SLUICE_BIN, "user", "add", "bob", "--password-stdin", "-c",
                          str(secure.config_path)], input="bob-secret-pw\n", capture_output=True,
                         text=True, env=sanitizer_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    names = ["admin", "bob", "root", "kafka", "administrator", "nobody-" + os.urandom(4).hex()]
    seen = {}
    for name in names:
        with TlsConn(secure.bootstrap, secure.ca_pem) as c:
            a = server_first(c, mechanism, name)
        seen[name] = (int(a["i"]), len(base64.b64decode(a["s"])))
    assert len(set(seen.values())) == 1, f"server-first differs between names: {seen}"
    assert seen["admin"][0] >= 4096
    # Stable per name (a real salt is fixed; so is the mock's).
    with TlsConn(secure.bootstrap, secure.ca_pem) as c1, \
            TlsConn(secure.bootstrap, secure.ca_pem) as c2:
        assert server_first(c1, mechanism, "root")["s"] == server_first(c2, mechanism, "root")["s"]


@pytest.mark.broker_config({"sluice.sasl.scram.iterations": 8192})
def test_scram_mock_follows_configured_iterations(secure):
    """With another configured count, the admin, added users and the mock all use it."""
    res = subprocess.run([SLUICE_BIN, "user", "add", "bob", "--password-stdin", "-c",
                          str(secure.config_path)], input="bob-secret-pw\n", capture_output=True,
                         text=True, env=sanitizer_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    for name in ("admin", "bob", "ghost"):
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            with TlsConn(secure.bootstrap, secure.ca_pem) as c:
                a = server_first(c, mech, name)
            assert int(a["i"]) == 8192, f"{name} {mech}: i={a['i']}"
            assert len(base64.b64decode(a["s"])) == 32

# ---- 4. connection limits by default ------------------------------------------------------------

def test_default_per_ip_limit_refuses_excess_and_serves_other_address(broker):
    """Defaults only (no max.connections* keys): 100 connections from 127.0.0.1 are served, the
    next ones are closed at accept, and a client from 127.0.0.2 is served at once."""
    assert "max.connections" not in broker.config_path.read_text()
    held = []

    def open_one():
        c = kproto.Conn(broker.bootstrap)
        try:
            kproto.api_versions(c, 0)
        except (kproto.ProtoError, OSError):
            c.close()
            return False
        held.append(c)
        return True
    try:
        # The fixture's readiness probe may still count until the broker sees it close.
        for _ in range(100):
            wait_until(open_one, 10, "a served connection under the per-address default")
        for _ in range(3):
            extra = kproto.Conn(broker.bootstrap)
            assert extra.closed_by_peer(5), "a 101st connection from 127.0.0.1 was accepted"
            extra.close()
        t0 = time.monotonic()
        host, port = kproto.split_host_port(broker.bootstrap)
        other = kproto.Conn.__new__(kproto.Conn)
        other.sock = socket.create_connection((host, port), timeout=10,
                                              source_address=("127.0.0.2", 0))
        other.timeout, other.corr, other._versions = 10, 0, None
        assert kproto.api_versions(other, 0)[0] == kproto.NONE
        other.close()
        assert time.monotonic() - t0 < 2, "127.0.0.2 waited"
        log = broker.log_text()
        assert 'reason="max.connections.per.ip"' in log
        assert "connection limits" in log and "max.connections.per.ip=100" in log
    finally:
        for c in held:
            c.close()


# ---- 5. a flood of failed logins writes a bounded number of log lines ---------------------------

@pytest.mark.timeout_s(240)
@pytest.mark.broker_config({"connection.failed.authentication.delay.ms": 0,
                            "sasl.enabled.mechanisms": "PLAIN",
                            "sluice.sasl.plain.allow.insecure": True})
def test_failed_login_flood_writes_bounded_log(broker):
    """2000 failed PLAIN logins from 127.0.0.1 (no delay) write a few dozen lines, each kind of
    line at most SL_LOG_LIMIT_BURST times per 10 s window per address, then a summary with the
    count; the counts add up to every attempt."""
    import threading
    broker.stop()
    broker.config["listeners"] = f"SASL_PLAINTEXT://{broker.bootstrap}"
    broker.write_config()
    broker.start()
    before = len(broker.log_text().splitlines())
    n_threads, per_thread = 4, 500
    errors = []

    def worker():
        for _ in range(per_thread):
            try:
                with kproto.Conn(broker.bootstrap) as c:
                    assert handshake(c, "PLAIN") == 0
                    err, _, _ = authenticate(c, b"\0nobody\0wrong-password")
                    assert err == SASL_AUTHENTICATION_FAILED
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors, errors[:3]

    def accounted():
        lines = broker.log_text().splitlines()[before:]
        shown = sum('msg="authentication failed"' in ln for ln in lines)
        hidden = sum(int(ln.rsplit("suppressed=", 1)[1].split()[0]) for ln in lines
                     if 'msg="authentication failed (suppressed)"' in ln)
        return (shown + hidden == 2000) and lines
    lines = wait_until(accounted, 40, "summaries accounting for all 2000 failed logins")
    windows = int(elapsed // 10) + 2
    # authentication failed, connection closed: burst + one summary per window each.
    bound = windows * 2 * (10 + 1) + 10
    assert len(lines) <= bound, (f"{len(lines)} log lines for 2000 failed logins in "
                                 f"{elapsed:.1f} s (bound {bound})")
    assert any("suppressed=" in ln and "addr=127.0.0.1" in ln for ln in lines)
