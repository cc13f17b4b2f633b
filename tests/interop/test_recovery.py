"""Recovery from damaged files, against the contract in docs/on-disk-format.md: the active
segment is truncated at the first torn or invalid frame; damage inside a sealed segment is never
dropped silently; indexes are hints that are rebuilt when missing."""
import os
import random
import struct

import pytest

import helpers as h
import kproto as kp

TOPIC = "rec"
BATCHES, PER_BATCH = 10, 5
FILE_HEADER = 64


def produce_batches(broker, n=BATCHES, per=PER_BATCH, size=40):
    with kp.Conn(broker.bootstrap) as c:
        for i in range(n):
            recs = [(b"k%d-%d" % (i, j), (b"v%d-%d-" % (i, j)) * size, []) for j in range(per)]
            assert kp.produce(c, TOPIC, 0, kp.record_batch(recs)) == (kp.NONE, i * per)


def frames(path):
    """(start, length) of every frame in a segment data file."""
    data = path.read_bytes()
    # The header says its length (64 in version 1; longer with an encryption envelope).
    (hlen,) = struct.unpack(">I", data[24:28])
    assert hlen >= FILE_HEADER, f"{path}: header length {hlen}"
    out, pos = [], hlen
    while pos + 12 <= len(data):
        assert data[pos] == 0xA5, f"no frame magic at {pos} in {path}"
        (flen,) = struct.unpack(">I", data[pos + 8:pos + 12])
        out.append((pos, flen))
        pos += flen
    assert pos == len(data), f"{path}: frames end at {pos}, file at {len(data)}"
    return out


def segments(broker, topic=TOPIC, p=0):
    return sorted((broker.data_dir / f"{topic}-{p}").glob("*.log"))


def offsets(broker, topic=TOPIC, p=0):
    with kp.Conn(broker.bootstrap) as c:
        e1, lo = kp.list_offsets(c, topic, p, kp.EARLIEST)
        e2, hi = kp.list_offsets(c, topic, p, kp.LATEST)
        assert e1 == e2 == kp.NONE
        return lo, hi


def check_readable(broker, hi, topic=TOPIC):
    """Records 0..hi-1 are exactly the produced ones, and the log takes new data at hi."""
    got = h.ck_consume(broker.bootstrap, topic, {0: hi}) if hi else []
    assert [g.offset for g in got] == list(range(hi))
    for g in got:
        i, j = divmod(g.offset, PER_BATCH)
        assert g.key == b"k%d-%d" % (i, j), g.offset
        assert g.value == (b"v%d-%d-" % (i, j)) * 40, g.offset
    with kp.Conn(broker.bootstrap) as c:
        assert kp.produce(c, topic, 0, kp.record_batch([(b"new", b"after", [])])) == \
            (kp.NONE, hi)


@pytest.fixture
def filled(broker):
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    produce_batches(broker)
    broker.stop()
    segs = segments(broker)
    assert len(segs) == 1, segs
    fr = frames(segs[0])
    assert len(fr) == BATCHES
    return broker, segs[0], fr


def test_torn_last_frame_is_truncated(filled):
    broker, seg, fr = filled
    os.truncate(seg, fr[-1][0] + fr[-1][1] - 7)
    broker.start()
    assert offsets(broker) == (0, (BATCHES - 1) * PER_BATCH)
    check_readable(broker, (BATCHES - 1) * PER_BATCH)


def test_torn_frame_header_is_truncated(filled):
    broker, seg, fr = filled
    os.truncate(seg, fr[-1][0] + 20)  # inside the last frame's header
    broker.start()
    check_readable(broker, (BATCHES - 1) * PER_BATCH)


def test_garbage_after_last_frame_is_dropped(filled):
    broker, seg, fr = filled
    with open(seg, "ab") as f:
        f.write(random.Random(7).randbytes(300))
    broker.start()
    assert offsets(broker) == (0, BATCHES * PER_BATCH)
    check_readable(broker, BATCHES * PER_BATCH)


def test_zeroed_tail_is_dropped(filled):
    """A crash after the file grew but before the data reached the disk leaves zeros."""
    broker, seg, fr = filled
    with open(seg, "ab") as f:
        f.write(bytes(4096))
    broker.start()
    check_readable(broker, BATCHES * PER_BATCH)


@pytest.mark.parametrize("frame_index", [BATCHES - 1, 4, 0])
def test_bad_crc_in_active_segment_truncates_there(filled, frame_index):
    broker, seg, fr = filled
    start, flen = fr[frame_index]
    data = bytearray(seg.read_bytes())
    data[start + flen - 3] ^= 0x01  # a byte of the last record's value: batch CRC fails
    seg.write_bytes(bytes(data))
    broker.start()
    assert offsets(broker) == (0, frame_index * PER_BATCH)
    check_readable(broker, frame_index * PER_BATCH)


def test_missing_indexes_are_rebuilt(broker):
    broker.config["log.segment.bytes"] = "4096"
    broker.write_config()
    broker.restart()
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    produce_batches(broker, n=40)
    broker.stop()
    d = broker.data_dir / f"{TOPIC}-0"
    assert len(list(d.glob("*.log"))) > 3, "expected several segments"
    for f in list(d.glob("*.index")) + list(d.glob("*.timeindex")):
        f.unlink()
    broker.start()
    assert offsets(broker) == (0, 40 * PER_BATCH)
    with kp.Conn(broker.bootstrap) as c:
        for off in (0, 7, 57, 123, 199):
            f = kp.fetch(c, TOPIC, 0, off)
            assert f["error"] == kp.NONE
            first = kp.batch_base_offsets(f["records"])[0]
            assert first[0] <= off <= first[1], (off, first)
    check_readable(broker, 40 * PER_BATCH)


KAFKA_STORAGE_ERROR = 56


def sealed_setup(broker):
    broker.config["log.segment.bytes"] = "4096"
    broker.write_config()
    broker.restart()
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    produce_batches(broker, n=40)
    broker.stop()
    segs = segments(broker)
    assert len(segs) > 3
    return segs[1]


def test_corrupt_frame_header_in_sealed_segment(broker):
    """A damaged frame header outside the tail: the broker refuses to start, or refuses to
    serve that range (an error, not data); it never truncates or deletes the segment."""
    victim = sealed_setup(broker)
    base = int(victim.stem)
    start, _ = frames(victim)[0]
    data = bytearray(victim.read_bytes())
    data[start + 33] ^= 0x01  # record count: the frame header CRC no longer matches
    victim.write_bytes(bytes(data))
    size = len(data)
    rc = broker.start_may_fail()
    if rc is not None:
        assert rc != 0
        assert victim.name in broker.log_text(), "the refusal does not name the damaged file"
    else:
        with kp.Conn(broker.bootstrap) as c:
            f = kp.fetch(c, TOPIC, 0, base)
            assert f["error"] != kp.NONE, \
                f"fetch at {base} over a corrupt frame header returned data"
            lo = kp.list_offsets(c, TOPIC, 0, kp.LATEST)
            if lo[0] == KAFKA_STORAGE_ERROR:
                # The partition did not open: the broker serves everything else and answers
                # this partition with KAFKA_STORAGE_ERROR, naming the damaged file in its log.
                assert f["error"] == KAFKA_STORAGE_ERROR
                assert victim.name in broker.log_text(), "the damaged file is not named"
            else:
                assert lo == (kp.NONE, 40 * PER_BATCH)
        assert broker.alive()
    assert victim.exists() and victim.stat().st_size == size, "the damaged segment was changed"


def test_corrupt_payload_in_sealed_segment_never_reaches_consumer(broker):
    """A flipped bit inside a sealed segment's record batch: a consumer that checks CRCs must
    get an error, never a record with the wrong bytes (the broker may detect it itself)."""
    from confluent_kafka import Consumer, TopicPartition
    victim = sealed_setup(broker)
    base = int(victim.stem)
    start, flen = frames(victim)[0]
    data = bytearray(victim.read_bytes())
    data[start + flen - 3] ^= 0x01
    victim.write_bytes(bytes(data))
    rc = broker.start_may_fail()
    if rc is not None:
        assert rc != 0 and victim.name in broker.log_text()
        return
    with kp.Conn(broker.bootstrap) as c:
        if kp.fetch(c, TOPIC, 0, base)["error"] == KAFKA_STORAGE_ERROR:
            # The broker refuses the batch itself (an encrypted batch fails authentication):
            # there is nothing for a consumer to check, and the log names the file.
            assert victim.name in broker.log_text(), "the refusal does not name the file"
            return
    cons = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                     "enable.auto.commit": False, "auto.offset.reset": "error",
                     "check.crcs": True})
    try:
        cons.assign([TopicPartition(TOPIC, 0, base)])
        from conftest import wait_until

        def outcome():
            m = cons.poll(0.5)
            if m is None:
                return None
            if m.error() is not None:
                return ("error", m.error())
            return ("record", m.offset(), m.value())
        res = wait_until(outcome, 30, "a record or an error")
        if res[0] == "record":
            i, j = divmod(res[1], PER_BATCH)
            assert res[2] == (b"v%d-%d-" % (i, j)) * 40, \
                f"corrupt record at offset {res[1]} delivered as valid"
            assert res[1] > base + PER_BATCH - 1, "records of the corrupt batch were delivered"
    finally:
        # librdkafka 2.0.2 has been seen to block in close() after a CRC error under heavy load;
        # what this test asserts is decided above, so close on a daemon thread with a bound.
        import threading
        t = threading.Thread(target=cons.close, daemon=True)
        t.start()
        t.join(15)
