// kafkajs with the AWS_MSK_IAM mechanism of the npm package
// @jm18457/kafkajs-msk-iam-authentication-mechanism, unchanged: the credentials come from the
// standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables (the AWS SDK's
// default chain), the payload is signed for the broker host kafkajs connects to.
// Usage: node iam_kafkajs_msk.mjs HOST:PORT CA_PEM STEPS_JSON   (region: AWS_REGION, else
// us-east-1; SLUICE_MSK_TTL: the mechanism's `ttl`, the signature's lifetime in seconds, default
// 900). Steps and output: iam_steps.mjs.
import { createMechanism } from '@jm18457/kafkajs-msk-iam-authentication-mechanism';
import { runSteps } from './iam_steps.mjs';

const options = { region: process.env.AWS_REGION || 'us-east-1' };
if (process.env.SLUICE_MSK_TTL) options.ttl = process.env.SLUICE_MSK_TTL;
await runSteps('sluice-iam-kafkajs-msk', createMechanism(options));
