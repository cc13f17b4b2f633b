"""A minimal upstream "Kafka broker" that verifies AWS_MSK_IAM logins on its own (issue 14), for
the gateway's AWS_MSK_IAM upstream test: TLS, ApiVersions v0-v3, SaslHandshake v0-v1 (offering
only AWS_MSK_IAM), SaslAuthenticate v0-v1 and Metadata v0-v1 (itself as broker 1, no topics).

The signature check is written here from the SigV4 specification with hashlib/hmac only
(canonical request of the query-string presign of `GET https://<host>/?Action=kafka-cluster:Connect`,
docs: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), independent
of Sluice's C signer, and checked against the published kafkajs-msk-iam vector
(self_check()). Each login is recorded in `logins`: (access key id, host, ok, reason)."""
import calendar
import hashlib
import hmac
import json
import socket
import ssl
import struct
import threading
import time
from urllib.parse import quote

import kproto as kp

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE, METADATA = 18, 17, 36, 3
SUPPORTED = {API_VERSIONS: (0, 3), SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 1),
             METADATA: (0, 1)}
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_VERSION = 58, 35
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
KEYS = {"version", "host", "user-agent", "action", "x-amz-algorithm", "x-amz-credential",
        "x-amz-date", "x-amz-expires", "x-amz-signedheaders", "x-amz-security-token",
        "x-amz-signature"}


def _enc(s):
    return quote(s, safe="-_.~")


def signature(payload, secret):
    """The SigV4 signature an AWS_MSK_IAM payload (dict) must carry under `secret`."""
    akid, day, region, service, term = payload["x-amz-credential"].split("/")
    params = [("Action", payload["action"]), ("X-Amz-Algorithm", payload["x-amz-algorithm"]),
              ("X-Amz-Credential", payload["x-amz-credential"]),
              ("X-Amz-Date", payload["x-amz-date"]), ("X-Amz-Expires", payload["x-amz-expires"]),
              ("X-Amz-SignedHeaders", payload["x-amz-signedheaders"])]
    if "x-amz-security-token" in payload:
        params.append(("X-Amz-Security-Token", payload["x-amz-security-token"]))
    query = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in params))
    creq = "\n".join(["GET", "/", query, f"host:{payload['host']}\n", "host", EMPTY_SHA256])
    scope = f"{day}/{region}/{service}/{term}"
    sts = "\n".join(["AWS4-HMAC-SHA256", payload["x-amz-date"], scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (day, region, service, term):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def verify(payload, secrets, region, now=None):
    """(access key id, None) when `payload` (bytes) is a valid AWS_MSK_IAM login under
    `secrets` {akid: secret} for `region`, else (akid or None, reason)."""
    try:
        p = json.loads(payload)
    except ValueError:
        return None, "not JSON"
    if not isinstance(p, dict) or not all(isinstance(v, str) for v in p.values()):
        return None, "not an object of strings"
    if set(p) - KEYS or (KEYS - {"x-amz-security-token", "user-agent"}) - set(p):
        return None, f"keys {sorted(p)}"
    akid, day, reg, service, term = (p["x-amz-credential"].split("/") + [""] * 5)[:5]
    if (p["version"], p["action"], p["x-amz-algorithm"], p["x-amz-signedheaders"], service,
            term) != ("2020_10_22", "kafka-cluster:Connect", "AWS4-HMAC-SHA256", "host",
                      "kafka-cluster", "aws4_request"):
        return akid, "fixed fields"
    if reg != region or p["x-amz-date"][:8] != day:
        return akid, "scope"
    try:
        t = calendar.timegm(time.strptime(p["x-amz-date"], "%Y%m%dT%H%M%SZ"))
        expires = int(p["x-amz-expires"])
    except ValueError:
        return akid, "date or expiry"
    now = time.time() if now is None else now
    if not (t - 300 <= now <= t + min(900, expires)):
        return akid, "expired or from the future"
    if akid not in secrets:
        return akid, "unknown key"
    if not hmac.compare_digest(signature(p, secrets[akid]), p["x-amz-signature"]):
        return akid, "bad signature"
    return akid, None


def self_check():
    """The verifier against the published vector of the kafkajs-msk-iam plugin
    (create-payload.spec.ts: host examples.com, 2021-01-01T00:00:00Z, us-east-1), and a
    tampered copy."""
    vec = {"version": "2020_10_22", "host": "examples.com", "user-agent": "MSK_IAM",
           "action": "kafka-cluster:Connect", "x-amz-algorithm": "AWS4-HMAC-SHA256",
           "x-amz-credential": "accessKeyId/20210101/us-east-1/kafka-cluster/aws4_request",
           "x-amz-date": "20210101T000000Z", "x-amz-expires": "900",
           "x-amz-signedheaders": "host", "x-amz-security-token": "sessionToken",
           "x-amz-signature":
               "3515d158e62c159a3d8d4344942cff44c865cdeac6748a4b5dc42686641bb272"}
    t = 1609459200 + 10
    ok = verify(json.dumps(vec).encode(), {"accessKeyId": "secretAccessKey"}, "us-east-1", t)
    assert ok == ("accessKeyId", None), ok
    bad = dict(vec, host="examples.org")
    assert verify(json.dumps(bad).encode(), {"accessKeyId": "secretAccessKey"}, "us-east-1",
                  t)[1] == "bad signature"


class IamUpstream:
    """The fake upstream on 127.0.0.1 (advertised as `host`), TLS with `certfile` (cert + key)."""

    def __init__(self, certfile, secrets, region, host="localhost"):
        self.secrets, self.region, self.host = dict(secrets), region, host
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(certfile))
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.logins, self.errors = [], []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        self.stopping = True
        self.lsock.close()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            s.settimeout(30)
            authed = False
            while True:
                hdr = self._read(s, 4)
                if hdr is None:
                    return
                r = kp.Reader(self._read(s, struct.unpack(">i", hdr)[0]))
                key, ver, corr = r.i16(), r.i16(), r.i32()
                r.string()  # client id
                lo_hi = SUPPORTED.get(key)
                if key == API_VERSIONS and not (0 <= ver <= 3):
                    out = self._api_versions(0, UNSUPPORTED_VERSION)
                elif lo_hi is None or not lo_hi[0] <= ver <= lo_hi[1]:
                    self.errors.append(f"unsupported request {key} v{ver}")
                    return
                elif key != API_VERSIONS and key != SASL_HANDSHAKE and not authed \
                        and key != SASL_AUTHENTICATE:
                    self.errors.append(f"request {key} before authentication")
                    return
                elif key == API_VERSIONS:
                    if ver >= 3:
                        r.tags()
                    out = self._api_versions(ver, 0)
                elif key == SASL_HANDSHAKE:
                    mech = r.string()
                    out = kp.Writer().i16(0 if mech == "AWS_MSK_IAM" else 33).array(
                        ["AWS_MSK_IAM"], lambda w, m: w.string(m)).bytes()
                elif key == SASL_AUTHENTICATE:
                    akid, why = verify(r.nbytes(), self.secrets, self.region)
                    self.logins.append((akid, why))
                    w = kp.Writer()
                    if why is None:
                        authed = True
                        body = json.dumps({"version": "2020_10_22", "request-id": "t-1"})
                        w.i16(0).string(None).i32(len(body)).raw(body.encode())
                    else:
                        w.i16(SASL_AUTHENTICATION_FAILED).string("[t-1]: Access denied").i32(0)
                    if ver >= 1:
                        w.i64(0)
                    out = w.bytes()
                    if why is not None:
                        s.sendall(kp.frame(struct.pack(">i", corr) + out))
                        return
                else:  # Metadata v0-v1: this broker, no topics
                    w = kp.Writer().array([1], lambda w, b: (
                        w.i32(1).string(self.host).i32(self.port),
                        w.string(None) if ver >= 1 else None))
                    if ver >= 1:
                        w.i32(1)
                    out = w.array([], None).bytes()
                s.sendall(kp.frame(struct.pack(">i", corr) + out))
        except (OSError, kp.ProtoError, ssl.SSLError, ValueError) as e:
            self.errors.append(repr(e))
        finally:
            raw.close()

    @staticmethod
    def _read(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    @staticmethod
    def _api_versions(ver, err):
        items = sorted(SUPPORTED.items())
        w = kp.Writer().i16(err)
        if ver >= 3:
            w.carray(items, lambda w, kv: w.i16(kv[0]).i16(kv[1][0]).i16(kv[1][1]).tags())
            return w.i32(0).tags().bytes()
        w.array(items, lambda w, kv: w.i16(kv[0]).i16(kv[1][0]).i16(kv[1][1]))
        if ver >= 1:
            w.i32(0)
        return w.bytes()
