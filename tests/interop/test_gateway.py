"""`sluice gateway` (issue 14, docs/gateway.md) with real clients. Clients only ever connect to
the gateway, over SASL_SSL with SCRAM-SHA-512; the gateway forwards to

  - a 3-broker librdkafka mock cluster (the module's `gateway` fixture; partitions led
    round-robin by brokers 1, 2, 3, so every topic has partitions on all three), or
  - a `sluice serve` upstream with SASL_SSL + SCRAM (`gateway_serve`), where the gateway logs in
    as its own user. @platformatic/kafka only runs here: it starts with ApiVersions v3 and needs
    flexible versions (Metadata v12 with topic ids), which the librdkafka 2.0.2 mock does not
    speak. Record encryption toward the upstream is checked here too, because only a real
    broker's data directory can be grepped for a clear marker.

Each client round trip is 10 000 records spread over that client's codecs, byte-identical
(keys, values, headers, timestamps where the client sets them). One gateway per upstream kind
for the whole module; tests that disturb the upstream (leader moves, brokers down) put it back.
"""
import json
import logging
import os
import re
import signal
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import gateway as gw
import helpers as h
from conftest import wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"
N = 10_000  # records per client, spread over its codecs
TOPIC_AUTHZ, GROUP_AUTHZ, TXN_AUTHZ, NOT_ATTEMPTED = 29, 30, 53, 55
MARKER = "SLUICE-GW-CLEAR-MARKER-7f3e21"

# One topic per client (its codecs one after the other, each from its own base offset): every
# partition leader set in the mock costs ~0.3 s of start-up, so partitions are counted.
TOPICS = ["kcat:3", "ck:3", "kp:3", "kjs-none:3", "kjs-gzip:3", "kjs-snappy:3", "grp:6",
          "mv:3", "acl:1", "sni:3", "txn:1"]
pytestmark = [pytest.mark.gateway(upstream="mock", topics=TOPICS), pytest.mark.timeout_s(180)]


@pytest.fixture(scope="module")
def gateway_serve(request, tmp_path_factory):
    """A gateway in front of `sluice serve` (SASL_SSL + SCRAM upstream). The upstream's own
    encryption at rest is off so that its data directory shows what the gateway sent; the
    gateway encrypts topics enc-* toward it."""
    g = gw.start_gateway(tmp_path_factory.mktemp("gateway-serve"), upstream="serve",
                         config={"sluice.gateway.encrypt.enable": "true",
                                 "sluice.gateway.encrypt.topics": "enc-*"},
                         upstream_config={"sluice.encryption.enable": "false"})
    request.module._sluice_logs = getattr(request.module, "_sluice_logs", []) + g.logged()
    try:
        yield g
    finally:
        g.finish()


def run(args, stdin=None, timeout=120):
    r = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args[0]} exited {r.returncode}: {r.stderr[-3000:]}"
    return r


def ports_in(text):
    """Every 127.0.0.1 port a client log names."""
    return {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}


def gateway_metadata(g, topic):
    """kcat -L -J through the gateway (as alice)."""
    return json.loads(run(["kcat", *gw.kcat_args(g), "-L", "-J", "-t", topic]).stdout)


def leaders(md, topic):
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    return {p["partition"]: p["leader"] for p in t["partitions"]}


def grant(g, *bindings):
    """ACLs created through the gateway by its super user (kafka-python admin client)."""
    from test_acl import create_acls
    create_acls(g, *bindings)


def grant_all(g, user, *topics, groups=()):
    from test_acl import binding
    bs = [binding("TOPIC", t, "LITERAL", f"User:{user}", "ALL", "ALLOW") for t in topics]
    bs += [binding("GROUP", grp, "LITERAL", f"User:{user}", "ALL", "ALLOW") for grp in groups]
    grant(g, *bs)


@pytest.fixture(scope="module")
def alice(gateway):
    """alice may do anything with the round-trip topics and the test groups."""
    names = [t.split(":")[0] for t in TOPICS if not t.startswith("acl")]
    grant_all(gateway, "alice", *names, groups=["gw-grp", "sluice-interop-unused"])
    return "alice"


# ---- round trips through the gateway to the mock -------------------------------------------------

def test_kcat_roundtrip(gateway, alice):
    """kcat produces and consumes every codec through the gateway; its broker debug log names
    gateway ports only (the bootstrap and the three node ports), never an upstream one."""
    args = gw.kcat_args(gateway, alice)
    per_p = -(-N // (3 * len(h.ALL_CODECS)))
    logs = ""
    for k, codec in enumerate(h.ALL_CODECS):
        base = k * per_p
        expected = {}
        for p in range(3):
            lines = [f"k{p}-{i}\tkcat {codec} p{p} record {i} " + "x" * (i % 200)
                     for i in range(per_p)]
            expected[p] = lines
            r = run(["kcat", *args, "-d", "broker", "-P", "-t", "kcat", "-p", str(p), "-K", "\t",
                     "-z", codec, "-H", "src=kcat", "-H", "codec=" + codec, "-X", "acks=all",
                     "-X", "message.timeout.ms=60000"], stdin="\n".join(lines) + "\n")
            logs += r.stderr
        r = run(["kcat", *args, "-d", "broker", "-C", "-t", "kcat", "-o", str(base), "-e", "-J",
                 "-q", "-c", str(3 * per_p)])
        logs += r.stderr
        msgs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        for p in range(3):
            got = sorted((m for m in msgs if m["partition"] == p), key=lambda m: m["offset"])
            assert len(got) == per_p, f"kcat/{codec} p{p}: got {len(got)}, want {per_p}"
            for i, (m, line) in enumerate(zip(got, expected[p])):
                key, value = line.split("\t", 1)
                assert m["offset"] == base + i and m["key"] == key and m["payload"] == value, \
                    f"kcat/{codec} p{p} #{i}: {m}"
                assert m.get("headers") == ["src", "kcat", "codec", codec], m
    seen = ports_in(logs)
    assert not seen & gateway.upstream_ports, \
        f"kcat was given upstream addresses: {sorted(seen & gateway.upstream_ports)}"
    # Partitions are led by all three upstream brokers, so kcat used every node port.
    assert set(gateway.node_ports.values()) <= seen, (sorted(seen), gateway.node_ports)


def codec_rounds(codecs, topic, produce, consume):
    """Each codec in turn writes its share of N records (a multiple of 3, so every partition
    grows by the same count) into `topic` and reads it back from its base offset, compared
    byte for byte. produce(records, codec) -> acks; consume(counts, start, codec) -> [Got]."""
    per = 3 * -(-N // (3 * len(codecs)))
    for k, codec in enumerate(codecs):
        base = k * per // 3
        records = h.make_records(f"{topic}-{codec}", per)
        acked = {p: {o - base: r for o, r in offs.items()}
                 for p, offs in produce(records, codec).items()}
        expected = h.expected_from_acks(acked, f"{topic}/{codec}")
        assert expected == h.by_partition(records), "offset order differs from production order"
        got = consume({p: len(v) for p, v in expected.items()}, base, codec)
        for g_ in got:
            g_.offset -= base
        h.verify(expected, got, f"{topic}/{codec}")


def test_confluent_kafka_roundtrip(gateway, alice):
    conf = gw.ck_conf(gateway, alice)
    codec_rounds(h.ALL_CODECS, "ck",
                 lambda recs, codec: h.ck_produce(gateway.bootstrap, "ck", recs, codec, extra=conf),
                 lambda counts, start, codec: h.ck_consume(gateway.bootstrap, "ck", counts,
                                                           start=start, extra=conf))


def test_kafka_python_roundtrip(gateway, alice):
    """kafka-python 2.0.2 fetches with Fetch v4, which cannot carry zstd: its zstd records are
    read back with librdkafka, as in test_clients.py."""
    kw = gw.kp_kw(gateway, alice)
    conf = gw.ck_conf(gateway, alice)
    codecs = [c for c in h.ALL_CODECS if h.kp_codec_available(c)]
    assert {"none", "gzip"} <= set(codecs)

    def consume(counts, start, codec):
        if codec == "zstd":
            return h.ck_consume(gateway.bootstrap, "kp", counts, start=start, extra=conf)
        return h.kp_consume(gateway.bootstrap, "kp", counts, start=start, extra=kw)
    codec_rounds(codecs, "kp",
                 lambda recs, codec: h.kp_produce(gateway.bootstrap, "kp", recs, codec, extra=kw),
                 consume)


def run_node(script, g, user, n, **env):
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
    res = subprocess.run(["node", str(NODE_DIR / script), g.bootstrap, str(n)], cwd=str(NODE_DIR),
                         capture_output=True, text=True, timeout=170,
                         env=gw.node_env(g, user, **env))
    assert res.returncode == 0, \
        f"{script} exited {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_node(result, name):
    """Every codec the client has passed (none and gzip at least), N records in all."""
    failed = {c: r for c, r in result["codecs"].items() if not r.get("ok") and "skipped" not in r}
    assert not failed, f"{name}: failed codecs: {failed}"
    ok = {c: r["records"] for c, r in result["codecs"].items() if r.get("ok")}
    assert {"none", "gzip"} <= set(ok), f"{name}: none/gzip must pass: {result}"
    assert sum(ok.values()) >= N, f"{name}: only {sum(ok.values())} records verified: {ok}"


def test_kafkajs_roundtrip(gateway, alice):
    """kafkajs (none, gzip and snappy; lz4/zstd need native plugins). The mock has no
    CreateTopics: the topics were created in the mock (SLUICE_TOPICS_PRECREATED)."""
    result = run_node("kafkajs_roundtrip.mjs", gateway, alice, -(-N // 3),
                      SLUICE_TOPICS_PRECREATED="1")
    check_node(result, "kafkajs")


# ---- groups, idempotence, leader moves -----------------------------------------------------------

class Member(threading.Thread):
    """A confluent-kafka group member polling in its own thread."""

    def __init__(self, g, group, topic):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer
        self.c = Consumer(gw.ck_conf(g, "alice", **{
            "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "partition.assignment.strategy": "range", "fetch.wait.max.ms": 100,
            # A member that misses a rebalance is dropped after 6 s, not librdkafka's 45 s.
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}))
        self.c.subscribe([topic])
        self.got, self.errors, self.stop_ev = [], [], threading.Event()
        self.lock = threading.Lock()

    def run(self):
        try:
            while not self.stop_ev.is_set():
                m = self.c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    self.errors.append(m.error())
                    continue
                with self.lock:
                    self.got.append((m.partition(), m.offset()))
        finally:
            # Closed here, so the members leave together (one leaving alone would start a
            # rebalance the others then wait through).
            self.c.close()

    def partitions(self):
        return {tp.partition for tp in self.c.assignment()}

    def stop(self):
        self.stop_ev.set()


def test_consumer_group_of_three_spreads_over_upstream_brokers(gateway, alice):
    """Three members of one group through the gateway share the 6 partitions of `grp`, led by
    upstream brokers 1, 2, 3 round-robin; everything produced is consumed once, each record by
    the member owning its partition."""
    leader_of = gateway.mock.leaders()["grp"]
    assert sorted(set(leader_of)) == [1, 2, 3]
    members = [Member(gateway, "gw-grp", "grp") for _ in range(3)]
    for m in members:
        m.start()
    try:
        def spread():
            parts = [m.partitions() for m in members]
            return (all(len(p) == 2 for p in parts) and set().union(*parts) == set(range(6))
                    and parts)
        parts = wait_until(spread, 60, "three members with two partitions each")
        for p in parts:
            assert len({leader_of[x] for x in p}) == 2, \
                f"a member's partitions are led by one upstream broker only: {p} {leader_of}"
        records = h.make_records("grp", 600, partitions=6)
        h.ck_produce(gateway.bootstrap, "grp", records, "lz4", extra=gw.ck_conf(gateway, alice))

        def all_in():
            return sum(len(m.got) for m in members) >= 600
        wait_until(all_in, 60, "600 records consumed by the group")
        for m, p in zip(members, parts):
            assert {x for x, _ in m.got} <= p, f"member consumed outside its assignment {p}"
            assert not m.errors, m.errors
        every = [r for m in members for r in m.got]
        assert len(every) == len(set(every)) == 600, f"{len(every)} consumed, duplicates?"
    finally:
        for m in members:
            m.stop()
        for m in members:
            m.join(30)


def sasl_conn(g, addr, user="alice"):
    """A raw kproto connection to gateway address `addr` over TLS, logged in with SCRAM."""
    import ssl

    import kproto as kp
    from test_sasl import scram_login
    c = kp.Conn(addr)
    c.sock = ssl.create_default_context(cafile=str(g.ca_pem)).wrap_socket(
        c.sock, server_hostname="localhost")
    err, msg, _ = scram_login(c, user, g.users[user], gw.MECHANISM)
    assert err == 0, f"SCRAM login of {user} at the gateway failed: {err} {msg}"
    return c


def topic_at_first_node(g, topic):
    """Creates `topic` (one partition) as admin; the gateway address of the first upstream node,
    for raw connections (sasl_conn)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    return f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"


class Watch(threading.Thread):
    """Samples `ss` while clients run: any connection to an upstream port from a process other
    than the gateway or the mock is recorded. Also notes that it saw this test process connected
    to gateway node ports, so an `ss` without process information cannot pass silently."""

    def __init__(self, g):
        super().__init__(daemon=True)
        self.g, self.bad, self.saw_own, self.stop_ev = g, set(), False, threading.Event()

    def run(self):
        import os
        me = f"pid={os.getpid()},"
        node_ports = {f":{p} " for p in self.g.node_ports.values()}
        while not self.stop_ev.is_set():
            self.bad.update(gw.foreign_upstream_connections(self.g))
            out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
            if any(me in ln and any(p in ln for p in node_ports) for ln in out.splitlines()):
                self.saw_own = True
            self.stop_ev.wait(0.1)

    def close(self):
        self.stop_ev.set()
        self.join(10)


def test_leader_moves_mid_run_clients_follow_only_gateway_addresses(gateway, alice):
    """Half the records, then every partition of `mv` moves to the next upstream broker, then the
    other half: the producer and a consumer that stays connected follow through the gateway's
    rewritten Metadata, nothing is lost or duplicated, and no client ever connects to an
    upstream address (ss during the run, and librdkafka's broker debug log)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    logs = []

    class Keep(logging.Handler):
        def emit(self, rec):
            logs.append(rec.getMessage())
    logger = logging.getLogger("gw-mv")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # librdkafka's debug lines: kept here, not in pytest's report
    watch = Watch(gateway)
    watch.start()
    p = Producer(gw.ck_conf(gateway, alice, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 5, "debug": "broker",
        "message.timeout.ms": 60000}), logger=logger)
    c = Consumer(gw.ck_conf(gateway, alice, **{
        "group.id": "sluice-interop-unused", "enable.auto.commit": False,
        "auto.offset.reset": "error", "fetch.wait.max.ms": 100, "debug": "broker"}),
        logger=logger)
    try:
        c.assign([TopicPartition("mv", q, 0) for q in range(3)])
        records = h.make_records("mv", N, partitions=3)
        acked, got, errors = {}, [], []

        def cb_for(rec):
            def cb(err, msg):
                if err:
                    errors.append(err)
                else:
                    acked.setdefault(msg.partition(), {})[msg.offset()] = rec
            return cb

        def produce(part):
            for rec in part:
                p.produce("mv", rec.value, key=rec.key, partition=rec.partition,
                          headers=list(rec.headers), timestamp=rec.timestamp,
                          on_delivery=cb_for(rec))
                p.poll(0)
            assert p.flush(60) == 0 and not errors, errors

        def consume_until(n):
            def more():
                for m in c.consume(num_messages=1000, timeout=0.2):
                    assert m.error() is None, m.error()
                    got.append(h.Got(m.partition(), m.offset(), m.key(), m.value(),
                                     tuple(m.headers() or ()), m.timestamp()[1]))
                return len(got) >= n
            wait_until(more, 60, f"{n} records of mv consumed")

        produce(records[:N // 2])
        consume_until(N // 2)
        before = gateway.mock.leaders()["mv"]
        after = [b % 3 + 1 for b in before]
        for q, b in enumerate(after):
            gateway.mock.set_leader("mv", q, b)
        md = wait_until(lambda: (lambda m: leaders(m, "mv") == dict(enumerate(after)) and m)(
            gateway_metadata(gateway, "mv")), 20, "the gateway's Metadata to show the new leaders")
        assert {b["name"] for b in md["brokers"]} == \
            {f"127.0.0.1:{port}" for port in gateway.node_ports.values()}, md["brokers"]
        produce(records[N // 2:])
        consume_until(N)
        expected = h.expected_from_acks(acked, "mv")
        assert sum(len(v) for v in expected.values()) == N
        h.verify(expected, got, "mv after the leader move")
    finally:
        c.close()
        p.flush(10)
        watch.close()
    assert not watch.bad, f"clients connected to upstream brokers: {sorted(watch.bad)}"
    assert watch.saw_own, "ss never showed this process connected to a gateway node port"
    seen = ports_in("\n".join(logs))
    assert seen and not seen & gateway.upstream_ports, \
        f"librdkafka was given upstream addresses: {sorted(seen & gateway.upstream_ports)}"


def test_sni_mode_routes_by_server_name(gateway, tmp_path):
    """A second gateway, in SNI mode (one TLS port, broker-$(nodeId).gw.test), in front of the
    same mock: kafkajs dials every name it is given at that one port with the name as TLS server
    name (its socketFactory maps the test names to 127.0.0.1); records produced over partitions
    led by all three upstream brokers come back through a consumer group, and kafkajs was given
    only the gateway's port, under the bootstrap name and the three broker names."""
    mc = gateway.mock
    g = gw.start_gateway(tmp_path / "sni", upstream="external", upstream_config={
        "sluice.gateway.upstream.bootstrap.servers": mc.bootstrap,
        "sluice.gateway.upstream.security.protocol": "PLAINTEXT"}, config={
        "sluice.gateway.address.mode": "sni",
        "sluice.gateway.sni.pattern": "broker-$(nodeId).gw.test"},
        users={"admin": gw.USERS["admin"]})
    try:
        n = 300
        res = subprocess.run(["node", str(NODE_DIR / "sni_kafkajs.mjs"),
                              f"bootstrap.gw.test:{g.port}", "sni", str(n)], cwd=str(NODE_DIR),
                             capture_output=True, text=True, timeout=120,
                             env=gw.node_env(g, "admin"))
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"sni_kafkajs: no result (rc {res.returncode}): {res.stderr[-2000:]}"
        out = json.loads(lines[-1])
        assert out["ok"] and out["consumed"] == n, out
        assert {port for _, port in out["dials"]} == {g.port}, out["dials"]
        names = {name for name, _ in out["dials"]}
        assert {f"broker-{b}.gw.test" for b in (1, 2, 3)} <= names <= \
            {"bootstrap.gw.test"} | {f"broker-{b}.gw.test" for b in (1, 2, 3)}, names
    finally:
        g.finish()


# ---- ACLs, audit, metrics at the gateway ---------------------------------------------------------

def ck_produce_one(g, user, topic, value=b"v"):
    from confluent_kafka import Producer
    p = Producer(gw.ck_conf(g, user, **{"message.timeout.ms": 15000}))
    out = []
    p.produce(topic, value, partition=0,
              on_delivery=lambda err, msg: out.append(err.code() if err else 0))
    p.flush(30)
    assert out, "no delivery report"
    return out[0]


@pytest.fixture(scope="module")
def acl_grants(gateway):
    """writer may write `acl`; reader may read it with the group acl-readers."""
    from test_acl import binding
    grant(gateway,
          binding("TOPIC", "acl", "LITERAL", "User:writer", "WRITE", "ALLOW"),
          binding("TOPIC", "acl", "LITERAL", "User:reader", "READ", "ALLOW"),
          binding("GROUP", "acl-readers", "LITERAL", "User:reader", "READ", "ALLOW"))


def test_acls_at_the_gateway_refuse_with_real_clients(gateway, acl_grants):
    """writer may write `acl`, reader may read it with group acl-readers; everything else is
    refused with the Kafka error, and a denied topic is never forwarded (the mock would
    auto-create any topic a forwarded Metadata names)."""
    from confluent_kafka import KafkaError
    from kafka.errors import TopicAuthorizationFailedError
    assert ck_produce_one(gateway, "writer", "acl", b"a1") == 0
    assert ck_produce_one(gateway, "writer", "acl", b"a2") == 0
    assert ck_produce_one(gateway, "reader", "acl") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert ck_produce_one(gateway, "mallory", "acl-secret") == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert "acl-secret" not in gateway.mock.leaders(), "a denied topic reached the upstream"

    from test_acl import ck_group_read
    # test_acl's helpers take bootstrap, ca_pem and users from the gateway as from a broker.
    got, err = ck_group_read(gateway, "reader", "acl-readers", "acl", want=2)
    assert err is None and got == [b"a1", b"a2"]
    _, err = ck_group_read(gateway, "reader", "other-group", "acl")
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED
    _, err = ck_group_read(gateway, "writer", "acl-readers", "acl")
    assert err in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)

    # kafka-python: reader may read acl, not write it.
    from kafka import KafkaProducer
    p = KafkaProducer(**gw.kp_kw(gateway, "reader"), retries=0, max_block_ms=15000)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            p.send("acl", b"refused", partition=0).get(timeout=30)
    finally:
        p.close(timeout=10)


def txn_read_committed(g, user, group, topic):
    """Every value of `topic` partition 0 a read_committed consumer (through the gateway as
    `user`) sees from the beginning to the end of the partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    conf = {"group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False,
            "enable.partition.eof": True}
    # user None: the upstream mock itself, without the gateway (the reference view).
    c = Consumer(gw.ck_conf(g, user, **conf) if user else
                 {"bootstrap.servers": g.mock.bootstrap, **conf})
    got = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return got
                raise AssertionError(f"consumer error {m.error()}")
            got.append(m.value())
        raise AssertionError(f"no end of partition within 60 s; got {len(got)}")
    finally:
        c.close()


def test_txn_producer_commit_abort_and_acls(gateway, alice):
    """A transactional confluent-kafka producer through the gateway (FindCoordinator for the
    transactional id, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
    EndTxn forwarded to the mock's coordinators): 5 records committed, then 3 aborted; a
    read_committed consumer through the gateway sees the 5 first and exactly what it sees on
    the mock directly (which does not filter aborted records, see below). At the gateway: without WRITE
    on the transactional id a producer fails TRANSACTIONAL_ID_AUTHORIZATION_FAILED, EndTxn and
    AddPartitionsToTxn are refused with it; a topic without WRITE fails AddPartitionsToTxn as a
    whole (TOPIC_AUTHORIZATION_FAILED, the other partitions OPERATION_NOT_ATTEMPTED); a topic
    without READ is stripped from TxnOffsetCommit and its denial merged into the upstream's
    answer; a denied topic never reaches the upstream."""
    import kproto as kp
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from test_acl import binding
    grant(gateway, binding("TRANSACTIONAL_ID", "gw-txn", "LITERAL", "User:alice", "WRITE", "ALLOW"),
          binding("TRANSACTIONAL_ID", "gw-txn", "LITERAL", "User:alice", "DESCRIBE", "ALLOW"),
          binding("GROUP", "gw-txn-read", "LITERAL", "User:alice", "ALL", "ALLOW"))
    p = Producer(gw.ck_conf(gateway, "alice", **{"transactional.id": "gw-txn",
                                                 "transaction.timeout.ms": 20000}))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce("txn", b"commit-%d" % i, partition=0)
    # The offsets of a consume-transform-produce loop join the transaction (AddOffsetsToTxn,
    # TxnOffsetCommit to the group coordinator).
    c = Consumer(gw.ck_conf(gateway, "alice", **{"group.id": "gw-txn-read"}))
    try:
        p.send_offsets_to_transaction([TopicPartition("txn", 0, 0)],
                                      c.consumer_group_metadata(), 30)
    finally:
        c.close()
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(3):
        p.produce("txn", b"abort-%d" % i, partition=0)
    p.flush(30)
    p.abort_transaction(30)
    got = txn_read_committed(gateway, "alice", "gw-txn-read", "txn")
    # The librdkafka 2.0.2 mock writes no transaction markers and reports no aborted
    # transactions (LSO = high watermark), so read_committed filtering is not its to show: the
    # consumer through the gateway sees what the same consumer sees on the mock directly, the
    # committed records first.
    direct = txn_read_committed(gateway, None, "gw-txn-read", "txn")
    assert got[:5] == [b"commit-%d" % i for i in range(5)], got
    assert got == direct, (got, direct)

    # No WRITE on the transactional id: the real client fails.
    m = Producer(gw.ck_conf(gateway, "mallory", **{"transactional.id": "gw-txn"}))
    with pytest.raises(KafkaException) as ei:
        m.init_transactions(30)
    assert ei.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # The transaction APIs themselves, raw: answered by the gateway with the per-API shape.
    def apt_body(txn, topics):
        w = kp.Writer().string(txn).i64(1).i16(0)
        w.array(topics, lambda w, t: (w.string(t), w.array([0, 1], lambda w, i: w.i32(i))))
        return w.bytes()

    def apt_result(r):
        r.i32()
        return {name: errs for name, errs in r.array(
            lambda r: (r.string(), [(r.i32(), r.i16())[1] for _ in range(r.i32())]))}

    addr = f"127.0.0.1:{gateway.node_ports[gw.NODE_ID_MIN]}"
    with sasl_conn(gateway, addr, "mallory") as c:
        r = c.call(26, 1, kp.Writer().string("gw-txn").i64(1).i16(0).bool(True).bytes())
        r.i32()
        assert r.i16() == TXN_AUTHZ
        r = c.call(24, 1, apt_body("gw-txn", ["txn"]))
        assert apt_result(r) == {"txn": [TXN_AUTHZ, TXN_AUTHZ]}
    with sasl_conn(gateway, addr, "alice") as c:
        r = c.call(24, 1, apt_body("gw-txn", ["txn", "txn-secret"]))
        assert apt_result(r) == {"txn": [NOT_ATTEMPTED] * 2, "txn-secret": [TOPIC_AUTHZ] * 2}
        # TxnOffsetCommit v0: the denied topic stripped, the rest forwarded (the mock answers
        # for it: this producer id is not its), the denial merged into its answer.
        w = kp.Writer().string("gw-txn").string("gw-txn-read").i64(1).i16(0)
        w.array(["txn", "txn-secret"], lambda w, t: (w.string(t), w.array(
            [0], lambda w, i: (w.i32(i), w.i64(1), w.string(None)))))
        r = c.call(28, 0, w.bytes())
        got = apt_result(r)
        assert got["txn-secret"] == [TOPIC_AUTHZ] and list(got) == ["txn", "txn-secret"], got
        assert got["txn"] != [TOPIC_AUTHZ], got
    assert "txn-secret" not in gateway.mock.leaders(), "a denied topic reached the upstream"


def test_audit_trail_and_metrics_show_gateway_traffic(gateway, acl_grants):
    """Gateway traffic appears in the gateway's own audit trail and metrics as the broker's
    would (test_audit_e2e.py, test_metrics.py): writer's produces with their record counts,
    reader's denied Write, the SCRAM logons, and the counters."""
    from confluent_kafka import KafkaError
    from test_audit_e2e import find, principal
    from test_metrics import samples
    assert ck_produce_one(gateway, "writer", "acl", b"audited-1") == 0
    assert ck_produce_one(gateway, "writer", "acl", b"audited-2") == 0
    assert ck_produce_one(gateway, "reader", "acl") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    prods = find(gateway, "writer produce", lambda e: e["class_uid"] == 6003
                 and e["api"]["operation"] == "Produce" and principal(e) == "User:writer")
    parts = [r for e in prods for r in e["resources"] if r["name"] == "acl"]
    assert sum(r["data"]["records"] for r in parts) >= 2, parts
    assert all(e["src_endpoint"]["ip"] == "127.0.0.1" and e.get("status_id") == 1 for e in prods)
    den = find(gateway, "reader denied Write", lambda e: e["class_uid"] == 6003
               and e.get("status_id") == 2 and e["api"]["operation"] == "Produce"
               and principal(e) == "User:reader")
    assert den[0]["status_code"] == "TOPIC_AUTHORIZATION_FAILED"
    logins = find(gateway, "SCRAM logons", lambda e: e["class_uid"] == 3002
                  and e.get("status_id") == 1)
    assert {(e.get("user") or {}).get("name") for e in logins} >= {"writer"}

    def counters():
        body = gateway.metrics()
        msgs = sum(v for k, v in samples(body, "kafka_server_brokertopicmetrics_messagesin_total")
                   .items() if 'topic="acl"' in k)
        denials = sum(samples(body, "sluice_authorization_denials_total").values())
        auth = sum(samples(body, "sluice_authentication_successes_total").values())
        return msgs >= 2 and denials >= 1 and auth >= 1
    wait_until(counters, 20, "messages in, denials and logins in the gateway's /metrics")


# ---- health ---------------------------------------------------------------------------------------

def test_readyz_fails_while_no_upstream_broker_is_reachable(gateway):
    """All three mock brokers down: /readyz stops answering 200; back up: 200 again. (Last in
    the mock module: it disturbs the upstream.)"""
    assert gateway.readyz() == 200
    for b in (1, 2, 3):
        gateway.mock.cmd(f"down {b}")
    try:
        wait_until(lambda: gateway.readyz() != 200, 20, "/readyz to fail with every broker down")
        assert gateway.readyz() == 503
    finally:
        for b in (1, 2, 3):
            gateway.mock.cmd(f"up {b}")
    wait_until(lambda: gateway.readyz() == 200, 20, "/readyz to recover")


# ---- through the gateway to a `sluice serve` upstream --------------------------------------------

def test_platformatic_kafka_roundtrip_to_serve_upstream(gateway_serve):
    """@platformatic/kafka (flexible versions only) through the gateway, which logs in upstream
    with its own SCRAM user; topics created through the gateway (CreateTopics forwarded)."""
    grant_all(gateway_serve, "alice", *[f"plt-{c}" for c in h.ALL_CODECS],
              groups=["sluice-interop-unused"])
    from test_acl import binding
    grant(gateway_serve, binding("CLUSTER", "kafka-cluster", "LITERAL", "User:alice", "CREATE",
                                 "ALLOW"))
    # Per codec: N over the four codecs it has here (zstd needs a native module: skipped).
    result = run_node("platformatic_roundtrip.mjs", gateway_serve, "alice", -(-N // 4))
    check_node(result, "@platformatic/kafka")


def test_long_polls_by_topic_id_span_metadata_refreshes(gateway_serve):
    """Fetch by topic id (v13+) waiting upstream while the gateway's Metadata refreshes (every
    second here) replace the catalog entry its topic name came from: the answer still merges
    and the record produced during a poll arrives. Before the fix the gateway read the freed
    name when the answer came (ASan: heap-use-after-free, caught at teardown)."""
    from test_acl import binding
    grant_all(gateway_serve, "alice", "plt-longpoll", groups=["sluice-interop-unused"])
    grant(gateway_serve, binding("CLUSTER", "kafka-cluster", "LITERAL", "User:alice", "CREATE",
                                 "ALLOW"))
    result = run_node("longpoll_platformatic.mjs", gateway_serve, "alice", 3)
    r = result["codecs"]["none"]
    assert r.get("ok") and r["polls"] == 3, result
    gateway_serve.assert_no_sanitizer_report()


def test_confluent_kafka_roundtrip_to_serve_upstream(gateway_serve):
    """confluent-kafka's 10 000 records over every codec through the gateway to `sluice serve`
    (SCRAM upstream, Metadata and Fetch at the flexible versions the mock lacks), and no client
    connection to the upstream's port meanwhile."""
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("ck-serve", 3, 1)]).values():
        f.result(30)
    conf = gw.ck_conf(g, "admin")
    watch = Watch(g)
    watch.start()
    try:
        codec_rounds(h.ALL_CODECS, "ck-serve",
                     lambda recs, codec: h.ck_produce(g.bootstrap, "ck-serve", recs, codec,
                                                      extra=conf),
                     lambda counts, start, codec: h.ck_consume(g.bootstrap, "ck-serve", counts,
                                                               start=start, extra=conf))
    finally:
        watch.close()
    assert not watch.bad, f"clients connected to the upstream broker: {sorted(watch.bad)}"
    assert watch.saw_own, "ss never showed this process connected to a gateway node port"


def test_idempotent_producer_delivers_exactly_once(gateway_serve):
    """An idempotent batch appended upstream, then sent again on a new gateway connection (what
    a producer does after a request timeout): the upstream recognises producer id, epoch and
    sequence as the gateway forwarded them, answers with the original offset and stores it once;
    the next batch follows on. The same resend without a producer id is stored twice (the
    control: the count can fail). Against `sluice serve`: the librdkafka 2.0.2 mock does not
    check sequence numbers at all (it appends the resent batch again)."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_idempotence import batch, init_producer_id
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("idem", 1, 1), NewTopic("dup", 1, 1)]).values():
        f.result(30)
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"  # the upstream broker's gateway address
    with sasl_conn(g, addr, "admin") as c:
        err, pid, epoch = init_producer_id(c, 0)
        assert err == kp.NONE and pid >= 0, (err, pid)
        b0 = batch(pid, epoch, 0, 3, b"idem")
        err, off0 = kp.produce(c, "idem", 0, b0)
        assert err == kp.NONE, err
    with sasl_conn(g, addr, "admin") as c:
        assert kp.produce(c, "idem", 0, b0) == (kp.NONE, off0), "the resent batch was appended"
        assert kp.produce(c, "idem", 0, batch(pid, epoch, 3, 2, b"idem")) == (kp.NONE, off0 + 3)
        assert kp.list_offsets(c, "idem", 0, kp.LATEST) == (kp.NONE, off0 + 5)
        plain = kp.record_batch([(None, b"dup-%d" % i, []) for i in range(3)])
        assert kp.produce(c, "dup", 0, plain) == (kp.NONE, 0)
        assert kp.produce(c, "dup", 0, plain) == (kp.NONE, 3), "the control was not stored twice"


def test_corrupt_batch_refused_through_the_gateway(gateway_serve):
    """A batch whose CRC does not match is refused with CORRUPT_MESSAGE through the gateway and
    nothing is stored. On a passthrough topic the gateway leaves the CRC to the upstream (the
    bytes reach it unchanged; the upstream's answer comes back); on a topic it encrypts, the
    gateway checks it itself before sealing, since re-sealing would make garbage valid."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("crc-plain", 1, 1), NewTopic("enc-crc", 1, 1)]).values():
        f.result(30)
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    good = kp.record_batch([(None, b"crc-%d" % i, []) for i in range(3)])
    bad = bytearray(good)
    bad[-1] ^= 1  # last value byte: the CRC no longer matches
    with sasl_conn(g, addr, "admin") as c:
        for topic in ("crc-plain", "enc-crc"):
            assert kp.produce(c, topic, 0, bytes(bad))[0] == kp.CORRUPT_MESSAGE, topic
            assert kp.list_offsets(c, topic, 0, kp.LATEST) == (kp.NONE, 0), topic
            # A sealed topic's key is made on its first use: KAFKA_STORAGE_ERROR (retriable)
            # until then, as a client's retries would see.
            deadline = time.monotonic() + 30
            while (r := kp.produce(c, topic, 0, good))[0] == 56 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert r == (kp.NONE, 0), (topic, r)


def fetch_v11_request(parts, max_bytes, max_wait_ms=100):
    """A Fetch v11 body for [(topic, partition, offset)], no session, every limit `max_bytes`."""
    import kproto as kp
    w = kp.Writer().i32(-1).i32(max_wait_ms).i32(1).i32(max_bytes).i8(0).i32(0).i32(-1)
    by_topic = {}
    for t, p, off in parts:
        by_topic.setdefault(t, []).append((p, off))

    def part(ww, po):
        ww.i32(po[0]).i32(-1).i64(po[1]).i64(-1).i32(max_bytes)
    w.array(list(by_topic.items()), lambda ww, tp: (ww.string(tp[0]), ww.array(tp[1], part)))
    w.array([], None)
    w.string("")
    return w.bytes()


def fetch_v11_answer(payload):
    """{(topic, partition): (error, records)} of a Fetch v11 response frame's payload."""
    import kproto as kp
    r = kp.Reader(payload)
    r.i32()  # correlation id
    r.i32()  # throttle
    assert r.i16() == 0
    r.i32()  # session id
    out = {}

    def rpart(rr):
        idx, err = rr.i32(), rr.i16()
        rr.i64(), rr.i64(), rr.i64()  # high watermark, last stable, log start
        rr.array(lambda x: (x.i64(), x.i64()))
        rr.i32()  # preferred read replica
        return idx, err, rr.nbytes() or b""
    for name, ps in r.array(lambda rr: (rr.string(), rr.array(rpart))) or []:
        for idx, err, recs in ps or []:
            out[(name, idx)] = (err, recs)
    return out


def batches_with_crc(records):
    """[(base_offset, crc_ok)] of the whole batches in a Fetch answer's records."""
    import kproto as kp
    out, r = [], kp.Reader(records)
    while r.left() >= 12:
        base, n = r.i64(), r.i32()
        if r.left() < n:
            break
        body = r.take(n)
        (crc,) = struct.unpack(">I", body[5:9])
        out.append((base, kp.crc32c(body[9:]) == crc))
    return out


def slow_recv_frame(c, chunk=32768, pause=0.002):
    """One response frame's payload, read as a slow consumer does: a little at a time."""
    def exact(n):
        buf = bytearray()
        while len(buf) < n:
            got = c.sock.recv(min(chunk, n - len(buf)))
            if not got:
                return None
            buf += got
            time.sleep(pause)
        return bytes(buf)
    head = exact(4)
    return exact(struct.unpack(">i", head)[0]) if head else None


def test_pipelined_fetch_answers_stay_intact_through_the_gateway(gateway_serve):
    """Two large fetches pipelined on one connection, each naming a topic the client may read and
    one it may not (so the gateway re-encodes each answer around the upstream's record sets), the
    client reading nothing until both are sent: the second answer reaches the gateway while the
    first is still queued for the client. Each answer must carry its own batches, every CRC
    intact: an answer pointing into the buffer the next one is read into would not."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_acl import binding
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("kept-big", 1, 1),
                                  NewTopic("kept-hidden", 1, 1)]).values():
        f.result(30)
    grant(g, binding("TOPIC", "kept-big", "LITERAL", "User:reader", "READ", "ALLOW"))
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    per_batch, value = 400, b"v" * 2000  # ~0.8 MB per batch
    with sasl_conn(g, addr, "admin") as c:
        for i in range(16):
            recs = [(None, bytes([65 + i]) + value, []) for _ in range(per_batch)]
            assert kp.produce(c, "kept-big", 0, kp.record_batch(recs))[0] == kp.NONE
        assert kp.produce(c, "kept-hidden", 0, kp.record_batch([(None, b"h", [])]))[0] == kp.NONE
    half = 8 * per_batch
    limit = 8 * (per_batch * 2020 + 200)  # eight batches' worth
    with sasl_conn(g, addr, "reader") as c:
        sent = [(c.send_request(kp.FETCH, 11, fetch_v11_request(
            [("kept-big", 0, off), ("kept-hidden", 0, 0)], limit)), off) for off in (0, half)]
        for corr, off in sent:
            payload = slow_recv_frame(c)
            assert payload is not None, "the gateway closed the connection"
            assert struct.unpack(">i", payload[:4])[0] == corr
            got = fetch_v11_answer(payload)
            assert got[("kept-hidden", 0)][0] == 29, got[("kept-hidden", 0)][0]
            err, recs = got[("kept-big", 0)]
            assert err == 0, err
            seen = batches_with_crc(recs)
            assert seen, f"no whole batch in the answer from offset {off}"
            assert seen[0][0] == off, (off, seen[:3])
            assert all(ok for _, ok in seen), f"CRC mismatch in the answer from offset {off}"
            assert [b for b, _ in seen] == [off + k * per_batch for k in range(len(seen))]


def gateway_counter(g, name):
    m = re.search(rf"^{name} (\d+)", g.metrics(), re.M)
    return int(m.group(1)) if m else 0


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


@pytest.mark.parametrize("acks", [-1, 0])
def test_pipelined_produce_waits_in_the_kernel_not_in_the_gateway(gateway_serve, acks):
    """A client with a valid account pipelines 24 one-megabyte produce requests while the upstream
    is stopped. The gateway reads little more than a megabyte beyond what the upstream has
    answered (acks=-1) or taken (acks=0, fire-and-forget: nothing is ever answered, and bytes the
    upstream socket did not take were once kept in a buffer without bound): the rest stays in the
    kernel, where TCP slows the client. With the upstream back, every request is answered in
    order with consecutive offsets (acks=-1), or every record arrives (acks=0)."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    topic = f"held-big-{-acks}"
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    n, per = 24, 1000
    batch = kp.record_batch([(None, b"h" * 1000, []) for _ in range(per)])
    body = kp.produce_request(topic, 0, batch, acks=acks, timeout_ms=60000)
    with sasl_conn(g, addr, "admin") as c:
        v = c.need(kp.PRODUCE, range(3, 9))
        c.sock.settimeout(120)
        base, rss0 = gateway_counter(g, "sluice_gateway_forwarded_total"), rss_kb(g.proc.pid)
        up = g.upstream.proc
        up.send_signal(signal.SIGSTOP)
        try:
            corrs = []
            sender = threading.Thread(
                target=lambda: corrs.extend(c.send_request(kp.PRODUCE, v, body) for _ in range(n)),
                daemon=True)
            sender.start()
            wait_until(lambda: gateway_counter(g, "sluice_gateway_forwarded_total") > base, 30,
                       "the gateway forwarding the first request")
            # Bounded observation, not synchronization: the sender has 24 MB to give, and an
            # unbounded gateway reads it all within milliseconds.
            end, most, grew = time.monotonic() + 3, 0, 0
            while time.monotonic() < end:
                most = max(most, gateway_counter(g, "sluice_gateway_forwarded_total") - base)
                grew = max(grew, rss_kb(g.proc.pid) - rss0)
                time.sleep(0.1)
            # The stopped upstream's socket takes a few megabytes of acks=0 requests.
            assert most <= (3 if acks else 8), f"{most} requests forwarded to a stopped upstream"
            # Read ahead, the 24 requests alone would be 24 MiB (81 MiB measured before).
            assert grew < 20 * 1024, f"the gateway grew by {grew} KiB holding requests"
        finally:
            up.send_signal(signal.SIGCONT)
        sender.join(120)
        assert not sender.is_alive() and len(corrs) == n
        if acks == 0:
            def all_there():
                err, off = kp.list_offsets(c, topic, 0, kp.LATEST)
                return err == kp.NONE and off == n * per
            wait_until(all_there, 60, "every acks=0 record at the upstream")
            return
        offsets = []
        for corr in corrs:
            payload = c.recv_frame()
            assert payload is not None, "the gateway closed the connection"
            r = kp.Reader(payload)
            assert r.i32() == corr
            (_, ps), = kp.produce_answer(r, v)
            (_, err, off), = ps
            assert err == 0, err
            offsets.append(off)
        assert offsets == [offsets[0] + i * per for i in range(n)], offsets


def test_pipelined_fetches_go_upstream_one_at_a_time(gateway_serve):
    """A client with a valid account pipelines 16 fetches (each allowing 2 GiB) at the end of a
    topic and reads nothing. Each used to be forwarded at once and parked at the upstream, so one
    append brought 16 answers, each up to the upstream's fetch.max.bytes, into the gateway's
    memory together. Now the client's input is held while one of its fetches is at the upstream
    (as a Kafka broker mutes a connection while serving it): the others wait in the kernel, and
    after the first answer the server's output mark stops reading while the client reads
    nothing. Every fetch is still answered, in order, once the client reads."""
    import kproto as kp
    g = gateway_serve
    topic = "hoard-gw"
    addr = topic_at_first_node(g, topic)
    n = 16
    batch = kp.record_batch([(None, b"f" * 900, []) for _ in range(1000)])
    with sasl_conn(g, addr, "admin") as c, sasl_conn(g, addr, "admin") as p:
        c.sock.settimeout(120)
        base = gateway_counter(g, "sluice_gateway_forwarded_total")
        body = fetch_v11_request([(topic, 0, 0)], 0x7FFFFFFF, max_wait_ms=60000)
        corrs = [c.send_request(kp.FETCH, 11, body) for _ in range(n)]
        wait_until(lambda: gateway_counter(g, "sluice_gateway_forwarded_total") > base, 30,
                   "the gateway forwarding the first fetch")
        # Bounded observation, not synchronization: an unbounded gateway forwards all 16 within
        # milliseconds of reading them.
        end, most = time.monotonic() + 2, 0
        while time.monotonic() < end:
            most = max(most, gateway_counter(g, "sluice_gateway_forwarded_total") - base)
            time.sleep(0.1)
        assert most == 1, f"{most} pipelined fetches forwarded while the first waits upstream"
        assert kp.produce(p, topic, 0, batch) == (kp.NONE, 0)
        for corr in corrs:
            payload = c.recv_frame()
            assert payload is not None, "the gateway closed the connection"
            assert struct.unpack(">i", payload[:4])[0] == corr
            err, recs = fetch_v11_answer(payload)[(topic, 0)]
            # The same batch, but for the partition leader epoch (bytes 12-15) the broker sets.
            assert err == 0 and recs[16:] == batch[16:], (err, len(recs))


def test_answers_for_clients_that_do_not_read_share_one_memory_budget(tmp_path):
    """Four connections of a valid account each park a fetch at the end of a topic and read
    nothing; one 8 MiB append wakes all four at the upstream. One connection holds at most one
    answer (its input is held meanwhile), but over many connections the answers used to be read
    into the gateway all at once (with a thousand connections and the default 55 MiB answers,
    tens of gigabytes). With sluice.fetch.memory.max.bytes at 5 MiB, an answer that would pass it
    waits in the kernel (the gateway stops reading that upstream connection) until clients read:
    the gauge shows it waiting, the memory held stays bounded, and every answer still arrives
    whole."""
    import kproto as kp
    big = str(16 << 20)
    g = gw.start_gateway(tmp_path, upstream="serve",
                         config={"sluice.fetch.memory.max.bytes": str(5 << 20),
                                 "message.max.bytes": big},
                         upstream_config={"message.max.bytes": big})
    try:
        topic = "hoard-many"
        addr = topic_at_first_node(g, topic)
        # 8 MiB: more than the kernel takes of an answer (the gateway's socket send buffer grows to
        # 4 MiB on loopback) while the client reads nothing.
        batch = kp.record_batch([(None, os.urandom((8 << 20) - 1024), [])])
        conns = [sasl_conn(g, addr, "admin") for _ in range(4)]
        try:
            body = fetch_v11_request([(topic, 0, 0)], 0x7FFFFFFF, max_wait_ms=60000)
            base = gateway_counter(g, "sluice_gateway_forwarded_total")
            corrs = [c.send_request(kp.FETCH, 11, body) for c in conns]
            wait_until(lambda: gateway_counter(g, "sluice_gateway_forwarded_total") >= base + 4,
                       30, "the gateway forwarding the four fetches")
            with sasl_conn(g, addr, "admin") as p:
                assert kp.produce(p, topic, 0, batch) == (kp.NONE, 0)
            wait_until(lambda: gateway_counter(g, "sluice_gateway_answers_waiting_for_memory") >= 1,
                       30, "an answer waiting for memory while no client reads")
            # What the gateway holds for the clients stays within the budget (plus the first
            # answer, admitted while nothing was held); without it, four answers' worth
            # (32 MiB, less what the kernel takes) would be here. (Polled: an answer can be
            # refused while the first is still being read, before any of it is queued.)
            held = wait_until(lambda: gateway_counter(g, "sluice_response_bytes_unsent"), 30,
                              "the first answer queued for its client")
            assert held <= 8 << 20, held
            # The clients read, each on its own: an answer still waiting is read once another
            # client's has drained (one that never read would hold it until its idle timeout).
            answers = [None] * len(conns)

            def read(i):
                conns[i].sock.settimeout(60)
                answers[i] = conns[i].recv_frame()
            readers = [threading.Thread(target=read, args=(i,)) for i in range(len(conns))]
            for t in readers:
                t.start()
            for t in readers:
                t.join(90)
            for payload, corr in zip(answers, corrs):
                assert payload is not None, "no answer (or the gateway closed the connection)"
                assert struct.unpack(">i", payload[:4])[0] == corr
                err, recs = fetch_v11_answer(payload)[(topic, 0)]
                assert err == 0 and recs[16:] == batch[16:], (err, len(recs))
            wait_until(lambda: gateway_counter(g, "sluice_gateway_answers_waiting_for_memory") == 0,
                       30, "nothing waiting once the clients read")
        finally:
            for c in conns:
                c.close()
    finally:
        g.finish()


def test_the_gateways_fetch_max_bytes_bounds_what_a_fetch_brings(tmp_path):
    """A client asks 2 GiB in one fetch; the gateway lowers the request's max_bytes to its own
    fetch.max.bytes before forwarding, so the upstream's answer carries what a local broker's
    would: here (1 KiB) the first of two batches only (KIP-74: never less than one), where the
    client's own limit would have brought both."""
    import kproto as kp
    g = gw.start_gateway(tmp_path, upstream="serve", config={"fetch.max.bytes": "1024"})
    try:
        topic = "capped"
        addr = topic_at_first_node(g, topic)
        batches = [kp.record_batch([(None, bytes([65 + i]) * 4000, [])]) for i in range(2)]
        with sasl_conn(g, addr, "admin") as c:
            for b in batches:
                assert kp.produce(c, topic, 0, b)[0] == kp.NONE
            corr = c.send_request(kp.FETCH, 11, fetch_v11_request([(topic, 0, 0)], 0x7FFFFFFF))
            c.sock.settimeout(30)
            payload = c.recv_frame()
            assert payload is not None and struct.unpack(">i", payload[:4])[0] == corr
            err, recs = fetch_v11_answer(payload)[(topic, 0)]
            assert err == 0 and recs[16:] == batches[0][16:], (err, len(recs))
    finally:
        g.finish()


def describe_producers_raw(conn, topics):
    """DescribeProducers v0: {(topic, partition): (error, [(pid, epoch, last_seq, txn_start)])}."""
    import kproto as kp
    w = kp.Writer()
    w.carray(list(topics.items()),
             lambda ww, t: (ww.cstring(t[0]), ww.carray(t[1], lambda w3, p: w3.i32(p)), ww.tags()))
    w.tags()
    r = conn.call(61, 0, w.bytes(), flexible=True)
    r.i32()

    def producer(rr):
        pid, epoch, seq = rr.i64(), rr.i32(), rr.i32()
        rr.i64()  # last timestamp
        rr.i32()  # coordinator epoch
        start = rr.i64()
        rr.tags()
        return pid, epoch, seq, start

    def partition(rr):
        idx, err, _msg = rr.i32(), rr.i16(), rr.cstring()
        prods = rr.carray(producer)
        rr.tags()
        return idx, err, prods

    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.cstring()
        for idx, err, prods in r.carray(partition):
            out[(name, idx)] = (err, prods)
        r.tags()
    return out


def test_describe_producers_through_the_gateway(gateway_serve):
    """DescribeProducers through the gateway to `sluice serve`: READ on each topic decided at the
    gateway on the client's principal; a denied topic is answered TOPIC_AUTHORIZATION_FAILED
    there while the allowed one is forwarded, and the merged answer shows the upstream's state
    of an idempotent producer (its id, epoch and last sequence as the gateway forwarded them)."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_acl import binding
    from test_idempotence import batch, init_producer_id
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    topics = [NewTopic("dp-gw", 1, 1), NewTopic("dp-gw-hidden", 1, 1)]
    for f in admin.create_topics(topics).values():
        f.result(30)
    grant(g, binding("TOPIC", "dp-gw", "LITERAL", "User:reader", "READ", "ALLOW"))
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"  # the upstream broker's gateway address
    with sasl_conn(g, addr, "admin") as c:
        err, pid, epoch = init_producer_id(c, 0)
        assert err == kp.NONE and pid >= 0, (err, pid)
        assert kp.produce(c, "dp-gw", 0, batch(pid, epoch, 0, 3, b"dp"))[0] == kp.NONE
        assert kp.produce(c, "dp-gw-hidden", 0, batch(pid, epoch, 0, 2, b"dp"))[0] == kp.NONE
        seen = describe_producers_raw(c, {"dp-gw": [0], "dp-gw-hidden": [0]})
    assert seen == {("dp-gw", 0): (0, [(pid, epoch, 2, -1)]),
                    ("dp-gw-hidden", 0): (0, [(pid, epoch, 1, -1)])}, seen
    with sasl_conn(g, addr, "reader") as c:
        got = describe_producers_raw(c, {"dp-gw": [0], "dp-gw-hidden": [0]})
    assert got == {("dp-gw", 0): (0, [(pid, epoch, 2, -1)]),
                   ("dp-gw-hidden", 0): (29, [])}, got


def test_add_partitions_to_txn_v4_at_the_gateway(gateway_serve):
    """AddPartitionsToTxn v4 (broker to broker) is not advertised by the gateway, and a client
    without CLUSTER_ACTION that sends it anyway is answered CLUSTER_AUTHORIZATION_FAILED by the
    gateway itself (nothing forwarded: the upstream would see the gateway's identity)."""
    import kproto as kp
    from test_transactions import add_partitions_v4
    g = gateway_serve
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    with sasl_conn(g, addr, "reader") as c:
        err, ranges = kp.api_versions(c, 3)
        assert err == 0 and ranges[24][1] == 3, ranges.get(24)
        assert add_partitions_v4(c, [("tx", 1, 0, True, {"dp-v4": [0]})]) == (31, {})
    assert re.search(r'msg="denied" principal=User:reader .*op=CLUSTER_ACTION',
                     g.log_text()), g.log_tail()


def files_with(root, needle):
    out = []
    for f in Path(root).rglob("*"):
        if f.is_file():
            try:
                if needle in f.read_bytes():
                    out.append(f)
            except OSError:
                pass
    return out


def test_record_encryption_toward_the_upstream(gateway_serve):
    """With sluice.gateway.encrypt.* on for enc-*: the upstream (its own encryption at rest off)
    holds no clear marker for enc-t, and reading enc-t upstream directly gives ciphertext, while
    clients through the gateway read clear records. clear-t (not encrypted) is the control: the
    marker is found in the upstream's files, so the grep can fail."""
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    a = AdminClient(gw.ck_conf(g, "admin"))
    for f in a.create_topics([NewTopic("enc-t", 1, 1), NewTopic("clear-t", 1, 1)]).values():
        f.result(30)
    conf = gw.ck_conf(g, "admin")
    recs = [h.Rec(0, f"k{i}".encode(), f"{MARKER} value {i}".encode(),
                  (("h", f"{MARKER}-h{i}".encode()),), None) for i in range(200)]
    for topic in ("enc-t", "clear-t"):
        acked = h.ck_produce(g.bootstrap, topic, recs, "none", extra=conf)
        got = h.ck_consume(g.bootstrap, topic, {0: len(recs)}, extra=conf)
        h.verify(h.expected_from_acks(acked, topic), got, f"{topic} through the gateway")
    marker = MARKER.encode()
    wait_until(lambda: files_with(g.upstream.data_dir, marker), 20,
               "the control topic's clear marker in the upstream's files")
    leaked = [f for f in files_with(g.upstream.data_dir, marker) if "enc-t" in str(f)]
    assert not leaked, f"clear marker in the upstream's enc-t files: {leaked}"
    assert all("clear-t" in str(f) for f in files_with(g.upstream.data_dir, marker)), \
        files_with(g.upstream.data_dir, marker)
    # Read upstream directly, as its admin: enc-t holds envelopes, not the records.
    up = g.upstream
    direct = h.ck_consume(up.bootstrap, "enc-t", {0: len(recs)}, extra={
        "bootstrap.servers": up.bootstrap, "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(up.ca_pem), "sasl.mechanisms": gw.MECHANISM,
        "sasl.username": "admin", "sasl.password": gw.USERS["admin"]})
    assert len(direct) == len(recs)
    for d, r in zip(direct, recs):
        assert d.value != r.value and marker not in (d.value or b""), "upstream holds clear data"
        assert all(marker not in (v or b"") for _, v in d.headers), "clear header upstream"


KAFKA_STORAGE_ERROR = 56


def gw_keys(g, *args, check=0):
    """`sluice keys ARGS` against the gateway's control socket (its config file)."""
    from test_keys_lifecycle import keys
    return keys(g, *args, check=check)


def test_gateway_topic_key_rotate_and_shred_with_sluice_keys(gateway_serve):
    """`sluice keys` on a gateway drives its record-encryption keys by topic name: produce to
    enc-keys through the gateway, `sluice keys rotate --topic enc-keys` (key v2), produce more;
    every record reads back clear through the gateway and the upstream holds envelopes of both
    versions. Status names the key "gateway-topic". `sluice keys shred --topic enc-keys`: every
    fetch of it through the gateway answers KAFKA_STORAGE_ERROR with no records (the records of
    both versions are gone), while the upstream still holds the batches."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    topic = "enc-keys"
    a = AdminClient(gw.ck_conf(g, "admin"))
    for f in a.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    conf = gw.ck_conf(g, "admin")

    def recs(tag, n):
        return [h.Rec(0, f"{tag}-k{i}".encode(), f"{MARKER} {tag} {i}".encode(),
                      (("h", f"{tag}-h{i}".encode()),), None) for i in range(n)]
    first = h.ck_produce(g.bootstrap, topic, recs("v1", 50), "none", extra=conf)
    st = json.loads(gw_keys(g, "status", "--json", "--topic", topic).stdout)
    assert st["gateway"]["record_encryption"] is True, st
    gt = st["gateway"]["topic"]
    assert gt["name"] == topic and gt["encrypted"] and gt["tk_version"] == 1, gt
    (entry,) = [e for e in st["keys"]["topics"] if e["id"] == gt["id"]]
    assert entry["kind"] == "gateway-topic" and entry["field"] is False, entry
    assert gt["id"].startswith("fe"), gt
    gw_keys(g, "rotate", "--topic", topic)
    st = json.loads(gw_keys(g, "status", "--json", "--topic", topic).stdout)
    assert st["gateway"]["topic"]["tk_version"] == 2, st["gateway"]
    text = gw_keys(g, "status", "--topic", topic).stdout
    assert f"gateway topic {topic} (encrypted): topic key v1" in text and "topic key v2" in text, \
        text
    second = h.ck_produce(g.bootstrap, topic, recs("v2", 50), "none", extra=conf)
    acked = {0: {**first[0], **second[0]}}
    got = h.ck_consume(g.bootstrap, topic, {0: len(acked)}, extra=conf)
    h.verify(h.expected_from_acks(acked, topic), got, f"{topic} through the gateway, v1 and v2")
    # Upstream, directly: envelopes of key versions 1 and 2 (bytes 1..4 of each value).
    up = g.upstream
    direct = h.ck_consume(up.bootstrap, topic, {0: len(acked)}, extra={
        "bootstrap.servers": up.bootstrap, "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(up.ca_pem), "sasl.mechanisms": gw.MECHANISM,
        "sasl.username": "admin", "sasl.password": gw.USERS["admin"]})
    versions = [int.from_bytes(d.value[1:5], "big") for d in direct]
    assert versions == [1] * 50 + [2] * 50, versions
    # A refused case: the gateway does not encrypt clear-* topics.
    bad = gw_keys(g, "rotate", "--topic", "clear-x", check=1)
    assert "does not encrypt this topic" in bad.stderr, bad.stderr
    # Shred: nothing of the topic is readable through the gateway any more.
    gw_keys(g, "shred", "--topic", topic, "--yes-destroy-all-data-of-topic", topic)
    st = json.loads(gw_keys(g, "status", "--json", "--topic", topic).stdout)
    (entry,) = [e for e in st["keys"]["topics"] if e["id"] == gt["id"]]
    assert entry["shredded"] is True and st["gateway"]["topic"]["tk_version"] == 0, entry
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    with sasl_conn(g, addr, "admin") as c:
        for off in (0, 50, 99):
            r = kp.fetch(c, topic, 0, off)
            assert r["error"] == KAFKA_STORAGE_ERROR and not r["records"], (off, r)
        assert kp.list_offsets(c, topic, 0, kp.LATEST) == (kp.NONE, 100)
        # Nor is the shredded key re-created by a new produce.
        more = kp.record_batch([(None, b"after-shred", [])])
        assert kp.produce(c, topic, 0, more)[0] == KAFKA_STORAGE_ERROR
    assert any("cannot use" in ln and f"topic={topic} " in ln and "DESTROYED" in ln
               for ln in g.log_text().splitlines()), g.log_tail()
    again = gw_keys(g, "shred", "--topic", topic, "--yes-destroy-all-data-of-topic", topic,
                    check=1)
    assert "shredded" in again.stderr, again.stderr
    again = gw_keys(g, "rotate", "--topic", topic, check=1)
    assert "shredded" in again.stderr, again.stderr
    # Before any traffic, rotate creates a topic's first key (gateways sharing a keyring get it
    # before any of them seals); shred of a topic without a key is refused.
    gw_keys(g, "rotate", "--topic", "enc-fresh")
    st = json.loads(gw_keys(g, "status", "--json", "--topic", "enc-fresh").stdout)
    assert st["gateway"]["topic"]["tk_version"] == 1, st["gateway"]
    none = gw_keys(g, "shred", "--topic", "enc-none", "--yes-destroy-all-data-of-topic",
                   "enc-none", check=1)
    assert "no gateway key" in none.stderr, none.stderr


@pytest.mark.timeout_s(120)
def test_two_gateways_share_one_keyring_file(tmp_path):
    """Two gateways in front of one `sluice serve` upstream, with the same sluice.kms.* settings:
    the same keyring file (sluice.kms.keyring.file, here in a directory both use, as a shared
    volume would be) and the same local master key. Gateway A seals enc-shared (its key's first
    version is created on first use); gateway B, started before, reads it in clear (its miss
    rereads the changed keyring file). `sluice keys rotate --topic` on A, more records through A
    under v2; B reads all of them in clear, without a restart. The upstream holds envelopes of
    v1 then v2, so B really opened a version made after it started."""
    from confluent_kafka.admin import AdminClient, NewTopic
    shared = tmp_path / "shared"
    shared.mkdir()
    kms = {"sluice.kms.provider": "local",
           "sluice.kms.keyring.file": str(shared / "sluice-keyring"),
           "sluice.kms.local.master.key.file": str(shared / "sluice-master.key"),
           "sluice.gateway.encrypt.enable": "true", "sluice.gateway.encrypt.topics": "enc-*"}
    a = gw.start_gateway(tmp_path / "a", upstream="serve", config=kms,
                         upstream_config={"sluice.encryption.enable": "false"})
    b = None
    try:
        up = a.upstream
        b = gw.start_gateway(tmp_path / "b", upstream="external", config=kms, upstream_config={
            k: a.config[k] for k in a.config if k.startswith("sluice.gateway.upstream.")})
        topic = "enc-shared"
        adm = AdminClient(gw.ck_conf(a, "admin"))
        for f in adm.create_topics([NewTopic(topic, 1, 1)]).values():
            f.result(30)

        def recs(tag, n):
            return [h.Rec(0, f"{tag}-k{i}".encode(), f"{MARKER} {tag} {i}".encode(),
                          (("h", f"{tag}-h{i}".encode()),), None) for i in range(n)]
        first = h.ck_produce(a.bootstrap, topic, recs("v1", 50), "none",
                             extra=gw.ck_conf(a, "admin"))
        got = h.ck_consume(b.bootstrap, topic, {0: 50}, timeout=30, extra=gw.ck_conf(b, "admin"))
        h.verify(h.expected_from_acks(first, topic), got, "A's v1 records through B")
        gw_keys(a, "rotate", "--topic", topic)
        second = h.ck_produce(a.bootstrap, topic, recs("v2", 50), "none",
                              extra=gw.ck_conf(a, "admin"))
        acked = {0: {**first[0], **second[0]}}
        got = h.ck_consume(b.bootstrap, topic, {0: 100}, timeout=30, extra=gw.ck_conf(b, "admin"))
        h.verify(h.expected_from_acks(acked, topic), got, "A's v1 and v2 records through B")
        direct = h.ck_consume(up.bootstrap, topic, {0: 100}, timeout=30, extra={
            "bootstrap.servers": up.bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(up.ca_pem), "sasl.mechanisms": gw.MECHANISM,
            "sasl.username": "admin", "sasl.password": gw.USERS["admin"]})
        versions = [int.from_bytes(d.value[1:5], "big") for d in direct]
        assert versions == [1] * 50 + [2] * 50, versions
        assert b.starts == 1 and "keyring reread" in b.log_text(), b.log_tail()
    finally:
        try:
            if b is not None:
                b.finish()
        finally:
            a.finish()


# ---- principal mapping toward the upstream ---------------------------------------------------------

ALICE_UP_PASSWORD = "alice-up-pw-1"


@pytest.mark.timeout_s(180)
def test_principal_mapping_upstream_sees_the_clients_own_identity(tmp_path):
    """sluice.gateway.principal.mapping maps User:alice to the upstream user alice-up; bob is
    not mapped and goes upstream as the gateway. The gateway's ACLs let both write `mapped`; the
    upstream's let the gateway's user (a super user there) write it but give alice-up only
    DESCRIBE. bob's produce through the gateway is stored; alice's is refused with
    TOPIC_AUTHORIZATION_FAILED by the upstream: its audit trail has the denied Produce of
    User:alice-up and its log alice-up's SCRAM logon, and nothing of alice's is stored."""
    import kproto as kp
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_acl import binding, create_acls
    from test_audit_e2e import find, principal
    pw = tmp_path / "alice-up-password"
    pw.write_text(ALICE_UP_PASSWORD + "\n")
    pw.chmod(0o600)
    mapping = tmp_path / "principal-mapping"
    mapping.write_text("# client principal -> its own upstream identity\n"
                       f"User:alice  sasl.username=alice-up sasl.password.file={pw}\n")
    g = gw.start_gateway(tmp_path / "run", upstream="serve",
                         users={**gw.USERS, "bob": "bob-pw-1"},
                         upstream_users={"alice-up": ALICE_UP_PASSWORD},
                         config={"sluice.gateway.principal.mapping": str(mapping)})
    try:
        a = AdminClient(gw.ck_conf(g, "admin"))
        for f in a.create_topics([NewTopic("mapped", 1, 1)]).values():
            f.result(30)
        grant(g, *[binding("TOPIC", "mapped", "LITERAL", f"User:{u}", op, "ALLOW")
                   for u in ("alice", "bob") for op in ("WRITE", "DESCRIBE")])
        create_acls(g.upstream, binding("TOPIC", "mapped", "LITERAL", "User:alice-up",
                                        "DESCRIBE", "ALLOW"))
        addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
        with sasl_conn(g, addr, "bob") as c:
            recs = kp.record_batch([(None, b"from-bob-%d" % i, []) for i in range(3)])
            assert kp.produce(c, "mapped", 0, recs) == (kp.NONE, 0)
        with sasl_conn(g, addr, "alice") as c:
            recs = kp.record_batch([(None, b"from-alice-%d" % i, []) for i in range(2)])
            err, _ = kp.produce(c, "mapped", 0, recs)
            assert err == TOPIC_AUTHZ, err
        up = g.upstream
        den = find(up, "the upstream's denied Produce of alice-up", lambda e:
                   e["class_uid"] == 6003 and e.get("status_id") == 2
                   and e["api"]["operation"] == "Produce" and principal(e) == "User:alice-up")
        assert den[0]["status_code"] == "TOPIC_AUTHORIZATION_FAILED", den[0]
        log = up.log_text()
        assert "principal=User:alice-up mechanism=SCRAM-SHA-512" in log, up.log_tail()
        # The gateway itself denied nothing (its ACLs allow alice): the refusal in its trail is
        # the upstream's answer, passed on.
        from test_metrics import samples
        ev = find(g, "alice's produce in the gateway's trail", lambda e:
                  e["class_uid"] == 6003 and e["api"]["operation"] == "Produce"
                  and principal(e) == "User:alice")
        assert ev[0]["status_code"] == "TOPIC_AUTHORIZATION_FAILED", ev[0]
        assert sum(samples(g.metrics(), "sluice_authorization_denials_total").values()) == 0
        with sasl_conn(g, addr, "admin") as c:
            assert kp.list_offsets(c, "mapped", 0, kp.LATEST) == (kp.NONE, 3)
    finally:
        g.finish()


# ---- AWS_MSK_IAM toward the upstream ---------------------------------------------------------------

@pytest.mark.timeout_s(120)
def test_aws_msk_iam_upstream_signature_verified_independently(tmp_path):
    """The gateway logs in to an AWS_MSK_IAM upstream with credentials from the environment; a
    test upstream (iam_upstream.py: SigV4 written from the specification with hashlib/hmac,
    itself checked against the kafkajs-msk-iam plugin's published vector) verifies the signature,
    the gateway becomes ready and Metadata through it names gateway addresses. A wrong secret is
    refused by the upstream and the gateway does not become ready."""
    import iam_upstream as iu
    import tlsutil
    iu.self_check()
    d = tmp_path / "iam-pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "upstream.pem", cert, key, [ca.cert])
    akid, secret = "AKIDSLUICEGWTEST", "gateway-test-secret/+="
    up = iu.IamUpstream(d / "upstream.pem", {akid: secret}, "us-east-1")

    def keys(k, s):
        upstream = {"sluice.gateway.upstream.bootstrap.servers": up.bootstrap,
                    "sluice.gateway.upstream.security.protocol": "SASL_SSL",
                    "sluice.gateway.upstream.ssl.ca.location": str(d / "ca.pem"),
                    "sluice.gateway.upstream.sasl.mechanism": "AWS_MSK_IAM",
                    "sluice.gateway.upstream.aws.region": "us-east-1"}
        # Only the environment: no profile, no IMDS.
        env = {"AWS_ACCESS_KEY_ID": k, "AWS_SECRET_ACCESS_KEY": s,
               "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path),
               "AWS_CONFIG_FILE": str(tmp_path / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        return upstream, env
    try:
        upstream, env = keys(akid, secret)
        g = gw.start_gateway(tmp_path / "ok", upstream="external", upstream_config=upstream,
                             env=env)
        try:
            assert (akid, None) in up.logins, up.logins
            assert all(why is None for _, why in up.logins), up.logins
            md = json.loads(run(["kcat", *gw.kcat_args(g, "admin"), "-L", "-J"]).stdout)
            assert [(b["id"], b["name"]) for b in md["brokers"]] == \
                [(1, f"127.0.0.1:{g.node_ports[1]}")], md["brokers"]
        finally:
            g.finish()
        assert not up.errors, up.errors
        upstream, env = keys(akid, "not-the-secret")
        n = len(up.logins)
        with pytest.raises(AssertionError):
            gw.start_gateway(tmp_path / "bad", upstream="external", upstream_config=upstream,
                             env=env, ready_timeout=5)
        assert (akid, "bad signature") in up.logins[n:], up.logins[n:]
        assert all(why is not None for _, why in up.logins[n:]), up.logins[n:]
    finally:
        up.stop()


# ---- transactions and read_committed through the gateway (issue 14; issue 16's serve) --------

def _read_to_eof(conf, topic, nparts, isolation, timeout=60):
    """Every value of `topic` by partition, in order, until EOF on every partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = Consumer({"group.id": f"rc-reader-{uuid.uuid4()}", **conf, "isolation.level": isolation,
                  "enable.auto.commit": False, "enable.partition.eof": True})
    got, eof = {p: [] for p in range(nparts)}, set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(nparts)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(eof) < nparts:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                eof.add(m.partition())
                continue
            got[m.partition()].append(m.value())
        assert len(eof) == nparts, f"no EOF on every partition within {timeout}s: {got}"
        return sorted(v for vs in got.values() for v in vs)
    finally:
        c.close()


@pytest.mark.timeout_s(300)
@pytest.mark.parametrize("topic", ["gtx", "enc-gtx"])
def test_transactions_and_read_committed_through_the_gateway(gateway_serve, topic):
    """confluent-kafka's transactional producer through the gateway (commit, abort, commit, with
    offsets sent to the transaction) and read_committed consumers through it: only committed
    records, the same as read directly from the upstream; read_uncommitted shows the aborted
    ones too; an open transaction holds read_committed at the last stable offset. `enc-gtx` is
    encrypted by the gateway toward the upstream: markers pass untouched."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(topic + "-in", 1, 1)]).values():
        f.result(30)

    def created():
        ts = admin.list_topics(timeout=5).topics
        return all(t in ts and len(ts[t].partitions) == n for t, n in ((topic, 3),
                                                                       (topic + "-in", 1)))
    wait_until(created, 30, "topics through the gateway")
    p = Producer(gw.ck_conf(g, "admin", **{"transactional.id": "gw-" + topic,
                                           "transaction.timeout.ms": 60000, "linger.ms": 5}))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, b"c1-%d" % i, partition=i % 3)
    cons = Consumer(gw.ck_conf(g, "admin", **{"group.id": "gw-grp-" + topic}))
    try:
        p.send_offsets_to_transaction([TopicPartition(topic + "-in", 0, 7)],
                                      cons.consumer_group_metadata(), 30)
    finally:
        cons.close()
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, b"ab-%d" % i, partition=i % 3)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, b"c2-%d" % i, partition=i % 3)
    p.commit_transaction(30)

    committed = sorted([b"c1-%d" % i for i in range(6)] + [b"c2-%d" % i for i in range(3)])
    everything = sorted(committed + [b"ab-%d" % i for i in range(6)])
    assert _read_to_eof(gw.ck_conf(g, "admin"), topic, 3, "read_committed") == committed
    assert _read_to_eof(gw.ck_conf(g, "admin"), topic, 3, "read_uncommitted") == everything
    if not topic.startswith("enc-"):
        ub = g.upstream
        direct = {"bootstrap.servers": ub.bootstrap, "security.protocol": "SASL_SSL",
                  "ssl.ca.location": str(ub.ca_pem), "sasl.mechanisms": gw.MECHANISM,
                  "sasl.username": "admin", "sasl.password": gw.USERS["admin"]}
        assert _read_to_eof(direct, topic, 3, "read_committed") == committed
    c = Consumer(gw.ck_conf(g, "admin", **{"group.id": "gw-grp-" + topic,
                                           "enable.auto.commit": False}))
    try:
        (tp,) = c.committed([TopicPartition(topic + "-in", 0)], timeout=20)
    finally:
        c.close()
    assert tp.offset == 7, tp

    # An open transaction holds read_committed (through the gateway) at the LSO.
    p.begin_transaction()
    p.produce(topic, b"open-0", partition=0)
    p.flush(30)
    assert b"open-0" not in _read_to_eof(gw.ck_conf(g, "admin"), topic, 3, "read_committed")
    assert b"open-0" in _read_to_eof(gw.ck_conf(g, "admin"), topic, 3, "read_uncommitted")
    p.commit_transaction(30)
    assert b"open-0" in _read_to_eof(gw.ck_conf(g, "admin"), topic, 3, "read_committed")


def upstream_describe_txns(g):
    """DescribeTransactions requests the `sluice serve` upstream has finished: only this test
    sends any, so a count that does not move means nothing was forwarded (other clients' traffic
    through the gateway, e.g. a producer's Metadata refresh, does not count here)."""
    from test_metrics import samples
    body = gw.http_text(gw.metrics_url(g.upstream) + "/metrics")
    return sum(v for k, v in samples(body, "sluice_requests_total").items()
               if 'request="DescribeTransactions"' in k)


def txn_admin_node(g, user, ids):
    """DescribeTransactions v0 of `ids`, then ListTransactions v1 (no filter), sent by
    @platformatic/kafka as `user` to the upstream broker's gateway address
    (node/txnadmin_platformatic.mjs): (describe entries in answer order, {id: (pid, state)},
    the listing's error)."""
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    res = subprocess.run(["node", str(NODE_DIR / "txnadmin_platformatic.mjs"), addr,
                          str(g.ca_pem), user, ",".join(ids)],
                         cwd=str(NODE_DIR), capture_output=True, text=True, timeout=90,
                         env=gw.node_env(g, user, SASL_PASSWORD=g.users[user]))
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"node printed nothing: {res.stdout!r} {res.stderr[-2000:]!r}"
    out = json.loads(lines[-1])
    assert out["ok"] and res.returncode == 0, out
    listed = {s["id"]: (s["producerId"], s["state"]) for s in out["list"]["states"]}
    return out["describe"], listed, out["list"]["error"]


def test_describe_and_list_transactions_through_the_gateway(gateway_serve):
    """DescribeTransactions and ListTransactions (what kafka-transactions.sh sends) through the
    gateway to `sluice serve`, from @platformatic/kafka, with an open transaction of
    confluent-kafka's transactional producer on dtx-gw (partitions 0, 1) and dtx-gw-hidden:
      - both advertised in the gateway's ApiVersions (the upstream serves them);
      - admin (super user) sees it Ongoing with its producer id, epoch and every partition;
      - reader (DESCRIBE on the id and on dtx-gw only) gets a denied id answered
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED in request order beside the forwarded one, whose
        partitions leave dtx-gw-hidden out; its listing holds only the id it may describe;
      - mallory (nothing granted) gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, decided at the
        gateway (its denial logged there, nothing forwarded for it), and an empty listing."""
    import kproto as kp
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_acl import binding
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("dtx-gw", 2, 1),
                                  NewTopic("dtx-gw-hidden", 1, 1)]).values():
        f.result(30)
    grant(g, binding("TRANSACTIONAL_ID", "gw-dtx", "LITERAL", "User:reader", "DESCRIBE", "ALLOW"),
          binding("TOPIC", "dtx-gw", "LITERAL", "User:reader", "DESCRIBE", "ALLOW"))
    addr = f"127.0.0.1:{g.node_ports[gw.NODE_ID_MIN]}"
    with sasl_conn(g, addr, "reader") as c:
        err, ranges = kp.api_versions(c, 3)
    assert err == 0 and ranges.get(65) == (0, 0) and ranges.get(66, (0, -1))[1] >= 1, \
        (ranges.get(65), ranges.get(66))

    p = Producer(gw.ck_conf(g, "admin", **{"transactional.id": "gw-dtx",
                                           "transaction.timeout.ms": 60000}))
    p.init_transactions(30)
    p.begin_transaction()
    for part in (0, 1):
        p.produce("dtx-gw", b"dtx-%d" % part, partition=part)
    p.produce("dtx-gw-hidden", b"dtx-hidden", partition=0)
    assert p.flush(30) == 0
    try:
        desc, listed, lerr = txn_admin_node(g, "admin", ["gw-dtx"])
        assert lerr == 0 and len(desc) == 1, (desc, lerr)
        d = desc[0]
        assert (d["id"], d["error"], d["state"]) == ("gw-dtx", 0, "Ongoing"), d
        assert d["producerId"] >= 0 and d["producerEpoch"] >= 0 and d["timeoutMs"] == 60000, d
        assert d["topics"] == {"dtx-gw": [0, 1], "dtx-gw-hidden": [0]}, d
        assert listed.get("gw-dtx") == (d["producerId"], "Ongoing"), listed

        desc, listed, lerr = txn_admin_node(g, "reader", ["gw-dtx-other", "gw-dtx"])
        assert [(x["id"], x["error"]) for x in desc] == [("gw-dtx-other", TXN_AUTHZ),
                                                         ("gw-dtx", 0)], desc
        assert desc[1]["state"] == "Ongoing" and desc[1]["producerId"] == d["producerId"], desc
        assert desc[1]["topics"] == {"dtx-gw": [0, 1]}, desc
        assert lerr == 0 and listed == {"gw-dtx": (d["producerId"], "Ongoing")}, listed

        described = upstream_describe_txns(g)
        assert described >= 2  # admin's and reader's reached the upstream
        desc, listed, lerr = txn_admin_node(g, "mallory", ["gw-dtx"])
        # The describe of a denied id never reached the upstream.
        assert upstream_describe_txns(g) == described
        assert [(x["id"], x["error"], x["topics"]) for x in desc] == \
            [("gw-dtx", TXN_AUTHZ, {})], desc
        assert lerr == 0 and listed == {}, listed
        assert re.search(r'msg="denied" principal=User:mallory .*api=65 op=DESCRIBE '
                         r'resource=TRANSACTIONAL_ID:gw-dtx', g.log_text()), g.log_tail()
    finally:
        p.commit_transaction(30)


# ---- a gateway keeps no Kafka data (docs/gateway.md, "What a gateway keeps on disk") -----------

# Kafka data a broker keeps under log.dirs: partition directories (NAME-N, hex topic ids, the
# groups log __sluice_groups-0), their segment, index and snapshot files, the transaction log
# and the offsets of unfinished transactions, the producer-id mark.
_KAFKA_STATE = re.compile(r"^(.+-\d+|.*\.(log|index|timeindex|snapshot|txnindex)|sluice-txn.*"
                          r"|sluice-producer-ids.*)$")


def kafka_state_in(root):
    """Relative paths under `root` that hold Kafka data (_KAFKA_STATE); empty is the good
    answer."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if _KAFKA_STATE.match(p.name))


@pytest.mark.timeout_s(300)
def test_gateway_data_dir_holds_no_kafka_state(gateway_serve):
    """An idempotent producer, a transactional producer sending a group's offsets to its
    transaction, and a consumer group that consumes and commits, all through the gateway: the
    upstream's data directory then holds partitions, the groups log and the transaction log,
    the gateway's holds none of them (it opens no group or transaction coordinator, producer-id
    store or log cleaner: every such request goes upstream)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    g = gateway_serve
    admin = AdminClient(gw.ck_conf(g, "admin"))
    for f in admin.create_topics([NewTopic("gst", 2, 1)]).values():
        f.result(30)
    wait_until(lambda: "gst" in admin.list_topics(timeout=5).topics, 30, "gst at the gateway")
    idem = Producer(gw.ck_conf(g, "admin", **{"enable.idempotence": True}))
    for i in range(20):
        idem.produce("gst", b"idem-%d" % i, partition=i % 2)
    assert idem.flush(30) == 0
    tx = Producer(gw.ck_conf(g, "admin", **{"transactional.id": "gw-gst",
                                            "transaction.timeout.ms": 60000}))
    tx.init_transactions(30)
    tx.begin_transaction()
    for i in range(10):
        tx.produce("gst", b"txn-%d" % i, partition=i % 2)
    meta = Consumer(gw.ck_conf(g, "admin", **{"group.id": "gw-gst-txn"}))
    try:
        tx.send_offsets_to_transaction([TopicPartition("gst", 0, 3)],
                                       meta.consumer_group_metadata(), 30)
    finally:
        meta.close()
    tx.commit_transaction(30)
    c = Consumer(gw.ck_conf(g, "admin", **{"group.id": "gw-gst", "auto.offset.reset": "earliest",
                                           "enable.auto.commit": False}))
    try:
        c.subscribe(["gst"])
        got, deadline = [], time.monotonic() + 60
        while len(got) < 30 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        assert len(got) == 30, f"the group consumed {len(got)} of 30"
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition("gst", 0), TopicPartition("gst", 1)], timeout=20)
        assert sum(tp.offset for tp in committed) >= 30, committed
    finally:
        c.close()
    up = kafka_state_in(g.upstream.data_dir)
    assert any(p.startswith("__sluice_groups-") for p in up) and \
        any(p.startswith("sluice-txn") for p in up), f"the upstream kept no such state: {up}"
    assert kafka_state_in(g.data_dir) == [], \
        f"the gateway's data directory holds Kafka data: {kafka_state_in(g.data_dir)}"
