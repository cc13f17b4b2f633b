#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_txnlog (tests/fuzz/corpus/txnlog/).

A seed is one flags byte (bit 0: the harness adds the file header; bit 1: it recomputes every
record's CRC) and a transaction log image in the format of src/txn/sl_txnlog.h. The records are
built here from the documented layout, independently of the C encoder, so a seed the decoder
refuses would also show the header and the code disagree. Seeds: an empty log, one record per
state, transactions with topics and groups, a rotated producer id, a Dead record, a torn tail,
a zero tail, and the same records headerless (flag bit 0) and with stale CRCs (flag bit 1).
Run from anywhere: python3 tests/fuzz/gen_txnlog_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "txnlog")


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def header():
    h = b"SLTX" + struct.pack(">HH", 1, 0)
    return h + struct.pack(">I", crc32c(h))


def s16(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def record(tid, state, pid, last_pid, epoch, last_epoch, timeout=60000, start=-1, update=1,
           topics=(), groups=()):
    body = struct.pack(">BBHqqhhiqq", 1, state, 0, pid, last_pid, epoch, last_epoch, timeout,
                       start, update)
    body += s16(tid)
    body += struct.pack(">I", len(topics))
    for name, parts in sorted(topics):
        body += s16(name) + struct.pack(">I", len(parts))
        body += b"".join(struct.pack(">i", p) for p in sorted(parts))
    body += struct.pack(">I", len(groups))
    body += b"".join(s16(g) for g in sorted(groups))
    ln = struct.pack(">I", len(body))
    return ln + struct.pack(">I", crc32c(body, crc32c(ln))) + body


EMPTY, ONGOING, PC, PA, CC, CA, DEAD = range(7)


def main():
    os.makedirs(OUT, exist_ok=True)
    pay = [("payments", [0, 1, 2]), ("ledger", [4])]
    recs = {
        "empty": [],
        "init": [record("app", EMPTY, 1000, 1000, 0, -1)],
        "ongoing": [record("app", EMPTY, 1000, 1000, 0, -1),
                    record("app", ONGOING, 1000, 1000, 0, -1, start=5, update=5, topics=pay,
                           groups=["g1"])],
        "commit": [record("app", ONGOING, 7, 7, 3, -1, start=5, update=5, topics=pay),
                   record("app", PC, 7, 7, 3, -1, start=5, update=6, topics=pay,
                          groups=["g1", "g2"]),
                   record("app", CC, 7, 7, 3, -1, start=5, update=7)],
        "pending-abort": [record("a", ONGOING, 9, 9, 1, -1, start=1, update=1, topics=pay),
                          record("a", PA, 9, 9, 2, -1, start=1, update=2, topics=pay),
                          record("b", ONGOING, 10, 10, 0, -1, start=3, timeout=1000, update=3,
                                 topics=[("t", [0])])],
        "rotated": [record("x", CA, 11, 11, 32766, -1),
                    record("x", EMPTY, 12, 11, 0, 32766)],
        "dead": [record("gone", CC, 5, 5, 0, -1), record("gone", DEAD, 5, 5, 0, -1),
                 record("kept", EMPTY, 6, 6, 0, -1)],
    }
    for name, rs in recs.items():
        body = b"".join(rs)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b"\x00" + header() + body)
        if rs:
            with open(os.path.join(OUT, name + "-nohdr"), "wb") as f:
                f.write(b"\x01" + body)
    full = b"".join(recs["commit"])
    with open(os.path.join(OUT, "torn"), "wb") as f:
        f.write(b"\x00" + header() + full[:-7])
    with open(os.path.join(OUT, "zero-tail"), "wb") as f:
        f.write(b"\x00" + header() + full + bytes(64))
    stale = bytearray(full)
    stale[4:8] = b"\0\0\0\0"
    with open(os.path.join(OUT, "stale-crc"), "wb") as f:
        f.write(b"\x03" + bytes(stale))


if __name__ == "__main__":
    main()
