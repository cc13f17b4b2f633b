"""Log compaction as Kafka users configure it (docs/compaction.md): cleanup.policy=compact topics
are cleaned in the background to the latest value per key, offsets of survivors unchanged,
tombstones removed after delete.retention.ms, keyless records refused, kill -9 during cleaning
loses nothing; transactions on a compacted topic (aborted data never replaces a committed value
and is removed, markers go after delete.retention.ms, an open transaction holds the cleaner at
its first offset). Every test that cleans runs twice: on a default broker (encryption at rest on,
local KMS: the cleaner rewrites sealed segments under fresh data keys) and with encryption off."""
import os
import re
import struct
import time

import pytest

import helpers as h
import kproto as kp
from conftest import wait_until
from test_encryption_at_rest import fix_frame_crcs, seg_frames
from test_keys_lifecycle import status, topic_status

FAST_CLEANER = {"log.cleaner.backoff.ms": 100}


def both(cfg=None):
    """Parametrizes a test (argument `enc`) over encryption at rest on (the default) and off."""
    cfg = cfg or FAST_CLEANER
    return pytest.mark.parametrize("enc", [
        pytest.param(True, id="encrypted",
                     marks=pytest.mark.broker_config(dict(cfg, **{"sluice.encryption.enable":
                                                                  "true"}))),
        pytest.param(False, id="plaintext",
                     marks=pytest.mark.broker_config(dict(cfg, **{"sluice.encryption.enable":
                                                                  "false"})))])
# Small segments so that most of the log is in closed (cleanable) segments.
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "4096",
             "min.cleanable.dirty.ratio": "0.01"}
SMALL_BATCHES = {"linger.ms": 0, "batch.num.messages": 10}


def updates(nkeys, rounds, size=40, tag=b"v"):
    """Rounds of updates of keys k000..: the value names the key and the round."""
    return [h.Rec(0, b"k%03d" % k, b"%s-%03d-%04d-" % (tag, k, r) + b"x" * size, (), None)
            for r in range(rounds) for k in range(nkeys)]


def filler(n, tag=b"f"):
    """Records under keys of their own: they roll the segments holding the updates, so those
    become closed and cleanable (the active segment is never cleaned, as in Kafka)."""
    return [h.Rec(0, b"%s%05d" % (tag, i), b"filler-" + b"y" * 60, (), None) for i in range(n)]


def read_all(bootstrap, topic, timeout=60, isolation="read_committed"):
    """Every record of partition 0 from offset 0 to the high watermark (the last stable offset
    for read_committed, librdkafka's default), as Got."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-interop-unused",
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.wait.max.ms": 100, "enable.partition.eof": True,
                  "isolation.level": isolation})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"read of {topic} timed out at {len(got)}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == m.error()._PARTITION_EOF:
                        if m.offset() >= hi:
                            return got, hi
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                got.append(h.Got(0, m.offset(), m.key(), m.value(), (), m.timestamp()[1]))
                if m.offset() >= hi - 1:
                    return got, hi
    finally:
        c.close()


def log_bytes(broker, topic):
    d = broker.data_dir / f"{topic}-0"
    return sum(f.stat().st_size for f in d.glob("*.log")) if d.is_dir() else 0


def cleaned_lines(broker):
    return re.findall(r"partition cleaned.*", broker.log_text())


def latest_by_key(acked):
    """key -> (offset, value) of the last acked record per key."""
    out = {}
    for off in sorted(acked):
        r = acked[off]
        out[r.key] = (off, r.value)
    return out


def check_compacted(got, acked, keys):
    """Exactly one record per key of `keys`, its latest value at its produced offset; every
    survivor is a produced record at its produced offset."""
    latest = latest_by_key(acked)
    seen = {}
    offs = [g.offset for g in got]
    assert offs == sorted(set(offs)), "offsets must increase"
    for g in got:
        assert g.offset in acked, f"offset {g.offset} was never produced"
        assert acked[g.offset].key == g.key and acked[g.offset].value == g.value, \
            f"record at {g.offset} differs from what was produced"
        seen.setdefault(g.key, []).append(g)
    for k in keys:
        assert len(seen.get(k, [])) == 1, f"{k}: {len(seen.get(k, []))} records, expected 1"
        g = seen[k][0]
        assert (g.offset, g.value) == latest[k], f"{k}: not the latest value"


def fetch_v3(c, topic, offset):
    """Fetch v3 (before the v2 record format): (error, message set bytes) of partition 0."""
    w = kp.Writer().i32(-1).i32(100).i32(1).i32(1 << 20)
    w.array([0], lambda ww, _: (ww.string(topic), ww.array(
        [0], lambda w2, _: w2.i32(0).i64(offset).i32(1 << 20))))
    r = c.call(kp.FETCH, 3, w.bytes())
    r.i32()  # throttle
    out = []
    for name, ps in r.array(lambda rr: (rr.string(), rr.array(
            lambda x: (x.i32(), x.i16(), x.i64(), x.nbytes())))):
        out += [(e, recs or b"") for (_p, e, _hw, recs) in ps]
    return out[0]


def parse_legacy(data):
    """Offsets of the whole messages of a magic 0/1 message set."""
    import struct
    out, i = [], 0
    while i + 12 <= len(data):
        off, size = struct.unpack(">qi", data[i:i + 12])
        if i + 12 + size > len(data):
            break
        out.append(off)
        i += 12 + size
    return out


def produce(broker, topic, recs):
    acked = h.ck_produce(broker.bootstrap, topic, recs, extra=SMALL_BATCHES)
    return acked.get(0, {})


@both()
def test_compacts_to_latest_value_per_key(broker, enc):
    topic = "compacted"
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    nkeys, rounds = 50, 40
    acked = produce(broker, topic, updates(nkeys, rounds))
    acked.update(produce(broker, topic, filler(200)))
    assert len(acked) == nkeys * rounds + 200
    keys = [b"k%03d" % k for k in range(nkeys)]

    def compacted():
        got, _ = read_all(broker.bootstrap, topic)
        # A reader during cleaning: the latest value of every key is always there.
        latest = latest_by_key(acked)
        last = {}
        for g in got:
            last[g.key] = (g.offset, g.value)
        for k in keys:
            assert last.get(k) == latest[k], f"{k}: latest value missing during cleaning"
        per_key = {}
        for g in got:
            per_key[g.key] = per_key.get(g.key, 0) + 1
        return got if all(per_key.get(k) == 1 for k in keys) else None
    got = wait_until(compacted, 90, "one record per key after cleaning", interval=0.3)
    check_compacted(got, acked, keys)
    lines = [ln for ln in cleaned_lines(broker) if f"topic={topic} " in ln]
    b0 = sum(int(re.search(r"bytes_before=(\d+)", ln).group(1)) for ln in lines)
    b1 = sum(int(re.search(r"bytes_after=(\d+)", ln).group(1)) for ln in lines)
    print(f"records produced={len(acked)} survivors={len(got)} cleans={len(lines)} rewritten "
          f"bytes before={b0} after={b1}; log on disk {log_bytes(broker, topic)} bytes")
    assert b1 < b0
    # Legacy Fetch (v0-3, message format 0/1): the leading segments now hold only empty batches,
    # which convert to nothing; the read continues past them to the first survivor.
    with kp.Conn(broker.bootstrap) as c:
        err, records = fetch_v3(c, topic, 0)
        assert err == 0
        legacy = parse_legacy(records)
        assert legacy and legacy[0] == got[0].offset, (legacy[:3], got[0].offset)
        assert legacy == [g.offset for g in got][:len(legacy)]
    # The same through a restart (the swapped files are what is read).
    broker.restart()
    got2, _ = read_all(broker.bootstrap, topic)
    check_compacted(got2, acked, keys)


@both()
def test_tombstones_removed_after_delete_retention(broker, enc):
    topic = "tombstones"
    h.ck_create_topic(broker.bootstrap, topic, 1, dict(COMPACTED, **{"delete.retention.ms": "2000"}))
    acked = produce(broker, topic, updates(20, 5))
    dead = [b"k%03d" % k for k in range(0, 20, 2)]
    t_tomb = time.monotonic()
    acked.update(produce(broker, topic, [h.Rec(0, k, None, (), None) for k in dead]))
    acked.update(produce(broker, topic, filler(150)))
    live = [b"k%03d" % k for k in range(1, 20, 2)]

    def state():
        got, _ = read_all(broker.bootstrap, topic)
        return {g.key: g.value for g in got}, got
    # First the tombstones are the only record of their keys (older values cleaned away)...
    t0 = time.monotonic()
    wait_until(lambda: (lambda s: all(s[0].get(k, b"") is None for k in dead) and
                        sum(1 for g in s[1] if g.key in dead) == len(dead))(state()),
               60, "tombstones alone for their keys", interval=0.3)
    # ...then, after delete.retention.ms, they are gone too; live keys keep their latest value.
    wait_until(lambda: not any(k in state()[0] for k in dead), 60, "tombstones removed",
               interval=0.3)
    elapsed = time.monotonic() - t0
    # Never before delete.retention.ms: the horizon starts at the clean that first kept them.
    assert time.monotonic() - t_tomb >= 2.0
    s, got = state()
    latest = latest_by_key(acked)
    for k in live:
        assert s[k] == latest[k][1]
    print(f"tombstones removed {elapsed:.1f}s after first seen alone (delete.retention.ms=2000)")


@pytest.mark.broker_config(FAST_CLEANER)
def test_keyless_record_refused_on_compacted_topic(broker):
    from confluent_kafka import KafkaError, Producer
    topic = "compacted-keys"
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    errs = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": 20000, "retries": 0})
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.INVALID_RECORD, errs
    # Compressed: a keyless record among keyed ones refuses its whole batch.
    res = {}
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 200,
                  "message.timeout.ms": 20000, "retries": 0, "compression.type": "lz4"})
    for i in range(20):
        p.produce(topic, key=None if i == 13 else b"k%d" % i, value=b"v" * 100, partition=0,
                  on_delivery=lambda e, m, i=i: res.__setitem__(i, e))
    p.flush(30)
    assert len(res) == 20 and res[13] is not None and res[13].code() == KafkaError.INVALID_RECORD
    refused = [i for i, e in res.items() if e is not None]
    assert all(res[i].code() == KafkaError.INVALID_RECORD for i in refused)
    acked = produce(broker, topic, [h.Rec(0, b"k", b"v", (), None)])
    got, _ = read_all(broker.bootstrap, topic)
    # Nothing of a refused batch was appended: exactly the accepted records are in the log.
    assert len(got) == 20 - len(refused) + 1 and all(g.key is not None for g in got)
    assert list(acked) == [20 - len(refused)]
    print(f"lz4 batch with one keyless record: {len(refused)} of 20 records refused")
    h.ck_create_topic(broker.bootstrap, "plain", 1)
    assert produce(broker, "plain", [h.Rec(0, None, b"v", (), None)])


@both()
def test_kill9_during_cleaning_loses_nothing(broker, enc):
    topic = "crashy"
    # A large offset map budget is not needed; many segments make each clean take a while.
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    nkeys, rounds = 200, 20
    acked = produce(broker, topic, updates(nkeys, rounds, size=200))
    keys = [b"k%03d" % k for k in range(nkeys)]
    kills = mid = 0
    latest = {}
    for i in range(5):
        # New dirty data each round, so that a clean starts; kill -9 as soon as the log says so
        # (polled; the kill is the fault, its timing varies run to run).
        n = broker.log_text().count("clean started")
        acked.update(produce(broker, topic, updates(nkeys, 5, size=200, tag=b"r%d" % i)))
        acked.update(produce(broker, topic, filler(100, tag=b"g%d-" % i)))
        wait_until(lambda: broker.log_text().count("clean started") > n or None, 60,
                   "a clean starts", interval=0.002)
        text = broker.log_text()
        broker.kill9()
        kills += 1
        mid += text.count("clean started") > text.count("partition cleaned")
        broker.start()
        got, _ = read_all(broker.bootstrap, topic)
        latest = latest_by_key(acked)
        last = {}
        for g in got:
            assert acked[g.offset].key == g.key and acked[g.offset].value == g.value
            last[g.key] = (g.offset, g.value)
        for k in keys:
            assert last.get(k) == latest[k], f"{k}: latest value lost after kill -9"
    acked.update(produce(broker, topic, filler(100, tag=b"h")))
    got = wait_until(lambda: (lambda g: g if sum(1 for x in g if x.key in set(keys)) == nkeys
                              else None)(read_all(broker.bootstrap, topic)[0]),
                     120, "compaction completes after the kills", interval=0.5)
    check_compacted(got, acked, keys)
    print(f"kills={kills} during a clean={mid} records={len(acked)} survivors={len(got)}")
    assert mid >= 1, "no kill landed during a clean"


@both(dict(FAST_CLEANER, **{"log.retention.check.interval.ms": 200}))
def test_compact_delete_also_applies_retention(broker, enc):
    topic = "compact-delete"
    h.ck_create_topic(broker.bootstrap, topic, 1,
                      dict(COMPACTED, **{"cleanup.policy": "compact,delete",
                                         "retention.bytes": "16384"}))
    # 300 keys: their latest values alone take more than retention.bytes, so retention must move
    # the log start whether it runs before the cleaner or after it (20 keys compacted to 6 KB:
    # when the cleaner came first, as on a loaded machine, retention had nothing to delete).
    produce(broker, topic, updates(300, 3))
    with kp.Conn(broker.bootstrap) as c:
        start = wait_until(lambda: (lambda r: r[1] if r[0] == kp.NONE and r[1] > 0 else None)(
            kp.list_offsets(c, topic, 0, kp.EARLIEST)), 30, "retention moves the log start")
    assert start > 0
    # compact alone: retention.bytes is not applied (Kafka: only with delete in the policy).
    h.ck_create_topic(broker.bootstrap, "compact-only", 1,
                      dict(COMPACTED, **{"retention.bytes": "16384"}))
    produce(broker, "compact-only", updates(20, 40))
    wait_until(lambda: cleaned_lines(broker) and "compact-only" in "".join(cleaned_lines(broker))
               or None, 60, "compact-only is cleaned")
    with kp.Conn(broker.bootstrap) as c:
        assert kp.list_offsets(c, "compact-only", 0, kp.EARLIEST) == (kp.NONE, 0)


@pytest.mark.broker_config(FAST_CLEANER)
def test_configs_described_and_validated(broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, NewTopic
    a = h.ck_admin(broker.bootstrap)
    h.ck_create_topic(broker.bootstrap, "described", 1,
                      {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.25"})
    res = ConfigResource(ConfigResource.Type.TOPIC, "described")
    cfg = a.describe_configs([res])[res].result(timeout=15)
    assert cfg["cleanup.policy"].value == "compact,delete"
    assert cfg["min.cleanable.dirty.ratio"].value == "0.25"
    assert cfg["delete.retention.ms"].value == "86400000" and cfg["delete.retention.ms"].is_default
    assert cfg["min.compaction.lag.ms"].value == "0"
    assert cfg["max.compaction.lag.ms"].value == str(2**63 - 1)
    for bad in ({"cleanup.policy": "shred"}, {"cleanup.policy": ""},
                {"min.cleanable.dirty.ratio": "1.5"}, {"delete.retention.ms": "-1"},
                {"max.compaction.lag.ms": "0"}, {"min.compaction.lag.ms": "x"}):
        fs = a.create_topics([NewTopic("bad-cfg", 1, 1, config=bad)], request_timeout=15)
        with pytest.raises(KafkaException) as ei:
            fs["bad-cfg"].result(timeout=30)
        assert ei.value.args[0].name() == "INVALID_CONFIG", (bad, ei.value)
    # AlterConfigs (this confluent-kafka has no incremental_alter_configs; the broker shares the
    # validation between both, sl_tcfg_parse).
    bad_alter = ConfigResource(ConfigResource.Type.TOPIC, "described",
                               set_config={"min.cleanable.dirty.ratio": "2"})
    with pytest.raises(KafkaException) as ei:
        a.alter_configs([bad_alter])[bad_alter].result(timeout=15)
    assert ei.value.args[0].name() == "INVALID_CONFIG"
    ok = ConfigResource(ConfigResource.Type.TOPIC, "described",
                        set_config={"cleanup.policy": "compact"})
    a.alter_configs([ok])[ok].result(timeout=15)
    cfg = a.describe_configs([res])[res].result(timeout=15)
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["min.cleanable.dirty.ratio"].is_default  # AlterConfigs replaced the overrides
    # IncrementalAlterConfigs (raw): SET of a bad value is refused, a good one applies.
    with kp.Conn(broker.bootstrap) as c:
        r = kp.incremental_alter_configs(c, 2, "described", [("max.compaction.lag.ms", 0, "0")])
        assert r[0][0] == 40, r  # INVALID_CONFIG
        r = kp.incremental_alter_configs(c, 2, "described",
                                         [("cleanup.policy", 0, "delete,compact")])
        assert r[0][0] == 0, r
    cfg = a.describe_configs([res])[res].result(timeout=15)
    assert cfg["cleanup.policy"].value == "compact,delete"


def test_bad_broker_cleaner_config_fails_start(tmp_path):
    from conftest import Broker
    for key, val in (("log.cleanup.policy", "forever"), ("log.cleaner.min.cleanable.ratio", "2"),
                     ("log.cleaner.backoff.ms", "-5"), ("log.cleaner.dedupe.buffer.size", "10")):
        (tmp_path / key).mkdir()
        b = Broker(tmp_path / key, {key: val})
        rc = b.start_may_fail()
        assert rc not in (None, 0), f"{key}={val} accepted"
        assert key in b.log_text(), f"the error must name {key}\n{b.log_tail()}"


MARKER = b"Q7#plaintext!M4r"  # 16 bytes, in every value: must never be on disk in the clear


def files_with(root, needle):
    hits = []
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    if needle in f.read():
                        hits.append(p)
    return hits


@pytest.mark.broker_config({"log.cleaner.backoff.ms": 100})
def test_encrypted_compaction_default_broker(broker):
    """A default broker (encryption at rest on, local KMS) compacts a compacted topic to the
    latest value per key; the rewritten segments are sealed under the topic's current key
    version and no value is on disk in the clear, before, during or after cleaning (the cleaner
    decrypts in memory only and wipes its buffers)."""
    topic = "enc-compacted"
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    nkeys, rounds = 50, 40
    recs = [h.Rec(0, b"k%03d" % k, b"v-%03d-%04d-" % (k, r) + MARKER + b"x" * 24, (), None)
            for r in range(rounds) for k in range(nkeys)]
    acked = produce(broker, topic, recs)
    acked.update(produce(broker, topic, filler(200)))
    assert len(acked) == nkeys * rounds + 200
    keys = [b"k%03d" % k for k in range(nkeys)]
    pdir = broker.data_dir / f"{topic}-0"
    assert not files_with(pdir, MARKER)
    got = wait_until(lambda: (lambda g: g if sum(1 for x in g if x.key in set(keys)) == nkeys
                              else None)(read_all(broker.bootstrap, topic)[0]),
                     90, "one record per key after cleaning", interval=0.3)
    check_compacted(got, acked, keys)
    lines = [ln for ln in cleaned_lines(broker) if f"topic={topic} " in ln]
    assert lines and sum(int(re.search(r"segments=(\d+)", ln).group(1)) for ln in lines) > 0
    assert not files_with(pdir, MARKER), "plaintext of a record on disk after compaction"
    assert "stored data failed authentication" not in broker.log_text()
    st = topic_status(status(broker), topic)
    assert set(st["by_tk_version"]) == {str(st["tk_version"])}, st  # no plaintext (0), no other
    assert st["pending"] == 0, st
    broker.restart()
    got2, _ = read_all(broker.bootstrap, topic)
    check_compacted(got2, acked, keys)


@pytest.mark.broker_config({"log.cleaner.backoff.ms": 100, "log.segment.bytes": 4096})
def test_encrypted_tampered_segment_not_laundered(broker):
    """A sealed batch edited on disk (CRCs fixed up, as a deliberate tamperer would) in a topic
    that then becomes compacted: the clean fails authentication, is reported as a tamper event
    naming the segment, rewrites nothing (the file is byte for byte as edited, no `.cleaned`
    file) and the batch still fails to read; the broker carries on."""
    topic = "enc-tampered"
    h.ck_create_topic(broker.bootstrap, topic, 1)  # delete policy: nothing cleans it yet
    acked = produce(broker, topic, updates(20, 20))
    acked.update(produce(broker, topic, filler(60)))
    broker.stop()
    pdir = broker.data_dir / f"{topic}-0"
    seg0 = pdir / ("0" * 20 + ".log")
    data = bytearray(seg0.read_bytes())
    version, _flags, _hl, frames = seg_frames(seg0)
    assert version == 2 and len(frames) > 2
    pos, flen, fflags, fh, n = frames[1]
    assert fflags & 1
    data[pos + flen - 16 - 3] ^= 0x01  # the ciphertext, before the tag
    fix_frame_crcs(data, pos, flen, fh, n)
    seg0.write_bytes(bytes(data))
    broker.start()
    from confluent_kafka.admin import ConfigResource
    a = h.ck_admin(broker.bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config=dict(COMPACTED))
    a.alter_configs([res])[res].result(timeout=15)
    wait_until(lambda: 'what="cleaner: segment 0"' in broker.log_text() or None, 30,
               "the cleaner's tamper report for segment 0")
    assert "partition cleaned" not in broker.log_text()
    assert seg0.read_bytes() == bytes(data), "the tampered segment was rewritten"
    assert not list(pdir.glob("*.cleaned")) and not (pdir / "cleaner-swap").exists()
    (off,) = struct.unpack(">q", data[pos + 20:pos + 28])  # the edited batch's base offset
    with kp.Conn(broker.bootstrap) as c:
        assert kp.fetch(c, topic, 0, off)["error"] != kp.NONE
    assert broker.alive()


@both()
def test_delete_topic_during_cleaning(broker, enc):
    """A topic deleted while its partition is being cleaned: the clean is finished first, the
    directory goes, the broker carries on (and a topic of the same name starts empty)."""
    topic = "doomed"
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    n = broker.log_text().count("clean started")
    produce(broker, topic, updates(200, 20, size=200))
    wait_until(lambda: broker.log_text().count("clean started") > n or None, 60,
               "a clean starts", interval=0.002)
    a = h.ck_admin(broker.bootstrap)
    a.delete_topics([topic], operation_timeout=10, request_timeout=15)[topic].result(30)
    wait_until(lambda: not (broker.data_dir / f"{topic}-0").exists() or None, 30,
               "the partition directory is removed")
    h.ck_create_topic(broker.bootstrap, topic, 1, COMPACTED)
    acked = produce(broker, topic, [h.Rec(0, b"k", b"v", (), None)])
    assert list(acked) == [0]
    print("settled:", "topic deleted during a clean" in broker.log_text())


@both(dict(FAST_CLEANER, **{"log.cleanup.policy": "compact",
                           "log.cleaner.min.cleanable.ratio": "0.01", "log.segment.bytes": 4096}))
def test_broker_default_policy_compact(broker, enc):
    """log.cleanup.policy=compact makes every topic without its own policy compacted: it shows as
    the default in DescribeConfigs (synonym log.cleanup.policy), refuses keyless records and is
    cleaned with the broker's defaults."""
    from confluent_kafka.admin import ConfigResource
    from confluent_kafka import KafkaError, Producer
    h.ck_create_topic(broker.bootstrap, "bydefault", 1)
    a = h.ck_admin(broker.bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, "bydefault")
    cfg = a.describe_configs([res])[res].result(timeout=15)
    assert cfg["cleanup.policy"].value == "compact" and cfg["cleanup.policy"].is_default
    assert cfg["min.cleanable.dirty.ratio"].value == "0.01"
    errs = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": 20000, "retries": 0})
    p.produce("bydefault", value=b"no key", partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.INVALID_RECORD, errs
    acked = produce(broker, "bydefault", updates(20, 20))
    acked.update(produce(broker, "bydefault", filler(100)))
    keys = [b"k%03d" % k for k in range(20)]
    got = wait_until(lambda: (lambda g: g if sum(1 for x in g if x.key in set(keys)) == 20
                              else None)(read_all(broker.bootstrap, "bydefault")[0]),
                     60, "the default-compacted topic is cleaned", interval=0.3)
    check_compacted(got, acked, keys)


# ---- transactions on a compacted topic (docs/compaction.md, "Transactions") -------------------

def txn_producer(broker, tid):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": tid,
                  "transaction.timeout.ms": 120000, "linger.ms": 0})
    p.init_transactions(30)
    return p


def txn_send(p, topic, recs, commit=True, finish=True):
    """One transaction of (key, value) records; the offsets it got. finish=False leaves it open."""
    offs = []
    p.begin_transaction()
    for k, v in recs:
        p.produce(topic, key=k, value=v, partition=0,
                  on_delivery=lambda e, m: offs.append(m.offset()) if e is None else None)
    p.flush(30)
    if finish:
        (p.commit_transaction if commit else p.abort_transaction)(30)
    assert len(offs) == len(recs)
    return offs


def counter(broker, topic, field):
    """The sum of `field` over the "partition cleaned" lines of `topic`."""
    return sum(int(m.group(1)) for ln in cleaned_lines(broker) if f"topic={topic} " in ln
               for m in [re.search(field + r"=(\d+)", ln)] if m)


def values_of(got, key):
    return [g.value for g in got if g.key == key]


@both(dict(FAST_CLEANER))
def test_transactions_on_compacted_topic(broker, enc):
    """commit k=v1, abort k=v2 (a later offset), commit k2; after a clean, read_committed AND
    read_uncommitted see k=v1 and never v2 (the aborted batch is gone, not just filtered); after
    delete.retention.ms a later clean removes the ABORT marker and aborted.idx empties; after a
    restart, the same, and a read_committed consumer reaches the high watermark (no stall)."""
    topic = "txn-compacted"
    h.ck_create_topic(broker.bootstrap, topic, 1, dict(COMPACTED, **{"delete.retention.ms": "2000"}))
    p = txn_producer(broker, "compacted-writer")
    [v1] = txn_send(p, topic, [(b"k", b"v1")])
    [v2] = txn_send(p, topic, [(b"k", b"v2-aborted")], commit=False)
    txn_send(p, topic, [(b"k2", b"w1")])
    assert v2 > v1
    before, _ = read_all(broker.bootstrap, topic, isolation="read_uncommitted")
    assert values_of(before, b"k") == [b"v1", b"v2-aborted"]  # not cleaned yet: both there
    acked = produce(broker, topic, filler(150))
    assert len(acked) == 150
    wait_until(lambda: counter(broker, topic, "aborted_batches_dropped") >= 1, 60,
               "a clean removes the aborted batch", interval=0.2)

    def check(level):
        got, hi = read_all(broker.bootstrap, topic, isolation=level)
        assert values_of(got, b"k") == [b"v1"], (level, values_of(got, b"k"))
        assert values_of(got, b"k2") == [b"w1"], level
        assert not any(g.value == b"v2-aborted" for g in got), level
        assert len([g for g in got if g.key.startswith(b"f")]) == 150, level
        return hi
    hi_rc, hi_ru = check("read_committed"), check("read_uncommitted")
    assert hi_rc == hi_ru
    # The ABORT marker waits for its delete horizon, then a clean (due by the horizon) removes
    # it, and its aborted.idx entry goes with it.
    wait_until(lambda: counter(broker, topic, "markers_removed") >= 1, 60,
               "the ABORT marker removed after delete.retention.ms", interval=0.2)
    idx = broker.data_dir / f"{topic}-0" / "aborted.idx"
    wait_until(lambda: not idx.exists() or idx.stat().st_size == 0, 10, "aborted.idx emptied")
    p.flush(10)
    broker.restart()
    assert check("read_committed") == check("read_uncommitted") == hi_ru
    # A new transaction after the restart works and is visible to read_committed.
    p = txn_producer(broker, "compacted-writer")
    txn_send(p, topic, [(b"k", b"v3")])
    got, _ = read_all(broker.bootstrap, topic)
    assert values_of(got, b"k") == [b"v1", b"v3"]
    print(f"cleans={len([ln for ln in cleaned_lines(broker) if f'topic={topic} ' in ln])} "
          f"aborted_batches_dropped={counter(broker, topic, 'aborted_batches_dropped')} "
          f"markers_removed={counter(broker, topic, 'markers_removed')}")


@both(dict(FAST_CLEANER))
def test_open_transaction_holds_cleaning(broker, enc):
    """With a transaction open, the cleaner stops at its first offset: the duplicates below it are
    cleaned, those above it all survive; once it commits they are cleaned too, and the
    transaction's record stays."""
    topic = "txn-held"
    # A min.compaction.lag.ms of an hour until everything is produced: the first clean then sees
    # the duplicates above the open transaction in closed segments (without the bound it would
    # clean them).
    h.ck_create_topic(broker.bootstrap, topic, 1,
                      dict(COMPACTED, **{"min.compaction.lag.ms": "3600000"}))
    below = produce(broker, topic, updates(10, 8, tag=b"a"))
    p = txn_producer(broker, "held-writer")
    [first] = txn_send(p, topic, [(b"t", b"in-txn")], finish=False)
    above = produce(broker, topic, updates(20, 6, tag=b"b"))
    above.update(produce(broker, topic, filler(100)))
    assert min(above) > first > max(below)
    with kp.Conn(broker.bootstrap) as c:
        r = kp.incremental_alter_configs(c, 2, topic, [("min.compaction.lag.ms", 0, "0")])
        assert r[0][0] == 0, r
    wait_until(lambda: counter(broker, topic, "records_dropped") > 0, 60,
               "the part below the open transaction is cleaned", interval=0.2)
    lines = [ln for ln in cleaned_lines(broker) if f"topic={topic} " in ln]
    assert all(int(re.search(r"first_dirty=(\d+)", ln).group(1)) <= first for ln in lines), lines
    got, _ = read_all(broker.bootstrap, topic, isolation="read_uncommitted")
    offs = {g.offset for g in got}
    assert set(above) <= offs, "a record above the open transaction was cleaned"
    ck = max(int(re.search(r"first_dirty=(\d+)", ln).group(1)) for ln in lines)
    cleaned = [g.key for g in got if g.offset < ck]
    assert cleaned and len(cleaned) == len(set(cleaned))  # one per key in the cleaned part
    p.commit_transaction(30)
    produce(broker, topic, filler(100, tag=b"g"))
    keys = [b"k%03d" % k for k in range(20)]

    def compacted():
        g, _ = read_all(broker.bootstrap, topic)
        return g if all(len([x for x in g if x.key == k]) == 1 for k in keys) else None
    got = wait_until(compacted, 60, "cleaned after the commit", interval=0.3)
    assert values_of(got, b"t") == [b"in-txn"]
    print(f"cleans while the transaction was open={len(lines)}, first offset={first}, "
          f"checkpoint={ck}")


@both(dict(FAST_CLEANER))
def test_backlog_cleaned_in_windows(broker, enc):
    """A backlog of over 64 dirty segments (held back by min.compaction.lag.ms until it is all
    there) is cleaned in windows of at most 64 dirty segments, each clean starting where the last
    one stopped, to one record per key: the cap never stalls a partition."""
    topic = "backlog"
    h.ck_create_topic(broker.bootstrap, topic, 1,
                      dict(COMPACTED, **{"min.compaction.lag.ms": "3600000"}))
    nkeys = 50
    acked = produce(broker, topic, updates(nkeys, 80))
    acked.update(produce(broker, topic, filler(100)))
    nseg = len(list((broker.data_dir / f"{topic}-0").glob("*.log")))
    assert nseg > 80, nseg
    with kp.Conn(broker.bootstrap) as c:
        r = kp.incremental_alter_configs(c, 2, topic, [("min.compaction.lag.ms", 0, "0")])
        assert r[0][0] == 0, r
    keys = [b"k%03d" % k for k in range(nkeys)]

    def compacted():
        got, _ = read_all(broker.bootstrap, topic)
        return got if all(len([g for g in got if g.key == k]) == 1 for k in keys) else None
    got = wait_until(compacted, 120, "the backlog compacted", interval=0.5)
    check_compacted(got, acked, keys)
    lines = [ln for ln in cleaned_lines(broker) if f"topic={topic} " in ln]
    cks = [int(re.search(r"first_dirty=(\d+)", ln).group(1)) for ln in lines]
    assert len(lines) >= 2 and cks == sorted(cks) and cks[0] < cks[-1], lines
    print(f"segments={nseg} cleans={len(lines)} checkpoints={cks}")
