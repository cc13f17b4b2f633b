// kafkajs with SASL/OAUTHBEARER whose tokens come from the npm package aws-msk-iam-sasl-signer-js
// (generateAuthToken, as its README shows for kafkajs): a base64url presigned
// kafka.<region>.amazonaws.com URL, signed with the standard AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables. A fresh token for every connection.
// Usage: node iam_kafkajs_oauth.mjs HOST:PORT CA_PEM STEPS_JSON   (region: AWS_REGION, else
// us-east-1). Steps and output: iam_steps.mjs.
import { generateAuthToken } from 'aws-msk-iam-sasl-signer-js';
import { runSteps } from './iam_steps.mjs';

const region = process.env.AWS_REGION || 'us-east-1';
await runSteps('sluice-iam-kafkajs-oauth', {
  mechanism: 'oauthbearer',
  oauthBearerProvider: async () => ({ value: (await generateAuthToken({ region })).token }),
});
