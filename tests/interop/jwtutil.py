"""OAUTHBEARER test material for the interop tests: signing keys, JWKS documents, signed (and
deliberately broken) JWTs, the RFC 7628 client message, and a small HTTPS JWKS server. Made with
python3-cryptography (Debian: python3-cryptography); no python3-jwt needed, so tests can also
build tokens a JWT library would refuse to make (alg none, HS256, wrong kid).

The broker side is src/auth/sl_jwt.c (docs/oauthbearer.md). Typical use with confluent-kafka:

    key = jwtutil.rsa_key()
    jwtutil.write_jwks(tmp / "jwks.json", [(key, "k1")])
    # broker: sasl.oauthbearer.jwks.endpoint.url=file://<tmp>/jwks.json,
    #         sasl.oauthbearer.expected.issuer=jwtutil.ISSUER, ...expected.audience=jwtutil.AUDIENCE
    tok = jwtutil.token(key, "k1", jwtutil.claims("alice"))
    conf["oauth_cb"] = lambda _cfg: (tok, time.time() + 300)

Command line (used by the C unit tests as a cross-implementation check):
    /usr/bin/python3 tests/interop/jwtutil.py demo DIR
writes DIR/jwks.json and prints one token per line: RS256 sub=py-rsa, ES256 sub=py-ec, and an
RS256 token that expired an hour ago."""
import base64
import http.server
import json
import os
import ssl
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://idp.sluice.test/"
AUDIENCE = "sluice"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n, length=None):
    return n.to_bytes(length or (n.bit_length() + 7) // 8, "big")


def rsa_key(bits=2048):
    return rsa.generate_private_key(65537, bits)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key, kid, alg=None, use="sig"):
    """Public JWK (dict) of a private or public key."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        d = {"kty": "RSA", "n": b64url(_int_bytes(nums.n)), "e": b64url(_int_bytes(nums.e))}
    else:
        nums = pub.public_numbers()
        d = {"kty": "EC", "crv": "P-256", "x": b64url(_int_bytes(nums.x, 32)),
             "y": b64url(_int_bytes(nums.y, 32))}
    d["kid"] = kid
    if use:
        d["use"] = use
    if alg:
        d["alg"] = alg
    return d


def jwks(keys):
    """JWKS text from [(key, kid), ...] or a list of JWK dicts."""
    return json.dumps({"keys": [k if isinstance(k, dict) else jwk(*k) for k in keys]})


def write_jwks(path, keys):
    """Atomic write, so a validator refreshing concurrently never reads half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(jwks(keys))
    os.replace(tmp, path)


def claims(sub, iss=ISSUER, aud=AUDIENCE, ttl=300, now=None, **extra):
    """A claim set valid for `ttl` seconds (negative: already expired)."""
    now = int(time.time() if now is None else now)
    c = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl}
    c.update(extra)
    return c


def token(key, kid, claim_set, alg=None, header=None):
    """Compact JWS. alg defaults from the key type (RS256/ES256); "none" leaves the signature
    empty; HS256 signs with `key` as bytes. `header` entries override the generated ones."""
    if alg is None:
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    h = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        h["kid"] = kid
    h.update(header or {})
    signing_input = (b64url(json.dumps(h, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claim_set, separators=(",", ":")).encode()))
    data = signing_input.encode()
    if alg == "none":
        sig = b""
    elif alg == "HS256":
        m = hmac.HMAC(key if isinstance(key, bytes) else b"secret", hashes.SHA256())
        m.update(data)
        sig = m.finalize()
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        # JWS wants r||s, 32 bytes each (RFC 7518 3.4), not the DER that cryptography returns.
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = _int_bytes(r, 32) + _int_bytes(s, 32)
    return signing_input + "." + b64url(sig)


def client_message(tok, authzid="", **ext):
    """RFC 7628 initial client response, as Kafka clients send it."""
    kv = "".join(f"{k}={v}\x01" for k, v in ext.items())
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {tok}\x01{kv}\x01".encode()


class JwksServer:
    """HTTPS server answering every GET with the current JWKS. `cert`/`key` are PEM paths (see
    tlsutil.py for a test CA); the broker then needs
    sluice.sasl.oauthbearer.jwks.endpoint.truststore=<CA PEM>. Use as a context manager;
    `set_keys()` rotates; `hits` counts answered requests."""

    def __init__(self, cert, key, keys, host="127.0.0.1"):
        self.body = jwks(keys).encode()
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.hits += 1

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://{host}:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def set_keys(self, keys):
        self.body = jwks(keys).encode()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _demo(out_dir):
    out = Path(out_dir)
    rk, ek = rsa_key(), ec_key()
    write_jwks(out / "jwks.json", [(rk, "py-rsa"), (ek, "py-ec")])
    print(token(rk, "py-rsa", claims("py-rsa")))
    print(token(ek, "py-ec", claims("py-ec", aud=["other", AUDIENCE])))
    print(token(rk, "py-rsa", claims("py-old", ttl=-3600)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "demo":
        _demo(sys.argv[2])
    else:
        sys.exit("usage: jwtutil.py demo DIR")
