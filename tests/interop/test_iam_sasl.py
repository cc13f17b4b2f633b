"""AWS_MSK_IAM on a SASL_SSL listener, with payloads signed by botocore (SigV4QueryAuth, the
signer the AWS libraries use), not by Sluice: keys come from `sluice iam`, a policy allows
kafka-cluster:Connect. A raw SaslHandshake + SaslAuthenticate authenticates as the user's ARN,
gets MSK's response JSON and a session lifetime bounded by the signature, and a Metadata request
then works; the raw-token flow (SaslHandshake v0) too; a wrong secret is refused with
SASL_AUTHENTICATION_FAILED while the broker keeps serving the others; an MSK OAUTHBEARER token
(as aws-msk-iam-sasl-signer builds it) authenticates beside JWTs; the audit trail records each
login with the mechanism, the ARN and, for failures, the reason."""
import base64
import json
import re
import ssl
import struct
import subprocess
import time
import types
from urllib.parse import parse_qsl, urlsplit

import pytest

import kproto
from conftest import SLUICE_BIN, Broker, finish_broker, sanitizer_env, wait_until

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
SASL_AUTHENTICATION_FAILED = 58
REGION = "us-east-1"
ARN = "arn:aws:iam::000000000000:user/alice"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
POLICY = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow",
                         "Action": ["kafka-cluster:Connect", "kafka-cluster:Describe*"],
                         "Resource": "*"}]}


def iam_cli(b, *args):
    r = subprocess.run([SLUICE_BIN, "iam", *args, "-c", str(b.config_path)], capture_output=True,
                       text=True, env=sanitizer_env(), timeout=60)
    assert r.returncode == 0, f"sluice iam {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


@pytest.fixture
def iam_broker(request, tmp_path):
    """SASL_SSL with AWS_MSK_IAM and OAUTHBEARER (MSK tokens only: no JWT settings); user alice
    with one key and a policy allowing Connect and Describe*."""
    import tlsutil
    d = tmp_path / "pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    marker = request.node.get_closest_marker("broker_config")
    b = Broker(tmp_path, {"ssl.keystore.location": d / "broker.pem",
                          "sasl.enabled.mechanisms": "AWS_MSK_IAM,OAUTHBEARER",
                          "sluice.iam.region": REGION,
                          "connection.failed.authentication.delay.ms": 0,
                          **(dict(marker.args[0]) if marker else {})})
    b.config["listeners"] = f"SASL_SSL://{b.bootstrap}"
    b.write_config()
    b.data_dir.mkdir(parents=True, exist_ok=True)
    request.node._sluice_broker = b
    b.start()
    b.ca_pem = d / "ca.pem"
    # Through the CLI while the broker runs: the next login sees the changes.
    iam_cli(b, "user", "add", "alice")
    out = json.loads(iam_cli(b, "key", "create", "--user", "alice", "--json"))["AccessKey"]
    b.akid, b.secret = out["AccessKeyId"], out["SecretAccessKey"]
    pol = tmp_path / "connect.json"
    pol.write_text(json.dumps(POLICY))
    iam_cli(b, "policy", "put", "connect", str(pol))
    iam_cli(b, "policy", "attach", "connect", "--user", "alice")
    yield b
    finish_broker(b)


class TlsConn(kproto.Conn):
    def __init__(self, bootstrap, ca):
        super().__init__(bootstrap)
        ctx = ssl.create_default_context(cafile=str(ca))
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def closed_by_peer(self, timeout=10.0):
        try:
            return super().closed_by_peer(timeout)
        except ssl.SSLError:  # the peer's close without close_notify
            return True


def presigned(host, akid, secret, token=None, ago=0):
    """botocore's SigV4 presign of MSK's Connect URL, signed `ago` seconds in the past (botocore
    1.29 reads datetime.datetime.utcnow() in botocore.auth: replaced for the call)."""
    import botocore.auth
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="GET", url=f"https://{host}/",
                     params={"Action": "kafka-cluster:Connect"})
    real = botocore.auth.datetime
    at = real.datetime.utcnow() - real.timedelta(seconds=ago)

    class Past(real.datetime):
        @classmethod
        def utcnow(cls):
            return at

    botocore.auth.datetime = types.SimpleNamespace(datetime=Past, timedelta=real.timedelta,
                                                   timezone=real.timezone)
    try:
        SigV4QueryAuth(Credentials(akid, secret, token), "kafka-cluster", REGION,
                       expires=900).add_auth(req)
    finally:
        botocore.auth.datetime = real
    return req


def msk_payload(host, akid, secret, token=None, ago=0):
    """The AWS_MSK_IAM client-first message as aws-msk-iam-auth sends it."""
    q = dict(parse_qsl(urlsplit(presigned(host, akid, secret, token, ago).url).query,
                       keep_blank_values=True))
    p = {"version": "2020_10_22", "host": host, "user-agent": "sluice-tests/botocore"}
    p.update({k.lower(): v for k, v in q.items()})
    return json.dumps(p).encode()


def msk_token(akid, secret):
    """MSK's OAUTHBEARER token as aws-msk-iam-sasl-signer-python builds it."""
    req = presigned(f"kafka.{REGION}.amazonaws.com", akid, secret)
    req.params = {"User-Agent": "aws-msk-iam-sasl-signer-python/1.0.1"}
    return base64.urlsafe_b64encode(req.prepare().url.encode()).decode().rstrip("=")


def handshake(conn, mechanism, version=1):
    r = conn.call(SASL_HANDSHAKE, version, kproto.Writer().string(mechanism).bytes())
    return r.i16(), r.array(lambda rr: rr.string()) or []


def authenticate(conn, token):
    """SaslAuthenticate v1: (error, message, bytes, session lifetime ms)."""
    r = conn.call(SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token)
    err, msg, n = r.i16(), r.string(), r.i32()
    data = r.take(n) if n > 0 else b""
    return err, msg, data, r.i64()


def iam_login(b, secret=None):
    c = TlsConn(b.bootstrap, b.ca_pem)
    err, mechs = handshake(c, "AWS_MSK_IAM")
    assert err == 0 and "AWS_MSK_IAM" in mechs, (err, mechs)
    return c, authenticate(c, msk_payload(b.host, b.akid, secret or b.secret))


def auth_events(b):
    out = []
    for f in sorted((b.data_dir / "audit").glob("sluice-audit-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return [e for e in out if e.get("class_uid") == 3002]


@pytest.mark.timeout_s(180)
def test_iam_botocore_login_metadata_and_wrong_secret(iam_broker):
    b = iam_broker
    good, (err, msg, data, life) = iam_login(b)
    assert err == 0, msg
    answer = json.loads(data)
    assert set(answer) == {"version", "request-id"} and answer["version"] == "2020_10_22"
    assert UUID.match(answer["request-id"]), answer
    assert 0 < life <= 900_000, life  # the session ends with the signature (KIP-368)
    kproto.metadata(good)

    # A wrong secret: SASL_AUTHENTICATION_FAILED, the connection closes; the others go on.
    wrong = ("B" if b.secret[0] == "A" else "A") + b.secret[1:]
    bad, (err, msg, data, _) = iam_login(b, wrong)
    assert err == SASL_AUTHENTICATION_FAILED and "AWS_MSK_IAM" in msg and data == b""
    assert bad.closed_by_peer(10)
    bad.close()
    kproto.metadata(good)
    again, (err, msg, _, _) = iam_login(b)
    assert err == 0, msg
    kproto.metadata(again)
    again.close()

    # The raw-token flow (SaslHandshake v0): the payload and the JSON answer as bare frames.
    raw = TlsConn(b.bootstrap, b.ca_pem)
    assert handshake(raw, "AWS_MSK_IAM", version=0)[0] == 0
    raw.send_raw(kproto.frame(msk_payload(b.host, b.akid, b.secret)))
    reply = raw.recv_frame()
    assert reply and json.loads(reply)["version"] == "2020_10_22"
    kproto.metadata(raw)
    raw.close()
    good.close()

    log = b.log_text()
    assert f"principal=User:{ARN} mechanism=AWS_MSK_IAM" in log
    assert 'reason="signature does not match"' in log
    assert b.secret not in log and wrong not in log
    # The trail: each login with the mechanism and the ARN; the failure with its reason.
    def iam_events():
        evs = [e for e in auth_events(b) if e.get("auth_protocol") == "AWS_MSK_IAM"]
        return evs if len(evs) >= 4 else None
    evs = wait_until(iam_events, 30, "the trail's four AWS_MSK_IAM authentication events")
    ok = [e for e in evs if e["status_id"] == 1]
    failed = [e for e in evs if e["status_id"] != 1]
    assert len(ok) == 3 and all(e["user"]["name"] == ARN for e in ok)
    assert len(failed) == 1 and failed[0]["status_detail"] == "invalid credentials"
    assert b.secret not in json.dumps(evs)


@pytest.mark.timeout_s(120)
def test_iam_msk_oauthbearer_token(iam_broker):
    b = iam_broker
    c = TlsConn(b.bootstrap, b.ca_pem)
    assert handshake(c, "OAUTHBEARER")[0] == 0
    tok = msk_token(b.akid, b.secret)
    err, msg, _, life = authenticate(c, f"n,,\x01auth=Bearer {tok}\x01\x01".encode())
    assert err == 0, msg
    assert 0 < life <= 900_000
    kproto.metadata(c)
    c.close()
    c = TlsConn(b.bootstrap, b.ca_pem)
    assert handshake(c, "OAUTHBEARER")[0] == 0
    tok = msk_token(b.akid, "A" * 40)
    err, _, _, _ = authenticate(c, f"n,,\x01auth=Bearer {tok}\x01\x01".encode())
    assert err == SASL_AUTHENTICATION_FAILED
    c.close()
    assert f"principal=User:{ARN} mechanism=OAUTHBEARER" in b.log_text()


@pytest.mark.timeout_s(120)
def test_iam_session_ends_with_the_signature_unless_reauthenticated(iam_broker):
    """KIP-368: a payload signed 895 s ago leaves a 5 s session; without re-authentication the
    connection is closed when it ends; re-authenticating with a fresh payload extends it."""
    b = iam_broker
    c = TlsConn(b.bootstrap, b.ca_pem)
    assert handshake(c, "AWS_MSK_IAM")[0] == 0
    t0 = time.time()
    err, msg, _, life = authenticate(c, msk_payload(b.host, b.akid, b.secret, ago=895))
    assert err == 0, msg
    assert 0 < life <= 5_000, life
    kproto.metadata(c)

    def refused():
        try:
            kproto.metadata(c)
            return False
        except (kproto.ProtoError, OSError):
            return True
    wait_until(refused, 30, "the expired IAM session to be closed")
    assert time.time() - t0 >= 2.5
    c.close()

    r = TlsConn(b.bootstrap, b.ca_pem)
    assert handshake(r, "AWS_MSK_IAM")[0] == 0
    err, msg, _, life = authenticate(r, msk_payload(b.host, b.akid, b.secret, ago=895))
    assert err == 0 and life <= 5_000, msg
    first_end = time.time() + life / 1000
    assert handshake(r, "AWS_MSK_IAM")[0] == 0  # re-authentication (SaslHandshake v1 again)
    err, msg, _, life = authenticate(r, msk_payload(b.host, b.akid, b.secret))
    assert err == 0 and life > 800_000, (msg, life)
    wait_until(lambda: time.time() > first_end + 1, 30, "the first session's end to pass")
    kproto.metadata(r)
    r.close()
    assert "re-authenticated" in b.log_text()
