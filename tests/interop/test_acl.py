"""Kafka ACLs over SASL_SSL (SCRAM-SHA-512) with real clients: the issue's least-privilege
scenario seen from confluent-kafka (librdkafka), kafka-python and kafkajs; ACL administration
with the kafka-python, kafkajs and confluent-kafka admin clients, applied to already-connected
clients; DENY over ALLOW, wildcard principal with a specific DENY, PREFIXED vs LITERAL, host
restrictions, super users; `sluice acl` against a running broker.

Users (SCRAM): admin (super user), payments-writer, fraud, auditor. Passwords reach clients
through config objects or the environment, never argv."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SLUICE_BIN, Broker, finish_broker, sanitizer_env, wait_until
from test_sasl import add_user

NODE_DIR = Path(__file__).resolve().parent / "node"
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
TOPIC_AUTHZ, GROUP_AUTHZ, CLUSTER_AUTHZ = 29, 30, 31
USERS = {"admin": "admin-pw-1", "payments-writer": "writer-pw-1", "fraud": "fraud-pw-1",
         "auditor": "auditor-pw-1", "mallory": "mallory-pw-1"}


def start_acl_broker(request, tmp_path, users, overrides):
    """A started broker whose only listener is SASL_SSL (SCRAM-SHA-512, a CA of the test's own in
    `b.ca_pem`) with the StandardAuthorizer, User:admin a super user and `users` (name:
    password) in its credential store."""
    from gateway import sasl_ssl_setup
    b = Broker(tmp_path, {"authorizer.class.name": STANDARD, "super.users": "User:admin",
                          **overrides})
    sasl_ssl_setup(b, tmp_path / "pki", users)
    request.node._sluice_broker = b
    b.start()
    return b


@pytest.fixture
def acl_broker(request, tmp_path):
    marker = request.node.get_closest_marker("broker_config")
    b = start_acl_broker(request, tmp_path, USERS, {"auto.create.topics.enable": "true",
                                                    **(marker.args[0] if marker else {})})
    yield b
    finish_broker(b)


# ---- clients -------------------------------------------------------------------------------------

def password_of(b, user):
    """`user`'s password on broker `b` (the users start_acl_broker gave it, else USERS)."""
    return getattr(b, "users", USERS)[user]


def ck_conf(b, user, password=None, **extra):
    return {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(b.ca_pem), "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": password or password_of(b, user), **extra}


def kp_kw(b, user):
    return dict(bootstrap_servers=b.bootstrap, security_protocol="SASL_SSL",
                ssl_cafile=str(b.ca_pem), ssl_check_hostname=False, sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=user, sasl_plain_password=USERS[user],
                request_timeout_ms=15000, api_version_auto_timeout_ms=10000)


def kafkajs(b, user, action, spec):
    env = dict(os.environ, SASL_PASSWORD=password_of(b, user))
    res = subprocess.run(["node", str(NODE_DIR / "acl_kafkajs.mjs"), b.bootstrap, str(b.ca_pem),
                          user, action, json.dumps(spec)], cwd=NODE_DIR, env=env,
                         capture_output=True, text=True, timeout=90)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"kafkajs printed nothing: {res.stdout!r} {res.stderr[-2000:]!r}"
    return json.loads(lines[-1])


def ck_admin(b, user):
    from confluent_kafka.admin import AdminClient
    return AdminClient(ck_conf(b, user))


def binding(rtype, name, pattern, principal, op, perm, host="*"):
    """A kafka-python ACL (confluent-kafka 1.7 has no ACL admin API)."""
    from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePattern, ResourceType)
    return ACL(principal=principal, host=host, operation=getattr(ACLOperation, op),
               permission_type=getattr(ACLPermissionType, perm),
               resource_pattern=ResourcePattern(getattr(ResourceType, rtype), name,
                                                getattr(ACLResourcePatternType, pattern)))


def create_acls(b, *bindings):
    from kafka import KafkaAdminClient
    adm = KafkaAdminClient(**kp_kw(b, "admin"))
    try:
        res = adm.create_acls(list(bindings))
    finally:
        adm.close()
    assert not res["failed"] and len(res["succeeded"]) == len(bindings), res


def all_acls_filter(principal=None):
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePatternFilter, ResourceType)
    return ACLFilter(principal=principal, host=None, operation=ACLOperation.ANY,
                     permission_type=ACLPermissionType.ANY,
                     resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                            ACLResourcePatternType.ANY))


def setup_scenario(b):
    """As admin: topics payments and other; the issue's least-privilege ACLs."""
    from confluent_kafka.admin import NewTopic
    a = ck_admin(b, "admin")
    for f in a.create_topics([NewTopic("payments", 1, 1), NewTopic("other", 1, 1)]).values():
        f.result(30)
    create_acls(b,
                binding("TOPIC", "payments", "LITERAL", "User:payments-writer", "WRITE", "ALLOW"),
                binding("TOPIC", "payments", "LITERAL", "User:fraud", "READ", "ALLOW"),
                binding("GROUP", "fraud-", "PREFIXED", "User:fraud", "READ", "ALLOW"))


def ck_produce(b, user, topic, value=b"v"):
    """Produces one record; returns the delivery error code (0 on success)."""
    from confluent_kafka import Producer
    p = Producer(ck_conf(b, user, **{"message.timeout.ms": 15000}))
    out = []
    p.produce(topic, value, partition=0,
              on_delivery=lambda err, msg: out.append(err.code() if err else 0))
    p.flush(30)
    assert out, "no delivery report"
    return out[0]


def ck_group_read(b, user, group, topic, want=0):
    """Subscribes with `group`; returns (values, first error code seen)."""
    from confluent_kafka import Consumer
    c = Consumer(ck_conf(b, user, **{"group.id": group, "auto.offset.reset": "earliest",
                                     "enable.auto.commit": False}))
    c.subscribe([topic])
    got, err, deadline = [], None, time.monotonic() + 30
    try:
        while time.monotonic() < deadline and err is None and (want == 0 or len(got) < want):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                err = m.error().code()
            else:
                got.append(m.value())
        if got and err is None:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return got, err


# ---- the least-privilege scenario ----------------------------------------------------------------

@pytest.mark.timeout_s(240)
def test_least_privilege_confluent_kafka(acl_broker):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import ConfigResource, NewTopic
    b = acl_broker
    setup_scenario(b)
    # payments-writer writes payments, and nothing else
    assert ck_produce(b, "payments-writer", "payments", b"p1") == 0
    assert ck_produce(b, "payments-writer", "payments", b"p2") == 0
    assert ck_produce(b, "payments-writer", "other") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert ck_produce(b, "fraud", "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert ck_produce(b, "auditor", "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # fraud reads payments through fraud-* groups only (and commits there)
    got, err = ck_group_read(b, "fraud", "fraud-detector", "payments", want=2)
    assert err is None and got == [b"p1", b"p2"]
    _, err = ck_group_read(b, "fraud", "analytics", "payments")
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED
    _, err = ck_group_read(b, "fraud", "fraud", "payments")  # "fraud" is not under "fraud-"
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED
    # read without group rights / without topic rights
    _, err = ck_group_read(b, "payments-writer", "fraud-x", "payments")
    assert err in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    # the auditor sees no topic at all; a named one is refused
    from confluent_kafka import Consumer
    c = Consumer(ck_conf(b, "auditor", **{"group.id": "x"}))
    assert "payments" not in c.list_topics(timeout=20).topics
    md = c.list_topics("payments", timeout=20)
    assert md.topics["payments"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    c.close()
    # create topic, alter configs, list ACLs: refused with Kafka's codes
    a = ck_admin(b, "fraud")
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic("fraud-new", 1, 1)])["fraud-new"].result(30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    res = ConfigResource("TOPIC", "payments", set_config={"retention.ms": "1000"})
    with pytest.raises(KafkaException) as ei:
        a.alter_configs([res])[res].result(30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    res = ConfigResource("BROKER", "1", set_config={"log.retention.ms": "1000"})
    with pytest.raises(KafkaException) as ei:
        a.alter_configs([res])[res].result(30)
    assert ei.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # (listing ACLs: confluent-kafka 1.7 has no ACL API; kafka-python and kafkajs check it)
    # the super user does what it likes
    assert ck_produce(b, "admin", "other") == 0


@pytest.mark.timeout_s(240)
def test_least_privilege_kafka_python_and_kafkajs(acl_broker):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka import errors as E
    from kafka.admin import NewTopic
    b = acl_broker
    setup_scenario(b)
    p = KafkaProducer(**kp_kw(b, "payments-writer"))
    p.send("payments", b"kp1", partition=0).get(30)
    with pytest.raises(E.TopicAuthorizationFailedError):
        p.send("other", b"x", partition=0).get(30)
    p.close()
    # fraud: group outside the prefix is refused, fraud-* reads
    c = KafkaConsumer("payments", group_id="analytics", **kp_kw(b, "fraud"),
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    with pytest.raises(E.GroupAuthorizationFailedError):
        for _ in c:
            break
    c.close()
    c = KafkaConsumer("payments", group_id="fraud-kp", **kp_kw(b, "fraud"),
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    vals = []
    for m in c:
        vals.append(m.value)
        break
    c.close()
    assert vals == [b"kp1"]
    adm = KafkaAdminClient(**kp_kw(b, "fraud"))
    with pytest.raises(E.TopicAuthorizationFailedError):
        adm.create_topics([NewTopic("kp-new", 1, 1)])
    with pytest.raises(E.ClusterAuthorizationFailedError):
        adm.describe_acls(all_acls_filter())
    adm.close()
    adm = KafkaAdminClient(**kp_kw(b, "admin"))  # the super user lists them all
    acls, err = adm.describe_acls(all_acls_filter())
    assert err.errno == 0 and len(acls) == 3
    adm.close()
    # kafkajs sees the same refusals
    r = kafkajs(b, "payments-writer", "produce", {"topic": "other", "value": "x"})
    assert not r["ok"] and r.get("type") == "TOPIC_AUTHORIZATION_FAILED", r
    r = kafkajs(b, "payments-writer", "produce", {"topic": "payments", "value": "js"})
    assert r["ok"], r
    r = kafkajs(b, "fraud", "describe", {"resourceType": "ANY", "resourcePatternType": "ANY",
                                         "operation": "ANY", "permissionType": "ANY"})
    assert not r["ok"] and r["type"] == "CLUSTER_AUTHORIZATION_FAILED", r
    r = kafkajs(b, "auditor", "topics", {})
    assert r["ok"] and r["result"] == [], r


# ---- administration and live application ---------------------------------------------------------

@pytest.mark.timeout_s(240)
def test_admin_clients_manage_acls_live(acl_broker):
    from confluent_kafka import Consumer, KafkaError
    from kafka import KafkaAdminClient
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePattern, ResourcePatternFilter,
                             ResourceType)
    b = acl_broker
    setup_scenario(b)
    # The auditor's client is connected before any change and stays connected.
    aud = Consumer(ck_conf(b, "auditor", **{"group.id": "unused"}))

    def auditor_sees():
        return aud.list_topics("payments", timeout=20).topics["payments"].error is None

    assert not auditor_sees()
    # kafka-python creates, describes (filtered) and deletes
    adm = KafkaAdminClient(**kp_kw(b, "admin"))
    acl = ACL(principal="User:auditor", host="*", operation=ACLOperation.DESCRIBE,
              permission_type=ACLPermissionType.ALLOW,
              resource_pattern=ResourcePattern(ResourceType.TOPIC, "pay",
                                               ACLResourcePatternType.PREFIXED))
    res = adm.create_acls([acl])
    assert not res["failed"] and len(res["succeeded"]) == 1
    assert auditor_sees()  # the next request of the connected client
    by_principal = ACLFilter(principal="User:auditor", host=None, operation=ACLOperation.ANY,
                             permission_type=ACLPermissionType.ANY,
                             resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                                    ACLResourcePatternType.ANY))
    acls, err = adm.describe_acls(by_principal)
    assert err.errno == 0 and len(acls) == 1 and acls[0].operation == ACLOperation.DESCRIBE
    match = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, "payments",
                                                             ACLResourcePatternType.MATCH))
    acls, _ = adm.describe_acls(match)  # LITERAL payments x2 and PREFIXED pay
    assert sorted(a.principal for a in acls) == ["User:auditor", "User:fraud",
                                                 "User:payments-writer"]
    literal = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                        permission_type=ACLPermissionType.ANY,
                        resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, "payments",
                                                               ACLResourcePatternType.LITERAL))
    acls, _ = adm.describe_acls(literal)
    assert sorted(a.principal for a in acls) == ["User:fraud", "User:payments-writer"]
    out = adm.delete_acls([by_principal])
    assert len(out) == 1 and len(out[0][1]) == 1 and out[0][2].errno == 0
    assert not auditor_sees()
    adm.close()
    # kafkajs creates, describes (filtered) and deletes
    spec = {"resourceType": "TOPIC", "resourceName": "payments", "resourcePatternType": "LITERAL",
            "principal": "User:auditor", "host": "*", "operation": "READ",
            "permissionType": "ALLOW"}
    r = kafkajs(b, "admin", "create", [spec])
    assert r["ok"], r
    assert auditor_sees()  # READ implies DESCRIBE
    r = kafkajs(b, "admin", "describe", {"resourceType": "TOPIC", "resourceName": "payments",
                                         "resourcePatternType": "LITERAL",
                                         "principal": "User:auditor", "operation": "ANY",
                                         "permissionType": "ANY"})
    assert r["ok"] and len(r["result"]) == 1, r
    assert r["result"][0]["acls"] == [{"principal": "User:auditor", "host": "*",
                                       "operation": "READ", "permissionType": "ALLOW"}]
    r = kafkajs(b, "admin", "delete", [{"resourceType": "TOPIC", "resourceName": "payments",
                                        "resourcePatternType": "LITERAL",
                                        "principal": "User:auditor", "operation": "ANY",
                                        "permissionType": "ANY"}])
    assert r["ok"] and r["result"][0]["errorCode"] == 0, r
    assert [a["principal"] for a in r["result"][0]["matchingAcls"]] == ["User:auditor"]
    assert not auditor_sees()
    # invalid filters and bindings answer INVALID_REQUEST
    r = kafkajs(b, "admin", "create", [{**spec, "principal": "auditor"}])
    assert not r["ok"] and r["type"] == "INVALID_REQUEST", r
    aud.close()
    # the ACLs survive a restart (the file is the source of truth)
    b.restart()
    c = Consumer(ck_conf(b, "fraud", **{"group.id": "x"}))
    assert c.list_topics("payments", timeout=20).topics["payments"].error is None
    assert c.list_topics("other", timeout=20).topics["other"].error.code() == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    c.close()


def ck_commit(b, user, group, topic, offset):
    """A simple commit (no group membership); returns the first error code (0 on success)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    c = Consumer(ck_conf(b, user, **{"group.id": group, "enable.auto.commit": False}))
    try:
        res = c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        errs = [p.error.code() for p in res if p.error]
        return errs[0] if errs else 0
    except KafkaException as e:
        return e.args[0].code()
    finally:
        c.close()


def ck_committed(b, group, topic):
    """The offset `group` has committed for partition 0 of `topic`, as the super user sees it."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer(ck_conf(b, "admin", **{"group.id": group}))
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=20)[0].offset
    finally:
        c.close()


@pytest.mark.timeout_s(240)
def test_offset_commit_needs_read_on_group_and_topic(acl_broker):
    """OffsetCommit itself is authorized, not only the JoinGroup before it: a caller that may
    find the group's coordinator (DESCRIBE) but not READ the group, or may READ the group but
    not the topic, commits nothing."""
    from confluent_kafka import OFFSET_INVALID, KafkaError
    b = acl_broker
    setup_scenario(b)
    create_acls(b, binding("GROUP", "audit-", "PREFIXED", "User:fraud", "DESCRIBE", "ALLOW"))
    # allowed: READ on fraud-* and on payments
    assert ck_commit(b, "fraud", "fraud-c", "payments", 5) == 0
    assert ck_committed(b, "fraud-c", "payments") == 5
    # DESCRIBE but no READ on the group
    err = ck_commit(b, "fraud", "audit-x", "payments", 5)
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert ck_committed(b, "audit-x", "payments") == OFFSET_INVALID
    # READ on the group, none on the topic
    assert ck_commit(b, "fraud", "fraud-c", "other", 7) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert ck_committed(b, "fraud-c", "other") == OFFSET_INVALID


@pytest.mark.timeout_s(240)
def test_join_group_needs_read_on_group(acl_broker):
    """JoinGroup itself is authorized: a caller that may find the coordinator (DESCRIBE) but not
    READ the group never becomes a member (the SyncGroup after it being refused too would hide
    a join let through, so the group's membership is checked)."""
    from confluent_kafka import KafkaError
    from kafka import KafkaAdminClient
    b = acl_broker
    setup_scenario(b)
    create_acls(b, binding("GROUP", "audit-", "PREFIXED", "User:fraud", "DESCRIBE", "ALLOW"))
    _, err = ck_group_read(b, "fraud", "audit-y", "payments")
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED
    adm = KafkaAdminClient(**kp_kw(b, "admin"))
    try:
        g = adm.describe_consumer_groups(["audit-y"])[0]
    finally:
        adm.close()
    assert g.members == [] and g.state == "Dead", g


@pytest.mark.timeout_s(240)
def test_deny_wildcard_prefix_host_super(acl_broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic
    b = acl_broker
    a = ck_admin(b, "admin")
    for t in ("ledger", "public", "logs-app", "logs", "metrics"):
        a.create_topics([NewTopic(t, 1, 1)])[t].result(30)
    create_acls(
        b,
        # DENY overrides ALLOW
        binding("TOPIC", "ledger", "LITERAL", "User:fraud", "ALL", "ALLOW"),
        binding("TOPIC", "ledger", "LITERAL", "User:fraud", "WRITE", "DENY"),
        # wildcard principal ALLOW with a specific DENY
        binding("TOPIC", "public", "LITERAL", "User:*", "WRITE", "ALLOW"),
        binding("TOPIC", "public", "LITERAL", "User:mallory", "WRITE", "DENY"),
        # PREFIXED vs LITERAL
        binding("TOPIC", "logs-", "PREFIXED", "User:auditor", "WRITE", "ALLOW"),
        # host restriction: only from an address we are not
        binding("TOPIC", "metrics", "LITERAL", "User:auditor", "WRITE", "ALLOW", host="10.9.9.9"),
        binding("TOPIC", "metrics", "LITERAL", "User:fraud", "WRITE", "ALLOW", host="127.0.0.1"))
    T = KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert ck_produce(b, "fraud", "ledger") == T
    assert ck_produce(b, "auditor", "public") == 0
    assert ck_produce(b, "mallory", "public") == T
    assert ck_produce(b, "auditor", "logs-app") == 0
    assert ck_produce(b, "auditor", "logs") == T
    assert ck_produce(b, "auditor", "metrics") == T
    assert ck_produce(b, "fraud", "metrics") == 0
    # the super user sees every topic; others only what they may describe
    from confluent_kafka import Consumer
    c = Consumer(ck_conf(b, "admin", **{"group.id": "x"}))
    assert {"ledger", "public", "logs-app", "logs", "metrics"} <= set(c.list_topics(timeout=20)
                                                                      .topics)
    c.close()
    c = Consumer(ck_conf(b, "mallory", **{"group.id": "x"}))
    assert set(c.list_topics(timeout=20).topics) == {"public"}  # DENY WRITE keeps DESCRIBE
    c.close()


@pytest.mark.timeout_s(180)
def test_sluice_acl_cli_applies_to_running_broker(acl_broker):
    from confluent_kafka import KafkaError
    b = acl_broker
    setup_scenario(b)
    assert ck_produce(b, "auditor", "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED

    def cli(*args):
        r = subprocess.run([SLUICE_BIN, "acl", *args, "-c", str(b.config_path)],
                           capture_output=True, text=True, env=sanitizer_env(), timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = cli("add", "--allow-principal", "User:auditor", "--operation", "Write", "--topic",
              "payments")
    assert "ALLOW User:auditor from * WRITE on TOPIC LITERAL:payments" in out
    # applied within about a second, without a restart
    wait_until(lambda: ck_produce(b, "auditor", "payments") == 0, 20, "CLI grant applied")
    listing = cli("list", "--topic", "payments")
    assert "principal=User:auditor, host=*, operation=WRITE, permissionType=ALLOW" in listing
    # what the admin API created is in the same file
    assert "principal=User:fraud" in listing
    cli("rm", "--topic", "payments", "--allow-principal", "User:auditor")
    wait_until(lambda: ck_produce(b, "auditor", "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED,
               20, "CLI revoke applied")


def test_no_authorizer_keeps_everything_open(broker):
    """PLAINTEXT without authorizer.class.name: all allowed, ACL APIs say SECURITY_DISABLED."""
    from kafka import KafkaAdminClient
    from kafka import errors as E
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    with pytest.raises(E.SecurityDisabledError):
        adm.describe_acls(all_acls_filter())
    adm.close()
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("open-topic", b"v")
    assert p.flush(30) == 0


@pytest.mark.broker_config({"allow.everyone.if.no.acl.found": "true"})
def test_allow_everyone_if_no_acl_found(acl_broker):
    from confluent_kafka import KafkaError
    b = acl_broker
    setup_scenario(b)
    assert ck_produce(b, "auditor", "unruled") == 0  # no ACL names it: allowed (and created)
    assert ck_produce(b, "auditor", "payments") == KafkaError.TOPIC_AUTHORIZATION_FAILED


# ---- each check on its own: raw requests that no earlier check refuses ---------------------------
# A real client asks FindCoordinator and Metadata first, so a principal without any right is
# refused there and the Fetch, Produce, JoinGroup and OffsetCommit checks are never reached. These
# tests give each principal exactly the rights that get it past every earlier check, so deleting
# the one check under test turns a refusal into a success (and the test red).

JOIN_GROUP, OFFSET_COMMIT = 11, 8
MEMBER_ID_REQUIRED = 79


def raw_conn(b, user):
    """A kproto connection over TLS, logged in with SCRAM-SHA-512 as `user`."""
    import ssl

    import kproto
    from test_sasl import scram_login
    conn = kproto.Conn(b.bootstrap)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(b.ca_pem))
    ctx.check_hostname = False
    conn.sock = ctx.wrap_socket(conn.sock, server_hostname="localhost")
    err, msg, _ = scram_login(conn, user, USERS[user], "SCRAM-SHA-512")
    assert err == 0, f"login as {user}: {err} {msg}"
    return conn


def raw_join(conn, group):
    """JoinGroup (v1-v5) as a new member; returns the error code."""
    import kproto
    v = conn.need(JOIN_GROUP, range(1, 6))
    meta = kproto.Writer().i16(0).array(["payments"], lambda w, t: w.string(t)).i32(-1).bytes()
    w = kproto.Writer().string(group).i32(10000).i32(10000).string("")
    if v >= 5:
        w.string(None)
    w.string("consumer").array([0], lambda ww, _: ww.string("range").i32(len(meta)).raw(meta))
    r = conn.call(JOIN_GROUP, v, w.bytes())
    if v >= 2:
        r.i32()  # throttle
    return r.i16()


def raw_commit(conn, group, topic, offset=1):
    """OffsetCommit (v2-v7) of partition 0 outside any generation; returns its error code."""
    import kproto
    v = conn.need(OFFSET_COMMIT, range(2, 8))
    w = kproto.Writer().string(group).i32(-1).string("")
    if v >= 7:
        w.string(None)
    if v <= 4:
        w.i64(-1)  # retention time

    def part(ww, _):
        ww.i32(0).i64(offset)
        if v >= 6:
            ww.i32(-1)
        ww.string("")
    w.array([0], lambda ww, _: (ww.string(topic), ww.array([0], part)))
    r = conn.call(OFFSET_COMMIT, v, w.bytes())
    if v >= 3:
        r.i32()
    out = {}
    for name, ps in r.array(lambda rr: (rr.string(), rr.array(lambda x: (x.i32(), x.i16())))) or []:
        for idx, err in ps or []:
            out[(name, idx)] = err
    return out[(topic, 0)]


@pytest.mark.timeout_s(180)
def test_fetch_without_topic_read_is_refused(acl_broker):
    """The auditor may READ its group and DESCRIBE payments (so Metadata and ListOffsets pass),
    but not READ payments: its Fetch gets TOPIC_AUTHORIZATION_FAILED and no record, from a raw
    Fetch and from confluent-kafka with assign() (no group involved at all)."""
    import kproto
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    b = acl_broker
    setup_scenario(b)
    create_acls(b,
                binding("TOPIC", "payments", "LITERAL", "User:auditor", "DESCRIBE", "ALLOW"),
                binding("GROUP", "aud-", "PREFIXED", "User:auditor", "READ", "ALLOW"))
    assert ck_produce(b, "payments-writer", "payments", b"secret") == 0
    with raw_conn(b, "fraud") as c:  # the control: READ on payments reads it
        f = kproto.fetch(c, "payments", 0, 0)
        assert f["error"] == kproto.NONE and b"secret" in f["records"], f
    with raw_conn(b, "auditor") as c:
        f = kproto.fetch(c, "payments", 0, 0)
        assert f["error"] == TOPIC_AUTHZ, f"auditor fetched payments: {f}"
        assert f["records"] == b"" and f["high_watermark"] == -1, f
        f = kproto.fetch(c, "other", 0, 0)
        assert f["error"] == TOPIC_AUTHZ and f["records"] == b"", f
    cons = Consumer(ck_conf(b, "auditor", **{"group.id": "aud-1", "enable.auto.commit": False}))
    try:
        cons.assign([TopicPartition("payments", 0, 0)])
        err, got, deadline = None, [], time.monotonic() + 30
        while err is None and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                err = m.error().code()
            else:
                got.append(m.value())
        assert got == [], f"auditor consumed {got}"
        assert err == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    finally:
        cons.close()


@pytest.mark.timeout_s(180)
def test_produce_join_and_commit_checks_each_refuse(acl_broker):
    """Produce without WRITE (but with READ), JoinGroup with group DESCRIBE but no READ,
    OffsetCommit without group READ, and OffsetCommit with group READ but no topic READ: each
    refused by its own check, next to a control the same principal is allowed."""
    from confluent_kafka import KafkaError
    b = acl_broker
    setup_scenario(b)
    create_acls(b,
                binding("GROUP", "aud-", "PREFIXED", "User:auditor", "DESCRIBE", "ALLOW"),
                binding("TOPIC", "payments", "LITERAL", "User:auditor", "DESCRIBE", "ALLOW"))
    import kproto
    batch = kproto.record_batch([(b"k", b"v", [])])
    with raw_conn(b, "payments-writer") as c:
        assert kproto.produce(c, "payments", 0, batch) == (kproto.NONE, 0)
    with raw_conn(b, "fraud") as c:
        # Produce: fraud may READ (so DESCRIBE) payments, not WRITE it.
        err, _ = kproto.produce(c, "payments", 0, batch)
        assert err == TOPIC_AUTHZ, f"fraud produced to payments: {err}"
        # OffsetCommit: fraud-* READ and payments READ commit; "other" has no topic READ.
        assert raw_commit(c, "fraud-c", "payments") == kproto.NONE
        assert raw_commit(c, "fraud-c", "other") == TOPIC_AUTHZ
        assert raw_commit(c, "analytics", "payments") == GROUP_AUTHZ
        # JoinGroup: the control joins (as a new member: MEMBER_ID_REQUIRED from v4, or 0).
        assert raw_join(c, "fraud-j") in (kproto.NONE, MEMBER_ID_REQUIRED)
    with raw_conn(b, "auditor") as c:
        # DESCRIBE on aud-* lets FindCoordinator through; JoinGroup and OffsetCommit need READ.
        assert raw_join(c, "aud-j") == GROUP_AUTHZ
        assert raw_commit(c, "aud-c", "payments") == GROUP_AUTHZ
    # The same JoinGroup refusal through librdkafka, whose FindCoordinator succeeds.
    _, err = ck_group_read(b, "auditor", "aud-k", "payments")
    assert err == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    # Nothing refused was stored: the admin sees only the control's commit.
    from confluent_kafka import Consumer, TopicPartition
    adm = Consumer(ck_conf(b, "admin", **{"group.id": "fraud-c"}))
    try:
        got = adm.committed([TopicPartition("payments", 0), TopicPartition("other", 0)],
                            timeout=20)
        assert [(tp.topic, tp.offset) for tp in got] == [("payments", 1), ("other", -1001)], got
    finally:
        adm.close()
