"""Round trips through real clients: each produces >= 10 000 records (keys, headers, explicit
timestamps where the client can set them) with each compression codec it supports into a
3-partition topic, then reads them back by assigned partition and offset, and compares them byte
for byte. A codec a client cannot use here is skipped with the reason."""
import json
import os
import subprocess
from pathlib import Path

import pytest

import helpers as h

N = 10_000
NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.mark.parametrize("codec", h.ALL_CODECS)
def test_confluent_kafka_roundtrip(broker, codec):
    topic = f"ck-{codec}"
    h.ck_create_topic(broker.bootstrap, topic, 3)
    records = h.make_records(topic, N)
    acked = h.ck_produce(broker.bootstrap, topic, records, codec)
    expected = h.expected_from_acks(acked, f"confluent-kafka/{codec}")
    assert sum(len(v) for v in expected.values()) == N
    # Per partition, offsets follow production order (one producer, no retries).
    assert expected == h.by_partition(records), "offset order differs from production order"
    got = h.ck_consume(broker.bootstrap, topic, {p: len(v) for p, v in expected.items()})
    h.verify(expected, got, f"confluent-kafka/{codec}")


@pytest.mark.parametrize("codec", h.ALL_CODECS)
def test_kafka_python_roundtrip(broker, codec):
    if not h.kp_codec_available(codec):
        pytest.skip(f"kafka-python: python module for {codec} missing (see scripts/setup.sh)")
    from kafka.admin import KafkaAdminClient, NewTopic
    topic = f"kp-{codec}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=15000)
    finally:
        admin.close()
    h.wait_topic_partitions(broker.bootstrap, topic, 3)
    records = h.make_records(topic, N)
    acked = h.kp_produce(broker.bootstrap, topic, records, codec)
    expected = h.expected_from_acks(acked, f"kafka-python/{codec}")
    assert expected == h.by_partition(records), "offset order differs from production order"
    counts = {p: len(v) for p, v in expected.items()}
    if codec == "zstd":
        # kafka-python 2.0.2 fetches with Fetch v4, and zstd needs Fetch v10: like Kafka, the
        # broker answers UNSUPPORTED_COMPRESSION_TYPE, so its records are read back with
        # librdkafka and the refusal itself is checked.
        import kproto as kp
        with kp.Conn(broker.bootstrap) as c:
            assert kp.fetch(c, topic, 0, 0, versions=range(4, 10))["error"] == 76
        got = h.ck_consume(broker.bootstrap, topic, counts)
    else:
        got = h.kp_consume(broker.bootstrap, topic, counts)
    h.verify(expected, got, f"kafka-python/{codec}")


@pytest.mark.parametrize("codec", h.ALL_CODECS)
def test_kcat_roundtrip(broker, codec):
    """kcat cannot set per-record timestamps or headers; it sends one fixed header set on every
    record, text keys and values, and the broker or librdkafka assigns CreateTime."""
    topic = f"kcat-{codec}"
    h.ck_create_topic(broker.bootstrap, topic, 3)
    per_p = N // 3 + 1
    expected = {}
    for p in range(3):
        lines = [f"k{p}-{i}\tkcat {codec} p{p} record {i} " + "x" * (i % 200)
                 for i in range(per_p)]
        expected[p] = lines
        res = subprocess.run(
            ["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-p", str(p), "-K", "\t",
             "-z", codec, "-H", "src=kcat", "-H", "codec=" + codec,
             "-X", "acks=all", "-X", "message.timeout.ms=60000"],
            input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"kcat produce p{p} failed: {res.stderr[-2000:]}"
    for p in range(3):
        res = subprocess.run(
            ["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-p", str(p), "-o", "beginning",
             "-e", "-J", "-q", "-c", str(per_p)],
            capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"kcat consume p{p} failed: {res.stderr[-2000:]}"
        msgs = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        assert len(msgs) == per_p, f"kcat p{p}: got {len(msgs)} records, want {per_p}"
        for i, (m, line) in enumerate(zip(msgs, expected[p])):
            key, value = line.split("\t", 1)
            assert m["offset"] == i, f"kcat p{p}: record #{i} at offset {m['offset']}"
            assert m["key"] == key and m["payload"] == value, f"kcat p{p} offset {i}: {m}"
            assert m.get("headers") == ["src", "kcat", "codec", codec], \
                f"kcat p{p} offset {i}: headers {m.get('headers')}"
            assert m["ts"] > 1_600_000_000_000, f"kcat p{p} offset {i}: timestamp {m['ts']}"


def run_node(script, bootstrap, *args, timeout=400):
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules missing: run scripts/setup.sh")
    res = subprocess.run(["node", str(NODE_DIR / script), bootstrap, *args], cwd=str(NODE_DIR),
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"})
    out = res.stdout.strip().splitlines()
    assert res.returncode == 0, \
        f"{script} exited {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    return json.loads(out[-1])


def check_node_result(result, name):
    """A node script prints {"codecs": {codec: {"ok": true, "records": n} | {"skipped": why}}}."""
    failed = {c: r for c, r in result["codecs"].items() if not r.get("ok") and "skipped" not in r}
    assert not failed, f"{name}: failed codecs: {failed}"
    ok = [c for c, r in result["codecs"].items() if r.get("ok")]
    assert "none" in ok and "gzip" in ok, f"{name}: none/gzip must pass: {result}"
    for c, r in result["codecs"].items():
        if r.get("ok"):
            assert r["records"] >= N, f"{name}/{c}: only {r['records']} records verified"
    return ok


@pytest.mark.timeout_s(420)
def test_kafkajs_roundtrip(broker):
    result = run_node("kafkajs_roundtrip.mjs", broker.bootstrap, str(N))
    ok = check_node_result(result, "kafkajs")
    skipped = {c: r["skipped"] for c, r in result["codecs"].items() if "skipped" in r}
    print(f"kafkajs verified codecs {ok}; skipped {skipped}")


@pytest.mark.timeout_s(420)
def test_platformatic_kafka_roundtrip(broker):
    result = run_node("platformatic_roundtrip.mjs", broker.bootstrap, str(N))
    ok = check_node_result(result, "@platformatic/kafka")
    skipped = {c: r["skipped"] for c, r in result["codecs"].items() if "skipped" in r}
    print(f"@platformatic/kafka verified codecs {ok}; skipped {skipped}")


def test_kcat_auto_created_topic(broker):
    """kcat producing to an unknown topic: Metadata auto-creation (num.partitions=1)."""
    lines = [f"auto-{i}" for i in range(500)]
    res = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", "kcat-auto",
                          "-X", "message.timeout.ms=30000"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", "kcat-auto", "-o",
                          "beginning", "-e", "-q", "-f", "%p %o %s\\n"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    got = res.stdout.splitlines()
    assert got == [f"0 {i} auto-{i}" for i in range(500)], got[:5]
