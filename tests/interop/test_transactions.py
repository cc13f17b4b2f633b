"""Transactions (issue 16): the transaction coordinator in `sluice serve` and its APIs, driven by
real clients. confluent-kafka (librdkafka) and kafkajs transactional producers commit and abort
transactions over several partitions and two topics with offsets sent to the transaction; every
transactional answer the broker gives carries no error (read from its request log); a zombie
producer is fenced; an ACL on the transactional id refuses a principal without WRITE on it;
ListTransactions/DescribeTransactions (raw protocol) show the coordinator's state; the
coordinator survives a restart, and a kill -9 between the commit decision and its markers
finishes the commit at start. DescribeProducers from @platformatic/kafka reports an open
transaction's and an idempotent producer's state and refuses a principal without READ;
AddPartitionsToTxn v4 (broker to broker, raw: no client sends it) needs CLUSTER_ACTION and its
verify_only adds nothing.

read_committed (the per-partition side, sl_txnpart.c): a read_committed consumer sees only
committed records, each once, in order, while read_uncommitted sees all; an open transaction
holds read_committed consumers at its first record (their end offset is the last stable offset)
until it commits; a transactional batch the coordinator did not add, and a client's control
batch, are refused (INVALID_RECORD) so no writer can hold the last stable offset back; a
consume-transform-produce worker (eos_worker.py) killed with SIGKILL inside open transactions
four times delivers every input to the ledger exactly once (read_committed), while
read_uncommitted shows the aborted duplicates; kill -9 of the broker in the middle of a
transaction hides its records for good."""
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import helpers as h
import kproto as kp
from conftest import Broker, finish_broker, wait_until

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
    return read_isolated(broker, topic, partitions, "read_uncommitted",
                         lambda got: len(got) >= expect, timeout=timeout, group=group)


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
    # Delivered before the abort (abort_transaction purges what is still queued in the client).
    assert p.flush(20) == 0
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


# kafkajs -------------------------------------------------------------------------------------

@pytest.mark.broker_config(DEBUG)
def test_kafkajs_commit_and_abort(broker):
    make_topics(broker, "kjs-a", "kjs-b")
    res = subprocess.run(["node", str(NODE_DIR / "txn_kafkajs.mjs"), broker.bootstrap, "kjs-a",
                          "kjs-b", "kjs-group"], cwd=NODE_DIR, capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"kafkajs printed nothing: {res.stdout!r} {res.stderr[-2000:]!r}"
    out = json.loads(lines[-1])
    assert out["ok"], out
    assert res.returncode == 0
    # The committed transaction's offsets, not the aborted one's.
    assert out["committed"] == {"0": 7, "1": -1, "2": 3}, out
    got_a = consume_all(broker, "kjs-a", 3, 4)
    got_b = consume_all(broker, "kjs-b", 3, 1)
    assert sorted(got_a) == [(0, b"kc-a-0"), (1, b"ka-a-1"), (1, b"kc-a-1"), (2, b"kc-a-2")]
    assert got_b == [(1, b"kc-b-1")]
    assert_txn_answers_clean(broker)
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["kjs-txn"])
        assert d["state"] == "CompleteAbort", d


# kill -9 between the commit decision and its markers ------------------------------------------

SHIM_SRC = Path(__file__).parent / "shim" / "fsync_gate.c"


@pytest.fixture
def gated_broker(request, tmp_path, monkeypatch):
    """A broker whose fsync/fdatasync wait while `gate` is missing (tests/interop/shim)."""
    shim = tmp_path / "fsync_gate.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(SHIM_SRC), "-ldl"],
                   check=True)
    gate = tmp_path / "gate-open"
    gate.touch()
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("SLUICE_TEST_FSYNC_GATE", str(gate))
    opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":verify_asan_link_order=0")
    b = Broker(tmp_path)
    request.node._sluice_broker = b
    b.start()
    monkeypatch.delenv("LD_PRELOAD")  # the clients, and the restarted broker, run without it
    yield b, gate
    gate.touch()
    finish_broker(b)


def test_kill9_between_commit_decision_and_markers(gated_broker):
    broker, gate = gated_broker
    make_topics(broker, "tx-k", partitions=2)
    p = producer(broker, "tx-kill", {"transaction.timeout.ms": 600000})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("tx-k", value=b"k0", partition=0)
    p.produce("tx-k", value=b"k1", partition=1)
    assert p.flush(20) == 0
    # Offsets in the transaction (a group that never had members: a simple commit).
    meta = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "tx-k-group"})
    p.send_offsets_to_transaction([TopicPartition("tx-k", 0, 5), TopicPartition("tx-k", 1, 6)],
                                  meta.consumer_group_metadata(), 30)
    meta.close()
    txn_log = broker.data_dir / "sluice-txn.log"
    size = txn_log.stat().st_size
    # From here the broker's fsyncs wait: EndTxn writes its PrepareCommit record and then
    # waits in fdatasync, before any marker or answer.
    gate.unlink()
    done = []
    t = threading.Thread(target=lambda: done.append(_try(lambda: p.commit_transaction(60))),
                         daemon=True)
    t.start()
    wait_until(lambda: txn_log.stat().st_size > size, 30, "the commit decision written")
    assert not done, "EndTxn answered while its decision's fsync was held"
    broker.kill9()
    gate.touch()
    broker.start()  # without the shim
    # Finished at start: its offsets are applied (once durable in the offsets log), then the
    # markers, then Complete.
    wait_until(lambda: "finished a transaction decided before the restart" in broker.log_text(),
               20, "the pending commit finished at start")
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["tx-kill"])
    assert d["state"] == "CompleteCommit", d
    # The commit's offsets were saved before its decision: they are the group's now.
    assert group_committed(broker, "tx-k-group", "tx-k", 2) == {0: 5, 1: 6}
    assert list((broker.data_dir / "sluice-txn-offsets").iterdir()) == []
    # The producer id continues with a new init.
    p2 = producer(broker, "tx-kill")
    p2.init_transactions(30)
    p2.begin_transaction()
    p2.produce("tx-k", value=b"after", partition=0)
    p2.commit_transaction(30)
    with kp.Conn(broker.bootstrap) as conn:
        [d2] = describe_transactions(conn, ["tx-kill"])
    assert (d2["state"], d2["producer_id"]) == ("CompleteCommit", d["producer_id"])
    assert d2["epoch"] > d["epoch"]


def _try(fn):
    try:
        fn()
        return None
    except KafkaException as e:
        return e


# ACLs ----------------------------------------------------------------------------------------

@pytest.fixture
def acl_broker(request, tmp_path):
    from test_acl import USERS, start_acl_broker
    b = start_acl_broker(request, tmp_path, USERS, {"auto.create.topics.enable": "true"})
    yield b
    finish_broker(b)


def test_transactional_id_acl(acl_broker):
    from confluent_kafka.admin import NewTopic
    from test_acl import binding, ck_admin, ck_conf, create_acls
    b = acl_broker
    adm = ck_admin(b, "admin")
    for f in adm.create_topics([NewTopic("payments", 2, 1)]).values():
        f.result(30)
    create_acls(b,
                binding("TOPIC", "payments", "LITERAL", "User:payments-writer", "WRITE", "ALLOW"),
                binding("TRANSACTIONAL_ID", "pay-", "PREFIXED", "User:payments-writer", "WRITE",
                        "ALLOW"))
    # WRITE on the topic but not on this transactional id: refused at init.
    denied = Producer(ck_conf(b, "payments-writer", **{"transactional.id": "other-tx"}))
    with pytest.raises(KafkaException) as ei:
        denied.init_transactions(20)
    assert ei.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, \
        ei.value.args[0]
    # The granted prefix: a full transaction goes through.
    ok = Producer(ck_conf(b, "payments-writer", **{"transactional.id": "pay-1"}))
    ok.init_transactions(30)
    ok.begin_transaction()
    ok.produce("payments", value=b"paid", partition=1)
    ok.commit_transaction(30)
    # Another principal with no grant on it cannot take over (fence) that id.
    thief = Producer(ck_conf(b, "fraud", **{"transactional.id": "pay-1"}))
    with pytest.raises(KafkaException) as ei:
        thief.init_transactions(20)
    assert ei.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # Operators' views follow DESCRIBE on the id (WRITE implies it): the owner lists and
    # describes its id, another principal sees nothing of it.
    from test_acl import raw_conn
    with raw_conn(b, "payments-writer") as conn:
        assert [t[0] for t in list_transactions(conn)[2]] == ["pay-1"]
        [d] = describe_transactions(conn, ["pay-1"])
        assert (d["error"], d["state"]) == (0, "CompleteCommit")
    with raw_conn(b, "fraud") as conn:
        assert list_transactions(conn)[2] == []
        [d] = describe_transactions(conn, ["pay-1"])
        assert d["error"] == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # The refusals are the authorization stage's (logged as ACL denials).
    assert re.search(r'msg="denied" principal=User:payments-writer .*TRANSACTIONAL_ID:other-tx',
                     b.log_text()), b.log_tail()


# DescribeProducers and AddPartitionsToTxn v4 ---------------------------------------------------

DESCRIBE_PRODUCERS = 61
ADD_PARTITIONS_TO_TXN = 24
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49


def describe_producers_node(b, user, topic, partitions):
    """DescribeProducers v0 sent by @platformatic/kafka as `user` (node/producers_platformatic.mjs):
    {partition: (error, [producer, ...])}."""
    from test_acl import password_of
    env = dict(os.environ, SASL_PASSWORD=password_of(b, user))
    res = subprocess.run(["node", str(NODE_DIR / "producers_platformatic.mjs"), b.bootstrap,
                          str(b.ca_pem), user, topic, ",".join(map(str, partitions))],
                         cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=90)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"node printed nothing: {res.stdout!r} {res.stderr[-2000:]!r}"
    out = json.loads(lines[-1])
    assert out["ok"] and res.returncode == 0, out
    return {p["partition"]: (p["error"], p["producers"]) for p in out["partitions"]}


def test_describe_producers_platformatic(acl_broker):
    """A transactional producer with a transaction open on partition 0 and an idempotent one on
    partition 1 (confluent-kafka, as payments-writer): DescribeProducers from @platformatic/kafka
    as a principal with READ on the topic reports both as the partition holds them (the
    transaction's first offset while it is open, -1 once committed; the coordinator's epoch for
    the transactional one only); a principal with only DESCRIBE on the topic gets
    TOPIC_AUTHORIZATION_FAILED on every partition and no producer."""
    from confluent_kafka.admin import NewTopic
    from test_acl import binding, ck_admin, ck_conf, create_acls, raw_conn
    b = acl_broker
    adm = ck_admin(b, "admin")
    for f in adm.create_topics([NewTopic("dp", 2, 1)]).values():
        f.result(30)
    create_acls(b,
                binding("TOPIC", "dp", "LITERAL", "User:payments-writer", "WRITE", "ALLOW"),
                binding("TRANSACTIONAL_ID", "pay-", "PREFIXED", "User:payments-writer", "WRITE",
                        "ALLOW"),
                binding("TOPIC", "dp", "LITERAL", "User:auditor", "READ", "ALLOW"),
                binding("TOPIC", "dp", "LITERAL", "User:fraud", "DESCRIBE", "ALLOW"))
    before_ms = int(time.time() * 1000)
    tx = Producer(ck_conf(b, "payments-writer", **{"transactional.id": "pay-dp",
                                                   "transaction.timeout.ms": 60000}))
    tx.init_transactions(30)
    tx.begin_transaction()
    for i in range(3):
        tx.produce("dp", value=b"t%d" % i, partition=0)
    assert tx.flush(30) == 0
    idem = Producer(ck_conf(b, "payments-writer", **{"enable.idempotence": True}))
    for i in range(2):
        idem.produce("dp", value=b"i%d" % i, partition=1)
    assert idem.flush(30) == 0
    with raw_conn(b, "payments-writer") as conn:
        [d] = describe_transactions(conn, ["pay-dp"])
    assert d["state"] == "Ongoing", d

    got = describe_producers_node(b, "auditor", "dp", [0, 1])
    err0, prods0 = got[0]
    err1, prods1 = got[1]
    assert (err0, err1) == (0, 0), got
    [t] = prods0
    assert t["producerId"] == d["producer_id"] and t["producerEpoch"] == d["epoch"], (t, d)
    assert t["currentTxnStartOffset"] == 0, t
    assert t["coordinatorEpoch"] == 0, t
    assert t["lastTimestamp"] >= before_ms - 1000, t
    [i] = prods1
    assert i["producerId"] != t["producerId"] and i["producerId"] >= 0, (i, t)
    assert i["currentTxnStartOffset"] == -1 and i["coordinatorEpoch"] == -1, i
    # librdkafka numbers each partition's batches from 0: 3 records, then 2.
    assert t["lastSequence"] == 2 and i["lastSequence"] == 1, (t, i)

    denied = describe_producers_node(b, "fraud", "dp", [0, 1])
    assert denied == {0: (TOPIC_AUTHORIZATION_FAILED, []), 1: (TOPIC_AUTHORIZATION_FAILED, [])}
    assert re.search(r'msg="denied" principal=User:fraud .*op=READ resource=TOPIC:dp',
                     b.log_text()), b.log_tail()

    tx.commit_transaction(30)
    err0, [t2] = describe_producers_node(b, "auditor", "dp", [0])[0]
    assert err0 == 0 and t2["producerId"] == t["producerId"], t2
    assert t2["currentTxnStartOffset"] == -1, t2


def add_partitions_v4(conn, txns):
    """AddPartitionsToTxn v4 (broker to broker, KIP-890; no client sends it, so raw): txns are
    (transactional id, producer id, epoch, verify_only, {topic: [partition, ...]}). Returns
    (top-level error, {transactional id: {(topic, partition): error}})."""
    w = kp.Writer()

    def txn(ww, x):
        tid, pid, epoch, verify, topics = x
        ww.cstring(tid)
        ww.i64(pid)
        ww.i16(epoch)
        ww.bool(verify)
        ww.carray(list(topics.items()),
                  lambda w3, t: (w3.cstring(t[0]), w3.carray(t[1], lambda w4, p: w4.i32(p)),
                                 w3.tags()))
        ww.tags()
    w.carray(list(txns), txn)
    w.tags()
    r = conn.call(ADD_PARTITIONS_TO_TXN, 4, w.bytes(), flexible=True)
    r.i32()
    top = r.i16()

    def part(rr):
        p, e = rr.i32(), rr.i16()
        rr.tags()
        return p, e

    def topic(rr):
        name = rr.cstring()
        parts = rr.carray(part)
        rr.tags()
        return [((name, p), e) for p, e in parts]

    def result(rr):
        tid = rr.cstring()
        topics = rr.carray(topic)
        rr.tags()
        return tid, dict(x for t in topics for x in t)
    return top, dict(r.carray(result))


def test_add_partitions_to_txn_v4_raw(acl_broker):
    """The batched broker-to-broker form, sent raw (no public client sends v4): a principal
    without CLUSTER_ACTION gets CLUSTER_AUTHORIZATION_FAILED and nothing else; a super user's
    verify_only tells which partitions an open transaction holds (and adds none), a second
    transaction in the same request with a wrong producer id fails alone, and a plain v4 add
    puts a partition into the transaction."""
    from confluent_kafka.admin import NewTopic
    from test_acl import binding, ck_admin, ck_conf, create_acls, raw_conn
    b = acl_broker
    adm = ck_admin(b, "admin")
    for f in adm.create_topics([NewTopic("v4t", 2, 1)]).values():
        f.result(30)
    create_acls(b,
                binding("TOPIC", "v4t", "LITERAL", "User:payments-writer", "WRITE", "ALLOW"),
                binding("TRANSACTIONAL_ID", "pay-", "PREFIXED", "User:payments-writer", "WRITE",
                        "ALLOW"))
    tx = Producer(ck_conf(b, "payments-writer", **{"transactional.id": "pay-v4"}))
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce("v4t", value=b"x", partition=0)
    assert tx.flush(30) == 0
    with raw_conn(b, "payments-writer") as conn:
        [d] = describe_transactions(conn, ["pay-v4"])
    pid, epoch = d["producer_id"], d["epoch"]
    assert d["topics"] == {"v4t": [0]}, d

    verify = ("pay-v4", pid, epoch, True, {"v4t": [0, 1]})
    with raw_conn(b, "fraud") as conn:
        assert add_partitions_v4(conn, [verify]) == (CLUSTER_AUTHORIZATION_FAILED, {})
    with raw_conn(b, "admin") as conn:
        unknown = ("pay-none", pid, epoch, True, {"v4t": [0]})
        top, res = add_partitions_v4(conn, [verify, unknown])
        assert (top, res) == (0, {"pay-v4": {("v4t", 0): 0, ("v4t", 1): INVALID_TXN_STATE},
                                  "pay-none": {("v4t", 0): INVALID_PRODUCER_ID_MAPPING}}), res
        with raw_conn(b, "payments-writer") as conn2:  # verify_only added nothing
            assert describe_transactions(conn2, ["pay-v4"])[0]["topics"] == {"v4t": [0]}
        top, res = add_partitions_v4(conn, [("pay-v4", pid, epoch, False, {"v4t": [1]})])
        assert (top, res) == (0, {"pay-v4": {("v4t", 1): 0}})
    with raw_conn(b, "payments-writer") as conn:
        [d] = describe_transactions(conn, ["pay-v4"])
    assert d["topics"] == {"v4t": [0, 1]}, d
    tx.commit_transaction(30)
    assert re.search(r'msg="denied" principal=User:fraud .*op=CLUSTER_ACTION', b.log_text()), \
        b.log_tail()


# ---- read_committed (the per-partition side, sl_txnpart.c) ------------------------------------

def read_isolated(broker, topic, partitions, level, until, timeout=60, group=None):
    """(partition, value) of every record `level` shows, polled until `until(got)` holds."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group or f"r-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": level})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = []

        def more():
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append((m.partition(), m.value()))
            return until(got)
        wait_until(more, timeout, f"{level} read of {topic}", interval=0)
        return got
    finally:
        c.close()


def test_read_committed_sees_only_committed_in_order(broker):
    make_topics(broker, "ledger", partitions=2)
    p = producer(broker, "ledger-writer")
    p.init_transactions(30)
    for txn, commit in (("t1", True), ("t2", False), ("t3", True)):
        p.begin_transaction()
        for i in range(6):
            p.produce("ledger", f"{txn}-{i}".encode(), partition=i % 2)
        p.flush(30)
        (p.commit_transaction if commit else p.abort_transaction)(30)
    committed = [f"{t}-{i}".encode() for t in ("t1", "t3") for i in range(6)]
    everything = [f"{t}-{i}".encode() for t in ("t1", "t2", "t3") for i in range(6)]
    rc = read_isolated(broker, "ledger", 2, "read_committed",
                       lambda g: {v for _, v in g} >= set(committed))
    # Only committed records, each once, in produce order within each partition.
    assert sorted(v for _, v in rc) == sorted(committed), rc
    for part in (0, 1):
        vals = [v for pp, v in rc if pp == part]
        assert vals == [v for i, v in enumerate(committed) if (i % 6) % 2 == part], vals
    ru = read_isolated(broker, "ledger", 2, "read_uncommitted",
                       lambda g: len(g) >= len(everything))
    assert sorted(v for _, v in ru) == sorted(everything), ru


def test_open_transaction_holds_read_committed_at_its_start(broker):
    make_topics(broker, "held", partitions=1)
    p = producer(broker, "held-writer")
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("held", b"in-txn", partition=0)
    p.flush(30)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    plain.produce("held", b"after", partition=0)
    plain.flush(30)
    # read_uncommitted sees both; read_committed sees nothing while the transaction is open
    # (the last stable offset is its first record), then both once it commits.
    assert len(read_isolated(broker, "held", 1, "read_uncommitted", lambda g: len(g) >= 2)) == 2
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"r-{uuid.uuid4()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition("held", 0, 0)])
        # A read_committed consumer's end offset is the last stable offset: the open
        # transaction's first record, though two records are in the log.
        lo, hi = c.get_watermark_offsets(TopicPartition("held", 0), timeout=10)
        assert (lo, hi) == (0, 0), (lo, hi)
        early = [m for m in c.consume(10, timeout=2) if not m.error()]
        assert early == [], [m.value() for m in early]
        p.commit_transaction(30)
        got = []
        wait_until(lambda: got.extend(m.value() for m in c.consume(10, timeout=0.5)
                                      if not m.error()) or len(got) >= 2, 30,
                   "records after the commit")
        assert got == [b"in-txn", b"after"], got
    finally:
        c.close()


def test_forged_transactional_and_control_batches_refused(broker):
    """A writer cannot open a transaction the coordinator knows nothing of (it would hold the
    last stable offset back for every read_committed consumer), nor write a control batch."""
    make_topics(broker, "forged", partitions=1)
    with kp.Conn(broker.bootstrap) as conn:
        txn = kp.record_batch([(b"k", b"forged", [])], attributes=0x10, producer_id=4242,
                              producer_epoch=0, base_sequence=0)
        assert kp.produce(conn, "forged", 0, txn)[0] == 87, "transactional batch without a txn"
        ctl = kp.record_batch([(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", [])],
                              attributes=0x30, producer_id=4242, producer_epoch=0)
        assert kp.produce(conn, "forged", 0, ctl)[0] == 87, "control batch from a client"
        ok = kp.record_batch([(b"k", b"plain", [])])
        assert kp.produce(conn, "forged", 0, ok)[0] == 0
    got = read_isolated(broker, "forged", 1, "read_committed", lambda g: len(g) >= 1)
    assert [v for _, v in got] == [b"plain"], got


def test_kill9_in_the_middle_of_a_transaction(broker):
    """kill -9 of the broker while a transaction is open (records appended, no decision): after
    the restart its records stay invisible to read_committed — the next init of the same
    transactional id aborts it (ABORT markers), the committed transactions before it are intact,
    and the next transaction commits normally."""
    make_topics(broker, "mid", partitions=2)
    p = producer(broker, "mid-writer")
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(4):
        p.produce("mid", f"ok-{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce("mid", f"lost-{i}".encode(), partition=i % 2)
    p.flush(30)
    # Every record of the open transaction is in the log before the kill.
    assert len(consume_all(broker, "mid", 2, 10)) == 10
    broker.kill9()
    del p
    broker.start()
    p = producer(broker, "mid-writer")
    p.init_transactions(60)  # fences the old epoch: its open transaction is aborted first
    with kp.Conn(broker.bootstrap) as conn:
        [d] = describe_transactions(conn, ["mid-writer"])
    assert d["state"] in ("Empty", "CompleteAbort"), d
    p.begin_transaction()
    p.produce("mid", b"after", partition=0)
    p.commit_transaction(30)
    want = {f"ok-{i}".encode() for i in range(4)} | {b"after"}
    got = read_isolated(broker, "mid", 2, "read_committed", lambda g: {v for _, v in g} >= want)
    assert sorted(v for _, v in got) == sorted(want), got


@pytest.mark.timeout_s(400)
# Each restarted worker waits for the killed one's group session to expire before it gets the
# partitions: 2 s sessions (eos_worker.py) instead of Kafka's 6 s minimum, and a short initial
# rebalance delay, spare about 5 s per cycle; the kills, the fencing and the checks are the same.
@pytest.mark.broker_config({"group.min.session.timeout.ms": 1000,
                            "group.initial.rebalance.delay.ms": 200})
def test_consume_transform_produce_exactly_once_across_kill9(broker):
    """The payment pipeline: a worker consumes `debits`, produces one `ledger` entry per debit
    and commits its consumer offsets in the same transaction (tests/interop/eos_worker.py,
    confluent-kafka). It is killed with SIGKILL mid-stream several times and started again
    (same transactional id: the new one fences the old and its open transaction is aborted).
    At the end a read_committed reader of `ledger` finds every debit exactly once."""
    import signal
    import sys
    import time
    make_topics(broker, "debits", "ledger", partitions=2)
    n = 600
    src = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(n):
        src.produce("debits", f"d{i:04d}".encode(), partition=i % 2)
    assert src.flush(30) == 0
    worker = [sys.executable, str(Path(__file__).parent / "eos_worker.py"), broker.bootstrap,
              "ledger-worker"]

    kills = 0
    for cycle in range(4):
        # Each run commits a few transactions, then leaves one open with its ledger records in
        # the log (flushed, undecided) and is killed there.
        w = subprocess.Popen(worker + [str(3 + cycle)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert w.stdout.readline().strip() == "ready", "worker did not start"
            line = ""
            deadline = time.monotonic() + 90
            while not line.startswith("open") and time.monotonic() < deadline:
                line = w.stdout.readline()
                assert line, f"worker exited in cycle {cycle}"
            assert line.startswith("open"), f"no open transaction in cycle {cycle}"
        finally:
            w.send_signal(signal.SIGKILL)
            w.wait()
            kills += 1
    # The killed runs' open transactions left records in the ledger that read_committed must
    # never show.
    uncommitted = consume_all(broker, "ledger", 2, 1)
    assert uncommitted, "no ledger record at all"
    # The last run drains the rest.
    w = subprocess.Popen(worker + ["0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = read_isolated(broker, "ledger", 2, "read_committed",
                            lambda g: len({v for _, v in g}) >= n, timeout=180)
    finally:
        w.send_signal(signal.SIGKILL)
        w.wait()
    values = [v for _, v in got]
    assert len(values) == len(set(values)) == n, \
        f"{len(values)} ledger entries, {len(set(values))} distinct, want {n} (kills={kills})"
    assert set(values) == {f"L:d{i:04d}".encode() for i in range(n)}
    # read_uncommitted shows the aborted attempts too: duplicates were really in the log.
    everything = read_isolated(broker, "ledger", 2, "read_uncommitted",
                               lambda g: len(g) >= n + kills)
    assert len(everything) > len(values), "the kills left no aborted records to hide"
