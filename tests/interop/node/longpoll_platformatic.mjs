// @platformatic/kafka long polls by topic id (Fetch v13+) that span the gateway's Metadata
// refreshes (every second in the test fixture): each refresh replaces the catalog entry the
// request's topic name came from while the fetch waits upstream. Then one record, produced
// while a poll waits, must arrive. Usage: node longpoll_platformatic.mjs HOST:PORT [POLLS]
// Prints {"codecs": {"none": {"ok": true, "records": 1, "polls": n}}} (common.mjs's shape).
import { Admin, Producer, Consumer, ProduceAcks } from '@platformatic/kafka';
import { withDeadline, finish, connOptions } from './common.mjs';

const [bootstrap, nArg] = process.argv.slice(2);
const POLLS = Number(nArg || 3);
const WAIT_MS = 2500;
const topic = 'plt-longpoll';
const base = { clientId: 'sluice-interop-longpoll', bootstrapBrokers: [bootstrap], retries: 3, timeout: 30000, ...connOptions('platformatic') };

async function run(admin, producer, consumer) {
  await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
  const md = await consumer.metadata({ topics: [topic], forceUpdate: true });
  const tmd = md.topics.get(topic);
  if (!tmd || !tmd.id) throw new Error(`metadata for ${topic} has no topic id`);
  const fetchOnce = () => consumer.fetch({
    node: tmd.partitions[0].leader, maxWaitTime: WAIT_MS, minBytes: 1, maxBytes: 1 << 20,
    topics: [{ topicId: tmd.id, partitions: [{ partition: 0, currentLeaderEpoch: -1, fetchOffset: 0n, lastFetchedEpoch: -1, partitionMaxBytes: 1 << 20 }] }],
  });
  // Empty polls: each one waits WAIT_MS upstream, across two or more refreshes.
  for (let i = 0; i < POLLS; i++) {
    const t0 = Date.now();
    const part = (await fetchOnce()).responses[0].partitions[0];
    if (part.errorCode !== 0) throw new Error(`empty poll ${i}: error ${part.errorCode}`);
    if ((part.records || []).length) throw new Error(`empty poll ${i}: records in an empty topic`);
    if (Date.now() - t0 < WAIT_MS / 2) throw new Error(`empty poll ${i} returned after ${Date.now() - t0} ms: not a long poll`);
  }
  // A record produced while a poll waits ends it.
  const waiting = fetchOnce();
  await new Promise((r) => setTimeout(r, 300));
  await producer.send({ acks: ProduceAcks.ALL, messages: [{ topic, partition: 0, key: Buffer.from('k'), value: Buffer.from('across refreshes') }] });
  const part = (await waiting).responses[0].partitions[0];
  let got = (part.records || []).flatMap((b) => b.records.map((r) => r.value && r.value.toString()));
  if (!got.length) { // the produce landed after the poll ended: one more
    const again = (await fetchOnce()).responses[0].partitions[0];
    got = (again.records || []).flatMap((b) => b.records.map((r) => r.value && r.value.toString()));
  }
  if (got.length !== 1 || got[0] !== 'across refreshes') throw new Error(`got ${JSON.stringify(got)}`);
  return POLLS;
}

async function main() {
  const admin = new Admin(base);
  const producer = new Producer({ ...base, idempotent: false, acks: ProduceAcks.ALL, autocreateTopics: false });
  const consumer = new Consumer({ ...base, groupId: 'sluice-interop-unused' });
  const result = { codecs: {} };
  try {
    const polls = await withDeadline(60000, 'longpoll', run(admin, producer, consumer));
    result.codecs.none = { ok: true, records: 1, polls };
  } catch (e) {
    const detail = e && e.errors ? ` ${JSON.stringify(e.errors.map((x) => x.message))}` : '';
    result.codecs.none = { ok: false, error: String(e && e.stack ? e.stack : e) + detail };
  }
  await Promise.allSettled([admin.close(), producer.close(), consumer.close(true)]);
  finish(result);
}

main().catch((e) => { console.error(e); process.exit(2); });
