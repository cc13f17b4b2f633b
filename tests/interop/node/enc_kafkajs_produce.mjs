// kafkajs 2.2 over SASL_SSL for the encryption-at-rest test: for each codec kafkajs can write here
// (none, gzip, snappy through the pure-JS kafkajs-snappy plugin; its lz4 and zstd plugins need
// native builds), creates `<prefix>-<codec>` with 2 partitions and produces N records whose key,
// value and header hold MARKER, acks=-1. Reading back is the Python test's (after restarts).
// Prints one JSON line: {"codecs": {codec: {"ok": true, "records": n} | {"ok": false, "error": e}}}.
// Usage: node enc_kafkajs_produce.mjs HOST:PORT MECHANISM USER PREFIX MARKER N
// The password comes from SASL_PASSWORD, the CA file (SASL_SSL, verified) from SASL_SSL_CA.
import fs from 'node:fs';
import kafkajs from 'kafkajs';
import { withDeadline } from './common.mjs';

const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = kafkajs;
const { default: SnappyCodec } = await import('kafkajs-snappy');
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;

const [bootstrap, mechanism, username, prefix, marker, nArg] = process.argv.slice(2);
const N = Number(nArg || 200);
const kafka = new Kafka({
  clientId: 'sluice-enc-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  retry: { retries: 5 },
  sasl: { mechanism: mechanism.toLowerCase(), username, password: process.env.SASL_PASSWORD },
  ssl: { ca: [fs.readFileSync(process.env.SASL_SSL_CA)] },
});
const TYPES = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy };

async function run() {
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  const out = {};
  await admin.connect();
  await producer.connect();
  try {
    for (const codec of Object.keys(TYPES)) {
      const topic = `${prefix}-${codec}`;
      try {
        await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true, timeout: 15000 });
        const messages = [...Array(N).keys()].map((i) => ({
          partition: i % 2,
          key: `${marker}-key-${i}`,
          value: `${marker} kafkajs ${codec} record ${i} ${'x'.repeat(i % 50)}`,
          headers: { note: `${marker}-header-${i}` },
        }));
        for (let i = 0; i < messages.length; i += 100)
          await producer.send({ topic, acks: -1, compression: TYPES[codec], messages: messages.slice(i, i + 100) });
        out[codec] = { ok: true, records: N };
      } catch (e) {
        out[codec] = { ok: false, error: String(e && e.stack || e) };
      }
    }
  } finally {
    await Promise.allSettled([admin.disconnect(), producer.disconnect()]);
  }
  return out;
}

try {
  const codecs = await withDeadline(120000, 'kafkajs enc produce', run());
  console.log(JSON.stringify({ codecs }));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ codecs: {}, error: String(e && e.stack || e) }));
  process.exit(0);
}
