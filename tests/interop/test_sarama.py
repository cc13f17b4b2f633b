"""Old clients: Shopify/sarama (Debian's golang-github-shopify-sarama-dev 1.22, built offline in
GOPATH mode) at its default protocol version V0_8_2_0 (Produce v0 / Fetch v0, magic-0 message
sets) and at V0_10_2_0 (Produce v2 / Fetch v3, magic 1), with every codec those versions allow.
What sarama writes must read back through sarama and through a modern client (confluent-kafka,
which sees the up-converted magic-2 batches); what a modern client writes must read back through
old sarama (down-conversion).

Until the broker advertises Produce v0 and Fetch v0 (the handler hooks from
docs/legacy-formats.md), these tests xfail with that reason instead of failing."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import helpers as h
import kproto as kp
from conftest import REPO

SRC = Path(__file__).resolve().parent / "sarama" / "main.go"
GOPATH_SYS = "/usr/share/gocode"
SARAMA_DIR = Path(GOPATH_SYS) / "src/github.com/Shopify/sarama"
CACHE_DIR = REPO / "build" / "interop"
N = 2000
BASE_TS = 1600000000000

# (sarama version flag, codec) pairs; sarama itself refuses lz4 below 0.10. zstd is left out:
# sarama 1.22 sends it in Produce v3, which Kafka (and Sluice) refuse below v7.
CASES = [("default", "none"), ("default", "gzip"), ("default", "snappy"),
         ("0.10.2.0", "none"), ("0.10.2.0", "gzip"), ("0.10.2.0", "snappy"),
         ("0.10.2.0", "lz4")]

API_PRODUCE, API_FETCH = 0, 1
# What sarama 1.22's ConsumerGroup sends at V0_10_2_0: OffsetCommit v2, OffsetFetch v1,
# FindCoordinator v0, JoinGroup v1, Heartbeat v0, LeaveGroup v0, SyncGroup v0.
GROUP_APIS = {8: 2, 9: 1, 10: 0, 11: 1, 12: 0, 13: 0, 14: 0}


def value(i, tag):
    """Mirrors value() in sarama/main.go."""
    return (f"v-{i}-{tag}|" * (1 + i % 7)).encode()


@pytest.fixture(scope="session")
def sarama_bin():
    """Builds the probe once per source/toolchain (cached under build/interop)."""
    go = shutil.which("go")
    if go is None or not SARAMA_DIR.is_dir():
        pytest.skip("go or sarama missing: apt-get install golang-go "
                    "golang-github-shopify-sarama-dev (scripts/setup.sh)")
    gover = subprocess.run([go, "version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(SRC.read_bytes() + gover.encode()).hexdigest()[:16]
    out = CACHE_DIR / f"sarama-probe-{digest}"
    if out.exists():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "src" / "sluice-sarama-probe"
        pkg.mkdir(parents=True)
        shutil.copy(SRC, pkg / "main.go")
        env = dict(os.environ, GO111MODULE="off", GOPATH=f"{tmp}:{GOPATH_SYS}", GOFLAGS="",
                   GOCACHE=str(CACHE_DIR / "gocache"), GOPROXY="off", CGO_ENABLED="1")
        built = Path(tmp) / "probe"
        r = subprocess.run([go, "build", "-o", str(built), "."], cwd=pkg, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"go build failed:\n{r.stdout}\n{r.stderr}"
        tmp_out = out.with_suffix(f".{os.getpid()}")
        shutil.copy(built, tmp_out)
        os.replace(tmp_out, out)  # atomic, so concurrent sessions never run a partial binary
    return out


def advertised(broker):
    with kp.Conn(broker.bootstrap) as c:
        return c.versions()


def need_legacy(broker):
    v = advertised(broker)
    for key in (API_PRODUCE, API_FETCH):
        if v.get(key, (99, 99))[0] > 0:
            pytest.xfail(f"broker does not advertise api {key} v0 yet: the legacy hooks are not "
                         "in the handlers (docs/legacy-formats.md)")


def probe(binary, broker, *args, timeout=180, check=True):
    cmd = [str(binary), "-brokers", broker.bootstrap, "-timeout", str(timeout - 30), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"probe printed no summary (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}"
    s = json.loads(lines[-1])
    if check:
        assert r.returncode == 0 and not s["errors"], \
            f"sarama {' '.join(args)}: {s}\n{r.stderr[-3000:]}\n{broker.log_tail(30)}"
        broker.assert_no_sanitizer_report()
    return s


@pytest.mark.parametrize("version,codec", CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_sarama_roundtrip(broker, sarama_bin, version, codec):
    need_legacy(broker)
    topic = f"sarama-{version}-{codec}"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    t0 = int(time.time() * 1000)
    common = ["-topic", topic, "-n", str(N), "-codec", codec, "-version", version,
              "-tag", topic, "-base-ts", str(BASE_TS)]
    s = probe(sarama_bin, broker, "-mode", "produce", "-batch", "50", *common)
    assert (s["count"], s["first_offset"], s["last_offset"]) == (N, 0, N - 1)
    t1 = int(time.time() * 1000)
    s = probe(sarama_bin, broker, "-mode", "consume", *common)
    assert s["count"] == N
    if version != "default":
        assert s["timestamp_checks"] == N
    # A modern client reads the stored (up-converted) batches: same keys, values, offsets.
    got = sorted(h.ck_consume(broker.bootstrap, topic, {0: N}), key=lambda g: g.offset)
    assert [g.offset for g in got] == list(range(N))
    for i, g in enumerate(got):
        assert g.key == f"k-{i}".encode() and g.value == value(i, topic), f"offset {i}"
        assert g.headers == ()
        if version == "default":
            # Magic 0 carries no timestamp: the broker's receive time stands in.
            assert t0 - 1000 <= g.timestamp <= t1 + 1000, f"offset {i}: {g.timestamp}"
        else:
            assert g.timestamp == BASE_TS + i, f"offset {i}"


@pytest.mark.parametrize("version", ["default", "0.10.2.0"])
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_sarama_reads_modern_producer(broker, sarama_bin, version, codec):
    """confluent-kafka writes magic-2 batches (with headers, which old formats cannot carry);
    old sarama must get them down-converted, offsets and payloads intact."""
    need_legacy(broker)
    topic = f"modern-{version}-{codec}"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    records = [h.Rec(0, f"k-{i}".encode(), value(i, topic), (("h", b"x"),), BASE_TS + i)
               for i in range(N)]
    acked = h.ck_produce(broker.bootstrap, topic, records, codec)
    assert sorted(acked[0]) == list(range(N))
    s = probe(sarama_bin, broker, "-mode", "consume", "-topic", topic, "-n", str(N),
              "-version", version, "-tag", topic, "-base-ts", str(BASE_TS))
    assert s["count"] == N


def test_sarama_zstd_data_refused_to_old_consumers(broker, sarama_bin):
    """zstd cannot be expressed below magic 2: a Fetch v0-3 gets UNSUPPORTED_COMPRESSION_TYPE,
    as from Kafka, rather than silently different bytes."""
    need_legacy(broker)
    topic = "zstd-old-consumer"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    # Compressible, or librdkafka would send it uncompressed.
    records = [h.Rec(0, b"k", b"zstd value " * 200, (), BASE_TS)]
    h.ck_produce(broker.bootstrap, topic, records, "zstd")
    s = probe(sarama_bin, broker, "-mode", "consume", "-topic", topic, "-n", "1",
              "-version", "0.10.2.0", timeout=60, check=False)
    assert s["count"] == 0
    assert any("compression" in e.lower() for e in s["errors"]), s
    broker.assert_no_sanitizer_report()


def test_sarama_consumer_group(broker, sarama_bin):
    need_legacy(broker)
    v = advertised(broker)
    missing = [k for k, ver in GROUP_APIS.items()
               if not (k in v and v[k][0] <= ver <= v[k][1])]
    if missing:
        pytest.skip(f"broker lacks the group APIs sarama's ConsumerGroup needs: {missing} "
                    "(group coordinator not merged yet)")
    topic = "sarama-group"
    h.ck_create_topic(broker.bootstrap, topic, 1)
    common = ["-topic", topic, "-n", str(N), "-version", "0.10.2.0", "-tag", topic,
              "-base-ts", str(BASE_TS)]
    probe(sarama_bin, broker, "-mode", "produce", "-codec", "gzip", *common)
    s = probe(sarama_bin, broker, "-mode", "group", "-group", "g1", *common)
    assert s["count"] == N
