#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_handlers (tests/fuzz/corpus/handlers/).

A seed is one byte choosing the listener (0 PLAINTEXT, 1 SASL_PLAINTEXT) and a sequence of
records [u8 api key][i8 version][u16 body length][body] (see fuzz_handlers.c). Seeds come from two sources:
  - well-formed requests naming the topics and groups the harness's broker has ("t" with two
    partitions, "secret-t" which the ACLs deny), alone and in short conversations (produce then
    fetch, create then delete a topic, a whole group membership), built with the interop tests'
    kproto encoders or by hand at a non-flexible version;
  - every request of the decoder corpus (tests/fuzz/corpus/request/), its header stripped, so each
    API and both ends of its version range start with a valid body.
Run from anywhere: python3 tests/fuzz/gen_handlers_corpus.py
"""
import hashlib
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
import kproto  # noqa: E402
from kproto import Writer  # noqa: E402

OUT = os.path.join(HERE, "corpus", "handlers")


def api_table():
    """{key: (min, max, flexible_from)} from the protocol definitions."""
    apis = {}
    defs = os.path.join(ROOT, "src", "proto", "defs")
    for f in sorted(os.listdir(defs)):
        with open(os.path.join(defs, f)) as fh:
            for line in fh:
                m = re.match(r"api \w+ key=(\d+) versions=(\d+)(?:-(\d+))?(?: flexible=(\d+)\+)?", line)
                if m:
                    k, lo, hi, fx = m.groups()
                    apis[int(k)] = (int(lo), int(hi or lo), int(fx) if fx else 99)
    return apis


APIS = api_table()


def rec(key, version, body):
    assert len(body) < 65536
    return bytes([key, version & 0xFF]) + struct.pack(">H", len(body)) + body


class Stop(Exception):
    pass


class Recorder:
    """Stands in for kproto.Conn: records the request instead of sending it."""

    def __init__(self, version=None):
        self.version = version
        self.frames = []

    def pick(self, key, implemented):
        lo, hi, _ = APIS[key]
        ok = [v for v in implemented if lo <= v <= hi]
        if self.version in ok:
            return self.version
        return max(ok) if ok else None

    need = pick

    def send_request(self, key, version, body, flexible=False, client_id=None):
        self.frames.append(rec(key, version, body))
        return 0

    def call(self, key, version, body, flexible=False, flexible_response_header=None):
        self.send_request(key, version, body)
        raise Stop()


def kp(fn, *args, version=None, **kw):
    r = Recorder(version)
    try:
        fn(r, *args, **kw)
    except Stop:
        pass
    assert len(r.frames) == 1, fn
    return r.frames[0]


def s(w, v):
    return w.string(v)


def batch(n=3, ts=1700000000000):
    return kproto.record_batch([(b"k%d" % i, b"value-%d" % i, [("h", b"v")]) for i in range(n)],
                               base_ts=ts)


# Hand-built bodies at non-flexible versions (field lists in src/proto/defs/).
def create_topics(names, parts=1, validate=False):  # v4
    w = Writer().array(names, lambda ww, n: ww.string(n).i32(parts).i16(1).array([], None)
                       .array([("cleanup.policy", "delete")],
                              lambda w2, c: w2.string(c[0]).string(c[1])))
    return rec(19, 4, w.i32(1000).bool(validate).bytes())


def delete_topics(names):  # v3
    return rec(20, 3, Writer().array(names, s).i32(1000).bytes())


def create_partitions(name, count):  # v1
    w = Writer().array([name], lambda ww, n: ww.string(n).i32(count).i32(-1))
    return rec(37, 1, w.i32(1000).bool(False).bytes())


def find_coordinator(key, key_type=0):  # v2
    return rec(10, 2, Writer().string(key).i8(key_type).bytes())


def join_group(group, member="", proto="consumer"):  # v5
    w = Writer().string(group).i32(10000).i32(10000).string(member).string(None).string(proto)
    w.array([("range", b"\x00\x01meta")], lambda ww, p: ww.string(p[0]).i32(len(p[1])).raw(p[1]))
    return rec(11, 5, w.bytes())


def sync_group(group, gen, member):  # v3
    w = Writer().string(group).i32(gen).string(member).string(None)
    w.array([member], lambda ww, m: ww.string(m).i32(4).raw(b"asgn"))
    return rec(14, 3, w.bytes())


def heartbeat(group, gen, member):  # v3
    return rec(12, 3, Writer().string(group).i32(gen).string(member).string(None).bytes())


def leave_group(group, member):  # v3
    w = Writer().string(group).array([member], lambda ww, m: ww.string(m).string(None))
    return rec(13, 3, w.bytes())


def offset_commit(group, topic, offset, gen=-1, member=""):  # v2
    w = Writer().string(group).i32(gen).string(member).i64(-1)
    w.array([topic], lambda ww, t: ww.string(t).array(
        [0, 1], lambda w2, p: w2.i32(p).i64(offset).string("meta")))
    return rec(8, 2, w.bytes())


def offset_fetch(group, topic):  # v1
    w = Writer().string(group).array([topic], lambda ww, t: ww.string(t).array(
        [0, 1], lambda w2, p: w2.i32(p)))
    return rec(9, 1, w.bytes())


def offset_delete(group, topic):  # v0
    w = Writer().string(group).array([topic], lambda ww, t: ww.string(t).array(
        [0], lambda w2, p: w2.i32(p)))
    return rec(47, 0, w.bytes())


def groups_body(key, version, groups):
    return rec(key, version, Writer().array(groups, s).bytes())


def init_producer_id(txn=None):  # v1
    return rec(22, 1, Writer().string(txn).i32(60000).bytes())


def acl_filter(w, rtype, name, pattern, principal, op, perm):
    return w.i8(rtype).string(name).i8(pattern).string(principal).string("*").i8(op).i8(perm)


def describe_acls():  # v1: everything
    return rec(29, 1, acl_filter(Writer(), 1, None, 1, None, 1, 1).bytes())


def create_acls(name):  # v1: ALLOW ALL on a topic for ANONYMOUS (needs the denied ALTER)
    w = Writer().array([name], lambda ww, n: acl_filter(ww, 2, n, 3, "User:ANONYMOUS", 2, 3))
    return rec(30, 1, w.bytes())


def delete_acls():  # v1: every ACL
    w = Writer().array([0], lambda ww, _: acl_filter(ww, 1, None, 1, None, 1, 1))
    return rec(31, 1, w.bytes())


def offset_for_leader_epoch(topic):  # v2
    w = Writer().array([topic], lambda ww, t: ww.string(t).array(
        [0, 1], lambda w2, p: w2.i32(p).i32(-1).i32(0)))
    return rec(23, 2, w.bytes())


def alter_configs(topic):  # v0
    w = Writer().array([topic], lambda ww, t: ww.i8(2).string(t).array(
        [("retention.ms", "3600000")], lambda w2, c: w2.string(c[0]).string(c[1])))
    return rec(33, 0, w.bool(False).bytes())


def sasl_handshake(mech):  # v1
    return rec(17, 1, Writer().string(mech).bytes())


def sasl_authenticate(token):  # v1
    return rec(36, 1, Writer().i32(len(token)).raw(token).bytes())


def produce(topic, part, records, acks=-1):
    return kp(kproto.produce, topic, part, records, acks=acks)


def fetch(topic, part, offset, version=None):
    return kp(kproto.fetch, topic, part, offset, max_wait_ms=5, version=version)


def seeds():
    out = {}
    b = batch()
    out["produce_t"] = produce("t", 0, b)
    out["produce_acks0"] = produce("t", 1, b, acks=0)
    out["produce_acks1_gzip_free"] = produce("t", 1, batch(1), acks=1)
    out["produce_secret"] = produce("secret-t", 0, b)
    out["produce_unknown_part"] = produce("t", 7, b)
    out["produce_then_fetch"] = produce("t", 0, b) + fetch("t", 0, 0) + fetch("t", 0, 1, version=4)
    for v in (4, 11):
        out["fetch_v%d" % v] = fetch("t", 0, 0, version=v)
    out["fetch_secret"] = fetch("secret-t", 0, 0)
    out["fetch_out_of_range"] = fetch("t", 1, 1 << 40)
    out["metadata_all"] = kp(kproto.metadata)
    out["metadata_t"] = kp(kproto.metadata, ["t", "secret-t"])
    out["metadata_auto"] = kp(kproto.metadata, ["auto1"], allow_auto=True)
    out["metadata_auto_secret"] = kp(kproto.metadata, ["secret-auto"], allow_auto=True)
    out["list_offsets"] = kp(kproto.list_offsets, "t", 0, kproto.LATEST)
    out["list_offsets_ts"] = produce("t", 1, b) + kp(kproto.list_offsets, "t", 1, 1700000000000)
    out["delete_records"] = produce("t", 0, b) + kp(kproto.delete_records, "t", {0: 1})
    out["delete_records_secret"] = kp(kproto.delete_records, "secret-t", {0: 0})
    out["describe_cluster"] = kp(kproto.describe_cluster)
    out["describe_configs_topic"] = kp(kproto.describe_configs, 2, "t")
    out["describe_configs_broker"] = kp(kproto.describe_configs, 4, "0")
    out["incremental_alter"] = kp(kproto.incremental_alter_configs, 2, "t",
                                  [("retention.ms", 0, "86400000")])
    out["alter_configs"] = alter_configs("t")
    out["api_versions_v0"] = rec(18, 0, kproto.api_versions_body(0))
    out["api_versions_v3"] = rec(18, 3, kproto.api_versions_body(3))
    out["api_versions_v9"] = rec(18, 9, b"")
    out["create_delete_topic"] = (create_topics(["c1", "c2"], 2) + create_partitions("c1", 3) +
                                  produce("c1", 2, b) + delete_topics(["c1", "c2"]))
    out["create_validate_only"] = create_topics(["c3"], 1, validate=True)
    out["create_secret"] = create_topics(["secret-x"]) + delete_topics(["secret-t"])
    out["create_partitions_t"] = create_partitions("t", 3)
    out["delete_topic_t"] = delete_topics(["t"]) + produce("t", 0, b)
    g, m = "g1", "member-1"
    out["group_flow"] = (find_coordinator(g) + join_group(g) + join_group(g, m) +
                         sync_group(g, 1, m) + heartbeat(g, 1, m) +
                         offset_commit(g, "t", 1, 1, m) + offset_fetch(g, "t") + leave_group(g, m))
    out["group_simple_commit"] = (offset_commit("g2", "t", 2) + offset_fetch("g2", "t") +
                                  offset_delete("g2", "t") + groups_body(42, 0, ["g2"]))
    out["group_secret"] = join_group("secret-g") + offset_commit("secret-g", "t", 1)
    out["list_describe_groups"] = rec(16, 0, b"") + groups_body(15, 0, ["g1", "g2", "nope"])
    out["init_producer_id"] = init_producer_id()
    out["init_producer_id_txn"] = init_producer_id("txn-1")
    out["acls"] = describe_acls() + create_acls("t") + delete_acls() + describe_acls()
    out["offset_for_leader_epoch"] = offset_for_leader_epoch("t")
    out["sasl_handshake"] = sasl_handshake("PLAIN") + rec(36, 0, Writer().i32(5).raw(
        b"\x00a\x00b").bytes())
    out["unknown_api"] = rec(99, 0, b"") + kp(kproto.metadata)
    out["bad_version"] = rec(0, 50, b"") + kp(kproto.metadata)
    out = {k: b"\x00" + v for k, v in out.items()}
    # The SASL_PLAINTEXT listener (user "fuzz", password "fuzz-pw").
    login = sasl_handshake("PLAIN") + sasl_authenticate(b"\x00fuzz\x00fuzz-pw")
    out["sasl_plain_produce"] = b"\x01" + login + kp(kproto.metadata) + produce("t", 0, b)
    out["sasl_plain_secret"] = (b"\x01" + login + produce("secret-t", 0, b) +
                                create_topics(["secret-y"]) + delete_topics(["secret-t"]))
    out["sasl_plain_group"] = (b"\x01" + login + join_group("g3") + offset_commit("g3", "t", 1) +
                               offset_fetch("g3", "t"))
    out["sasl_plain_wrong"] = (b"\x01" + sasl_handshake("PLAIN") +
                               sasl_authenticate(b"\x00fuzz\x00nope") + kp(kproto.metadata))
    out["sasl_scram_first"] = (b"\x01" + sasl_handshake("SCRAM-SHA-256") +
                               sasl_authenticate(b"n,,n=fuzz,r=fyko+d2lbbFgONRv9qkxdawL"))
    out["sasl_unknown_mech"] = b"\x01" + sasl_handshake("GSSAPI") + sasl_handshake("PLAIN")
    out["sasl_unauthenticated"] = b"\x01" + rec(18, 3, kproto.api_versions_body(3)) + kp(
        kproto.metadata)
    out["sasl_handshake_v0"] = b"\x01" + rec(17, 0, Writer().string("PLAIN").bytes())
    # The decoder corpus, header stripped (each API, lowest and highest version).
    req = os.path.join(HERE, "corpus", "request")
    for f in sorted(os.listdir(req)):
        with open(os.path.join(req, f), "rb") as fh:
            d = fh.read()
        key, ver = struct.unpack(">hh", d[:4])
        (clen,) = struct.unpack(">h", d[8:10])
        off = 10 + max(clen, 0)
        if ver >= APIS[key][2]:
            assert d[off] == 0, f  # no header tags in the decoder corpus
            off += 1
        out["req_" + f] = b"\x00" + rec(key, ver, d[off:])
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
    print(f"{len(os.listdir(OUT))} seeds in {OUT}")


if __name__ == "__main__":
    main()
