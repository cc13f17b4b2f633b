"""Produce with hand-built record batches: what is accepted is stored byte for byte, and what is
malformed is refused with the right error without changing the log."""
import threading
import time

import pytest

import helpers as h
import kproto as kp

TOPIC = "raw"


def latest(c, topic=TOPIC, p=0):
    err, off = kp.list_offsets(c, topic, p, kp.LATEST)
    assert err == kp.NONE
    return off


@pytest.fixture
def conn(broker):
    h.ck_create_topic(broker.bootstrap, TOPIC, 2)
    with kp.Conn(broker.bootstrap) as c:
        yield c


def test_batch_stored_byte_for_byte(conn):
    recs = [(b"k%d" % i, b"value-%d" % i * (i + 1), [("h", b"x%d" % i), ("e", b"")])
            for i in range(10)] + [(None, None, []), (b"", b"", [])]
    batch = kp.record_batch(recs, base_ts=1_700_000_000_000)
    assert kp.produce(conn, TOPIC, 1, batch) == (kp.NONE, 0)
    batch2 = kp.record_batch(recs[:3], base_ts=1_700_000_000_123)
    assert kp.produce(conn, TOPIC, 1, batch2) == (kp.NONE, len(recs))
    f = kp.fetch(conn, TOPIC, 1, 0)
    assert f["error"] == kp.NONE and f["high_watermark"] == len(recs) + 3
    got = f["records"]
    # The broker assigns the base offset (bytes 0-7) and the leader epoch (bytes 12-15); all
    # else, from magic through the records, is covered by the CRC and must come back as sent.
    n1 = len(batch)
    assert len(got) >= n1 + len(batch2), f"fetched {len(got)} bytes"
    assert got[:8] == bytes(8)
    assert got[8:12] == batch[8:12] and got[16:n1] == batch[16:]
    assert got[n1:n1 + 8] == (len(recs)).to_bytes(8, "big")
    assert got[n1 + 16:n1 + len(batch2)] == batch2[16:]


@pytest.mark.parametrize("case", ["bad_crc", "count_too_high", "count_too_low", "length_short",
                                  "magic_1", "magic_3", "empty", "truncated"])
def test_malformed_batch_refused(conn, broker, case):
    good = kp.record_batch([(b"k", b"v", [])] * 3)
    bad = {
        "bad_crc": lambda: kp.record_batch([(b"k", b"v", [])] * 3, crc=0xDEADBEEF),
        "count_too_high": lambda: kp.record_batch([(b"k", b"v", [])] * 3, count=5),
        "count_too_low": lambda: kp.record_batch([(b"k", b"v", [])] * 3, count=1),
        # batchLength claims fewer bytes than the records field holds.
        "length_short": lambda: good[:8] + (int.from_bytes(good[8:12], "big") - 5)
        .to_bytes(4, "big") + good[12:],
        "magic_1": lambda: kp.record_batch([(b"k", b"v", [])], magic=1),
        "magic_3": lambda: kp.record_batch([(b"k", b"v", [])], magic=3),
        "empty": lambda: b"",
        "truncated": lambda: good[:-4],
    }[case]()
    before = latest(conn)
    try:
        res = kp.produce(conn, TOPIC, 0, bad)
    except kp.ProtoError:
        res = None  # closing the connection is an acceptable refusal
    if res is not None:
        err, _ = res
        # 43 UNSUPPORTED_FOR_MESSAGE_FORMAT is also fine for an old or unknown magic.
        allowed = (kp.CORRUPT_MESSAGE, kp.INVALID_RECORD) + ((43,) if "magic" in case else ())
        assert err in allowed, f"{case}: error {err}"
    with kp.Conn(broker.bootstrap) as c2:
        assert latest(c2) == before, f"{case}: the log changed"
        # The partition still takes good data at the next offset.
        assert kp.produce(c2, TOPIC, 0, good) == (kp.NONE, before)


def test_unknown_partition_and_topic(conn):
    batch = kp.record_batch([(b"k", b"v", [])])
    assert kp.produce(conn, TOPIC, 7, batch)[0] == kp.UNKNOWN_TOPIC_OR_PARTITION
    assert kp.produce(conn, TOPIC, -1, batch)[0] == kp.UNKNOWN_TOPIC_OR_PARTITION


def test_invalid_acks(conn):
    batch = kp.record_batch([(b"k", b"v", [])])
    assert kp.produce(conn, TOPIC, 0, batch, acks=5)[0] == kp.INVALID_REQUIRED_ACKS
    assert latest(conn) == 0


def test_acks_zero_is_stored_without_answer(conn):
    batch = kp.record_batch([(b"k", b"v", [])] * 4)
    assert kp.produce(conn, TOPIC, 0, batch, acks=0) is None
    # The next request on the same connection gets the next answer (no stray Produce answer).
    err, keys = kp.api_versions(conn, 0)
    assert err == kp.NONE and keys
    from conftest import wait_until
    wait_until(lambda: latest(conn) == 4, 10, "acks=0 records to be stored")


@pytest.mark.broker_config({"message.max.bytes": 20000})
def test_message_too_large(conn):
    big = kp.record_batch([(b"k", b"x" * 30000, [])])
    assert kp.produce(conn, TOPIC, 0, big)[0] == kp.MESSAGE_TOO_LARGE
    assert latest(conn) == 0
    ok = kp.record_batch([(b"k", b"x" * 15000, [])])
    assert kp.produce(conn, TOPIC, 0, ok) == (kp.NONE, 0)


def test_concurrent_producers_get_unique_contiguous_offsets(broker):
    """Four producers on four connections append to the same partitions at once: every record
    gets its own offset, offsets are contiguous, and each one holds the record acknowledged
    there."""
    h.ck_create_topic(broker.bootstrap, "conc", 2)
    results, errors = [], []

    def worker(wid):
        try:
            with kp.Conn(broker.bootstrap) as c:
                for i in range(150):
                    p = i % 2
                    n = 1 + (i % 5)
                    recs = [(b"w%d" % wid, b"%d-%d-%d" % (wid, i, j), []) for j in range(n)]
                    err, base = kp.produce(c, "conc", p, kp.record_batch(recs))
                    assert err == kp.NONE, err
                    results.append((p, base, [r[1] for r in recs]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    by_p = {0: {}, 1: {}}
    for p, base, vals in results:
        for j, v in enumerate(vals):
            assert base + j not in by_p[p], f"offset {p}/{base + j} acknowledged twice"
            by_p[p][base + j] = v
    for p in (0, 1):
        assert sorted(by_p[p]) == list(range(len(by_p[p]))), f"p{p}: offsets not contiguous"
    got = h.ck_consume(broker.bootstrap, "conc", {p: len(by_p[p]) for p in (0, 1)})
    for g in got:
        assert by_p[g.partition][g.offset] == g.value, f"{g.partition}/{g.offset}"


def test_fetch_long_poll(conn, broker):
    """Fetch on an empty partition waits up to max_wait_ms, and returns early once data
    arrives."""
    t0 = time.monotonic()
    f = kp.fetch(conn, TOPIC, 0, 0, max_wait_ms=600)
    waited = time.monotonic() - t0
    assert f["error"] == kp.NONE and not f["records"]
    assert 0.4 <= waited < 5, f"empty fetch with max_wait 600 ms returned after {waited:.2f}s"

    def produce_later():
        with kp.Conn(broker.bootstrap) as c2:
            time.sleep(0.3)  # let the fetch below start waiting first
            kp.produce(c2, TOPIC, 0, kp.record_batch([(b"k", b"wake", [])]))
    t = threading.Thread(target=produce_later)
    t.start()
    t0 = time.monotonic()
    f = kp.fetch(conn, TOPIC, 0, 0, max_wait_ms=8000)
    waited = time.monotonic() - t0
    t.join(10)
    assert f["error"] == kp.NONE and f["records"], f
    assert waited < 6, f"fetch did not wake on new data (returned after {waited:.2f}s)"


def test_fetch_returns_oversized_first_batch(conn):
    """KIP-74: a first batch larger than the fetch limits is still returned whole, so a consumer
    can always make progress."""
    big = kp.record_batch([(b"k", bytes(range(256)) * 800, [])])  # ~200 KB
    assert kp.produce(conn, TOPIC, 0, big) == (kp.NONE, 0)
    assert kp.produce(conn, TOPIC, 0, kp.record_batch([(b"k2", b"small", [])])) == (kp.NONE, 1)
    f = kp.fetch(conn, TOPIC, 0, 0, max_bytes=1000)
    assert f["error"] == kp.NONE
    assert f["records"][:len(big)][16:] == big[16:], "oversized first batch not returned whole"
    f = kp.fetch(conn, TOPIC, 0, 1, max_bytes=1000)
    assert kp.batch_base_offsets(f["records"]) == [(1, 1)]


def test_large_records_through_librdkafka(broker):
    h.ck_create_topic(broker.bootstrap, "large", 1)
    recs = [h.Rec(0, b"big%d" % i, bytes([i]) * (900_000 + i), (("i", b"%d" % i),), None)
            for i in range(5)]
    for codec in ("none", "zstd"):
        h.ck_produce(broker.bootstrap, "large", recs, codec,
                     extra={"message.max.bytes": 1_000_000})
    got = h.ck_consume(broker.bootstrap, "large", {0: 10},
                       extra={"fetch.max.bytes": 1_000_000,
                              "max.partition.fetch.bytes": 100_000})
    assert [g.value for g in got] == [r.value for r in recs] * 2


@pytest.mark.broker_config({"log.segment.bytes": 2048})
def test_list_offsets_by_timestamp(broker):
    """ListOffsets with a timestamp: the first offset whose timestamp is >= the target, across
    several segments and after a restart; -1 past the last timestamp."""
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    t0 = 1_700_000_000_000
    with kp.Conn(broker.bootstrap) as c:
        for i in range(30):
            recs = [(b"k", b"x" * 100, [])] * 5
            assert kp.produce(c, TOPIC, 0, kp.record_batch(recs, base_ts=t0 + i * 1000)) == \
                (kp.NONE, i * 5)
    assert len(list((broker.data_dir / f"{TOPIC}-0").glob("*.log"))) > 2

    def check():
        with kp.Conn(broker.bootstrap) as c:
            for ts, want in ((t0 - 5, 0), (t0, 0), (t0 + 1, 5), (t0 + 3000, 15),
                             (t0 + 3500, 20), (t0 + 29_000, 145), (t0 + 29_001, -1)):
                err, off = kp.list_offsets(c, TOPIC, 0, ts)
                assert (err, off) == (kp.NONE, want), f"timestamp {ts - t0:+d}: {(err, off)}"
    check()
    broker.restart()
    check()


def test_zstd_needs_fetch_v10(conn):
    """zstd arrived with Fetch v10: an older fetcher gets UNSUPPORTED_COMPRESSION_TYPE (76) for a
    zstd batch instead of bytes it cannot decode, and stops before one that follows others."""
    plain = kp.record_batch([(b"k", b"plain", [])])
    zstd = kp.record_batch([(b"k", b"z", [])], attributes=4)  # the codec bits only: not decoded
    assert kp.produce(conn, TOPIC, 0, plain) == (kp.NONE, 0)
    assert kp.produce(conn, TOPIC, 0, zstd) == (kp.NONE, 1)
    old = kp.fetch(conn, TOPIC, 0, 0, versions=range(4, 10))
    assert old["error"] == kp.NONE and kp.batch_base_offsets(old["records"]) == [(0, 0)]
    old = kp.fetch(conn, TOPIC, 0, 1, versions=range(4, 10))
    assert old["error"] == 76, old
    new = kp.fetch(conn, TOPIC, 0, 0, versions=range(10, 12))
    assert new["error"] == kp.NONE
    assert [b for b, _ in kp.batch_base_offsets(new["records"])] == [0, 1]
