"""Size-based retention deletes old segments; DeleteRecords moves the log start offset; reads
below the log start get OFFSET_OUT_OF_RANGE."""
import pytest

import helpers as h
import kproto as kp
from conftest import wait_until

SMALL_SEGMENTS = {"log.segment.bytes": 16384, "log.retention.bytes": 65536,
                  "log.retention.check.interval.ms": 500}
# Small batches so that many segments are rolled.
SMALL_BATCHES = {"linger.ms": 0, "batch.num.messages": 20}


def segment_files(broker, topic, partition=0):
    d = broker.data_dir / f"{topic}-{partition}"
    return sorted(d.glob("*.log")) if d.is_dir() else []


def produce_bulk(bootstrap, topic, n, size=200):
    recs = [h.Rec(0, b"k%06d" % i, (b"%06d-" % i) * (size // 7), (), None) for i in range(n)]
    acked = h.ck_produce(bootstrap, topic, recs, extra=SMALL_BATCHES)
    assert sorted(acked[0]) == list(range(n))
    return recs


@pytest.mark.broker_config(SMALL_SEGMENTS)
def test_size_retention_deletes_segments(broker):
    topic = "retained"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    produce_bulk(broker.bootstrap, topic, 2000)  # ~440 KB: ~27 segments of 16 KB
    with kp.Conn(broker.bootstrap) as c:
        assert kp.list_offsets(c, topic, 0, kp.LATEST) == (kp.NONE, 2000)

        def trimmed():
            err, start = kp.list_offsets(c, topic, 0, kp.EARLIEST)
            assert err == kp.NONE
            return start if start > 0 else None
        start = wait_until(trimmed, 30, "ListOffsets earliest > 0 after retention")
        files = wait_until(lambda: (lambda f: f if 0 < len(f) <= 8 else None)(
            segment_files(broker, topic)), 30, "segment files to be deleted down to the limit")
        # 64 KB retained of 16 KB segments: a handful of segments, and the first kept one
        # starts at the log start offset.
        assert int(files[0].stem) == kp.list_offsets(c, topic, 0, kp.EARLIEST)[1]
        assert start > 1000, f"log start {start}: too little deleted for 64 KB retention"
        assert kp.list_offsets(c, topic, 0, kp.LATEST) == (kp.NONE, 2000)
        # Below the start: OFFSET_OUT_OF_RANGE; at the start: data.
        assert kp.fetch(c, topic, 0, 0)["error"] == kp.OFFSET_OUT_OF_RANGE
        _, start = kp.list_offsets(c, topic, 0, kp.EARLIEST)
        f = kp.fetch(c, topic, 0, start)
        assert f["error"] == kp.NONE and f["records"], f
        bases = kp.batch_base_offsets(f["records"])
        assert bases and bases[0][0] <= start <= bases[0][1], (start, bases[:3])
    # Everything from the log start on is still exactly what was produced.
    got = h.ck_consume(broker.bootstrap, topic, {0: 2000 - start}, start=start)
    assert [g.offset for g in got] == list(range(start, 2000))
    assert all(g.key == b"k%06d" % g.offset for g in got)


def test_delete_records_moves_log_start(broker):
    topic = "trimmed"
    h.ck_create_topic(broker.bootstrap, topic, 2)
    recs = [h.Rec(i % 2, b"k%d" % i, b"v%d" % i, (), None) for i in range(400)]
    h.ck_produce(broker.bootstrap, topic, recs)
    with kp.Conn(broker.bootstrap) as c:
        if c.pick(kp.DELETE_RECORDS, range(0, 3)) is None:
            pytest.fail("broker does not advertise DeleteRecords")
        res = kp.delete_records(c, topic, {0: 120, 1: -1})  # -1: up to the high watermark
        assert res == {0: (120, kp.NONE), 1: (200, kp.NONE)}, res
        assert kp.list_offsets(c, topic, 0, kp.EARLIEST) == (kp.NONE, 120)
        assert kp.list_offsets(c, topic, 1, kp.EARLIEST) == (kp.NONE, 200)
        assert kp.list_offsets(c, topic, 0, kp.LATEST) == (kp.NONE, 200)
        f = kp.fetch(c, topic, 0, 119)
        assert f["error"] == kp.OFFSET_OUT_OF_RANGE, f
        f = kp.fetch(c, topic, 0, 120)
        assert f["error"] == kp.NONE and f["records"], f
        if f["log_start_offset"] >= 0:
            assert f["log_start_offset"] == 120
        # Beyond the high watermark: OFFSET_OUT_OF_RANGE too.
        low, err = kp.delete_records(c, topic, {0: 201})[0]
        assert err == kp.OFFSET_OUT_OF_RANGE, (low, err)
        # Moving backwards is a no-op that reports the current start.
        low, err = kp.delete_records(c, topic, {0: 50})[0]
        assert err == kp.NONE and low == 120, (low, err)
        # Unknown topic.
        res = kp.delete_records(c, "no-such-topic", {0: 1})
        assert res[0][1] == kp.UNKNOWN_TOPIC_OR_PARTITION, res
    got = h.ck_consume(broker.bootstrap, topic, {0: 80}, start=120)
    assert [g.offset for g in got] == list(range(120, 200))
    # The start offset survives a restart.
    broker.restart()
    with kp.Conn(broker.bootstrap) as c:
        assert kp.list_offsets(c, topic, 0, kp.EARLIEST) == (kp.NONE, 120)
        assert kp.list_offsets(c, topic, 1, kp.EARLIEST) == (kp.NONE, 200)


def test_fetch_below_start_with_clients(broker):
    """confluent-kafka with auto.offset.reset=error surfaces OFFSET_OUT_OF_RANGE below the log
    start offset."""
    topic = "oor"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    h.ck_produce(broker.bootstrap, topic, [h.Rec(0, b"k", b"v%d" % i, (), None)
                                           for i in range(50)])
    with kp.Conn(broker.bootstrap) as c:
        assert kp.delete_records(c, topic, {0: 30}) == {0: (30, kp.NONE)}
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    cons = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                     "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        cons.assign([TopicPartition(topic, 0, 5)])

        def oor_error():
            m = cons.poll(0.5)
            if m is not None and m.error() is not None:
                return m.error()
            assert m is None, f"got a record at offset {m.offset()} below the log start"
            return None
        err = wait_until(oor_error, 30, "an offset-out-of-range error")
        assert err.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET), err
    finally:
        cons.close()
