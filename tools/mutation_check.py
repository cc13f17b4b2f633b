#!/usr/bin/env python3
"""Mutation check: deletes one security or durability check at a time in a scratch copy of the
tree, rebuilds the ASan broker and unit tests, and runs the tests that should notice. Every
mutation must make at least one of them fail; the table it prints goes to docs/TESTING.md.

    tools/mutation_check.py            all mutations
    tools/mutation_check.py -k fsync   those whose name contains "fsync"

Each mutation names one source edit (a literal replacement that must match exactly once, so a
refactoring that moves the code makes the script fail loudly instead of testing nothing) and
the test commands (unit test name filters and pytest node selections)."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTATIONS = [
    ("Fetch authorization (READ on the topic)", "src/broker/sl_fetch.c",
     "op->denied[i] = !sl_req_allowed(", "op->denied[i] = false && !sl_req_allowed(",
     [], ["tests/interop/test_acl.py"]),
    ("Produce authorization (WRITE on the topic)", "src/broker/sl_h_produce.c",
     "bool write_ok = sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, rt->name);",
     "bool write_ok = true;", [], ["tests/interop/test_acl.py"]),
    ("JoinGroup authorization (READ on the group)", "src/broker/sl_h_group.c",
     "void sl_h_join_group(sl_req *rq) {\n    sl_join_group_req req = *(const sl_join_group_req *)rq->req;\n"
     "    int16_t v = rq->h.api_version;\n    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {",
     "void sl_h_join_group(sl_req *rq) {\n    sl_join_group_req req = *(const sl_join_group_req *)rq->req;\n"
     "    int16_t v = rq->h.api_version;\n    if (false) {",
     [], ["tests/interop/test_acl.py"]),
    ("OffsetCommit authorization (READ on the group)", "src/broker/sl_h_group.c",
     "if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) gerr = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;",
     "(void)0;", [], ["tests/interop/test_acl.py"]),
    ("OffsetCommit authorization (READ on the topic)", "src/broker/sl_h_group.c",
     "bool topic_ok = gerr || sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);",
     "bool topic_ok = true;", [], ["tests/interop/test_acl.py"]),
    ("CreateTopics authorization (CREATE)", "src/broker/sl_h_admin.c",
     "if (!cluster_create && !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, rt->name)) {",
     "if (false && cluster_create) {", [],
     ["tests/interop/test_acl.py"]),
    ("DescribeAcls authorization (DESCRIBE on the cluster)", "src/broker/sl_h_acl.c",
     "} else if (!sl_req_allowed_cluster(rq, SL_ACL_OP_DESCRIBE)) {", "} else if (false) {",
     [], ["tests/interop/test_acl.py"]),
    ("the authorization stage itself allows everything", "src/pipeline/sl_authorize.c",
     "            r->allowed = sl_authorizer_allows(az, rq->principal, host, r->op, r->rtype, r->name.p,\n"
     "                                              (size_t)r->name.len);",
     "            r->allowed = true;", ["authorize"], ["tests/interop/test_acl.py"]),
    ("CRC check on produce", "src/proto/sl_batch.c",
     "if (!sl_batch_crc_ok(p, bi.size)) return SL_KAFKA_CORRUPT_MESSAGE;", "(void)0;",
     ["batch", "legacy", "xform"], ["tests/interop/test_produce_raw.py"]),
    ("fsync before an acks=all answer", "src/broker/sl_h_produce.c",
     "            if (req.acks == -1) {", "            if (req.acks == -1 && false) {",
     [], ["tests/interop/test_durability.py"]),
    ("SCRAM proof comparison", "src/auth/sl_scram.c",
     "int diff = CRYPTO_memcmp(sk, s->cred.stored_key, hl);", "int diff = 0;",
     ["scram", "auth"], ["tests/interop/test_sasl.py::test_wrong_password_and_unknown_user_are_indistinguishable"]),
    ("cross-connection completion runs nested (post, don't pump)", "src/net/sl_server.c",
     "static void conn_post(sl_conn *c) {\n    if (!c->busy && !c->closed) sl_loop_post(c->s->loop, &c->post);",
     "static void conn_post(sl_conn *c) {\n    if (!c->busy && !c->closed) conn_pump(c, false);",
     ["server_"], ["tests/interop/test_hostile.py"]),
    ("fetch.max.bytes ignored for the first partition with data", "src/broker/sl_fetch.c",
     "            if (limit > budget - total) limit = budget - total;",
     "            if (total > 0 && limit > budget - total) limit = budget - total;",
     [], ["tests/interop/test_kafka_semantics.py"]),
    ("ListOffsets by timestamp answers the batch, not the record", "src/storage/sl_log.c",
     "int found = first_record_at(p + f.hlen, f.plen, low, ts, offset, found_ts);",
     "int found = first_record_at(p + f.hlen, f.plen, low, ts, offset, found_ts) * 0 - 1;",
     ["storage_offset_for_time"], ["tests/interop/test_kafka_semantics.py"]),
    ("offset metadata kept as a C string", "src/group/sl_group.c",
     "return o->meta ? (sl_str){o->meta, o->meta_len} : SL_STR_NULL;",
     "return o->meta ? sl_str_c(o->meta) : SL_STR_NULL;",
     ["group_persist"], ["tests/interop/test_kafka_semantics.py"]),
]


def run(cmd, cwd, log, timeout):
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        try:
            return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=f, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return 124


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="only mutations whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch tree")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sl-mutation-")
    tree = os.path.join(work, "tree")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", tree, "HEAD"], cwd=ROOT,
                   check=True)
    node = os.path.join(ROOT, "tests/interop/node/node_modules")
    if os.path.isdir(node):
        os.symlink(node, os.path.join(tree, "tests/interop/node/node_modules"))
    log = os.path.join(work, "log.txt")
    env = dict(os.environ, SLUICE_BIN=os.path.join(tree, "build/asan/sluice"))
    os.environ.update(env)
    rows, missed = [], 0
    try:
        if run(["make", "-j2", "asan"], tree, log, 1800):
            print(f"mutation_check: the unmutated tree does not build (see {log})")
            return 2
        for name, path, old, new, unit, pytests in MUTATIONS:
            if args.k not in name:
                continue
            src = os.path.join(tree, path)
            text = open(src).read()
            if text.count(old) != 1:
                rows.append((name, path, "PATTERN NOT FOUND", ""))
                missed += 1
                continue
            open(src, "w").write(text.replace(old, new))
            t0 = time.monotonic()
            caught_by = []
            if run(["make", "-j2", "asan"], tree, log, 1800) != 0:
                # A mutant that does not build tests nothing: the binaries are a previous one's.
                open(src, "w").write(text)
                rows.append((name, path, "DOES NOT BUILD", ""))
                missed += 1
                print(f"MISS {name}: the mutant does not build", flush=True)
                continue
            for u in unit:
                if run(["./build/asan/unit_tests", u], tree, log, 900) != 0:
                    caught_by.append(f"unit:{u}")
            for t in pytests:
                if run(["/usr/bin/python3", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        t], tree, log, 900) != 0:
                    caught_by.append(t.replace("tests/interop/", ""))
            open(src, "w").write(text)
            ok = bool(caught_by)
            missed += not ok
            rows.append((name, path, "caught" if ok else "NOT CAUGHT",
                         ", ".join(caught_by) + f" ({time.monotonic() - t0:.0f} s)"))
            print(f"{'ok  ' if ok else 'MISS'} {name}: {rows[-1][3]}", flush=True)
    finally:
        if not args.keep:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT)
            shutil.rmtree(work, ignore_errors=True)
    print("\n| mutation | where | result | failing tests |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | `{r[1]}` | {r[2]} | {r[3]} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
