// kafkajs 2.2 transactions against sluice: a transactional producer (idempotent, maxInFlight 1)
// commits a transaction over two topics' partitions with offsets sent to it (sendOffsets), then
// aborts one; the group's committed offsets are read back with the admin client (the committed
// ones, never the aborted ones). Prints one JSON line {"ok": true, ...} or {"ok": false, "error"}.
// Usage: node txn_kafkajs.mjs HOST:PORT TOPIC_A TOPIC_B GROUP
import kafkajs from 'kafkajs';

const { Kafka, logLevel } = kafkajs;
const [bootstrap, topicA, topicB, group] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'sluice-txn-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN, retry: { retries: 5 } });

async function main() {
  const producer = kafka.producer({ transactionalId: 'kjs-txn', idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30000 });
  await producer.connect();
  const out = {};
  // Commit: records to three partitions of A and one of B, and offsets for the group.
  let txn = await producer.transaction();
  await txn.send({ topic: topicA, messages: [0, 1, 2].map((p) => ({ partition: p, value: `kc-a-${p}` })) });
  await txn.send({ topic: topicB, messages: [{ partition: 1, value: 'kc-b-1' }] });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic: topicA, partitions: [{ partition: 0, offset: '7' }, { partition: 2, offset: '3' }] }] });
  await txn.commit();
  // Abort: its records stay (read_uncommitted) but its offsets are dropped.
  txn = await producer.transaction();
  await txn.send({ topic: topicA, messages: [{ partition: 1, value: 'ka-a-1' }] });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic: topicA, partitions: [{ partition: 0, offset: '99' }] }] });
  await txn.abort();
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offs = await admin.fetchOffsets({ groupId: group, topics: [topicA] });
  out.committed = Object.fromEntries(offs[0].partitions.map((p) => [p.partition, Number(p.offset)]));
  await admin.disconnect();
  out.ok = true;
  return out;
}

const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'deadline' })); process.exit(2); }, 80000);
try {
  const out = await main();
  clearTimeout(timer);
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
}
