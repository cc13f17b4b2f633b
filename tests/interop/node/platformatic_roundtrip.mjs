// @platformatic/kafka 1.35 (flexible protocol versions only): Admin.createTopics (3 partitions),
// Producer.send >= N records per codec with keys, headers and explicit timestamps, then
// Consumer.fetch (by topic id, no group membership) of every partition from offset 0, compared
// byte for byte. Usage: node platformatic_roundtrip.mjs HOST:PORT [N]
import { Admin, Producer, Consumer, ProduceAcks, compressionsAlgorithms } from '@platformatic/kafka';
import { CODECS, PARTITIONS, makeRecords, byPartition, verifyPartition, withDeadline, finish, connOptions, TOPICS_PRECREATED } from './common.mjs';

const [bootstrap, nArg] = process.argv.slice(2);
const N = Number(nArg || 10000);
const base = { clientId: 'sluice-interop-platformatic', bootstrapBrokers: [bootstrap], retries: 3, timeout: 30000, ...connOptions('platformatic') };

async function roundtrip(codec, admin, producer, consumer) {
  const topic = `plt-${codec}`;
  if (!TOPICS_PRECREATED) await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
  const records = makeRecords(topic, N);
  const expected = byPartition(records);
  const nextOffset = new Array(PARTITIONS).fill(0n);
  for (let i = 0; i < records.length; i += 500) {
    const chunk = records.slice(i, i + 500);
    const res = await producer.send({
      acks: ProduceAcks.ALL, compression: codec,
      messages: chunk.map((r) => ({ topic, partition: r.partition, key: r.key, value: r.value, timestamp: BigInt(r.timestamp), headers: new Map(r.headers.map(([k, v]) => [Buffer.from(k), v])) })),
    });
    for (const o of res.offsets || []) {
      if (o.offset !== nextOffset[o.partition]) throw new Error(`produce ${topic}/${o.partition}: offset ${o.offset}, expected ${nextOffset[o.partition]}`);
      nextOffset[o.partition] += BigInt(chunk.filter((r) => r.partition === o.partition).length);
    }
  }
  const md = await consumer.metadata({ topics: [topic], forceUpdate: true });
  const tmd = md.topics.get(topic);
  if (!tmd || !tmd.id) throw new Error(`metadata for ${topic} has no topic id: ${JSON.stringify(tmd)}`);
  let verified = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    const leader = tmd.partitions[p].leader;
    const got = [];
    let offset = 0n;
    const deadline = Date.now() + 60000;
    while (got.length < expected[p].length) {
      if (Date.now() > deadline) throw new Error(`fetch ${topic}/${p}: stuck at offset ${offset}`);
      const resp = await consumer.fetch({
        node: leader, maxWaitTime: 100, minBytes: 1, maxBytes: 4 << 20,
        topics: [{ topicId: tmd.id, partitions: [{ partition: p, currentLeaderEpoch: -1, fetchOffset: offset, lastFetchedEpoch: -1, partitionMaxBytes: 1 << 20 }] }],
      });
      const part = resp.responses[0].partitions[0];
      if (part.errorCode !== 0) throw new Error(`fetch ${topic}/${p} at ${offset}: error ${part.errorCode}`);
      for (const batch of part.records || []) {
        for (const r of batch.records) {
          const off = batch.firstOffset + BigInt(r.offsetDelta);
          if (off < offset) continue;
          got.push({ offset: off, key: r.key, value: r.value, timestamp: batch.firstTimestamp + r.timestampDelta, headers: r.headers.map(([k, v]) => [k ? k.toString() : k, v]) });
          offset = off + 1n;
        }
      }
    }
    verifyPartition(`platformatic/${codec}`, p, expected[p], got);
    verified += got.length;
  }
  return verified;
}

async function main() {
  const admin = new Admin(base);
  const producer = new Producer({ ...base, idempotent: false, acks: ProduceAcks.ALL, autocreateTopics: false });
  const consumer = new Consumer({ ...base, groupId: 'sluice-interop-unused' });
  const result = { codecs: {} };
  for (const codec of CODECS) {
    if (!compressionsAlgorithms[codec].available) {
      result.codecs[codec] = { skipped: `${codec} not available in this Node.js (${process.version})` };
      continue;
    }
    try {
      const n = await withDeadline(180000, `platformatic/${codec}`, roundtrip(codec, admin, producer, consumer));
      result.codecs[codec] = { ok: true, records: n };
    } catch (e) {
      const detail = e && e.errors ? ` ${JSON.stringify(e.errors.map((x) => x.message))}` : '';
      result.codecs[codec] = { ok: false, error: String(e && e.stack ? e.stack : e) + detail };
    }
  }
  await Promise.allSettled([admin.close(), producer.close(), consumer.close(true)]);
  finish(result);
}

main().catch((e) => { console.error(e); process.exit(2); });
