"""The group-offsets log (`__sluice_groups-0`) is compacted by the log cleaner like a compacted
topic (docs/compaction.md, "Internal logs"): with small offsets.topic.segment.bytes and a fast
cleaner, a client committing many offsets over few partitions leaves a small log, and the
offsets it committed last read back after a restart and after kill -9 during cleaning. Encryption
at rest on (the default: the log is sealed under the system key) and off."""
import re

import pytest

import helpers as h
from conftest import wait_until

GROUP_LOG = "__sluice_groups-0"
CFG = {"offsets.topic.segment.bytes": 4096, "log.cleaner.backoff.ms": 100}
PARTS = 4


def both(cfg):
    return pytest.mark.parametrize("enc", [
        pytest.param(True, id="encrypted", marks=pytest.mark.broker_config(
            dict(cfg, **{"sluice.encryption.enable": "true"}))),
        pytest.param(False, id="plaintext", marks=pytest.mark.broker_config(
            dict(cfg, **{"sluice.encryption.enable": "false"})))])


def group_log_bytes(broker):
    d = broker.data_dir / GROUP_LOG
    return sum(f.stat().st_size for f in d.glob("*.log"))


def consumer(broker, group):
    from confluent_kafka import Consumer
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                     "enable.auto.commit": False})


def commit_rounds(broker, group, topic, rounds, start, parts=PARTS):
    """`rounds` synchronous commits of all partitions, offsets start..start+rounds-1; returns
    the offsets committed last."""
    from confluent_kafka import TopicPartition
    c = consumer(broker, group)
    try:
        for r in range(rounds):
            tps = [TopicPartition(topic, p, start + r) for p in range(parts)]
            res = c.commit(offsets=tps, asynchronous=False)
            assert all(tp.error is None for tp in res), res
    finally:
        c.close()
    return {p: start + rounds - 1 for p in range(parts)}


def committed(broker, group, topic, parts=PARTS):
    from confluent_kafka import TopicPartition
    c = consumer(broker, group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=30)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


def group_cleans_in(text):
    """Records dropped by each finished clean of the offsets log in broker log `text`."""
    return [int(m.group(1)) for m in re.finditer(
        r'msg="internal log cleaned" log=' + GROUP_LOG + r' .*?records_dropped=(\d+)', text)]


def group_cleans(broker):
    return group_cleans_in(broker.log_text())


# 4 KiB segments: the cleaner merges the small segments it leaves (docs/compaction.md), so what
# stays is the live commits plus a few segments' headers and empty batches, not one per segment
# ever rolled.
@both(CFG)
def test_many_commits_leave_a_small_offsets_log(broker, enc):
    h.ck_create_topic(broker.bootstrap, "t", PARTS)
    rounds = 1500
    want = commit_rounds(broker, "busy", "t", rounds, 0)
    # Every commit is one batch of 4 records of at least 50 bytes each: uncleaned, the log holds
    # rounds * 4 * 50 bytes and more.
    raw = rounds * PARTS * 50
    # Merged, the log gets well under raw / 20 (about raw / 40 measured, both variants); without
    # merging the encrypted one stayed near raw / 5.
    wait_until(lambda: sum(group_cleans(broker)) > rounds * PARTS // 2 or None, 60,
               "the cleaner drops superseded commits of the offsets log")
    wait_until(lambda: group_log_bytes(broker) < raw // 20 or None, 60,
               "the offsets log shrinks")
    assert committed(broker, "busy", "t") == want
    print(f"raw>={raw} now={group_log_bytes(broker)} cleans={len(group_cleans(broker))} "
          f"segments={len(list((broker.data_dir / GROUP_LOG).glob('*.log')))}")
    broker.restart()
    assert committed(broker, "busy", "t") == want
    # Still committing and cleaning after the restart.
    want = commit_rounds(broker, "busy", "t", 200, rounds)
    assert committed(broker, "busy", "t") == want
    broker.restart()
    assert committed(broker, "busy", "t") == want
    assert 'msg="compacted offsets log"' not in broker.log_text()  # no hand compaction


@both(CFG)
def test_kill9_during_cleaning_keeps_committed_offsets(broker, enc):
    # Many partitions per commit: each round writes a few hundred KiB over many segments, so a
    # clean takes a while and a kill -9 can land in it.
    parts = 64
    h.ck_create_topic(broker.bootstrap, "t", parts)
    started = 'msg="clean started" log=' + GROUP_LOG
    want = {}
    start = 0
    kills = mid = 0
    for i in range(5):
        n = broker.log_text().count(started)
        want = commit_rounds(broker, "crashy", "t", 60, start, parts)
        start += 60
        # kill -9 as soon as the log says a clean started (polled; its timing varies run to run)
        wait_until(lambda: broker.log_text().count(started) > n or None, 60,
                   "a clean of the offsets log starts", interval=0.002)
        text = broker.log_text()
        broker.kill9()
        kills += 1
        mid += text.count(started) > len(group_cleans_in(text))
        broker.start()
        assert committed(broker, "crashy", "t", parts) == want, \
            f"round {i}: offsets lost after kill -9"
    # The cleaner finishes after the kills and the offsets stay.
    raw = start * parts * 50
    wait_until(lambda: group_log_bytes(broker) < raw // 5 or None, 60,
               "the offsets log is cleaned after the kills")
    broker.restart()
    assert committed(broker, "crashy", "t", parts) == want
    print(f"kills={kills} during a clean={mid} raw>={raw} now={group_log_bytes(broker)}")
    assert mid >= 1, "no kill landed during a clean"


def test_offsets_topic_segment_bytes_validated(tmp_path):
    """The key is checked at start, naming it."""
    from conftest import Broker
    b = Broker(tmp_path, {"offsets.topic.segment.bytes": 10})
    rc = b.start_may_fail()
    try:
        assert rc is not None and rc != 0, "a broker with offsets.topic.segment.bytes=10 started"
        assert "offsets.topic.segment.bytes" in b.log_text()
    finally:
        if b.alive():
            b.stop(check=False)
