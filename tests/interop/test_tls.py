"""TLS listeners with real clients: kcat, confluent-kafka, kafka-python and kafkajs over SSL;
mutual TLS with principal mapping; refusals (wrong CA, expired, missing client certificates,
TLS 1.0/1.1, plaintext bytes) that leave the broker serving; certificate rotation by SIGHUP and
by file change, and a broken replacement that keeps the old certificate. The PKI is made per
test by tlsutil.py."""
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import helpers as h
import tlsutil
from conftest import Broker, finish_broker, wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"
ALICE_DN = "CN=alice,OU=eng,O=acme"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    alice_crt, alice_key = tlsutil.write_cert_and_key(d, "alice", *ca.issue(ALICE_DN))
    return SimpleNamespace(dir=d, ca=ca, ca_pem=d / "ca.pem", keystore=d / "broker.pem",
                           serial=cert.serial_number, alice_crt=alice_crt, alice_key=alice_key)


@pytest.fixture
def tls_broker(request, tmp_path, pki):
    """A broker whose only listener is SSL on a free port, keystore and truststore from `pki`;
    per-test overrides with @pytest.mark.broker_config."""
    marker = request.node.get_closest_marker("broker_config")
    overrides = {"ssl.keystore.location": pki.keystore, "ssl.truststore.location": pki.ca_pem}
    overrides.update(marker.args[0] if marker else {})
    b = Broker(tmp_path, overrides)
    b.config["listeners"] = f"SSL://{b.bootstrap}"
    b.write_config()
    request.node._sluice_broker = b
    b.start()
    b.pki = pki
    yield b
    finish_broker(b)


# ---- raw TLS helpers ----------------------------------------------------------------------

def client_ctx(pki, cert=None, key=None, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca_pem))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


API_VERSIONS_V0 = struct.pack(">ihhih", 14, 18, 0, 7, 4) + b"test"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def api_versions(s):
    """Sends ApiVersions v0 on an open socket; returns True when a well-formed answer (our
    correlation id, error 0) comes back."""
    s.sendall(API_VERSIONS_V0)
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    body = recv_exact(s, size)
    corr, err = struct.unpack(">ih", body[:6])
    return corr == 7 and err == 0


def tls_connect(b, ctx, timeout=10):
    raw = socket.create_connection((b.host, b.port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def tls_api_versions(b, ctx):
    with tls_connect(b, ctx) as s:
        return api_versions(s)


def refused(b, ctx):
    """True if a TLS client with `ctx` cannot get an ApiVersions answer. With TLS 1.3 the client
    finishes its side of the handshake before the server checks its certificate, so the refusal
    may only show on the first read."""
    try:
        with tls_connect(b, ctx) as s:
            return not api_versions(s)
    except (ssl.SSLError, ConnectionError, OSError):
        return True


def peer_serial(b, pki):
    with tls_connect(b, client_ctx(pki)) as s:
        return tlsutil.serial_of_der(s.getpeercert(binary_form=True))


def good_client_works(b):
    pki = b.pki
    assert tls_api_versions(b, client_ctx(pki, pki.alice_crt, pki.alice_key)), \
        f"a good client was refused\n{b.log_tail()}"
    assert b.alive()


def ssl_conf(pki, cert=True):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_pem)}
    if cert:
        conf.update({"ssl.certificate.location": str(pki.alice_crt),
                     "ssl.key.location": str(pki.alice_key)})
    return conf


def kcat_ssl(pki, cert=True):
    return [x for k, v in ssl_conf(pki, cert).items() for x in ("-X", f"{k}={v}")]


# ---- clients ------------------------------------------------------------------------------

def test_kcat_over_ssl(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    lines = [f"k{i}\tkcat over tls {i}" for i in range(500)]
    res = subprocess.run(["kcat", "-b", b.bootstrap, "-P", "-t", "kcat-tls", "-K", "\t",
                          "-X", "acks=all", *kcat_ssl(pki, cert=False)],
                         input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run(["kcat", "-b", b.bootstrap, "-C", "-t", "kcat-tls", "-o", "beginning",
                          "-e", "-q", "-J", "-c", str(len(lines)), *kcat_ssl(pki, cert=False)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert [(m["key"], m["payload"]) for m in got] == [tuple(x.split("\t", 1)) for x in lines]
    assert 'msg="tls handshake complete" listener=SSL' in b.log_text()


def test_confluent_kafka_over_ssl(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    records = h.make_records("ck-tls", 2000, partitions=1)
    acked = h.ck_produce(b.bootstrap, "ck-tls", records, "lz4", extra=ssl_conf(pki, cert=False))
    expected = h.expected_from_acks(acked, "confluent-kafka/ssl")
    got = h.ck_consume(b.bootstrap, "ck-tls", {p: len(v) for p, v in expected.items()},
                       extra=ssl_conf(pki, cert=False))
    h.verify(expected, got, "confluent-kafka/ssl")


def test_kafka_python_over_ssl(tls_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    b, pki = tls_broker, tls_broker.pki
    kw = dict(bootstrap_servers=b.bootstrap, security_protocol="SSL", ssl_cafile=str(pki.ca_pem))
    p = KafkaProducer(acks="all", request_timeout_ms=30000, max_block_ms=30000, **kw)
    try:
        futs = [p.send("kp-tls", key=b"k%d" % i, value=b"kafka-python over tls %d" % i,
                       partition=0) for i in range(300)]
        p.flush(60)
        offsets = [f.get(timeout=30).offset for f in futs]
    finally:
        p.close()
    assert offsets == list(range(300))
    c = KafkaConsumer(group_id=None, enable_auto_commit=False, consumer_timeout_ms=1000, **kw)
    try:
        tp = TopicPartition("kp-tls", 0)
        c.assign([tp])
        c.seek(tp, 0)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 300 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                got.extend(recs)
    finally:
        c.close()
    assert [r.value for r in got] == [b"kafka-python over tls %d" % i for i in range(300)]


KAFKAJS_SCRIPT = r"""
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');
const [bootstrap, ca, topic] = process.argv.slice(1);
const N = 200;
(async () => {
  const kafka = new Kafka({ clientId: 'sluice-tls-kafkajs', brokers: [bootstrap],
    logLevel: logLevel.NOTHING, ssl: { ca: [fs.readFileSync(ca, 'utf8')] } });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1,
    messages: [...Array(N).keys()].map((i) => ({ partition: 0, value: `kafkajs tls ${i}` })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: 'sluice-tls-kafkajs', maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout with ${got.length}`)), 60000);
    consumer.run({ eachMessage: async ({ message }) => {
      got.push(message.value.toString());
      if (got.length >= N) { clearTimeout(t); resolve(); }
    } }).catch(reject);
  });
  await consumer.disconnect();
  const ok = got.length === N && got.every((v, i) => v === `kafkajs tls ${i}`);
  console.log(JSON.stringify({ ok, n: got.length }));
  process.exit(0);
})().catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e) })); process.exit(0); });
"""


@pytest.mark.broker_config({"group.initial.rebalance.delay.ms": 0})
def test_kafkajs_over_ssl(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    res = subprocess.run(["node", "-e", KAFKAJS_SCRIPT, b.bootstrap, str(pki.ca_pem), "js-tls"],
                         cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ok"], f"kafkajs over TLS: {out} {res.stderr[-2000:]}"


# ---- mutual TLS ---------------------------------------------------------------------------

@pytest.mark.broker_config({"ssl.client.auth": "required"})
def test_mtls_required_maps_principal_and_refuses_bad_certs(tls_broker, tmp_path):
    b, pki = tls_broker, tls_broker.pki
    # A client certificate from the right CA: librdkafka produces and consumes.
    acked = h.ck_produce(b.bootstrap, "mtls", h.make_records("mtls", 50, partitions=1),
                         extra=ssl_conf(pki))
    assert sum(len(v) for v in acked.values()) == 50
    wait_until(lambda: any('msg="tls handshake complete" listener=SSL' in x and
                           f'principal="User:{ALICE_DN}"' in x for x in b.log_text().splitlines()),
               10, "the mapped principal logged with its listener")

    other = tlsutil.CA("CN=Other CA,O=Elsewhere")
    mallory = tlsutil.write_cert_and_key(tmp_path, "mallory", *other.issue("CN=mallory"))
    expired = tlsutil.write_cert_and_key(tmp_path, "expired",
                                         *pki.ca.issue("CN=old,O=acme", expired=True))
    for what, cert in (("another CA", mallory), ("an expired certificate", expired),
                       ("no certificate", (None, None))):
        assert refused(b, client_ctx(pki, *cert)), f"{what} was accepted"
        good_client_works(b)
    log = b.log_text()
    assert "tls handshake failed" in log
    assert "certificate" in log  # reasons: unknown ca / expired / peer did not return one
    # A real client with the wrong certificate fails too (kcat gives up on metadata).
    res = subprocess.run(["kcat", "-b", b.bootstrap, "-L", "-m", "5",
                          "-X", "security.protocol=ssl", "-X", f"ssl.ca.location={pki.ca_pem}",
                          "-X", f"ssl.certificate.location={mallory[0]}",
                          "-X", f"ssl.key.location={mallory[1]}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    good_client_works(b)


@pytest.mark.broker_config({"ssl.client.auth": "requested",
                            "ssl.principal.mapping.rules":
                                "RULE:^CN=([a-z]+),OU=(.*?),O=.*$/$1@$2/U,DEFAULT"})
def test_mtls_requested_with_mapping_rules(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    assert tls_api_versions(b, client_ctx(pki, pki.alice_crt, pki.alice_key))
    assert tls_api_versions(b, client_ctx(pki))  # requested: no certificate is fine
    wait_until(lambda: 'principal="User:ALICE@ENG"' in b.log_text(), 10, "mapped principal")
    assert 'principal="none"' in b.log_text()


def test_listener_override_makes_client_auth_required(tmp_path, pki):
    b = Broker(tmp_path, {"ssl.keystore.location": pki.keystore,
                          "ssl.truststore.location": pki.ca_pem,
                          "listener.name.secure.ssl.client.auth": "required",
                          "listener.security.protocol.map": "SECURE:SSL"})
    b.config["listeners"] = f"SECURE://{b.bootstrap}"
    b.write_config()
    b.start()
    b.pki = pki
    try:
        assert refused(b, client_ctx(pki))
        good_client_works(b)
    finally:
        b.stop()


# ---- refusals that leave the broker serving -----------------------------------------------

def test_old_tls_versions_refused(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    for flag in ("-tls1_1", "-tls1"):
        res = subprocess.run(["openssl", "s_client", "-connect", b.bootstrap, flag,
                              "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", str(pki.ca_pem)],
                             input="", capture_output=True, text=True, timeout=30)
        out = res.stdout + res.stderr
        assert "Cipher is (NONE)" in out or res.returncode != 0, out[-2000:]
        assert "New, TLSv1" not in out
        good_client_works(b)
    wait_until(lambda: "unsupported protocol" in b.log_text(), 10,
               "the broker to log the refused protocol version")
    # Python's own attempt is refused too (locally or by the broker, depending on OpenSSL).
    ctx = client_ctx(pki)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        return
    assert refused(b, ctx)
    good_client_works(b)


@pytest.mark.broker_config({"sluice.authentication.timeout.ms": 1000})
def test_stalled_handshake_times_out_on_ssl_listener(tls_broker):
    # An SSL listener needs no SASL, so only the TLS handshake is bounded here.
    b = tls_broker
    t0 = time.monotonic()
    with socket.create_connection((b.host, b.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello record, then nothing
        try:
            closed = s.recv(4096) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
    assert closed, "a stalled TLS handshake outlived sluice.authentication.timeout.ms"
    assert time.monotonic() - t0 >= 0.9
    wait_until(lambda: 'reason="authentication timeout"' in b.log_text(), 10,
               "the timeout logged")
    # A client that completes the handshake keeps its connection past the deadline.
    with socket.create_connection((b.host, b.port), timeout=10) as s:
        with client_ctx(b.pki).wrap_socket(s, server_hostname="localhost") as tls:
            time.sleep(1.5)  # deliberately outlive the deadline: nothing to poll for
            tls.sendall(API_VERSIONS_V0)
            assert len(tls.recv(4096)) > 4, "an established TLS connection was closed"


def test_half_a_tls_record_does_not_stall_the_broker(tls_broker):
    # One client completes its handshake, then sends only the first half of a TLS record. The
    # broker must wait for the rest without spinning on it: another client is served meanwhile,
    # and the first is answered once the rest arrives.
    b = tls_broker
    ctx = client_ctx(b.pki)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with socket.create_connection((b.host, b.port), timeout=10) as s:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                inc.write(s.recv(65536))
        s.sendall(out.read())
        obj.write(API_VERSIONS_V0)
        rec = out.read()
        s.sendall(rec[:len(rec) // 2])
        assert tls_api_versions(b, client_ctx(b.pki)), \
            "another client was not served while one held half a TLS record"
        s.sendall(rec[len(rec) // 2:])
        while True:
            try:
                reply = obj.read(65536)
                break
            except ssl.SSLWantReadError:
                data = s.recv(65536)
                assert data, "the broker closed the connection instead of answering"
                inc.write(data)
        assert len(reply) > 4


def test_plaintext_bytes_on_tls_port(tls_broker):
    b = tls_broker
    with socket.create_connection((b.host, b.port), timeout=10) as s:
        s.sendall(API_VERSIONS_V0)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        else:
            pytest.fail("the broker kept a plaintext connection open on its TLS port")
    # Nothing Kafka came back: at most a TLS alert record (content type 21).
    assert data == b"" or data[0] == 0x15, data[:16]
    wait_until(lambda: "tls handshake failed" in b.log_text(), 10, "handshake failure logged")
    good_client_works(b)


def test_broker_refuses_to_start_on_bad_tls_config(tmp_path, pki):
    cases = [({"ssl.keystore.type": "JKS"}, "ssl.keystore.type"),
             ({"ssl.client.auth": "sometimes"}, "ssl.client.auth"),
             ({"ssl.enabled.protocols": "TLSv1.3,SSLv3"}, "ssl.enabled.protocols"),
             ({"ssl.keystore.location": str(tmp_path / "missing.pem")}, "missing.pem"),
             ({"ssl.principal.mapping.rules": "RULE:broken"}, "ssl.principal.mapping.rules")]
    for i, (over, needle) in enumerate(cases):
        d = tmp_path / f"case{i}"
        d.mkdir()
        conf = {"ssl.keystore.location": pki.keystore, "ssl.truststore.location": pki.ca_pem}
        conf.update(over)
        b = Broker(d, conf)
        b.config["listeners"] = f"SSL://{b.bootstrap}"
        b.write_config()
        rc = b.start_may_fail()
        if rc is None:
            b.stop()
            pytest.fail(f"broker started with {over}")
        assert rc != 0
        assert needle in b.log_text(), f"{over}: error does not name {needle}\n{b.log_tail()}"
        b.assert_no_sanitizer_report()


# ---- certificate rotation -----------------------------------------------------------------

@pytest.mark.broker_config({"sluice.ssl.reload.interval.ms": 200})
def test_certificate_rotation(tls_broker):
    b, pki = tls_broker, tls_broker.pki
    assert peer_serial(b, pki) == pki.serial
    # A connection that stays open across every rotation, and a producer that keeps producing.
    old = tls_connect(b, client_ctx(pki))
    assert api_versions(old)
    from confluent_kafka import Producer
    prod = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 1,
                     **ssl_conf(pki, cert=False)})
    delivered, errors = [], []

    def report(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    def produce(n):
        for i in range(n):
            prod.produce("rotate", value=b"v%d" % i, partition=0, on_delivery=report)
        assert prod.flush(30) == 0

    produce(20)

    # 1. SIGHUP after replacing the file.
    cert2, key2 = pki.ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(pki.keystore, cert2, key2, [pki.ca.cert])
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: peer_serial(b, pki) == cert2.serial_number, 10, "new certificate served")
    assert "certificate reloaded" in b.log_text()
    assert api_versions(old), "the connection opened before the rotation stopped working"
    produce(20)

    # 2. No signal: the file watch notices.
    cert3, key3 = pki.ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(pki.keystore, cert3, key3, [pki.ca.cert])
    wait_until(lambda: peer_serial(b, pki) == cert3.serial_number, 15,
               "the changed keystore to be picked up without a signal")
    assert api_versions(old)

    # 3. A broken replacement: the previous certificate stays, the reason names the file.
    Path(pki.keystore).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "certificate reload failed" in b.log_text(), 10, "reload failure logged")
    line = [x for x in b.log_text().splitlines() if "certificate reload failed" in x][-1]
    assert str(pki.keystore) in line and "not base64" not in line
    assert peer_serial(b, pki) == cert3.serial_number
    assert api_versions(old)
    produce(20)
    prod.flush(10)
    old.close()
    assert not errors and sorted(delivered) == list(range(60))
