// kafkajs through a gateway in SNI mode (sluice.gateway.address.mode=sni): every broker name the
// client is given (e.g. broker-2.gw.test) is dialled at 127.0.0.1 with that name as the TLS
// server name, which is how the gateway tells the brokers apart. Produces N records over the
// topic's 3 partitions, reads them back with a consumer group, and prints one JSON line:
// {"ok": bool, "produced": n, "consumed": n, "dials": [[server name, port], ...], "error"?}.
// Usage: node sni_kafkajs.mjs BOOTSTRAP_NAME:PORT TOPIC N   (SASL/TLS settings: common.mjs)
import net from 'node:net';
import tls from 'node:tls';
import kafkajs from 'kafkajs';
import { connOptions, withDeadline } from './common.mjs';

const { Kafka, logLevel } = kafkajs;
const [bootstrap, topic, nArg] = process.argv.slice(2);
const N = Number(nArg || 300);
const dials = [];
const opts = connOptions('kafkajs');
// The chain is verified against the test CA; the names are test names the certificate does not
// carry, so only the host name check is skipped.
opts.ssl = { ...opts.ssl, checkServerIdentity: () => undefined };
const socketFactory = ({ host, port, ssl, onConnect }) => {
  dials.push([host, port]);
  const s = ssl ? tls.connect({ ...ssl, host: '127.0.0.1', port, servername: host }, onConnect)
    : net.connect({ host: '127.0.0.1', port }, onConnect);
  s.setKeepAlive(true, 60000);
  return s;
};
const kafka = new Kafka({ clientId: 'sluice-sni-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING, retry: { retries: 5 }, socketFactory, ...opts });

async function main() {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const consumer = kafka.consumer({ groupId: `sni-${topic}` });
  const result = { ok: false, produced: 0, consumed: 0 };
  try {
    await producer.connect();
    const messages = [...Array(N).keys()].map((i) => ({ partition: i % 3, value: `sni ${i}` }));
    for (let i = 0; i < N; i += 100) {
      await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 100) });
    }
    result.produced = N;
    const seen = new Set();
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await withDeadline(60000, 'consume', new Promise((resolve) => {
      consumer.run({ eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size >= N) resolve();
      } });
    }));
    result.consumed = seen.size;
    result.ok = [...Array(N).keys()].every((i) => seen.has(`sni ${i}`));
  } catch (e) {
    result.error = String(e && e.stack ? e.stack : e);
  } finally {
    await Promise.allSettled([producer.disconnect(), consumer.disconnect()]);
  }
  result.dials = dials;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
main();
