"""`sluice iam` (issue 15): users, access keys, roles, assume-role, policy documents and
simulate, run as a script would run them. No broker: the command works on the IAM store file
named by -c (sluice.iam.file, sluice.iam.key.file) or by --store/--key-file. --json answers
are parsed with the json module and compared with the AWS CLI's shapes (create-access-key,
list-access-keys, sts assume-role), so scripts written for AWS parse them."""
import calendar
import json
import re
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKERS, SLUICE_BIN, sanitizer_env

ACCOUNT = "123456789012"
AKIA = re.compile(r"^AKIA[A-Z2-7]{16}$")
ASIA = re.compile(r"^ASIA[A-Z2-7]{16}$")
SECRET = re.compile(r"^[A-Za-z0-9+/]{40}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOPIC = f"arn:aws:kafka:us-east-1:{ACCOUNT}:topic/sluice/uuid-1"


class Iam:
    """Runs `sluice iam ...` against one store (configured with -c, or --store/--key-file)."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.store = tmp_path / "iam-store"
        self.keyfile = tmp_path / "iam.key"
        self.config = tmp_path / "server.properties"
        self.config.write_text(f"log.dirs={tmp_path / 'data'}\n"
                               f"sluice.iam.file={self.store}\n"
                               f"sluice.iam.key.file={self.keyfile}\n"
                               f"sluice.iam.account.id={ACCOUNT}\n")

    def run(self, *args, stdin=None, store_args=True):
        argv = [SLUICE_BIN, "iam", *args]
        if store_args:
            argv += ["-c", str(self.config)]
        res = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                             env=sanitizer_env(), timeout=60)
        for m in SANITIZER_MARKERS:
            assert m not in res.stderr, res.stderr
        return res

    def ok(self, *args, **kw):
        res = self.run(*args, **kw)
        assert res.returncode == 0, f"sluice iam {' '.join(args)}: rc {res.returncode}: " \
            f"{res.stderr}"
        return res.stdout

    def fails(self, rc, *args, **kw):
        res = self.run(*args, **kw)
        assert res.returncode == rc, f"sluice iam {' '.join(args)}: rc {res.returncode}, " \
            f"want {rc}: {res.stdout} {res.stderr}"
        assert res.stderr.strip(), "a failure must say what failed"
        assert res.stdout == "", "a failure prints nothing a script could take for an answer"
        return res.stderr

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, "--json", **kw))

    def stored_bytes(self):
        """Every byte the store keeps on disk (the file, its lock and temporaries)."""
        return b"".join(p.read_bytes() for p in self.dir.rglob("*")
                        if p.is_file() and p.name != self.keyfile.name)


@pytest.fixture
def iam(tmp_path):
    return Iam(tmp_path)


def epoch(iso):
    assert ISO.match(iso), iso
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def key_ids(iam, user):
    return [k["AccessKeyId"] for k in iam.json("key", "list", "--user", user)["AccessKeyMetadata"]]


# ---- users -----------------------------------------------------------------------------------

def test_user_add_list_rm_with_tags(iam):
    iam.ok("user", "add", "alice", "--tag", "team=payments", "--tag", "env=prod")
    iam.ok("user", "add", "bob")
    assert iam.store.exists(), "-c must name the store (sluice.iam.file)"
    assert "exists" in iam.fails(1, "user", "add", "alice")
    assert iam.fails(1, "user", "add", "bad/name")
    text = iam.ok("user", "list")
    alice = [ln for ln in text.splitlines() if ln.startswith("alice ")]
    assert len(alice) == 1 and "team=payments" in alice[0] and "env=prod" in alice[0], text
    users = iam.json("user", "list")["Users"]
    assert sorted(u["UserName"] for u in users) == ["alice", "bob"]
    a = next(u for u in users if u["UserName"] == "alice")
    assert a["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert {t["Key"]: t["Value"] for t in a["Tags"]} == {"team": "payments", "env": "prod"}
    assert next(u for u in users if u["UserName"] == "bob")["Tags"] == []
    iam.ok("user", "rm", "alice")
    assert [u["UserName"] for u in iam.json("user", "list")["Users"]] == ["bob"]
    assert "no user alice" in iam.fails(1, "user", "rm", "alice")


def test_json_escapes_tag_values(iam):
    """Tag values are free text: quotes, backslashes, non-ASCII and bytes that are not UTF-8
    still give JSON that parses (invalid bytes as U+FFFD)."""
    iam.ok("user", "add", "gina", "--tag", 'q=say "hi" \\ back', "--tag", "u=caf\u00e9")
    res = subprocess.run([SLUICE_BIN, "iam", "role", "add", "raw", "--tag", b"x=a\xff\xc3b",
                          "-c", str(iam.config)], capture_output=True, env=sanitizer_env(),
                         timeout=60)
    assert res.returncode == 0, res.stderr
    tags = {t["Key"]: t["Value"] for t in iam.json("user", "list")["Users"][0]["Tags"]}
    assert tags == {"q": 'say "hi" \\ back', "u": "caf\u00e9"}
    res = subprocess.run([SLUICE_BIN, "iam", "role", "list", "--json", "-c", str(iam.config)],
                         capture_output=True, env=sanitizer_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    roles = json.loads(res.stdout)["Roles"]  # bytes: strict UTF-8
    assert roles[0]["Tags"] == [{"Key": "x", "Value": "a\ufffd\ufffdb"}]


def test_store_and_key_file_options(iam, tmp_path):
    """--store/--key-file instead of -c; the default account then is 000000000000."""
    st = ["--store", str(tmp_path / "other"), "--key-file", str(tmp_path / "other.key")]
    assert iam.json("user", "list", *st, store_args=False) == {"Users": []}
    assert not (tmp_path / "other").exists(), "listing must not create a store"
    iam.ok("user", "add", "dave", *st, store_args=False)
    users = iam.json("user", "list", *st, store_args=False)["Users"]
    assert [u["Arn"] for u in users] == ["arn:aws:iam::000000000000:user/dave"]
    assert iam.json("user", "list")["Users"] == [], "the -c store is another one"


# ---- access keys -----------------------------------------------------------------------------

def test_key_create_shape_secret_shown_once_and_not_stored(iam):
    iam.ok("user", "add", "bob")
    before = time.time()
    d = iam.json("key", "create", "--user", "bob")
    assert list(d) == ["AccessKey"]
    k = d["AccessKey"]
    assert set(k) == {"UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"}
    assert k["UserName"] == "bob" and k["Status"] == "Active"
    assert AKIA.match(k["AccessKeyId"]), k["AccessKeyId"]
    assert SECRET.match(k["SecretAccessKey"]), "secret must be 40 characters"
    assert before - 5 <= epoch(k["CreateDate"]) <= time.time() + 5
    secret = k["SecretAccessKey"].encode()
    assert secret not in iam.stored_bytes(), "the store holds the secret in clear"
    # Text form: exactly two lines.
    text = iam.ok("key", "create", "--user", "bob")
    m = re.fullmatch(r"AccessKeyId: (AKIA[A-Z2-7]{16})\nSecretAccessKey: ([A-Za-z0-9+/]{40})\n",
                     text)
    assert m, text
    assert m.group(2).encode() not in iam.stored_bytes()
    assert m.group(1) != k["AccessKeyId"] and m.group(2) != k["SecretAccessKey"]
    # Shown once: nothing else prints it.
    for args in (("key", "list", "--user", "bob"), ("key", "list", "--user", "bob", "--json"),
                 ("user", "list", "--json")):
        out = iam.ok(*args)
        assert k["SecretAccessKey"] not in out and m.group(2) not in out
    # A third key is refused and not created.
    err = iam.fails(1, "key", "create", "--user", "bob")
    assert "2 access keys" in err, err
    assert sorted(key_ids(iam, "bob")) == sorted([k["AccessKeyId"], m.group(1)])
    assert "no user nobody" in iam.fails(1, "key", "create", "--user", "nobody")


def test_key_list_disable_enable_rotate(iam):
    iam.ok("user", "add", "carol")
    assert iam.json("key", "list", "--user", "carol") == {"AccessKeyMetadata": []}
    assert "no access key to rotate" in iam.fails(1, "key", "rotate", "--user", "carol")
    assert "no user ghost" in iam.fails(1, "key", "list", "--user", "ghost")
    k1 = iam.json("key", "create", "--user", "carol")["AccessKey"]["AccessKeyId"]
    meta = iam.json("key", "list", "--user", "carol")
    assert list(meta) == ["AccessKeyMetadata"] and len(meta["AccessKeyMetadata"]) == 1
    m = meta["AccessKeyMetadata"][0]
    assert set(m) == {"UserName", "AccessKeyId", "Status", "CreateDate"}, \
        "LastUsedDate must be absent for a key never used"
    assert m["UserName"] == "carol" and m["AccessKeyId"] == k1 and m["Status"] == "Active"
    assert abs(epoch(m["CreateDate"]) - time.time()) < 60
    text = iam.ok("key", "list", "--user", "carol")
    row = [ln for ln in text.splitlines() if ln.startswith(k1)]
    assert len(row) == 1 and "Active" in row[0] and "never" in row[0], text
    assert row[0].split()[-1] == "0", f"age in days: {row[0]}"
    # Rotation: second key, refused at two, works after disable + rm of the old one.
    r = iam.json("key", "rotate", "--user", "carol")["AccessKey"]
    assert AKIA.match(r["AccessKeyId"]) and SECRET.match(r["SecretAccessKey"])
    k2 = r["AccessKeyId"]
    err = iam.fails(1, "key", "rotate", "--user", "carol")
    assert "disable" in err and "2 access keys" in err, err
    iam.ok("key", "disable", k1)
    status = {k["AccessKeyId"]: k["Status"] for k in
              iam.json("key", "list", "--user", "carol")["AccessKeyMetadata"]}
    assert status == {k1: "Inactive", k2: "Active"}
    iam.ok("key", "enable", k1)
    assert {k["AccessKeyId"]: k["Status"] for k in iam.json(
        "key", "list", "--user", "carol")["AccessKeyMetadata"]}[k1] == "Active"
    iam.fails(1, "key", "rotate", "--user", "carol")
    iam.ok("key", "disable", k1)
    iam.ok("key", "rm", k1)
    assert key_ids(iam, "carol") == [k2]
    text = iam.ok("key", "rotate", "--user", "carol")
    k3 = re.fullmatch(r"AccessKeyId: (AKIA[A-Z2-7]{16})\nSecretAccessKey: [A-Za-z0-9+/]{40}\n",
                      text).group(1)
    assert sorted(key_ids(iam, "carol")) == sorted([k2, k3])
    assert "no access key" in iam.fails(1, "key", "disable", k1)
    assert "no access key" in iam.fails(1, "key", "rm", k1)


# ---- roles -----------------------------------------------------------------------------------

def test_role_assume_role_shape_and_duration_bounds(iam):
    iam.ok("role", "add", "app", "--max-session-duration", "2h", "--tag", "team=fraud")
    roles = iam.json("role", "list")["Roles"]
    assert [(r["RoleName"], r["MaxSessionDuration"], r["Arn"]) for r in roles] == \
        [("app", 7200, f"arn:aws:iam::{ACCOUNT}:role/app")]
    assert "exists" in iam.fails(1, "role", "add", "app")
    before = time.time()
    d = iam.json("assume-role", "app", "--session-name", "s1", "--duration", "30m")
    assert set(d) == {"Credentials", "AssumedRoleUser"}
    c = d["Credentials"]
    assert set(c) == {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert ASIA.match(c["AccessKeyId"]), c["AccessKeyId"]
    assert SECRET.match(c["SecretAccessKey"])
    assert re.fullmatch(r"[A-Za-z0-9+/=_-]{40,}", c["SessionToken"]), c["SessionToken"]
    exp = epoch(c["Expiration"])
    assert before + 1800 - 5 <= exp <= time.time() + 1800 + 5, "Expiration must be 30 min ahead"
    assert d["AssumedRoleUser"] == {"AssumedRoleId": c["AccessKeyId"] + ":s1",
                                    "Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1"}
    stored = iam.stored_bytes()
    assert c["SecretAccessKey"].encode() not in stored
    assert c["SessionToken"].encode() not in stored
    # Text form: three lines; other forms of the duration.
    text = iam.ok("assume-role", "app", "--duration", "3600")
    assert re.fullmatch(r"AccessKeyId: ASIA[A-Z2-7]{16}\nSecretAccessKey: [A-Za-z0-9+/]{40}\n"
                        r"SessionToken: \S+\n", text), text
    for dur, secs in (("900s", 900), ("2h", 7200), ("120m", 7200)):
        exp = epoch(iam.json("assume-role", "app", "--duration", dur)["Credentials"]["Expiration"])
        assert abs(exp - time.time() - secs) < 10, dur
    # Bounds: 900 s .. 12 h (usage errors), and the role's own maximum (a failure).
    for bad in ("899", "14m", "13h", "43201s", "1x", "h", "-1h"):
        assert "duration" in iam.fails(2, "assume-role", "app", "--duration", bad)
    assert "maximum" in iam.fails(1, "assume-role", "app", "--duration", "3h")
    assert iam.fails(2, "role", "add", "long", "--max-session-duration", "13h")
    assert iam.fails(2, "role", "add", "short", "--max-session-duration", "10m")
    iam.ok("role", "add", "max12", "--max-session-duration", "12h")
    iam.ok("assume-role", "max12", "--duration", "12h")
    # The configured ceiling applies to roles added before it was lowered.
    low = iam.dir / "low.properties"
    low.write_text(iam.config.read_text() + "sluice.iam.max.session.duration.ms=3600000\n")
    err = iam.fails(1, "assume-role", "max12", "--duration", "2h", "-c", str(low),
                    store_args=False)
    assert "sluice.iam.max.session.duration.ms" in err, err
    assert "sluice.iam.max.session.duration.ms" in iam.fails(
        1, "role", "add", "r2", "--max-session-duration", "2h", "-c", str(low), store_args=False)
    iam.ok("assume-role", "max12", "--duration", "1h", "-c", str(low), store_args=False)
    assert "no role ghost" in iam.fails(1, "assume-role", "ghost")
    assert iam.fails(2, "assume-role", "app", "--session-name", "bad/name")
    iam.ok("role", "rm", "app")
    assert "no role app" in iam.fails(1, "assume-role", "app")
    assert "no role app" in iam.fails(1, "role", "rm", "app")


# ---- policies --------------------------------------------------------------------------------

def write_policy(iam, name, statements):
    p = iam.dir / f"{name}.json"
    p.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2))
    return p


def test_policy_put_get_attach_detach_rm(iam):
    iam.ok("user", "add", "erin")
    iam.ok("role", "add", "reader")
    # Refused documents: the engine's reason, nothing stored.
    bad = iam.dir / "bad.json"
    bad.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "kafka-cluster:*", "Resource": "*"}]}))
    err = iam.fails(1, "policy", "put", "bad", str(bad))
    assert "refused" in err and "Statement[0].Principal" in err, err
    bad.write_text('{"Version": "2012-10-17", "Statement": [')
    assert "refused" in iam.fails(1, "policy", "put", "bad", str(bad))
    assert "no policy bad" in iam.fails(1, "policy", "get", "bad")
    assert "cannot open" in iam.fails(1, "policy", "put", "x", str(iam.dir / "missing.json"))
    # A good one round-trips.
    doc = write_policy(iam, "rw", [{"Sid": "Read", "Effect": "Allow",
                                    "Action": ["kafka-cluster:ReadData",
                                               "kafka-cluster:DescribeTopic"],
                                    "Resource": f"{TOPIC}/orders"}])
    iam.ok("policy", "put", "rw", str(doc))
    assert json.loads(iam.ok("policy", "get", "rw")) == json.loads(doc.read_text())
    assert iam.ok("policy", "list").split() == ["rw"]
    assert [p["PolicyName"] for p in iam.json("policy", "list")["Policies"]] == ["rw"]
    # Attach to a user and a role; rm refused while attached.
    iam.ok("policy", "attach", "rw", "--user", "erin")
    iam.ok("policy", "attach", "rw", "--role", "reader")
    erin = iam.json("user", "list")["Users"][0]
    assert erin["AttachedPolicies"] == ["rw"]
    assert iam.json("role", "list")["Roles"][0]["AttachedPolicies"] == ["rw"]
    assert "detach" in iam.fails(1, "policy", "rm", "rw")
    assert "no user ghost" in iam.fails(1, "policy", "attach", "rw", "--user", "ghost")
    assert "no policy nope" in iam.fails(1, "policy", "attach", "nope", "--user", "erin")
    iam.ok("policy", "detach", "rw", "--user", "erin")
    assert iam.json("user", "list")["Users"][0]["AttachedPolicies"] == []
    assert "not attached" in iam.fails(1, "policy", "detach", "rw", "--user", "erin")
    assert "detach" in iam.fails(1, "policy", "rm", "rw"), "still attached to the role"
    iam.ok("policy", "detach", "rw", "--role", "reader")
    iam.ok("policy", "rm", "rw")
    assert "no policy rw" in iam.fails(1, "policy", "get", "rw")
    assert iam.ok("policy", "list") == ""
    # Replacing a document (put again) keeps its name; stdin works as FILE "-".
    iam.ok("policy", "put", "rw", "-", stdin=doc.read_text())
    iam.ok("policy", "put", "rw", "-", stdin=json.dumps(
        {"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*",
                                               "Resource": "*"}}))
    assert json.loads(iam.ok("policy", "get", "rw"))["Statement"]["Effect"] == "Deny"


def simulate(iam, who, action, resource, *extra):
    args = ["policy", "simulate", *who, "--action", action, "--resource", resource, *extra]
    text = iam.run(*args)
    js = iam.run(*args, "--json")
    assert text.returncode == js.returncode, (text.stderr, js.stderr)
    assert text.returncode in (0, 1), text.stderr
    return text.returncode, text.stdout.strip(), json.loads(js.stdout)


def test_simulate_decisions_and_conditions(iam):
    iam.ok("user", "add", "frank", "--tag", "team=payments")
    iam.ok("user", "add", "nopol")
    iam.ok("role", "add", "payments", "--tag", "team=payments")
    write_policy(iam, "writer", [
        {"Sid": "WriteFromOffice", "Effect": "Allow", "Action": "kafka-cluster:WriteData",
         "Resource": f"{TOPIC}/payments-*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Sid": "TeamTopics", "Effect": "Allow", "Action": "kafka-cluster:ReadData",
         "Resource": f"{TOPIC}/${{aws:PrincipalTag/team}}-*"},
        {"Sid": "OwnTopics", "Effect": "Allow", "Action": "kafka-cluster:DescribeTopic",
         "Resource": f"{TOPIC}/${{aws:username}}-*"}])
    write_policy(iam, "tls-only", [
        {"Sid": "DenyPlaintext", "Effect": "Deny", "Action": "kafka-cluster:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}])
    for p in ("writer", "tls-only"):
        iam.ok("policy", "put", p, str(iam.dir / f"{p}.json"))
        iam.ok("policy", "attach", p, "--user", "frank")
        iam.ok("policy", "attach", p, "--role", "payments")
    user, tls, office = ["--user", "frank"], ["--secure-transport"], ["--source-ip", "10.1.2.3"]

    rc, text, js = simulate(iam, user, "kafka-cluster:WriteData", f"{TOPIC}/payments-in",
                            *tls, *office)
    assert rc == 0 and text == "allowed: policy writer statement 0 (Sid WriteFromOffice)", text
    assert js == {"Decision": "allowed", "Policy": "writer", "Statement": 0,
                  "Sid": "WriteFromOffice"}
    # Without TLS the explicit deny decides, even where an allow matches.
    rc, text, js = simulate(iam, user, "kafka-cluster:WriteData", f"{TOPIC}/payments-in",
                            *office)
    assert rc == 1 and text.startswith("denied: explicit deny by policy tls-only statement 0") \
        and "DenyPlaintext" in text, text
    assert js == {"Decision": "explicitDeny", "Policy": "tls-only", "Statement": 0,
                  "Sid": "DenyPlaintext"}
    # Another address, or none: the allow's condition fails: implicit deny.
    for ip in (["--source-ip", "192.168.1.1"], ["--source-ip", "::1"], []):
        rc, text, js = simulate(iam, user, "kafka-cluster:WriteData", f"{TOPIC}/payments-in",
                                *tls, *ip)
        assert rc == 1 and text.startswith("denied:") and "implicit deny" in text, (ip, text)
        assert js == {"Decision": "implicitDeny", "Policy": None, "Statement": None, "Sid": None}
    # Another action or resource.
    assert simulate(iam, user, "kafka-cluster:DeleteTopic", f"{TOPIC}/payments-in", *tls,
                    *office)[0] == 1
    assert simulate(iam, user, "kafka-cluster:WriteData", f"{TOPIC}/orders", *tls,
                    *office)[0] == 1
    # Policy variables from the principal: its tags and its user name.
    rc, _, js = simulate(iam, user, "kafka-cluster:ReadData", f"{TOPIC}/payments-x", *tls)
    assert rc == 0 and js["Sid"] == "TeamTopics" and js["Statement"] == 1, js
    assert simulate(iam, user, "kafka-cluster:ReadData", f"{TOPIC}/fraud-x", *tls)[0] == 1
    rc, _, js = simulate(iam, user, "kafka-cluster:DescribeTopic", f"{TOPIC}/frank-t", *tls)
    assert rc == 0 and js["Sid"] == "OwnTopics", js
    # A role: its tags apply, aws:username does not exist for it.
    role = ["--role", "payments"]
    rc, _, js = simulate(iam, role, "kafka-cluster:ReadData", f"{TOPIC}/payments-x", *tls)
    assert rc == 0 and js["Sid"] == "TeamTopics", js
    assert simulate(iam, role, "kafka-cluster:DescribeTopic", f"{TOPIC}/payments-t",
                    *tls)[2]["Decision"] == "implicitDeny"
    assert simulate(iam, role, "kafka-cluster:ReadData", f"{TOPIC}/payments-x")[2] == \
        {"Decision": "explicitDeny", "Policy": "tls-only", "Statement": 0, "Sid": "DenyPlaintext"}
    # No policy: everything denied.
    assert simulate(iam, ["--user", "nopol"], "kafka-cluster:Connect",
                    f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/sluice/uuid-1", *tls)[2] == \
        {"Decision": "implicitDeny", "Policy": None, "Statement": None, "Sid": None}
    # aws:CurrentTime is now; aws:PrincipalArn and aws:PrincipalType name the principal.
    group = f"arn:aws:kafka:us-east-1:{ACCOUNT}:group/sluice/uuid-1/g1"
    write_policy(iam, "who-when", [
        {"Sid": "Since2020", "Effect": "Allow", "Action": "kafka-cluster:DescribeGroup",
         "Resource": group,
         "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}},
        {"Sid": "Before2020", "Effect": "Allow", "Action": "kafka-cluster:DeleteGroup",
         "Resource": group,
         "Condition": {"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}},
        {"Sid": "OnlyFrank", "Effect": "Allow", "Action": "kafka-cluster:AlterGroup",
         "Resource": group,
         "Condition": {"StringEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/frank",
                                        "aws:PrincipalType": "User"}}},
        {"Sid": "Sessions", "Effect": "Allow", "Action": "kafka-cluster:AlterGroup",
         "Resource": group, "Condition": {"StringEquals": {"aws:PrincipalType": "AssumedRole"}}}])
    iam.ok("policy", "put", "who-when", str(iam.dir / "who-when.json"))
    iam.ok("policy", "attach", "who-when", "--user", "frank")
    iam.ok("policy", "attach", "who-when", "--role", "payments")
    assert simulate(iam, user, "kafka-cluster:DescribeGroup", group, *tls)[2]["Sid"] == "Since2020"
    assert simulate(iam, user, "kafka-cluster:DeleteGroup", group, *tls)[0] == 1
    assert simulate(iam, user, "kafka-cluster:AlterGroup", group, *tls)[2]["Sid"] == "OnlyFrank"
    assert simulate(iam, role, "kafka-cluster:AlterGroup", group, *tls)[2]["Sid"] == "Sessions"
    # Detaching the deny lets the plaintext request through.
    iam.ok("policy", "detach", "tls-only", "--user", "frank")
    assert simulate(iam, user, "kafka-cluster:WriteData", f"{TOPIC}/payments-in",
                    *office)[0] == 0
    assert "no user ghost" in iam.fails(1, "policy", "simulate", "--user", "ghost", "--action",
                                        "kafka-cluster:Connect", "--resource", "*")


# ---- usage -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["bogus"], ["user"], ["user", "frob"], ["user", "add"], ["user", "add", "a", "b"],
    ["user", "add", "a", "--frob"], ["user", "add", "a", "--tag", "novalue"],
    ["user", "add", "a", "--tag"], ["user", "list", "--user", "x"], ["key", "create"],
    ["key", "disable"], ["key", "list", "--user"], ["role", "add", "r", "--duration", "1h"],
    ["assume-role"], ["policy", "put", "p"], ["policy", "attach", "p"],
    ["policy", "attach", "p", "--user", "u", "--role", "r"],
    ["policy", "simulate", "--user", "u", "--resource", "*"],
    ["policy", "simulate", "--user", "u", "--action", "a"],
    ["policy", "simulate", "--action", "a", "--resource", "*"],
    ["policy", "simulate", "--user", "u", "--action", "a", "--resource", "*", "--source-ip",
     "10.0.0.300"],
    ["user", "list", "--store", "/tmp/x"],
])
def test_usage_errors_exit_2(iam, args):
    res = iam.run(*args)
    assert res.returncode == 2, (args, res.returncode, res.stderr)
    assert "sluice iam" in res.stderr and "--help" in res.stderr, res.stderr
    assert not iam.store.exists(), "a usage error must change nothing"


def test_help(iam):
    res = iam.run("--help", store_args=False)
    assert res.returncode == 0 and "SYNOPSIS" in res.stdout and "EXIT STATUS" in res.stdout
    assert "policy simulate" in res.stdout
    res = iam.run("key", "create", "--help", store_args=False)
    assert res.returncode == 0 and "SYNOPSIS" in res.stdout
    top = subprocess.run([SLUICE_BIN, "--help"], capture_output=True, text=True,
                         env=sanitizer_env(), timeout=60)
    assert top.returncode == 0 and "sluice iam" in top.stdout
    bad = iam.dir / "bad.properties"
    bad.write_text("sluice.iam.account.id=12345\n")
    res = iam.run("user", "list", "-c", str(bad), store_args=False)
    assert res.returncode == 2 and "sluice.iam.account.id" in res.stderr, res.stderr
