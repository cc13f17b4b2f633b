// kafkajs with the AWS_MSK_IAM mechanism of the npm package
// @jm18457/kafkajs-msk-iam-authentication-mechanism, unchanged: the credentials come from the
// standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables (the AWS SDK's
// default chain), the payload is signed for the broker host kafkajs connects to.
// Usage: node iam_kafkajs_msk.mjs HOST:PORT CA_PEM STEPS_JSON   (region: AWS_REGION, else
// us-east-1). Steps and output: iam_steps.mjs.
import { createMechanism } from '@jm18457/kafkajs-msk-iam-authentication-mechanism';
import { runSteps } from './iam_steps.mjs';

await runSteps('sluice-iam-kafkajs-msk', createMechanism({ region: process.env.AWS_REGION || 'us-east-1' }));
