"""The pipeline's shape, checked in the source: authorization is one stage, requests leave
through one finish path, decoding is a stage. A handler that consulted the authorizer itself,
or answered around the finish path, would escape the audit and metrics that observe requests
there, and the gateway would not share its checks."""
import re
from pathlib import Path

import kproto as kp

SRC = Path(__file__).resolve().parents[2] / "src"


def c_files(exclude_dirs):
    return [p for p in sorted(SRC.rglob("*.c")) if p.parent.name not in exclude_dirs]


def offenders(pattern, exclude_dirs, allow=()):
    rx = re.compile(pattern)
    hits = []
    for p in c_files(exclude_dirs):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if rx.search(line) and not any(a in line for a in allow):
                hits.append(f"{p.relative_to(SRC)}:{n}: {line.strip()}")
    return hits


def test_only_the_authorization_stage_consults_the_authorizer():
    # src/acl is the authorizer; src/pipeline/sl_authorize.c is the stage. The CLI edits ACLs
    # offline and never decides.
    hits = offenders(r"\bsl_authorizer_(allows|allows_any|ops)\s*\(|\bsl_authz(_filter|_cluster|"
                     r"_any|_ops)?\s*\(", {"acl", "pipeline", "cli"})
    assert hits == [], "authorization outside the stage:\n" + "\n".join(hits)


def test_requests_finish_through_one_path():
    hits = offenders(r"\bsl_pending_(respond|respond_iov|noreply)\s*\(", {"net", "pipeline"})
    assert hits == [], "requests completed around sl_req's finish path:\n" + "\n".join(hits)


def test_handlers_do_not_decode_their_requests():
    # ApiVersions reads its own body (it must answer versions it cannot decode).
    hits = offenders(r"_req_decode\s*\(\s*&rq->body", {"net", "pipeline", "proto", "gen"},
                     allow=("sl_api_versions_req_decode",))
    assert hits == [], "decoding inside handlers:\n" + "\n".join(hits)


def test_advertised_versions_are_the_protocol_definitions(broker):
    """What ApiVersions advertises is exactly the generated table of our protocol definitions
    (the range each codec accepts): every defined API, at its defined versions, nothing else
    (the transaction APIs included: `serve` is its own transaction coordinator)."""
    table = (SRC / "proto" / "gen" / "sl_msgs_table.c").read_text()
    defined = {int(k): (int(lo), int(hi))
               for k, lo, hi in re.findall(r'\{(\d+), "\w+", (\d+), (\d+), -?\d+\}', table)}
    assert len(defined) > 30
    with kp.Conn(broker.bootstrap) as c:
        err, advertised = kp.api_versions(c, 3)
    assert err == kp.NONE
    assert {24, 25, 26, 28, 65, 66} <= advertised.keys()
    assert advertised == defined
