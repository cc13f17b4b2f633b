"""A consume-transform-produce worker for test_transactions.py's exactly-once test: reads
`debits` (read_committed, group `ledger-app`), writes one `ledger` record per input
("L:<input>") and commits its input offsets in the same transaction, a few records per
transaction. Killed with SIGKILL at any moment by the test and started again; it must never
deliver an input twice nor lose one. argv: bootstrap, transactional id, and N: after N committed
transactions the next one is left open with its records flushed to the broker ("open" is
printed) and the worker waits for the kill (0: never)."""
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, tid, hold_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = 0
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ledger-app",
              "isolation.level": "read_committed", "enable.auto.commit": False,
              "auto.offset.reset": "earliest",
              # A killed worker's membership ends quickly, so the next one gets the partitions
              # (the test's broker allows sessions this short: group.min.session.timeout.ms).
              "session.timeout.ms": 2000, "heartbeat.interval.ms": 500})
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
              "transaction.timeout.ms": 10000, "linger.ms": 2})
p.init_transactions(60)
c.subscribe(["debits"])
print("ready", flush=True)
while True:
    msgs = [m for m in c.consume(num_messages=5, timeout=0.5) if m.error() is None]
    if not msgs:
        continue
    p.begin_transaction()
    for m in msgs:
        p.produce("ledger", b"L:" + m.value(), partition=m.partition())
    if hold_after and done >= hold_after:
        p.flush(30)  # the open transaction's records are in the log, undecided
        print("open", flush=True)
        sys.stdin.readline()  # the test kills us here
    offsets = {}
    for m in msgs:
        offsets[(m.topic(), m.partition())] = m.offset() + 1
    p.send_offsets_to_transaction([TopicPartition(t, pp, o) for (t, pp), o in offsets.items()],
                                  c.consumer_group_metadata(), 30)
    try:
        p.commit_transaction(30)
    except KafkaException:
        p.abort_transaction(30)
        # Rewind to what the group has committed: the aborted inputs are read again.
        committed = c.committed([TopicPartition(t, pp) for (t, pp) in offsets], timeout=30)
        for tp in committed:
            c.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
    done += 1
    print("committed", len(msgs), flush=True)
