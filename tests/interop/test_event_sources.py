"""The event sources (src/events/sl_events.h) seen through the broker's debug event subscriber
(one `sub=event` line per event): logins and their failures from the authenticate stage (SCRAM,
PLAIN, unknown mechanisms, re-authentication, expiry, a delayed failure reported once), mTLS
logons and TLS handshake failures, certificate reloads, the broker's start/config/stop with a
digest that ignores secrets, and the per-partition data of Produce (acks=1 and acks=0) and Fetch
(v2 batches and legacy message sets for an old Fetch version).

Every check polls the broker log with a deadline; none relies on a sleep for synchronization."""
import re
import signal
import socket
import struct
import subprocess
import time
from types import SimpleNamespace

import pytest

import kproto
import tlsutil
from conftest import Broker, finish_broker, wait_until
from test_sasl import (add_user, authenticate, handshake, make_token,  # noqa: F401
                       oauth_login, sasl_broker, sasl_ssl_broker, scram_login)

DEBUG = {"sluice.log.level": "debug"}


def events(b, msg):
    return [ln for ln in b.log_text().splitlines()
            if " sub=event " in ln and f' msg="{msg}" ' in ln]


def wait_event(b, msg, *parts, timeout=20):
    found = []

    def ok():
        found[:] = [ln for ln in events(b, msg) if all(p in ln for p in parts)]
        return bool(found)
    wait_until(ok, timeout, f"an event {msg} with {parts}")
    return found


def field(line, key):
    m = re.search(rf' {key}=("([^"]*)"|(\S+))', line)
    assert m, f"no {key} in {line}"
    return m.group(2) if m.group(2) is not None else m.group(3)


# ---- authentication ---------------------------------------------------------------------------

@pytest.mark.broker_config({**DEBUG, "connections.max.reauth.ms": 1500,
                            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
                            "sluice.sasl.plain.allow.insecure": "true",
                            "connection.failed.authentication.delay.ms": 300})
def test_sasl_login_events(sasl_broker):
    b = sasl_broker
    # SCRAM success: mechanism, claimed user, principal, lifetime.
    with kproto.Conn(b.bootstrap) as c:
        err, _, life = scram_login(c, "alice", "alice-secret", "SCRAM-SHA-256")
        assert err == 0
    ln = wait_event(b, "auth", "activity=logon", "success=true", "mechanism=SCRAM-SHA-256",
                    'user="alice"', 'principal="User:alice"')[0]
    assert field(ln, "lifetime_ms") == str(life) and 0 < life <= 1500
    assert field(ln, "tls_version") == "-"

    # Wrong password: a failure with the claimed name and a reason, no principal, once even
    # though the answer is delayed.
    with kproto.Conn(b.bootstrap) as c:
        err, _, _ = scram_login(c, "alice", "not-alices-password", "SCRAM-SHA-512")
        assert err == 58
        assert c.closed_by_peer(10)
    ln = wait_event(b, "auth", "success=false", "mechanism=SCRAM-SHA-512", 'user="alice"',
                    'reason="invalid credentials"')[0]
    assert field(ln, "principal") == "-"
    conn = field(ln, "conn")
    wait_event(b, "net", f"conn={conn} ", "activity=close")
    assert len([x for x in events(b, "auth") if f"conn={conn} " in x]) == 1, \
        "a delayed failure was reported more than once"

    # An unknown user fails alike (the reason does not tell unknown from wrong).
    with kproto.Conn(b.bootstrap) as c:
        assert scram_login(c, "nobody-here", "whatever")[0] == 58
    wait_event(b, "auth", "success=false", 'user="nobody-here"', 'reason="invalid credentials"')

    # PLAIN, both ways.
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN")[0] == 0
        assert authenticate(c, b"\0alice\0alice-secret")[0] == 0
    wait_event(b, "auth", "success=true", "mechanism=PLAIN", 'user="alice"')
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN")[0] == 0
        assert authenticate(c, b"\0plainuser\0wrong-plain-pw")[0] == 58
    wait_event(b, "auth", "success=false", "mechanism=PLAIN", 'user="plainuser"',
               'reason="invalid credentials"')
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN")[0] == 0
        assert authenticate(c, b"no-nul-separators")[0] == 58
    wait_event(b, "auth", "success=false", "mechanism=PLAIN", 'reason="malformed"')

    # Mechanisms a client names are bounded labels.
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "GSSAPI")[0] == 33
    wait_event(b, "auth", "mechanism=GSSAPI", 'reason="unknown mechanism"')
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "X-EVIL\"mech")[0] == 33
    wait_event(b, "auth", "mechanism=other", 'reason="unknown mechanism"')

    # Re-authentication (KIP-368), then expiry of a session never renewed.
    with kproto.Conn(b.bootstrap) as c:
        assert scram_login(c, "alice", "alice-secret")[0] == 0
        assert scram_login(c, "alice", "alice-secret", "SCRAM-SHA-512")[0] == 0
    wait_event(b, "auth", "activity=reauth", "success=true", "mechanism=SCRAM-SHA-512",
               'principal="User:alice"')
    with kproto.Conn(b.bootstrap) as c:  # re-authentication may not change who it is
        assert scram_login(c, "alice", "alice-secret")[0] == 0
        assert scram_login(c, "admin", "admin-secret")[0] == 58
    wait_event(b, "auth", "activity=reauth", "success=false", 'user="admin"',
               'principal="User:alice"', 'reason="principal changed"')
    with kproto.Conn(b.bootstrap) as c:
        assert scram_login(c, "alice", "alice-secret")[0] == 0
        t0 = time.monotonic()
        kproto.metadata(c)
        time.sleep(max(0.0, 1.7 - (time.monotonic() - t0)))  # past the lifetime, not a sync
        c.send_request(kproto.METADATA, 1, struct.pack(">i", -1))
        c.send_request(kproto.METADATA, 1, struct.pack(">i", -1))
        assert c.closed_by_peer(5)
    ln = wait_event(b, "auth", "activity=expired", "success=false", 'reason="session expired"',
                    'principal="User:alice"')
    conn = field(ln[0], "conn")
    wait_event(b, "net", f"conn={conn} ", "activity=close")
    assert len([x for x in events(b, "auth") if f"conn={conn} " in x and "expired" in x]) == 1

    log = b.log_text()
    for secret in ("alice-secret", "not-alices-password", "wrong-plain-pw"):
        assert secret not in log


@pytest.fixture
def oauth_debug_broker(request, tmp_path):
    import jwtutil
    key = jwtutil.rsa_key()
    jf = tmp_path / "jwks.json"
    jwtutil.write_jwks(jf, [jwtutil.jwk(key, "k1", alg="RS256")])
    b = Broker(tmp_path, {**DEBUG, "sasl.enabled.mechanisms": "OAUTHBEARER",
                          "sasl.oauthbearer.jwks.endpoint.url": f"file://{jf}",
                          "sasl.oauthbearer.expected.issuer": "https://issuer.test",
                          "sasl.oauthbearer.expected.audience": "sluice"})
    b.config["listeners"] = f"SASL_PLAINTEXT://{b.bootstrap}"
    b.write_config()
    request.node._sluice_broker = b
    b.start()
    b.key = key
    yield b
    finish_broker(b)


def test_oauthbearer_events(oauth_debug_broker):
    b = oauth_debug_broker
    with kproto.Conn(b.bootstrap) as c:
        err, msg, life = oauth_login(c, make_token(b.key, exp_in=300))
        assert err == 0, msg
    ln = wait_event(b, "auth", "success=true", "mechanism=OAUTHBEARER", 'user="svc-reporting"',
                    'principal="User:svc-reporting"')[0]
    assert 0 < int(field(ln, "lifetime_ms")) <= 300_000
    for token, reason in ((make_token(b.key, exp_in=-120), "token expired"),
                          (make_token(b.key, aud="other"), "invalid token")):
        with kproto.Conn(b.bootstrap) as c:
            assert oauth_login(c, token)[0] == 58
            port = c.sock.getsockname()[1]
        ln = wait_event(b, "auth", f"peer=127.0.0.1:{port} ", "success=false",
                        "mechanism=OAUTHBEARER", f'reason="{reason}"')[0]
        assert field(ln, "user") == "-"  # the token was not believed: no claimed name
    with kproto.Conn(b.bootstrap) as c:
        assert handshake(c, "OAUTHBEARER")[0] == 0
        assert authenticate(c, b"not a gs2 header")[0] == 58
    wait_event(b, "auth", "success=false", "mechanism=OAUTHBEARER", 'reason="malformed"')


@pytest.mark.broker_config(DEBUG)
def test_sasl_ssl_login_carries_tls_details(sasl_ssl_broker):
    from confluent_kafka.admin import AdminClient
    b = sasl_ssl_broker
    a = AdminClient({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_SSL",
                     "ssl.ca.location": str(b.ca_pem), "sasl.mechanisms": "SCRAM-SHA-512",
                     "sasl.username": "alice", "sasl.password": "alice-secret"})
    a.list_topics(timeout=20)
    ln = wait_event(b, "auth", "success=true", "mechanism=SCRAM-SHA-512", 'user="alice"')[0]
    assert field(ln, "tls_version").startswith("TLSv1.")
    assert field(ln, "tls_cipher") != "-"
    assert field(ln, "cert_subject") == "-"  # no client certificate on this listener


# ---- TLS: mTLS logons, handshake failures, certificate reloads --------------------------------

@pytest.fixture
def mtls_broker(request, tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    alice = tlsutil.write_cert_and_key(d, "alice", *ca.issue("CN=alice,OU=eng,O=acme"))
    b = Broker(tmp_path, {**DEBUG, "ssl.keystore.location": d / "broker.pem",
                          "ssl.truststore.location": d / "ca.pem",
                          "ssl.client.auth": "required"})
    b.config["listeners"] = f"SSL://{b.bootstrap}"
    b.write_config()
    request.node._sluice_broker = b
    b.start()
    b.pki = SimpleNamespace(ca=ca, ca_pem=d / "ca.pem", keystore=d / "broker.pem", alice=alice)
    yield b
    finish_broker(b)


def tls_ctx(pki, cert=None):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca_pem))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


API_VERSIONS_V0 = struct.pack(">ihhih", 14, 18, 0, 7, 4) + b"test"


def test_mtls_logon_and_handshake_failures(mtls_broker):
    import ssl
    b = mtls_broker
    raw = socket.create_connection((b.host, b.port), timeout=10)
    port = raw.getsockname()[1]
    with tls_ctx(b.pki, b.pki.alice).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(API_VERSIONS_V0)
        assert len(s.recv(4)) == 4
    ln = wait_event(b, "auth", f"peer=127.0.0.1:{port} ", "mechanism=SSL", "success=true")[0]
    assert field(ln, "user") == "CN=alice,OU=eng,O=acme"
    assert field(ln, "cert_subject") == "CN=alice,OU=eng,O=acme"
    assert field(ln, "principal") == "User:CN=alice,OU=eng,O=acme"
    assert field(ln, "tls_version").startswith("TLSv1.")
    assert field(ln, "tls_cipher") != "-"

    # Plaintext bytes on the TLS port: the close says why the handshake failed.
    with socket.create_connection((b.host, b.port), timeout=10) as s:
        port = s.getsockname()[1]
        s.sendall(API_VERSIONS_V0)
        try:
            s.recv(100)
        except OSError:
            pass
    ln = wait_event(b, "net", f"peer=127.0.0.1:{port} ", "activity=close")[0]
    assert field(ln, "tls_failure") not in ("-", ""), ln

    # No client certificate where one is required.
    raw = socket.create_connection((b.host, b.port), timeout=10)
    port = raw.getsockname()[1]
    try:
        with tls_ctx(b.pki).wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(API_VERSIONS_V0)
            s.recv(4)
    except (ssl.SSLError, OSError):
        pass
    ln = wait_event(b, "net", f"peer=127.0.0.1:{port} ", "activity=close")[0]
    assert field(ln, "tls_failure") not in ("-", ""), ln
    assert not [x for x in events(b, "auth") if f"peer=127.0.0.1:{port} " in x]

    # A good connection that closes normally carries no TLS failure.
    opens = [x for x in events(b, "net") if "activity=close" in x and 'tls_failure="-"' in x]
    assert opens, "no orderly close without a TLS failure"


def test_certificate_reload_events(mtls_broker):
    b = mtls_broker
    b.proc.send_signal(signal.SIGHUP)
    wait_event(b, "admin", 'action="certificate reload"', 'resource="listener SSL"',
               "success=true")
    good = b.pki.keystore.read_bytes()
    b.pki.keystore.write_text("not a certificate\n")
    try:
        b.proc.send_signal(signal.SIGHUP)
        ln = wait_event(b, "admin", 'action="certificate reload"', "success=false")[0]
        assert field(ln, "detail") not in ("-", "")
    finally:
        b.pki.keystore.write_bytes(good)


# ---- lifecycle --------------------------------------------------------------------------------

def app_events(b, activity):
    return [x for x in events(b, "app") if f"activity={activity} " in x]


def test_lifecycle_events_and_config_digest(tmp_path):
    b = Broker(tmp_path, {**DEBUG, "ssl.key.password": "first-secret-pw"})
    try:
        b.start()
        ln = wait_event(b, "app", "activity=config")[0]
        assert field(ln, "detail") == str(b.config_path)
        digest = field(ln, "digest")
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        wait_event(b, "app", "activity=start")
        b.stop()
        wait_event(b, "app", "activity=stop", 'detail="clean"')

        # A secret does not move the digest (it is not hashed); another setting does.
        b.config["ssl.key.password"] = "second-secret-pw"
        b.write_config()
        b.start()
        wait_until(lambda: len(app_events(b, "config")) == 2, 20, "the second config event")
        assert field(app_events(b, "config")[1], "digest") == digest
        b.stop()
        b.config["num.partitions"] = "3"
        b.write_config()
        b.start()
        wait_until(lambda: len(app_events(b, "config")) == 3, 20, "the third config event")
        assert field(app_events(b, "config")[2], "digest") != digest
        log = b.log_text()
        assert "first-secret-pw" not in log and "second-secret-pw" not in log
    finally:
        finish_broker(b)


# ---- data access ------------------------------------------------------------------------------

def data_entries(b, api, topic):
    """(version, outcome, [(partition, write, error, first, last, records, bytes)]) per request
    event of `api` that touched `topic`."""
    out = []
    for ln in events(b, "request"):
        if f" api={api} " not in ln:
            continue
        ents = []
        for e in filter(None, field(ln, "data").split(",")):
            m = re.fullmatch(r"(.*):(\d+):([wr]):e(-?\d+):(-?\d+)-(-?\d+):r(\d+):b(\d+)", e)
            assert m, e
            if m.group(1) == topic:
                ents.append((int(m.group(2)), m.group(3) == "w", int(m.group(4)),
                             int(m.group(5)), int(m.group(6)), int(m.group(7)), int(m.group(8))))
        if ents:
            out.append((int(field(ln, "version")), int(field(ln, "outcome")), ents))
    return out


def covered(reqs):
    offs = []
    for _, _, ents in reqs:
        for p, _, err, first, last, recs, nbytes in ents:
            if err == 0 and recs:
                assert last - first + 1 == recs and nbytes > 0
                offs.extend(range(first, last + 1))
    return sorted(offs)


@pytest.mark.broker_config(DEBUG)
def test_produce_and_fetch_data(broker):
    from confluent_kafka import Producer
    b = broker
    lines = [f"data record {i}" for i in range(10)]
    res = subprocess.run(["kcat", "-b", b.bootstrap, "-P", "-t", "ev-data", "-p", "0"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    wait_until(lambda: covered(data_entries(b, 0, "ev-data")) == list(range(10)), 20,
               "produce data for offsets 0-9")
    assert all(e[1] for _, _, ents in data_entries(b, 0, "ev-data") for e in ents)

    res = subprocess.run(["kcat", "-b", b.bootstrap, "-C", "-t", "ev-data", "-p", "0",
                          "-o", "beginning", "-e", "-c", "10"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.splitlines() == lines
    wait_until(lambda: covered(data_entries(b, 1, "ev-data")) == list(range(10)), 20,
               "fetch data for offsets 0-9")
    assert not any(e[1] for _, _, ents in data_entries(b, 1, "ev-data") for e in ents)

    # acks=0: no answer, the data is still recorded (outcome 2: noreply).
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": 0, "linger.ms": 50})
    for i in range(5):
        p.produce("ev-acks0", f"fire and forget {i}".encode(), partition=0)
    assert p.flush(30) == 0
    wait_until(lambda: covered(data_entries(b, 0, "ev-acks0")) == list(range(5)), 20,
               "acks=0 produce data")
    assert all(outcome == 2 for _, outcome, _ in data_entries(b, 0, "ev-acks0"))

    # An old Fetch version gets down-converted legacy message sets: walked too.
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, api_version=(0, 10, 1),
                      enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition("ev-data", 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=500).values():
            got.extend(m.value.decode() for m in msgs)
    c.close()
    assert got == lines
    old = [r for r in data_entries(b, 1, "ev-data") if r[0] <= 3]
    assert old, "no data recorded for the legacy fetch"
    assert covered(old) == list(range(10))
