"""Answers that must be Kafka's exactly, found wrong by a client library's own test suite
(issue 10): committed-offset metadata is bytes and round-trips with NULs; ListOffsets by
timestamp inside a multi-record batch answers the record's offset, not the batch's;
fetch.max.bytes binds from the first partition on. The broker's own fetch.max.bytes caps
answers for every client and version, never below the first batch."""
import time

import pytest

import helpers as h
import kproto as kp

OFFSET_COMMIT, OFFSET_FETCH = 8, 9


def raw_str(w, b):
    w.i16(len(b)).raw(b)


def test_offset_commit_metadata_with_nul_round_trips(broker):
    h.ck_create_topic(broker.bootstrap, "meta", 1)
    meta = b"Hello\x00world!"
    with kp.Conn(broker.bootstrap) as c:
        # OffsetCommit v2: a simple (non-member) commit.
        w = kp.Writer().string("solo").i32(-1).string("").i64(-1)
        w.array([0], lambda ww, _: (ww.string("meta"),
                                    ww.array([0], lambda x, _: (x.i32(0), x.i64(5),
                                                                raw_str(x, meta)))))
        r = c.call(OFFSET_COMMIT, 2, w.bytes())
        assert r.array(lambda rr: (rr.string(), rr.array(lambda x: (x.i32(), x.i16())))) == \
            [("meta", [(0, kp.NONE)])]
        # OffsetFetch v1: the metadata comes back byte for byte.
        w = kp.Writer().string("solo")
        w.array([0], lambda ww, _: (ww.string("meta"), ww.array([0], lambda x, _: x.i32(0))))
        r = c.call(OFFSET_FETCH, 1, w.bytes())

        def part(x):
            idx, off = x.i32(), x.i64()
            n = x.i16()
            return idx, off, x.take(n) if n >= 0 else None, x.i16()
        got = r.array(lambda rr: (rr.string(), rr.array(part)))
    assert got == [("meta", [(0, 5, meta, kp.NONE)])]


def test_list_offsets_by_timestamp_inside_a_batch_answers_the_record(broker):
    """Ten records with timestamps 1000..1009 in one lz4 batch (one produce call, flushed
    together): asked for 1005, Kafka answers offset 5 with timestamp 1005, not the batch's
    first offset."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    h.ck_create_topic(broker.bootstrap, "times", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1000,
                  "compression.codec": "lz4", "batch.num.messages": 100})
    for i in range(10):
        p.produce("times", value=b"v%d" % i, partition=0, timestamp=1000 + i)
    assert p.flush(30) == 0
    with kp.Conn(broker.bootstrap) as c:
        f = kp.fetch(c, "times", 0, 0)
        # Usually one batch; under load the client may cut it, but some batch must hold
        # several records for the lookups below to land inside one.
        batches = kp.batch_base_offsets(f["records"])
        assert batches and any(last > base for base, last in batches), batches
    cons = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times-probe",
                     "enable.auto.commit": False})
    try:
        for ts, want in [(1000 + i, i) for i in range(10)] + [(1010, -1)]:
            (tp,) = cons.offsets_for_times([TopicPartition("times", 0, ts)], timeout=15)
            assert tp.error is None and tp.offset == want, (ts, tp)
    finally:
        cons.close()
    with kp.Conn(broker.bootstrap) as c:
        err, off = kp.list_offsets(c, "times", 0, 1007)
        assert (err, off) == (kp.NONE, 7)


def fetch_v11(conn, topic, partitions, max_bytes, partition_max_bytes):
    """Fetch v11 of `partitions` (all from offset 0); returns {partition: records bytes}."""
    w = kp.Writer().i32(-1).i32(0).i32(1).i32(max_bytes).i8(0).i32(0).i32(-1)

    def part(ww, p):
        ww.i32(p).i32(-1).i64(0).i64(-1).i32(partition_max_bytes)
    w.array([0], lambda ww, _: (ww.string(topic), ww.array(partitions, part)))
    w.array([], None)
    w.string("")
    r = conn.call(kp.FETCH, 11, w.bytes())
    r.i32()
    assert r.i16() == kp.NONE
    r.i32()

    def rpart(rr):
        p, err = rr.i32(), rr.i16()
        rr.i64(), rr.i64(), rr.i64()
        rr.array(lambda x: (x.i64(), x.i64()))
        rr.i32()
        return p, err, rr.nbytes() or b""
    out = {}
    for _, ps in r.array(lambda rr: (rr.string(), rr.array(rpart))):
        for p, err, recs in ps:
            assert err == kp.NONE
            out[p] = recs
    return out


def test_fetch_max_bytes_bounds_the_first_partition_too(broker):
    """fetch.max.bytes binds from the first partition on: only the first batch of the response
    may exceed it (KIP-74), never a whole partition's worth (the broker sent 19 MB against a
    1 MB limit and the client disconnected and retried in a loop)."""
    h.ck_create_topic(broker.bootstrap, "fmb", 2)
    value = bytes(range(256)) * 400  # ~100 KB records, one per batch
    with kp.Conn(broker.bootstrap) as c:
        for p in (0, 1):
            for i in range(30):
                err, _ = kp.produce(c, "fmb", p, kp.record_batch([(b"k%d" % i, value, [])]))
                assert err == kp.NONE
        got = fetch_v11(c, "fmb", [0, 1], max_bytes=1 << 20, partition_max_bytes=10 << 20)
        total = sum(len(v) for v in got.values())
        first = kp.batch_base_offsets(got[0])
        assert first and first[0][0] == 0
        one_batch = len(kp.record_batch([(b"k0", value, [])]))
        assert total <= (1 << 20) + one_batch, f"{total} bytes against fetch.max.bytes 1 MiB"
        # A first batch larger than fetch.max.bytes still comes whole, alone.
        got = fetch_v11(c, "fmb", [0, 1], max_bytes=1000, partition_max_bytes=10 << 20)
        assert len(kp.batch_base_offsets(got[0])) == 1 and got[1] == b""
    # A real client with fetch.max.bytes below the data in one partition reads it all.
    from confluent_kafka import Consumer, TopicPartition
    cons = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fmb",
                     "fetch.max.bytes": 1 << 20, "max.partition.fetch.bytes": 10 << 20,
                     "enable.auto.commit": False})
    try:
        cons.assign([TopicPartition("fmb", 0, 0), TopicPartition("fmb", 1, 0)])
        n = 0
        deadline = time.monotonic() + 60
        while n < 60 and time.monotonic() < deadline:
            m = cons.poll(1)
            if m is not None and m.error() is None:
                assert m.value() == value
                n += 1
        assert n == 60
    finally:
        cons.close()


@pytest.mark.broker_config({"fetch.max.bytes": 1024})
def test_real_consumers_read_everything_under_the_smallest_broker_fetch_max_bytes(broker):
    """The broker's fetch.max.bytes (Kafka's key; 1024 is its least) caps every answer whatever
    the consumer asks, but never below the first batch: librdkafka and kafka-python (with Fetch
    v4+ and, kafka-python pinned to 0.10.0, Fetch v2, which has no limit of its own) read every
    record, byte for byte, in one-batch answers."""
    h.ck_create_topic(broker.bootstrap, "capped", 3)
    records = h.make_records("capped", 3000)
    acked = h.ck_produce(broker.bootstrap, "capped", records)
    expected = h.expected_from_acks(acked, "capped")
    counts = {p: len(rs) for p, rs in expected.items()}
    with kp.Conn(broker.bootstrap) as c:
        # The cap holds: a fetch asking for a MiB gets the first batch only.
        p = kp.fetch(c, "capped", 0, 0, max_bytes=1 << 20)
        bases = [o for o, _ in kp.batch_base_offsets(p["records"])]
        assert p["error"] == kp.NONE and bases == [0], bases
    h.verify(expected, h.ck_consume(broker.bootstrap, "capped", counts), "confluent-kafka")
    h.verify(expected, h.kp_consume(broker.bootstrap, "capped", counts), "kafka-python")
    got = h.kp_consume(broker.bootstrap, "capped", counts, extra={"api_version": (0, 10, 0)})
    # Fetch v2 answers message format v1: no headers, so compare the rest.
    for g in got:
        rec = expected[g.partition][g.offset]
        assert (g.key, g.value, g.timestamp) == (rec.key, rec.value, rec.timestamp), g.offset
    assert sorted((g.partition, g.offset) for g in got) == \
        sorted((p, o) for p, rs in expected.items() for o in range(len(rs)))
    broker.assert_no_sanitizer_report()
