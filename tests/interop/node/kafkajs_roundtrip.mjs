// kafkajs 2.2: CreateTopics (3 partitions), Produce >= N records per codec with keys, headers and
// explicit timestamps, then read every partition back from offset 0 with kafkajs's own Fetch
// decoding (through its cluster/broker layer: kafkajs has no group-less consumer) and compare.
// Usage: node kafkajs_roundtrip.mjs HOST:PORT [N]
import kafkajs from 'kafkajs';
import { CODECS, PARTITIONS, makeRecords, byPartition, verifyPartition, withDeadline, finish, connOptions, TOPICS_PRECREATED } from './common.mjs';

const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = kafkajs;
// Snappy through the pure-JS kafkajs-snappy plugin (snappyjs): an independent implementation.
// lz4 and zstd plugins need native builds, so those codecs are reported as skipped.
try {
  const { default: SnappyCodec } = await import('kafkajs-snappy');
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;
} catch (e) {
  // Left unregistered: the probe below reports snappy as skipped.
}
const [bootstrap, nArg] = process.argv.slice(2);
const N = Number(nArg || 10000);
const kafka = new Kafka({ clientId: 'sluice-interop-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN, retry: { retries: 3 }, ...connOptions('kafkajs') });
const TYPES = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy, lz4: CompressionTypes.LZ4, zstd: CompressionTypes.ZSTD };

function createCluster() {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.toString() === 'Symbol(private:Kafka:createCluster)');
  if (!sym) throw new Error('kafkajs internals changed: no createCluster symbol');
  return kafka[sym]({ allowAutoTopicCreation: false });
}

async function roundtrip(codec, admin, producer, cluster) {
  const topic = `kjs-${codec}`;
  const created = TOPICS_PRECREATED || await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true, timeout: 15000 });
  if (!created) throw new Error(`createTopics(${topic}) returned false (already existed?)`);
  const records = makeRecords(topic, N);
  const expected = byPartition(records);
  // Sequential sends of 500 records: within a partition the offset order is the send order.
  const nextOffset = new Array(PARTITIONS).fill(0);
  for (let i = 0; i < records.length; i += 500) {
    const chunk = records.slice(i, i + 500);
    const res = await producer.send({
      topic, acks: -1, compression: TYPES[codec], timeout: 30000,
      messages: chunk.map((r) => ({ partition: r.partition, key: r.key, value: r.value, timestamp: String(r.timestamp), headers: Object.fromEntries(r.headers) })),
    });
    for (const md of res) {
      if (md.errorCode !== 0) throw new Error(`produce ${topic}/${md.partition}: error ${md.errorCode}`);
      const base = Number(md.baseOffset);
      if (base !== nextOffset[md.partition]) throw new Error(`produce ${topic}/${md.partition}: baseOffset ${base}, expected ${nextOffset[md.partition]}`);
      nextOffset[md.partition] += chunk.filter((r) => r.partition === md.partition).length;
    }
  }
  await cluster.addTargetTopic(topic);
  await cluster.refreshMetadata();
  const leaders = cluster.findLeaderForPartitions(topic, [...Array(PARTITIONS).keys()]);
  let verified = 0;
  for (const [nodeId, partitions] of Object.entries(leaders)) {
    const broker = await cluster.findBroker({ nodeId });
    for (const p of partitions) {
      const got = [];
      let offset = 0;
      const deadline = Date.now() + 60000;
      while (got.length < expected[p].length) {
        if (Date.now() > deadline) throw new Error(`fetch ${topic}/${p}: stuck at offset ${offset}`);
        const resp = await broker.fetch({ replicaId: -1, isolationLevel: 1, maxWaitTime: 100, minBytes: 1, maxBytes: 4 << 20, topics: [{ topic, partitions: [{ partition: p, fetchOffset: String(offset), maxBytes: 1 << 20 }] }] });
        const part = resp.responses[0].partitions[0];
        if (part.errorCode !== 0) throw new Error(`fetch ${topic}/${p} at ${offset}: error ${part.errorCode}`);
        for (const m of part.messages) {
          if (Number(m.offset) < offset) continue; // a batch may start before the fetch offset
          const headers = [];
          for (const [k, v] of Object.entries(m.headers || {})) {
            for (const one of Array.isArray(v) ? v : [v]) headers.push([k, one]);
          }
          got.push({ offset: m.offset, key: m.key, value: m.value, timestamp: m.timestamp, headers });
          offset = Number(m.offset) + 1;
        }
      }
      verifyPartition(`kafkajs/${codec}`, p, expected[p], got);
      verified += got.length;
    }
  }
  return verified;
}

async function main() {
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  const cluster = createCluster();
  await withDeadline(30000, 'connect', Promise.all([admin.connect(), producer.connect(), cluster.connect()]));
  const result = { codecs: {} };
  for (const codec of CODECS) {
    try {
      if (codec !== 'none') await CompressionCodecs[TYPES[codec]]().compress({ buffer: Buffer.from('probe') });
    } catch (e) {
      result.codecs[codec] = { skipped: `kafkajs ships no ${codec} codec (needs a plugin package): ${e.message}` };
      continue;
    }
    try {
      const n = await withDeadline(180000, `kafkajs/${codec}`, roundtrip(codec, admin, producer, cluster));
      result.codecs[codec] = { ok: true, records: n };
    } catch (e) {
      result.codecs[codec] = { ok: false, error: String(e && e.stack ? e.stack : e) };
    }
  }
  await Promise.allSettled([admin.disconnect(), producer.disconnect(), cluster.disconnect()]);
  finish(result);
}

main().catch((e) => { console.error(e); process.exit(2); });
