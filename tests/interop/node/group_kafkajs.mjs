// kafkajs 2.2 as a member of a consumer group shared with librdkafka and kafka-python.
// kafkajs ships only 'RoundRobinAssigner' (its own protocol name, which the other clients do not
// advertise), so this registers a range assigner under the standard protocol name "range" with
// the standard consumer-protocol encoding (kafkajs's MemberMetadata/MemberAssignment are
// ConsumerProtocolSubscription/Assignment v0): the three clients then share one group.
// Prints JSON lines: {"ev":"assign","t":ms,"parts":[...]} | {"ev":"revoke","t":ms} |
// {"ev":"rec","p":partition,"o":offset} | {"ev":"done"}. Runs until SIGTERM, then leaves.
// Usage: node group_kafkajs.mjs HOST:PORT TOPIC GROUP
import kafkajs from 'kafkajs';

const { Kafka, logLevel, AssignerProtocol } = kafkajs;
const [bootstrap, topic, groupId] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const RangeAssigner = ({ cluster }) => ({
  name: 'range',
  version: 0,
  async assign({ members, topics }) {
    const sorted = members.map((m) => m.memberId).sort();
    const plan = Object.fromEntries(sorted.map((id) => [id, {}]));
    for (const t of topics) {
      const parts = cluster.findTopicPartitionMetadata(t).map((m) => m.partitionId).sort((a, b) => a - b);
      const per = Math.floor(parts.length / sorted.length);
      const extra = parts.length % sorted.length;
      let i = 0;
      sorted.forEach((id, k) => {
        const n = per + (k < extra ? 1 : 0);
        plan[id][t] = parts.slice(i, i + n);
        i += n;
      });
    }
    return sorted.map((memberId) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: plan[memberId], userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'range', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});

const kafka = new Kafka({ clientId: 'sluice-group-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING, retry: { retries: 30 } });
const consumer = kafka.consumer({ groupId, partitionAssigners: [RangeAssigner], sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 20000 });
consumer.on(consumer.events.GROUP_JOIN, (e) => {
  const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
  out({ ev: 'assign', t: Date.now(), parts, protocol: e.payload.groupProtocol });
});
consumer.on(consumer.events.REBALANCING, () => out({ ev: 'revoke', t: Date.now() }));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await consumer.disconnect(); // commits what was processed, then LeaveGroup
  } finally {
    out({ ev: 'revoke', t: Date.now() });
    out({ ev: 'done' });
    process.exit(0);
  }
}
process.on('SIGTERM', stop);

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  autoCommit: true,
  autoCommitInterval: 200,
  eachMessage: async ({ partition, message }) => {
    out({ ev: 'rec', p: partition, o: Number(message.offset) });
  },
});
