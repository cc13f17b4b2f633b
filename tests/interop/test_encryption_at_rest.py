"""Encryption at rest, end to end (docs/encryption-at-rest.md): a broker started with no
encryption settings encrypts (its log says so, segments and frames carry the encrypted flag, the
topic registry is sealed); real clients over SASL_SSL (kcat, confluent-kafka, kafkajs) write
records holding a marker with every codec, and everything reads back intact after a clean restart
and kill -9 cycles, with group offsets and idempotent producer state surviving, while no file under
log.dirs holds the marker; with sluice.encryption.dir.names=id no file name or content there holds
a topic name; and a tampered batch, a batch copied from another partition or a segment swapped
between topics makes that partition answer KAFKA_STORAGE_ERROR (56) while everything else is
served, the broker stays up, and the audit trail records the tamper."""
import collections
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import helpers as h
import kproto as kp
from conftest import Broker, finish_broker, wait_until

MARKER = "SLUICE-CLEAR-MARKER-5d1c0a77"
KAFKA_STORAGE_ERROR = 56
NODE_DIR = Path(__file__).resolve().parent / "node"
SEG_MAGIC = b"SLSG"
FRAME_MAGIC = 0xA5


# ---- set-up ----------------------------------------------------------------------------------

def props(path):
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def start_secure(tmp_path, extra=None):
    """A broker given nothing but a SASL_SSL listener and a data directory (as the quickstart):
    it provisions TLS material, an admin user and client.properties, and encryption at rest is
    on by default."""
    b = Broker(tmp_path)
    b.config = {"listeners": f"SASL_SSL://{b.bootstrap}", "log.dirs": str(b.data_dir),
                "sluice.metrics.listener": "http://127.0.0.1:0"}
    b.config.update(extra or {})
    b.write_config()
    b.start()
    return b


@pytest.fixture
def enc(request, tmp_path):
    marker = request.node.get_closest_marker("broker_config")
    b = start_secure(tmp_path, marker.args[0] if marker else {})
    request.node._sluice_broker = b
    yield b
    finish_broker(b)


def client_properties(b):
    """The provisioned admin's client configuration: in the secrets directory beside log.dirs
    (sluice.secrets.dir)."""
    return b.secrets_dir / "client.properties"


def client_conf(b):
    return props(client_properties(b))


def kcat_args(b):
    return ["kcat", "-F", str(client_properties(b))]


def create_topic(b, topic, partitions, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient(client_conf(b))
    fs = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                         operation_timeout=10, request_timeout=30)
    fs[topic].result(timeout=60)

    def ready():
        t = a.list_topics(topic, timeout=10).topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == partitions
    wait_until(ready, 30, f"metadata for {topic}")


# ---- what is on disk -------------------------------------------------------------------------

def all_files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())


def files_holding(root, needle):
    needle = needle.encode() if isinstance(needle, str) else needle
    return [p for p in all_files(root) if needle in p.read_bytes()]


def seg_frames(path):
    """(segment version, segment flags, header length, [(pos, frame length, frame flags,
    frame header length, nonce length)]) of one segment data file."""
    data = path.read_bytes()
    assert data[:4] == SEG_MAGIC, f"{path} is not a segment file"
    version, flags = struct.unpack(">HH", data[4:8])
    (hlen,) = struct.unpack(">I", data[24:28])
    frames, pos = [], hlen
    while pos + 52 <= len(data) and data[pos] == FRAME_MAGIC:
        fflags, fh, n, _t, flen = struct.unpack(">HHBBI", data[pos + 2:pos + 12])
        if flen < fh or pos + flen > len(data):
            break
        frames.append((pos, flen, fflags, fh, n))
        pos += flen
    return version, flags, hlen, frames


def segments(part_dir):
    return sorted(Path(part_dir).glob("*.log"))


def first_segment_with_frames(part_dir):
    for s in segments(part_dir):
        if seg_frames(s)[3]:
            return s
    raise AssertionError(f"no segment with frames in {part_dir}")


def assert_encrypted_segment(path):
    version, flags, _hlen, frames = seg_frames(path)
    assert version >= 2 or flags & 1, \
        f"{path}: segment header says plaintext (version {version}, flags {flags:#x})"
    assert frames, f"{path}: no frames"
    assert all(f[2] & 1 for f in frames), f"{path}: a frame without the encrypted flag"


def assert_no_marker(b, when):
    hits = files_holding(b.data_dir, MARKER)
    assert not hits, f"{when}: the marker is in clear in {[str(p) for p in hits]}"


# ---- (a) on by default -----------------------------------------------------------------------

def test_first_start_encrypts_by_default(enc):
    log = enc.log_text()
    assert "encryption at rest on" in log, "the start does not say encryption at rest is on"
    topic = "enc-default"
    r = subprocess.run(kcat_args(enc) + ["-P", "-t", topic, "-p", "0", "-k", "k"],
                       input=f"{MARKER} first record\n".encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    enc.stop()
    seg = first_segment_with_frames(enc.data_dir / f"{topic}-0")
    assert_encrypted_segment(seg)
    reg = (enc.data_dir / "sluice-topics.meta").read_bytes()
    assert not reg.startswith(b"# Sluice topic registry"), "the topic registry is plaintext"
    assert topic.encode() not in reg, "the topic registry names the topic in clear"
    assert_no_marker(enc, "after a clean stop")
    enc.start()
    r = subprocess.run(kcat_args(enc) + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                                         "-f", "%k=%s\n"], capture_output=True, timeout=60)
    assert r.returncode == 0 and f"k={MARKER} first record".encode() in r.stdout, r.stderr


@pytest.mark.broker_config({"sluice.encryption.enable": "false"})
def test_marker_is_found_in_clear_when_encryption_is_off(enc):
    """The control for the marker checks: the same scan finds it when nothing is encrypted."""
    assert "encryption at rest off" in enc.log_text()
    r = subprocess.run(kcat_args(enc) + ["-P", "-t", "enc-off", "-p", "0"],
                       input=f"{MARKER} in clear\n".encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    enc.stop()
    assert files_holding(enc.data_dir, MARKER), "the scan cannot find a cleartext marker"
    assert b"enc-off" in (enc.data_dir / "sluice-topics.meta").read_bytes()
    enc.start()


# ---- (b) real clients, every codec, restarts and kill -9 -------------------------------------

def marked_records(tag, n, partitions=2):
    return [h.Rec(i % partitions, f"{MARKER}-{tag}-key-{i}".encode(),
                  f"{MARKER} {tag} value {i} ".encode() + os.urandom(i % 40) + MARKER.encode(),
                  (("m", f"{MARKER}-h{i}".encode()),), None)
            for i in range(n)]


def kcat_produce(b, topic, codec, n):
    expected = {}
    for p in range(2):
        lines = [f"{MARKER}-kcat-{codec}-{p}-{i}\t{MARKER} kcat {codec} p{p} record {i} "
                 + "y" * (i % 70) for i in range(n)]
        expected[p] = lines
        r = subprocess.run(kcat_args(b) + ["-P", "-t", topic, "-p", str(p), "-K", "\t", "-z",
                                           codec, "-H", f"m={MARKER}", "-X", "acks=all"],
                           input="\n".join(lines) + "\n", capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"kcat produce {topic}/{p}: {r.stderr[-2000:]}"
    return expected


def kcat_check(b, topic, expected, what):
    for p, lines in expected.items():
        r = subprocess.run(kcat_args(b) + ["-C", "-t", topic, "-p", str(p), "-o", "beginning",
                                           "-e", "-J", "-q", "-c", str(len(lines))],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{what}: kcat consume {topic}/{p}: {r.stderr[-2000:]}"
        msgs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        assert len(msgs) == len(lines), f"{what}: {topic}/{p}: {len(msgs)} of {len(lines)}"
        for i, (m, line) in enumerate(zip(msgs, lines)):
            key, value = line.split("\t", 1)
            assert m["offset"] == i and m["key"] == key and m["payload"] == value, \
                f"{what}: {topic}/{p} offset {i}: {m}"


def ck_read(b, topic, partitions):
    """Every record of the topic up to the high watermarks: {partition: [(key, value, headers)]}."""
    from confluent_kafka import Consumer, TopicPartition
    conf = client_conf(b)
    conf.update({"group.id": "enc-reader-unused", "enable.auto.commit": False,
                 "auto.offset.reset": "error", "fetch.wait.max.ms": 100})
    c = Consumer(conf)
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + 90
        while any(len(got[p]) < ends[p] for p in got):
            assert time.monotonic() < deadline, f"{topic}: read {[len(v) for v in got.values()]}" \
                                                f" of {ends}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"{topic}: consume error {m.error()}"
                assert m.offset() == len(got[m.partition()]), f"{topic}: offset gap"
                got[m.partition()].append((m.key(), m.value(), tuple(m.headers() or ())))
        return got
    finally:
        c.close()


def ck_check(b, topic, records, what):
    got = ck_read(b, topic, 2)
    for p in range(2):
        want = [(r.key, r.value, r.headers) for r in records if r.partition == p]
        assert got[p] == want, f"{what}: {topic}/{p}: records differ " \
                               f"({len(got[p])} read, {len(want)} written)"


def kafkajs_produce(b, prefix, n):
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
    conf = client_conf(b)
    env = {**os.environ, "SASL_PASSWORD": conf["sasl.password"],
           "SASL_SSL_CA": conf["ssl.ca.location"], "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    r = subprocess.run(["node", str(NODE_DIR / "enc_kafkajs_produce.mjs"), b.bootstrap,
                        conf["sasl.mechanism"], conf["sasl.username"], prefix, MARKER, str(n)],
                       cwd=str(NODE_DIR), capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"kafkajs: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {c: v for c, v in res["codecs"].items() if not v.get("ok")}
    assert res["codecs"] and not bad, f"kafkajs failed: {res}"
    return list(res["codecs"])


def kafkajs_check(b, prefix, codecs, n, what):
    for codec in codecs:
        got = ck_read(b, f"{prefix}-{codec}", 2)
        for p in range(2):
            idx = [i for i in range(n) if i % 2 == p]
            assert [k for k, _, _ in got[p]] == [f"{MARKER}-key-{i}".encode() for i in idx], \
                f"{what}: kafkajs {codec}/{p}: keys differ"
            assert [v for _, v, _ in got[p]] == [
                f"{MARKER} kafkajs {codec} record {i} {'x' * (i % 50)}".encode() for i in idx], \
                f"{what}: kafkajs {codec}/{p}: values differ"


class IdempotentLoad(threading.Thread):
    """An idempotent librdkafka producer over SASL_SSL sending `total` unique values round-robin
    over two partitions, paced so that broker restarts land while requests are in flight."""

    def __init__(self, b, topic, total):
        super().__init__(daemon=True)
        from confluent_kafka import Producer
        conf = client_conf(b)
        conf.update({"enable.idempotence": True, "acks": "all", "message.timeout.ms": 180000,
                     "linger.ms": 5, "batch.num.messages": 50, "retry.backoff.ms": 50,
                     "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                     "socket.timeout.ms": 5000, "queue.buffering.max.messages": 500,
                     "compression.type": "lz4"})
        self.p = Producer(conf)
        self.topic, self.total = topic, total
        self.lock = threading.Lock()
        self.acked, self.errors, self.sent, self.error = {}, [], 0, None

    def on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acked[msg.value()] = (msg.partition(), msg.offset())
            else:
                self.errors.append(str(err))

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def run(self):
        try:
            while self.sent < self.total:
                v = f"{MARKER}-idem-{self.sent:06d}".encode()
                try:
                    self.p.produce(self.topic, value=v, partition=self.sent % 2,
                                   on_delivery=self.on_delivery)
                    self.sent += 1
                except BufferError:
                    self.p.poll(0.02)
                self.p.poll(0.004 if self.sent % 3 == 0 else 0)
            if self.p.flush(150):
                self.error = "records still undelivered"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)


def commit_group(b, topic, group):
    """A consumer group member reads the topic and commits; returns {partition: offset}."""
    from confluent_kafka import Consumer, TopicPartition
    conf = client_conf(b)
    conf.update({"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                 "session.timeout.ms": 10000})
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        seen = collections.Counter()
        deadline = time.monotonic() + 60
        while len(seen) < 2 or min(seen.values()) < 5:
            assert time.monotonic() < deadline, f"the group member read only {dict(seen)}"
            for m in c.consume(num_messages=100, timeout=0.5):
                assert m.error() is None, m.error()
                seen[m.partition()] += 1
        c.commit(asynchronous=False)
        return {tp.partition: tp.offset
                for tp in c.committed([TopicPartition(topic, p) for p in range(2)], timeout=30)}
    finally:
        c.close()


def committed(b, topic, group):
    from confluent_kafka import Consumer, TopicPartition
    conf = client_conf(b)
    conf.update({"group.id": group, "enable.auto.commit": False})
    c = Consumer(conf)
    try:
        return {tp.partition: tp.offset
                for tp in c.committed([TopicPartition(topic, p) for p in range(2)], timeout=30)}
    finally:
        c.close()


@pytest.mark.timeout_s(600)
def test_clients_every_codec_across_restarts_leave_no_cleartext(enc):
    n = 120
    written = {}
    for codec in h.ALL_CODECS:
        create_topic(enc, f"enc-kcat-{codec}", 2)
        written[("kcat", codec)] = kcat_produce(enc, f"enc-kcat-{codec}", codec, n // 2)
        create_topic(enc, f"enc-ck-{codec}", 2)
        recs = marked_records(f"ck-{codec}", n)
        conf = client_conf(enc)
        conf.pop("bootstrap.servers")
        h.ck_produce(enc.bootstrap, f"enc-ck-{codec}", recs, codec=codec, extra=conf)
        written[("ck", codec)] = recs
    js_codecs = kafkajs_produce(enc, "enc-kjs", n)
    offsets = commit_group(enc, "enc-ck-none", "enc-group")
    assert all(o >= 5 for o in offsets.values()), offsets

    def check_all(what):
        for (client, codec), w in written.items():
            if client == "kcat":
                kcat_check(enc, f"enc-kcat-{codec}", w, what)
            else:
                ck_check(enc, f"enc-ck-{codec}", w, what)
        kafkajs_check(enc, "enc-kjs", js_codecs, n, what)
        assert committed(enc, "enc-ck-none", "enc-group") == offsets, \
            f"{what}: committed group offsets changed"

    check_all("before any restart")
    enc.stop()
    assert_no_marker(enc, "after a clean stop")
    enc.start()
    check_all("after a clean restart")

    create_topic(enc, "enc-idem", 2)
    load = IdempotentLoad(enc, "enc-idem", 6000)
    load.start()
    for cycle in range(3):
        target = load.acked_count() + 300
        wait_until(lambda: load.acked_count() >= target or load.error, 90,
                   f"cycle {cycle}: {target} idempotent records acknowledged")
        assert load.error is None, load.error
        assert load.sent < load.total, "the producer finished before the kills: slow it down"
        enc.kill9()
        assert_no_marker(enc, f"after kill -9 #{cycle + 1}")
        enc.start()
    load.join(200)
    assert not load.is_alive() and load.error is None, load.error
    assert not load.errors, f"idempotent delivery errors: {load.errors[:5]}"
    assert len(load.acked) == load.total
    got = ck_read(enc, "enc-idem", 2)
    values = [v for p in got for _, v, _ in got[p]]
    dups = [v for v, k in collections.Counter(values).items() if k > 1]
    assert not dups, f"{len(dups)} idempotent records stored twice, e.g. {dups[:3]}"
    assert sorted(values) == sorted(load.acked), "acknowledged and stored records differ"
    check_all("after kill -9 cycles")
    enc.stop()
    assert_no_marker(enc, "at the end")
    for name in ("enc-ck-none", "enc-kcat-none", "enc-idem"):
        for p in range(2):
            for seg in segments(enc.data_dir / f"{name}-{p}"):
                if seg_frames(seg)[3]:
                    assert_encrypted_segment(seg)
    snaps = list(enc.data_dir.rglob("*.snapshot"))
    assert snaps, "no producer state snapshot was written"
    for s in snaps:
        assert not s.read_bytes().startswith(b"SLPS"), f"{s} is a plaintext producer snapshot"
    groups = enc.data_dir / "__sluice_groups-0"
    for seg in segments(groups):
        if seg_frames(seg)[3]:
            assert_encrypted_segment(seg)
    enc.start()


# ---- (c) no topic name under log.dirs with dir.names=id --------------------------------------

SECRET_TOPIC = "payroll-merger-quarterly"


@pytest.fixture
def id_dirs(tmp_path):
    audit = tmp_path / "audit-elsewhere"
    b = start_secure(tmp_path, {"sluice.encryption.dir.names": "id",
                                "sluice.audit.dir": str(audit)})
    yield b, audit
    finish_broker(b)


@pytest.mark.timeout_s(300)
def test_topic_name_absent_from_data_dir_with_id_dirs(id_dirs):
    b, audit = id_dirs
    create_topic(b, SECRET_TOPIC, 2, {"retention.ms": "86400000"})
    recs = marked_records("secret", 60)
    conf = client_conf(b)
    conf.pop("bootstrap.servers")
    h.ck_produce(b.bootstrap, SECRET_TOPIC, recs, codec="none",
                 extra={**conf, "enable.idempotence": True})
    commit_group(b, SECRET_TOPIC, "secret-readers")
    b.stop()
    b.start()  # the registry read back, the groups log replayed
    ck_check(b, SECRET_TOPIC, recs, "after a restart with id directories")
    b.stop()
    named = [p for p in b.data_dir.rglob("*") if SECRET_TOPIC in str(p.relative_to(b.data_dir))]
    assert not named, f"file names under log.dirs name the topic: {named}"
    holding = files_holding(b.data_dir, SECRET_TOPIC)
    assert not holding, f"files under log.dirs hold the topic name: {holding}"
    assert_no_marker(b, "with id directories")
    assert files_holding(audit, SECRET_TOPIC), \
        "the audit trail outside log.dirs does not name the topic (is it written?)"
    b.start()


# ---- (d) tampering ---------------------------------------------------------------------------

def produce_batches(bootstrap, topic, partition, n, tag):
    with kp.Conn(bootstrap) as c:
        for i in range(n):
            recs = [(b"k%d" % j, b"%s %s batch %d record %d " % (tag.encode(), topic.encode(), i, j)
                     + b"z" * 64, []) for j in range(5)]
            err, _ = kp.produce(c, topic, partition, kp.record_batch(recs, base_ts=1_700_000_000_000))
            assert err == kp.NONE, f"produce {topic}/{partition}: error {err}"


def fix_frame_crcs(data, pos, flen, fh, n):
    """Recomputes what recovery checks without a key (the CRC-32C of ciphertext and tag in the
    reserved word, and the header CRC), so that only authentication can notice the change: what
    a deliberate tamperer would do."""
    data[pos + 44:pos + 48] = struct.pack(">I", kp.crc32c(bytes(data[pos + fh:pos + flen])))
    at = pos + 48 + n
    data[at:at + 4] = struct.pack(">I", kp.crc32c(bytes(data[pos:at])))


def fetch_error(bootstrap, topic, partition, offset=0):
    with kp.Conn(bootstrap) as c:
        return kp.fetch(c, topic, partition, offset)["error"]


def assert_served(bootstrap, topic, partition, tag, offset=0):
    with kp.Conn(bootstrap) as c:
        f = kp.fetch(c, topic, partition, offset)
        assert f["error"] == kp.NONE, f"{topic}/{partition}: error {f['error']}"
        assert tag.encode() in f["records"], f"{topic}/{partition}: records not served"


def key_events(trail_dir, op):
    """The trail's key events of operation `op` ("tamper", "shred", ...), as parsed JSON."""
    out = []
    for f in sorted(Path(trail_dir).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            ev = json.loads(line)
            if (ev.get("api") or {}).get("operation") == f"kms:{op}":
                out.append(ev)
    return out


def tampered_partitions(b):
    """[(topic, partition)] of the trail's tamper events, one entry per event."""
    return [(r["name"], r["data"]["partition"]) for ev in key_events(b.data_dir / "audit", "tamper")
            for r in ev.get("resources", []) if r.get("type") == "topic"]


def check_only_victims_fail(b, victims, healthy):
    for topic, p in victims:
        err = wait_until(lambda: fetch_error(b.bootstrap, topic, p) or None, 10,
                         f"an error for {topic}/{p}")
        assert err == KAFKA_STORAGE_ERROR, f"{topic}/{p}: error {err}, want 56"
    for topic, p, tag in healthy:
        assert_served(b.bootstrap, topic, p, tag)
    # Another topic keeps taking writes and serving reads (2 batches of 5 records before).
    produce_batches(b.bootstrap, "bystander", 0, 1, "later")
    assert_served(b.bootstrap, "bystander", 0, "later", offset=10)
    assert b.alive()


@pytest.mark.timeout_s(300)
def test_tampered_batch_copied_batch_and_swapped_segment(broker):
    h.ck_create_topic(broker.bootstrap, "tamper", 3)
    for t in ("swap-a", "swap-b", "bystander"):
        h.ck_create_topic(broker.bootstrap, t, 1)
    for p in range(3):
        produce_batches(broker.bootstrap, "tamper", p, 4, "same")
    produce_batches(broker.bootstrap, "swap-a", 0, 4, "same")
    produce_batches(broker.bootstrap, "swap-b", 0, 4, "same")
    produce_batches(broker.bootstrap, "bystander", 0, 2, "by")
    for p in range(3):
        assert_served(broker.bootstrap, "tamper", p, "same")
    broker.stop()
    d = broker.data_dir

    # A flipped byte in a payload of tamper-0, CRCs made consistent again.
    seg0 = first_segment_with_frames(d / "tamper-0")
    data = bytearray(seg0.read_bytes())
    pos, flen, fflags, fh, n = seg_frames(seg0)[3][0]
    assert fflags & 1, "the stored batch is not encrypted"
    data[pos + flen - 16 - 20] ^= 0x01  # inside the ciphertext, before the tag
    fix_frame_crcs(data, pos, flen, fh, n)
    seg0.write_bytes(bytes(data))
    # tamper-2's second batch replaced by tamper-1's second batch (same size, same offsets).
    seg1, seg2 = first_segment_with_frames(d / "tamper-1"), first_segment_with_frames(d / "tamper-2")
    f1, f2 = seg_frames(seg1)[3][1], seg_frames(seg2)[3][1]
    assert f1[:2] == f2[:2], "the batches of the two partitions are not laid out alike"
    src, dst = seg1.read_bytes(), bytearray(seg2.read_bytes())
    dst[f2[0]:f2[0] + f2[1]] = src[f1[0]:f1[0] + f1[1]]
    seg2.write_bytes(bytes(dst))
    # swap-a's and swap-b's first segments exchanged.
    sa, sb = first_segment_with_frames(d / "swap-a-0"), first_segment_with_frames(d / "swap-b-0")
    assert sa.name == sb.name
    tmp = sa.with_name("swap.tmp")
    shutil.move(sa, tmp)
    shutil.move(sb, sa)
    shutil.move(tmp, sb)

    broker.start()
    check_only_victims_fail(broker, [("tamper", 0), ("swap-a", 0), ("swap-b", 0)],
                            [("bystander", 0, "by")])
    # The copied batch fails where it sits (offset 5), the batch before it is still served.
    with kp.Conn(broker.bootstrap) as c:
        assert kp.fetch(c, "tamper", 2, 5)["error"] == KAFKA_STORAGE_ERROR
    with kp.Conn(broker.bootstrap) as c:
        f = kp.fetch(c, "tamper", 1, 0)
        assert f["error"] == kp.NONE and b"same" in f["records"]
    # A consumer retrying does not flood: one warning and one event per partition, not one per
    # fetch.
    for _ in range(20):
        assert fetch_error(broker.bootstrap, "tamper", 0) == KAFKA_STORAGE_ERROR
    assert broker.alive()
    victims = [("tamper", 0), ("swap-a", 0), ("swap-b", 0), ("tamper", 2)]
    wait_until(lambda: set(victims) <= set(tampered_partitions(broker)), 20,
               f"tamper events for {victims} in the audit trail")
    counts = collections.Counter(tampered_partitions(broker))
    assert all(counts[v] == 1 for v in victims), f"tamper events not limited: {counts}"
    assert set(counts) == set(victims), f"tamper events for untouched partitions: {counts}"
    warns = [line for line in broker.log_text().splitlines()
             if 'sub=encryption msg="stored data failed authentication' in line]
    assert len(warns) == len(victims), f"{len(warns)} tamper warnings for {len(victims)} " \
                                       "partitions"


# ---- migration and shredding -----------------------------------------------------------------

@pytest.mark.timeout_s(300)
def test_plaintext_data_dir_is_migrated(tmp_path):
    """A data directory written with encryption off, started with it on: the registry is
    rewritten sealed at once, old records and group offsets still read, and nothing written
    afterwards is in clear (the old segments stay as they were until `sluice keys reencrypt`)."""
    b = start_secure(tmp_path, {"sluice.encryption.enable": "false"})
    try:
        create_topic(b, "legacy-topic", 2)
        old = kcat_produce(b, "legacy-topic", "none", 20)
        offsets = commit_group(b, "legacy-topic", "legacy-group")
        b.stop()
        assert b"legacy-topic" in (b.data_dir / "sluice-topics.meta").read_bytes()
        del b.config["sluice.encryption.enable"]
        b.write_config()
        b.start()
        assert "encryption at rest on" in b.log_text()
        assert "topic registry rewritten encrypted" in b.log_text()
        reg = (b.data_dir / "sluice-topics.meta").read_bytes()
        assert b"legacy-topic" not in reg, "the registry is still plaintext after the migration"
        kcat_check(b, "legacy-topic", old, "after turning encryption on")
        assert committed(b, "legacy-topic", "legacy-group") == offsets
        later = "SLUICE-NEW-AFTER-MIGRATION-3e9b"
        r = subprocess.run(kcat_args(b) + ["-P", "-t", "legacy-topic", "-p", "0"],
                           input=f"{later} record\n".encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        b.stop()
        assert not files_holding(b.data_dir, later), "a record written after the migration is " \
                                                     "in clear"
        b.start()
        r = subprocess.run(kcat_args(b) + ["-C", "-t", "legacy-topic", "-p", "0", "-o",
                                           "beginning", "-e", "-q"], capture_output=True,
                           timeout=60)
        assert r.returncode == 0 and later.encode() in r.stdout and MARKER.encode() in r.stdout
    finally:
        finish_broker(b)


def test_delete_topics_shreds_the_topic_key(enc):
    create_topic(enc, "doomed", 1)
    r = subprocess.run(kcat_args(enc) + ["-P", "-t", "doomed", "-p", "0"],
                       input=f"{MARKER} doomed\n".encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from confluent_kafka.admin import AdminClient
    a = AdminClient(client_conf(enc))
    a.delete_topics(["doomed"], operation_timeout=10)["doomed"].result(timeout=60)
    wait_until(lambda: "deleted topic's key shredded" in enc.log_text(), 30,
               "the shred of the deleted topic's key")
    assert not (enc.data_dir / "doomed-0").exists()

    assert wait_until(lambda: key_events(enc.data_dir / "audit", "shred"), 30,
                      "the shred in the audit trail")


@pytest.mark.timeout_s(200)
def test_tamper_after_kill9_start_rebuilds_state_without_keys_and_refuses_the_batch(broker):
    """After a kill -9 the producer state is rebuilt at start from the batches' clear headers
    (no key needed), so a tampered batch does not keep the partition closed: that batch answers
    56, the batches after it, the other partition and other topics are served, the partition
    takes appends, and the trail records the tamper."""
    h.ck_create_topic(broker.bootstrap, "early", 2)
    h.ck_create_topic(broker.bootstrap, "bystander", 1)
    for p in range(2):
        produce_batches(broker.bootstrap, "early", p, 3, "same")
    produce_batches(broker.bootstrap, "bystander", 0, 2, "by")
    broker.kill9()
    seg = first_segment_with_frames(broker.data_dir / "early-0")
    data = bytearray(seg.read_bytes())
    pos, flen, fflags, fh, n = seg_frames(seg)[3][1]  # offsets 5..9
    assert fflags & 1
    data[pos + flen - 16 - 9] ^= 0x80
    fix_frame_crcs(data, pos, flen, fh, n)
    seg.write_bytes(bytes(data))
    broker.start()
    assert "partition unavailable" not in broker.log_text()
    with kp.Conn(broker.bootstrap) as c:
        assert kp.fetch(c, "early", 0, 5)["error"] == KAFKA_STORAGE_ERROR
        f = kp.fetch(c, "early", 0, 10)
        assert f["error"] == kp.NONE and b"batch 2" in f["records"]
        assert kp.list_offsets(c, "early", 0, kp.LATEST) == (kp.NONE, 15)
        err, base = kp.produce(c, "early", 0, kp.record_batch([(b"k", b"after restart", [])]))
        assert (err, base) == (kp.NONE, 15)
    assert_served(broker.bootstrap, "early", 1, "same")
    assert_served(broker.bootstrap, "bystander", 0, "by")
    assert broker.alive()
    wait_until(lambda: ("early", 0) in tampered_partitions(broker), 20,
               "the tamper in the audit trail")
