"""Partition capacity (issue 10 item 3): partitions are bounded by disk, not by the file limit;
creating many partitions does not stall other connections; a creation that cannot complete
leaves nothing behind and says why in the log."""
import errno
import os
import subprocess
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import helpers as h
import kproto as kp
from conftest import Broker, wait_until

TOPICS, PARTS = 20, 1000
NOFILE = 1024


def topic_names(bootstrap):
    with kp.Conn(bootstrap) as c:
        return set(kp.metadata(c, None)["topics"])


def create_error(fut, timeout=60):
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        return e.args[0]
    return None


def partition_dirs(data_dir, topic):
    return sorted(p for p in os.listdir(data_dir) if p.startswith(topic + "-"))


def test_failed_creation_is_atomic_and_logged(broker):
    """A partition directory that cannot be made (a file is in the way of partition 5) fails the
    whole creation: no partition directory stays, the registry does not list the topic, the
    broker log names the reason, and the same name can be created once the obstacle is gone."""
    (broker.data_dir / "blocked-5").write_bytes(b"in the way")
    a = h.ck_admin(broker.bootstrap)
    err = create_error(a.create_topics([NewTopic("blocked", 8, 1)], request_timeout=30)["blocked"])
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert "nothing was created" in err.str(), err.str()
    assert partition_dirs(broker.data_dir, "blocked") == ["blocked-5"], "orphan partition dirs"
    assert "blocked" not in topic_names(broker.bootstrap)
    meta = broker.data_dir / "sluice-topics.meta"
    assert not meta.exists() or "blocked" not in meta.read_text()
    log = broker.log_text()
    assert "topic creation failed" in log and "topic=blocked" in log, broker.log_tail()
    assert "Not a directory" in log or "File exists" in log, broker.log_tail()

    # The same for CreatePartitions: a file in the way of the third new partition.
    h.ck_create_topic(broker.bootstrap, "grow", partitions=2)
    (broker.data_dir / "grow-4").write_bytes(b"in the way")
    err = create_error(a.create_partitions([NewPartitions("grow", 6)], request_timeout=30)["grow"])
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert partition_dirs(broker.data_dir, "grow") == ["grow-0", "grow-1", "grow-4"]
    with kp.Conn(broker.bootstrap) as c:
        assert len(kp.metadata(c, ["grow"])["topics"]["grow"]["partitions"]) == 2
    assert "adding partitions failed" in broker.log_text()

    (broker.data_dir / "blocked-5").unlink()
    assert create_error(a.create_topics([NewTopic("blocked", 8, 1)], request_timeout=30)
                        ["blocked"]) is None
    assert partition_dirs(broker.data_dir, "blocked") == [f"blocked-{i}" for i in range(8)]
    broker.restart()
    assert "blocked" in topic_names(broker.bootstrap)


SHIM_SRC = os.path.join(os.path.dirname(__file__), "shim", "open_fail.c")


@pytest.fixture
def failing_broker(tmp_path, monkeypatch):
    """A broker at a file limit of 1024 whose creation of one segment file fails with ENOSPC (an
    LD_PRELOAD shim): the partition directory is made, then the disk "fills" in the middle of
    the partition."""
    shim = tmp_path / "open_fail.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), SHIM_SRC, "-ldl"],
                   check=True)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("SLUICE_TEST_OPEN_FAIL_MATCH", "full-7/00000000000000000000.timeindex")
    monkeypatch.setenv("SLUICE_TEST_OPEN_FAIL_ERRNO", str(errno.ENOSPC))
    opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":verify_asan_link_order=0")
    b = Broker(tmp_path, nofile=NOFILE)
    b.start()
    monkeypatch.delenv("LD_PRELOAD")  # the clients run without it
    yield b
    if b.alive():
        b.stop(check=True)
    else:
        b.assert_no_sanitizer_report()
        pytest.fail(f"broker died during the test\n{b.log_tail()}")


def test_disk_full_mid_creation_leaves_no_orphan(failing_broker):
    """ENOSPC creating partition 7's time index (after its directory and data file exist): the
    creation fails as a whole with KAFKA_STORAGE_ERROR, no directory of the topic is left, the
    log gives the reason; the broker serves on and restarts without the topic."""
    broker = failing_broker
    a = h.ck_admin(broker.bootstrap)
    err = create_error(a.create_topics([NewTopic("full", 12, 1)], request_timeout=30)["full"])
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert partition_dirs(broker.data_dir, "full") == [], "orphan partition directories"
    assert "full" not in topic_names(broker.bootstrap)
    log = broker.log_text()
    assert "No space left on device" in log, broker.log_tail()
    assert "topic creation failed" in log and "topic=full" in log, broker.log_tail()
    h.ck_create_topic(broker.bootstrap, "notfull", partitions=3)
    broker.restart()
    names = topic_names(broker.bootstrap)
    assert "notfull" in names and "full" not in names


@pytest.fixture
def limited_broker(tmp_path):
    """A broker whose file limit is 1024, soft and hard (it cannot raise it)."""
    b = Broker(tmp_path, nofile=NOFILE)
    b.start()
    yield b
    if b.alive():
        b.stop(check=True)
    else:
        b.assert_no_sanitizer_report()
        pytest.fail(f"broker died during the test (exit {b.proc.returncode})\n{b.log_tail()}")


class ApiVersionsProbe:
    """Another connection asking ApiVersions in a loop; records each round trip."""

    def __init__(self, bootstrap):
        self.conn = kp.Conn(bootstrap)
        self.lat = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            kp.api_versions(self.conn)
            self.lat.append(time.monotonic() - t0)
            self.stop.wait(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.thread.join(timeout=30)
        self.conn.close()


def consume_sample(bootstrap, want, timeout=60):
    """Reads every (topic, partition) of `want` from offset 0 until it has as many records as
    `want` lists for it; returns {(topic, partition): [values]}."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale-unused",
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.wait.max.ms": 50})
    try:
        c.assign([TopicPartition(t, p, 0) for t, p in want])
        got = {}
        total = sum(len(v) for v in want.values())
        deadline = time.monotonic() + timeout
        while sum(len(v) for v in got.values()) < total:
            assert time.monotonic() < deadline, f"consumed {len(got)} of {len(want)} partitions"
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                got.setdefault((m.topic(), m.partition()), []).append(m.value())
        return got
    finally:
        c.close()


def create_all(admin, names, timeout=120):
    fs = admin.create_topics([NewTopic(n, PARTS, 1) for n in names], request_timeout=timeout,
                             operation_timeout=timeout)
    for n, f in fs.items():
        assert create_error(f, timeout) is None, n


@pytest.mark.timeout_s(240)
def test_20000_partitions_at_file_limit_1024(limited_broker):
    """At a file limit of 1024 (which once fit about 250 partitions), 20 topics of 1000
    partitions are created; another connection's ApiVersions stays under 500 ms throughout
    (creation once blocked the loop for seconds); 15 partitions of every topic (more files than
    the descriptor cache holds) are produced to with acks=all and read back; a deletion removes
    its 1000 directories; a restart at the same limit reopens the rest and the data reads back."""
    broker = limited_broker
    log = broker.log_text()
    assert f"soft={NOFILE}" in log and "bounded by disk" in log, broker.log_tail()
    names = [f"scale{i:02d}" for i in range(TOPICS)]
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 60000})
    t0 = time.monotonic()
    with ApiVersionsProbe(broker.bootstrap) as probe:
        for k in range(0, TOPICS, 5):
            create_all(admin, names[k:k + 5])  # 5 000 partitions per CreateTopics
        # A request answered after the creations still counts; so does one not answered yet.
        probe.stop.set()
        probe.thread.join(timeout=30)
    took = time.monotonic() - t0
    assert len(probe.lat) >= 10, f"probe ran {len(probe.lat)} times in {took:.1f}s"
    worst = max(probe.lat)
    print(f"created {TOPICS * PARTS} partitions in {took:.1f}s; ApiVersions: "
          f"{len(probe.lat)} calls, worst {worst * 1000:.0f} ms")
    assert worst < 0.5, f"ApiVersions took {worst * 1000:.0f} ms during CreateTopics"

    with kp.Conn(broker.bootstrap) as c:
        md = kp.metadata(c, None)["topics"]
    for n in names:
        assert n in md and len(md[n]["partitions"]) == PARTS, n
    dirs = [d for d in os.listdir(broker.data_dir) if d.startswith("scale")]
    assert len(dirs) == TOPICS * PARTS

    # 15 partitions of every topic: 300 active segments, 900 files, more than the cache holds.
    from confluent_kafka import Producer
    sample = {n: sorted({0, PARTS - 1} | {(7 + 67 * k + 13 * i) % PARTS for k in range(13)})
              for i, n in enumerate(names)}
    assert all(len(ps) == 15 for ps in sample.values())
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": False, "message.timeout.ms": 60000})
    errors = []
    for rnd in range(2):
        for n, ps in sample.items():
            for part in ps:
                p.produce(n, partition=part, value=f"{n}/{part}/{rnd}".encode(),
                          on_delivery=lambda err, m: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:5]
    want = {(n, part): [f"{n}/{part}/{r}".encode() for r in range(2)]
            for n, ps in sample.items() for part in ps}
    assert consume_sample(broker.bootstrap, want) == want

    # Deletion removes every directory of the topic (on the worker) before it is answered.
    fs = admin.delete_topics([names[0]], operation_timeout=60, request_timeout=60)
    fs[names[0]].result(timeout=60)
    assert not [d for d in os.listdir(broker.data_dir) if d.startswith(names[0] + "-")]
    assert names[0] not in topic_names(broker.bootstrap)

    # A restart at the same limit reopens all 19 000 partitions, the data still reads.
    t0 = time.monotonic()
    broker.restart()
    print(f"restart with {(TOPICS - 1) * PARTS} partitions: {time.monotonic() - t0:.1f}s")
    with kp.Conn(broker.bootstrap) as c:
        md = kp.metadata(c, None)["topics"]
    assert all(len(md[n]["partitions"]) == PARTS for n in names[1:])
    left = {k: v for k, v in want.items() if k[0] != names[0]}
    assert consume_sample(broker.bootstrap, left) == left


def test_stop_during_large_creation(broker):
    """SIGTERM while a CreateTopics of 3000 partitions is being worked on: a clean exit (no
    sanitizer report), and after a restart the topic is either complete or absent with no
    directory left."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 60000})
    admin.create_topics([NewTopic("midstop", 3000, 1)], request_timeout=60)
    wait_until(lambda: partition_dirs(broker.data_dir, "midstop"), 30, "creation under way")
    broker.stop(check=True)
    broker.start()
    with kp.Conn(broker.bootstrap) as c:
        md = kp.metadata(c, None)["topics"]
    dirs = partition_dirs(broker.data_dir, "midstop")
    if "midstop" in md:
        assert len(md["midstop"]["partitions"]) == 3000
        assert len(dirs) == 3000
    else:
        assert dirs == [], f"{len(dirs)} orphan directories"
