// @platformatic/kafka 1.35 as a consumer-group member: joins, consumes N records from the
// committed position (earliest when none), commits each after processing, leaves.
// Prints one JSON line: {"records": [[partition, offset], ...]}.
// Usage: node group_platformatic.mjs HOST:PORT TOPIC GROUP N
import { Consumer } from '@platformatic/kafka';

const [bootstrap, topic, groupId, nArg] = process.argv.slice(2);
const N = Number(nArg);
const consumer = new Consumer({ groupId, clientId: 'sluice-group-platformatic', bootstrapBrokers: [bootstrap], sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 20000 });
const timer = setTimeout(() => {
  process.stderr.write('timed out\n');
  process.exit(2);
}, 80000);
const stream = await consumer.consume({ topics: [topic], mode: 'committed', fallbackMode: 'earliest', autocommit: false, maxWaitTime: 200 });
const records = [];
for await (const m of stream) {
  records.push([m.partition, Number(m.offset)]);
  await m.commit();
  if (records.length >= N) break;
}
await stream.close();
await consumer.close();
clearTimeout(timer);
process.stdout.write(JSON.stringify({ records }) + '\n');
