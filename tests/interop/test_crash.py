"""kill -9 under load, 20 times: every record the broker acknowledged (acks=all) must be found at
the acknowledged offset afterwards, and every partition's offsets must be contiguous from its
log start offset. A process kill does not lose the page cache, so nothing acknowledged may go."""
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import helpers as h
import kproto as kp
from conftest import wait_until

TOPIC = "crashy"
PARTITIONS = 3
CYCLES = 20


class LoadThread(threading.Thread):
    """Produces continuously (acks=all, no idempotence, short message timeout) and records every
    successful delivery report as (partition, offset, value)."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": -1,
                           "enable.idempotence": False, "message.timeout.ms": 4000,
                           "linger.ms": 2, "retry.backoff.ms": 50,
                           "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                           "socket.timeout.ms": 3000,
                           "queue.buffering.max.messages": 20000})
        self.lock = threading.Lock()
        self.acked = []  # (partition, offset, value)
        self.failed = 0
        self.stop_flag = threading.Event()
        self.seq = 0
        self.error = None

    def on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                self.failed += 1

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def run(self):
        try:
            while not self.stop_flag.is_set():
                for _ in range(50):
                    v = b"rec-%08d-" % self.seq + b"x" * (self.seq % 97)
                    try:
                        self.p.produce(TOPIC, value=v, key=b"%d" % self.seq,
                                       partition=self.seq % PARTITIONS,
                                       on_delivery=self.on_delivery)
                        self.seq += 1
                    except BufferError:
                        break
                self.p.poll(0.005)
            self.p.flush(30)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


@pytest.mark.timeout_s(180)
def test_kill9_cycles_keep_acknowledged_records(broker):
    deadline = time.monotonic() + 150
    h.ck_create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    rnd = random.Random(20240)
    load = LoadThread(broker.bootstrap)
    load.start()
    try:
        for cycle in range(CYCLES):
            assert time.monotonic() < deadline, f"only {cycle} cycles fit in the time budget"
            before = load.acked_count()
            wait_until(lambda: load.acked_count() >= before + 20 or None, 30,
                       f"new acknowledgements in cycle {cycle}")
            # A random short interval of continued load: the kill lands mid-stream.
            time.sleep(rnd.uniform(0.0, 0.4))
            broker.kill9()
            broker.start()
    finally:
        load.stop_flag.set()
        load.join(60)
    assert not load.is_alive(), "producer thread did not finish"
    assert load.error is None, f"producer thread failed: {load.error!r}"
    acked = list(load.acked)
    assert len(acked) >= CYCLES * 20

    # Every partition: contiguous offsets from the log start to the high watermark, and each
    # acknowledged record at its acknowledged offset.
    by_p = {p: {} for p in range(PARTITIONS)}
    for p, off, val in acked:
        assert off not in by_p[p] or by_p[p][off] == val, \
            f"two different records acknowledged at {p}/{off}"
        by_p[p][off] = val
    with kp.Conn(broker.bootstrap) as c:
        bounds = {}
        for p in range(PARTITIONS):
            e1, start = kp.list_offsets(c, TOPIC, p, kp.EARLIEST)
            e2, end = kp.list_offsets(c, TOPIC, p, kp.LATEST)
            assert e1 == e2 == kp.NONE
            bounds[p] = (start, end)
            if by_p[p]:
                assert start <= min(by_p[p]) and max(by_p[p]) < end, \
                    f"p{p}: acknowledged offsets {min(by_p[p])}..{max(by_p[p])} outside " \
                    f"the log [{start}, {end})"
    cons = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                     "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        cons.assign([TopicPartition(TOPIC, p, bounds[p][0]) for p in range(PARTITIONS)])
        seen = {p: [] for p in range(PARTITIONS)}
        total = sum(e - s for s, e in bounds.values())
        got = 0
        end_by = time.monotonic() + 60
        while got < total:
            assert time.monotonic() < end_by, f"read {got} of {total} records"
            for m in cons.consume(1000, 0.5):
                assert m.error() is None, m.error()
                seen[m.partition()].append((m.offset(), m.value()))
                got += 1
    finally:
        cons.close()
    lost = []
    for p in range(PARTITIONS):
        start, end = bounds[p]
        offs = [o for o, _ in seen[p]]
        assert offs == list(range(start, end)), \
            f"p{p}: offsets not contiguous in [{start}, {end}): first gap near " \
            f"{next((a for a, b in zip(offs, range(start, end)) if a != b), None)}"
        vals = dict(seen[p])
        lost += [(p, o) for o, v in by_p[p].items() if vals.get(o) != v]
    assert not lost, f"{len(lost)} acknowledged records missing or different, e.g. {lost[:10]}"
    print(f"{CYCLES} kill -9 cycles: {len(acked)} acknowledged, {load.failed} failed deliveries, "
          f"log sizes {bounds}")
