"""A clean restart (SIGTERM, start on the same data directory) keeps every record at its offset,
topic configs set at run time, and topic ids."""
import helpers as h
import kproto as kp

TOPIC = "durable"
N = 3000


def alter_retention(bootstrap, topic, value):
    """Sets retention.ms with IncrementalAlterConfigs if the broker has it, else AlterConfigs
    (confluent-kafka 1.7 only speaks the latter)."""
    with kp.Conn(bootstrap) as c:
        if c.pick(kp.INCREMENTAL_ALTER_CONFIGS, range(0, 2)) is not None:
            res = kp.incremental_alter_configs(c, kp.RESOURCE_TOPIC, topic,
                                               [("retention.ms", kp.OP_SET, str(value))])
            assert [r[0] for r in res] == [kp.NONE], f"IncrementalAlterConfigs: {res}"
            return "IncrementalAlterConfigs"
    from confluent_kafka.admin import ConfigResource
    a = h.ck_admin(bootstrap)
    res = ConfigResource("topic", topic, set_config={"retention.ms": str(value)})
    a.alter_configs([res], request_timeout=15)[res].result(30)
    return "AlterConfigs"


def described_retention(bootstrap, topic):
    from confluent_kafka.admin import ConfigResource
    a = h.ck_admin(bootstrap)
    res = ConfigResource("topic", topic)
    cfg = a.describe_configs([res], request_timeout=15)[res].result(30)
    return cfg["retention.ms"].value


def snapshot_ids(bootstrap):
    with kp.Conn(bootstrap) as c:
        md = kp.metadata(c, None)
        return {name: t["id"] for name, t in md["topics"].items()}, md["cluster_id"]


def test_restart_keeps_records_configs_and_ids(broker):
    h.ck_create_topic(broker.bootstrap, TOPIC, 3)
    h.ck_create_topic(broker.bootstrap, "other", 1)
    records = h.make_records(TOPIC, N)
    expected = h.expected_from_acks(h.ck_produce(broker.bootstrap, TOPIC, records, "lz4"),
                                    "before restart")
    how = alter_retention(broker.bootstrap, TOPIC, 123456789)
    assert described_retention(broker.bootstrap, TOPIC) == "123456789", how
    ids_before, cluster_before = snapshot_ids(broker.bootstrap)
    assert set(ids_before) == {TOPIC, "other"}
    assert len(set(ids_before.values())) == 2 and all(u.int for u in ids_before.values())

    broker.restart()

    got = h.ck_consume(broker.bootstrap, TOPIC, {p: len(v) for p, v in expected.items()})
    h.verify(expected, got, "after restart")
    assert described_retention(broker.bootstrap, TOPIC) == "123456789", \
        f"retention.ms set with {how} lost across restart"
    ids_after, cluster_after = snapshot_ids(broker.bootstrap)
    assert ids_after == ids_before, "topic ids changed across restart"
    assert cluster_after == cluster_before, "cluster id changed across restart"
    with kp.Conn(broker.bootstrap) as c:
        for p, recs in expected.items():
            assert kp.list_offsets(c, TOPIC, p, kp.LATEST) == (kp.NONE, len(recs))
            assert kp.list_offsets(c, TOPIC, p, kp.EARLIEST) == (kp.NONE, 0)

    # New records continue after the old ones, and a second restart keeps both.
    more = h.make_records(TOPIC + "-more", 300, seed=2)
    acked = h.ck_produce(broker.bootstrap, TOPIC, more)
    for p, offs in acked.items():
        assert sorted(offs) == list(range(len(expected[p]), len(expected[p]) + len(offs)))
        expected[p] += [offs[o] for o in sorted(offs)]
    broker.restart()
    got = h.ck_consume(broker.bootstrap, TOPIC, {p: len(v) for p, v in expected.items()})
    h.verify(expected, got, "after second restart")
