"""The STS-compatible endpoint (issue 15's "equivalent admin request" for assume-role;
docs/iam.md): botocore's own STS client (python3-botocore, the library under the AWS CLI and
boto3), pointed at Sluice with `endpoint_url` and given Sluice-issued keys, calls AssumeRole and
GetCallerIdentity over HTTPS; the session credentials it gets then work with a real Kafka client
(kafkajs with AWS_MSK_IAM) under the role's policy.

Shown: the caller's own policy decides sts:AssumeRole on the role's ARN (explicit deny wins,
no statement = refused); a missing role is refused exactly like a forbidden one; durations
beyond the role's maximum, session policies and malformed names are refused with STS's error
codes; a wrong secret, an unknown key, a disabled key and an expired session all answer
SignatureDoesNotMatch; role chaining is capped at one hour; every AssumeRole is in the audit
trail with the deciding statement; the endpoint speaks TLS only."""
import json
import socket
import ssl
import time

import pytest

from conftest import free_port, wait_until
from test_iam import (ACCOUNT, ORDERS_APP, REGION, assume, clock_shifted_env, expiration_s,
                      iam_env, ok, refused, values)  # noqa: F401  (iam_env is a fixture)

TOPIC_AUTHORIZATION_FAILED = 29


def role_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def user_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def allow_assume(*roles, deny=()):
    st = [{"Sid": "AssumeEtl", "Effect": "Allow", "Action": "sts:AssumeRole",
           "Resource": [role_arn(r) for r in roles]}]
    if deny:
        st.append({"Sid": "NeverAudit", "Effect": "Deny", "Action": "sts:*",
                   "Resource": [role_arn(r) for r in deny]})
    return {"Version": "2012-10-17", "Statement": st}


def start_with_sts(e):
    port = free_port()
    e.b.config["sluice.iam.sts.listener"] = f"https://127.0.0.1:{port}"
    e.b.write_config()
    e.b.start()
    e.sts_url = f"https://127.0.0.1:{port}"
    e.sts_port = port
    return port


def sts(e, key):
    """botocore's STS client for the endpoint, signing with `key` (id, secret[, token])."""
    import botocore.session
    s = botocore.session.Session()
    s.set_credentials(key["id"], key["secret"], key.get("token"))
    return s.create_client("sts", region_name=REGION, endpoint_url=e.sts_url,
                           verify=str(e.b.ca_pem))


def client_error(fn):
    from botocore.exceptions import ClientError
    try:
        fn()
    except ClientError as x:
        return x.response["Error"]["Code"], x.response["Error"]["Message"], \
            x.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded; an STS error was expected")


def creds(out):
    c = out["Credentials"]
    return {"id": c["AccessKeyId"], "secret": c["SecretAccessKey"], "token": c["SessionToken"],
            "expiration": c["Expiration"]}


def assume_events(e):
    return [r for r in e.audit() if "sts:AssumeRole" in json.dumps(r)]


@pytest.mark.timeout_s(300)
def test_botocore_assume_role_then_kafka_with_the_session(iam_env):
    e = iam_env
    e.iam("role", "add", "orders-etl", "--max-session-duration", "2h")
    e.iam("role", "add", "auditor", "--max-session-duration", "1h")
    e.policy("orders-app", ORDERS_APP, roles=["orders-etl"])
    ops = e.user("ops")
    # Allowed on a role that does not exist too: its refusal must still look like a denial.
    e.policy("ops-assume", allow_assume("orders-etl", "auditor", "no-such-role", deny=["auditor"]),
             users=["ops"])
    start_with_sts(e)
    e.create_topics("orders")

    # Who am I: the signing user's ARN and the account.
    me = sts(e, ops).get_caller_identity()
    assert me["Arn"] == user_arn("ops") and me["Account"] == ACCOUNT, me

    # AssumeRole as the AWS CLI and the SDKs call it.
    out = sts(e, ops).assume_role(RoleArn=role_arn("orders-etl"), RoleSessionName="nightly-load",
                                  DurationSeconds=1800)
    sess = creds(out)
    assert sess["id"].startswith("ASIA") and len(sess["secret"]) == 40, out
    assert out["AssumedRoleUser"]["Arn"] == \
        f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-etl/nightly-load", out
    left = sess["expiration"].timestamp() - time.time()
    assert 1700 < left <= 1800, sess["expiration"]

    # The session signs STS calls too, and is who it says.
    who = sts(e, sess).get_caller_identity()
    assert who["Arn"] == out["AssumedRoleUser"]["Arn"], who

    # The credentials work with a real Kafka client under the role's policy, and only there.
    r = e.run("msk", sess, [{"op": "produce", "topic": "orders", "n": 4, "tag": "sts"},
                            {"op": "consume", "topic": "orders", "group": "orders-app", "n": 4},
                            {"op": "produce", "topic": "other", "n": 1, "tag": "x"}])
    ok(r[0], "session produce")
    assert ok(r[1], "session consume")["values"] == values("sts", 4)
    refused(r[2], TOPIC_AUTHORIZATION_FAILED, "session produce outside the role's policy")

    # Explicit deny beats the allow; the trail names the statement that decided.
    code, msg, status = client_error(lambda: sts(e, ops).assume_role(
        RoleArn=role_arn("auditor"), RoleSessionName="peek"))
    assert (code, status) == ("AccessDenied", 403), (code, msg, status)
    assert f"User: {user_arn('ops')} is not authorized to perform: sts:AssumeRole" in msg, msg

    # A role that does not exist is refused with the same answer (no enumeration).
    code2, msg2, status2 = client_error(lambda: sts(e, ops).assume_role(
        RoleArn=role_arn("no-such-role"), RoleSessionName="peek"))
    assert (code2, status2) == ("AccessDenied", 403), (code2, msg2)
    assert msg2 == msg.replace(role_arn("auditor"), role_arn("no-such-role")), (msg, msg2)

    # Beyond the role's maximum session, a session policy, a bad session name.
    code, msg, status = client_error(lambda: sts(e, ops).assume_role(
        RoleArn=role_arn("orders-etl"), RoleSessionName="long", DurationSeconds=3 * 3600))
    assert (code, status) == ("ValidationError", 400) and "MaxSessionDuration" in msg, msg
    code, msg, status = client_error(lambda: sts(e, ops).assume_role(
        RoleArn=role_arn("orders-etl"), RoleSessionName="narrow",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kafka-cluster:*", "Resource": "*"}]})))
    assert (code, status) == ("InvalidParameterValue", 400) and "Policy" in msg, msg
    code, msg, status = client_error(lambda: sts(e, ops).assume_role(
        RoleArn=role_arn("orders-etl"), RoleSessionName="has space"))
    assert (code, status) == ("ValidationError", 400), (code, msg)

    # Role chaining: the session may assume (its role's policy allows nothing of STS here:
    # refused), and chained sessions are capped at one hour.
    code, _, status = client_error(lambda: sts(e, sess).assume_role(
        RoleArn=role_arn("orders-etl"), RoleSessionName="chained"))
    assert (code, status) == ("AccessDenied", 403), code
    e.policy("etl-chain", allow_assume("orders-etl"), roles=["orders-etl"])

    def chained():
        try:
            return sts(e, sess).assume_role(RoleArn=role_arn("orders-etl"),
                                            RoleSessionName="chained", DurationSeconds=3600)
        except Exception:  # the store is re-read at most once a second
            return None
    assert creds(wait_until(chained, 10, "chained AssumeRole allowed"))["id"].startswith("ASIA")
    code, msg, _ = client_error(lambda: sts(e, sess).assume_role(
        RoleArn=role_arn("orders-etl"), RoleSessionName="chained2", DurationSeconds=5400))
    assert code == "ValidationError" and "role chaining" in msg, msg

    # The trail: every AssumeRole, allowed or refused, with who and why.
    ev = wait_until(lambda: len(assume_events(e)) >= 9 and assume_events(e), 20,
                    "AssumeRole audit events")
    text = json.dumps(ev)
    assert "nightly-load" in text and "NeverAudit" in text and "no such role" in text, text[:3000]
    assert sess["secret"] not in e.b.log_text() and sess["secret"] not in text
    assert sess["token"] not in e.b.log_text() and sess["token"] not in text


@pytest.mark.timeout_s(300)
def test_sts_refusals_look_alike_and_tls_only(iam_env):
    e = iam_env
    e.iam("role", "add", "orders-etl", "--max-session-duration", "1h")
    ops = e.user("ops")
    e.policy("ops-assume", allow_assume("orders-etl"), users=["ops"])
    spare = e.key_create("ops")
    # A session that ended an hour ago (issued by the CLI with the clock two hours back).
    expired = assume(e, "orders-etl", "stale", "1h", env=clock_shifted_env(e.tmp, -7200))
    assert expiration_s(expired["expiration"]) < time.time() - 3000
    port = start_with_sts(e)

    wrong = dict(ops, secret=ops["secret"][:-1] + ("A" if ops["secret"][-1] != "A" else "B"))
    unknown = dict(ops, id="AKIA" + "Z" * 16)
    e.iam("key", "disable", spare["id"])
    answers = {}
    for name, key in [("wrong secret", wrong), ("unknown key", unknown), ("disabled key", spare),
                      ("expired session", expired)]:
        answers[name] = client_error(lambda key=key: sts(e, key).get_caller_identity())
        code, msg, status = answers[name]
        assert (code, status) == ("SignatureDoesNotMatch", 403), (name, answers[name])
    assert len({(c, m, s) for c, m, s in answers.values()}) == 1, answers
    # The good key still works, and the broker keeps serving.
    assert sts(e, ops).get_caller_identity()["Arn"] == user_arn("ops")

    # Refusals are in the trail as failed authentications, naming the key that was presented.
    def refused_logons():
        return [r for r in e.audit() if r.get("class_uid") == 3002
                and "AWS4-HMAC-SHA256" in json.dumps(r) and r.get("status_id") == 2]
    got = wait_until(lambda: len(refused_logons()) >= 4 and refused_logons(), 20,
                     "refused STS logons in the audit trail")
    assert "AKIA" + "Z" * 16 in json.dumps(got), got[:2]

    # Plain HTTP to the endpoint gets no answer (TLS only).
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert not data.startswith(b"HTTP/"), data[:200]
    # The endpoint's certificate is the broker's (the test CA verifies it).
    ctx = ssl.create_default_context(cafile=str(e.b.ca_pem))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 405"), "GET is not STS's form"


def test_sts_listener_must_be_https(tmp_path):
    from conftest import Broker, finish_broker
    b = Broker(tmp_path, {"sluice.iam.sts.listener": f"http://127.0.0.1:{free_port()}"})
    try:
        rc = b.start_may_fail()
        assert rc not in (None, 0), "started with a plain-HTTP STS listener"
        assert "sluice.iam.sts.listener" in b.log_text(), b.log_tail()
    finally:
        finish_broker(b)
