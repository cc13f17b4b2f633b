"""The idempotent producer: a librdkafka producer (enable.idempotence=true, acks=all) keeps sending
while the broker is killed with SIGKILL and restarted; afterwards every record is in the log
exactly once and each partition holds the producer's records in send order. Raw-protocol checks
pin the rules: a retried batch gets its original offset, a gap is OUT_OF_ORDER_SEQUENCE_NUMBER,
an old epoch INVALID_PRODUCER_EPOCH, across clean and SIGKILL restarts."""
import collections
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import helpers as h
import kproto as kp
from conftest import wait_until

INIT_PRODUCER_ID = 22
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


# InitProducerId ------------------------------------------------------------------------------

def init_producer_id(conn, version, transactional_id=None, producer_id=-1, epoch=-1):
    """Returns (error_code, producer_id, producer_epoch)."""
    flexible = version >= 2
    w = kp.Writer()
    if flexible:
        w.cstring(transactional_id)
    else:
        w.string(transactional_id)
    w.i32(60000)
    if version >= 3:
        w.i64(producer_id).i16(epoch)
    if flexible:
        w.tags()
    r = conn.call(INIT_PRODUCER_ID, version, w.bytes(), flexible=flexible)
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()


def batch(pid, epoch, seq, n, tag):
    return kp.record_batch([(None, b"%s-%d" % (tag, seq + i), []) for i in range(n)],
                           producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def end_offset(conn, topic, partition):
    err, off = kp.list_offsets(conn, topic, partition, kp.LATEST)
    assert err == kp.NONE
    return off


def test_init_producer_id_versions_and_transactional_ids(broker):
    with kp.Conn(broker.bootstrap) as c:
        lo, hi = c.versions()[INIT_PRODUCER_ID]
        assert (lo, hi) == (0, 5)
        seen = set()
        for v in range(0, 6):
            err, pid, epoch = init_producer_id(c, v)
            assert (err, epoch) == (kp.NONE, 0), v
            assert pid >= 0 and pid not in seen
            seen.add(pid)
        # KIP-360 epoch bump of an idempotent producer: same id, next epoch.
        err, pid2, epoch2 = init_producer_id(c, 4, producer_id=pid, epoch=0)
        assert (err, pid2, epoch2) == (kp.NONE, pid, 1)
        # Half a producer identity is malformed.
        err, _, _ = init_producer_id(c, 4, producer_id=pid, epoch=-1)
        assert err == kp.INVALID_REQUEST
        # A transactional id goes to the transaction coordinator (test_transactions.py): its
        # producer id is a fresh one too, and the same id gets the next epoch.
        err, tpid, tepoch = init_producer_id(c, 0, transactional_id="tx-1")
        assert err == kp.NONE and tpid >= 0 and tpid not in seen
        seen.add(tpid)
        assert init_producer_id(c, 4, transactional_id="tx-1") == (kp.NONE, tpid, tepoch + 1)
    # Ids are never handed out twice, even after SIGKILL.
    broker.kill9()
    broker.start()
    with kp.Conn(broker.bootstrap) as c:
        err, pid3, _ = init_producer_id(c, 0)
        assert err == kp.NONE and pid3 > max(seen)


def test_raw_duplicates_gaps_and_stale_epochs_across_restarts(broker):
    topic = "idem-raw"
    with kp.Conn(broker.bootstrap) as c:
        kp.metadata(c, [topic], allow_auto=True)
        wait_until(lambda: kp.metadata(c, [topic])["topics"][topic]["error"] == kp.NONE, 10,
                   "topic auto-created")
        err, pid, epoch = init_producer_id(c, 0)
        assert err == kp.NONE
        b0 = batch(pid, epoch, 0, 3, b"a")
        err, off0 = kp.produce(c, topic, 0, b0)
        assert err == kp.NONE
        # The same batch again (a retry): success with the original offset, nothing appended.
        assert kp.produce(c, topic, 0, b0) == (kp.NONE, off0)
        assert end_offset(c, topic, 0) == off0 + 3
        b1 = batch(pid, epoch, 3, 2, b"a")
        assert kp.produce(c, topic, 0, b1) == (kp.NONE, off0 + 3)
        assert kp.produce(c, topic, 0, b1, acks=1) == (kp.NONE, off0 + 3)
        # A gap in the sequence, a reused sequence with another range.
        assert kp.produce(c, topic, 0, batch(pid, epoch, 7, 1, b"a"))[0] == \
            OUT_OF_ORDER_SEQUENCE_NUMBER
        assert kp.produce(c, topic, 0, batch(pid, epoch, 3, 1, b"a"))[0] == \
            OUT_OF_ORDER_SEQUENCE_NUMBER
        # Bump the epoch: the new epoch starts at 0 and fences the old one.
        err, pid_b, epoch_b = init_producer_id(c, 4, producer_id=pid, epoch=epoch)
        assert (err, pid_b, epoch_b) == (kp.NONE, pid, epoch + 1)
        assert kp.produce(c, topic, 0, batch(pid, epoch_b, 5, 1, b"b"))[0] == \
            OUT_OF_ORDER_SEQUENCE_NUMBER
        b2 = batch(pid, epoch_b, 0, 4, b"b")
        assert kp.produce(c, topic, 0, b2) == (kp.NONE, off0 + 5)
        assert kp.produce(c, topic, 0, batch(pid, epoch, 5, 1, b"a"))[0] == INVALID_PRODUCER_EPOCH
        assert kp.produce(c, topic, 0, b1)[0] == INVALID_PRODUCER_EPOCH
        assert end_offset(c, topic, 0) == off0 + 9
    # SIGKILL (state rebuilt from the log) and a clean stop (rebuilt from the snapshot).
    for how in ("kill9", "stop"):
        if how == "kill9":
            broker.kill9()
        else:
            broker.stop()
        broker.start()
        with kp.Conn(broker.bootstrap) as c:
            assert kp.produce(c, topic, 0, b2) == (kp.NONE, off0 + 5), how
            assert kp.produce(c, topic, 0, batch(pid, epoch, 5, 1, b"a"))[0] == \
                INVALID_PRODUCER_EPOCH, how
            assert kp.produce(c, topic, 0, batch(pid, epoch_b, 5, 1, b"b"))[0] == \
                OUT_OF_ORDER_SEQUENCE_NUMBER, how
            assert end_offset(c, topic, 0) == off0 + 9, how
    snaps = list((broker.data_dir / f"{topic}-0").glob("*.snapshot"))
    assert snaps, "a clean stop writes a producer state snapshot"
    with kp.Conn(broker.bootstrap) as c:
        b3 = batch(pid, epoch_b, 4, 1, b"b")
        assert kp.produce(c, topic, 0, b3) == (kp.NONE, off0 + 9)
        assert kp.produce(c, topic, 0, b3) == (kp.NONE, off0 + 9)
        assert end_offset(c, topic, 0) == off0 + 10


def produce_pipelined(conn, topic, partition, batches, acks=-1):
    """Sends one Produce per batch without waiting, then reads every answer: later copies arrive
    while earlier ones are appended but not yet fsynced. Returns [(error_code, base_offset)]."""
    v = conn.need(kp.PRODUCE, range(3, 9))
    corrs = [conn.send_request(kp.PRODUCE, v, kp.produce_request(topic, partition, b, acks))
             for b in batches]
    out = []
    for corr in corrs:
        r = kp.Reader(conn.recv_frame())
        assert r.i32() == corr
        (_, parts), = kp.produce_answer(r, v)
        (_, err, base), = parts
        out.append((err, base))
    return out


def test_retry_of_unflushed_batch_waits_and_gets_original_offset(broker):
    topic = "idem-inflight"
    with kp.Conn(broker.bootstrap) as c:
        kp.metadata(c, [topic], allow_auto=True)
        wait_until(lambda: kp.metadata(c, [topic])["topics"][topic]["error"] == kp.NONE, 10,
                   "topic auto-created")
        err, pid, epoch = init_producer_id(c, 3)
        assert err == kp.NONE
        start = end_offset(c, topic, 0)
        seq = 0
        for round_ in range(20):
            b = batch(pid, epoch, seq, 5, b"r%d" % round_)
            answers = produce_pipelined(c, topic, 0, [b, b, b])
            assert answers == [(kp.NONE, start + seq)] * 3, (round_, answers)
            seq += 5
        # acks=0 appends without waiting; a retry with acks=-1 is the duplicate.
        b = batch(pid, epoch, seq, 2, b"z")
        assert kp.produce(c, topic, 0, b, acks=0) is None
        assert kp.produce(c, topic, 0, b) == (kp.NONE, start + seq)
        assert end_offset(c, topic, 0) == start + seq + 2


@pytest.mark.broker_config({"producer.id.expiration.ms": 1500,
                             "producer.id.expiration.check.interval.ms": 100})
def test_idle_producer_ids_expire(broker):
    topic = "idem-expiry"
    with kp.Conn(broker.bootstrap) as c:
        kp.metadata(c, [topic], allow_auto=True)
        wait_until(lambda: kp.metadata(c, [topic])["topics"][topic]["error"] == kp.NONE, 10,
                   "topic auto-created")
        err, pid, epoch = init_producer_id(c, 0)
        b0 = batch(pid, epoch, 0, 2, b"e")
        err, off0 = kp.produce(c, topic, 0, b0)
        assert err == kp.NONE
        assert kp.produce(c, topic, 0, b0) == (kp.NONE, off0)
        t0 = time.monotonic()
        # Once the id is forgotten the same batch is new again: stored at a new offset.
        wait_until(lambda: kp.produce(c, topic, 0, b0)[1] != off0, 15, "producer id expired")
        assert time.monotonic() - t0 >= 1.0, "expired long before producer.id.expiration.ms"
        assert "expired producer ids" in broker.log_text()


# librdkafka under SIGKILL ---------------------------------------------------------------------

TOPIC = "idem-crash"
PARTITIONS = 3
TOTAL = 6000
KILLS = 6


class IdempotentLoad(threading.Thread):
    """Sends TOTAL records with unique values round-robin over the partitions, as fast as the
    producer's queue allows, and records every delivery report."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                           "acks": "all", "message.timeout.ms": 150000, "linger.ms": 5,
                           "batch.num.messages": 50, "retry.backoff.ms": 50,
                           "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                           "socket.timeout.ms": 5000, "queue.buffering.max.messages": 500})
        self.lock = threading.Lock()
        self.acked = {}  # value -> (partition, offset)
        self.errors = []
        self.sent = 0
        self.error = None

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
            while self.sent < TOTAL:
                v = b"idem-%06d" % self.sent
                try:
                    self.p.produce(TOPIC, value=v, partition=self.sent % PARTITIONS,
                                   on_delivery=self.on_delivery)
                    self.sent += 1
                except BufferError:
                    self.p.poll(0.02)
                # Paced, so that every restart lands while requests are in flight.
                self.p.poll(0.004 if self.sent % 3 == 0 else 0)
            left = self.p.flush(120)
            if left:
                self.error = f"{left} records still undelivered"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)


def read_all(bootstrap, topic, partitions):
    """Every record of every partition, [(partition, offset, value)], up to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-idem-unused",
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.wait.max.ms": 100})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got, pos = [], {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + 60
        while any(pos[p] < ends[p] for p in pos):
            assert time.monotonic() < deadline, f"consume timed out at {pos}, ends {ends}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"consume error: {m.error()}"
                got.append((m.partition(), m.offset(), m.value()))
                pos[m.partition()] = m.offset() + 1
        return got
    finally:
        c.close()


@pytest.mark.timeout_s(170)
@pytest.mark.broker_config({"sluice.log.level": "debug"})
def test_librdkafka_exactly_once_across_sigkill(broker):
    h.ck_create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    h.wait_topic_partitions(broker.bootstrap, TOPIC, PARTITIONS)
    load = IdempotentLoad(broker.bootstrap)
    load.start()
    # SIGKILL six times and stop cleanly once, each time after the producer made progress
    # since the previous start (so it reconnected and has records in flight again).
    for cycle, how in enumerate(["kill9"] * 3 + ["stop"] + ["kill9"] * (KILLS - 3)):
        target = load.acked_count() + 300
        wait_until(lambda: load.acked_count() >= target or load.error, 60,
                   f"cycle {cycle}: {target} records acknowledged")
        assert load.error is None, load.error
        assert load.sent < TOTAL, "the producer finished before the restarts did: slow it down"
        if how == "kill9":
            broker.kill9()
        else:
            broker.stop()
        broker.start()
    load.join(130)
    assert not load.is_alive(), "producer did not finish"
    assert load.error is None, load.error
    assert not load.errors, f"delivery errors (first 5): {load.errors[:5]}"
    assert len(load.acked) == TOTAL

    got = read_all(broker.bootstrap, TOPIC, PARTITIONS)
    values = [v for _, _, v in got]
    dups = {v for v, n in collections.Counter(values).items() if n > 1}
    assert not dups, f"{len(dups)} values stored more than once, e.g. {sorted(dups)[:5]}"
    where = {v: (p, o) for p, o, v in got}
    missing = [v for v in load.acked if v not in where]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {missing[:5]}"
    assert len(got) == TOTAL, f"{len(got)} records stored, {TOTAL} sent"
    # The acknowledged offset is where the record is (a duplicate answer names the original).
    wrong = [(v, load.acked[v], where[v]) for v in load.acked if load.acked[v] != where[v]]
    assert not wrong, f"{len(wrong)} records not at their acknowledged offset: {wrong[:5]}"
    for p in range(PARTITIONS):
        seqs = [int(v[5:]) for q, _, v in sorted(got) if q == p]
        assert seqs == sorted(seqs), f"partition {p}: records out of send order"
        assert all(s % PARTITIONS == p for s in seqs)
    assert "producer state rebuilt" in broker.log_text()
