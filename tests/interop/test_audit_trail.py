"""The audit trail (docs/audit.md): a broker with the default audit settings records a produce and
a consume as OCSF lines that validate against tests/interop/ocsf/*.json, in a 0700 directory of
0600 files, without any record payload; `sluice audit verify` accepts the untouched trail and
names the first bad event after each kind of tampering. With the file sink failing (an
LD_PRELOAD shim makes writes under the audit directory fail with ENOSPC), the `block` policy
refuses produce with a retriable KAFKA_STORAGE_ERROR until writes succeed again, and the
`continue` policy keeps serving and counts the events it drops. The syslog sink sends RFC 5424
lines to a local datagram socket."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest

import helpers as h
import kproto as kp
from conftest import SLUICE_BIN, Broker, wait_until

OCSF_DIR = os.path.join(os.path.dirname(__file__), "ocsf")
SHIM_SRC = os.path.join(os.path.dirname(__file__), "shim", "write_fail.c")
SECRET = b"do-not-log-this-payload"
KAFKA_STORAGE_ERROR = 56


def workdir(tmp_path):
    d = tmp_path / "b"
    d.mkdir(exist_ok=True)
    return d


def trail_files(data_dir):
    d = data_dir / "audit"
    return sorted(d.glob("sluice-audit-*.jsonl"))


def events(data_dir):
    out = []
    for f in trail_files(data_dir):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


def verify(paths, pubkey, *extra):
    r = subprocess.run([SLUICE_BIN, "audit", "verify", "--pubkey", str(pubkey), *extra,
                        *[str(p) for p in paths]],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def validate_schemas(evs):
    import jsonschema
    index = json.load(open(os.path.join(OCSF_DIR, "index.json")))["classes"]
    schemas = {}
    for e in evs:
        cls = str(e["class_uid"])
        assert cls in index, f"class {cls} has no schema"
        if cls not in schemas:
            schemas[cls] = jsonschema.Draft202012Validator(
                json.load(open(os.path.join(OCSF_DIR, index[cls]))))
        schemas[cls].validate(e)


def produce_consume(bootstrap, topic, n=5):
    h.ck_create_topic(bootstrap, topic, 1)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, SECRET + b"-%d" % i, key=b"secret-key", headers=[("h", b"secret-h")])
    assert p.flush(30) == 0
    got = h.ck_consume(bootstrap, topic, {0: n})
    assert len(got) == n


@pytest.fixture
def stopped_trail(tmp_path):
    """A broker with the default audit settings after a produce, a consume and a clean stop."""
    b = Broker(workdir(tmp_path))
    b.start()
    try:
        produce_consume(b.bootstrap, "audited")
    finally:
        b.stop(check=True)
    return b


def test_trail_records_and_verifies(stopped_trail, tmp_path):
    b = stopped_trail
    audit = b.data_dir / "audit"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o700
    files = trail_files(b.data_dir)
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    key = b.secrets_dir / "sluice-audit-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = b.secrets_dir / "sluice-audit-key.pem.pub"
    for f in files:
        raw = f.read_bytes()
        assert SECRET not in raw and b"secret-key" not in raw and b"secret-h" not in raw
    evs = events(b.data_dir)
    validate_schemas(evs)
    seqs = [e["metadata"]["sequence"] for e in evs]
    assert seqs == list(range(1, len(evs) + 1))
    codes = [e["metadata"]["event_code"] for e in evs]
    assert "produce" in codes and "consume" in codes and "management" in codes, codes
    prod = [e for e in evs if e["metadata"]["event_code"] == "produce"]
    assert sum(r["data"]["records"] for e in prod for r in e["resources"]
               if r["name"] == "audited") == 5
    assert evs[-1]["metadata"]["event_code"] == "checkpoint"
    assert evs[-1]["unmapped"]["checkpoint"]["reason"] == "stop"
    rc, out = verify([audit], pub)
    assert rc == 0, out
    # The default public key location is found without --pubkey.
    r = subprocess.run([SLUICE_BIN, "audit", "verify", str(audit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([SLUICE_BIN, "audit", "pubkey", "-c", str(b.config_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == pub.read_text(), r.stdout + r.stderr


def tampered(b, tmp_path, name, fn):
    """A copy of the trail with `fn(lines)` applied to the lines of its last file."""
    dst = tmp_path / name
    shutil.copytree(b.data_dir / "audit", dst)
    last = sorted(dst.glob("sluice-audit-*.jsonl"))[-1]
    lines = last.read_bytes().split(b"\n")[:-1]
    data = fn(lines)
    last.write_bytes(data if isinstance(data, bytes) else b"".join(x + b"\n" for x in data))
    return dst, last


def expect_failure(b, tmp_path, name, fn, what, line=None):
    d, last = tampered(b, tmp_path, name, fn)
    rc, out = verify([d], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 1, f"{name}: verify passed\n{out}"
    m = re.search(r"FAILED: (\S+):(\d+): sequence (-?\d+): (.*)", out)
    assert m, out
    assert m.group(1).endswith(last.name), out
    assert what in m.group(4), out
    if line is not None:
        assert int(m.group(2)) == line, out
    return out


def test_verify_names_tampering(stopped_trail, tmp_path):
    b = stopped_trail
    lines = (sorted((b.data_dir / "audit").glob("*.jsonl"))[-1]).read_bytes().split(b"\n")[:-1]
    assert len(lines) >= 6
    k = 2  # 0-based index of a line in the middle, not the last

    def edit(ls):
        ls = list(ls)
        i = ls[k].index(b'"time":') + 8
        ls[k] = ls[k][:i] + bytes([ls[k][i] ^ 1]) + ls[k][i + 1:]
        return ls
    expect_failure(b, tmp_path, "edited", edit, "edited", line=k + 1)
    expect_failure(b, tmp_path, "deleted", lambda ls: ls[:k] + ls[k + 1:], "deleted",
                   line=k + 1)
    expect_failure(b, tmp_path, "inserted", lambda ls: ls[:k + 1] + [ls[k]] + ls[k + 1:],
                   "inserted")
    expect_failure(b, tmp_path, "swapped",
                   lambda ls: ls[:k] + [ls[k + 1], ls[k]] + ls[k + 2:], "reordered",
                   line=k + 1)
    expect_failure(b, tmp_path, "truncated", lambda ls: ls[:-2], "cut off")
    # A torn tail: the last line ends mid-way.
    expect_failure(b, tmp_path, "torn",
                   lambda ls: b"".join(x + b"\n" for x in ls)[:-20], "truncated")

    def flip_signature(ls):
        ls = list(ls)
        e = json.loads(ls[-1])
        sig = e["unmapped"]["checkpoint"]["signature"]
        bad = ("0" if sig[0] != "0" else "1") + sig[1:]
        ls[-1] = ls[-1].replace(sig.encode(), bad.encode())
        return ls
    expect_failure(b, tmp_path, "sigflip", flip_signature, "bad checkpoint signature",
                   line=len(lines))

    # Re-signed with another key: the chain is intact, the signature is not ours.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    other = Ed25519PrivateKey.generate()

    def resign(ls):
        ls = list(ls)
        e = json.loads(ls[-1])
        cp = e["unmapped"]["checkpoint"]
        msg = "sluice-audit-checkpoint-v1\n%d\n%s\n%d\n%s" % (cp["sequence"], cp["last_hash"],
                                                              cp["time"], cp["reason"])
        forged = other.sign(msg.encode()).hex()
        ls[-1] = ls[-1].replace(cp["signature"].encode(), forged.encode())
        return ls
    expect_failure(b, tmp_path, "resigned", resign, "bad checkpoint signature",
                   line=len(lines))

    # A consistent rewrite without the key: one event edited and every later prev_hash
    # recomputed; only the checkpoint's signature catches it.
    import hashlib

    def rewrite(ls):
        ls = list(ls)
        ls[k] = ls[k].replace(b'"severity_id":1', b'"severity_id":2', 1)
        for i in range(k + 1, len(ls)):
            e = ls[i]
            old = json.loads(e)["unmapped"]["prev_hash"].encode()
            new = hashlib.sha256(ls[i - 1]).hexdigest().encode()
            e = e.replace(b'"prev_hash":"' + old, b'"prev_hash":"' + new)
            e = e.replace(b'"last_hash":"' + old, b'"last_hash":"' + new)
            ls[i] = e
        return ls
    expect_failure(b, tmp_path, "rewritten", rewrite, "bad checkpoint signature")


def test_chain_continues_across_restart_and_rotation(tmp_path):
    b = Broker(workdir(tmp_path), {"sluice.audit.file.max.bytes": 4096,
                                "sluice.audit.data.interval.ms": 0})
    b.start()
    try:
        produce_consume(b.bootstrap, "rot", n=20)
    finally:
        b.stop(check=True)
    b.start()
    b.stop(check=True)
    files = trail_files(b.data_dir)
    assert len(files) >= 3, files
    rc, out = verify([b.data_dir / "audit"], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 0, out
    evs = events(b.data_dir)
    assert [e["metadata"]["sequence"] for e in evs] == list(range(1, len(evs) + 1))
    reasons = [e["unmapped"]["checkpoint"]["reason"] for e in evs
               if e["metadata"]["event_code"] == "checkpoint"]
    assert "size" in reasons and reasons.count("stop") == 2, reasons
    # One "Trail Rotated" per rotation, and no event lost to one: every produced record counted.
    rotated = [e for e in evs if e.get("activity_name") == "Trail Rotated"]
    assert len(rotated) == len([r for r in reasons if r in ("size", "age")]), rotated
    assert sum(r["data"]["records"] for e in evs if e["metadata"]["event_code"] == "produce"
               for r in e["resources"] if r["name"] == "rot") == 20
    # Each start records the digest of the effective configuration: the same both times.
    digests = [e["unmapped"]["config_sha256"] for e in evs
               if e.get("activity_name") == "Config Loaded"]
    assert len(digests) == 2 and digests[0] == digests[1] and len(digests[0]) == 64, digests
    # Every rotated file ends with its checkpoint; the next starts with "Trail Rotated".
    for f in files[:-1]:
        last = json.loads(f.read_text().splitlines()[-1])
        assert last["metadata"]["event_code"] == "checkpoint"
    # Deleting a whole rotated file in the middle is caught at the next file's first line.
    d = tmp_path / "gap"
    shutil.copytree(b.data_dir / "audit", d)
    os.unlink(sorted(d.glob("*.jsonl"))[1])
    rc, out = verify([d], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 1 and "deleted" in out, out


def test_retention_keeps_the_newest_files(tmp_path):
    b = Broker(workdir(tmp_path), {"sluice.audit.file.max.bytes": 4096,
                                   "sluice.audit.file.retention.files": 1,
                                   "sluice.audit.data.interval.ms": 0})
    b.start()
    try:
        produce_consume(b.bootstrap, "ret", n=5)
        # At least ~20 KB of events (one per request), so several rotations whatever the
        # clients' batching.
        with kp.Conn(b.bootstrap) as c:
            for i in range(25):
                assert produce_v3(c, "ret", b"v%d" % i) == 0
    finally:
        b.stop(check=True)
    files = trail_files(b.data_dir)
    assert len(files) == 2, files  # the current file and one rotated
    assert not files[0].name.endswith("00000000000000000001.jsonl")
    rc, out = verify([b.data_dir / "audit"], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 0 and "starts at sequence" in out, out


# ---- failure policy -------------------------------------------------------------------------

def produce_v3(conn, topic, value):
    """One Produce v3 (acks=1) of one record; returns the partition's error code."""
    batch = kp.record_batch([(b"k", value, [])])
    w = kp.Writer().string(None).i16(1).i32(10000)
    w.array([0], lambda ww, _: (ww.string(topic),
                                ww.array([0], lambda x, _: (x.i32(0), x.i32(len(batch)),
                                                            x.raw(batch)))))
    r = conn.call(0, 3, w.bytes())
    (name, parts), = r.array(lambda rr: (rr.string(),
                                         rr.array(lambda x: (x.i32(), x.i16(), x.i64(), x.i64()))))
    assert name == topic
    return parts[0][1]


@pytest.fixture
def failing_disk(tmp_path, monkeypatch):
    shim = tmp_path / "write_fail.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), SHIM_SRC, "-ldl"],
                   check=True)
    gate = tmp_path / "disk-full"

    def start(overrides):
        monkeypatch.setenv("LD_PRELOAD", str(shim))
        monkeypatch.setenv("SLUICE_TEST_WRITE_FAIL_GATE", str(gate))
        opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        monkeypatch.setenv("ASAN_OPTIONS", opts + ":verify_asan_link_order=0")
        b = Broker(workdir(tmp_path), overrides)
        monkeypatch.setenv("SLUICE_TEST_WRITE_FAIL_DIR", str(b.data_dir / "audit"))
        b.start()
        monkeypatch.delenv("LD_PRELOAD")
        return b
    brokers = []

    def factory(overrides):
        brokers.append(start(overrides))
        return brokers[-1]
    yield factory, gate
    if gate.exists():
        gate.unlink()
    for b in brokers:
        if b.alive():
            b.stop(check=True)


def test_block_policy_refuses_until_the_trail_writes(failing_disk):
    start, gate = failing_disk
    b = start({"sluice.audit.data.interval.ms": 0})
    h.ck_create_topic(b.bootstrap, "blocked", 1)
    with kp.Conn(b.bootstrap) as c:
        assert produce_v3(c, "blocked", b"before") == 0
        gate.touch()
        # The first produce after the disk fills may still pass (its event is what fails);
        # from then on produce is refused with the retriable storage error.
        wait_until(lambda: produce_v3(c, "blocked", b"during") == KAFKA_STORAGE_ERROR, 20,
                   "produce refused while the trail cannot write")
        assert produce_v3(c, "blocked", b"during") == KAFKA_STORAGE_ERROR
        # acks=0 has no answer to carry the error: the connection is closed instead, so the
        # client learns its record was not stored (and nothing was stored).
        with kp.Conn(b.bootstrap) as c0:
            assert kp.produce(c0, "blocked", 0, kp.record_batch([(b"k", b"acks0", [])]),
                              acks=0) is None
            assert c0.closed_by_peer(10), "an acks=0 produce refused by the gate left no trace"
        gate.unlink()
        wait_until(lambda: produce_v3(c, "blocked", b"after") == 0, 20,
                   "produce accepted once the trail writes again")
    b.stop(check=True)
    m = re.search(r'msg="audit trail closed".* refused=(\d+)', b.log_text())
    assert m and int(m.group(1)) >= 1, b.log_tail()
    assert "cannot record audit events" in b.log_text()
    rc, out = verify([b.data_dir / "audit"], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 0, out
    # The refused requests were recorded too (after the disk recovered).
    refused = [e for e in events(b.data_dir) if e["metadata"]["event_code"] == "produce"
               and e["status_code"] == "KAFKA_STORAGE_ERROR"]
    assert refused, "no refused produce in the trail"


def test_continue_policy_serves_and_counts_drops(failing_disk):
    start, gate = failing_disk
    b = start({"sluice.audit.failure.policy": "continue", "sluice.audit.queue.max.events": 16,
               "sluice.audit.data.interval.ms": 0})
    h.ck_create_topic(b.bootstrap, "cont", 1)
    with kp.Conn(b.bootstrap) as c:
        gate.touch()
        for i in range(60):
            assert produce_v3(c, "cont", b"v%d" % i) == 0
        gate.unlink()
        assert produce_v3(c, "cont", b"after") == 0
    wait_until(lambda: "audit event dropped" in b.log_text(), 10, "drops logged")
    b.stop(check=True)
    m = re.search(r'msg="audit trail closed".* dropped=(\d+)', b.log_text())
    assert m and int(m.group(1)) > 0, b.log_tail()
    rc, out = verify([b.data_dir / "audit"], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 0, out
    notes = [e for e in events(b.data_dir) if e.get("activity_name") == "Events Dropped"]
    assert notes, "the trail does not say that events were dropped"


# ---- syslog ---------------------------------------------------------------------------------

def test_syslog_sink_sends_rfc5424(tmp_path):
    import threading
    path = str(tmp_path / "log.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    got, done = [], threading.Event()

    def reader():  # like a syslog daemon: reads as lines come (the socket queue is short)
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            try:
                got.append(s.recv(1 << 20).decode())
            except socket.timeout:
                pass
    t = threading.Thread(target=reader)
    t.start()
    b = Broker(workdir(tmp_path), {"sluice.audit.sinks": "file,syslog",
                                   "sluice.audit.syslog.socket": path,
                                   "sluice.audit.data.interval.ms": 0})
    try:
        b.start()
        h.ck_create_topic(b.bootstrap, "sys", 1)
        with kp.Conn(b.bootstrap) as c:  # more lines than the socket queue holds
            for i in range(30):
                # The queue holds 10 datagrams (net.unix.max_dgram_qlen): if the reader falls
                # behind (a busy machine), the sink fails until the writer's retry succeeds
                # and Produce meanwhile gets the retriable KAFKA_STORAGE_ERROR (block policy),
                # which a client retries; any other answer fails at once.
                def produced():
                    err = produce_v3(c, "sys", b"v%d" % i)
                    assert err in (0, KAFKA_STORAGE_ERROR), err
                    return err == 0
                wait_until(produced, 20, f"produce #{i} accepted")
    finally:
        b.stop(check=True)
        wait_until(lambda: any('"reason":"stop"' in g for g in got), 10, "the stop checkpoint")
        done.set()
        t.join()
        s.close()
    pat = re.compile(r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) sluice (\d+) "
                     r"(\S+) - (\{.*\})$", re.S)
    codes = []
    for g in got:
        m = pat.match(g)
        assert m, g
        pri = int(m.group(1))
        assert pri // 8 == 13  # log audit
        e = json.loads(m.group(6))
        assert e["metadata"]["event_code"] == m.group(5)
        codes.append(m.group(5))
    assert "management" in codes and codes[-1] == "checkpoint", codes
    # The syslog copy carries the same lines as the file.
    file_lines = [line for f in trail_files(b.data_dir) for line in f.read_text().splitlines()]
    assert [pat.match(g).group(6) for g in got] == file_lines


# ---- denials over SASL_SSL ------------------------------------------------------------------

from test_acl import USERS, acl_broker, ck_conf  # noqa: E402,F401 (the fixture)


def test_denials_recorded_with_principal_and_resource(acl_broker):
    b = acl_broker
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient(ck_conf(b, "admin"))
    a.create_topics([NewTopic("vault", 1, 1)])["vault"].result(timeout=30)
    p = Producer(ck_conf(b, "mallory", **{"acks": "all", "message.timeout.ms": 10000}))
    errors = []
    p.produce("vault", b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert errors and errors[0] is not None, errors
    b.stop(check=True)
    raw = b"".join(f.read_bytes() for f in trail_files(b.data_dir))
    for pw in USERS.values():
        assert pw.encode() not in raw
    evs = events(b.data_dir)
    validate_schemas(evs)
    denials = [e for e in evs if e["metadata"]["event_code"] == "denial"
               and e["actor"]["user"]["uid"] == "User:mallory"]
    assert denials, [e["metadata"]["event_code"] for e in evs]
    res = [r for e in denials for r in e["resources"]]
    # librdkafka learns from Metadata that it may not even describe the topic (and gives up
    # before producing), or is refused the write itself.
    assert any(r["type"] == "topic" and r["name"] == "vault"
               and r["data"]["operation"] in ("DESCRIBE", "WRITE") for r in res), res
    assert all(e["status_id"] == 2 and e["src_endpoint"]["ip"] == "127.0.0.1" for e in denials)
    mgmt = [e for e in evs if e["metadata"]["event_code"] == "management"
            and e["api"]["operation"] == "CreateTopics"]
    assert mgmt and mgmt[0]["actor"]["user"]["uid"] == "User:admin"
    rc, out = verify([b.data_dir / "audit"], b.secrets_dir / "sluice-audit-key.pem.pub")
    assert rc == 0, out
