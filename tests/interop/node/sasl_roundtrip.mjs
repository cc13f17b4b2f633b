// SASL round trip with a Node client: connect with SASL (SCRAM-SHA-256/512 or PLAIN), create a
// topic, produce N records, read them back by offset and compare. Prints one JSON line:
// {"ok": true, "records": n} or {"ok": false, "error": "..."}.
// Usage: node sasl_roundtrip.mjs kafkajs|platformatic HOST:PORT MECHANISM USER PASSWORD TOPIC [N]
// The password comes from the SASL_PASSWORD environment variable if PASSWORD is "-".
// With SASL_SSL_CA=<ca.pem> in the environment the connection is SASL_SSL, verified against it.
import fs from 'node:fs';
import kafkajs from 'kafkajs';
import { Admin, Producer, Consumer, ProduceAcks } from '@platformatic/kafka';
import { withDeadline } from './common.mjs';

const [client, bootstrap, mechanism, username, pwArg, topic, nArg] = process.argv.slice(2);
const password = pwArg === '-' ? process.env.SASL_PASSWORD : pwArg;
const N = Number(nArg || 20);
const caFile = process.env.SASL_SSL_CA;
const ca = caFile ? [fs.readFileSync(caFile)] : undefined;
const values = [...Array(N).keys()].map((i) => `sasl ${client} ${mechanism} record ${i}`);

async function viaKafkajs() {
  const { Kafka, logLevel } = kafkajs;
  const kafka = new Kafka({
    clientId: 'sluice-sasl-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
    retry: { retries: 0 }, sasl: { mechanism: mechanism.toLowerCase(), username, password },
    ...(ca ? { ssl: { ca } } : {}),
  });
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  try {
    await admin.connect();
    await producer.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    await producer.send({ topic, acks: -1, messages: values.map((v) => ({ partition: 0, value: v })) });
    const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.toString() === 'Symbol(private:Kafka:createCluster)');
    const cluster = kafka[sym]({ allowAutoTopicCreation: false });
    await cluster.connect();
    await cluster.addTargetTopic(topic);
    await cluster.refreshMetadata();
    const leaders = cluster.findLeaderForPartitions(topic, [0]);
    const broker = await cluster.findBroker({ nodeId: Object.keys(leaders)[0] });
    const got = [];
    const deadline = Date.now() + 30000;
    while (got.length < N && Date.now() < deadline) {
      const resp = await broker.fetch({ replicaId: -1, isolationLevel: 1, maxWaitTime: 100, minBytes: 1, maxBytes: 1 << 20, topics: [{ topic, partitions: [{ partition: 0, fetchOffset: String(got.length), maxBytes: 1 << 20 }] }] });
      for (const m of resp.responses[0].partitions[0].messages) if (Number(m.offset) === got.length) got.push(m.value.toString());
    }
    await cluster.disconnect();
    return got;
  } finally {
    await Promise.allSettled([admin.disconnect(), producer.disconnect()]);
  }
}

async function viaPlatformatic() {
  const base = { clientId: 'sluice-sasl-platformatic', bootstrapBrokers: [bootstrap], retries: 0, timeout: 20000, sasl: { mechanism, username, password }, ...(ca ? { tls: { ca } } : {}) };
  const admin = new Admin(base);
  const producer = new Producer({ ...base, acks: ProduceAcks.ALL, autocreateTopics: false });
  const consumer = new Consumer({ ...base, groupId: 'sluice-sasl-unused' });
  try {
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
    await producer.send({ messages: values.map((v) => ({ topic, partition: 0, value: Buffer.from(v) })) });
    const md = await consumer.metadata({ topics: [topic], forceUpdate: true });
    const tmd = md.topics.get(topic);
    const got = [];
    const deadline = Date.now() + 30000;
    while (got.length < N && Date.now() < deadline) {
      const resp = await consumer.fetch({ node: tmd.partitions[0].leader, maxWaitTime: 100, minBytes: 1, maxBytes: 1 << 20, topics: [{ topicId: tmd.id, partitions: [{ partition: 0, currentLeaderEpoch: -1, fetchOffset: BigInt(got.length), lastFetchedEpoch: -1, partitionMaxBytes: 1 << 20 }] }] });
      for (const batch of resp.responses[0].partitions[0].records || [])
        for (const r of batch.records) if (batch.firstOffset + BigInt(r.offsetDelta) === BigInt(got.length)) got.push(r.value.toString());
    }
    return got;
  } finally {
    await Promise.allSettled([admin.close(), producer.close(), consumer.close(true)]);
  }
}

try {
  const got = await withDeadline(60000, `${client} sasl`, client === 'kafkajs' ? viaKafkajs() : viaPlatformatic());
  const same = got.length === N && got.every((v, i) => v === values[i]);
  console.log(JSON.stringify(same ? { ok: true, records: got.length } : { ok: false, error: `read back ${JSON.stringify(got)}` }));
} catch (e) {
  const detail = e && e.errors ? ` ${JSON.stringify(e.errors.map((x) => x.message))}` : '';
  console.log(JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) + detail }));
}
process.exit(0);
