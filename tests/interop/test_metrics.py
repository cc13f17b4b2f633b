"""The metrics endpoint (docs/metrics.md) against the tools that consume it: a real Prometheus
server scraping it, `promtool check metrics` on its exposition, headless Chromium on the status
page; plus its own guarantees: bearer token, https with the provisioned CA, health and readiness,
and the request limits a hostile client meets."""
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import Broker, finish_broker, free_port, wait_until

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
CHROMIUM = "/usr/bin/chromium"

# The names the alert rules and the status page rely on (COMMON contract, docs/metrics.md).
AGREED = {
    "sluice_authentication_failures_total": "counter",
    "sluice_authentication_successes_total": "counter",
    "sluice_authorization_denials_total": "counter",
    "sluice_tls_handshake_failures_total": "counter",
    "sluice_certificate_expiry_timestamp_seconds": "gauge",
    "sluice_detections_total": "counter",
    "sluice_guard_blocked_addresses": "gauge",
    "sluice_connections_refused_total": "counter",
    "sluice_audit_events_written_total": "counter",
    "sluice_audit_events_dropped_total": "counter",
    "sluice_audit_requests_refused_total": "counter",
    "sluice_audit_lag_seconds": "gauge",
    "sluice_audit_failing": "gauge",
    "sluice_disk_free_bytes": "gauge",
    "sluice_disk_total_bytes": "gauge",
    "kafka_server_brokertopicmetrics_bytesin_total": "counter",
    "kafka_server_brokertopicmetrics_bytesout_total": "counter",
    "kafka_server_brokertopicmetrics_messagesin_total": "counter",
    "kafka_server_replicamanager_underreplicatedpartitions": "gauge",
    "kafka_server_replicamanager_partitioncount": "gauge",
    "kafka_controller_kafkacontroller_offlinepartitionscount": "gauge",
    "kafka_controller_kafkacontroller_activecontrollercount": "gauge",
    "kafka_server_socketservermetrics_connections": "gauge",
    "kafka_log_log_size": "gauge",
    "kafka_consumergroup_lag": "gauge",
    "sluice_request_latency_seconds": "histogram",
    "sluice_fsync_latency_seconds": "histogram",
}


def metrics_url(b):
    """The endpoint's base URL, from the broker's "listening" line (the port is free-picked)."""
    def find():
        m = re.findall(r'sub=metrics msg="listening" url=(\S+)', b.log_text())
        return m[-1] if m else None
    return wait_until(find, 30, "the metrics endpoint's listening line")


def http(url, token=None, cafile=None, method="GET"):
    """(status, headers, body text) of one request."""
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def produce(b, topic, n=20, size=100):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(n):
        p.produce(topic, value=b"v" * size, key=str(i).encode(),
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(60) == 0, "records not delivered"
    assert not errors, errors


def consume_and_commit(b, topic, group, n):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []

        def poll():
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
            return len(got) >= n
        wait_until(poll, 60, f"{n} records of {topic}")
        c.commit(asynchronous=False)
    finally:
        c.close()


def start_expect_failure(b):
    """Starts `b`, which must refuse to start: its exit code. The Kafka listeners are bound
    before the metrics endpoint, so the broker may accept a connection for a moment before it
    exits; that still counts as a refusal once it has exited."""
    rc = b.start_may_fail()
    if rc is None:
        wait_until(lambda: b.proc.poll() is not None, 30, "the broker to exit")
        b.exit_expected = True
        rc = b.proc.returncode
    return rc


def samples(body, name):
    """{labels text: value} of metric `name` in an exposition body."""
    out = {}
    for line in body.splitlines():
        m = re.match(re.escape(name) + r'(\{[^}]*\})? (\S+)$', line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


class Proc:
    """A server process a test starts; stop() kills it (finalizers call it whatever happened)."""

    def __init__(self, args, log_path):
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()

    def tail(self):
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def procs(request):
    started = []
    request.addfinalizer(lambda: [p.stop() for p in reversed(started)])

    def start(args, log_path):
        p = Proc(args, log_path)
        started.append(p)
        return p
    return start


@pytest.fixture
def make_broker(request, tmp_path):
    """Brokers whose configuration the test completes first (token files, https); each is
    stopped and checked like the `broker` fixture's."""
    made = []

    def make(overrides=None, name="b"):
        d = tmp_path / name
        d.mkdir()
        b = Broker(d, overrides or {})
        made.append(b)
        return b
    yield make
    for b in made:
        finish_broker(b)


def test_prometheus_scrapes_bytes_in(broker, procs, tmp_path):
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"{PROMETHEUS} missing (Debian package prometheus)")
    url = metrics_url(broker)
    target = urllib.parse.urlparse(url).netloc
    topic = "prom-bytes"
    produce(broker, topic)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                   "scrape_configs:\n  - job_name: sluice\n    scrape_interval: 1s\n"
                   "    scrape_timeout: 1s\n"
                   f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    prom = procs([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log")
    query = f'kafka_server_brokertopicmetrics_bytesin_total{{topic="{topic}"}}'
    api = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})

    def value():
        assert prom.p.poll() is None, f"prometheus exited\n{prom.tail()}"
        with urllib.request.urlopen(api, timeout=5) as r:
            res = json.load(r)
        assert res["status"] == "success", res
        vals = [float(s["value"][1]) for s in res["data"]["result"]]
        return vals and max(vals) > 0 and vals
    vals = wait_until(value, 90, f"Prometheus to return {query} > 0", interval=0.5)
    assert max(vals) >= 20 * 100, f"bytes in {vals} below the record bytes produced"
    # The scrape target is healthy in Prometheus' own view too.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
        targets = json.load(r)["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets


def test_exposition_passes_promtool_and_has_every_agreed_name(broker, tmp_path):
    url = metrics_url(broker)
    produce(broker, "lint-topic", n=10)
    consume_and_commit(broker, "lint-topic", "lint-group", 5)
    status, headers, body = http(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    (tmp_path / "metrics.txt").write_text(body)
    for name, typ in AGREED.items():
        assert f"# TYPE {name} {typ}\n" in body, f"{name} ({typ}) missing"
    # Values that follow from what was done: 10 records in, a committed group with lag.
    assert samples(body, "kafka_server_brokertopicmetrics_messagesin_total") == \
        {'{topic="lint-topic"}': 10.0}
    assert samples(body, "kafka_server_brokertopicmetrics_bytesin_total")['{topic="lint-topic"}'] \
        >= 1000
    lag = samples(body, "kafka_consumergroup_lag")
    assert lag.get('{group="lint-group",topic="lint-topic",partition="0"}') is not None, lag
    assert samples(body, "kafka_server_replicamanager_partitioncount")[""] >= 1
    assert samples(body, "kafka_controller_kafkacontroller_activecontrollercount")[""] == 1
    assert samples(body, 'sluice_request_latency_seconds_count')['{request="Produce"}'] >= 1
    assert samples(body, "sluice_fsync_latency_seconds_count")[""] >= 1

    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    # Neither a parse error nor a lint finding.
    assert r.returncode == 0 and not problems, problems


def test_bearer_token_guards_metrics_and_page_not_health(make_broker, tmp_path):
    token = "tok-" + "x" * 40
    tf = tmp_path / "token"
    tf.write_text(token + "\n")
    b = make_broker({"sluice.metrics.bearer.token.file": str(tf)})
    b.start()
    url = metrics_url(b)
    for path in ("/metrics", "/"):
        st, h, _ = http(url + path)
        assert st == 401 and h["WWW-Authenticate"].startswith("Bearer"), (path, st)
        assert http(url + path, token="wrong")[0] == 401
        assert http(url + path, token=token[:-1])[0] == 401
        assert http(url + path, token=token + "x")[0] == 401
        assert http(url + path, token=token)[0] == 200
    st, _, body = http(url + "/healthz")
    assert (st, body) == (200, "ok\n")
    assert http(url + "/readyz")[0] == 200
    assert token not in b.log_text(), "the token appeared in the broker log"


def test_missing_token_file_fails_start_naming_the_key(make_broker, tmp_path):
    b = make_broker({"sluice.metrics.bearer.token.file": str(tmp_path / "absent")})
    rc = start_expect_failure(b)
    assert rc != 0, "the broker started without its token file"
    assert "sluice.metrics.bearer.token.file" in b.log_text()


def test_https_with_the_provisioned_ca(make_broker):
    b = make_broker({"sluice.metrics.listener": "https://127.0.0.1:0"})
    b.start()
    url = metrics_url(b)
    assert url.startswith("https://127.0.0.1:")
    ca = b.secrets_dir / "ca.pem"
    assert ca.exists(), "no CA was provisioned for the https endpoint"
    st, _, body = http(url + "/healthz", cafile=str(ca))
    assert (st, body) == (200, "ok\n")
    st, _, body = http(url + "/metrics", cafile=str(ca))
    assert st == 200 and "# TYPE kafka_log_log_size gauge" in body
    # A client that does not trust the CA is refused by its own verification.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=10,
                               context=ssl.create_default_context())
    # Plain HTTP to the TLS port gets no answer.
    with pytest.raises(OSError):
        http(url.replace("https://", "http://") + "/healthz")


def test_https_certificate_reloads_and_its_expiry_is_exported(make_broker, tmp_path):
    """The endpoint's own certificate follows SIGHUP like the Kafka listeners' (no restart) and
    its notAfter is exported with listener="metrics"."""
    import signal
    import tlsutil
    d = tmp_path / "pki"
    d.mkdir()
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    ks = d / "metrics.pem"
    first, key = ca.issue("CN=localhost,O=Sluice Tests", server=True, days=10)
    tlsutil.write_keystore(ks, first, key, [ca.cert])
    b = make_broker({"sluice.metrics.listener": "https://127.0.0.1:0",
                     "sluice.metrics.ssl.keystore.location": ks,
                     # Only SIGHUP reloads here: the file check must not be what the test sees.
                     "sluice.ssl.reload.interval.ms": 0})
    b.start()
    url = metrics_url(b)

    def served_expiry():
        st, _, body = http(url + "/metrics", cafile=str(d / "ca.pem"))
        assert st == 200
        return samples(body, "sluice_certificate_expiry_timestamp_seconds").get(
            '{listener="metrics"}')
    assert served_expiry() == first.not_valid_after.replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp()
    second, key2 = ca.issue("CN=localhost,O=Sluice Tests", server=True, days=20)
    tlsutil.write_keystore(ks, second, key2, [ca.cert])
    b.proc.send_signal(signal.SIGHUP)
    want = second.not_valid_after.replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp()
    wait_until(lambda: served_expiry() == want, 20, "the reloaded certificate's expiry")
    # The new certificate is the one served, not only the one reported.
    pem = ssl.get_server_certificate(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    from cryptography import x509
    assert x509.load_pem_x509_certificate(pem.encode()).serial_number == second.serial_number
    assert 'msg="certificate reloaded" listener=metrics' in b.log_text()


def test_explicit_port_taken_fails_start_naming_the_key(make_broker):
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))
        hold.listen(1)
        port = hold.getsockname()[1]
        b = make_broker({"sluice.metrics.listener": f"http://127.0.0.1:{port}"})
        rc = start_expect_failure(b)
    assert rc != 0, "the broker started although its metrics port was taken"
    assert "sluice.metrics.listener" in b.log_text()


def test_default_port_taken_warns_and_runs(make_broker):
    with socket.socket() as hold:
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            hold.bind(("127.0.0.1", 9404))
        except OSError:
            pytest.skip("127.0.0.1:9404 is in use by another program")
        hold.listen(1)
        b = make_broker()
        del b.config["sluice.metrics.listener"]  # the default: 127.0.0.1:9404
        b.write_config()
        b.start()
        wait_until(lambda: "running without the metrics endpoint" in b.log_text(), 30,
                   "the warning that the default port is taken")
        produce(b, "still-serving", n=3)


def test_hostile_requests_are_bounded(broker):
    url = urllib.parse.urlparse(metrics_url(broker))
    addr = (url.hostname, url.port)

    def exchange(data, wait=30):
        with socket.create_connection(addr, timeout=wait) as s:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out
    assert exchange(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000).startswith(
        b"HTTP/1.1 431 ")
    assert exchange(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert exchange(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") \
        .startswith(b"HTTP/1.1 400 ")
    # A slow client (half a request head, then nothing) is closed by the server's deadline.
    t0 = time.monotonic()
    with socket.create_connection(addr, timeout=40) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHo")
        assert s.recv(100) == b"", "the server answered half a request"
    assert time.monotonic() - t0 < 30
    # A head trickled a byte at a time (the end of the head split across reads) is answered.
    with socket.create_connection(addr, timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for ch in b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            s.sendall(bytes([ch]))
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\nok\n"), out
    # Keep-alive: two requests on one connection, both answered.
    with socket.create_connection(addr, timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.count(b"HTTP/1.1 200 OK") == 2, out
    assert http(f"http://{url.netloc}/healthz")[0] == 200  # still serving


def page_number(dom, elem_id):
    m = re.search(r'id="' + re.escape(elem_id) + r'"[^>]*>([^<]*)<', dom)
    assert m, f"no element with id {elem_id} in the page"
    return float(m.group(1))


def test_status_page_in_headless_chromium(broker, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing")
    url = metrics_url(broker)
    produce(broker, "page-topic", n=25, size=200)
    consume_and_commit(broker, "page-topic", "page-group", 25)
    shot = tmp_path / "status-page.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}"]
    r = subprocess.run(base + ["--dump-dom", url + "/"], capture_output=True, text=True,
                       timeout=120)
    dom = r.stdout
    assert "<title>Sluice status</title>" in dom, (r.returncode, r.stderr[-2000:])
    assert page_number(dom, "bytes-in-total") >= 25 * 200
    assert page_number(dom, "messages-in-total") == 25
    assert page_number(dom, "bytes-out-total") > 0
    assert page_number(dom, "auth-failures-total") == 0
    assert page_number(dom, "denials-total") == 0
    assert 'id="connections-PLAINTEXT"' in dom and 'id="detections"' in dom
    r = subprocess.run(base + ["--window-size=1280,1000", f"--screenshot={shot}", url + "/"],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000, r.stderr[-2000:]
    art = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, art / "metrics-status-page.png")


def test_tls_listener_metrics(make_broker):
    """A TLS Kafka listener: its certificate's expiry is exported, and a client that fails the
    handshake is counted as a TLS handshake failure on that listener."""
    b = make_broker()
    b.config["listeners"] = f"SSL://{b.bootstrap}"
    b.write_config()
    b.start()
    url = metrics_url(b)
    body = http(url + "/metrics")[2]
    expiry = samples(body, "sluice_certificate_expiry_timestamp_seconds")
    assert expiry.get('{listener="SSL"}', 0) > time.time() + 86400, expiry
    for _ in range(3):
        with socket.create_connection((b.host, b.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n" * 20)  # not a ClientHello
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass

    def failures():
        got = samples(http(url + "/metrics")[2], "sluice_tls_handshake_failures_total")
        return sum(v for k, v in got.items() if 'listener="SSL"' in k) >= 3 and got
    wait_until(failures, 30, "three TLS handshake failures on the SSL listener")
    conns = samples(http(url + "/metrics")[2], "kafka_server_socketservermetrics_connections")
    assert conns == {'{listener="SSL"}': 0.0}, conns
