"""Field-level protection end to end (docs/field-protection.md, issue 13), with real clients over
SASL_SSL (SCRAM-SHA-512) and the StandardAuthorizer.

One broker serves most checks (module scope, `prot`): it starts with an empty policy file, the
field keys are made with `sluice keys create --field`, then the scenario policy is written and
the broker picks it up by itself (reload by the file's change, awaited through `sluice protect
status`'s digest). Grants go through `sluice protect grant`.

  - the seed's scenario: a payments producer (confluent-kafka) writes transactions to
    `payments` and `refunds`; the fraud consumer (kafkajs) sees masked card numbers and
    customer tokens; the analytics consumer (kafka-python) sees customer tokens that join across
    the two topics; the payments service (confluent-kafka, granted reveal) sees every encrypted
    field in clear; a principal with no grant sees the stored ciphertext and tokens; the audit
    trail has the reveals (principal, field, view, count)
  - every codec round-trips; an idempotent producer keeps exactly-once, in-order delivery
    across kill -9 restarts of the broker; a record that is not JSON (or has an object where a
    one-way action applies) is refused with INVALID_RECORD and the producer is told
  - forget --subject (by clear id and by token): that customer's encrypted fields stop
    decrypting for the privileged consumer (it gets the stored ciphertext, the audit trail the
    forget and the failed reveals), other customers' still decrypt, across a restart
  - libsluice through python/sluice_protect.py: library-protected records are revealed by the
    broker, broker-protected records by the library; AES-SIV fields and tokens are
    byte-identical whichever side wrote them; `sluice protect | kcat -P` and `sluice reveal`
  - a bad policy written while running (unknown action, bad path, unknown key) is refused with
    its line named in the log and the audit trail, the old policy stays; a broker started with a
    bad policy fails naming the line

Two more brokers: one that refuses to start on bad policies, and one with encryption at rest
off and a keyless policy (mask, redact), whose segments are grepped: with encryption at rest on
(the scenario broker) nothing under log.dirs is clear text anyway, so only the broker without
it shows that the protect stage itself keeps the clear values off the disk (and a control topic
in the same broker shows that the grep finds clear values when they are there)."""
import collections
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import helpers as h
import kproto as kp
from conftest import REPO, SLUICE_BIN, Broker, finish_broker, sanitizer_env, wait_until
from test_sasl import add_user

NODE_DIR = Path(__file__).resolve().parent / "node"
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
INVALID_RECORD = 87
CLI_TIMEOUT_S = 60

USERS = {"admin": "admin-pw-13", "payments-producer": "producer-pw-13",
         "payments": "payments-pw-13", "fraud": "fraud-pw-13", "analytics": "analytics-pw-13"}
FIELD_KEYS = ("pan", "pii", "cid", "tok", "cust")

# The scenario of COMMON.md (payments, refunds), the same rules for every "tx-" topic (the
# codec, idempotence, forget and library checks use their own topics), and a topic with a
# one-way mask rule (an object there cannot be masked).
SCENARIO_RULES = """\
  subject value.customer_id token-key=cust
  value.card_number encrypt key=pan view-mask=0,4 view-token=tok
  value.ssn encrypt key=pii
  value.name encrypt key=pii alg=siv
  value.customer_id encrypt key=cid alg=siv view-token=cust
  value.email token key=tok
"""
POLICY = ("version 1\n"
          "# the payments service's topics (issue 13's scenario)\n"
          "topic payments\n" + SCENARIO_RULES +
          "topic refunds\n"
          "  subject value.customer_id token-key=cust\n"
          "  value.customer_id encrypt key=cid alg=siv view-token=cust\n"
          "  value.card_number encrypt key=pan view-mask=0,4 view-token=tok\n"
          "topic tx-*\n" + SCENARIO_RULES +
          "topic masked\n"
          "  value.card_number mask keep-last=4\n")
GRANTS = [("User:payments", "payments", "*", "reveal"),
          ("User:payments", "refunds", "*", "reveal"),
          ("User:payments", "tx-*", "*", "reveal"),
          ("User:fraud", "payments", "value.card_number", "mask"),
          ("User:fraud", "payments", "value.customer_id", "token"),
          ("User:analytics", "payments", "value.customer_id", "token"),
          ("User:analytics", "refunds", "value.customer_id", "token")]

CUSTOMERS = {
    "C-1001": ("Alice Example", "123-45-6789", "alice@example.com"),
    "C-1002": ("Bob Example", "234-56-7890", "bob@example.com"),
    "C-1003": ("Carol Example", "345-67-8901", "carol@example.com"),
    "C-1004": ("Dan Example", "456-78-9012", "dan@example.com"),
}
ENCRYPTED = ("card_number", "ssn", "name", "customer_id")

TOKEN_RE = re.compile(r"^tok1\.(?P<key>[A-Za-z0-9_-]{1,64})\.(?P<ver>[1-9][0-9]{0,9})\."
                      r"(?P<mac>[A-Za-z0-9_-]{22})$")
CT_RE = re.compile(r"^sl1\.(?P<alg>[gs])\.(?P<key>[A-Za-z0-9_-]{1,64})\.(?P<ver>[1-9][0-9]{0,9})"
                   r"\.(?P<subj>-|[A-Za-z0-9_-]{22})\.(?P<payload>[A-Za-z0-9_-]+)$")


# ---- values --------------------------------------------------------------------------------------

def txn(i, cust, customers=CUSTOMERS):
    name, ssn, email = customers[cust]
    return {"card_number": f"4111-1111-1111-{1000 + i:04d}", "ssn": ssn, "name": name,
            "amount": round(10.25 + i, 2), "customer_id": cust, "email": email}


def refund(i, cust):
    return {"customer_id": cust, "card_number": f"4111-1111-1111-{1000 + i:04d}",
            "amount": round(1.5 + i, 2)}


def enc(d):
    return json.dumps(d).encode()


def masked(card):
    """view-mask=0,4: every digit but the last four masked, separators kept."""
    return re.sub(r"[0-9A-Za-z]", "*", card[:-4]) + card[-4:]


def ct(s, key=None, alg=None):
    """The parsed ciphertext string s (asserted to be one, of field key `key`, algorithm `alg`)."""
    m = CT_RE.match(s) if isinstance(s, str) else None
    assert m, f"not a ciphertext string: {s!r}"
    if key is not None:
        assert m["key"] == key, f"{s!r}: key {m['key']}, want {key}"
    if alg is not None:
        assert m["alg"] == alg, f"{s!r}: algorithm {m['alg']}, want {alg}"
    return m


def tok(s, key=None):
    m = TOKEN_RE.match(s) if isinstance(s, str) else None
    assert m, f"not a token string: {s!r}"
    if key is not None:
        assert m["key"] == key, f"{s!r}: key {m['key']}, want {key}"
    return m


# ---- the broker ------------------------------------------------------------------------------

class Env:
    """The scenario broker and what the tests need around it."""

    def __init__(self, b, ca_pem, workdir):
        self.b, self.ca_pem, self.dir = b, ca_pem, workdir
        self.policy_path = Path(b.config["sluice.protect.policy.file"])
        self.policy_text = None

    # clients
    def ck_conf(self, user, **extra):
        return {"bootstrap.servers": self.b.bootstrap, "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(self.ca_pem), "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": user, "sasl.password": USERS[user], **extra}

    def kp_kw(self, user):
        return dict(bootstrap_servers=self.b.bootstrap, security_protocol="SASL_SSL",
                    ssl_cafile=str(self.ca_pem), ssl_check_hostname=False,
                    sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                    sasl_plain_password=USERS[user], request_timeout_ms=20000,
                    api_version_auto_timeout_ms=10000)

    def kcat_props(self, user):
        """A kcat/librdkafka properties file for `user` (the password stays off argv)."""
        p = self.dir / f"kcat-{user}.properties"
        p.write_text("".join(f"{k}={v}\n" for k, v in self.ck_conf(user).items()
                             if k != "bootstrap.servers"))
        os.chmod(p, 0o600)
        return p

    # the CLI
    def cli(self, *args, check=0, stdin=None):
        wait_until((self.b.data_dir / "sluice-ctl.sock").is_socket, 15, "the control socket")
        p = subprocess.run([SLUICE_BIN, *args, "-c", str(self.b.config_path)],
                           input=stdin if stdin is not None else "", capture_output=True,
                           text=True, timeout=CLI_TIMEOUT_S, env=sanitizer_env())
        assert "runtime error:" not in p.stderr and "Sanitizer" not in p.stderr, p.stderr
        if check is not None:
            assert p.returncode == check, \
                f"sluice {' '.join(args)}: exit {p.returncode}, want {check}\n" \
                f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
        return p

    def status_text(self):
        p = self.cli("protect", "status", check=None)
        return p.stdout if p.returncode == 0 else ""

    def write_policy(self, text):
        """Writes the policy file the way an editor would (a new file renamed over it), so the
        broker's change check sees a new inode, size and mtime."""
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.policy_path)

    def set_policy(self, text):
        """Writes `text` and waits until the running broker serves it (its digest in status)."""
        self.write_policy(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        wait_until(lambda: digest in self.status_text(), 20,
                   f"the broker to load the policy with digest {digest} "
                   f"(last status: {self.status_text()[-500:]!r})")
        self.policy_text = text

    # data
    def create_topics(self, *names, partitions=2):
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient(self.ck_conf("admin"))
        fs = a.create_topics([NewTopic(n, partitions, 1) for n in names], operation_timeout=10,
                             request_timeout=30)
        for f in fs.values():
            f.result(timeout=60)
        for n in names:
            def ready(n=n):
                t = a.list_topics(n, timeout=10).topics.get(n)
                return t is not None and t.error is None and len(t.partitions) == partitions
            wait_until(ready, 30, f"metadata for {n}")

    def produce(self, user, topic, values, codec="none", partition=None, extra=None,
                timeout=60):
        """Produces `values` (bytes) in order; returns [(error or None, partition, offset)] in
        the same order, from the delivery reports."""
        from confluent_kafka import Producer
        conf = self.ck_conf(user, **{"acks": "all", "compression.type": codec, "linger.ms": 5,
                                     "enable.idempotence": False, "message.timeout.ms": 30000,
                                     "retries": 2})
        conf.update(extra or {})
        p = Producer(conf)
        out = [None] * len(values)

        def cb(i):
            def f(err, msg):
                out[i] = (err, msg.partition(), msg.offset())
            return f
        for i, v in enumerate(values):
            kw = {"value": v, "on_delivery": cb(i)}
            if partition is not None:
                kw["partition"] = partition(i) if callable(partition) else partition
            p.produce(topic, **kw)
            p.poll(0)
        left = p.flush(timeout)
        assert left == 0, f"{left} records of {topic} without a delivery report in {timeout}s"
        return out

    def produce_ok(self, user, topic, values, **kw):
        res = self.produce(user, topic, values, **kw)
        bad = [(i, r[0]) for i, r in enumerate(res) if r[0] is not None]
        assert not bad, f"delivery errors producing to {topic}: {bad[:5]}"
        return res

    def read(self, user, topic, partitions=2, timeout=60):
        """Every record of the topic up to the high watermarks, read with confluent-kafka as
        `user`: {partition: [value bytes in offset order]}."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer(self.ck_conf(user, **{"group.id": f"fp-{user}", "enable.auto.commit": False,
                                           "auto.offset.reset": "error",
                                           "fetch.wait.max.ms": 100}))
        try:
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    for p in range(partitions)}
            c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            got = {p: [] for p in range(partitions)}
            deadline = time.monotonic() + timeout
            while any(len(got[p]) < ends[p] for p in got):
                assert time.monotonic() < deadline, \
                    f"{user} reading {topic}: {[len(v) for v in got.values()]} of {ends}"
                for m in c.consume(num_messages=1000, timeout=0.5):
                    assert m.error() is None, f"{user} reading {topic}: {m.error()}"
                    assert m.offset() == len(got[m.partition()]), f"{topic}: offset gap"
                    got[m.partition()].append(m.value())
            return got
        finally:
            c.close()

    def read_json(self, user, topic, partitions=2, timeout=60):
        got = self.read(user, topic, partitions, timeout)
        return {p: [json.loads(v) for v in vs] for p, vs in got.items()}


def audit_events(b):
    out = []
    for f in sorted((b.data_dir / "audit").glob("sluice-audit-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


PROTECT_OPS = ("reveal", "forget", "grant", "revoke", "policy", "reject")


def walk(x):
    """Every (key, value) pair at any depth of a parsed JSON value."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield k, v
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)


def protect_op(ev):
    """The field-protection operation an audit event records ("reveal", "forget", ...), or
    None: the api operation is "protect:OP" (as key events' are "kms:OP")."""
    op = ((ev.get("api") or {}).get("operation") or "")
    m = re.match(r"^protect:(\w+)$", op)
    assert not m or m[1] in PROTECT_OPS, f"unknown protect operation {op}"
    return m[1] if m else None


def protect_events(b, op):
    return [e for e in audit_events(b) if protect_op(e) == op]


def ev_text(e):
    return json.dumps(e, sort_keys=True)


def ev_num(e, name):
    """unmapped's `name` (count, failed) of a protect event: 0 when absent."""
    v = (e.get("unmapped") or {}).get(name, 0)
    assert isinstance(v, int), e
    return v


def ev_resource(e, rtype):
    """The name of the event's resource of type `rtype` ("topic", "field", "subject"...)."""
    names = [r.get("name") for r in e.get("resources") or [] if r.get("type") == rtype]
    return names[0] if names else None


def reveal_sum(b, principal, topic, field, what="count", view=None):
    """Sum of `what` over the reveal events of `principal` for `field` of `topic`."""
    return sum(ev_num(e, what) for e in protect_events(b, "reveal")
               if ev_principal(e) == principal and ev_resource(e, "topic") == topic and
               ev_resource(e, "field") == field and
               (view is None or (e.get("unmapped") or {}).get("view") == view))


def ev_principal(e):
    """The event's principal ("User:payments": the actor's uid)."""
    u = (e.get("actor") or {}).get("user") or {}
    return u.get("uid") or (f"User:{u['name']}" if u.get("name") else None)


def cli_json(out):
    """The JSON a CLI command printed (the control socket's "json ..." line may come through
    as it is)."""
    i = min([j for j in (out.find("["), out.find("{")) if j >= 0], default=-1)
    assert i >= 0, f"no JSON in {out!r}"
    return json.JSONDecoder().raw_decode(out[i:])[0]


def all_files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())


def files_holding(root, needles):
    needles = [n.encode() if isinstance(n, str) else n for n in needles]
    out = []
    for p in all_files(root):
        data = p.read_bytes()
        hit = [n for n in needles if n in data]
        if hit:
            out.append((str(p), hit[:3]))
    return out


def create_acls(env, *specs):
    """specs: (resource type, name, pattern, principal, operation); ALLOW, any host."""
    from kafka import KafkaAdminClient
    from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePattern, ResourceType)
    acls = [ACL(principal=pr, host="*", operation=getattr(ACLOperation, op),
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(getattr(ResourceType, rt), name,
                                                 getattr(ACLResourcePatternType, pat)))
            for rt, name, pat, pr, op in specs]
    adm = KafkaAdminClient(**env.kp_kw("admin"))
    try:
        res = adm.create_acls(acls)
    finally:
        adm.close()
    assert not res["failed"] and len(res["succeeded"]) == len(acls), res


def start_scenario_broker(workdir, users=USERS, extra=None):
    import tlsutil
    d = workdir / "pki"
    d.mkdir(parents=True, exist_ok=True)
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    policy = workdir / "policy.conf"
    policy.write_text("# field protection: filled in once the field keys exist\n")
    b = Broker(workdir, {"ssl.keystore.location": d / "broker.pem",
                         "authorizer.class.name": STANDARD, "super.users": "User:admin",
                         "auto.create.topics.enable": "false",
                         "sluice.protect.policy.file": policy,
                         "sluice.protect.reload.interval.ms": 200, **(extra or {})})
    b.config["listeners"] = f"SASL_SSL://{b.bootstrap}"
    b.write_config()
    b.data_dir.mkdir(parents=True, exist_ok=True)
    for u, pw in users.items():
        add_user(b, u, pw)
    b.start()
    return Env(b, d / "ca.pem", workdir)


@pytest.fixture(scope="module")
def prot(tmp_path_factory):
    env = start_scenario_broker(tmp_path_factory.mktemp("prot"))
    try:
        # The policy names field keys, and a policy naming a key that does not exist is refused:
        # the keys first, then the policy, which the running broker loads by itself.
        for k in FIELD_KEYS:
            env.cli("keys", "create", "--field", k)
        env.set_policy(POLICY)
        env.create_topics("payments", "refunds")
        create_acls(env,
                    ("TOPIC", "payments", "LITERAL", "User:payments-producer", "WRITE"),
                    ("TOPIC", "refunds", "LITERAL", "User:payments-producer", "WRITE"),
                    ("TOPIC", "tx-", "PREFIXED", "User:payments-producer", "WRITE"),
                    ("TOPIC", "masked", "LITERAL", "User:payments-producer", "WRITE"),
                    ("TOPIC", "payments", "LITERAL", "User:payments", "READ"),
                    ("TOPIC", "refunds", "LITERAL", "User:payments", "READ"),
                    ("TOPIC", "tx-", "PREFIXED", "User:payments", "READ"),
                    ("TOPIC", "payments", "LITERAL", "User:fraud", "READ"),
                    ("TOPIC", "payments", "LITERAL", "User:analytics", "READ"),
                    ("TOPIC", "refunds", "LITERAL", "User:analytics", "READ"),
                    ("GROUP", "fp-", "PREFIXED", "User:payments", "READ"),
                    ("GROUP", "fp-", "PREFIXED", "User:fraud", "READ"),
                    ("GROUP", "fp-", "PREFIXED", "User:analytics", "READ"))
        for pr, topic, field, view in GRANTS:
            env.cli("protect", "grant", "--principal", pr, "--topic", topic, "--field", field,
                    "--view", view)
        yield env
    finally:
        finish_broker(env.b)


@pytest.fixture
def env(prot, request):
    request.node._sluice_broker = prot.b
    if not prot.b.alive():
        pytest.fail(f"the scenario broker is not running (an earlier test left it down)\n"
                    f"{prot.b.log_tail()}")
    yield prot
    if prot.b.alive():
        prot.b.assert_no_sanitizer_report()


# ---- (a) the seed's scenario -----------------------------------------------------------------

def kafkajs_consume(env, user, topic, group, n):
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
    r = subprocess.run(["node", str(NODE_DIR / "protect_kafkajs_consume.mjs"), env.b.bootstrap,
                        str(env.ca_pem), user, topic, group, str(n)], cwd=str(NODE_DIR),
                       env={**os.environ, "SASL_PASSWORD": USERS[user]}, capture_output=True,
                       text=True, timeout=150)
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0 and lines and lines[-1].get("done"), \
        f"kafkajs {user} {topic}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    recs = lines[:-1]
    assert len(recs) == n, f"kafkajs {user} read {len(recs)} of {n}"
    out = collections.defaultdict(list)
    for x in sorted(recs, key=lambda x: (x["partition"], x["offset"])):
        out[x["partition"]].append(json.loads(x["value"]))
    return out


def kp_read_json(env, user, topic, partitions=2, timeout=60):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(**env.kp_kw(user), group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100,
                      consumer_timeout_ms=1000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        got = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(len(got[tp.partition]) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"kafka-python {user} {topic}: timed out"
            for tp, msgs in c.poll(timeout_ms=500, max_records=1000).items():
                for m in msgs:
                    assert m.offset == len(got[tp.partition]), f"{topic}: offset gap"
                    got[tp.partition].append(json.loads(m.value))
        return got
    finally:
        c.close()


def by_amount(parts):
    """{amount: record} across partitions (amounts are unique per produce in these tests)."""
    return {r["amount"]: r for vs in parts.values() for r in vs}


SCENARIO_N = 16
PAY = [txn(i, f"C-100{1 + i % 4}") for i in range(SCENARIO_N)]
REF = [refund(i, f"C-100{1 + (i * 3) % 4}") for i in range(8)]


@pytest.mark.timeout_s(240)
def test_seed_scenario(env):
    env.produce_ok("payments-producer", "payments", [enc(d) for d in PAY],
                   partition=lambda i: i % 2)
    env.produce_ok("payments-producer", "refunds", [enc(d) for d in REF],
                   partition=lambda i: i % 2)
    want_pay, want_ref = by_amount({0: PAY}), by_amount({0: REF})

    # What is stored: what a principal with no grant is served (admin is a super user: every
    # ACL, no grant).
    stored_pay = by_amount(env.read_json("admin", "payments"))
    stored_ref = by_amount(env.read_json("admin", "refunds"))
    assert set(stored_pay) == set(want_pay) and set(stored_ref) == set(want_ref)
    raw = b"".join(v for vs in env.read("admin", "payments").values() for v in vs)
    for d in PAY:
        for f in ("card_number", "ssn", "name", "email"):
            assert d[f].encode() not in raw, f"clear {f} {d[f]!r} stored in payments"
    subjects = {}
    for amount, s in stored_pay.items():
        d = want_pay[amount]
        assert s["amount"] == d["amount"], "an unprotected field changed"
        assert list(s) == list(d), f"member order changed: {list(s)}"
        cn = ct(s["card_number"], "pan", "g")
        ct(s["ssn"], "pii", "g")
        ct(s["name"], "pii", "s")
        ct(s["customer_id"], "cid", "s")
        tok(s["email"], "tok")
        # The subject (the customer) is bound into every encrypted field of the record.
        subj = {ct(s[f])["subj"] for f in ENCRYPTED}
        assert len(subj) == 1 and cn["subj"] != "-", f"subjects {subj} in one record"
        subjects.setdefault(d["customer_id"], set()).update(subj)
    assert all(len(v) == 1 for v in subjects.values()), subjects
    assert len({next(iter(v)) for v in subjects.values()}) == len(CUSTOMERS), \
        "two customers share a subject id"
    # Deterministic where the policy says so: SIV fields and tokens are equal for equal input
    # (same customer: same name, customer id and email), GCM fields are not.
    for cust in CUSTOMERS:
        recs = [s for a, s in stored_pay.items() if want_pay[a]["customer_id"] == cust]
        assert len(recs) >= 2
        for f in ("name", "customer_id", "email"):
            assert len({r[f] for r in recs}) == 1, f"{cust}: {f} differs between records"
        assert len({r["ssn"] for r in recs}) == len(recs), f"{cust}: GCM ssn repeats"
        # The same customer id is the same SIV ciphertext in refunds (same key, same subject).
        refs = [s for a, s in stored_ref.items() if want_ref[a]["customer_id"] == cust]
        assert refs and all(r["customer_id"] == recs[0]["customer_id"] for r in refs), cust
    for a, s in stored_ref.items():
        ct(s["card_number"], "pan", "g")
        assert s["amount"] == want_ref[a]["amount"]

    # The payments service (confluent-kafka, reveal on everything): every encrypted field in
    # clear, byte-equal values; the tokenized email stays a token (one-way).
    seen_pay = by_amount(env.read_json("payments", "payments"))
    for a, d in want_pay.items():
        assert seen_pay[a] == {**d, "email": stored_pay[a]["email"]}, \
            f"payments sees {seen_pay[a]}, want {d}"
    seen_ref = by_amount(env.read_json("payments", "refunds"))
    assert seen_ref == want_ref

    # The fraud team (kafkajs): masked card numbers, customer tokens, nothing else revealed.
    fraud = by_amount(kafkajs_consume(env, "fraud", "payments", "fp-fraud", SCENARIO_N))
    fraud_tok = {}
    for a, d in want_pay.items():
        f, s = fraud[a], stored_pay[a]
        assert f["card_number"] == masked(d["card_number"]), f["card_number"]
        assert f["card_number"].startswith("****-****-****-")
        tok(f["customer_id"], "cust")
        fraud_tok.setdefault(d["customer_id"], set()).add(f["customer_id"])
        assert (f["ssn"], f["name"], f["email"], f["amount"]) == \
            (s["ssn"], s["name"], s["email"], s["amount"]), "fraud sees more than its grants"
    assert all(len(v) == 1 for v in fraud_tok.values()), fraud_tok

    # Analytics (kafka-python): customer tokens that join payments with refunds.
    an_pay = by_amount(kp_read_json(env, "analytics", "payments"))
    an_ref = by_amount(kp_read_json(env, "analytics", "refunds"))
    tokens = collections.defaultdict(set)
    for want, seen, stored in ((want_pay, an_pay, stored_pay), (want_ref, an_ref, stored_ref)):
        assert set(seen) == set(want)
        for a, d in want.items():
            tok(seen[a]["customer_id"], "cust")
            tokens[d["customer_id"]].add(seen[a]["customer_id"])
            assert seen[a]["card_number"] == stored[a]["card_number"], "analytics sees a card"
    assert all(len(v) == 1 for v in tokens.values()), f"a customer has two tokens: {tokens}"
    assert len({next(iter(v)) for v in tokens.values()}) == len(CUSTOMERS), \
        "two customers share a token"
    assert {c: next(iter(v)) for c, v in tokens.items()} == \
        {c: next(iter(v)) for c, v in fraud_tok.items()}, "fraud's and analytics' tokens differ"
    assert not set().union(*tokens.values()) & set(CUSTOMERS), "a token is the clear id"

    # Nothing under log.dirs holds a clear card number or SSN (with encryption at rest on this
    # holds anyway; test_stage_keeps_clear_values_off_disk shows it without it).
    hits = files_holding(env.b.data_dir, [d["card_number"] for d in PAY] +
                         [d["ssn"] for d in PAY])
    assert not hits, f"clear card numbers or SSNs under log.dirs: {hits}"

    # The audit trail: the reveals, by principal, topic, field and view, with counts (never
    # values): each principal read each topic once above.
    def await_sum(principal, topic, field, want, view=None):
        wait_until(lambda: reveal_sum(env.b, principal, topic, field, view=view) >= want, 15,
                   f"reveal events of {principal} for {topic} {field} ({view}) counting {want}")
        got = reveal_sum(env.b, principal, topic, field, view=view)
        assert got == want, f"{principal} {topic} {field}: {got} values counted, want {want}"
    for field in ("value.card_number", "value.ssn", "value.name", "value.customer_id"):
        await_sum("User:payments", "payments", field, SCENARIO_N, "reveal")
    await_sum("User:payments", "refunds", "value.card_number", len(REF), "reveal")
    await_sum("User:payments", "refunds", "value.customer_id", len(REF), "reveal")
    await_sum("User:fraud", "payments", "value.card_number", SCENARIO_N, "mask")
    await_sum("User:fraud", "payments", "value.customer_id", SCENARIO_N, "token")
    await_sum("User:analytics", "payments", "value.customer_id", SCENARIO_N, "token")
    await_sum("User:analytics", "refunds", "value.customer_id", len(REF), "token")
    for principal in ("User:fraud", "User:analytics"):
        for field in ("value.ssn", "value.name"):
            assert reveal_sum(env.b, principal, "payments", field) == 0, \
                f"{principal}: a reveal event for {field}, never shown"
    assert not [e for e in protect_events(env.b, "reveal") if ev_principal(e) == "User:admin"], \
        "reveal events for a principal without grants"
    assert all(ev_num(e, "failed") == 0 for e in protect_events(env.b, "reveal"))
    trail = b"".join(f.read_bytes() for f in (env.b.data_dir / "audit").glob("*.jsonl"))
    for d in PAY[:4]:
        assert d["card_number"].encode() not in trail and d["ssn"].encode() not in trail
    grants = cli_json(env.cli("protect", "list").stdout)
    have = {(g["principal"], g["topic"], g["field"], g["view"]) for g in grants}
    assert set(GRANTS) <= have, f"protect list: {grants}"


# ---- (b) every codec ---------------------------------------------------------------------------

@pytest.mark.timeout_s(180)
def test_every_codec_round_trips(env):
    topics = [f"tx-codec-{c}" for c in h.ALL_CODECS]
    env.create_topics(*topics)
    sent = {}
    for codec, topic in zip(h.ALL_CODECS, topics):
        recs = [txn(i, f"C-100{1 + i % 4}") for i in range(40)]
        env.produce_ok("payments-producer", topic, [enc(d) for d in recs], codec=codec,
                       partition=lambda i: i % 2, extra={"linger.ms": 50})
        sent[topic] = recs
    for codec, topic in zip(h.ALL_CODECS, topics):
        want = by_amount({0: sent[topic]})
        stored = env.read("admin", topic)
        raw = b"".join(v for vs in stored.values() for v in vs)
        assert not any(d["card_number"].encode() in raw or d["ssn"].encode() in raw
                       for d in sent[topic]), f"{codec}: a clear value stored"
        stored_j = by_amount({p: [json.loads(v) for v in vs] for p, vs in stored.items()})
        seen = by_amount(env.read_json("payments", topic))
        assert set(seen) == set(want), f"{codec}: {len(seen)} of {len(want)} records"
        for a, d in want.items():
            ct(stored_j[a]["card_number"], "pan")
            assert seen[a] == {**d, "email": stored_j[a]["email"]}, f"{codec}: {seen[a]}"


# ---- (d) records the policy cannot apply to ----------------------------------------------------

@pytest.mark.timeout_s(120)
def test_unprotectable_records_are_refused(env):
    env.create_topics("masked", partitions=1)
    good = enc(txn(1, "C-1001"))
    cases = [("payments", b"this is not JSON"),
             ("payments", b'{"card_number": "4111-1111-1111-1111", '),  # cut short
             ("payments", enc({**txn(2, "C-1002"), "email": {"user": "x", "host": "y"}})),
             ("masked", enc({"card_number": {"pan": "4111111111111111"}}))]
    before = {t: sum(len(v) for v in env.read("admin", t, 1 if t == "masked" else 2).values())
              for t in ("payments", "masked")}
    for topic, value in cases:
        err = env.produce("payments-producer", topic, [value], partition=0,
                          extra={"retries": 0})[0][0]
        assert err is not None, f"{topic}: {value[:40]!r} was accepted"
        assert err.code() == INVALID_RECORD, f"{topic}: {value[:40]!r}: {err} ({err.code()})"
        assert not err.retriable(), err
        # The partition takes the next good record.
        env.produce_ok("payments-producer", topic, [good], partition=0)
    # kafka-python 2.0 has no name for code 87 (UnknownError) but its send fails; kcat
    # (librdkafka) says it in its words for INVALID_RECORD.
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    p = KafkaProducer(**env.kp_kw("payments-producer"), acks="all", retries=0)
    try:
        with pytest.raises(KafkaError) as ei:
            p.send("payments", value=b"<xml>not json</xml>", partition=0).get(timeout=30)
        assert getattr(ei.value, "errno", None) in (INVALID_RECORD, -1), repr(ei.value)
    finally:
        p.close(timeout=10)
    r = subprocess.run(["kcat", "-P", "-F", str(env.kcat_props("payments-producer")), "-b",
                        env.b.bootstrap, "-t", "payments", "-p", "0", "-X", "acks=all"],
                       input="plain text, not JSON\n", capture_output=True, text=True, timeout=60)
    assert "Broker failed to validate record" in r.stderr, \
        f"kcat: rc {r.returncode}: {r.stderr[-1500:]}"
    after = {t: sum(len(v) for v in env.read("admin", t, 1 if t == "masked" else 2).values())
             for t in ("payments", "masked")}
    # Only the good records were stored.
    assert after["payments"] - before["payments"] == 3 and after["masked"] - before["masked"] == 1
    wait_until(lambda: protect_events(env.b, "reject"), 15, "a reject event in the audit trail")
    rej = protect_events(env.b, "reject")
    assert any("payments" in ev_text(e) for e in rej) and any("masked" in ev_text(e) for e in rej)
    assert "4111111111111111" not in "".join(ev_text(e) for e in rej), "record data in events"


# ---- (f) the library and the shell filters ---------------------------------------------------

def lib_module():
    lib = Path(os.environ.get("SLUICE_LIB", REPO / "build" / "release" / "libsluice.so"))
    if not lib.is_file():
        pytest.fail(f"{lib} missing: build it with `make release`")
    sys.path.insert(0, str(REPO / "python"))
    try:
        import sluice_protect
    finally:
        sys.path.pop(0)
    return sluice_protect


def lib_call(p, what, topic, value):
    """Protector.protect_value / reveal_value: bytes in, bytes out."""
    return getattr(p, f"{what}_value")(topic, value)


LIB_CUSTOMERS = {"L-1": ("Lib One", "111-11-1111", "one@lib.example"),
                 "L-2": ("Lib Two", "222-22-2222", "two@lib.example"),
                 "L-3": ("Lib Three", "333-33-3333", "three@lib.example")}


@pytest.mark.timeout_s(180)
def test_library_and_broker_interoperate(env):
    sp = lib_module()
    env.create_topics("tx-lib", "tx-broker", "tx-pipe")
    p = sp.Protector(str(env.b.config_path), str(env.policy_path))
    try:
        # Broker first for L-1 (the broker makes L-1's subject key), library first for L-2 (the
        # library makes it and the broker must find it in the shared store).
        b1 = [txn(i, "L-1", LIB_CUSTOMERS) for i in range(2)]
        env.produce_ok("payments-producer", "tx-broker", [enc(d) for d in b1], partition=0)
        l2 = [txn(10 + i, "L-2", LIB_CUSTOMERS) for i in range(2)]
        l1 = [txn(20 + i, "L-1", LIB_CUSTOMERS) for i in range(2)]
        lib_vals = [lib_call(p, "protect", "tx-lib", enc(d)) for d in l2 + l1]
        for d, v in zip(l2 + l1, lib_vals):
            s = json.loads(v)
            for f in ("card_number", "ssn", "name", "email"):
                assert d[f].encode() not in v, f"library left {f} in clear"
            ct(s["card_number"], "pan", "g"), ct(s["name"], "pii", "s"), tok(s["email"], "tok")
            assert s["amount"] == d["amount"]
        env.produce_ok("payments-producer", "tx-lib", lib_vals, partition=0)
        b2 = [txn(30 + i, "L-2", LIB_CUSTOMERS) for i in range(2)]
        env.produce_ok("payments-producer", "tx-broker", [enc(d) for d in b2], partition=0)

        # The broker stores library-protected records as they came and reveals them.
        stored_lib = env.read("admin", "tx-lib")[0]
        assert stored_lib == lib_vals, "the broker changed library-protected records"
        seen = env.read_json("payments", "tx-lib")[0]
        for d, s, v in zip(l2 + l1, seen, lib_vals):
            assert s == {**d, "email": json.loads(v)["email"]}, f"broker reveal: {s}"

        # Broker-protected records revealed by the library (a consumer without grants).
        stored_b = env.read("admin", "tx-broker")[0]
        for d, v in zip(b1 + b2, stored_b):
            r = json.loads(lib_call(p, "reveal", "tx-broker", v))
            assert r == {**d, "email": json.loads(v)["email"]}, f"library reveal: {r}"

        # Deterministic across both: SIV fields and tokens of the same input are byte-identical
        # (L-1: broker made the subject key first; L-2: the library did).
        sb = [json.loads(v) for v in stored_b]
        sl = [json.loads(v) for v in lib_vals]
        for cust, b_rec, l_rec in (("L-1", sb[0], sl[2]), ("L-2", sb[2], sl[0])):
            for f in ("name", "customer_id", "email"):
                assert b_rec[f] == l_rec[f], f"{cust}: {f}: broker {b_rec[f]} != lib {l_rec[f]}"
            assert ct(b_rec["card_number"])["subj"] == ct(l_rec["card_number"])["subj"], cust
            assert b_rec["ssn"] != l_rec["ssn"]  # GCM: random nonce
        # The token the broker shows analytics is the library's view too: same HMAC.
        assert tok(sb[0]["email"])["mac"] == tok(sl[2]["email"])["mac"]
    finally:
        p.close()

    # Shell filters: app | sluice protect | kcat -P, then sluice reveal gives the input back.
    l3 = [txn(40 + i, "L-3", LIB_CUSTOMERS) for i in range(3)]
    lines = "".join(json.dumps(d) + "\n" for d in l3)
    props = env.kcat_props("payments-producer")
    cmd = (f"{shlex.quote(SLUICE_BIN)} protect --policy {shlex.quote(str(env.policy_path))} "
           f"--topic tx-pipe -c {shlex.quote(str(env.b.config_path))} | "
           f"kcat -P -F {shlex.quote(str(props))} -b {env.b.bootstrap} -t tx-pipe -p 0 "
           f"-X acks=all")
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], input=lines, capture_output=True,
                       text=True, timeout=90, env=sanitizer_env())
    assert r.returncode == 0, f"protect | kcat: {r.stdout[-1000:]} {r.stderr[-2000:]}"
    stored = env.read("admin", "tx-pipe")[0]
    assert len(stored) == len(l3)
    for d, v in zip(l3, stored):
        assert d["card_number"].encode() not in v and d["ssn"].encode() not in v
        ct(json.loads(v)["ssn"], "pii", "g")
    r = env.cli("reveal", "--policy", str(env.policy_path), "--topic", "tx-pipe",
                stdin="".join(v.decode() + "\n" for v in stored))
    back = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert back == [{**d, "email": json.loads(v)["email"]} for d, v in zip(l3, stored)], back
    seen = env.read_json("payments", "tx-pipe")[0]
    assert seen == back, "the broker's reveal of filter-protected records"


# ---- (e) forget ------------------------------------------------------------------------------

FORGET_CUSTOMERS = {"F-A": ("Forget Me", "900-00-0001", "a@forget.example"),
                    "F-B": ("Keep Me", "900-00-0002", "b@forget.example"),
                    "F-C": ("Forget By Token", "900-00-0003", "c@forget.example")}


@pytest.mark.timeout_s(240)
def test_forget_subject(env):
    env.create_topics("tx-forget")
    recs = [txn(i, ("F-A", "F-B", "F-C")[i % 3], FORGET_CUSTOMERS) for i in range(9)]
    env.produce_ok("payments-producer", "tx-forget", [enc(d) for d in recs],
                   partition=lambda i: i % 2)
    want = by_amount({0: recs})
    stored = by_amount(env.read_json("admin", "tx-forget"))
    seen = by_amount(env.read_json("payments", "tx-forget"))
    for a, d in want.items():
        assert seen[a] == {**d, "email": stored[a]["email"]}, "before forget"
    # F-C is forgotten by its subject token: the token of its id under the subject rule's key,
    # which is what analytics sees of customer_id (view-token=cust) on payments.
    env.produce_ok("payments-producer", "payments",
                   [enc(txn(98, "F-C", FORGET_CUSTOMERS)), enc(txn(99, "C-1001"))], partition=0)
    an = by_amount(kp_read_json(env, "analytics", "payments"))
    c_token = an[round(10.25 + 98, 2)]["customer_id"]
    tok(c_token, "cust")

    env.cli("keys", "forget", "--subject", "F-A")
    env.cli("keys", "forget", "--subject-token", c_token)
    wait_until(lambda: len(protect_events(env.b, "forget")) >= 2, 15, "two forget events")
    fe = protect_events(env.b, "forget")
    assert all(e.get("status_id") == 1 for e in fe[-2:]), fe[-2:]
    # The forgotten subject is named by its token (the subject key's), never by its clear id.
    subj = [ev_resource(e, "subject") for e in fe[-2:]]
    assert all(x and tok(x, "cust") for x in subj), subj
    assert subj[1] == c_token and subj[0] != c_token, subj
    assert "F-A" not in ev_text(fe[-2]) and "F-C" not in ev_text(fe[-1]), \
        "a forget event names the clear subject id"

    def sums():
        return {(f, k): reveal_sum(env.b, "User:payments", "tx-forget", f"value.{f}", k)
                for f in ENCRYPTED for k in ("count", "failed")}

    def check(what):
        before = sums()
        now = by_amount(env.read_json("payments", "tx-forget"))
        for a, d in want.items():
            if d["customer_id"] == "F-B":
                assert now[a] == {**d, "email": stored[a]["email"]}, f"{what}: F-B changed"
            else:
                # Every encrypted field stays as stored: the ciphertext, not an error or a gap.
                for f in ENCRYPTED:
                    assert now[a][f] == stored[a][f], f"{what}: {d['customer_id']} {f} " \
                                                      f"{now[a][f]!r}"
                assert now[a]["amount"] == d["amount"] and now[a]["email"] == stored[a]["email"]
        # The reveal failures are audited: per field, 6 values did not decrypt (F-A's and
        # F-C's) and 3 were shown (F-B's).
        expect = {(f, k): before[(f, k)] + (3 if k == "count" else 6)
                  for f in ENCRYPTED for k in ("count", "failed")}
        wait_until(lambda: sums() == expect, 15,
                   f"{what}: reveal events counting 3 shown, 6 failed per field "
                   f"(have {sums()}, before {before})")
    check("after forget")
    # The other topics keep their other customers (C-1001 on payments still decrypts).
    pay = by_amount(env.read_json("payments", "payments"))
    assert pay[round(10.25 + 99, 2)]["card_number"] == "4111-1111-1111-1099"
    assert CT_RE.match(pay[round(10.25 + 98, 2)]["card_number"]), "F-C's card on payments"
    env.b.stop()
    env.b.start()
    check("after a restart")
    # A subject forgotten cannot come back: new records of F-A get a new key, old ones stay dark.
    env.produce_ok("payments-producer", "tx-forget", [enc(txn(50, "F-A", FORGET_CUSTOMERS))],
                   partition=0)
    now = by_amount(env.read_json("payments", "tx-forget"))
    assert now[round(10.25 + 50, 2)]["card_number"] == "4111-1111-1111-1050"
    for a, d in want.items():
        if d["customer_id"] == "F-A":
            assert now[a]["card_number"] == stored[a]["card_number"], "an old record came back"


# ---- (c) idempotent producer across kill -9 ----------------------------------------------------

class IdemLoad(threading.Thread):
    """An idempotent librdkafka producer sending `total` numbered JSON transactions round-robin
    over two partitions, paced so the broker's kills land while requests are in flight."""

    def __init__(self, env, topic, total):
        super().__init__(daemon=True)
        from confluent_kafka import Producer
        self.p = Producer(env.ck_conf("payments-producer", **{
            "enable.idempotence": True, "acks": "all", "message.timeout.ms": 180000,
            "linger.ms": 5, "batch.num.messages": 50, "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
            "socket.timeout.ms": 5000, "queue.buffering.max.messages": 500,
            "compression.type": "lz4"}))
        self.topic, self.total = topic, total
        self.lock = threading.Lock()
        self.acked, self.errors, self.sent, self.error = 0, [], 0, None

    def on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acked += 1
            else:
                self.errors.append(str(err))

    def acked_count(self):
        with self.lock:
            return self.acked

    def run(self):
        try:
            while self.sent < self.total:
                i = self.sent
                v = {"seq": i, **txn(i, f"C-100{1 + i % 4}")}
                try:
                    self.p.produce(self.topic, value=enc(v), partition=i % 2,
                                   on_delivery=self.on_delivery)
                    self.sent += 1
                except BufferError:
                    self.p.poll(0.02)
                self.p.poll(0.004 if self.sent % 3 == 0 else 0)
            if self.p.flush(150):
                self.error = "records still undelivered"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)


@pytest.mark.timeout_s(360)
def test_idempotent_producer_across_kill9(env):
    env.create_topics("tx-idem")
    load = IdemLoad(env, "tx-idem", 2400)
    load.start()
    for cycle in range(2):
        target = load.acked_count() + 300
        wait_until(lambda: load.acked_count() >= target or load.error, 90,
                   f"cycle {cycle}: {target} records acknowledged")
        assert load.error is None, load.error
        assert load.sent < load.total, "the producer finished before the kills: slow it down"
        env.b.kill9()
        env.b.start()
    load.join(200)
    assert not load.is_alive() and load.error is None, load.error
    assert not load.errors, f"delivery errors: {load.errors[:5]}"
    assert load.acked_count() == load.total
    got = env.read_json("payments", "tx-idem", timeout=120)
    stored = env.read("admin", "tx-idem", 2)
    for p in range(2):
        seqs = [r["seq"] for r in got[p]]
        assert seqs == list(range(p, load.total, 2)), \
            f"partition {p}: {len(seqs)} records, first differences " \
            f"{[(i, s) for i, s in enumerate(seqs) if s != p + 2 * i][:5]}"
        for r in got[p]:
            assert r == {"seq": r["seq"], **{**txn(r["seq"], f"C-100{1 + r['seq'] % 4}"),
                                             "email": r["email"]}}, r
            tok(r["email"], "tok")
        assert all(b"4111-1111-1111-" not in v for v in stored[p]), "a clear card stored"


# ---- (g) policy errors ---------------------------------------------------------------------------

BAD_POLICIES = [
    # (what, the policy text, a word of the wrong line, which the message names too)
    ("unknown action", POLICY.replace("  value.ssn encrypt key=pii\n",
                                      "  value.ssn hash key=pii\n", 1), "hash"),
    ("bad path", POLICY.replace("  value.email token key=tok\n",
                                "  value.email..addr token key=tok\n", 1), "email..addr"),
    ("unknown key", POLICY.replace("topic masked\n",
                                   "topic masked\n  value.ssn encrypt key=nosuchkey\n", 1),
     "nosuchkey"),
]


def line_of(text, needle):
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(needle)


@pytest.mark.timeout_s(180)
def test_bad_policy_while_running_keeps_the_old_one(env):
    good_digest = hashlib.sha256(env.policy_text.encode()).hexdigest()
    env.create_topics("tx-policy", partitions=1)
    n = 0
    for what, text, word in BAD_POLICIES:
        line = line_of(text, word)
        log_before = len(env.b.log_text())
        env.write_policy(text)
        pat = re.compile(re.escape(env.policy_path.name) + r":" + str(line) + r"\b")
        wait_until(lambda: pat.search(env.b.log_text()[log_before:]), 15,
                   f"{what}: the broker log naming {env.policy_path.name}:{line}")
        msg = [ln for ln in env.b.log_text()[log_before:].splitlines() if pat.search(ln)][0]
        assert word in msg, f"{what}: {msg}"
        assert good_digest in env.status_text(), f"{what}: the policy in force changed"
        wait_until(lambda: any(pat.search(ev_text(e)) for e in protect_events(env.b, "policy")),
                   15, f"{what}: a policy event naming the line")
        assert all(e.get("status_id") == 2 for e in protect_events(env.b, "policy")
                   if pat.search(ev_text(e))), f"{what}: the refused policy's event says success"
        # Records are still protected the old way.
        d = txn(200 + n, "C-1003")
        env.produce_ok("payments-producer", "tx-policy", [enc(d)], partition=0)
        n += 1
        s = env.read_json("admin", "tx-policy", 1)[0][-1]
        ct(s["ssn"], "pii", "g"), ct(s["card_number"], "pan", "g"), tok(s["email"], "tok")
        assert env.read_json("payments", "tx-policy", 1)[0][-1]["ssn"] == d["ssn"]
        assert env.b.alive()
    # The good policy back (the same bytes: in force all along).
    env.write_policy(env.policy_text)
    assert good_digest in env.status_text()


@pytest.mark.timeout_s(180)
def test_bad_policy_at_start_fails_naming_the_line(tmp_path, request):
    b = Broker(tmp_path, {"sluice.protect.policy.file": tmp_path / "start-policy.conf"})
    request.node._sluice_broker = b
    pol = tmp_path / "start-policy.conf"
    try:
        cases = [("unknown action", "version 1\ntopic t\n  value.a mask\n  value.b shred\n", 4,
                  "shred"),
                 ("bad path", "version 1\ntopic t\n  value.a[ mask\n", 3, "value.a["),
                 ("unknown key", "version 1\n\ntopic t\n  value.a token key=nope\n", 4, "nope")]
        for what, text, line, word in cases:
            pol.write_text(text)
            log_before = len(b.log_text())
            # The policy is loaded before the listeners open: no port ever accepts.
            rc = b.start_may_fail()
            assert rc is not None, f"{what}: the broker accepted connections with a bad policy"
            assert rc != 0, f"{what}: exit 0 with a bad policy"
            log = b.log_text()[log_before:]
            m = re.search(re.escape(pol.name) + r":" + str(line) + r"\b[^\n]*", log)
            assert m, f"{what}: no message naming {pol.name}:{line}\n{log[-2000:]}"
            assert word in m[0] or word.rstrip("[") in m[0], f"{what}: {m[0]}"
        # A good policy (keyless: no field key exists here) starts.
        pol.write_text("version 1\ntopic t\n  value.a mask keep-last=2\n")
        b.start()
    finally:
        finish_broker(b)


@pytest.mark.timeout_s(120)
def test_keys_before_the_first_policy(tmp_path, request):
    """The documented order on a fresh install: field keys are created on a broker that has no
    policy yet (a policy naming a missing key is refused), then the policy is configured."""
    b = Broker(tmp_path, {})
    request.node._sluice_broker = b
    pol = tmp_path / "first-policy.conf"

    def cli(*args):
        return subprocess.run([SLUICE_BIN, *args, "-c", str(b.config_path)], capture_output=True,
                              text=True, timeout=CLI_TIMEOUT_S, env=sanitizer_env())
    try:
        b.start()
        wait_until((b.data_dir / "sluice-ctl.sock").is_socket, 15, "the control socket")
        p = cli("keys", "create", "--field", "first")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("protect", "grant", "--principal", "User:a", "--topic", "t", "--field", "*")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("protect", "status")
        assert p.returncode == 0 and '"grants":1' in p.stdout, p.stdout + p.stderr
        b.stop()
        pol.write_text("version 1\ntopic t\n  value.a token key=first\n")
        b.config["sluice.protect.policy.file"] = str(pol)
        b.write_config()
        b.start()
        p = cli("protect", "status")
        assert p.returncode == 0 and '"topics":1' in p.stdout, p.stdout + p.stderr
    finally:
        finish_broker(b)


@pytest.mark.timeout_s(120)
def test_sighup_reloads_the_policy(tmp_path, request):
    """With the periodic check off, an edited policy waits for SIGHUP (and then applies)."""
    pol = tmp_path / "hup-policy.conf"
    pol.write_text("version 1\ntopic t\n  value.a mask\n")
    b = Broker(tmp_path, {"sluice.protect.policy.file": pol,
                          "sluice.protect.reload.interval.ms": 0})
    request.node._sluice_broker = b

    def status():
        p = subprocess.run([SLUICE_BIN, "protect", "status", "-c", str(b.config_path)],
                           capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                           env=sanitizer_env())
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])
    try:
        b.start()
        wait_until((b.data_dir / "sluice-ctl.sock").is_socket, 15, "the control socket")
        first = status()
        assert first["topics"] == 1, first
        pol.write_text("version 1\ntopic t\n  value.a mask\ntopic u\n  value.b redact\n")
        # No periodic check: the edit is not picked up by itself (the status answers after the
        # loop ran its timers, so an interval reload would already show here).
        assert status()["digest"] == first["digest"]
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: status()["topics"] == 2, 15, "the policy reloaded on SIGHUP")
        assert status()["digest"] != first["digest"]
    finally:
        finish_broker(b)


# ---- the protect stage keeps clear values off the disk (encryption at rest off) ---------------

OFF_POLICY = """version 1
topic cards
  value.card_number mask keep-last=4
  value.ssn redact
  value.name redact remove
"""
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def raw_batches(bootstrap, topic, partition):
    """[(base offset, attributes, crc ok)] of the stored batches, read with a raw Fetch."""
    out, off = [], 0
    with kp.Conn(bootstrap) as c:
        while True:
            f = kp.fetch(c, topic, partition, off)
            assert f["error"] == kp.NONE, f
            data = f["records"]
            if not data:
                return out
            pos = 0
            while pos + 61 <= len(data):
                base = int.from_bytes(data[pos:pos + 8], "big", signed=True)
                blen = int.from_bytes(data[pos + 8:pos + 12], "big")
                if pos + 12 + blen > len(data):
                    break
                body = data[pos + 12:pos + 12 + blen]
                crc = int.from_bytes(body[5:9], "big")
                attrs = int.from_bytes(body[9:11], "big")
                last_delta = int.from_bytes(body[11:15], "big")
                out.append((base, attrs, crc == kp.crc32c(body[9:])))
                off = base + last_delta + 1
                pos += 12 + blen
            if f["high_watermark"] <= off:
                return out


@pytest.mark.timeout_s(120)
def test_stage_keeps_clear_values_off_disk(tmp_path, request):
    pol = tmp_path / "cards-policy.conf"
    pol.write_text(OFF_POLICY)
    b = Broker(tmp_path, {"sluice.encryption.enable": "false", "sluice.protect.policy.file": pol})
    request.node._sluice_broker = b
    try:
        b.start()
        assert "encryption at rest off" in b.log_text()
        h.ck_create_topic(b.bootstrap, "cards", 1)
        h.ck_create_topic(b.bootstrap, "control", 1)
        recs, n = [], 0
        for codec in h.ALL_CODECS:
            batch = []
            for _ in range(5):
                name = f"Person {n}"
                # (compressible: librdkafka sends a batch that does not shrink uncompressed)
                batch.append({"card_number": f"5500-0000-0000-{2000 + n:04d}",
                              "ssn": f"987-65-{4000 + n:04d}", "name": name, "n": n,
                              "note": "the same words again and again " * 8})
                n += 1
            for topic in ("cards", "control"):
                h.ck_produce(b.bootstrap, topic, [h.Rec(0, None, enc(d)) for d in batch],
                             codec=codec, extra={"linger.ms": 100})
            recs += batch
        got = h.ck_consume(b.bootstrap, "cards", {0: len(recs)})
        for g, d in zip(got, recs):
            v = json.loads(g.value)
            assert v == {"card_number": masked(d["card_number"]), "ssn": None, "n": d["n"],
                         "note": d["note"]}, v
        # Each codec's batch was rebuilt with that codec, CRC right.
        # (a producer may split one codec's records into several batches: runs are compared)
        batches = raw_batches(b.bootstrap, "cards", 0)
        runs = [a & 7 for i, (_, a, _) in enumerate(batches)
                if i == 0 or (a & 7) != (batches[i - 1][1] & 7)]
        assert runs == [CODEC_ID[c] for c in h.ALL_CODECS], batches
        assert all(ok for _, _, ok in batches), f"a batch's CRC is wrong: {batches}"
        b.stop()
        clear = [d["card_number"] for d in recs] + [d["ssn"] for d in recs]
        cards = files_holding(b.data_dir / "cards-0", clear + [f"Person {i}" for i in range(n)])
        assert not cards, f"clear values stored for the protected topic: {cards}"
        # The control: the same bytes on an unprotected topic are found by the same scan
        # (uncompressed batch: the first five records).
        ctl = files_holding(b.data_dir / "control-0", clear[:5])
        assert ctl, "the scan does not find clear values where they are"
        b.start()
    finally:
        finish_broker(b)
