// DescribeTransactions v0 and ListTransactions v1 (KIP-664) with @platformatic/kafka 1.35's
// protocol API (describeTransactionsV0, listTransactionsV1, sent on one of its Connections over
// SASL_SSL with SCRAM-SHA-512): the operators' view of the transaction coordinator.
// Usage: node txnadmin_platformatic.mjs HOST:PORT CA_PEM USER IDS
//   IDS: comma-separated transactional ids to describe; the password comes from SASL_PASSWORD.
// Prints one JSON line: {"ok": true, "describe": [{id, error, state, producerId, producerEpoch,
// timeoutMs, topics: {topic: [partitions]}}], "list": {error, states: [{id, producerId, state}]}}
// (an answer carrying an error code is still a result: platformatic throws it as a
// ResponseError with the decoded response) or {"ok": false, "error": text}.
import fs from 'node:fs';
import { Connection, describeTransactionsV0, listTransactionsV1 } from '@platformatic/kafka';

const [bootstrap, caPath, username, idsArg] = process.argv.slice(2);
const [host, port] = bootstrap.split(':');
const ids = idsArg.split(',');

async function call(fn) {
  try {
    return await fn();
  } catch (e) {
    const response = e.response ?? e.errors?.[0]?.response;
    if (!response) throw e;
    return response;
  }
}

const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'deadline' })); process.exit(2); }, 60000);
const conn = new Connection('sluice-txn-admin', {
  tls: { ca: [fs.readFileSync(caPath, 'utf8')], rejectUnauthorized: true, servername: 'localhost' },
  sasl: { mechanism: 'SCRAM-SHA-512', username, password: process.env.SASL_PASSWORD },
});
let out;
try {
  await conn.connect(host, Number(port));
  const d = await call(() => describeTransactionsV0.api.async(conn, ids));
  const l = await call(() => listTransactionsV1.api.async(conn, [], [], -1n));
  out = {
    ok: true,
    describe: d.transactionStates.map((s) => ({
      id: s.transactionalId,
      error: s.errorCode,
      state: s.transactionState,
      producerId: Number(s.producerId),
      producerEpoch: s.producerEpoch,
      timeoutMs: s.transactionTimeoutMs,
      topics: Object.fromEntries(s.topics.map((t) => [t.topic, [...t.partitions].sort((a, b) => a - b)])),
    })),
    list: {
      error: l.errorCode,
      states: l.transactionStates.map((s) => ({
        id: s.transactionalId, producerId: Number(s.producerId), state: s.transactionState,
      })),
    },
  };
} catch (e) {
  out = { ok: false, error: String((e && e.stack) || e) };
}
await conn.close().catch(() => {});
clearTimeout(timer);
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
