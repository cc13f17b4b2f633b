// Shared by iam_kafkajs_msk.mjs and iam_kafkajs_oauth.mjs: runs a list of client steps with one
// kafkajs client (the SASL mechanism is the caller's) against a SASL_SSL broker, and prints one
// JSON line {"steps": [result, ...]} where each result is {"op", "ok": true, ...} or
// {"op", "ok": false, "type": "TOPIC_AUTHORIZATION_FAILED", "code": 29, "name", "error"}: the
// first Kafka error type found down the error's chain (kafkajs wraps protocol errors), and the
// error class names met on the way (a refused login is a KafkaJSSASLAuthenticationError).
// Every step runs, whatever the earlier ones gave; exit code 0 either way (the test judges).
//
// Steps (JSON objects):
//   {"op": "produce", "topic", "n", "tag", "partition": 0}   producer.send of n records, acks -1;
//                                                         values "<tag>-<i>"
//   {"op": "consume", "topic", "group", "n"}              FindCoordinator, then a group consumer from the beginning
//                                                         until n records (their values)
//   {"op": "fetch", "topic", "n", "partition": 0}         Fetch from offset 0 without a group
//   {"op": "describeTopic", "topic"}                      Metadata for the topic
//   {"op": "offsets", "topic"}                            ListOffsets (admin.fetchTopicOffsets)
//   {"op": "createTopic", "topic", "partitions": 1}       CreateTopics
//   {"op": "deleteTopic", "topic"}                        DeleteTopics
//   {"op": "describeGroup", "group"}                      FindCoordinator, DescribeGroups
//   {"op": "describeCluster"}                             DescribeAcls (DESCRIBE on the cluster)
//   {"op": "loop", "topic", "tag", "progress", "stop", "partition": 0}
//       one record at a time (acks -1, each awaited) until the file `stop` exists; after every
//       acknowledgement the file `progress` is rewritten (atomically) with {"acked": n,
//       "errors": [...]}. A failed send is retried with the same value (nothing skipped).
import fs from 'node:fs';
import kafkajs from 'kafkajs';
import { withDeadline } from './common.mjs';

// The AWS SDK's default credential chain must find the environment's keys and nothing else:
// no shared config files of the machine and never the instance metadata service.
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_CONFIG_FILE ??= '/nonexistent/sluice-test-aws-config';
process.env.AWS_SHARED_CREDENTIALS_FILE ??= '/nonexistent/sluice-test-aws-credentials';

const { Kafka, logLevel } = kafkajs;

export function describeError(e) {
  const names = [];
  let k = e;
  let found = null;
  for (let i = 0; k && i < 8; i++) {
    names.push(k.name || k.constructor?.name || typeof k);
    if (k.type && found == null) found = k;
    k = k.cause || k.originalError || (k.errors && k.errors[0]);
  }
  return { ok: false, type: found?.type ?? null, code: found?.code ?? null, name: names.join('<'),
    error: String(e?.message || e) };
}

function writeAtomic(path, obj) {
  fs.writeFileSync(`${path}.tmp`, JSON.stringify(obj));
  fs.renameSync(`${path}.tmp`, path);
}

function privateCluster(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.toString() === 'Symbol(private:Kafka:createCluster)');
  return kafka[sym]({ allowAutoTopicCreation: false });
}

// FindCoordinator for `group` with kafkajs's own broker API. kafkajs's consumer and admin hide
// this request's error (cluster.findGroupCoordinator tries every broker and swallows what each
// answered, then throws KafkaJSGroupCoordinatorNotFound), so a GROUP_AUTHORIZATION_FAILED would
// not be seen; asked here first, its Kafka error is what the step reports.
async function findCoordinator(kafka, group) {
  const cluster = privateCluster(kafka);
  await cluster.connect();
  try {
    await cluster.refreshMetadata();
    const nodeId = Object.keys(cluster.brokerPool.brokers)[0];
    const broker = await cluster.findBroker({ nodeId });
    return await broker.findGroupCoordinator({ groupId: group, coordinatorType: 0 });
  } finally {
    await cluster.disconnect();
  }
}

async function fetchNoGroup(kafka, topic, partition, n) {
  const cluster = privateCluster(kafka);
  await cluster.connect();
  try {
    await cluster.addTargetTopic(topic);
    await cluster.refreshMetadata();
    const leaders = cluster.findLeaderForPartitions(topic, [partition]);
    const broker = await cluster.findBroker({ nodeId: Object.keys(leaders)[0] });
    const got = [];
    const deadline = Date.now() + 20000;
    while (got.length < n && Date.now() < deadline) {
      const resp = await broker.fetch({ replicaId: -1, isolationLevel: 1, maxWaitTime: 100, minBytes: 1, maxBytes: 1 << 20,
        topics: [{ topic, partitions: [{ partition, fetchOffset: String(got.length), maxBytes: 1 << 20 }] }] });
      for (const m of resp.responses[0].partitions[0].messages) if (Number(m.offset) === got.length) got.push(m.value.toString());
    }
    return { values: got };
  } finally {
    await cluster.disconnect();
  }
}

async function consumeGroup(kafka, topic, group, n) {
  await findCoordinator(kafka, group);
  const consumer = kafka.consumer({ groupId: group, allowAutoTopicCreation: false, sessionTimeout: 10000,
    heartbeatInterval: 1000, retry: { retries: 0, restartOnFailure: async () => false } });
  const values = [];
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise((resolve, reject) => {
      consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error));
      consumer.run({ eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.length >= n) resolve();
      } }).catch(reject);
    });
    return { values };
  } finally {
    await consumer.disconnect().catch(() => {});
  }
}

async function loop(kafka, s) {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const errors = [];
  let acked = 0;
  const end = Date.now() + (s.maxMs ?? 240000);
  await producer.connect();
  try {
    writeAtomic(s.progress, { acked, errors });
    while (!fs.existsSync(s.stop) && Date.now() < end) {
      try {
        await producer.send({ topic: s.topic, acks: -1, timeout: 10000,
          messages: [{ partition: s.partition ?? 0, value: `${s.tag}-${acked}` }] });
        acked++;
      } catch (e) {
        errors.push({ at: acked, ...describeError(e) });
        await new Promise((r) => setTimeout(r, 200)); // back off before the retry of this value
      }
      writeAtomic(s.progress, { acked, errors });
      if (s.intervalMs) await new Promise((r) => setTimeout(r, s.intervalMs));
    }
    return { acked, errors, stopped: fs.existsSync(s.stop) };
  } finally {
    await producer.disconnect().catch(() => {});
  }
}

async function step(kafka, s) {
  if (s.op === 'produce') {
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const messages = [...Array(s.n).keys()].map((i) => ({ partition: s.partition ?? 0, value: `${s.tag}-${i}` }));
      const r = await producer.send({ topic: s.topic, acks: -1, messages });
      return { records: s.n, baseOffset: Number(r[0].baseOffset) };
    } finally { await producer.disconnect().catch(() => {}); }
  }
  if (s.op === 'consume') return consumeGroup(kafka, s.topic, s.group, s.n);
  if (s.op === 'fetch') return fetchNoGroup(kafka, s.topic, s.partition ?? 0, s.n);
  if (s.op === 'loop') return loop(kafka, s);
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (s.op === 'describeTopic') {
      const md = await admin.fetchTopicMetadata({ topics: [s.topic] });
      return { partitions: md.topics[0].partitions.length };
    }
    if (s.op === 'offsets') {
      const o = await admin.fetchTopicOffsets(s.topic);
      return { high: o.map((p) => Number(p.high)) };
    }
    if (s.op === 'createTopic') {
      await admin.createTopics({ topics: [{ topic: s.topic, numPartitions: s.partitions ?? 1, replicationFactor: 1 }], waitForLeaders: false });
      return {};
    }
    if (s.op === 'deleteTopic') { await admin.deleteTopics({ topics: [s.topic], timeout: 10000 }); return {}; }
    if (s.op === 'describeGroup') {
      await findCoordinator(kafka, s.group);
      const r = await admin.describeGroups([s.group]);
      return { state: r.groups[0].state }; // kafkajs throws on a group's error code
    }
    if (s.op === 'describeCluster') {
      const r = await admin.describeAcls({ resourceType: kafkajs.AclResourceTypes.ANY, resourcePatternType: kafkajs.ResourcePatternTypes.ANY,
        operation: kafkajs.AclOperationTypes.ANY, permissionType: kafkajs.AclPermissionTypes.ANY });
      return { resources: r.resources.length };
    }
    throw new Error(`unknown op ${s.op}`);
  } finally { await admin.disconnect().catch(() => {}); }
}

// Runs `steps` with a kafkajs client whose SASL settings are `sasl` and prints the results.
export async function runSteps(clientId, sasl) {
  const [bootstrap, caPath, stepsJson] = process.argv.slice(2);
  const steps = JSON.parse(stepsJson);
  const kafka = new Kafka({
    clientId, brokers: [bootstrap], logLevel: process.env.SLUICE_KAFKAJS_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
    // Refusals are not retriable in kafkajs, so retries only ride out a metadata refresh.
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 }, connectionTimeout: 10000, requestTimeout: 20000,
    ssl: { ca: [fs.readFileSync(caPath, 'utf8')], rejectUnauthorized: true, servername: 'localhost' },
    sasl,
  });
  const results = [];
  for (const s of steps) {
    const limit = s.op === 'loop' ? (s.maxMs ?? 240000) + 30000 : 45000;
    try {
      const r = await withDeadline(limit, s.op, step(kafka, s));
      results.push(r.ok === false ? { op: s.op, ...r } : { op: s.op, ok: true, ...r });
    } catch (e) {
      results.push({ op: s.op, ...describeError(e) });
    }
  }
  console.log(JSON.stringify({ steps: results }));
  process.exit(0);
}
