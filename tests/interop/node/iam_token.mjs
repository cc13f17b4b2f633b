// Prints one MSK OAUTHBEARER token made by the npm package aws-msk-iam-sasl-signer-js
// (generateAuthToken) from the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
// AWS_SESSION_TOKEN variables, as one JSON line {"token": "...", "expiryTime": ms since epoch}:
// what confluent-kafka's oauth_cb hands librdkafka in tests/interop/test_iam.py.
// Usage: node iam_token.mjs REGION
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_CONFIG_FILE ??= '/nonexistent/sluice-test-aws-config';
process.env.AWS_SHARED_CREDENTIALS_FILE ??= '/nonexistent/sluice-test-aws-credentials';
const { generateAuthToken } = await import('aws-msk-iam-sasl-signer-js');

const region = process.argv[2] || process.env.AWS_REGION || 'us-east-1';
try {
  const { token, expiryTime } = await generateAuthToken({ region });
  console.log(JSON.stringify({ token, expiryTime }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message || e) }));
  process.exit(1);
}
