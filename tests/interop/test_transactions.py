"""Transactions (issue 16): the transaction coordinator in `sluice serve` and its APIs, driven by
real clients. confluent-kafka (librdkafka) and kafkajs transactional producers commit and abort
transactions over several partitions and two topics with offsets sent to the transaction; every
transactional answer the broker gives carries no error (read from its request log); a zombie
producer is fenced; an ACL on the transactional id refuses a principal without WRITE on it;
ListTransactions/DescribeTransactions (raw protocol) show the coordinator's state; the
coordinator survives a restart, and a kill -9 between the commit decision and its markers
finishes the commit at start.

read_committed visibility (markers, LSO, aborted index) is the per-partition side
(sl_txnpart.c) and tested with it; these tests read with read_uncommitted."""
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import helpers as h
import kproto as kp
from conftest import wait_until

NODE_DIR = Path(__file__).parent / "node"

TXN_APIS = {22: "InitProducerId", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn",
            28: "TxnOffsetCommit", 65: "DescribeTransactions", 66: "ListTransactions"}
FIND_COORDINATOR = 10
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
TRANSACTIONAL_ID_NOT_FOUND = 105

DEBUG = {"sluice.log.level": "debug"}


def txn_answers(broker):
    """(api, error) of every transactional request the broker finished (its debug log)."""
    out = []
    for m in re.finditer(r"api=(\d+) version=\d+ .*? error=(-?\d+)", broker.log_text()):
        api = int(m.group(1))
        if api in TXN_APIS or api == FIND_COORDINATOR:
            out.append((api, int(m.group(2))))
    return out


def assert_txn_answers_clean(broker):
    answers = txn_answers(broker)
    seen = {a for a, _ in answers}
    for api in (22, 24, 25, 26, 28):
        assert api in seen, f"{TXN_APIS[api]} never reached the broker: {answers}"
    bad = [(TXN_APIS.get(a, a), e) for a, e in answers if e != 0]
    assert not bad, f"transactional answers with errors: {bad}"


def producer(broker, tid, extra=None):
    conf = {"bootstrap.servers": broker.bootstrap, "transactional.id": tid,
            "transaction.timeout.ms": 60000, "linger.ms": 5}
    conf.update(extra or {})
    return Producer(conf)


def consume_all(broker, topic, partitions, expect, group=None, timeout=60):
    """Every record of `topic` (read_uncommitted) until `expect` values arrived."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group or f"r-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_uncommitted"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = []

        def more():
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append((m.partition(), m.value()))
            return len(got) >= expect
        wait_until(more, timeout, f"{expect} records from {topic}", interval=0)
        return got
    finally:
        c.close()


def group_committed(broker, group, topic, partitions):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def make_topics(broker, *names, partitions=3):
    for n in names:
        h.ck_create_topic(broker.bootstrap, n, partitions=partitions)
        h.wait_topic_partitions(broker.bootstrap, n, partitions)


# Raw operator APIs ---------------------------------------------------------------------------

def list_transactions(conn, states=(), pids=(), duration=-1, version=1):
    w = kp.Writer()
    w.carray(list(states), lambda ww, s: ww.cstring(s))
    w.carray(list(pids), lambda ww, p: ww.i64(p))
    if version >= 1:
        w.i64(duration)
    w.tags()
    r = conn.call(LIST_TRANSACTIONS, version, w.bytes(), flexible=True)
    r.i32()
    err = r.i16()
    unknown = r.carray(lambda rr: rr.cstring())
    states_out = r.carray(lambda rr: (rr.cstring(), rr.i64(), rr.cstring(), rr.tags())[:3])
    return err, unknown, states_out


def describe_transactions(conn, ids):
    w = kp.Writer()
    w.carray(list(ids), lambda ww, s: ww.cstring(s))
    w.tags()
    r = conn.call(DESCRIBE_TRANSACTIONS, 0, w.bytes(), flexible=True)
    r.i32()

    def topic(rr):
        t = rr.cstring()
        parts = rr.carray(lambda r3: r3.i32())
        rr.tags()
        return t, sorted(parts)

    def state(rr):
        d = {"error": rr.i16(), "id": rr.cstring(), "state": rr.cstring(),
             "timeout_ms": rr.i32(), "start_ms": rr.i64(), "producer_id": rr.i64(),
             "epoch": rr.i16(), "topics": dict(rr.carray(topic))}
        rr.tags()
        return d
    return r.carray(state)


# confluent-kafka -----------------------------------------------------------------------------

@pytest.mark.broker_config(DEBUG)
def test_confluent_commit_and_abort_with_offsets(broker):
    make_topics(broker, "tx-in", "tx-a", "tx-b")
    # Input for the consume side of the loop: its offsets go into the transactions.
    inp = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(9):
        inp.produce("tx-in", value=b"in-%d" % i, partition=i % 3)
    assert inp.flush(20) == 0
    group = "tx-group"
    p = producer(broker, "tx-ck-1")
    p.init_transactions(30)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["tx-in"])
    wait_until(lambda: c.poll(0.2) is not None or bool(c.assignment()), 30, "group assignment",
               interval=0)
    # Commit: records to 3 partitions of two topics, plus the group's offsets.
    p.begin_transaction()
    for i in range(12):
        p.produce("tx-a", value=b"c-a-%d" % i, partition=i % 3)
        p.produce("tx-b", value=b"c-b-%d" % i, partition=i % 3)
    offsets = [TopicPartition("tx-in", part, 2 + part) for part in range(3)]
    p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    # The committed offsets are the group's now.
    c.close()
    assert group_committed(broker, group, "tx-in", 3) == {0: 2, 1: 3, 2: 4}
    # Abort: more records and offsets; the offsets are dropped.
    p.begin_transaction()
    for i in range(6):
        p.produce("tx-a", value=b"x-a-%d" % i, partition=i % 3)
    c2 = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                   "enable.auto.commit": False})
    p.send_offsets_to_transaction([TopicPartition("tx-in", 0, 9)], c2.consumer_group_metadata(),
                                  30)
    p.abort_transaction(30)
    c2.close()
    assert group_committed(broker, group, "tx-in", 3) == {0: 2, 1: 3, 2: 4}
    # A third transaction commits after the abort.
    p.begin_transaction()
    p.produce("tx-b", value=b"after", partition=1)
    p.commit_transaction(30)
    p.flush(10)
    # read_uncommitted sees every record, committed and aborted ones (no markers here: those are
    # the per-partition side's).
    got_a = consume_all(broker, "tx-a", 3, 18)
    got_b = consume_all(broker, "tx-b", 3, 13)
    assert sorted(v for _, v in got_a) == sorted([b"c-a-%d" % i for i in range(12)] +
                                                 [b"x-a-%d" % i for i in range(6)])
    assert sorted(v for _, v in got_b) == sorted([b"c-b-%d" % i for i in range(12)] + [b"after"])
    assert all(part == int(v.rsplit(b"-", 1)[1]) % 3 for part, v in got_a)
    assert_txn_answers_clean(broker)
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["tx-ck-1"])
        assert d["error"] == 0 and d["state"] == "CompleteCommit", d
    p.flush(5)


def test_fenced_zombie(broker):
    make_topics(broker, "tx-z", partitions=2)
    zombie = producer(broker, "tx-zombie")
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce("tx-z", value=b"zombie-1", partition=0)
    zombie.flush(10)
    # A second producer with the same id: its init fences the first and aborts its transaction.
    fresh = producer(broker, "tx-zombie")
    fresh.init_transactions(30)
    with pytest.raises(KafkaException) as ei:
        zombie.produce("tx-z", value=b"zombie-2", partition=1)
        zombie.commit_transaction(20)
    err = ei.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                          KafkaError.INVALID_PRODUCER_EPOCH), err
    assert err.fatal() or not err.retriable(), err
    # The new producer works.
    fresh.begin_transaction()
    fresh.produce("tx-z", value=b"fresh", partition=1)
    fresh.commit_transaction(30)
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["tx-zombie"])
        assert d["state"] == "CompleteCommit" and d["epoch"] >= 1, d


def test_list_and_describe_transactions(broker):
    make_topics(broker, "tx-l", partitions=2)
    a = producer(broker, "tx-list-a")
    a.init_transactions(30)
    a.begin_transaction()
    a.produce("tx-l", value=b"a", partition=1)
    a.flush(10)  # the partition is added before the produce is sent
    b = producer(broker, "tx-list-b")
    b.init_transactions(30)
    with kp.Conn(broker.bootstrap) as conn:
        err, unknown, states = list_transactions(conn, states=["Ongoing", "Nonsense"])
        assert err == 0 and unknown == ["Nonsense"]
        assert [s[0] for s in states] == ["tx-list-a"] and states[0][2] == "Ongoing"
        err, _, states = list_transactions(conn)
        assert sorted((s[0], s[2]) for s in states) == [("tx-list-a", "Ongoing"),
                                                        ("tx-list-b", "Empty")]
        pid_b = [s[1] for s in states if s[0] == "tx-list-b"][0]
        assert [s[0] for s in list_transactions(conn, pids=[pid_b])[2]] == ["tx-list-b"]
        # Running longer than an hour: none.
        assert list_transactions(conn, duration=3600_000)[2] == []
        da, db, dx = describe_transactions(conn, ["tx-list-a", "tx-list-b", "tx-nope"])
        assert da["error"] == 0 and da["state"] == "Ongoing" and da["topics"] == {"tx-l": [1]}
        assert da["timeout_ms"] == 60000 and da["start_ms"] > 0
        assert db["state"] == "Empty" and db["topics"] == {}
        assert dx["error"] == TRANSACTIONAL_ID_NOT_FOUND
    a.abort_transaction(30)
    with kp.Conn(broker.bootstrap) as conn:
        [da] = describe_transactions(conn, ["tx-list-a"])
        assert da["state"] == "CompleteAbort"


@pytest.mark.broker_config({"transaction.max.timeout.ms": 5000})
def test_timeout_aborts_and_max_timeout_refused(broker):
    make_topics(broker, "tx-t", partitions=1)
    too_long = producer(broker, "tx-long", {"transaction.timeout.ms": 60000})
    with pytest.raises(KafkaException) as ei:
        too_long.init_transactions(20)
    assert ei.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT
    p = producer(broker, "tx-short", {"transaction.timeout.ms": 1000})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("tx-t", value=b"late", partition=0)
    p.flush(10)
    with kp.Conn(broker.bootstrap) as conn:
        wait_until(lambda: describe_transactions(conn, ["tx-short"])[0]["state"] ==
                   "CompleteAbort", 20, "the timed-out transaction aborted")
    assert "aborted a timed-out transaction" in broker.log_text()


# Restart -------------------------------------------------------------------------------------

def test_state_survives_restart(broker):
    make_topics(broker, "tx-r", partitions=2)
    p = producer(broker, "tx-restart")
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("tx-r", value=b"one", partition=0)
    p.commit_transaction(30)
    with kp.Conn(broker.bootstrap) as conn:
        [before] = describe_transactions(conn, ["tx-restart"])
    p.flush(5)
    del p
    broker.restart()
    with kp.Conn(broker.bootstrap) as conn:
        [after] = describe_transactions(conn, ["tx-restart"])
    assert (after["state"], after["producer_id"], after["epoch"]) == \
        ("CompleteCommit", before["producer_id"], before["epoch"])
    # A new init continues the id: the same producer id, the next epoch.
    p = producer(broker, "tx-restart")
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("tx-r", value=b"two", partition=1)
    p.commit_transaction(30)
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["tx-restart"])
    assert d["producer_id"] == before["producer_id"] and d["epoch"] == before["epoch"] + 1
    # Producer ids handed out after the restart stay above the coordinator's.
    idem = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    idem.produce("tx-r", value=b"idem", partition=0)
    assert idem.flush(20) == 0
    with kp.Conn(broker.bootstrap) as conn:
        [d2] = describe_transactions(conn, ["tx-restart"])
        assert d2["producer_id"] == before["producer_id"]
