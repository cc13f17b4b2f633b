"""IAM-compatible authentication and policies (issue 15, docs/iam.md) with real clients that no one
here wrote: kafkajs with the npm mechanism `@jm18457/kafkajs-msk-iam-authentication-mechanism`
(AWS_MSK_IAM), kafkajs and confluent-kafka (librdkafka) with OAUTHBEARER tokens from the npm
package `aws-msk-iam-sasl-signer-js`, each given Sluice-issued keys through the standard
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables.

One broker per test: a SASL_SSL listener with AWS_MSK_IAM, OAUTHBEARER (MSK tokens and JWTs) and
SCRAM-SHA-512 at once, the StandardAuthorizer (User:admin, a SCRAM user, is a super user and
keeps Kafka ACLs), and the resource-ARN settings of an MSK cluster (region, account, cluster name
and UUID) so that MSK-style policies apply unchanged. Users, keys, roles and policies are made
with the `sluice iam` CLI against the broker's server.properties.

Shown: produce and consume under an allowing policy, Kafka's authorization errors (29 topic,
30 group, 31 cluster) under one that does not allow; a least-privilege scenario with one policy
document in MSK's style for three users; key rotation under a running producer without losing
or refusing a record; assume-role session credentials that work and that are refused once
expired (issued by the CLI under an LD_PRELOAD clock shift, tests/interop/shim/clock_shift.c);
refusals in the audit trail with the deciding statement; a payload signed for a host name the
broker does not have is refused."""
import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SLUICE_BIN, Broker, finish_broker, sanitizer_env, wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"
SHIM_SRC = Path(__file__).resolve().parent / "shim" / "clock_shift.c"

REGION, ACCOUNT = "eu-west-1", "123456789012"
CLUSTER, CLUSTER_UUID = "MyTestCluster", "abcd1234-0123-abcd-5678-1234abcd-1"
ARN = f"arn:aws:kafka:{REGION}:{ACCOUNT}"
CLUSTER_ARN = f"{ARN}:cluster/{CLUSTER}/{CLUSTER_UUID}"
ADMIN_PW = "adm-Iam-Secret-PW-5521"
CLERK_PW = "clk-Iam-Secret-PW-5522"  # a SCRAM user without ACLs
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED = 29, 30
CLUSTER_AUTHORIZATION_FAILED = 31

# Allows a client everything it needs to produce to and consume `orders` in group `orders-app`
# (MSK's documented shape: Connect on the cluster, data actions on topic ARNs, group actions on
# group ARNs; the cluster UUID as a wildcard, as MSK's examples do).
ORDERS_APP = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow",
         "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
         "Resource": [f"{ARN}:cluster/{CLUSTER}/*"]},
        {"Effect": "Allow",
         "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData",
                    "kafka-cluster:ReadData"],
         "Resource": [f"{ARN}:topic/{CLUSTER}/*/orders"]},
        {"Effect": "Allow",
         "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
         "Resource": [f"{ARN}:group/{CLUSTER}/*/orders-app"]},
    ],
}
# May connect and see the topic, nothing else: produce, fetch and group use are refused.
ORDERS_VIEWER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "kafka-cluster:Connect", "Resource": CLUSTER_ARN},
        {"Effect": "Allow", "Action": "kafka-cluster:DescribeTopic",
         "Resource": f"{ARN}:topic/{CLUSTER}/*/orders"},
    ],
}

# The least-privilege scenario: ONE policy document, attached to all three users, written as MSK's
# documentation writes its examples (literal region, account, cluster name and UUID; actions by
# their kafka-cluster names; topic and group ARNs with wildcards). Which statement applies to whom
# is decided by the principal's tag `app-role` (aws:PrincipalTag), set with `sluice iam user add
# --tag`. Copied here verbatim; the test puts exactly this text.
LEAST_PRIVILEGE_POLICY = """{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ConnectToCluster",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:Connect"
            ],
            "Resource": [
                "arn:aws:kafka:eu-west-1:123456789012:cluster/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1"
            ]
        },
        {
            "Sid": "PaymentsWriter",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:DescribeTopic",
                "kafka-cluster:WriteData"
            ],
            "Resource": [
                "arn:aws:kafka:eu-west-1:123456789012:topic/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1/payments-*"
            ],
            "Condition": {
                "StringEquals": {
                    "aws:PrincipalTag/app-role": "payments-writer"
                }
            }
        },
        {
            "Sid": "FraudReaderTopics",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:DescribeTopic",
                "kafka-cluster:ReadData"
            ],
            "Resource": [
                "arn:aws:kafka:eu-west-1:123456789012:topic/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1/payments-*"
            ],
            "Condition": {
                "StringEquals": {
                    "aws:PrincipalTag/app-role": "fraud-reader"
                }
            }
        },
        {
            "Sid": "FraudReaderGroup",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:AlterGroup",
                "kafka-cluster:DescribeGroup"
            ],
            "Resource": [
                "arn:aws:kafka:eu-west-1:123456789012:group/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1/fraud-detector"
            ],
            "Condition": {
                "StringEquals": {
                    "aws:PrincipalTag/app-role": "fraud-reader"
                }
            }
        },
        {
            "Sid": "AuditorDescribeOnly",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:DescribeCluster",
                "kafka-cluster:DescribeTopic"
            ],
            "Resource": [
                "arn:aws:kafka:eu-west-1:123456789012:cluster/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1",
                "arn:aws:kafka:eu-west-1:123456789012:topic/MyTestCluster/abcd1234-0123-abcd-5678-1234abcd-1/*"
            ],
            "Condition": {
                "StringEquals": {
                    "aws:PrincipalTag/app-role": "auditor"
                }
            }
        }
    ]
}
"""


# ---- the broker ------------------------------------------------------------------------------

def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class IamEnv:
    """A not yet started SASL_SSL broker with IAM, and the tools to use it: `sluice iam`, the
    node clients, and a SCRAM admin (confluent-kafka) for topics and for reading back."""

    def __init__(self, b, tmp_path):
        self.b = b
        self.tmp = tmp_path
        self.policy_dir = tmp_path / "policies"
        self.policy_dir.mkdir()

    # sluice iam ------------------------------------------------------------------------------

    def iam(self, *args, check=True, env=None):
        r = subprocess.run([SLUICE_BIN, "iam", *args, "-c", str(self.b.config_path)],
                           capture_output=True, text=True, env=env or sanitizer_env(), timeout=60,
                           stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, \
                f"sluice iam {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def iam_json(self, *args, env=None):
        r = self.iam(*args, "--json", env=env)
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            raise AssertionError(f"sluice iam {' '.join(args)} --json printed no JSON: "
                                 f"{r.stdout!r} {r.stderr!r}") from e

    def user(self, name, *tags):
        """Adds user `name` (tags "K=V") with one access key; returns {"id", "secret", "user"}."""
        self.iam("user", "add", name, *[a for t in tags for a in ("--tag", t)])
        return self.key_create(name)

    def key_create(self, user, verb=("key", "create")):
        out = self.iam_json(*verb, "--user", user)
        ak = out["AccessKey"]
        assert ak["UserName"] == user and ak["Status"] == "Active", out
        assert ak["AccessKeyId"].startswith("AKIA") and len(ak["AccessKeyId"]) == 20, out
        assert len(ak["SecretAccessKey"]) == 40, out
        return {"id": ak["AccessKeyId"], "secret": ak["SecretAccessKey"], "user": user}

    def policy(self, name, doc, users=(), roles=()):
        f = self.policy_dir / f"{name}.json"
        f.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
        self.iam("policy", "put", name, str(f))
        for u in users:
            self.iam("policy", "attach", name, "--user", u)
        for r in roles:
            self.iam("policy", "attach", name, "--role", r)

    # clients ---------------------------------------------------------------------------------

    def aws_env(self, key, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=key["id"], AWS_SECRET_ACCESS_KEY=key["secret"],
                   AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
                   AWS_CONFIG_FILE=str(self.tmp / "no-aws-config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(self.tmp / "no-aws-credentials"))
        if key.get("token"):
            env["AWS_SESSION_TOKEN"] = key["token"]
        env.update(extra or {})
        return env

    def node_cmd(self, client, steps, bootstrap=None):
        if not (NODE_DIR / "node_modules").is_dir():
            pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
        script = {"msk": "iam_kafkajs_msk.mjs", "oauth": "iam_kafkajs_oauth.mjs"}[client]
        return ["node", str(NODE_DIR / script), bootstrap or self.b.bootstrap, str(self.b.ca_pem),
                json.dumps(steps)]

    def run(self, client, key, steps, timeout=150, bootstrap=None):
        """Runs kafkajs steps (tests/interop/node/iam_steps.mjs) as `key`; returns the results."""
        res = subprocess.run(self.node_cmd(client, steps, bootstrap), cwd=str(NODE_DIR),
                             env=self.aws_env(key), capture_output=True, text=True,
                             timeout=timeout)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"{client}: no result (rc {res.returncode}): {res.stderr[-3000:]}"
        out = json.loads(lines[-1])["steps"]
        assert len(out) == len(steps), out
        return out

    def start_node(self, client, key, steps, log, extra_env=None):
        return subprocess.Popen(self.node_cmd(client, steps), cwd=str(NODE_DIR),
                                env=self.aws_env(key, extra_env), stdout=subprocess.PIPE,
                                stderr=open(log, "w"), text=True)

    def token(self, key):
        """One MSK OAUTHBEARER token from aws-msk-iam-sasl-signer-js: (token, expiry in s)."""
        res = subprocess.run(["node", str(NODE_DIR / "iam_token.mjs"), REGION], cwd=str(NODE_DIR),
                             env=self.aws_env(key), capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"iam_token.mjs: {res.stdout} {res.stderr[-2000:]}"
        d = json.loads(res.stdout.strip().splitlines()[-1])
        return d["token"], d["expiryTime"] / 1000.0

    def ck_conf(self, **extra):
        return {"bootstrap.servers": self.b.bootstrap, "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(self.b.ca_pem), **extra}

    def admin_conf(self, **extra):
        return self.ck_conf(**{"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin",
                               "sasl.password": ADMIN_PW, **extra})

    def create_topics(self, *names, partitions=1):
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient(self.admin_conf())
        for f in a.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            f.result(30)
        for n in names:
            wait_until(lambda n=n: n in a.list_topics(timeout=5).topics, 20, f"topic {n}")

    def admin_read(self, topic, n=None, partition=0, timeout=60):
        """Every record of topic-partition as the SCRAM super user, by offset (no group): values
        in offset order. With `n`, waits until there are at least n."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer(self.admin_conf(**{"group.id": "sluice-admin-unused",
                                        "enable.auto.commit": False}))
        try:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if n is not None:
                assert hi - lo >= n, f"{topic}: {hi - lo} records, want at least {n}"
            c.assign([TopicPartition(topic, partition, lo)])
            got = []
            deadline = time.monotonic() + timeout
            while len(got) < hi - lo:
                assert time.monotonic() < deadline, f"admin read of {topic} timed out at {len(got)}"
                for m in c.consume(num_messages=1000, timeout=0.5):
                    assert m.error() is None, m.error()
                    got.append(m.value().decode())
            return got
        finally:
            c.close()

    def audit(self):
        out = []
        for f in sorted((self.b.data_dir / "audit").glob("sluice-audit-*.jsonl")):
            out += [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
        return out


@pytest.fixture
def iam_env(request, tmp_path):
    """IamEnv of a broker not yet started: the test makes its users and policies with the CLI,
    then env.b.start() (the CLI also works while it runs: see the rotation test)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from gateway import sasl_ssl_setup
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    jf = tmp_path / "jwks.json"
    jf.write_text(json.dumps({"keys": [{
        "kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
        "n": _b64url(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")),
        "e": _b64url(pub.e.to_bytes(3, "big"))}]}))
    b = Broker(tmp_path, {
        "authorizer.class.name": STANDARD, "super.users": "User:admin",
        "auto.create.topics.enable": "false",
        "sasl.enabled.mechanisms": "AWS_MSK_IAM,OAUTHBEARER,SCRAM-SHA-512",
        # JWT OAUTHBEARER stays available beside MSK's tokens (the broker tells them apart).
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{jf}",
        "sasl.oauthbearer.expected.issuer": "https://issuer.test",
        "sasl.oauthbearer.expected.audience": "sluice",
        "sluice.iam.region": REGION, "sluice.iam.account.id": ACCOUNT,
        "sluice.iam.cluster.name": CLUSTER, "sluice.iam.cluster.uuid": CLUSTER_UUID,
        "sluice.audit.data.interval.ms": "0",
        **(dict(request.node.get_closest_marker("broker_config").args[0])
           if request.node.get_closest_marker("broker_config") else {})})
    sasl_ssl_setup(b, tmp_path / "pki", {"admin": ADMIN_PW, "clerk": CLERK_PW})
    request.node._sluice_broker = b
    env = IamEnv(b, tmp_path)
    env.jwt_key = key
    yield env
    finish_broker(b)


def ok(r, what):
    assert r["ok"], f"{what}: {r}"
    return r


def refused(r, code, what):
    assert not r["ok"], f"{what}: allowed, want Kafka error {code}: {r}"
    assert r["code"] == code, f"{what}: refused with {r.get('type')}/{r.get('code')}, want {code}: {r}"


def auth_refused(r, what):
    """A login the broker refused: kafkajs reports a SASL authentication error."""
    assert not r["ok"], f"{what}: logged in, want an authentication failure: {r}"
    assert "SASLAuthentication" in r["name"] or r.get("type") == "SASL_AUTHENTICATION_FAILED", \
        f"{what}: failed, but not as a refused login: {r}"


def values(tag, n):
    return [f"{tag}-{i}" for i in range(n)]


# ---- (a), (b): kafkajs with AWS_MSK_IAM and with the signer's OAUTHBEARER tokens ---------------

@pytest.mark.parametrize("client", ["msk", "oauth"])
@pytest.mark.timeout_s(300)
def test_kafkajs_allowed_and_refused_by_policy(iam_env, client):
    """kafkajs as an app whose policy allows `orders` and its group: produce, consume in the
    group and fetch work; as a viewer whose policy allows only Connect and DescribeTopic: the
    same calls are refused with TOPIC_AUTHORIZATION_FAILED (29) and GROUP_AUTHORIZATION_FAILED
    (30), and a cluster-level call with CLUSTER_AUTHORIZATION_FAILED (31)."""
    e = iam_env
    app, viewer = e.user("orders-app"), e.user("orders-viewer")
    e.policy("orders-app", ORDERS_APP, users=["orders-app"])
    e.policy("orders-viewer", ORDERS_VIEWER, users=["orders-viewer"])
    e.b.start()
    e.create_topics("orders")

    tag = f"{client}-orders"
    r = e.run(client, app, [
        {"op": "produce", "topic": "orders", "n": 12, "tag": tag},
        {"op": "consume", "topic": "orders", "group": "orders-app", "n": 12},
        {"op": "fetch", "topic": "orders", "n": 12},
        {"op": "describeCluster"},
    ])
    ok(r[0], "app produce")
    assert ok(r[1], "app group consume")["values"] == values(tag, 12), r[1]
    assert ok(r[2], "app fetch")["values"] == values(tag, 12), r[2]
    ok(r[3], "app DescribeAcls (DescribeCluster allowed)")
    assert e.admin_read("orders") == values(tag, 12)

    r = e.run(client, viewer, [
        {"op": "describeTopic", "topic": "orders"},
        {"op": "produce", "topic": "orders", "n": 3, "tag": "viewer"},
        {"op": "fetch", "topic": "orders", "n": 1},
        {"op": "consume", "topic": "orders", "group": "orders-app", "n": 1},
        {"op": "describeCluster"},
    ])
    assert ok(r[0], "viewer describe")["partitions"] == 1
    refused(r[1], TOPIC_AUTHORIZATION_FAILED, "viewer produce")
    refused(r[2], TOPIC_AUTHORIZATION_FAILED, "viewer fetch")
    refused(r[3], GROUP_AUTHORIZATION_FAILED, "viewer group consume")
    refused(r[4], CLUSTER_AUTHORIZATION_FAILED, "viewer DescribeAcls")
    # Nothing of the viewer's reached the log.
    assert e.admin_read("orders") == values(tag, 12)


# ---- (c): confluent-kafka (librdkafka) with the signer's tokens through oauth_cb ---------------

def ck_oauth_conf(e, key, **extra):
    calls = []

    def oauth_cb(_cfg):
        tok, exp = e.token(key)
        calls.append(exp)
        return tok, exp
    conf = e.ck_conf(**{"sasl.mechanisms": "OAUTHBEARER", "oauth_cb": oauth_cb, **extra})
    return conf, calls


@pytest.mark.timeout_s(300)
def test_confluent_kafka_oauthbearer_with_signer_tokens(iam_env):
    from confluent_kafka import Consumer, KafkaError, Producer
    e = iam_env
    app, viewer = e.user("orders-app"), e.user("orders-viewer")
    e.policy("orders-app", ORDERS_APP, users=["orders-app"])
    e.policy("orders-viewer", ORDERS_VIEWER, users=["orders-viewer"])
    e.b.start()
    e.create_topics("orders")

    # Allowed: produce 15 records, consume them back in the group orders-app.
    conf, calls = ck_oauth_conf(e, app, **{"acks": "all", "linger.ms": 5})
    p = Producer(conf)
    errors = []
    for v in values("ck", 15):
        p.produce("orders", v.encode(), partition=0,
                  on_delivery=lambda err, m: err and errors.append(err))
    assert p.flush(60) == 0 and not errors, errors
    assert calls and all(exp > time.time() for exp in calls), calls
    # What librdkafka was handed is the signer's token: a base64url presigned URL for the
    # configured region's service host, not a JWT.
    tok, _ = e.token(app)
    url = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)).decode()
    assert url.startswith(f"https://kafka.{REGION}.amazonaws.com/?") and \
        f"X-Amz-Credential={app['id']}%2F" in url and "User-Agent=aws-msk-iam-sasl-signer-js" in url, url
    del p
    conf, _ = ck_oauth_conf(e, app, **{"group.id": "orders-app", "auto.offset.reset": "earliest",
                                       "enable.auto.commit": True})
    c = Consumer(conf)
    got = []
    try:
        c.subscribe(["orders"])
        deadline = time.monotonic() + 60
        while len(got) < 15:
            assert time.monotonic() < deadline, f"confluent-kafka group consume: {got}"
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, f"confluent-kafka consume error: {m.error()}"
            got.append(m.value().decode())
    finally:
        c.close()
    assert got == values("ck", 15)

    # Refused: the viewer's produce fails with TOPIC_AUTHORIZATION_FAILED...
    conf, _ = ck_oauth_conf(e, viewer, **{"acks": "all", "message.timeout.ms": 15000})
    p = Producer(conf)
    errs = []
    p.produce("orders", b"viewer", partition=0, on_delivery=lambda err, m: errs.append(err))
    p.flush(30)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs[0]
    del p
    # ... and its group consumption with GROUP_AUTHORIZATION_FAILED.
    conf, _ = ck_oauth_conf(e, viewer, **{"group.id": "orders-app",
                                          "auto.offset.reset": "earliest"})
    c = Consumer(conf)
    try:
        c.subscribe(["orders"])
        seen = []

        def group_refused():
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, f"the viewer consumed {m.value()!r}"
                seen.append(m.error())
                return m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED
            return False
        wait_until(group_refused, 30, f"GROUP_AUTHORIZATION_FAILED for the viewer (saw {seen})")
    finally:
        c.close()
    assert e.admin_read("orders") == values("ck", 15)


# ---- (d): least privilege with one MSK-style policy document --------------------------------

@pytest.mark.timeout_s(360)
def test_least_privilege_one_policy_three_users(iam_env):
    e = iam_env
    writer = e.user("payments-writer", "app-role=payments-writer")
    reader = e.user("fraud-reader", "app-role=fraud-reader")
    auditor = e.user("auditor", "app-role=auditor")
    e.policy("payments-least-privilege", LEAST_PRIVILEGE_POLICY,
             users=["payments-writer", "fraud-reader", "auditor"])
    # Stored as written: `policy get` gives back the very text.
    assert e.iam("policy", "get", "payments-least-privilege").stdout == LEAST_PRIVILEGE_POLICY
    e.b.start()
    e.create_topics("payments-cards", "payments-refunds", "hr-salaries")

    # The writer: writes payments topics, reads nothing, has no group, no other topic.
    w = e.run("msk", writer, [
        {"op": "produce", "topic": "payments-cards", "n": 8, "tag": "card"},
        {"op": "produce", "topic": "payments-refunds", "n": 3, "tag": "refund"},
        {"op": "describeTopic", "topic": "payments-cards"},
        {"op": "fetch", "topic": "payments-cards", "n": 1},
        {"op": "consume", "topic": "payments-cards", "group": "fraud-detector", "n": 1},
        {"op": "produce", "topic": "hr-salaries", "n": 1, "tag": "w"},
        {"op": "createTopic", "topic": "payments-new"},
        {"op": "describeCluster"},
    ])
    ok(w[0], "writer produce payments-cards")
    ok(w[1], "writer produce payments-refunds")
    ok(w[2], "writer describe payments-cards")
    refused(w[3], TOPIC_AUTHORIZATION_FAILED, "writer fetch")
    refused(w[4], GROUP_AUTHORIZATION_FAILED, "writer group consume")
    refused(w[5], TOPIC_AUTHORIZATION_FAILED, "writer produce hr-salaries")
    refused(w[6], TOPIC_AUTHORIZATION_FAILED, "writer CreateTopics")
    refused(w[7], CLUSTER_AUTHORIZATION_FAILED, "writer DescribeAcls")

    # The fraud reader (OAUTHBEARER with the signer's tokens): reads payments in its group.
    r = e.run("oauth", reader, [
        {"op": "consume", "topic": "payments-cards", "group": "fraud-detector", "n": 8},
        {"op": "fetch", "topic": "payments-refunds", "n": 3},
        {"op": "describeGroup", "group": "fraud-detector"},
        {"op": "produce", "topic": "payments-cards", "n": 1, "tag": "reader"},
        {"op": "consume", "topic": "payments-cards", "group": "other-team", "n": 1},
        {"op": "fetch", "topic": "hr-salaries", "n": 1},
        {"op": "describeCluster"},
    ])
    assert ok(r[0], "reader group consume")["values"] == values("card", 8), r[0]
    assert ok(r[1], "reader fetch refunds")["values"] == values("refund", 3), r[1]
    ok(r[2], "reader describe its group")
    refused(r[3], TOPIC_AUTHORIZATION_FAILED, "reader produce")
    refused(r[4], GROUP_AUTHORIZATION_FAILED, "reader other group")
    refused(r[5], TOPIC_AUTHORIZATION_FAILED, "reader fetch hr-salaries")
    refused(r[6], CLUSTER_AUTHORIZATION_FAILED, "reader DescribeAcls")

    # The auditor: describes the cluster and every topic, reads and writes nothing.
    a = e.run("msk", auditor, [
        {"op": "describeCluster"},
        {"op": "describeTopic", "topic": "hr-salaries"},
        {"op": "offsets", "topic": "payments-cards"},
        {"op": "fetch", "topic": "payments-cards", "n": 1},
        {"op": "consume", "topic": "payments-cards", "group": "fraud-detector", "n": 1},
        {"op": "produce", "topic": "payments-cards", "n": 1, "tag": "auditor"},
        {"op": "describeGroup", "group": "fraud-detector"},
    ])
    ok(a[0], "auditor DescribeAcls")
    assert ok(a[1], "auditor describe hr-salaries")["partitions"] == 1
    assert ok(a[2], "auditor offsets")["high"] == [8], a[2]
    refused(a[3], TOPIC_AUTHORIZATION_FAILED, "auditor fetch")
    refused(a[4], GROUP_AUTHORIZATION_FAILED, "auditor group consume")
    refused(a[5], TOPIC_AUTHORIZATION_FAILED, "auditor produce")
    refused(a[6], GROUP_AUTHORIZATION_FAILED, "auditor describe group")

    # What the log holds is exactly what the writer was allowed to write.
    assert e.admin_read("payments-cards") == values("card", 8)
    assert e.admin_read("payments-refunds") == values("refund", 3)
    assert e.admin_read("hr-salaries") == []

    # `simulate` agrees with what the broker decided, naming the statement.
    topic_arn = f"{ARN}:topic/{CLUSTER}/{CLUSTER_UUID}/payments-cards"
    for user, action, allowed, sid in [
            ("payments-writer", "kafka-cluster:WriteData", True, "PaymentsWriter"),
            ("payments-writer", "kafka-cluster:ReadData", False, None),
            ("fraud-reader", "kafka-cluster:ReadData", True, "FraudReaderTopics"),
            ("auditor", "kafka-cluster:WriteData", False, None)]:
        out = e.iam("policy", "simulate", "--user", user, "--action", action,
                    "--resource", topic_arn, "--json", check=False)
        d = json.loads(out.stdout)
        assert (out.returncode == 0) == allowed, (user, action, out.stdout, out.stderr)
        assert d["Decision"] == ("allowed" if allowed else "implicitDeny"), (user, action, d)
        if sid:
            assert d.get("Sid") == sid, (user, action, d)


# ---- (e): key rotation under a running producer ------------------------------------------------

def read_progress(path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def acked_at_least(path, n):
    def pred():
        p = read_progress(path)
        assert p is None or not p["errors"], f"the running producer saw errors: {p}"
        return p is not None and p["acked"] >= n
    return pred


@pytest.mark.timeout_s(360)
def test_key_rotation_with_running_clients(iam_env):
    """A kafkajs producer (AWS_MSK_IAM, key 1) keeps producing while the second key is created,
    a second producer starts with it, the first producer is stopped (moved) and key 1 disabled:
    the second keeps producing without one error, new logins with key 1 are refused, and every
    acknowledged record of both is in the log, in order, once."""
    e = iam_env
    k1 = e.user("orders-app")
    e.policy("orders-app", ORDERS_APP, users=["orders-app"])
    e.b.start()
    e.create_topics("orders")
    procs = []
    try:
        prog_a, stop_a = e.tmp / "a.progress", e.tmp / "a.stop"
        prog_b, stop_b = e.tmp / "b.progress", e.tmp / "b.stop"
        procs.append(e.start_node("msk", k1, [{"op": "loop", "topic": "orders", "tag": "A",
                                               "progress": str(prog_a), "stop": str(stop_a),
                                               "intervalMs": 20}], e.tmp / "a.log"))
        wait_until(acked_at_least(prog_a, 20), 60, "producer A (key 1) acknowledged 20 records")

        k2 = e.key_create("orders-app", verb=("key", "rotate"))
        assert k2["id"] != k1["id"]
        listed = e.iam_json("key", "list", "--user", "orders-app")["AccessKeyMetadata"]
        assert {k["AccessKeyId"]: k["Status"] for k in listed} == \
            {k1["id"]: "Active", k2["id"]: "Active"}, listed
        # A third key is refused while the user has two.
        assert e.iam("key", "rotate", "--user", "orders-app", check=False).returncode != 0

        # Producer B with key 2, once the broker has reread the store (at most a second).
        wait_until(lambda: e.run("msk", k2, [{"op": "describeTopic", "topic": "orders"}])[0]["ok"],
                   30, "a first login with key 2")
        procs.append(e.start_node("msk", k2, [{"op": "loop", "topic": "orders", "tag": "B",
                                               "progress": str(prog_b), "stop": str(stop_b),
                                               "intervalMs": 20}], e.tmp / "b.log"))
        wait_until(acked_at_least(prog_b, 20), 60, "producer B (key 2) acknowledged 20 records")
        acked_a_before = read_progress(prog_a)["acked"]
        wait_until(acked_at_least(prog_a, acked_a_before + 10), 30, "A still producing")

        # Move: A stops (after its in-flight record), then key 1 is disabled.
        stop_a.touch()
        out_a, _ = procs[0].communicate(timeout=60)
        res_a = json.loads(out_a.strip().splitlines()[-1])["steps"][0]
        assert res_a["ok"] and res_a["stopped"] and not res_a["errors"], res_a
        e.iam("key", "disable", k1["id"])
        listed = e.iam_json("key", "list", "--user", "orders-app")["AccessKeyMetadata"]
        assert {k["AccessKeyId"]: k["Status"] for k in listed} == \
            {k1["id"]: "Inactive", k2["id"]: "Active"}, listed

        # New logins with key 1 are refused (as soon as the broker has reread the store)...
        def k1_refused():
            r = e.run("msk", k1, [{"op": "describeTopic", "topic": "orders"}])[0]
            if r["ok"]:
                return False
            auth_refused(r, "login with disabled key 1")
            return True
        wait_until(k1_refused, 30, "a login with the disabled key 1 refused")
        auth_refused(e.run("oauth", k1, [{"op": "describeTopic", "topic": "orders"}])[0],
                     "OAUTHBEARER login with disabled key 1")
        # ... while B, on key 2, goes on without an error.
        acked_b = read_progress(prog_b)["acked"]
        wait_until(acked_at_least(prog_b, acked_b + 20), 60, "B still producing after disable")
        ok(e.run("oauth", k2, [{"op": "describeTopic", "topic": "orders"}])[0],
           "a new login with key 2")
        stop_b.touch()
        out_b, _ = procs[1].communicate(timeout=60)
        res_b = json.loads(out_b.strip().splitlines()[-1])["steps"][0]
        assert res_b["ok"] and res_b["stopped"] and not res_b["errors"], res_b
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # No record lost or doubled: each producer's acknowledged sequence, in order, exactly once.
    got = e.admin_read("orders")
    assert [v for v in got if v.startswith("A-")] == values("A", res_a["acked"])
    assert [v for v in got if v.startswith("B-")] == values("B", res_b["acked"])
    assert len(got) == res_a["acked"] + res_b["acked"]
    # Key age and last use are recorded.
    listed = {k["AccessKeyId"]: k for k in
              e.iam_json("key", "list", "--user", "orders-app")["AccessKeyMetadata"]}
    assert listed[k1["id"]].get("LastUsedDate") and listed[k2["id"]].get("LastUsedDate"), listed


@pytest.mark.timeout_s(300)
def test_running_client_session_ends_with_its_signature(iam_env):
    """KIP-368 with a real client: kafkajs signs for 20 s (the mechanism's ttl), the broker bounds
    the session by the signature, and kafkajs re-authenticates with a fresh payload while it
    keeps producing without an error. Once its key is disabled, its next re-authentication is
    refused and it produces nothing more: a disabled key ends running sessions within their
    signature's lifetime. Nothing acknowledged is lost."""
    e = iam_env
    k = e.user("orders-app")
    e.policy("orders-app", ORDERS_APP, users=["orders-app"])
    e.b.start()
    e.create_topics("orders")
    arn = f"User:arn:aws:iam::{ACCOUNT}:user/orders-app"
    prog, stop = e.tmp / "r.progress", e.tmp / "r.stop"
    proc = e.start_node("msk", k, [{"op": "loop", "topic": "orders", "tag": "R",
                                    "progress": str(prog), "stop": str(stop), "intervalMs": 50}],
                        e.tmp / "r.log", extra_env={"SLUICE_MSK_TTL": "20"})
    try:
        def logons(activity):
            return [ev for ev in e.audit() if ev["class_uid"] == 3002
                    and ev.get("activity_name") == activity and principal(ev) == arn]
        wait_until(acked_at_least(prog, 5), 60, "the producer's first records")
        first = logons("Logon")
        assert first and all(0 < ev["unmapped"]["session_lifetime_ms"] <= 20_000 for ev in first), \
            first
        # Re-authenticated (successfully) at least once, and still producing without an error.
        wait_until(lambda: [ev for ev in logons("Reauthenticate") if ev.get("status_id") == 1],
                   60, "a successful re-authentication of the running producer")
        n = read_progress(prog)["acked"]
        wait_until(acked_at_least(prog, n + 20), 60, "producing after the re-authentication")

        e.iam("key", "disable", k["id"])
        t_disabled = time.time()

        def stuck():
            p = read_progress(prog)
            return p is not None and p["errors"]
        wait_until(stuck, 60, "the producer refused once its key is disabled")
        assert time.time() - t_disabled < 40, "the session outlived its 20 s signature"
        wait_until(lambda: [ev for ev in logons("Reauthenticate") if ev.get("status_id") == 2]
                   or [ev for ev in e.audit() if ev["class_uid"] == 3002
                       and ev.get("status_id") == 2], 20, "the refused re-authentication")
        acked = read_progress(prog)["acked"]
    finally:
        stop.touch()
        try:
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = e.admin_read("orders")
    # Every acknowledged record once, in order; nothing after the key was refused (a send that
    # failed was retried with the same value, so at most that one value may follow).
    assert got[:acked] == values("R", acked), got[:5]
    assert len(got) <= acked + 1, (len(got), acked)


# ---- (f): assume-role session credentials ------------------------------------------------------

def clock_shifted_env(tmp_path, shift_s):
    shim = tmp_path / "clock_shift.so"
    if not shim.exists():
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(SHIM_SRC), "-ldl"],
                       check=True)
    env = sanitizer_env()
    env["LD_PRELOAD"] = str(shim)
    env["SLUICE_TEST_CLOCK_SHIFT_S"] = str(shift_s)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    return env


def assume(e, role, session, duration="1h", env=None):
    out = e.iam_json("assume-role", role, "--session-name", session, "--duration", duration,
                     env=env)
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and len(c["SecretAccessKey"]) == 40, out
    assert c["SessionToken"], out
    assert out["AssumedRoleUser"]["Arn"] == \
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}", out
    return {"id": c["AccessKeyId"], "secret": c["SecretAccessKey"], "token": c["SessionToken"],
            "expiration": c["Expiration"]}


def expiration_s(iso):
    import datetime
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout_s(300)
def test_assume_role_session_credentials(iam_env):
    e = iam_env
    e.iam("role", "add", "orders-etl", "--max-session-duration", "2h")
    e.policy("orders-app", ORDERS_APP, roles=["orders-etl"])
    sess = assume(e, "orders-etl", "nightly", "1h")
    assert 3500 < expiration_s(sess["expiration"]) - time.time() <= 3600, sess["expiration"]
    # Longer than the role allows: refused by the CLI.
    assert e.iam("assume-role", "orders-etl", "--duration", "3h", check=False).returncode == 1

    # Issued with the clock 2 hours back: a 1-hour session that ended an hour ago.
    expired = assume(e, "orders-etl", "stale", "1h", env=clock_shifted_env(e.tmp, -7200))
    assert expiration_s(expired["expiration"]) < time.time() - 3000, expired["expiration"]
    e.b.start()
    e.create_topics("orders")

    # The live session works with both clients, as the role's policy allows.
    r = e.run("msk", sess, [{"op": "produce", "topic": "orders", "n": 5, "tag": "etl"},
                            {"op": "consume", "topic": "orders", "group": "orders-app", "n": 5}])
    ok(r[0], "session produce")
    assert ok(r[1], "session consume")["values"] == values("etl", 5)
    r = e.run("oauth", sess, [{"op": "fetch", "topic": "orders", "n": 5},
                              {"op": "produce", "topic": "other", "n": 1, "tag": "x"}])
    assert ok(r[0], "session fetch (OAUTHBEARER)")["values"] == values("etl", 5)
    refused(r[1], TOPIC_AUTHORIZATION_FAILED, "session produce outside the policy")
    assert "assumed-role/orders-etl/nightly" in e.b.log_text()

    # The expired session: refused by both mechanisms.
    auth_refused(e.run("msk", expired, [{"op": "describeTopic", "topic": "orders"}])[0],
                 "expired session (AWS_MSK_IAM)")
    auth_refused(e.run("oauth", expired, [{"op": "describeTopic", "topic": "orders"}])[0],
                 "expired session (OAUTHBEARER)")
    # A session token altered by one character does not open.
    t = sess["token"]
    forged = dict(sess, token=t[:10] + ("A" if t[10] != "A" else "B") + t[11:])
    auth_refused(e.run("msk", forged, [{"op": "describeTopic", "topic": "orders"}])[0],
                 "altered session token")

    # Issued with the clock 15 minutes back: a 15-minute session ending ~10 s from now (time
    # for one login that works; the test then waits for its end). It works now, and is refused
    # from its end on.
    short = assume(e, "orders-etl", "short", "15m", env=clock_shifted_env(e.tmp, -(900 - 10)))
    short_end = expiration_s(short["expiration"])
    assert 0 < short_end - time.time() <= 10, short["expiration"]
    ok(e.run("msk", short, [{"op": "describeTopic", "topic": "orders"}])[0],
       "short session before its end")

    def short_refused():
        r = e.run("msk", short, [{"op": "describeTopic", "topic": "orders"}])[0]
        if r["ok"]:
            assert time.time() < short_end + 2, f"logged in after the session's end: {r}"
            return False
        auth_refused(r, "short session after its end")
        assert time.time() >= short_end - 2, f"refused before the session's end: {r}"
        return True
    wait_until(short_refused, 60, "the short session refused after its end")
    assert e.admin_read("orders") == values("etl", 5)


# ---- (g): refusals in the audit trail ----------------------------------------------------------

INTERN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Connect", "Effect": "Allow", "Action": "kafka-cluster:Connect",
         "Resource": CLUSTER_ARN},
        {"Sid": "ReadEverything", "Effect": "Allow",
         "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
         "Resource": f"{ARN}:topic/{CLUSTER}/*/*"},
        {"Sid": "DenyPayroll", "Effect": "Deny", "Action": "kafka-cluster:ReadData",
         "Resource": f"{ARN}:topic/{CLUSTER}/*/payroll"},
    ],
}


def principal(ev):
    return ((ev.get("actor") or {}).get("user") or {}).get("uid")


@pytest.mark.broker_config({
    "sluice.audit.enabled.event.types":
        "authenticate,refusal,management,denial,produce,consume,lifecycle",
    # super.users names the IAM user too: IAM principals are decided by their policies only.
    "super.users": f"User:admin;User:arn:aws:iam::{ACCOUNT}:user/intern"})
@pytest.mark.timeout_s(300)
def test_refusals_are_audited(iam_env):
    """A wrong secret (AWS_MSK_IAM) and an unknown key id (OAUTHBEARER) are failed logons in the
    trail; an explicit Deny names its statement, an implicit deny says so (super.users does not
    apply to an IAM principal); a SCRAM principal on the same broker keeps its ACL decisions;
    the trail verifies."""
    e = iam_env
    intern = e.user("intern")
    e.policy("intern", INTERN_POLICY, users=["intern"])
    e.b.start()
    e.create_topics("payroll", "news")
    arn = f"User:arn:aws:iam::{ACCOUNT}:user/intern"

    wrong = dict(intern, secret=intern["secret"][:-1] + ("A" if intern["secret"][-1] != "A" else "B"))
    r_wrong = e.run("msk", wrong, [{"op": "describeTopic", "topic": "news"}])[0]
    auth_refused(r_wrong, "wrong secret")
    unknown = dict(intern, id="AKIA" + "Q" * 16)
    # To the client an unknown key id looks exactly like a wrong secret (MSK's answer carries a
    # request id, the only part that may differ).
    r_unknown = e.run("msk", unknown, [{"op": "describeTopic", "topic": "news"}])[0]
    auth_refused(r_unknown, "unknown key id")
    same = lambda r: (r["name"], r["type"], re.sub(r"\[[^]]*\]", "[id]", r["error"]))  # noqa: E731
    assert same(r_wrong) == same(r_unknown), (r_wrong, r_unknown)
    auth_refused(e.run("oauth", unknown, [{"op": "describeTopic", "topic": "news"}])[0],
                 "unknown key id")
    r = e.run("msk", intern, [{"op": "describeTopic", "topic": "news"},
                              {"op": "fetch", "topic": "payroll", "n": 1},
                              {"op": "produce", "topic": "news", "n": 1, "tag": "intern"}])
    ok(r[0], "intern describe news")
    refused(r[1], TOPIC_AUTHORIZATION_FAILED, "intern fetch payroll (explicit deny)")
    refused(r[2], TOPIC_AUTHORIZATION_FAILED, "intern produce (implicit deny)")

    def find(what, pred, timeout=20):
        hits = []

        def look():
            hits[:] = [ev for ev in e.audit() if pred(ev)]
            return bool(hits)
        wait_until(look, timeout, f"audit event: {what}")
        return hits

    fails = find("AWS_MSK_IAM logon failures", lambda ev: ev["class_uid"] == 3002
                 and ev.get("status_id") == 2 and ev.get("auth_protocol") == "AWS_MSK_IAM")
    assert len(fails) == 2 and all(ev["src_endpoint"]["ip"] == "127.0.0.1" for ev in fails), fails
    assert fails[0]["status_detail"] == fails[1]["status_detail"], fails
    find("OAUTHBEARER logon failure (unknown key id)", lambda ev: ev["class_uid"] == 3002
         and ev.get("status_id") == 2 and ev.get("auth_protocol") == "OAUTHBEARER")
    # No secret ever reaches the trail.
    blob = json.dumps(e.audit())
    assert intern["secret"] not in blob and wrong["secret"] not in blob

    logon = find("intern logon", lambda ev: ev["class_uid"] == 3002 and ev.get("status_id") == 1
                 and principal(ev) == arn)
    assert logon[0]["auth_protocol"] in ("AWS_MSK_IAM",), logon[0]

    def denial(api, topic):
        return lambda ev: (ev["class_uid"] == 6003 and ev.get("status_id") == 2
                           and principal(ev) == arn and ev["api"]["operation"] == api
                           and any(x.get("name") == topic for x in ev.get("resources") or []))
    den = find("explicit deny of payroll", denial("Fetch", "payroll"))[0]
    res = [x for x in den["resources"] if x["name"] == "payroll"][0]
    assert "DenyPayroll" in res["data"]["decided_by"], den
    assert "kafka-cluster:ReadData" in json.dumps(den), den
    assert den["status_code"] == "TOPIC_AUTHORIZATION_FAILED", den
    den = find("implicit deny of a produce", denial("Produce", "news"))[0]
    res = [x for x in den["resources"] if x["name"] == "news"][0]
    assert "implicit" in res["data"]["decided_by"].lower(), den
    assert "kafka-cluster:WriteData" in json.dumps(den), den

    # The SCRAM user on the same listener: Kafka ACLs (it has none) decide, not policies.
    from confluent_kafka import KafkaError, Producer
    p = Producer(e.ck_conf(**{"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "clerk",
                              "sasl.password": CLERK_PW, "message.timeout.ms": 15000}))
    errs = []
    p.produce("news", b"clerk", partition=0, on_delivery=lambda err, m: errs.append(err))
    p.flush(30)
    assert len(errs) == 1 and errs[0] is not None and \
        errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    den = find("clerk denied by ACLs", lambda ev: ev["class_uid"] == 6003
               and ev.get("status_id") == 2 and principal(ev) == "User:clerk")[0]
    res = [x for x in den["resources"] if x["name"] == "news"][0]
    assert res["data"]["decided_by"] == "no ALLOW binding matches (deny by default)", den

    # Which key a refused login tried is in its event (as a refused SCRAM login names its
    # user): an operator must see which key is being guessed at or still used after rotation.
    assert intern["id"] in json.dumps(fails[0]), \
        f"the AWS_MSK_IAM logon failure does not name the access key id: {fails[0]}"

    e.b.stop()
    r = subprocess.run([SLUICE_BIN, "audit", "verify", str(e.b.data_dir / "audit")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- the signed host ---------------------------------------------------------------------------

@pytest.mark.timeout_s(240)
def test_payload_signed_for_another_host_is_refused(iam_env):
    """The AWS_MSK_IAM mechanism signs the host name the client connected to. Through
    "localhost", a name the broker does not advertise, the login is refused (a signature made
    for another host); through the advertised 127.0.0.1 it works; once sluice.iam.hosts names
    localhost, the same client works through it too. MSK's OAUTHBEARER tokens sign the
    regional service host instead, so they work through any name."""
    e = iam_env
    app = e.user("orders-app")
    e.policy("orders-app", ORDERS_APP, users=["orders-app"])
    e.b.start()
    e.create_topics("orders")
    via_name = f"localhost:{e.b.port}"
    step = [{"op": "describeTopic", "topic": "orders"}]
    auth_refused(e.run("msk", app, step, bootstrap=via_name)[0], "payload signed for localhost")
    ok(e.run("msk", app, step)[0], "payload signed for 127.0.0.1")
    ok(e.run("oauth", app, step, bootstrap=via_name)[0], "MSK token through localhost")
    assert "IAM login refused" in e.b.log_text()

    e.b.stop()
    e.b.config["sluice.iam.hosts"] = "localhost"
    e.b.write_config()
    e.b.start()
    ok(e.run("msk", app, [{"op": "produce", "topic": "orders", "n": 2, "tag": "lh"}],
             bootstrap=via_name)[0], "payload signed for localhost, now a broker name")
    assert e.admin_read("orders") == values("lh", 2)
