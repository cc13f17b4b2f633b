// Field protection (test_field_protection.py): a kafkajs 2.2 group consumer over SASL_SSL
// (SCRAM-SHA-512) reads N records of TOPIC from the beginning, as the principal USER, and prints
// what it was served: one JSON line per record {"topic", "partition", "offset", "key", "value"}
// (key and value as UTF-8 text, null when null), then {"done": true, "records": n}. On failure
// the last line is {"done": false, "error": text} and the exit code is 1.
// Usage: node protect_kafkajs_consume.mjs HOST:PORT CA_PEM USER TOPIC GROUP N
// The password comes from SASL_PASSWORD (never argv).
import fs from 'node:fs';
import kafkajs from 'kafkajs';
import { withDeadline } from './common.mjs';

const { Kafka, logLevel } = kafkajs;
const [bootstrap, caPath, username, topic, group, nArg] = process.argv.slice(2);
const N = Number(nArg);

const kafka = new Kafka({
  clientId: 'sluice-protect-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  retry: { retries: 5 }, connectionTimeout: 10000, requestTimeout: 20000,
  ssl: { ca: [fs.readFileSync(caPath, 'utf8')], rejectUnauthorized: true, servername: 'localhost' },
  sasl: { mechanism: 'scram-sha-512', username, password: process.env.SASL_PASSWORD },
});

async function run() {
  const consumer = kafka.consumer({ groupId: group, allowAutoTopicCreation: false, maxWaitTimeInMs: 200 });
  await consumer.connect();
  let got = 0;
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise((resolve, reject) => {
      consumer.run({
        autoCommit: false,
        eachMessage: async ({ topic: t, partition, message }) => {
          if (got >= N) return;
          got++;
          console.log(JSON.stringify({
            topic: t, partition, offset: Number(message.offset),
            key: message.key == null ? null : message.key.toString('utf8'),
            value: message.value == null ? null : message.value.toString('utf8'),
          }));
          if (got >= N) resolve();
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return got;
}

try {
  const n = await withDeadline(90000, `kafkajs consume ${topic}`, run());
  console.log(JSON.stringify({ done: true, records: n }));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ done: false, error: String(e && e.stack || e) }));
  process.exit(1);
}
