"""Regenerates the botocore-made MSK IAM fixtures next to this file (run once with
/usr/bin/python3, Debian python3-botocore 1.29.27; research notes msk-iam.md §4). botocore's
SigV4QueryAuth is an independent producer: the AWS_MSK_IAM payload is its presigned query with
lower-cased names plus version/host/user-agent (how aws-msk-iam-auth builds it), and the
OAUTHBEARER token is built the way aws-msk-iam-sasl-signer-python builds it."""
import base64, datetime as _dt, json, types
from urllib.parse import urlsplit, parse_qsl
import botocore.auth
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

def freeze(ts):  # botocore 1.29 reads datetime.datetime.utcnow() inside botocore.auth
    class Fixed(_dt.datetime):
        @classmethod
        def utcnow(cls): return ts
        @classmethod
        def now(cls, tz=None): return ts if tz is None else ts.replace(tzinfo=tz)
    botocore.auth.datetime = types.SimpleNamespace(datetime=Fixed, timedelta=_dt.timedelta, timezone=_dt.timezone)
    if hasattr(botocore.auth, 'get_current_datetime'):
        botocore.auth.get_current_datetime = lambda *a, **k: ts

def presign(host, creds, region, ts):
    freeze(ts)
    req = AWSRequest(method='GET', url=f'https://{host}/', params={'Action': 'kafka-cluster:Connect'})
    SigV4QueryAuth(creds, 'kafka-cluster', region, expires=900).add_auth(req)
    return req

def payload(host, creds, region, ts, ua):
    url = presign(host, creds, region, ts).url
    p = {'version': '2020_10_22', 'host': host, 'user-agent': ua}
    p.update({k.lower(): v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)})
    return json.dumps(p)

SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
ts = _dt.datetime(2026, 12, 6, 15, 0, 0)
with open('botocore-payload-long-term.json', 'w') as f:
    f.write(payload('b-1.demo.abc123.c3.kafka.eu-west-1.amazonaws.com',
                    Credentials('AKIDEXAMPLE', SECRET), 'eu-west-1', ts, 'botocore-fixture'))
with open('botocore-payload-session.json', 'w') as f:
    f.write(payload('b-2.demo.abc123.c3.kafka.eu-west-1.amazonaws.com',
                    Credentials('ASIAEXAMPLE', SECRET, 'tok/en+=x'), 'eu-west-1', ts, 'botocore-fixture'))
req = presign('kafka.us-west-2.amazonaws.com', Credentials('AKIDEXAMPLE', SECRET, 'tok/en+=x'), 'us-west-2', ts)
req.params = {'User-Agent': 'aws-msk-iam-sasl-signer-python/1.0.1'}
with open('botocore-token.txt', 'w') as f:
    f.write(base64.urlsafe_b64encode(req.prepare().url.encode()).decode().rstrip('='))

# The STS endpoint's header form (src/iam/sl_iam_sts.h): an AssumeRole POST signed the way
# botocore's STS client signs it (SigV4Auth, service sts), saved as the headers it sends and the
# body, one "Name: value" line each, a blank line, then the body.
from botocore.auth import SigV4Auth
def sts_request(host, creds, region, ts, body):
    freeze(ts)
    req = AWSRequest(method='POST', url=f'https://{host}/', data=body,
                     headers={'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8'})
    SigV4Auth(creds, 'sts', region).add_auth(req)
    p = req.prepare()
    lines = [f'{k}: {v}' for k, v in p.headers.items()]
    if not any(k.lower() == 'host' for k in p.headers):
        lines.insert(0, f'Host: {host}')
    return '\r\n'.join(lines) + '\r\n\r\n' + body
with open('botocore-sts-assume-role.txt', 'w', newline='') as f:
    f.write(sts_request('127.0.0.1:9443', Credentials('ASIAEXAMPLE', SECRET, 'tok/en+=x'),
                        'eu-west-1', ts,
                        'Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012'
                        '%3Arole%2Forders-etl&RoleSessionName=nightly&DurationSeconds=900'))
