// ACL administration and least-privilege probes with kafkajs over SASL_SSL (SCRAM-SHA-512).
// Usage: node acl_kafkajs.mjs HOST:PORT CA_PEM USER ACTION JSON   (password: SASL_PASSWORD env)
//   create   JSON = [acl, ...]         admin.createAcls
//   describe JSON = filter             admin.describeAcls
//   delete   JSON = [filter, ...]      admin.deleteAcls
//   produce  JSON = {topic, value}     producer.send, acks -1
//   consume  JSON = {topic, group, n}  a group consumer from the beginning until n records
//   topics   JSON = {}                 admin.fetchTopicMetadata() (all topics the caller sees)
// Enum fields are kafkajs names (TOPIC, LITERAL, READ, ALLOW...). Prints one JSON line:
// {"ok": true, "result": ...} or {"ok": false, "type": error.type, "code": n, "error": text}.
import fs from 'node:fs';
import kafkajs from 'kafkajs';

const [bootstrap, caPath, username, action, json] = process.argv.slice(2);
const spec = JSON.parse(json || '{}');
const { Kafka, logLevel, AclResourceTypes, ResourcePatternTypes, AclOperationTypes,
  AclPermissionTypes } = kafkajs;

function toAcl(a) {
  const out = { ...a };
  if (a.resourceType) out.resourceType = AclResourceTypes[a.resourceType];
  if (a.resourcePatternType) out.resourcePatternType = ResourcePatternTypes[a.resourcePatternType];
  if (a.operation) out.operation = AclOperationTypes[a.operation];
  if (a.permissionType) out.permissionType = AclPermissionTypes[a.permissionType];
  return out;
}

// Numbers back to names, so the Python side compares readable values.
function names(a) {
  const rev = (tab, v) => Object.keys(tab).find((k) => tab[k] === v) ?? v;
  const out = { ...a };
  if ('resourceType' in a) out.resourceType = rev(AclResourceTypes, a.resourceType);
  if ('resourcePatternType' in a) out.resourcePatternType = rev(ResourcePatternTypes, a.resourcePatternType);
  if ('patternType' in a) out.patternType = rev(ResourcePatternTypes, a.patternType);
  if ('operation' in a) out.operation = rev(AclOperationTypes, a.operation);
  if ('permissionType' in a) out.permissionType = rev(AclPermissionTypes, a.permissionType);
  return out;
}

const kafka = new Kafka({
  clientId: 'sluice-acl-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  retry: { retries: 0 }, connectionTimeout: 10000, requestTimeout: 20000,
  ssl: { ca: [fs.readFileSync(caPath, 'utf8')], rejectUnauthorized: true, servername: 'localhost' },
  sasl: { mechanism: 'scram-sha-512', username, password: process.env.SASL_PASSWORD },
});

async function run() {
  if (action === 'produce') {
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      return await producer.send({ topic: spec.topic, acks: -1, messages: [{ partition: 0, value: spec.value }] });
    } finally { await producer.disconnect(); }
  }
  if (action === 'consume') {
    const consumer = kafka.consumer({ groupId: spec.group, allowAutoTopicCreation: false });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: spec.topic, fromBeginning: true });
      let got = 0;
      await new Promise((resolve, reject) => {
        consumer.run({ eachMessage: async () => { if (++got >= spec.n) resolve(); } }).catch(reject);
      });
      return { records: got };
    } finally { await consumer.disconnect(); }
  }
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (action === 'create') return await admin.createAcls({ acl: spec.map(toAcl) });
    if (action === 'describe') {
      const r = await admin.describeAcls(toAcl(spec));
      return r.resources.map((res) => ({ ...names(res), acls: res.acls.map(names) }));
    }
    if (action === 'delete') {
      const r = await admin.deleteAcls({ filters: spec.map(toAcl) });
      return r.filterResponses.map((f) => ({ errorCode: f.errorCode, matchingAcls: f.matchingAcls.map(names) }));
    }
    if (action === 'topics') return (await admin.fetchTopicMetadata()).topics.map((t) => t.name).sort();
    throw new Error(`unknown action ${action}`);
  } finally { await admin.disconnect(); }
}

const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'timeout' })); process.exit(3); }, 60000);
try {
  const result = await run();
  console.log(JSON.stringify({ ok: true, result }));
  clearTimeout(timer);
  process.exit(0);
} catch (e) {
  // kafkajs wraps protocol errors (KafkaJSNonRetriableError, KafkaJSAggregateError): report the
  // first Kafka error type found down the chain.
  let k = e;
  for (let i = 0; k && !k.type && i < 5; i++) k = k.cause || k.originalError || (k.errors && k.errors[0]);
  console.log(JSON.stringify({ ok: false, type: k && k.type, code: k && k.code, error: String(e.message || e) }));
  clearTimeout(timer);
  process.exit(1);
}
