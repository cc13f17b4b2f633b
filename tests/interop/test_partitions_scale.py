"""Partition capacity (issue 10 item 3): partitions are bounded by disk, not by the file limit;
creating many partitions does not stall other connections; a creation that cannot complete
leaves nothing behind and says why in the log."""
import errno
import os
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import helpers as h
import kproto as kp
from conftest import Broker, wait_until


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
    """A broker whose creation of one segment file fails with ENOSPC (an LD_PRELOAD shim): the
    partition directory is made, then the disk "fills" in the middle of the partition."""
    shim = tmp_path / "open_fail.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), SHIM_SRC, "-ldl"],
                   check=True)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("SLUICE_TEST_OPEN_FAIL_MATCH", "full-7/00000000000000000000.timeindex")
    monkeypatch.setenv("SLUICE_TEST_OPEN_FAIL_ERRNO", str(errno.ENOSPC))
    opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":verify_asan_link_order=0")
    b = Broker(tmp_path)
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
