"""The kmip KMS provider against a real KMIP server (PyKMIP 0.10, kmiputil.KmipServer) over mutual
TLS.

The provider itself is driven by the unit test binary's kms_kmip_live (tests/unit/
test_kms_kmip.c), which runs only when SLUICE_TEST_KMIP_* point it at a server: Create +
Activate, Get Attributes, Encrypt/Decrypt with AES-GCM and the caller's context as AAD (tamper and
wrong-context cases), Revoke + Destroy."""
import os
import re
import subprocess
from pathlib import Path

import pytest

import tlsutil
from conftest import SLUICE_BIN, Broker, finish_broker, transient_errors, wait_until
from helpers import by_partition, ck_consume, ck_create_topic, ck_produce, make_records, verify
from kmiputil import KmipServer
from test_keys_lifecycle import key_entry, status, topic_status

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


def test_server_certificate_for_another_name_refused(tmp_path):
    """The server's certificate is signed by the trusted CA but names another host: refused (the
    endpoint's host, here an IP literal, is checked against the certificate)."""
    s = KmipServer(tmp_path, server_dns="kms.example")
    s.start()
    try:
        rc, out = run_live(s)
    finally:
        s.kill()
    assert rc != 0 and "SL_EKMS_UNAVAILABLE" in out, out
    assert f"certificate of {s.endpoint} not trusted: IP address mismatch" in out, out
    assert "Processing operation" not in s.log_text()


# ---- The broker under sluice.kms.provider=kmip ----------------------------------------------

MARKER = b"kmip-marker-5e1d"


def kmip_broker(tmp_path, server, extra=None, cert=None, key=None):
    cfg = server.broker_config(cert, key)
    cfg.update({"sluice.kms.timeout.ms": 2000,
                "sluice.kms.keyring.file": str(tmp_path / "keyring")})
    cfg.update(extra or {})
    (tmp_path / "broker").mkdir(exist_ok=True)
    return Broker(tmp_path / "broker", cfg)


def files_holding(root, needle):
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]


def ops_seen(server):
    return re.findall(r"Processing operation: (\w+)", server.log_text())


def marked(tag, n, partitions):
    recs = make_records(tag, n, partitions=partitions)
    return [r if i % 5 else type(r)(r.partition, r.key, MARKER + (r.value or b""), r.headers,
                                    r.timestamp) for i, r in enumerate(recs)]


def try_create(bootstrap, topic):
    from confluent_kafka import KafkaException
    try:
        ck_create_topic(bootstrap, topic, partitions=1)
        return True
    except KafkaException as e:
        return "TOPIC_ALREADY_EXISTS" in str(e)
    except AssertionError:
        return False


@pytest.mark.timeout_s(300)
def test_broker_round_trip_under_kmip(tmp_path, kmip):
    """Produce through a broker whose KEK lives in PyKMIP, restart it (topic keys come back only
    through KMIP Decrypt), consume everything intact; the record text is nowhere on disk."""
    b = kmip_broker(tmp_path, kmip)
    try:
        b.start()
        assert "Create" in ops_seen(kmip) and "Activate" in ops_seen(kmip), kmip.tail()
        topic = "kmip-rt"
        ck_create_topic(b.bootstrap, topic, partitions=3)
        recs = marked("kmiprt", 600, 3)
        ck_produce(b.bootstrap, topic, recs)
        before = len(ops_seen(kmip))
        b.restart()
        got = ck_consume(b.bootstrap, topic, {p: len(v) for p, v in by_partition(recs).items()})
        verify(by_partition(recs), got, "after a restart under kmip")
        assert "Decrypt" in ops_seen(kmip)[before:], "no KMIP Decrypt at start\n" + kmip.tail()
        b.stop()
        assert not files_holding(b.data_dir, MARKER), "record text in clear on disk"
        assert not files_holding(tmp_path / "keyring", MARKER)
    finally:
        finish_broker(b)
    ops = ops_seen(kmip)
    assert "Encrypt" in ops and "Get" not in ops, ops  # the KEK is never read out


@pytest.mark.timeout_s(300)
def test_broker_with_untrusted_client_certificate(tmp_path, kmip):
    """mTLS is enforced by the server: a broker whose client certificate another CA signed gets
    no KMIP session; whatever the broker then does (refuse to start, or start without keys), it
    says why in one clear log line, writes nothing in clear, and the server ran no operation."""
    rogue = tlsutil.CA("CN=Rogue CA,O=Elsewhere")
    cert, key = kmip.issue_client("sluice-broker", "rogue", ca=rogue)
    b = kmip_broker(tmp_path, kmip, cert=cert, key=key)
    try:
        rc = b.start_may_fail()
        if rc is None:
            from confluent_kafka import KafkaException
            with pytest.raises((KafkaException, AssertionError)):
                ck_create_topic(b.bootstrap, "kmip-rogue", partitions=1)
                ck_produce(b.bootstrap, "kmip-rogue", marked("rogue", 10, 1), timeout=20)
        wait_until(lambda: "tlsv1 alert unknown ca" in b.log_text(), 30,
                   "the TLS refusal in the broker log")
        assert f"TLS handshake with {kmip.endpoint} failed" in b.log_text(), b.log_tail()
        if b.data_dir.exists():
            assert not files_holding(b.data_dir, MARKER)
    finally:
        finish_broker(b)
    assert not ops_seen(kmip), kmip.tail()


@pytest.mark.timeout_s(300)
@pytest.mark.parametrize("how", ["stopped", "terminated"])
def test_kmip_outage_cached_keys_serve_and_broker_recovers(tmp_path, kmip, how):
    """While the KMIP server is hung (SIGSTOP) or gone (killed), the topic whose key is cached
    keeps taking and serving records; a new topic needs the KMS and only works once it is back
    (same server, same database), without restarting the broker."""
    b = kmip_broker(tmp_path, kmip)
    try:
        b.start()
        ck_create_topic(b.bootstrap, "kmip-before", partitions=1)
        first = make_records("kmipout1", 100, partitions=1)
        ck_produce(b.bootstrap, "kmip-before", first)
        if how == "stopped":
            kmip.pause()
        else:
            kmip.kill()
        second = make_records("kmipout2", 100, partitions=1, seed=2)
        ck_produce(b.bootstrap, "kmip-before", second, timeout=60)
        verify({0: first + second}, ck_consume(b.bootstrap, "kmip-before", {0: 200}),
               "during the KMIP outage")
        # A new topic needs a new topic key wrapped by the KMS: refused (retriable) for now.
        assert not try_create(b.bootstrap, "kmip-during"), \
            "a topic needing a new key was created while the KMIP server was down\n" + b.log_tail()
        wait_until(lambda: 'msg="kmip server unreachable"' in b.log_text(), 30,
                   "the provider's outage line")
        assert b.alive(), b.log_tail()
        if how == "stopped":
            kmip.resume()
        else:
            kmip.start()
        wait_until(lambda: try_create(b.bootstrap, "kmip-after"), 60,
                   "a new topic once the KMIP server is back")
        third = make_records("kmipout3", 50, partitions=1, seed=3)
        ck_produce(b.bootstrap, "kmip-after", third)
        verify({0: third}, ck_consume(b.bootstrap, "kmip-after", {0: 50}), "after the outage")
        assert b.starts == 1
    finally:
        finish_broker(b)


@pytest.mark.timeout_s(300)
def test_broker_restarted_during_kmip_outage(tmp_path, kmip):
    """The broker restarts while the KMIP server is gone. Either it refuses to start, saying why
    (the topic registry is sealed under the system key, which only the KMS can unwrap), or it
    starts and serves nothing of the topic until the key can be unwrapped. Both ways, once the
    server is back every record is served, and nothing was served in clear meanwhile."""
    b = kmip_broker(tmp_path, kmip)
    try:
        b.start()
        ck_create_topic(b.bootstrap, "kmip-cold", partitions=1)
        recs = marked("kmipcold", 80, 1)
        ck_produce(b.bootstrap, "kmip-cold", recs)
        b.stop()
        kmip.kill()
        rc = b.start_may_fail()
        log = b.log_text().split("==== start #2")[-1]
        assert f"cannot connect to {kmip.endpoint}: Connection refused" in log, b.log_tail()
        if rc is None:
            assert _consume_all(b.bootstrap, "kmip-cold", 80) is None, \
                "records served while their key could not be unwrapped"
            kmip.start()
            got = wait_until(lambda: _consume_all(b.bootstrap, "kmip-cold", 80), 120,
                             "the topic served once the KMIP server is back")
            assert b.starts == 2
        else:
            assert rc != 0 and "key management service unreachable" in log, b.log_tail()
            kmip.start()
            b.start()
            got = ck_consume(b.bootstrap, "kmip-cold", {0: 80})
        verify({0: recs}, got, "after the KMIP server came back")
    finally:
        finish_broker(b)


def _consume_all(bootstrap, topic, n):
    """All `n` records of partition 0, or None when they cannot be read now."""
    try:
        return ck_consume(bootstrap, topic, {0: n}, timeout=10)
    except (AssertionError,) + transient_errors():
        return None


def keys_cli(b, *args):
    r = subprocess.run([b.binary, "keys", *args, "-c", str(b.config_path)], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert r.returncode == 0, f"sluice keys {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


@pytest.mark.timeout_s(300)
def test_key_lifecycle_under_kmip(tmp_path, kmip):
    """`sluice keys rotate` creates and activates KEK version 2 in the KMIP server, `rewrap`
    moves every topic key under it, `retire --version 1` revokes and destroys version 1 there;
    status describes the KEKs through Get Attributes, and after a restart (every topic key
    unwrapped under version 2 only) all records read back."""
    b = kmip_broker(tmp_path, kmip)
    try:
        b.start()
        ck_create_topic(b.bootstrap, "kmip-life", partitions=2)
        recs = marked("kmiplife", 200, 2)
        ck_produce(b.bootstrap, "kmip-life", recs)
        # Status describes each KEK version through Get Attributes.
        status = keys_cli(b, "status", "--json")
        assert re.search(r'"describe":"kmip [^"]* state=Active algorithm=AES length=256"',
                         status), status
        keys_cli(b, "rotate")
        keys_cli(b, "rewrap")
        keys_cli(b, "retire", "--version", "1")
        log = kmip.log_text()
        assert "sluice-kek-v2" in log or ops_seen(kmip).count("Create") == 2, kmip.tail()
        assert ops_seen(kmip).count("Activate") == 2 and "Revoke" in ops_seen(kmip) \
            and "Destroy" in ops_seen(kmip), ops_seen(kmip)
        b.restart()
        verify(by_partition(recs, 2), ck_consume(b.bootstrap, "kmip-life",
                                                 {p: len(v) for p, v in
                                                  by_partition(recs, 2).items()}),
               "after rotate, rewrap, retire and a restart under kmip")
    finally:
        finish_broker(b)
    assert "Get" not in ops_seen(kmip)


@pytest.mark.timeout_s(300)
def test_kmip_outage_uncached_keys_fail_retriably_and_recover(tmp_path, kmip):
    """Once the topic key and the data keys have left the cache (a 1 s TTL here), a KMS outage
    makes exactly the work that needs it fail, with the retriable KAFKA_STORAGE_ERROR (56) and
    the provider's log line: a produce that starts a new segment (every batch does, with 1 KiB
    segments: a new DEK, wrapped under the topic key) and a fetch of a segment whose DEK is no
    longer cached. Nothing is written in clear meanwhile, and when the KMS is back both work
    again without restarting the broker."""
    import kproto as kp
    b = kmip_broker(tmp_path, kmip, {"sluice.kms.cache.ttl.ms": 1000,
                                     "log.segment.bytes": 1024})
    big = MARKER + b"x" * 1500  # > log.segment.bytes: every append rolls a segment

    def produce_once(conn, tag):
        return kp.produce(conn, "evict", 0, kp.record_batch([(tag, big, [])]))[0]

    try:
        b.start()
        ck_create_topic(b.bootstrap, "evict", partitions=1)
        with kp.Conn(b.bootstrap) as c:
            assert produce_once(c, b"k0") == 0
            assert produce_once(c, b"k1") == 0
            kmip.pause()
            # Unused keys leave the cache after the TTL (the key service's tick evicts them).
            st = status(b)
            tid = topic_status(st, "evict")["id"]
            wait_until(lambda: not any(v["loaded"] for v in key_entry(status(b), tid)["versions"]),
                       60, "the topic key evicted from the cache")
            assert produce_once(c, b"kx") == 56, "a new data key was made without the KMS"
            assert kp.fetch(c, "evict", 0, 0)["error"] == 56, \
                "an uncached segment was read without the KMS"
            wait_until(lambda: 'msg="kmip server unreachable"' in b.log_text(), 30,
                       "the provider's outage line")
            assert b.alive(), b.log_tail()
            kmip.resume()
            wait_until(lambda: produce_once(c, b"k2") == 0, 90,
                       "a produce once the KMS is back")
            got = {}
            wait_until(lambda: got.update(kp.fetch(c, "evict", 0, 0)) or got["error"] == 0, 60,
                       "the old segment readable again")
            assert MARKER in got["records"]
        assert b.starts == 1
        b.stop()
        # Produced batches were sealed; refused ones were never written.
        assert not files_holding(b.data_dir, MARKER)
    finally:
        finish_broker(b)


@pytest.mark.timeout_s(300)
def test_auto_created_topic_gets_its_key_off_the_loop(tmp_path, kmip):
    """A topic auto-created on the loop (a produce to an unknown topic) under a network KMS is
    created without waiting for the KMS: its key is made by the key service's worker on first
    use, the client's retry of the retriable error delivers, and the records read back."""
    b = kmip_broker(tmp_path, kmip)
    try:
        b.start()
        recs = make_records("autokey", 20, partitions=1)
        ck_produce(b.bootstrap, "auto-kmip", recs, timeout=60)
        verify({0: recs}, ck_consume(b.bootstrap, "auto-kmip", {0: 20}), "auto-created topic")
        assert "Create" in ops_seen(kmip) or "Encrypt" in ops_seen(kmip)
        b.stop()
        assert not files_holding(b.data_dir, b"autokey-")
    finally:
        finish_broker(b)
