"""sluice.kms.provider=aws-kms against kmsd.py, a loopback KMS that checks every request's SigV4
signature with botocore's signer (and STS/IMDS stubs; the provider's operations, error mapping
and credential sources are also driven directly by tests/unit/test_kms_aws.c).

- The verifier itself: requests signed by botocore and by curl --aws-sigv4 (two independent
  signers) pass; the same requests with a byte of the body, a signed header, the date or the
  secret changed fail.
- A broker under aws-kms produces (confluent-kafka), restarts, consumes everything intact; every
  KMS request it made passed the verifier; replaying one of them unchanged passes and with its
  body tampered fails; no record text is in the data directory in clear.
- Outage: the fixture is stopped while the broker runs; the topic whose key is cached keeps
  serving produce and fetch; creating a topic (a new topic key to wrap) fails with
  KAFKA_STORAGE_ERROR and creates nothing; once the fixture is back (same keys, same port) the
  same topic is created and used without restarting the broker.
- `sluice keys` under aws-kms: status shows DescribeKey's answer, rotate and rewrap work, retiring
  a version is refused with the reason (keys are retired in AWS, never deleted by Sluice).
Run with /usr/bin/python3 (python3-botocore)."""
import base64
import json
import subprocess

import pytest

import kmsd
from conftest import Broker, finish_broker, wait_until
from helpers import (by_partition, ck_admin, ck_consume, ck_create_topic, ck_produce, make_records,
                     verify)

MARKER = b"aws-kms-marker-7f3a9c"


@pytest.fixture
def kms(tmp_path):
    k = kmsd.KmsdProcess(tmp_path / "kmsd").start()
    yield k
    k.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Static keys in the environment, and nothing of this machine's ~/.aws."""
    for v in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL_STS",
              "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kmsd.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kmsd.SECRET_KEY)


def aws_broker(tmp_path, kms, extra=None):
    cfg = {"sluice.kms.provider": "aws-kms", "sluice.kms.aws.region": kmsd.REGION,
           "sluice.kms.aws.key.id": "alias/sluice", "sluice.kms.aws.endpoint": kms.endpoint,
           "sluice.kms.aws.ca.file": kms.ca, "sluice.kms.aws.imds.endpoint": "",
           "sluice.kms.timeout.ms": 3000,
           "sluice.kms.keyring.file": str(tmp_path / "keyring")}
    cfg.update(extra or {})
    (tmp_path / "broker").mkdir(exist_ok=True)
    return Broker(tmp_path / "broker", cfg)


def botocore_signed(kms, body, target="TrentService.DescribeKey", secret=kmsd.SECRET_KEY):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    r = AWSRequest(method="POST", url=kms.endpoint, data=body,
                   headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(Credentials(kmsd.ACCESS_KEY, secret), "kms", kmsd.REGION).add_auth(r)
    return [("Host", f"127.0.0.1:{kms.kms_port}")] + list(r.prepare().headers.items())


def replace_header(headers, name, value):
    return [(k, value if k.lower() == name.lower() else v) for k, v in headers]


def test_verifier_accepts_two_signers_and_rejects_tampering(kms):
    body = json.dumps({"KeyId": "alias/sluice"}).encode()
    h = botocore_signed(kms, body)
    status, ans = kms.send_raw("POST", "/", h, body)
    assert status == 200 and ans["KeyMetadata"]["Arn"] == kmsd.KEY_ARN, ans
    # curl is an independent SigV4 implementation: the verifier is not just botocore agreeing
    # with itself
    out = subprocess.run(
        ["curl", "-sS", "--cacert", kms.ca, "--aws-sigv4", f"aws:amz:{kmsd.REGION}:kms",
         "--user", f"{kmsd.ACCESS_KEY}:{kmsd.SECRET_KEY}",
         "-H", "Content-Type: application/x-amz-json-1.1",
         "-H", "X-Amz-Target: TrentService.DescribeKey", "-d", body.decode(), kms.endpoint],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["KeyMetadata"]["KeyState"] == "Enabled", out.stdout

    def refused(headers, b, why):
        st, a = kms.send_raw("POST", "/", headers, b)
        assert st == 400 and "Signature" in a.get("__type", "") + a.get("message", ""), \
            f"{why}: {st} {a}"

    refused(h, body.replace(b"sluice", b"sluicf"), "body changed")
    refused(replace_header(h, "X-Amz-Target", "TrentService.Decrypt"), body, "target changed")
    date = dict(h)["X-Amz-Date"]
    refused(replace_header(h, "X-Amz-Date", date[:-3] + ("00Z" if date[-3:] != "00Z" else "01Z")),
            body, "date changed")
    refused(botocore_signed(kms, body, secret=kmsd.SECRET_KEY + "x"), body, "wrong secret")
    refused(h + [("X-Amz-Extra", "unsigned")], body, "unsigned x-amz header")
    verdicts = [r["verdict"] for r in kms.requests()]
    assert verdicts == ["ok", "ok"] + ["InvalidSignatureException"] * 5, verdicts


def data_files_contain(root, needle):
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle in p.read_bytes():
            hits.append(str(p))
    return hits


@pytest.mark.timeout_s(300)
def test_broker_round_trip_under_aws_kms(tmp_path, kms, aws_env):
    b = aws_broker(tmp_path, kms)
    try:
        b.start()
        topic = "aws-kms-rt"
        ck_create_topic(b.bootstrap, topic, partitions=3)
        recs = make_records("awsrt", 600, partitions=3)
        recs = [r if i % 7 else type(r)(r.partition, r.key, MARKER + (r.value or b""), r.headers,
                                        r.timestamp) for i, r in enumerate(recs)]
        ck_produce(b.bootstrap, topic, recs)
        b.restart()
        got = ck_consume(b.bootstrap, topic, {p: len(v) for p, v in by_partition(recs).items()})
        verify(by_partition(recs), got, "after restart under aws-kms")
        b.stop()
        assert not data_files_contain(b.data_dir, MARKER), "record text in clear on disk"
    finally:
        finish_broker(b)
    reqs = [r for r in kms.requests() if "headers" in r]
    ops = {r["op"] for r in reqs}
    assert {"Encrypt", "Decrypt"} <= ops, f"the broker made no wrap/unwrap calls: {ops}"
    bad = [r for r in reqs if r["verdict"] != "ok"]
    assert not bad, f"requests from the broker failed verification: {[r['verdict'] for r in bad]}"
    # The provider's own request, replayed: unchanged it passes, tampered it fails.
    dec = next(r for r in reqs if r["op"] == "Decrypt")
    body = base64.b64decode(dec["body"])
    st, ans = kms.send_raw("POST", dec["path"], dec["headers"], body)
    assert st == 200 and "Plaintext" in ans, (st, ans)
    q = json.loads(body)
    q["EncryptionContext"] = {k: v[:-1] + ("0" if v[-1] != "0" else "1")
                              for k, v in q["EncryptionContext"].items()}
    st, ans = kms.send_raw("POST", dec["path"], dec["headers"], json.dumps(q).encode())
    assert st == 400 and ans["__type"] == "InvalidSignatureException", (st, ans)


@pytest.mark.timeout_s(300)
def test_kms_outage_cached_keys_serve_and_broker_recovers(tmp_path, kms, aws_env):
    b = aws_broker(tmp_path, kms)
    try:
        b.start()
        ck_create_topic(b.bootstrap, "aws-before", partitions=1)
        first = make_records("awsout1", 100, partitions=1)
        ck_produce(b.bootstrap, "aws-before", first)
        kms.stop()
        # cached topic key: produce and fetch go on without the KMS
        second = make_records("awsout2", 100, partitions=1, seed=2)
        ck_produce(b.bootstrap, "aws-before", second, timeout=60)
        got = ck_consume(b.bootstrap, "aws-before", {0: 200})
        verify({0: first + second}, got, "during the KMS outage")
        assert b.alive(), b.log_tail()
        # a new topic needs a new topic key wrapped by the KMS: refused, nothing created
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic
        adm = ck_admin(b.bootstrap)
        fs = adm.create_topics([NewTopic("aws-during", 1, 1)], operation_timeout=10,
                               request_timeout=15)
        with pytest.raises(KafkaException) as ei:
            fs["aws-during"].result(timeout=30)
        assert ei.value.args[0].code() == 56, ei.value  # KAFKA_STORAGE_ERROR
        assert "key management service unreachable" in str(ei.value), ei.value
        assert "aws-during" not in adm.list_topics(timeout=10).topics
        kms.start()
        # back: the same topic can be created, without restarting the broker
        wait_until(lambda: _try_create(b.bootstrap, "aws-during"), 60,
                   "the new topic once the KMS is back")
        third = make_records("awsout3", 50, partitions=1, seed=3)
        ck_produce(b.bootstrap, "aws-during", third)
        verify({0: third}, ck_consume(b.bootstrap, "aws-during", {0: 50}), "after the outage")
        assert b.starts == 1
    finally:
        finish_broker(b)
    assert all(r["verdict"] == "ok" for r in kms.requests() if "headers" in r)


def _try_create(bootstrap, topic):
    from confluent_kafka import KafkaException
    try:
        ck_create_topic(bootstrap, topic, partitions=1)
        return True
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" in str(e):
            return True
        return False
    except AssertionError:
        return False


@pytest.mark.timeout_s(300)
@pytest.mark.parametrize("source", ["web-identity", "imds"])
def test_broker_credentials_from_sts_and_imds(tmp_path, kms, aws_env, monkeypatch, source):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    extra = {}
    if source == "web-identity":
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", kms.web_identity_token_file())
        monkeypatch.setenv("AWS_ROLE_ARN", kmsd.ROLE_ARN)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", kms.sts_endpoint)
    else:
        extra["sluice.kms.aws.imds.endpoint"] = kms.imds_endpoint
    b = aws_broker(tmp_path, kms, extra)
    try:
        b.start()
        recs = make_records(f"aws-{source}", 60, partitions=1)
        ck_create_topic(b.bootstrap, "aws-creds", partitions=1)
        ck_produce(b.bootstrap, "aws-creds", recs)
        b.restart()
        verify({0: recs}, ck_consume(b.bootstrap, "aws-creds", {0: 60}), source)
    finally:
        finish_broker(b)
    reqs = kms.requests()
    want = "sts:AssumeRoleWithWebIdentity" if source == "web-identity" else "imds:credentials"
    assert any(r["op"] == want and r["verdict"] == "ok" for r in reqs), [r["op"] for r in reqs]
    kms_reqs = [r for r in reqs if "headers" in r]
    assert kms_reqs and all(r["verdict"] == "ok" for r in kms_reqs)
    # temporary credentials: the session token travelled, signed
    assert all(any(k.lower() == "x-amz-security-token" for k, _ in r["headers"])
               for r in kms_reqs)


@pytest.mark.timeout_s(300)
def test_keys_lifecycle_under_aws_kms(tmp_path, kms, aws_env):
    """`sluice keys` with aws-kms: status shows DescribeKey's answer; rotate resolves the same
    KMS key as version 2; rewrap moves every topic key to it; retiring version 1 is refused with
    the explanation (AWS keys are retired in AWS), and everything still reads after a restart."""
    from test_keys_lifecycle import keys, status
    b = aws_broker(tmp_path, kms)
    try:
        b.start()
        ck_create_topic(b.bootstrap, "aws-life", partitions=1)
        recs = make_records("awslife", 80, partitions=1)
        ck_produce(b.bootstrap, "aws-life", recs)
        st = status(b)["keys"]
        v1 = [k for k in st["keks"] if k["version"] == 1][0]
        assert v1["id"] == kmsd.KEY_ARN, v1
        assert "state=Enabled" in v1["describe"] and "manager=CUSTOMER" in v1["describe"], v1
        keys(b, "rotate", check=0)
        st = status(b)["keys"]
        assert st["current_kek_version"] == 2
        assert {k["id"] for k in st["keks"]} == {kmsd.KEY_ARN}, st["keks"]
        keys(b, "rewrap", check=0)
        refused = keys(b, "retire", "--version", "1", check=1)
        assert "never deletes KMS keys" in refused.stderr, refused.stderr
        assert kmsd.KEY_ARN in refused.stderr, refused.stderr
        b.restart()
        verify({0: recs}, ck_consume(b.bootstrap, "aws-life", {0: 80}), "after rotate/rewrap")
    finally:
        finish_broker(b)
    reqs = [r for r in kms.requests() if "headers" in r]
    assert {"DescribeKey", "Encrypt", "Decrypt"} <= {r["op"] for r in reqs}
    assert all(r["verdict"] == "ok" for r in reqs)
    assert not any(r["op"] == "ScheduleKeyDeletion" for r in reqs)
