"""Built-in detections (src/guard, docs/detections.md) against a live SASL_PLAINTEXT broker with
raw-protocol SCRAM clients: a brute-force loop of wrong passwords from one address raises the
per-address and per-principal findings (the broker's log line) and, below the threshold, none;
with sluice.guard.block.seconds that address is refused at accept for the configured time while
a correct client from another address (source 127.0.0.2: every 127/8 address is the loopback
interface on Linux, so it reaches a listener on 127.0.0.1) authenticates and produces, and then
the first address is admitted again. The same client's first login from the second address and
its first read of a topic raise new_address and new_topic_read. The periodic checks, on a TLS
listener whose certificate expires in 10 days and a disk threshold no disk meets, raise
cert_expiry and disk_full once each."""
import base64
import os
import re
import socket
import time

import json
import urllib.request

import pytest

import kproto
import tlsutil
from conftest import Broker, finish_broker, wait_until
from test_sasl import add_user, authenticate, handshake, scram_final, scram_login

SASL_AUTHENTICATION_FAILED = 58
BLOCK_S = 3


class SourceConn(kproto.Conn):
    """A kproto connection from a chosen local address."""

    def __init__(self, bootstrap, source, timeout=15.0):
        self.timeout = timeout
        self.sock = socket.create_connection(kproto.split_host_port(bootstrap), timeout=timeout,
                                             source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0
        self._versions = None


def metric(b, name, **labels):
    """The value of one sample on the broker's metrics endpoint (0 when absent)."""
    from test_metrics import metrics_url
    body = urllib.request.urlopen(metrics_url(b) + "/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not want and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def trail_findings(b, rule):
    """Detection Findings (OCSF 2004) of `rule` in the audit trail's files."""
    out = []
    for f in sorted((b.data_dir / "audit").glob("sluice-audit-*.jsonl")):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            if e["class_uid"] == 2004 and rule in e["finding_info"]["types"]:
                out.append(e)
    return out


@pytest.fixture
def guard_broker(request, tmp_path):
    """A broker whose only listener is SASL_PLAINTEXT on 127.0.0.1, user alice/alice-secret,
    guard thresholds of 5 failures per address and per principal in a minute."""
    marker = request.node.get_closest_marker("broker_config")
    overrides = {"sluice.guard.auth.failures.per.address": 5,
                 "sluice.guard.auth.failures.per.principal": 5,
                 "sluice.guard.window.ms": 60000,
                 # Keep the guesses quick: the delay is what makes guessing slow in production.
                 "connection.failed.authentication.delay.ms": 10}
    overrides.update(dict(marker.args[0]) if marker else {})
    b = Broker(tmp_path, overrides)
    b.config["listeners"] = f"SASL_PLAINTEXT://{b.bootstrap}"
    b.write_config()
    b.data_dir.mkdir(parents=True, exist_ok=True)
    add_user(b, "alice", "alice-secret")
    request.node._sluice_broker = b
    b.start()
    yield b
    finish_broker(b)


def wrong_password(broker, source="127.0.0.1"):
    """One complete SCRAM exchange with a wrong password from `source`; asserts it failed."""
    with SourceConn(broker.bootstrap, source) as conn:
        assert handshake(conn, "SCRAM-SHA-256")[0] == 0
        bare = f"n=alice,r={base64.b64encode(os.urandom(18)).decode()}"
        err, _, server_first, _ = authenticate(conn, b"n,," + bare.encode())
        assert err == 0
        final, _ = scram_final("SCRAM-SHA-256", "alice", "not-the-password", bare,
                               server_first.decode())
        err, _, _, _ = authenticate(conn, final)
        assert err == SASL_AUTHENTICATION_FAILED


def login(broker, source):
    conn = SourceConn(broker.bootstrap, source)
    err, msg, _ = scram_login(conn, "alice", "alice-secret")
    assert err == 0, f"login from {source} failed: {err} {msg}"
    return conn


def findings(broker, rule):
    """The guard's log lines for `rule`, as {key: value} dicts."""
    out = []
    for line in broker.log_text().splitlines():
        if 'sub=guard msg="detection"' in line and f" rule={rule} " in line:
            out.append(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line)))
    return out


def admitted(broker, source):
    """True when a connection from `source` is served (ApiVersions answered), False when the
    broker closes it at accept."""
    with SourceConn(broker.bootstrap, source) as conn:
        try:
            kproto.api_versions(conn, 0)
            return True
        except (kproto.ProtoError, OSError):
            return False


@pytest.mark.timeout_s(120)
def test_bruteforce_raises_findings_at_threshold(guard_broker):
    b = guard_broker
    for _ in range(4):
        wrong_password(b)
    # The failure is reported before its answer goes out: below the threshold, nothing.
    assert findings(b, "auth_bruteforce_address") == []
    assert findings(b, "auth_bruteforce_principal") == []
    wrong_password(b)
    by_addr = wait_until(lambda: findings(b, "auth_bruteforce_address"), 10,
                         "the auth_bruteforce_address finding in the log")
    assert len(by_addr) == 1
    assert by_addr[0]["subject"] == '"127.0.0.1"'
    assert by_addr[0]["value"] == "5" and by_addr[0]["threshold"] == "5"
    assert by_addr[0]["severity"] == "4"
    by_user = findings(b, "auth_bruteforce_principal")
    assert len(by_user) == 1 and by_user[0]["subject"] == '"alice"'
    # The same finding as a metric and as an OCSF Detection Finding in the audit trail.
    wait_until(lambda: metric(b, "sluice_detections_total", rule="auth_bruteforce_address") == 1,
               10, "sluice_detections_total{rule=auth_bruteforce_address} == 1")
    assert metric(b, "sluice_authentication_failures_total", mechanism="SCRAM-SHA-256",
                  listener="SASL_PLAINTEXT", reason="invalid credentials") >= 5
    found = wait_until(lambda: trail_findings(b, "auth_bruteforce_address"), 10,
                       "the finding in the audit trail")
    assert found[0]["evidences"][0]["data"]["subject"] == "127.0.0.1"
    assert found[0]["severity_id"] == 4
    # Not raised again within the window; nothing blocked without block.seconds.
    wrong_password(b)
    assert len(findings(b, "auth_bruteforce_address")) == 1
    assert findings(b, "address_blocked") == []
    login(b, "127.0.0.1").close()
    # No secret in what the guard logs.
    assert "not-the-password" not in b.log_text()
    assert "alice-secret" not in b.log_text()


@pytest.mark.timeout_s(120)
@pytest.mark.broker_config({"sluice.guard.block.seconds": BLOCK_S})
def test_block_refuses_address_for_block_seconds_only(guard_broker):
    b = guard_broker
    # 127.0.0.2 reaches the 127.0.0.1 listener (Linux loopback): a second client address. The
    # topic exists before the block, so what runs during it is quick.
    batch = kproto.record_batch([(b"k", b"v", [])])
    with login(b, "127.0.0.2") as conn:
        kproto.metadata(conn, ["guarded"], allow_auto=True)
        wait_until(lambda: kproto.produce(conn, "guarded", 0, batch)[0] == 0, 20,
                   "the topic created")
    for _ in range(4):
        wrong_password(b)
    assert admitted(b, "127.0.0.1"), "blocked below the threshold"
    t_before = time.monotonic()
    wrong_password(b)
    blocked = wait_until(lambda: findings(b, "address_blocked"), 10,
                         "the address_blocked finding in the log")
    assert blocked[0]["subject"] == '"127.0.0.1"'
    assert blocked[0]["block_ms"] == str(BLOCK_S * 1000)
    wait_until(lambda: trail_findings(b, "address_blocked"), 10, "address_blocked in the trail")
    wait_until(lambda: metric(b, "sluice_guard_blocked_addresses") == 1, 10,
               "sluice_guard_blocked_addresses == 1")
    # Refused at accept: the broker closes before answering anything.
    with SourceConn(b.bootstrap, "127.0.0.1") as conn:
        assert conn.closed_by_peer(5), "a blocked address was served"
    # The broker closes the socket before it writes the line: poll for it.
    wait_until(lambda: re.search(r'msg="connection refused" .*peer=127\.0\.0\.1:\d+ '
                                 r'reason="blocked"', b.log_text()), 10,
               "the refusal line for the blocked address")
    wait_until(lambda: metric(b, "sluice_connections_refused_total", listener="SASL_PLAINTEXT",
                              reason="blocked") >= 1, 10, "the refusal counted")

    # Another address is unaffected: it authenticates, produces and reads, while the first is
    # still refused (checked after, so all of it happened during the block).
    with login(b, "127.0.0.2") as conn:
        assert kproto.produce(conn, "guarded", 0, batch)[0] == 0
        got = kproto.fetch(conn, "guarded", 0, 0)
        assert got["error"] == 0 and got["high_watermark"] == 2
    assert not admitted(b, "127.0.0.1"), "the block ended before the other client was done"

    # Admitted again once block.seconds have passed, not before, and by the refusal check
    # itself, not only by the periodic sweep of expired blocks (every 10 s).
    wait_until(lambda: admitted(b, "127.0.0.1"), t_before + BLOCK_S + 3 - time.monotonic(),
               "127.0.0.1 admitted again")
    assert time.monotonic() - t_before >= BLOCK_S
    login(b, "127.0.0.1").close()
    assert len(findings(b, "address_blocked")) == 1

    # The second address and the first read were new for alice.
    news = findings(b, "new_address")
    assert [f["subject"] for f in news] == ['"User:alice"'], news
    reads = findings(b, "new_topic_read")
    assert '"guarded"' in [f["subject"] for f in reads], reads


@pytest.mark.timeout_s(120)
def test_periodic_checks_certificate_and_disk(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True, days=10)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    b = Broker(tmp_path, {"ssl.keystore.location": d / "broker.pem",
                          "ssl.truststore.location": d / "ca.pem",
                          "sluice.guard.cert.expiry.days": 30,
                          # No disk has 100 % free: the check must fire on the real statvfs.
                          "sluice.guard.disk.free.min.percent": 100})
    b.config["listeners"] = f"SSL://{b.bootstrap}"
    b.write_config()
    try:
        b.start()
        cert_f = wait_until(lambda: findings(b, "cert_expiry"), 15, "the cert_expiry finding")
        assert cert_f[0]["subject"] == '"SSL"'
        assert 9.0 < float(cert_f[0]["value"]) <= 10.0, cert_f
        assert cert_f[0]["threshold"] == "30"
        disk_f = wait_until(lambda: findings(b, "disk_full"), 15, "the disk_full finding")
        assert disk_f[0]["subject"] == f'"{b.data_dir}"'
        assert float(disk_f[0]["value"]) < 100
    finally:
        finish_broker(b)
