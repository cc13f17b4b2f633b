// DescribeProducers (KIP-664) with @platformatic/kafka 1.35's protocol API (its Admin client has
// no describeProducers; the request/response codec describeProducersV0 is exported and sent on
// one of its Connections, over SASL_SSL with SCRAM-SHA-512).
// Usage: node producers_platformatic.mjs HOST:PORT CA_PEM USER TOPIC PARTITIONS
//   PARTITIONS: comma-separated indexes; the password comes from SASL_PASSWORD.
// Prints one JSON line: {"ok": true, "partitions": [{partition, error, producers: [...]}]} (a
// per-partition error answer is still a result: platformatic throws it as a ResponseError
// carrying the decoded response) or {"ok": false, "error": text}.
import fs from 'node:fs';
import { Connection, describeProducersV0 } from '@platformatic/kafka';

const [bootstrap, caPath, username, topic, partsArg] = process.argv.slice(2);
const [host, port] = bootstrap.split(':');
const partitionIndexes = partsArg.split(',').map(Number);

function summary(response) {
  const out = [];
  for (const t of response.topics) {
    for (const p of t.partitions) {
      out.push({
        topic: t.name,
        partition: p.partitionIndex,
        error: p.errorCode,
        producers: p.activeProducers.map((a) => ({
          producerId: Number(a.producerId),
          producerEpoch: a.producerEpoch,
          lastSequence: a.lastSequence,
          lastTimestamp: Number(a.lastTimestamp),
          coordinatorEpoch: a.coordinatorEpoch,
          currentTxnStartOffset: Number(a.currentTxnStartOffset),
        })),
      });
    }
  }
  return out;
}

const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'deadline' })); process.exit(2); }, 60000);
const conn = new Connection('sluice-describe-producers', {
  tls: { ca: [fs.readFileSync(caPath, 'utf8')], rejectUnauthorized: true, servername: 'localhost' },
  sasl: { mechanism: 'SCRAM-SHA-512', username, password: process.env.SASL_PASSWORD },
});
let out;
try {
  await conn.connect(host, Number(port));
  let response;
  try {
    response = await describeProducersV0.api.async(conn, [{ name: topic, partitionIndexes }]);
  } catch (e) {
    response = e.response ?? e.errors?.[0]?.response;
    if (!response) throw e;
  }
  out = { ok: true, partitions: summary(response) };
} catch (e) {
  out = { ok: false, error: String((e && e.stack) || e) };
}
await conn.close().catch(() => {});
clearTimeout(timer);
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
