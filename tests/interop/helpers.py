"""Shared helpers for the interop tests: deterministic record sets, and produce/consume loops for
confluent-kafka (librdkafka) and kafka-python that never use consumer groups (partitions are
assigned explicitly and read from explicit offsets)."""
import random
import time
from dataclasses import dataclass, field

from conftest import wait_until

ALL_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True)
class Rec:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    timestamp: int | None = None  # ms; None means "let the client/broker choose"


@dataclass
class Got:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    timestamp: int


@dataclass
class Produced:
    records: list
    # partition -> {offset: Rec}, from delivery reports.
    acked: dict = field(default_factory=dict)


def make_records(tag, n, partitions=3, seed=1, base_ts=None):
    """n records spread round-robin over `partitions`, each with a distinct key, binary and text
    values of varied sizes (some empty, a few null), several headers (binary, empty, repeated
    keys) and an explicit timestamp an hour in the past (so it cannot be confused with a
    broker-assigned one)."""
    rnd = random.Random(f"{tag}-{seed}")
    if base_ts is None:
        base_ts = (int(time.time()) - 3600) * 1000
    out = []
    for i in range(n):
        key = f"{tag}-key-{i}".encode() + bytes([i % 256])
        kind = i % 5
        if i % 1009 == 7:
            value = None
        elif kind == 0:
            value = b""
        elif kind == 1:
            value = rnd.randbytes(rnd.randrange(1, 300))
        else:
            value = (f"value {i} of {tag}; " * rnd.randrange(1, 20)).encode()
        headers = (("seq", str(i).encode()), ("bin", bytes([i % 256, 0, 255])), ("empty", b""),
                   ("dup", b"1"), ("dup", b"2"))
        out.append(Rec(i % partitions, key, value, headers, base_ts + i))
    return out


def verify(expected_by_partition, got, what):
    """Asserts that `got` (list of Got) is exactly the expected records, in offset order with
    contiguous offsets from 0 in every partition, byte for byte.

    expected_by_partition: {partition: [Rec in offset order]}."""
    by_p = {}
    for g in got:
        by_p.setdefault(g.partition, []).append(g)
    assert set(by_p) <= set(expected_by_partition), f"{what}: unexpected partitions {set(by_p)}"
    for p, exp in expected_by_partition.items():
        gs = by_p.get(p, [])
        assert len(gs) == len(exp), f"{what}: partition {p}: got {len(gs)} records, want {len(exp)}"
        for i, (g, e) in enumerate(zip(gs, exp)):
            assert g.offset == i, f"{what}: partition {p}: record #{i} has offset {g.offset}"
            assert g.key == e.key, f"{what}: p{p} offset {i}: key {g.key!r} != {e.key!r}"
            assert g.value == e.value, f"{what}: p{p} offset {i}: value differs " \
                f"(len {len(g.value or b'')} vs {len(e.value or b'')})"
            assert tuple(g.headers) == tuple(e.headers), \
                f"{what}: p{p} offset {i}: headers {g.headers!r} != {e.headers!r}"
            if e.timestamp is not None:
                assert g.timestamp == e.timestamp, \
                    f"{what}: p{p} offset {i}: timestamp {g.timestamp} != {e.timestamp}"


def by_partition(records, partitions=3):
    out = {p: [] for p in range(partitions)}
    for r in records:
        out[r.partition].append(r)
    return out


# confluent-kafka --------------------------------------------------------------------------

def ck_admin(bootstrap):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def ck_create_topic(bootstrap, topic, partitions=3, config=None):
    from confluent_kafka.admin import NewTopic
    a = ck_admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                         operation_timeout=10, request_timeout=15)
    fs[topic].result(timeout=30)
    wait_topic_partitions(bootstrap, topic, partitions)


def wait_topic_partitions(bootstrap, topic, partitions, timeout=20):
    a = ck_admin(bootstrap)

    def ok():
        md = a.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == partitions
    wait_until(ok, timeout, f"metadata for {topic} with {partitions} partitions")


def ck_produce(bootstrap, topic, records, codec="none", extra=None, timeout=120):
    """Produces `records` with acks=all; returns {partition: {offset: Rec}} from the delivery
    reports. Fails on any delivery error."""
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "compression.type": codec,
            "linger.ms": 5, "batch.num.messages": 2000, "message.timeout.ms": 60000,
            "enable.idempotence": False}
    conf.update(extra or {})
    p = Producer(conf)
    acked, errors = {}, []

    def make_cb(rec):
        def cb(err, msg):
            if err is not None:
                errors.append((rec.partition, err))
            else:
                acked.setdefault(msg.partition(), {})[msg.offset()] = rec
        return cb
    for rec in records:
        kw = {"partition": rec.partition, "key": rec.key, "value": rec.value,
              "on_delivery": make_cb(rec)}
        if rec.headers:
            kw["headers"] = list(rec.headers)
        if rec.timestamp is not None:
            kw["timestamp"] = rec.timestamp
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"confluent-kafka: {left} records not delivered within {timeout}s"
    assert not errors, f"confluent-kafka delivery errors (first 5): {errors[:5]}"
    return acked


def ck_consume(bootstrap, topic, counts, start=0, timeout=120, extra=None):
    """Reads `counts[p]` records from each partition p starting at `start`, with assign() (no
    group membership). Returns a list of Got."""
    from confluent_kafka import Consumer, TopicPartition
    conf = {"bootstrap.servers": bootstrap, "group.id": "sluice-interop-unused",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "error", "fetch.wait.max.ms": 100}
    conf.update(extra or {})
    c = Consumer(conf)
    try:
        c.assign([TopicPartition(topic, p, start) for p in counts])
        got, need = [], dict(counts)
        deadline = time.monotonic() + timeout
        while any(v > 0 for v in need.values()):
            assert time.monotonic() < deadline, f"confluent-kafka consume timed out, missing {need}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(f"confluent-kafka consume error: {m.error()}")
                ts_type, ts = m.timestamp()
                got.append(Got(m.partition(), m.offset(), m.key(), m.value(),
                               tuple(m.headers() or ()), ts))
                need[m.partition()] -= 1
        return got
    finally:
        c.close()


# kafka-python ------------------------------------------------------------------------------

def kp_codec_available(codec):
    from kafka import codec as kc
    return {"none": True, "gzip": kc.has_gzip(), "snappy": kc.has_snappy(),
            "lz4": kc.has_lz4(), "zstd": kc.has_zstd()}[codec]


def kp_produce(bootstrap, topic, records, codec="none", extra=None):
    """`extra`: more KafkaProducer keyword arguments (security settings), taking precedence."""
    from kafka import KafkaProducer
    kw = dict(bootstrap_servers=bootstrap, acks="all",
              compression_type=None if codec == "none" else codec,
              linger_ms=5, batch_size=256 * 1024, request_timeout_ms=30000,
              max_block_ms=30000, retries=0)
    p = KafkaProducer(**{**kw, **(extra or {})})
    try:
        futs = []
        for rec in records:
            futs.append((rec, p.send(topic, value=rec.value, key=rec.key,
                                     headers=list(rec.headers), partition=rec.partition,
                                     timestamp_ms=rec.timestamp)))
        p.flush(timeout=120)
        acked = {}
        for rec, f in futs:
            md = f.get(timeout=60)
            acked.setdefault(md.partition, {})[md.offset] = rec
        return acked
    finally:
        p.close(timeout=10)


def kp_consume(bootstrap, topic, counts, start=0, timeout=120, extra=None):
    from kafka import KafkaConsumer, TopicPartition
    kw = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
              auto_offset_reset="none", fetch_max_wait_ms=100, consumer_timeout_ms=1000)
    c = KafkaConsumer(**{**kw, **(extra or {})})
    try:
        tps = [TopicPartition(topic, p) for p in counts]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, start)
        got, need = [], dict(counts)
        deadline = time.monotonic() + timeout
        while any(v > 0 for v in need.values()):
            assert time.monotonic() < deadline, f"kafka-python consume timed out, missing {need}"
            for tp, msgs in c.poll(timeout_ms=500, max_records=2000).items():
                for m in msgs:
                    got.append(Got(m.partition, m.offset, m.key, m.value,
                                   tuple((k, v) for k, v in m.headers), m.timestamp))
                    need[m.partition] -= 1
        return got
    finally:
        c.close()


def expected_from_acks(acked, what):
    """Turns delivery reports into {partition: [Rec by offset]}, asserting offsets 0..n-1."""
    out = {}
    for p, offs in acked.items():
        assert sorted(offs) == list(range(len(offs))), \
            f"{what}: partition {p}: acknowledged offsets not contiguous from 0: " \
            f"{sorted(offs)[:5]}...{sorted(offs)[-5:]}"
        out[p] = [offs[o] for o in range(len(offs))]
    return out
