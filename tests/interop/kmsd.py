"""A loopback stand-in for AWS KMS, STS (AssumeRoleWithWebIdentity) and the EC2 instance metadata
service (IMDSv2), for the aws-kms provider's tests. Run it with Debian's /usr/bin/python3
(python3-botocore, python3-cryptography).

Every KMS request's SigV4 signature is checked independently with botocore's signer
(botocore.auth.SigV4Auth over a request rebuilt from the signed headers only; never add_auth(),
which stamps the current time): the credential scope (date, region, service "kms"), the signed
header set (host, x-amz-date, x-amz-target, content-type, and x-amz-security-token when sent, no
unsigned x-amz-* header), the clock (X-Amz-Date within 5 minutes), the secret of the access key
and the session token issued with it. A request that fails gets KMS's own answer
(InvalidSignatureException, IncompleteSignatureException, UnrecognizedClientException).

KMS semantics, as the JSON 1.1 protocol answers them: Encrypt, Decrypt, GenerateDataKey and
DescribeKey. A CiphertextBlob is AES-256-GCM under a per-key master secret with the key id and
the canonical EncryptionContext as associated data, so Decrypt with another context, another
KeyId or an edited blob fails with InvalidCiphertextException / IncorrectKeyException like the
real service. Keys: KEY_ID (alias/sluice, Enabled), DISABLED_ID (alias/disabled, Disabled).

State lives in --dir, so a restarted server (the outage tests) keeps its master secret, its TLS
certificate, its ports and the credentials it issued:
  ca.pem                 the test CA (give it to the broker as sluice.kms.aws.ca.file)
  ports.json             {"kms": port, "imds": port}
  requests.jsonl         one line per KMS request: op, verdict, and the raw request (method,
                         path, headers, base64 body), so a test can replay or tamper with one
  control.json           optional fault injection, read at every request:
                         {"fail": "ThrottlingException"} answers that error (status 400, or 500
                         for KMSInternalException), {"hang": true} never answers
  web-identity-token     the token STS accepts (written on first start)
Prints "READY <kms port> <imds port>" on stdout when both servers listen.

As a library: KmsdProcess(dir).start() / .stop() / .restart(), and the constants below.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

# Imported at start, not at the first request: a first call must not pay for the import.
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent
REGION = "eu-west-1"
ACCOUNT = "111122223333"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
DISABLED_ID = "0987dcba-09fe-87dc-65ba-ab0987654321"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"
ALIASES = {"alias/sluice": KEY_ID, "alias/disabled": DISABLED_ID}
KEY_STATE = {KEY_ID: "Enabled", DISABLED_ID: "Disabled"}
ACCESS_KEY = "AKIAKMSDTESTEXAMPLE"
SECRET_KEY = "kmsd/secret+EXAMPLEKEY"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sluice"
IMDS_ROLE = "sluice-instance-role"
MAX_SKEW_S = 300


def _arn(kid):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{kid}"


class State:
    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        p = self.dir / "state.json"
        if p.exists():
            s = json.loads(p.read_text())
        else:
            s = {"master": secrets.token_hex(32), "issued": {}, "created": time.time()}
        self.master = bytes.fromhex(s["master"])
        self.issued = s["issued"]  # akid -> [secret, token, expiration unix]
        self.created = s["created"]
        self._save()
        tok = self.dir / "web-identity-token"
        if not tok.exists():
            tok.write_text("eyJ.kmsd-web-identity." + secrets.token_hex(16) + "\n")
        self.imds_tokens = set()

    def _save(self):
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"master": self.master.hex(), "issued": self.issued,
                                   "created": self.created}))
        os.replace(tmp, self.dir / "state.json")

    def issue(self, ttl=3600):
        akid = "ASIA" + secrets.token_hex(8).upper()
        cred = [secrets.token_urlsafe(30), "IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(60),
                int(time.time()) + ttl]
        with self.lock:
            self.issued[akid] = cred
            self._save()
        return akid, cred

    def secret_for(self, akid):
        if akid == ACCESS_KEY:
            return SECRET_KEY, None
        with self.lock:
            c = self.issued.get(akid)
        if not c or c[2] < time.time():
            return None, None
        return c[0], c[1]

    def control(self):
        try:
            return json.loads((self.dir / "control.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def log(self, rec):
        with self.lock, open(self.dir / "requests.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    def key_for(self, kid):
        return hmac.new(self.master, kid.encode(), hashlib.sha256).digest()


def verify_sigv4(state, method, path, headers, body):
    """None if the request is signed right, else (KMS error type, message)."""
    authz = headers.get("Authorization", "")
    if not authz.startswith("AWS4-HMAC-SHA256 "):
        return "IncompleteSignatureException", "no AWS4-HMAC-SHA256 Authorization header"
    try:
        parts = dict(p.strip().split("=", 1) for p in authz[len("AWS4-HMAC-SHA256 "):].split(","))
        akid, day, region, service, term = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        sig = parts["Signature"]
    except (KeyError, ValueError):
        return "IncompleteSignatureException", "malformed Authorization header"
    amz = headers.get("X-Amz-Date", "")
    if not headers.get("Host"):
        return "IncompleteSignatureException", "no Host header"
    if term != "aws4_request" or service != "kms" or region != REGION or amz[:8] != day:
        return "InvalidSignatureException", "credential scope mismatch"
    try:
        t = datetime.datetime.strptime(amz, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return "IncompleteSignatureException", "bad X-Amz-Date"
    if abs(t - time.time()) > MAX_SKEW_S:
        return "InvalidSignatureException", "Signature expired (clock skew)"
    secret, token = state.secret_for(akid)
    if secret is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    sent_token = headers.get("X-Amz-Security-Token")
    if token is not None and not (sent_token and hmac.compare_digest(sent_token, token)):
        return "UnrecognizedClientException", "session token missing or wrong"
    names = {k.lower() for k in headers.keys()}
    need = {"host", "x-amz-date", "x-amz-target", "content-type"} | (
        {"x-amz-security-token"} if sent_token else set())
    unsigned_amz = {n for n in names if n.startswith("x-amz-")} - set(signed)
    if not need <= set(signed) or unsigned_amz:
        return "InvalidSignatureException", "signed headers incomplete"
    h = {k: v for k, v in headers.items() if k.lower() in signed}
    if len({k.lower() for k in h}) != len(signed):
        return "InvalidSignatureException", "a signed header was not sent"
    req = AWSRequest(method=method, url="https://" + headers["Host"] + path, data=body, headers=h)
    req.context["timestamp"] = amz
    a = SigV4Auth(Credentials(akid, secret, sent_token), service, region)
    if {k.lower() for k in a.headers_to_sign(req).keys()} != set(signed):
        return "InvalidSignatureException", "signed header set differs from botocore's"
    want = a.signature(a.string_to_sign(req, a.canonical_request(req)), req)
    if not hmac.compare_digest(want, sig):
        return "InvalidSignatureException", (
            "The request signature we calculated does not match the signature you provided.")
    return None


class KmsError(Exception):
    def __init__(self, typ, msg, status=400):
        super().__init__(msg)
        self.typ, self.msg, self.status = typ, msg, status


def _resolve(key_id):
    if not isinstance(key_id, str) or not key_id:
        raise KmsError("ValidationException", "KeyId is required")
    if key_id in ALIASES:
        return ALIASES[key_id]
    for kid in KEY_STATE:
        if key_id in (kid, _arn(kid)):
            return kid
    raise KmsError("NotFoundException", f"Key '{key_id}' does not exist")


def _ctx_aad(kid, ctx):
    if ctx is None:
        ctx = {}
    if not isinstance(ctx, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in ctx.items()):
        raise KmsError("ValidationException", "EncryptionContext must be a string map")
    return kid.encode() + b"\0" + json.dumps(ctx, sort_keys=True, separators=(",", ":")).encode()


def _usable(kid):
    st = KEY_STATE[kid]
    if st == "Disabled":
        raise KmsError("DisabledException", f"{_arn(kid)} is disabled.")
    if st != "Enabled":
        raise KmsError("KMSInvalidStateException", f"{_arn(kid)} is {st}.")


def _seal(state, kid, ctx, plain):
    nonce = os.urandom(12)
    ct = AESGCM(state.key_for(kid)).encrypt(nonce, plain, _ctx_aad(kid, ctx))
    return b"\x01" + kid.encode() + nonce + ct


def _open(state, blob, ctx, key_id_param):
    if len(blob) < 1 + 36 + 12 + 16 or blob[0] != 1:
        raise KmsError("InvalidCiphertextException", "")
    kid = blob[1:37].decode(errors="replace")
    if kid not in KEY_STATE:
        raise KmsError("InvalidCiphertextException", "")
    if key_id_param is not None and _resolve(key_id_param) != kid:
        raise KmsError("IncorrectKeyException",
                       "The key ID in the request does not identify a CMK that can perform this "
                       "operation.")
    _usable(kid)
    try:
        return kid, AESGCM(state.key_for(kid)).decrypt(blob[37:49], blob[49:], _ctx_aad(kid, ctx))
    except InvalidTag:
        raise KmsError("InvalidCiphertextException", "") from None


def _b64(field, v):
    try:
        return base64.b64decode(v, validate=True)
    except (TypeError, ValueError):
        raise KmsError("ValidationException", f"{field} is not base64") from None


def kms_op(state, op, q):
    if op == "Encrypt":
        kid = _resolve(q.get("KeyId"))
        _usable(kid)
        pt = _b64("Plaintext", q.get("Plaintext", ""))
        if not 1 <= len(pt) <= 4096:
            raise KmsError("ValidationException", "Plaintext length must be 1..4096")
        blob = _seal(state, kid, q.get("EncryptionContext"), pt)
        return {"CiphertextBlob": base64.b64encode(blob).decode(), "KeyId": _arn(kid),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    if op == "Decrypt":
        blob = _b64("CiphertextBlob", q.get("CiphertextBlob", ""))
        kid, pt = _open(state, blob, q.get("EncryptionContext"), q.get("KeyId"))
        return {"Plaintext": base64.b64encode(pt).decode(), "KeyId": _arn(kid),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    if op == "GenerateDataKey":
        kid = _resolve(q.get("KeyId"))
        _usable(kid)
        n = {"AES_256": 32, "AES_128": 16}.get(q.get("KeySpec"), q.get("NumberOfBytes"))
        if not isinstance(n, int) or not 1 <= n <= 1024:
            raise KmsError("ValidationException", "KeySpec or NumberOfBytes required")
        pt = os.urandom(n)
        blob = _seal(state, kid, q.get("EncryptionContext"), pt)
        return {"CiphertextBlob": base64.b64encode(blob).decode(),
                "Plaintext": base64.b64encode(pt).decode(), "KeyId": _arn(kid)}
    if op == "DescribeKey":
        kid = _resolve(q.get("KeyId"))
        st = KEY_STATE[kid]
        return {"KeyMetadata": {
            "AWSAccountId": ACCOUNT, "KeyId": kid, "Arn": _arn(kid),
            "CreationDate": state.created, "Enabled": st == "Enabled", "Description": "kmsd",
            "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": st, "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": False}}
    raise KmsError("UnknownOperationException", f"unsupported operation {op}")


def _hang(state):
    deadline = time.monotonic() + 60
    while state.control().get("hang") and time.monotonic() < deadline:
        time.sleep(0.05)


class KmsHandler(http.server.BaseHTTPRequestHandler):
    server_version = "kmsd"
    timeout = 30

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, obj, ctype="application/x-amz-json-1.1"):
        out = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("x-amzn-RequestId", secrets.token_hex(8))
        self.end_headers()
        self.wfile.write(out)

    def do_POST(self):
        st = self.server.state
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n > 0 else b""
        if self.path.startswith("/sts"):
            return self._sts(body)
        ctl = st.control()
        if ctl.get("hang"):
            _hang(st)
            self.close_connection = True
            return
        verdict = verify_sigv4(st, "POST", self.path, self.headers, body)
        target = self.headers.get("X-Amz-Target", "")
        op = target.split(".", 1)[1] if target.startswith("TrentService.") else target
        st.log({"op": op, "verdict": "ok" if verdict is None else verdict[0],
                "method": "POST", "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": base64.b64encode(body).decode()})
        if verdict is not None:
            return self._answer(400, {"__type": verdict[0], "message": verdict[1]})
        if ctl.get("fail"):
            typ = ctl["fail"]
            return self._answer(500 if typ in ("KMSInternalException",) else 400,
                                {"__type": typ, "message": "injected by kmsd control.json"})
        try:
            q = json.loads(body or b"{}")
            if not isinstance(q, dict):
                raise ValueError
        except ValueError:
            return self._answer(400, {"__type": "SerializationException", "message": ""})
        try:
            self._answer(200, kms_op(st, op, q))
        except KmsError as e:
            out = {"__type": e.typ}
            if e.msg:
                out["message"] = e.msg
            self._answer(e.status, out)

    def _sts(self, body):
        st = self.server.state
        form = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
        want = (st.dir / "web-identity-token").read_text().strip()
        got = form.get("WebIdentityToken", [""])[0]
        ok = (form.get("Action") == ["AssumeRoleWithWebIdentity"]
              and form.get("Version") == ["2011-06-15"]
              and form.get("RoleArn") == [ROLE_ARN]
              and form.get("RoleSessionName", [""])[0] != ""
              and hmac.compare_digest(got.encode(), want.encode())
              and "Authorization" not in self.headers)
        st.log({"op": "sts:AssumeRoleWithWebIdentity", "verdict": "ok" if ok else "denied"})
        if not ok:
            return self._answer(400, (
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                "<Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Incorrect token "
                "audience</Message></Error><RequestId>x</RequestId></ErrorResponse>").encode(),
                "text/xml")
        akid, (secret, token, exp) = st.issue()
        expiration = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        xml = (
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            "<AssumeRoleWithWebIdentityResult><Audience>sts.amazonaws.com</Audience>"
            f"<AssumedRoleUser><Arn>{ROLE_ARN}/x</Arn><AssumedRoleId>AROA:x</AssumedRoleId>"
            "</AssumedRoleUser><Provider>kmsd</Provider><Credentials>"
            f"<SessionToken>{token}</SessionToken><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<Expiration>{expiration}</Expiration><AccessKeyId>{akid}</AccessKeyId>"
            "</Credentials><SubjectFromWebIdentityToken>system:serviceaccount:kafka:sluice"
            "</SubjectFromWebIdentityToken></AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>")
        self._answer(200, xml.encode(), "text/xml")


class ImdsHandler(http.server.BaseHTTPRequestHandler):
    """IMDSv2 only: every metadata GET needs a token from PUT /latest/api/token."""
    server_version = "kmsd-imds"
    timeout = 30

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, text, ctype="text/plain"):
        out = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_PUT(self):
        st = self.server.state
        if self.path != "/latest/api/token":
            return self._answer(404, "")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._answer(400, "")
        tok = "AQAEA" + secrets.token_urlsafe(40)
        st.imds_tokens.add(tok)
        st.log({"op": "imds:token", "verdict": "ok"})
        self._answer(200, tok)

    def do_GET(self):
        st = self.server.state
        if self.headers.get("X-aws-ec2-metadata-token") not in st.imds_tokens:
            st.log({"op": "imds:get", "verdict": "unauthorized"})
            return self._answer(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self._answer(200, IMDS_ROLE)
        if self.path == base + IMDS_ROLE:
            akid, (secret, token, exp) = st.issue()
            st.log({"op": "imds:credentials", "verdict": "ok"})
            return self._answer(200, json.dumps({
                "Code": "Success", "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime()),
                "Type": "AWS-HMAC", "AccessKeyId": akid, "SecretAccessKey": secret,
                "Token": token, "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                            time.gmtime(exp))}, indent=2))
        self._answer(404, "")


class TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, state, ctx):
        self.state, self.ctx = state, ctx
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # The handshake runs in the request's thread, so a stalled client blocks only itself.
        request.settimeout(30)
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()


class PlainServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, state):
        self.state = state
        super().__init__(addr, handler)


def _tls_context(d):
    sys.path.insert(0, str(HERE))
    import tlsutil
    cert_p, key_p = d / "server.crt", d / "server.key"
    if not cert_p.exists():
        ca = tlsutil.CA("CN=kmsd test CA,O=Sluice Tests")
        ca.write(d / "ca.pem")
        cert, key = ca.issue("CN=127.0.0.1", server=True)
        tlsutil.write_cert_and_key(d, "server", cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_p), str(key_p))
    return ctx


def serve(d, kms_port=0, imds_port=0):
    d = Path(d)
    state = State(d)
    ports_p = d / "ports.json"
    if ports_p.exists() and not kms_port:
        p = json.loads(ports_p.read_text())
        kms_port, imds_port = p["kms"], p["imds"]
    kms = TlsServer(("127.0.0.1", kms_port), KmsHandler, state, _tls_context(d))
    imds = PlainServer(("127.0.0.1", imds_port), ImdsHandler, state)
    ports = {"kms": kms.server_address[1], "imds": imds.server_address[1]}
    tmp = d / "ports.json.tmp"
    tmp.write_text(json.dumps(ports))
    os.replace(tmp, ports_p)
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    print(f"READY {ports['kms']} {ports['imds']}", flush=True)
    kms.serve_forever()


class KmsdProcess:
    """kmsd in its own process (so a test can stop it for an outage and start it again on the
    same ports with the same keys)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self.kms_port = self.imds_port = None

    def start(self, timeout=30):
        assert self.proc is None
        log = open(self.dir / "kmsd.log", "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--dir",
                                      str(self.dir)], stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        line = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        while not line.endswith(b"\n"):
            if self.proc.poll() is not None:
                raise AssertionError("kmsd exited at start:\n"
                                     + (self.dir / "kmsd.log").read_text(errors="replace"))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("kmsd did not start")
            chunk = self.proc.stdout.read()
            if chunk:
                line += chunk
            else:
                time.sleep(0.02)
        _, k, i = line.decode().split()
        self.kms_port, self.imds_port = int(k), int(i)
        return self

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    @property
    def ca(self):
        return str(self.dir / "ca.pem")

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self.kms_port}/"

    @property
    def sts_endpoint(self):
        return f"https://127.0.0.1:{self.kms_port}/sts/"

    @property
    def imds_endpoint(self):
        return f"http://127.0.0.1:{self.imds_port}"

    def web_identity_token_file(self):
        return str(self.dir / "web-identity-token")

    def control(self, **kw):
        p = self.dir / "control.json"
        tmp = self.dir / "control.json.tmp"
        tmp.write_text(json.dumps(kw))
        os.replace(tmp, p)

    def requests(self):
        try:
            lines = (self.dir / "requests.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(x) for x in lines if x]

    def send_raw(self, method, path, headers, body, timeout=10):
        """Sends a request as given (headers in order, Host included) over TLS; returns
        (status, parsed JSON or raw bytes)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        with socket.create_connection(("127.0.0.1", self.kms_port), timeout=timeout) as s, \
                ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            head = f"{method} {path} HTTP/1.1\r\n"
            for k, v in headers:
                if k.lower() in ("content-length", "connection"):
                    continue
                head += f"{k}: {v}\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            t.sendall(head.encode() + body)
            data = b""
            while True:
                c = t.recv(65536)
                if not c:
                    break
                data += c
        hdr, _, rest = data.partition(b"\r\n\r\n")
        status = int(hdr.split(b" ", 2)[1])
        try:
            return status, json.loads(rest)
        except ValueError:
            return status, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--kms-port", type=int, default=0)
    ap.add_argument("--imds-port", type=int, default=0)
    a = ap.parse_args()
    serve(a.dir, a.kms_port, a.imds_port)


if __name__ == "__main__":
    main()
