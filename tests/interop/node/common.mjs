// Shared by the node interop scripts: deterministic records and byte-exact verification.
// Each script prints one JSON line on stdout: {"codecs": {codec: {"ok": true, "records": n} |
// {"skipped": reason} | {"ok": false, "error": text}}}, and exits non-zero on a failure.
import crypto from 'node:crypto';
import fs from 'node:fs';

export const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
export const PARTITIONS = 3;

// n records round-robin over PARTITIONS: distinct binary keys, binary/text/empty values of
// varied sizes, headers (text, binary, empty) and explicit timestamps an hour in the past.
export function makeRecords(tag, n) {
  const baseTs = (Math.floor(Date.now() / 1000) - 3600) * 1000;
  const out = [];
  for (let i = 0; i < n; i++) {
    const key = Buffer.concat([Buffer.from(`${tag}-key-${i}`), Buffer.from([i % 256])]);
    let value;
    const kind = i % 4;
    if (kind === 0) value = Buffer.alloc(0);
    else if (kind === 1) value = crypto.createHash('sha256').update(`${tag}${i}`).digest();
    else value = Buffer.from(`value ${i} of ${tag}; `.repeat(1 + (i % 17)));
    const headers = [
      ['seq', Buffer.from(String(i))],
      ['bin', Buffer.from([i % 256, 0, 255])],
      ['empty', Buffer.alloc(0)],
    ];
    out.push({ partition: i % PARTITIONS, key, value, headers, timestamp: baseTs + i });
  }
  return out;
}

export function byPartition(records) {
  const out = [];
  for (let p = 0; p < PARTITIONS; p++) out.push([]);
  for (const r of records) out[r.partition].push(r);
  return out;
}

const eqBuf = (a, b) => (a == null || a.length === 0 ? b == null || b.length === 0 : b != null && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0);

// got: [{offset, key, value, headers: [[k, v]...], timestamp}] for one partition, in the order
// read. Throws with a precise message on the first difference.
export function verifyPartition(what, p, expected, got) {
  if (got.length !== expected.length) throw new Error(`${what} p${p}: got ${got.length} records, want ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const g = got[i];
    const e = expected[i];
    if (Number(g.offset) !== i) throw new Error(`${what} p${p}: record #${i} has offset ${g.offset}`);
    if (!eqBuf(g.key, e.key) || (g.key == null) !== (e.key == null)) throw new Error(`${what} p${p} offset ${i}: key differs`);
    if (!eqBuf(g.value, e.value)) throw new Error(`${what} p${p} offset ${i}: value differs (${g.value?.length} vs ${e.value.length} bytes)`);
    if (Number(g.timestamp) !== e.timestamp) throw new Error(`${what} p${p} offset ${i}: timestamp ${g.timestamp} != ${e.timestamp}`);
    if (g.headers.length !== e.headers.length) throw new Error(`${what} p${p} offset ${i}: ${g.headers.length} headers, want ${e.headers.length}`);
    for (let j = 0; j < e.headers.length; j++) {
      const [gk, gv] = g.headers[j];
      const [ek, ev] = e.headers[j];
      if (String(gk) !== ek || !eqBuf(gv, ev)) throw new Error(`${what} p${p} offset ${i}: header ${j} is ${gk}=${gv?.toString('hex')}, want ${ek}=${ev.toString('hex')}`);
    }
  }
}

export async function withDeadline(ms, what, promise) {
  let timer;
  const t = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); });
  try { return await Promise.race([promise, t]); } finally { clearTimeout(timer); }
}

export function finish(result) {
  console.log(JSON.stringify(result));
  const bad = Object.values(result.codecs).some((r) => !r.ok && !('skipped' in r));
  process.exit(bad ? 1 : 0);
}

// Connection settings from the environment, for runs through a SASL_SSL endpoint (the gateway
// tests): SLUICE_SASL_MECHANISM, SLUICE_SASL_USERNAME and SASL_PASSWORD for SASL, SASL_SSL_CA
// (a PEM file) for TLS. Unset: PLAINTEXT, as before. SLUICE_TOPICS_PRECREATED=1: the topics
// exist already (an upstream without CreateTopics, e.g. the librdkafka mock), do not create them.
export function connOptions(client) {
  const out = {};
  const mechanism = process.env.SLUICE_SASL_MECHANISM;
  if (mechanism) {
    const cred = { username: process.env.SLUICE_SASL_USERNAME, password: process.env.SASL_PASSWORD };
    out.sasl = client === 'kafkajs' ? { mechanism: mechanism.toLowerCase(), ...cred } : { mechanism, ...cred };
  }
  if (process.env.SASL_SSL_CA) {
    const ca = [fs.readFileSync(process.env.SASL_SSL_CA)];
    if (client === 'kafkajs') out.ssl = { ca };
    else out.tls = { ca };
  }
  return out;
}
export const TOPICS_PRECREATED = process.env.SLUICE_TOPICS_PRECREATED === '1';
