"""Key use in the audit trail (docs/encryption-at-rest.md, "Events and audit"): the unit test
keysvc_audit_trail drives the key service with a fake KMS (start, a new topic key, a rotation, a
rewrap that fails while the KMS is down, a batch failing authentication) into a real trail; every
line of it validates against tests/interop/ocsf, the key lines carry api.operation "kms:<op>"
with the provider as the service, the topic by id and never by name, and `sluice audit verify`
accepts the trail; the status JSON parses and names KEK and topic-key versions."""
import json
import os
import subprocess

from conftest import SLUICE_BIN
from test_audit_trail import validate_schemas, verify

UNIT_BIN = os.path.join(os.path.dirname(SLUICE_BIN), "unit_tests")


def test_key_events_validate_and_chain(tmp_path):
    out = tmp_path / "trail"
    out.mkdir()
    r = subprocess.run([UNIT_BIN, "keysvc_audit_trail"],
                       env=dict(os.environ, SL_KEYSVC_TRAIL_OUT=str(out)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 passed, 0 failed" in r.stdout, r.stdout + r.stderr
    files = sorted(out.glob("sluice-audit-*.jsonl"))
    assert files
    evs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    validate_schemas(evs)
    keys = [e for e in evs if e.get("api", {}).get("operation", "").startswith("kms:")]
    ops = {e["api"]["operation"] for e in keys}
    assert {"kms:generate", "kms:describe", "kms:wrap", "kms:unwrap", "kms:rotate", "kms:rewrap",
            "kms:tamper"} <= ops, ops
    for e in keys:
        assert e["class_uid"] == 6003 and e["metadata"]["event_code"] == "management"
        assert e["api"]["service"]["name"] == "fake"
        assert e["unmapped"]["reason"]
    tamper = [e for e in keys if e["api"]["operation"] == "kms:tamper"]
    assert len(tamper) == 1 and tamper[0]["severity_id"] == 4 and tamper[0]["status"] == "Failure"
    assert tamper[0]["resources"] == [{"type": "topic", "name": "0102030405060708090a0b0c0d0e0f10",
                                       "data": {"partition": 3}}]
    failed = [e for e in keys if e["status"] == "Failure" and e["api"]["operation"] == "kms:unwrap"]
    assert failed and all(e["status_detail"] for e in failed)
    wrap = next(e for e in keys if e["api"]["operation"] == "kms:wrap")
    kek = [r for r in wrap["resources"] if r["type"] == "kms_key"]
    assert kek and kek[0]["name"] == "fake:1" and kek[0]["data"]["version"] == 1
    code, text = verify(files, out / "sluice-audit-key.pem.pub")
    assert code == 0, text
    # The status the control socket serves: KEK versions with the provider's description, topic
    # keys by id with the KEK version wrapping each, cache counts.
    st = json.loads((out / "status.json").read_text())
    assert st["enabled"] and st["provider"] == "fake" and st["current_kek_version"] == 2
    assert [(k["version"], k["current"]) for k in st["keks"]] == [(1, False), (2, True)]
    assert st["keks"][1]["describe"] == "fake fake:2"
    topics = {t["id"]: t for t in st["topics"]}
    assert topics["0" * 32]["system"] and not topics["0" * 32]["shredded"]
    t1 = topics["0102030405060708090a0b0c0d0e0f10"]
    assert [(v["version"], v["kek_version"], v["loaded"]) for v in t1["versions"]] == \
        [(1, 1, True)]
    assert st["cache"]["topic_keys"] >= 1 and isinstance(st["secmem_locked"], bool)
