"""Consumer groups (classic protocol) with real clients: a group shared by librdkafka
(confluent-kafka), kafka-python and kafkajs with members joining and leaving mid-run; offsets
surviving kill -9; kcat's balanced consumer."""
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import wait_until
from helpers import ck_create_topic

NODE_DIR = Path(__file__).resolve().parent / "node"
FAST_GROUPS = {"group.initial.rebalance.delay.ms": 200, "num.partitions": 3}


def produce_n(bootstrap, topic, start, n, partitions):
    """Values "start".."start+n-1", spread explicitly over the partitions; returns end offsets."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": False})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
    for i in range(start, start + n):
        p.produce(topic, value=str(i).encode(), partition=i % partitions, on_delivery=cb)
        p.poll(0)
    assert p.flush(60) == 0, "produce did not finish"
    assert not errors, errors


def end_offsets(bootstrap, topic, partitions):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-probe-ends"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def committed(bootstrap, group, topic, partitions):
    """The group's committed offsets (without joining it); -1001 means none."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


class Recorder:
    """Assignment events and processed records from every member, with wall-clock times (one
    host, one clock) so ownership intervals of different processes can be compared."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (member, "assign"|"revoke", t, parts)
        self.records = {}  # (partition, offset) -> value
        self.deliveries = []  # (member, partition, offset, t)

    def event(self, member, ev, parts, t=None):
        with self.lock:
            self.events.append((member, ev, t if t is not None else time.time(), sorted(parts)))

    def record(self, member, p, o, value):
        with self.lock:
            self.records[(p, o)] = value
            self.deliveries.append((member, p, o, time.time()))

    def latest(self):
        """member -> its current partitions."""
        cur = {}
        with self.lock:
            for m, ev, _, parts in self.events:
                cur[m] = parts if ev == "assign" else []
        return cur

    def ownership_intervals(self):
        """partition -> [(start, end, member)] from assign ... next revoke/assign of that member."""
        by_member = {}
        with self.lock:
            evs = sorted(self.events, key=lambda e: e[2])
        out = {}
        for m, ev, t, parts in evs:
            prev = by_member.pop(m, None)
            if prev:
                for p in prev[1]:
                    out.setdefault(p, []).append((prev[0], t, m))
            if ev == "assign":
                by_member[m] = (t, parts)
        for m, (t, parts) in by_member.items():
            for p in parts:
                out.setdefault(p, []).append((t, float("inf"), m))
        return out


def ck_member(name, rec, stop, bootstrap, group, topic):
    from confluent_kafka import Consumer, KafkaException
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "partition.assignment.strategy": "range", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                  "heartbeat.interval.ms": 500, "max.poll.interval.ms": 20000})

    def on_assign(cons, parts):
        rec.event(name, "assign", [p.partition for p in parts])

    def on_revoke(cons, parts):
        rec.event(name, "revoke", [])
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not stop.is_set():
            msgs = c.consume(200, 0.2)
            n = 0
            for m in msgs:
                if m.error():
                    continue
                rec.record(name, m.partition(), m.offset(), m.value())
                n += 1
            if n:
                try:
                    c.commit(asynchronous=False)  # after processing
                except KafkaException:
                    pass  # a rebalance began: those records will be delivered again
    finally:
        c.close()
        rec.event(name, "revoke", [])


def kp_member(name, rec, stop, bootstrap, group, topic):
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.errors import CommitFailedError, KafkaError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            rec.event(name, "revoke", [])

        def on_partitions_assigned(self, assigned):
            rec.event(name, "assign", [tp.partition for tp in assigned])
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100,
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      max_poll_interval_ms=20000,
                      partition_assignment_strategy=[RangePartitionAssignor])
    c.subscribe([topic], listener=Listener())
    try:
        while not stop.is_set():
            got = c.poll(timeout_ms=200, max_records=200)
            for tp, msgs in got.items():
                for m in msgs:
                    rec.record(name, m.partition, m.offset, m.value)
            if got:
                try:
                    c.commit()
                except (CommitFailedError, KafkaError):
                    pass
    finally:
        c.close()
        rec.event(name, "revoke", [])


class Member:
    def __init__(self, fn, name, rec, *args):
        self.stop = threading.Event()
        self.errors = []

        def run():
            try:
                fn(name, rec, self.stop, *args)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def close(self):
        self.stop.set()
        self.t.join(60)
        assert not self.t.is_alive(), "member did not stop"
        assert not self.errors, self.errors


class NodeMember:
    """kafkajs in its own process; its JSON lines feed the recorder."""

    def __init__(self, name, rec, bootstrap, group, topic):
        if not (NODE_DIR / "node_modules").is_dir():
            pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "group_kafkajs.mjs"), bootstrap,
                                      topic, group], cwd=str(NODE_DIR), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.protocols = set()
        self.done = False

        def pump():
            for line in self.proc.stdout:
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if o["ev"] == "assign":
                    self.protocols.add(o.get("protocol"))
                    rec.event(name, "assign", o["parts"], o["t"] / 1000.0)
                elif o["ev"] == "revoke":
                    rec.event(name, "revoke", [], o["t"] / 1000.0)
                elif o["ev"] == "rec":
                    rec.record(name, o["p"], o["o"], None)
                elif o["ev"] == "done":
                    self.done = True
        self.t = threading.Thread(target=pump, daemon=True)
        self.t.start()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("kafkajs member ignored SIGTERM")
        self.t.join(10)
        assert self.done, f"kafkajs member did not finish cleanly: {self.proc.stderr.read()[-2000:]}"


def check_exclusive(rec):
    """In every generation each partition has one owner: ownership intervals of different
    members never overlap (eager protocol: members give partitions up before rejoining and get
    new ones only after the whole group synced)."""
    rounds = 0
    for p, ivs in rec.ownership_intervals().items():
        ivs.sort()
        rounds = max(rounds, len(ivs))
        for (s1, e1, m1), (s2, e2, m2) in zip(ivs, ivs[1:]):
            assert m1 == m2 or s2 >= e1, \
                f"partition {p} owned by {m1} [{s1:.3f}, {e1:.3f}) and {m2} from {s2:.3f}"
    return rounds


@pytest.mark.broker_config(FAST_GROUPS)
@pytest.mark.timeout_s(300)
def test_mixed_client_group_rebalances_without_double_ownership(broker):
    bs, topic, group, P = broker.bootstrap, "grp-mixed", "mixed-group", 6
    ck_create_topic(bs, topic, P)
    produce_n(bs, topic, 0, 600, P)
    rec = Recorder()
    ck = Member(ck_member, "librdkafka", rec, bs, group, topic)
    wait_until(lambda: len(rec.latest().get("librdkafka", [])) == P, 60, "librdkafka owns all")
    kp = Member(kp_member, "kafka-python", rec, bs, group, topic)
    wait_until(lambda: rec.latest().get("kafka-python"), 60, "kafka-python assigned")
    js = NodeMember("kafkajs", rec, bs, group, topic)
    wait_until(lambda: all(len(rec.latest().get(m, [])) == 2
                           for m in ("librdkafka", "kafka-python", "kafkajs")),
               90, "three clients sharing the group, two partitions each")
    assert js.protocols == {"range"}, js.protocols
    produce_n(bs, topic, 600, 600, P)
    kp.close()  # LeaveGroup: the other two take over its partitions
    wait_until(lambda: sorted(rec.latest().get("librdkafka", []) + rec.latest().get("kafkajs", []))
               == list(range(P)), 60, "librdkafka and kafkajs own all partitions")
    kp2 = Member(kp_member, "kafka-python-2", rec, bs, group, topic)
    wait_until(lambda: rec.latest().get("kafka-python-2"), 60, "second kafka-python assigned")
    produce_n(bs, topic, 1200, 600, P)
    ends = end_offsets(bs, topic, P)
    total = sum(ends.values())
    assert total == 1800
    wait_until(lambda: len(rec.records) == total, 120, "every record processed")
    wait_until(lambda: committed(bs, group, topic, P) == ends, 60, "commits reach the end offsets")
    js.close()
    ck.close()
    kp2.close()
    # Every produced record was processed (at least once), none skipped.
    values = {v for v in rec.records.values() if v is not None}
    expected = {(i % P, i // P) for i in range(1800)}
    assert set(rec.records) == expected
    assert values <= {str(i).encode() for i in range(1800)}
    rounds = check_exclusive(rec)
    assert rounds >= 3, f"expected several generations, saw {rounds}"
    assert committed(bs, group, topic, P) == ends


@pytest.mark.broker_config(FAST_GROUPS)
@pytest.mark.timeout_s(240)
def test_committed_offsets_survive_kill9(broker):
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    bs, topic, group, P, N = broker.bootstrap, "grp-crash", "crash-group", 3, 3000
    ck_create_topic(bs, topic, P)
    produce_n(bs, topic, 0, N, P)
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                  "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range"})
    c.subscribe([topic])
    seen, acked = set(), {p: -1 for p in range(P)}  # -1: nothing acknowledged
    after_restart = []
    restarted = False
    commits_ok = 0
    deadline = time.monotonic() + 180
    try:
        while len(seen) < N:
            assert time.monotonic() < deadline, f"only {len(seen)} of {N} records processed"
            msgs = [m for m in c.consume(50, 0.5) if not m.error()]
            for m in msgs:
                seen.add((m.partition(), m.offset()))
                if restarted:
                    after_restart.append((m.partition(), m.offset()))
            if msgs:
                try:
                    for tp in c.commit(asynchronous=False):
                        if tp.error is None and tp.offset >= 0:
                            acked[tp.partition] = max(acked[tp.partition], tp.offset)
                            commits_ok += 1
                        elif tp.error is not None:
                            assert restarted, f"commit refused before the kill: {tp}"
                        # (no error and no offset: nothing consumed there yet, nothing sent)
                except KafkaException as e:
                    # Only after the kill may a commit fail (the group is rejoining the new
                    # coordinator); before it, with the broker up, every commit must succeed.
                    assert restarted, f"commit failed before the kill: {e!r}"
            if not restarted and len(seen) >= N // 3:
                at_kill = dict(acked)
                # A third of the records were consumed and committed, so acknowledged offsets
                # add up to at least that: the check below cannot pass on commits that all
                # failed (librdkafka may drain one partition before the others).
                assert commits_ok > 0 and sum(max(o, 0) for o in at_kill.values()) >= N // 3 - 50, \
                    f"too few acknowledged commits before the kill: {at_kill}"
                broker.kill9()
                broker.start()
                restarted = True
                # Durable before acknowledged: every acknowledged commit is there after kill -9.
                got = committed(bs, group, topic, P)
                for p in range(P):
                    assert max(got[p], -1) >= at_kill[p], f"p{p}: committed {got[p]} < acknowledged {at_kill[p]}"
        # The last records' offsets, committed through the restarted coordinator (retried while
        # the group settles), are what the group holds afterwards: every partition at its end.
        ends = {p: N // P for p in range(P)}
        last_err = None
        while True:
            assert time.monotonic() < deadline, f"final commit never succeeded: {last_err!r}"
            try:
                res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()],
                               asynchronous=False)
                bad = [tp for tp in res if tp.error is not None]
                if not bad:
                    assert {tp.partition: tp.offset for tp in res} == ends, res
                    break
                last_err = bad
            except KafkaException as e:
                last_err = e
            c.poll(0.2)
    finally:
        c.close()
    assert committed(bs, group, topic, P) == ends
    assert restarted
    assert seen == {(i % P, i // P) for i in range(N)}
    # The consumer rejoined the restarted coordinator and resumed from the committed offsets:
    # nothing below an acknowledged commit came again.
    for p, o in after_restart:
        assert o >= at_kill[p], f"p{p} offset {o} re-delivered although {at_kill[p]} was committed"


@pytest.mark.broker_config(FAST_GROUPS)
@pytest.mark.timeout_s(120)
def test_kcat_balanced_consumer(broker):
    bs, topic, group, P = broker.bootstrap, "grp-kcat", "kcat-group", 3
    ck_create_topic(bs, topic, P)
    produce_n(bs, topic, 0, 90, P)
    res = subprocess.run(["kcat", "-b", bs, "-G", group, "-o", "beginning", "-e", "-q",
                          "-X", "partition.assignment.strategy=range", "-f", "%p:%o\n", topic],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = {tuple(map(int, line.split(":"))) for line in res.stdout.split()}
    assert got == {(i % P, i // P) for i in range(90)}
    assert committed(bs, group, topic, P) == {p: 30 for p in range(P)}
    # Visible to the admin APIs, and deletable once empty.
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": bs})
    groups = {g.id: g for g in a.list_groups(timeout=10)}
    assert group in groups and groups[group].state == "Empty"
    assert groups[group].protocol_type == "consumer"


@pytest.mark.broker_config(FAST_GROUPS)
@pytest.mark.timeout_s(120)
def test_platformatic_consumer_group(broker):
    bs, topic, group, P = broker.bootstrap, "grp-plt", "plt-group", 3
    ck_create_topic(bs, topic, P)
    produce_n(bs, topic, 0, 60, P)
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
    res = subprocess.run(["node", str(NODE_DIR / "group_platformatic.mjs"), bs, topic, group, "60"],
                         cwd=str(NODE_DIR), capture_output=True, text=True, timeout=100)
    assert res.returncode == 0, f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-3000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(map(tuple, out["records"])) == sorted((i % P, i // P) for i in range(60))
    assert committed(bs, group, topic, P) == {p: 20 for p in range(P)}


def describe_group_raw(bs, group):
    """DescribeGroups v0 on a fresh connection: (error, state, protocol, sorted member ids)."""
    from kproto import Conn, Writer
    with Conn(bs) as c:
        r = c.call(15, 0, Writer().array([group], lambda w, g: w.string(g)).bytes())

        def member(r):
            mid = r.string()
            r.string(), r.string(), r.nbytes(), r.nbytes()
            return mid

        def grp(r):
            err, _gid, state, _ptype, proto = r.i16(), r.string(), r.string(), r.string(), r.string()
            return err, state, proto, sorted(r.array(member))
        return r.array(grp)[0]


def heartbeat_raw(bs, group, generation, member_id):
    """Heartbeat v0 on a fresh connection: the error code (0: that member is in that generation)."""
    from kproto import Conn, Writer
    with Conn(bs) as c:
        return c.call(12, 0, Writer().string(group).i32(generation).string(member_id).bytes()).i16()


@pytest.mark.broker_config(FAST_GROUPS)
@pytest.mark.timeout_s(90)
def test_group_metadata_survives_kill9(broker):
    """A Stable two-member group is Stable again right after kill -9 and restart, with the same
    generation and member ids, before any client rejoined; consumption goes on, nothing lost."""
    from confluent_kafka import Consumer, KafkaException
    bs, topic, group, P, N = broker.bootstrap, "grp-meta", "meta-group", 4, 2000
    ck_create_topic(bs, topic, P)
    produce_n(bs, topic, 0, N // 2, P)
    conf = {"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000, "partition.assignment.strategy": "range"}
    cs = [Consumer(dict(conf, **{"client.id": f"meta-{i}"})) for i in range(2)]
    for c in cs:
        c.subscribe([topic])
    seen, deadline = set(), time.monotonic() + 75

    def pump():
        for c in cs:
            msgs = [m for m in c.consume(100, 0.1) if not m.error()]
            seen.update((m.partition(), m.offset()) for m in msgs)
            if msgs:
                try:
                    c.commit(asynchronous=False)
                except KafkaException:
                    pass  # broker down or rebalancing: consumed again later, never lost
    try:
        # Both members assigned (the group is Stable with 2 members) and consuming.
        while True:
            assert time.monotonic() < deadline, f"group never settled: {describe_group_raw(bs, group)}"
            pump()
            d = describe_group_raw(bs, group)
            if d[1] == "Stable" and len(d[3]) == 2 and all(c.assignment() for c in cs) and seen:
                break
        err, state, proto, members = d
        assert (err, proto) == (0, "range")
        gens = [g for g in range(1, 50) if heartbeat_raw(bs, group, g, members[0]) == 0]
        assert len(gens) == 1, gens
        gen = gens[0]

        broker.kill9()
        broker.start()
        # Right away, before a client can rejoin: the same group, generation and members.
        assert describe_group_raw(bs, group) == (0, "Stable", "range", members)
        for m in members:
            assert heartbeat_raw(bs, group, gen, m) == 0, f"{m} not in generation {gen} after restart"

        produce_n(bs, topic, N // 2, N // 2, P)
        while len(seen) < N:
            assert time.monotonic() < deadline, f"only {len(seen)} of {N} records consumed"
            pump()
        assert seen == {(i % P, i // P) for i in range(N)}
        # The clients carried on in the restored generation: no rebalance was needed.
        assert describe_group_raw(bs, group) == (0, "Stable", "range", members)
        assert heartbeat_raw(bs, group, gen, members[0]) == 0
    finally:
        for c in cs:
            c.close()
