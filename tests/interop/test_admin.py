"""Admin APIs through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient, with raw
requests where neither client can ask (DescribeCluster, Metadata v10+ topic ids)."""
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import helpers as h
import kproto as kp
from conftest import wait_until


def topic_names(bootstrap):
    with kp.Conn(bootstrap) as c:
        return set(kp.metadata(c, None)["topics"])


def create_error(fut):
    try:
        fut.result(timeout=30)
    except KafkaException as e:
        return e.args[0].code()
    return KafkaError.NO_ERROR


def test_create_topic_replication_factor_3_rejected(broker):
    a = h.ck_admin(broker.bootstrap)
    fs = a.create_topics([NewTopic("rf3", 1, 3)], operation_timeout=10, request_timeout=15)
    code = create_error(fs["rf3"])
    assert code == KafkaError.INVALID_REPLICATION_FACTOR == 38, f"got error {code}"
    assert "rf3" not in topic_names(broker.bootstrap)


def test_create_topic_validate_only_creates_nothing(broker):
    a = h.ck_admin(broker.bootstrap)
    fs = a.create_topics([NewTopic("vonly", 4, 1)], validate_only=True, operation_timeout=10,
                         request_timeout=15)
    assert create_error(fs["vonly"]) == KafkaError.NO_ERROR
    assert "vonly" not in topic_names(broker.bootstrap)
    # And validate_only still reports errors.
    fs = a.create_topics([NewTopic("vonly-rf3", 1, 3)], validate_only=True, request_timeout=15)
    assert create_error(fs["vonly-rf3"]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert "vonly-rf3" not in topic_names(broker.bootstrap)


def test_create_existing_topic_and_bad_names(broker):
    h.ck_create_topic(broker.bootstrap, "dup", 2)
    a = h.ck_admin(broker.bootstrap)
    fs = a.create_topics([NewTopic("dup", 2, 1)], request_timeout=15)
    assert create_error(fs["dup"]) == KafkaError.TOPIC_ALREADY_EXISTS
    # Names Kafka refuses; "..", "." and names with "/" would also be path traversal on disk.
    for bad in ("..", ".", "a/b", "../escape", "x" * 250, "sp ace", ""):
        try:
            fs = a.create_topics([NewTopic(bad, 1, 1)], request_timeout=15)
        except (ValueError, KafkaException):
            continue  # refused client-side
        code = create_error(fs[bad])
        assert code == KafkaError.TOPIC_EXCEPTION, f"topic name {bad!r}: error {code}, want 17"
    names = topic_names(broker.bootstrap)
    assert names == {"dup"}, f"unexpected topics {names}"
    assert not (broker.data_dir.parent / "escape-0").exists()


def test_delete_topic(broker):
    h.ck_create_topic(broker.bootstrap, "doomed", 2)
    h.ck_produce(broker.bootstrap, "doomed", h.make_records("doomed", 100, partitions=2))
    with kp.Conn(broker.bootstrap) as c:
        old_id = kp.metadata(c, ["doomed"])["topics"]["doomed"]["id"]
    a = h.ck_admin(broker.bootstrap)
    a.delete_topics(["doomed"], operation_timeout=10, request_timeout=15)["doomed"].result(30)
    wait_until(lambda: "doomed" not in topic_names(broker.bootstrap), 20, "topic deletion")
    with kp.Conn(broker.bootstrap) as c:
        t = kp.metadata(c, ["doomed"], allow_auto=False)["topics"]["doomed"]
        assert t["error"] == kp.UNKNOWN_TOPIC_OR_PARTITION, t
    wait_until(lambda: not any(broker.data_dir.glob("doomed-*")), 20,
               "partition directories of the deleted topic to go")
    # Deleting again: UNKNOWN_TOPIC_OR_PARTITION.
    fut = a.delete_topics(["doomed"], request_timeout=15)["doomed"]
    assert create_error(fut) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Re-created under the same name: a new topic id, offsets from 0, no old data.
    h.ck_create_topic(broker.bootstrap, "doomed", 2)
    with kp.Conn(broker.bootstrap) as c:
        new_id = kp.metadata(c, ["doomed"])["topics"]["doomed"]["id"]
        assert new_id != old_id
        for p in range(2):
            assert kp.list_offsets(c, "doomed", p, kp.LATEST) == (kp.NONE, 0)


def test_create_partitions(broker):
    h.ck_create_topic(broker.bootstrap, "grow", 3)
    a = h.ck_admin(broker.bootstrap)
    a.create_partitions([NewPartitions("grow", 5)], request_timeout=15)["grow"].result(30)
    h.wait_topic_partitions(broker.bootstrap, "grow", 5)
    records = [h.Rec(p, b"k%d" % p, b"v%d" % p, (), None) for p in range(5)]
    acked = h.ck_produce(broker.bootstrap, "grow", records)
    assert {p: sorted(o) for p, o in acked.items()} == {p: [0] for p in range(5)}
    # Shrinking is refused (INVALID_PARTITIONS, 37).
    fut = a.create_partitions([NewPartitions("grow", 2)], request_timeout=15)["grow"]
    assert create_error(fut) == KafkaError.INVALID_PARTITIONS
    h.wait_topic_partitions(broker.bootstrap, "grow", 5)


def test_create_topic_replica_assignments(broker):
    """Replica assignments replace the partition count and must put each partition on this one
    node; a refusal checked before them (the name, an existing topic, a bad config) still wins,
    in the order a one-broker cluster answers. Nothing refused is created."""
    with kp.Conn(broker.bootstrap) as c:
        node = kp.metadata(c, None)["brokers"][0]["node_id"]
    a = h.ck_admin(broker.bootstrap)

    def err(t, **kw):
        return create_error(a.create_topics([t], request_timeout=15, **kw)[t.topic])

    h.ck_create_topic(broker.bootstrap, "ra-existing", 1)
    elsewhere = [[node + 1], [node + 1]]
    assert err(NewTopic("ra-elsewhere", 2, replica_assignment=elsewhere)) == \
        KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert err(NewTopic("ra-elsewhere", 2, replica_assignment=elsewhere), validate_only=True) == \
        KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert err(NewTopic("ra/bad", 2, replica_assignment=elsewhere)) == KafkaError.TOPIC_EXCEPTION
    assert err(NewTopic("ra-existing", 2, replica_assignment=elsewhere)) == \
        KafkaError.TOPIC_ALREADY_EXISTS
    assert err(NewTopic("ra-elsewhere", 2, replica_assignment=elsewhere,
                        config={"retention.ms": "soon"})) == KafkaError.INVALID_CONFIG
    assert "ra-elsewhere" not in topic_names(broker.bootstrap)
    assert err(NewTopic("ra-two", 2, replica_assignment=[[node], [node]]), validate_only=True) == \
        KafkaError.NO_ERROR
    assert "ra-two" not in topic_names(broker.bootstrap)
    assert err(NewTopic("ra-two", 2, replica_assignment=[[node], [node]])) == KafkaError.NO_ERROR
    h.wait_topic_partitions(broker.bootstrap, "ra-two", 2)


def test_describe_cluster_one_broker(broker):
    with kp.Conn(broker.bootstrap) as c:
        if c.pick(kp.DESCRIBE_CLUSTER, range(0, 2)) is None:
            pytest.fail("broker does not advertise DescribeCluster")
        dc = kp.describe_cluster(c)
        assert dc["error"] == kp.NONE, dc
        assert len(dc["brokers"]) == 1, dc
        b = dc["brokers"][0]
        assert (b["host"], b["port"]) == ("127.0.0.1", broker.port), b
        assert dc["controller_id"] == b["node_id"]
        assert dc["cluster_id"], "empty cluster id"
        md = kp.metadata(c, None)
        assert md["cluster_id"] == dc["cluster_id"]
        assert [x["node_id"] for x in md["brokers"]] == [b["node_id"]]


def test_metadata_auto_creation(broker):
    with kp.Conn(broker.bootstrap) as c:
        t = kp.metadata(c, ["not-auto"], allow_auto=False)["topics"]["not-auto"]
        assert t["error"] == kp.UNKNOWN_TOPIC_OR_PARTITION

        def created():
            t = kp.metadata(c, ["auto-made"], allow_auto=True)["topics"]["auto-made"]
            return t if t["error"] == kp.NONE and t["partitions"] else None
        t = wait_until(created, 20, "auto-created topic in Metadata")
        assert len(t["partitions"]) == 1  # num.partitions=1
        assert t["id"].int != 0, "auto-created topic has a zero topic id"
        p = t["partitions"][0]
        assert p["leader"] == kp.metadata(c, None)["brokers"][0]["node_id"]
        assert "not-auto" not in kp.metadata(c, None)["topics"]


@pytest.mark.broker_config({"auto.create.topics.enable": False})
def test_metadata_auto_creation_disabled(broker):
    with kp.Conn(broker.bootstrap) as c:
        t = kp.metadata(c, ["nope"], allow_auto=True)["topics"]["nope"]
        assert t["error"] == kp.UNKNOWN_TOPIC_OR_PARTITION
        assert "nope" not in kp.metadata(c, None)["topics"]


def test_kafka_python_admin(broker):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic as KNT
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        a.create_topics([KNT("kp-admin", 2, 1, topic_configs={"retention.ms": "3600000"})])
        h.wait_topic_partitions(broker.bootstrap, "kp-admin", 2)
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-admin")])
        entries = {}
        for r in res:
            for resource in r.resources:
                err, _msg, _rt, _name, cfgs = resource[:5]
                assert err == 0, resource
                entries.update({c[0]: c[1] for c in cfgs})
        assert entries.get("retention.ms") == "3600000", entries
        a.delete_topics(["kp-admin"])
        wait_until(lambda: "kp-admin" not in topic_names(broker.bootstrap), 20, "deletion")
    finally:
        a.close()
