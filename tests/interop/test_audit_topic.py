"""The audit trail's topic __sluice_audit (sluice.audit.sinks=...,topic) with real clients over
SASL_SSL and the StandardAuthorizer: created at start with one partition; nobody, the super user
included, may produce to it, delete it, grow it or change its configuration; reading needs an
ACL naming it (the super user too), so reading the trail always leaves an ACL change in it;
without an authorizer nobody reads it; a client never creates it through auto-creation.

The trail (src/audit) appends every event line to the topic: a granted reader reads them, the
grant that let it read among them."""
import json
import time

import pytest

import kproto
from conftest import wait_until
from test_acl import acl_broker, binding, ck_admin, ck_conf, ck_produce, create_acls  # noqa: F401

AUDIT = "__sluice_audit"
TOPIC_AUTHZ = 29
SINKS = {"sluice.audit.sinks": "file,topic"}


def read_outcome(b, user):
    """Subscribes (a group under audit-read-, which everyone may use) and polls: "eof" when a
    fetch reached the end of the partition, "records" when records came, else the first error
    code (librdkafka reports an unreadable subscribed topic; an assignment it retries quietly)."""
    from confluent_kafka import Consumer, KafkaError
    c = Consumer(ck_conf(b, user, **{"group.id": f"audit-read-{user}",
                                     "enable.auto.commit": False,
                                     "auto.offset.reset": "earliest",
                                     "enable.partition.eof": True}))
    c.subscribe([AUDIT])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if not m.error():
                return "records"
            if m.error().code() == KafkaError._PARTITION_EOF:
                return "eof"
            return m.error().code()
    finally:
        c.close()
    return None


@pytest.mark.broker_config({**SINKS, "sluice.log.level": "debug"})
@pytest.mark.timeout_s(240)
def test_audit_topic_protection(acl_broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, NewPartitions
    b = acl_broker
    assert (b.data_dir / f"{AUDIT}-0").is_dir(), "the audit topic was not created at start"
    assert not (b.data_dir / f"{AUDIT}-1").exists()
    create_acls(b, binding("GROUP", "audit-read-", "PREFIXED", "User:*", "READ", "ALLOW"))

    # The super user without a grant: reading and producing are refused, and so are the
    # changes no grant can allow.
    assert read_outcome(b, "admin") == TOPIC_AUTHZ
    assert ck_produce(b, "admin", AUDIT) == TOPIC_AUTHZ
    a = ck_admin(b, "admin")
    for fut in (a.delete_topics([AUDIT], operation_timeout=10)[AUDIT],
                a.create_partitions([NewPartitions(AUDIT, 2)])[AUDIT]):
        with pytest.raises(KafkaException) as ei:
            fut.result(30)
        assert ei.value.args[0].code() == TOPIC_AUTHZ
    res = ConfigResource("TOPIC", AUDIT, set_config={"retention.ms": "1000"})
    with pytest.raises(KafkaException) as ei:
        a.alter_configs([res])[res].result(30)
    assert ei.value.args[0].code() == TOPIC_AUTHZ
    assert (b.data_dir / f"{AUDIT}-0").is_dir() and not (b.data_dir / f"{AUDIT}-1").exists()

    # A wildcard grant is not a grant on the trail; a literal one is.
    create_acls(b, binding("TOPIC", "*", "LITERAL", "User:fraud", "ALL", "ALLOW"))
    assert read_outcome(b, "fraud") == TOPIC_AUTHZ
    create_acls(b, binding("TOPIC", AUDIT, "LITERAL", "User:auditor", "READ", "ALLOW"),
                binding("TOPIC", AUDIT, "LITERAL", "User:fraud", "ALL", "ALLOW"))
    assert read_outcome(b, "auditor") == "records"
    assert read_outcome(b, "fraud") == "records"
    # What the auditor reads is the trail itself: OCSF lines, the grant's CreateAcls among them.
    from confluent_kafka import Consumer, TopicPartition
    cons = Consumer(ck_conf(b, "auditor", **{"group.id": "audit-read-auditor-all",
                                             "enable.auto.commit": False}))
    cons.assign([TopicPartition(AUDIT, 0, 0)])
    lines = []
    deadline = time.monotonic() + 30

    def granted():
        return any(e.get("api", {}).get("operation") == "CreateAcls"
                   and f"Topic:LITERAL:{AUDIT} User:auditor Read Allow" in json.dumps(e)
                   for e in lines)
    try:
        while time.monotonic() < deadline and not granted():
            m = cons.poll(0.5)
            if m is not None and not m.error():
                lines.append(json.loads(m.value()))
    finally:
        cons.close()
    assert granted(), lines[-5:]
    assert all("class_uid" in e and "prev_hash" in e["unmapped"] for e in lines)
    # ALL on the trail still writes nothing; the super user still needs a grant of its own.
    assert ck_produce(b, "fraud", AUDIT) == TOPIC_AUTHZ
    assert ck_produce(b, "auditor", AUDIT) == TOPIC_AUTHZ
    assert read_outcome(b, "admin") == TOPIC_AUTHZ
    assert read_outcome(b, "mallory") == TOPIC_AUTHZ

    log = b.log_text()
    assert f"resource=TOPIC:{AUDIT}" in log and "op=WRITE" in log
    # The grant that opened the trail is in the request's outcomes, as the binding it made.
    assert f"CLUSTER:Topic:LITERAL:{AUDIT} User:auditor Read Allow:CREATE:allow:e0" in log


def test_audit_topic_without_authorizer(tmp_path):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from conftest import Broker, finish_broker
    b = Broker(tmp_path, SINKS)
    try:
        b.start()
        with kproto.Conn(b.bootstrap) as c:
            md = kproto.metadata(c, [AUDIT])
        assert md["topics"][AUDIT]["error"] == 0, "describing the trail should stay open"
        p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 15000})
        out = []
        p.produce(AUDIT, b"forged", partition=0,
                  on_delivery=lambda err, msg: out.append(err.code() if err else 0))
        p.flush(30)
        assert out == [TOPIC_AUTHZ]
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g",
                      "enable.partition.eof": True})
        c.assign([TopicPartition(AUDIT, 0, 0)])
        got = []

        def polled():
            m = c.poll(0.5)
            if m is not None:
                got.append(m.error().code() if m.error() else "records")
            return bool(got)
        wait_until(polled, 30, "a read outcome")
        c.close()
        assert got[0] == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        finish_broker(b)


def test_audit_topic_never_auto_created(broker):
    # Auto-creation is on in the fixture; the name is reserved even without the topic sink.
    with kproto.Conn(broker.bootstrap) as c:
        md = kproto.metadata(c, [AUDIT], allow_auto=True)
        assert md["topics"][AUDIT]["error"] != 0
        md = kproto.metadata(c, ["ordinary-auto"], allow_auto=True)
        assert md["topics"]["ordinary-auto"]["error"] == 0
    assert not (broker.data_dir / f"{AUDIT}-0").exists()
