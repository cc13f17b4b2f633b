"""The audit trail seen end to end with real clients over SASL_SSL (SCRAM-SHA-512), with the
authorizer on: confluent-kafka (librdkafka) creates a topic, produces and fails a login with a
wrong password; kafkajs changes ACLs, consumes, and is denied a produce. Each action must appear
as the right OCSF event (class, activity, status) with the right principal, client address,
resource and counts; every event of the trail validates against the schemas of its class
(tests/interop/ocsf); no record payload, key, header value or password appears anywhere in the
audit directory; the trail verifies."""
import json
import subprocess

import pytest

from conftest import SLUICE_BIN, finish_broker, wait_until
from test_acl import ck_conf, kafkajs, start_acl_broker
from test_audit_trail import validate_schemas

USERS = {"admin": "adm-Secret-PW-7731", "writer": "wrt-Secret-PW-7732",
         "reader": "rdr-Secret-PW-7733", "mallory": "mal-Secret-PW-7734"}
WRONG_PW = "WRONG-Secret-PW-7735"
KEY_MARK, VALUE_MARK, HEADER_MARK = "KEYMARK-4242", "PAYLOADMARK-4242", "HDRMARK-4242"
TOPIC = "cards"


@pytest.fixture
def audited(request, tmp_path):
    b = start_acl_broker(request, tmp_path, USERS, {
        "auto.create.topics.enable": "false",
        # One data-access event per request, so counts are checked exactly; the per-interval
        # summaries are covered in test_audit_trail.py.
        "sluice.audit.data.interval.ms": "0",
        # The default types plus every connection opened and closed.
        "sluice.audit.enabled.event.types":
            "authenticate,connection,refusal,management,denial,produce,consume,lifecycle,"
            "detection"})
    yield b
    finish_broker(b)


def trail(b):
    out = []
    for f in sorted((b.data_dir / "audit").glob("sluice-audit-*.jsonl")):
        out += [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
    return out


def principal(e):
    return ((e.get("actor") or {}).get("user") or {}).get("uid")


def find(b, what, pred, timeout=20):
    """The trail's events matching `pred`, waiting (the writer thread is asynchronous)."""
    hits = []

    def look():
        hits[:] = [e for e in trail(b) if pred(e)]
        return bool(hits)
    wait_until(look, timeout, f"audit event: {what}")
    return hits


def names_topic(e, topic):
    return any(r.get("name") == topic for r in e.get("resources") or [])


def test_real_clients_actions_appear_as_ocsf_events(audited):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    b = audited

    # confluent-kafka: topic creation by the admin.
    a = AdminClient(ck_conf(b, "admin"))
    for f in a.create_topics([NewTopic(TOPIC, 2, 1)]).values():
        f.result(30)

    # kafkajs: ACL changes by the admin (writer may write, reader may read with its group).
    acls = [{"resourceType": "TOPIC", "resourceName": TOPIC, "resourcePatternType": "LITERAL",
             "principal": "User:writer", "host": "*", "operation": "WRITE",
             "permissionType": "ALLOW"},
            {"resourceType": "TOPIC", "resourceName": TOPIC, "resourcePatternType": "LITERAL",
             "principal": "User:reader", "host": "*", "operation": "READ",
             "permissionType": "ALLOW"},
            # mallory may see the topic, not write it: its produce reaches the Write check.
            {"resourceType": "TOPIC", "resourceName": TOPIC, "resourcePatternType": "LITERAL",
             "principal": "User:mallory", "host": "*", "operation": "DESCRIBE",
             "permissionType": "ALLOW"},
            {"resourceType": "GROUP", "resourceName": "reader-group",
             "resourcePatternType": "LITERAL", "principal": "User:reader", "host": "*",
             "operation": "READ", "permissionType": "ALLOW"}]
    r = kafkajs(b, "admin", "create", acls)
    assert r["ok"], r

    # confluent-kafka: the writer produces 6 records with marked keys, values and headers.
    p = Producer(ck_conf(b, "writer", **{"acks": "all", "linger.ms": 0}))
    errors = []
    for i in range(6):
        p.produce(TOPIC, key=f"{KEY_MARK}-{i}", value=f"{VALUE_MARK}-{i}", partition=i % 2,
                  headers=[("h", f"{HEADER_MARK}-{i}")],
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0 and not errors, errors
    del p  # closes its connections (the network close event is checked below)

    # kafkajs: the reader consumes them in its group.
    r = kafkajs(b, "reader", "consume", {"topic": TOPIC, "group": "reader-group", "n": 6})
    assert r["ok"] and r["result"]["records"] >= 6, r

    # kafkajs: mallory (valid account, Describe only) is denied a produce.
    r = kafkajs(b, "mallory", "produce", {"topic": TOPIC, "value": VALUE_MARK})
    assert not r["ok"], r

    # confluent-kafka: a wrong password for mallory.
    bad = AdminClient(ck_conf(b, "mallory", WRONG_PW))
    with pytest.raises(KafkaException):
        bad.list_topics(timeout=5)

    ok = lambda e: e.get("status_id") == 1  # noqa: E731
    # A login success (kafkajs' reader) and the wrong password, with address and mechanism.
    logins = find(b, "reader logon", lambda e: e["class_uid"] == 3002 and ok(e)
                  and principal(e) == "User:reader")
    assert logins[0]["auth_protocol"] == "SCRAM-SHA-512"
    assert logins[0]["src_endpoint"]["ip"] == "127.0.0.1" and logins[0]["src_endpoint"]["port"] > 0
    assert logins[0]["tls"]["version"] in ("TLSv1.3", "TLSv1.2")
    fails = find(b, "mallory wrong password", lambda e: e["class_uid"] == 3002
                 and e.get("status_id") == 2 and (e.get("user") or {}).get("name") == "mallory")
    assert fails[0]["status_detail"] and fails[0]["src_endpoint"]["ip"] == "127.0.0.1"

    # The topic creation and the ACL change: management API activity by the admin.
    created = find(b, "CreateTopics", lambda e: e["class_uid"] == 6003
                   and e["api"]["operation"] == "CreateTopics" and principal(e) == "User:admin")
    assert created[0]["activity_id"] == 1 and ok(created[0]) and names_topic(created[0], TOPIC)
    acl = find(b, "CreateAcls", lambda e: e["class_uid"] == 6003
               and e["api"]["operation"] == "CreateAcls" and principal(e) == "User:admin")
    assert ok(acl[0]) and acl[0]["src_endpoint"]["ip"] == "127.0.0.1"
    assert "User:reader" in json.dumps(acl), acl

    # The produce: the writer, the topic, 6 records in all with their offsets.
    prods = find(b, "writer produce", lambda e: e["class_uid"] == 6003
                 and e["api"]["operation"] == "Produce" and principal(e) == "User:writer")
    parts = [r for e in prods for r in e["resources"] if r["name"] == TOPIC]
    assert sum(r["data"]["records"] for r in parts) == 6, parts
    assert {r["data"]["partition"] for r in parts} == {0, 1}
    assert all(r["data"]["first_offset"] >= 0 and r["data"]["last_offset"] >= r["data"]
               ["first_offset"] for r in parts)
    assert all(e["src_endpoint"]["ip"] == "127.0.0.1" and ok(e) for e in prods)

    # The consume: the reader read the 6 records.
    def consumed():
        evs = [e for e in trail(b) if e["class_uid"] == 6003 and e["api"]["operation"] == "Fetch"
               and principal(e) == "User:reader"]
        return sum(r["data"]["records"] for e in evs for r in e["resources"]
                   if r["name"] == TOPIC) >= 6
    wait_until(consumed, 20, "the reader's fetches of 6 records")

    # The denial: mallory, Write, the topic.
    den = find(b, "mallory denied Write", lambda e: e["class_uid"] == 6003
               and e.get("status_id") == 2 and principal(e) == "User:mallory"
               and e["api"]["operation"] == "Produce")
    denied = [r for r in den[0]["resources"] if r["name"] == TOPIC]
    assert denied and denied[0]["data"]["operation"] == "WRITE" and not denied[0]["data"]["allowed"]
    # What decided: mallory's only binding allows Describe, nothing allows Write.
    assert denied[0]["data"]["decided_by"] == "no ALLOW binding matches (deny by default)"
    assert den[0]["status_code"] == "TOPIC_AUTHORIZATION_FAILED"
    assert den[0]["src_endpoint"]["ip"] == "127.0.0.1"

    # Network activity: the writer's connection closed with its byte counts and duration.
    closes = find(b, "writer connection closed", lambda e: e["class_uid"] == 4001
                  and e["activity_id"] == 2 and principal(e) == "User:writer")
    assert closes[0]["traffic"]["bytes_in"] > 0 and closes[0]["traffic"]["bytes_out"] > 0

    b.stop()
    evs = trail(b)
    # Every class emitted is schema-checked (validate_schemas fails on a class it has no schema
    # for), and the classes the issue names are all here.
    validate_schemas(evs)
    assert {3002, 4001, 6002, 6003} <= {e["class_uid"] for e in evs}

    # Nothing a record or a login carries: every file of the audit directory, raw bytes.
    blob = b"".join(f.read_bytes() for f in (b.data_dir / "audit").iterdir() if f.is_file())
    for mark in [KEY_MARK, VALUE_MARK, HEADER_MARK, WRONG_PW, *USERS.values()]:
        assert mark.encode() not in blob, f"{mark} appears in the audit trail"

    r = subprocess.run([SLUICE_BIN, "audit", "verify", str(b.data_dir / "audit")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
