"""Hand-built Kafka protocol frames, for tests that must control every byte on the wire.

Only what the interop tests need: request headers v1/v2, a bounded reader, and encoders/decoders
for ApiVersions, Metadata (v10-v12, topic ids), ListOffsets (v1-v7), Fetch (v4-v11),
DeleteRecords (v0-v2) and DescribeCluster (v0-v1). Versions are picked from the broker's own
ApiVersions answer, so the tests exercise whatever range the broker claims.
"""
import socket
import struct
import time
import uuid

# API keys.
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS = 18, 19, 20, 21
DESCRIBE_CONFIGS, ALTER_CONFIGS, CREATE_PARTITIONS = 32, 33, 37
INCREMENTAL_ALTER_CONFIGS, DESCRIBE_CLUSTER = 44, 60

# Error codes.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
INVALID_REPLICATION_FACTOR = 38
TOPIC_ALREADY_EXISTS = 36

EARLIEST, LATEST = -2, -1


class ProtoError(Exception):
    pass


class Writer:
    def __init__(self):
        self.parts = []

    def raw(self, b):
        self.parts.append(bytes(b))
        return self

    def i8(self, v):
        return self.raw(struct.pack(">b", v))

    def bool(self, v):
        return self.i8(1 if v else 0)

    def i16(self, v):
        return self.raw(struct.pack(">h", v))

    def i32(self, v):
        return self.raw(struct.pack(">i", v))

    def i64(self, v):
        return self.raw(struct.pack(">q", v))

    def uvarint(self, v):
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        return self.raw(out)

    def string(self, s):
        if s is None:
            return self.i16(-1)
        b = s.encode() if isinstance(s, str) else s
        return self.i16(len(b)).raw(b)

    def cstring(self, s):
        if s is None:
            return self.uvarint(0)
        b = s.encode() if isinstance(s, str) else s
        return self.uvarint(len(b) + 1).raw(b)

    def uuid(self, u):
        return self.raw(u.bytes if isinstance(u, uuid.UUID) else (u or bytes(16)))

    def array(self, items, fn):
        if items is None:
            return self.i32(-1)
        self.i32(len(items))
        for it in items:
            fn(self, it)
        return self

    def carray(self, items, fn):
        if items is None:
            return self.uvarint(0)
        self.uvarint(len(items) + 1)
        for it in items:
            fn(self, it)
        return self

    def tags(self):
        return self.uvarint(0)

    def bytes(self):
        return b"".join(self.parts)


class Reader:
    def __init__(self, data):
        self.b = bytes(data)
        self.p = 0

    def left(self):
        return len(self.b) - self.p

    def take(self, n):
        if n < 0 or self.p + n > len(self.b):
            raise ProtoError(f"short read: need {n} at {self.p}, have {len(self.b) - self.p}")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def bool(self):
        return self.i8() != 0

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        v = shift = 0
        while True:
            c = self.take(1)[0]
            v |= (c & 0x7F) << shift
            if not c & 0x80:
                return v
            shift += 7
            if shift > 63:
                raise ProtoError("varint too long")

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def cstring(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def uuid(self):
        return uuid.UUID(bytes=self.take(16))

    def array(self, fn):
        n = self.i32()
        if n < 0:
            return None
        return [fn(self) for _ in range(n)]

    def carray(self, fn):
        n = self.uvarint()
        if n == 0:
            return None
        return [fn(self) for _ in range(n - 1)]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def request_header(api_key, api_version, corr, client_id="sluice-tests", flexible=False):
    """Request header v1 (non-flexible) or v2 (flexible: v1 plus empty tagged fields)."""
    w = Writer().i16(api_key).i16(api_version).i32(corr).string(client_id)
    if flexible:
        w.tags()
    return w.bytes()


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def split_host_port(bootstrap):
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


class Conn:
    """One blocking TCP connection to the broker, with a deadline on every read."""

    def __init__(self, bootstrap, timeout=15.0):
        self.timeout = timeout
        self.sock = socket.create_connection(split_host_port(bootstrap), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0
        self._versions = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_request(self, api_key, version, body, flexible=False, client_id="sluice-tests"):
        self.corr += 1
        self.send_raw(frame(request_header(api_key, version, self.corr, client_id, flexible) + body))
        return self.corr

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv_frame(self):
        """Returns one response frame's payload, or None if the broker closed the connection."""
        try:
            head = self._recv_exact(4)
            if head is None:
                return None
            (n,) = struct.unpack(">i", head)
            if n < 4 or n > 256 * 1024 * 1024:
                raise ProtoError(f"bad response size {n}")
            return self._recv_exact(n)
        except ConnectionResetError:
            return None

    def call(self, api_key, version, body, flexible=False, flexible_response_header=None):
        """Sends one request and returns a Reader on the response body (header consumed)."""
        corr = self.send_request(api_key, version, body, flexible)
        payload = self.recv_frame()
        if payload is None:
            raise ProtoError(f"connection closed by broker (api {api_key} v{version})")
        r = Reader(payload)
        got = r.i32()
        if got != corr:
            raise ProtoError(f"correlation id {got}, expected {corr}")
        if flexible_response_header is None:
            flexible_response_header = flexible and api_key != API_VERSIONS
        if flexible_response_header:
            r.tags()
        return r

    def closed_by_peer(self, timeout=10.0):
        """True if the broker closes the connection (EOF or reset) within `timeout`; any data
        received before that is drained and ignored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False

    # Version negotiation --------------------------------------------------------------------

    def versions(self):
        if self._versions is None:
            err, self._versions = api_versions(self, 0)
            if err != NONE:
                raise ProtoError(f"ApiVersions v0 error {err}")
        return self._versions

    def pick(self, api_key, implemented):
        """Highest version in `implemented` that the broker supports, or None."""
        lo_hi = self.versions().get(api_key)
        if lo_hi is None:
            return None
        ok = [v for v in implemented if lo_hi[0] <= v <= lo_hi[1]]
        return max(ok) if ok else None

    def need(self, api_key, implemented):
        v = self.pick(api_key, implemented)
        if v is None:
            raise ProtoError(f"broker supports no version of api {api_key} in {list(implemented)}: "
                             f"{self.versions().get(api_key)}")
        return v


# ApiVersions ----------------------------------------------------------------------------------

def api_versions_body(version):
    if version >= 3:
        return Writer().cstring("sluice-tests").cstring("1.0").tags().bytes()
    return b""


def parse_api_versions(r, version):
    """Returns (error_code, {api_key: (min, max)}). Version 0 layout is what a broker sends
    back for an unsupported ApiVersions version."""
    err = r.i16()
    if version >= 3:
        def ent(rr):
            k, lo, hi = rr.i16(), rr.i16(), rr.i16()
            rr.tags()
            return k, (lo, hi)
        keys = r.carray(ent) or []
    else:
        keys = r.array(lambda rr: (rr.i16(), (rr.i16(), rr.i16()))) or []
    if version >= 1:
        r.i32()  # throttle
    if version >= 3:
        r.tags()
    return err, dict(keys)


def api_versions(conn, version=0):
    r = conn.call(API_VERSIONS, version, api_versions_body(version), flexible=version >= 3)
    return parse_api_versions(r, version)


# Metadata v10-v12 (flexible, with topic ids) --------------------------------------------------

def metadata(conn, topics=None, allow_auto=False, version=None):
    """topics=None asks for all topics. Returns {"brokers": [...], "cluster_id", "controller_id",
    "topics": {name: {"error", "id", "partitions": {idx: {...}}}}}."""
    v = version if version is not None else conn.need(METADATA, range(10, 13))
    w = Writer()

    def topic(ww, name):
        ww.uuid(None).cstring(name).tags()
    w.carray(topics, topic).bool(allow_auto)
    if v <= 10:
        w.bool(False)  # include_cluster_authorized_operations
    w.bool(False).tags()
    r = conn.call(METADATA, v, w.bytes(), flexible=True)
    r.i32()  # throttle

    def broker(rr):
        b = {"node_id": rr.i32(), "host": rr.cstring(), "port": rr.i32(), "rack": rr.cstring()}
        rr.tags()
        return b
    brokers = r.carray(broker) or []
    cluster_id = r.cstring()
    controller = r.i32()

    def part(rr):
        p = {"error": rr.i16(), "index": rr.i32(), "leader": rr.i32(), "leader_epoch": rr.i32()}
        p["replicas"] = rr.carray(lambda x: x.i32())
        p["isr"] = rr.carray(lambda x: x.i32())
        p["offline"] = rr.carray(lambda x: x.i32())
        rr.tags()
        return p

    def tp(rr):
        t = {"error": rr.i16(), "name": rr.cstring(), "id": rr.uuid(), "internal": rr.bool()}
        t["partitions"] = {p["index"]: p for p in (rr.carray(part) or [])}
        rr.i32()  # topic_authorized_operations
        rr.tags()
        return t
    tl = r.carray(tp) or []
    if v <= 10:
        r.i32()  # cluster_authorized_operations
    r.tags()
    return {"version": v, "brokers": brokers, "cluster_id": cluster_id,
            "controller_id": controller, "topics": {t["name"]: t for t in tl}}


# ListOffsets v1-v7 ----------------------------------------------------------------------------

def list_offsets(conn, topic, partition, timestamp):
    """Returns (error_code, offset) for one partition; timestamp -2 earliest, -1 latest."""
    v = conn.need(LIST_OFFSETS, range(1, 8))
    flex = v >= 6
    w = Writer().i32(-1)
    if v >= 2:
        w.i8(0)

    def part(ww, _):
        ww.i32(partition)
        if v >= 4:
            ww.i32(-1)
        ww.i64(timestamp)
        if flex:
            ww.tags()

    def tp(ww, _):
        (ww.cstring if flex else ww.string)(topic)
        (ww.carray if flex else ww.array)([0], part)
        if flex:
            ww.tags()
    (w.carray if flex else w.array)([0], tp)
    if flex:
        w.tags()
    r = conn.call(LIST_OFFSETS, v, w.bytes(), flexible=flex)
    if v >= 2:
        r.i32()

    def rpart(rr):
        p = (rr.i32(), rr.i16(), rr.i64(), rr.i64())
        if v >= 4:
            rr.i32()
        if flex:
            rr.tags()
        return p

    def rtopic(rr):
        name = rr.cstring() if flex else rr.string()
        ps = (rr.carray if flex else rr.array)(rpart)
        if flex:
            rr.tags()
        return name, ps
    topics = (r.carray if flex else r.array)(rtopic)
    for name, ps in topics or []:
        for idx, err, _ts, off in ps or []:
            if name == topic and idx == partition:
                return err, off
    raise ProtoError(f"ListOffsets answer lacks {topic}/{partition}: {topics}")


# Fetch v4-v11 (non-flexible) ------------------------------------------------------------------

def fetch(conn, topic, partition, offset, max_bytes=1 << 20, max_wait_ms=100,
          versions=range(4, 12)):
    """Returns {"error", "high_watermark", "log_start_offset", "records": bytes} for one
    partition, using the highest of `versions` the broker supports."""
    v = conn.need(FETCH, versions)
    w = Writer().i32(-1).i32(max_wait_ms).i32(1).i32(max_bytes).i8(0)
    if v >= 7:
        w.i32(0).i32(-1)  # session_id, session_epoch: no fetch session

    def part(ww, _):
        ww.i32(partition)
        if v >= 9:
            ww.i32(-1)
        ww.i64(offset)
        if v >= 5:
            ww.i64(-1)
        ww.i32(max_bytes)
    w.array([0], lambda ww, _: (ww.string(topic), ww.array([0], part)))
    if v >= 7:
        w.array([], None)
    if v >= 11:
        w.string("")
    r = conn.call(FETCH, v, w.bytes())
    r.i32()  # throttle
    if v >= 7:
        top_err = r.i16()
        r.i32()
        if top_err:
            return {"error": top_err, "high_watermark": -1, "log_start_offset": -1, "records": b""}

    def rpart(rr):
        p = {"partition": rr.i32(), "error": rr.i16(), "high_watermark": rr.i64()}
        rr.i64()  # last_stable_offset
        p["log_start_offset"] = rr.i64() if v >= 5 else -1
        rr.array(lambda x: (x.i64(), x.i64()))
        if v >= 11:
            rr.i32()
        p["records"] = rr.nbytes() or b""
        return p
    for name, ps in r.array(lambda rr: (rr.string(), rr.array(rpart))) or []:
        for p in ps or []:
            if name == topic and p["partition"] == partition:
                return p
    raise ProtoError(f"Fetch answer lacks {topic}/{partition}")


def batch_base_offsets(records):
    """(base_offset, last_offset) of each record batch in a Fetch answer's records field."""
    out, r = [], Reader(records)
    while r.left() >= 12:
        base = r.i64()
        n = r.i32()
        if r.left() < n:
            break  # a partial batch at the end is allowed
        body = Reader(r.take(n))
        body.take(4 + 1 + 4 + 2)  # leader epoch, magic, crc, attributes
        out.append((base, base + body.i32()))
    return out


# DeleteRecords v0-v2 --------------------------------------------------------------------------

def delete_records(conn, topic, offsets, timeout_ms=5000):
    """offsets: {partition: offset}. Returns {partition: (low_watermark, error_code)}."""
    v = conn.need(DELETE_RECORDS, range(0, 3))
    flex = v >= 2
    arr = Writer.carray if flex else Writer.array
    name = Writer.cstring if flex else Writer.string

    def part(ww, item):
        ww.i32(item[0]).i64(item[1])
        if flex:
            ww.tags()

    def tp(ww, _):
        name(ww, topic)
        arr(ww, sorted(offsets.items()), part)
        if flex:
            ww.tags()
    w = Writer()
    arr(w, [0], tp)
    w.i32(timeout_ms)
    if flex:
        w.tags()
    r = conn.call(DELETE_RECORDS, v, w.bytes(), flexible=flex)
    r.i32()
    rarr = Reader.carray if flex else Reader.array

    def rpart(rr):
        p = (rr.i32(), rr.i64(), rr.i16())
        if flex:
            rr.tags()
        return p

    def rtopic(rr):
        n = rr.cstring() if flex else rr.string()
        ps = rarr(rr, rpart)
        if flex:
            rr.tags()
        return n, ps
    out = {}
    for _n, ps in rarr(r, rtopic) or []:
        for idx, low, err in ps or []:
            out[idx] = (low, err)
    return out


# DescribeCluster v0-v1 ------------------------------------------------------------------------

def describe_cluster(conn):
    v = conn.need(DESCRIBE_CLUSTER, range(0, 2))
    w = Writer().bool(False)
    if v >= 1:
        w.i8(1)  # endpoint type: brokers
    w.tags()
    r = conn.call(DESCRIBE_CLUSTER, v, w.bytes(), flexible=True)
    r.i32()
    out = {"error": r.i16(), "message": r.cstring()}
    if v >= 1:
        r.i8()
    out["cluster_id"] = r.cstring()
    out["controller_id"] = r.i32()

    def broker(rr):
        b = {"node_id": rr.i32(), "host": rr.cstring(), "port": rr.i32(), "rack": rr.cstring()}
        rr.tags()
        return b
    out["brokers"] = r.carray(broker) or []
    r.i32()
    r.tags()
    return out


# IncrementalAlterConfigs v0-v1, DescribeConfigs v1-v4 -----------------------------------------

RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
OP_SET, OP_DELETE = 0, 1


def incremental_alter_configs(conn, resource_type, name, configs, validate_only=False):
    """configs: [(key, op, value)]. Returns [(error_code, message, resource_type, name)]."""
    v = conn.need(INCREMENTAL_ALTER_CONFIGS, range(0, 2))
    flex = v >= 1
    arr = Writer.carray if flex else Writer.array
    s = Writer.cstring if flex else Writer.string

    def cfg(ww, item):
        s(ww, item[0])
        ww.i8(item[1])
        s(ww, item[2])
        if flex:
            ww.tags()

    def res(ww, _):
        ww.i8(resource_type)
        s(ww, name)
        arr(ww, configs, cfg)
        if flex:
            ww.tags()
    w = Writer()
    arr(w, [0], res)
    w.bool(validate_only)
    if flex:
        w.tags()
    r = conn.call(INCREMENTAL_ALTER_CONFIGS, v, w.bytes(), flexible=flex)
    r.i32()
    rs = Reader.cstring if flex else Reader.string

    def rres(rr):
        out = (rr.i16(), rs(rr), rr.i8(), rs(rr))
        if flex:
            rr.tags()
        return out
    return (Reader.carray if flex else Reader.array)(r, rres) or []


def describe_configs(conn, resource_type, name, keys=None):
    """Returns (error_code, {key: value})."""
    v = conn.need(DESCRIBE_CONFIGS, range(1, 5))
    flex = v >= 4
    arr = Writer.carray if flex else Writer.array
    s = Writer.cstring if flex else Writer.string

    def res(ww, _):
        ww.i8(resource_type)
        s(ww, name)
        arr(ww, keys, lambda w2, k: s(w2, k))
        if flex:
            ww.tags()
    w = Writer()
    arr(w, [0], res)
    w.bool(False)  # include_synonyms
    if v >= 3:
        w.bool(False)  # include_documentation
    if flex:
        w.tags()
    r = conn.call(DESCRIBE_CONFIGS, v, w.bytes(), flexible=flex)
    r.i32()
    rarr = Reader.carray if flex else Reader.array
    rs = Reader.cstring if flex else Reader.string

    def syn(rr):
        out = (rs(rr), rs(rr), rr.i8())
        if flex:
            rr.tags()
        return out

    def cfg(rr):
        k, val = rs(rr), rs(rr)
        rr.bool()
        rr.i8()
        rr.bool()
        rarr(rr, syn)
        if v >= 3:
            rr.i8()
            rs(rr)
        if flex:
            rr.tags()
        return k, val

    def rres(rr):
        err = rr.i16()
        rs(rr)
        rr.i8()
        rs(rr)
        cfgs = rarr(rr, cfg) or []
        if flex:
            rr.tags()
        return err, dict(cfgs)
    results = rarr(r, rres) or []
    if not results:
        raise ProtoError("DescribeConfigs answer has no result")
    return results[0]


# Record batches (magic 2) and Produce v3-v8 ---------------------------------------------------

CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_REQUIRED_ACKS = 21
INVALID_RECORD = 87


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _zz(v):
    return (v << 1) ^ (v >> 63)


def varint(v):
    return Writer().uvarint(_zz(v)).bytes()


def _vbytes(b):
    return varint(-1) if b is None else varint(len(b)) + b


def record_batch(records, base_offset=0, base_ts=None, attributes=0, producer_id=-1,
                 producer_epoch=-1, base_sequence=-1, count=None, crc=None, magic=2):
    """records: [(key, value, [(hkey, hval)])]. `count` and `crc` override the true values, to
    build malformed batches."""
    if base_ts is None:
        base_ts = int(time.time() * 1000)
    body = b""
    for i, (k, v, hs) in enumerate(records):
        r = bytes([0]) + varint(0) + varint(i) + _vbytes(k) + _vbytes(v) + varint(len(hs))
        for hk, hv in hs:
            hk = hk.encode() if isinstance(hk, str) else hk
            r += varint(len(hk)) + hk + _vbytes(hv)
        body += varint(len(r)) + r
    after_crc = (Writer().i16(attributes).i32(len(records) - 1).i64(base_ts).i64(base_ts)
                 .i64(producer_id).i16(producer_epoch).i32(base_sequence)
                 .i32(len(records) if count is None else count).bytes() + body)
    c = crc32c(after_crc) if crc is None else crc
    tail = Writer().i32(-1).i8(magic).raw(struct.pack(">I", c)).bytes() + after_crc
    return Writer().i64(base_offset).i32(len(tail)).bytes() + tail


def produce_request(topic, partition, records_bytes, acks=-1, timeout_ms=10000):
    """The body of a Produce (v3-v8) of one record set to one partition."""
    w = Writer().string(None).i16(acks).i32(timeout_ms)
    w.array([0], lambda ww, _: (ww.string(topic), ww.array(
        [0], lambda w2, _2: (w2.i32(partition), w2.i32(len(records_bytes)),
                             w2.raw(records_bytes)))))
    return w.bytes()


def produce_answer(r, v):
    """[(topic, [(partition, error_code, base_offset)])] of a Produce answer at version v (3-8),
    read from `r` after the correlation id."""
    def rpart(rr):
        p = (rr.i32(), rr.i16(), rr.i64())
        rr.i64()
        if v >= 5:
            rr.i64()
        if v >= 8:
            rr.array(lambda x: (x.i32(), x.string()))
            rr.string()
        return p
    return r.array(lambda rr: (rr.string(), rr.array(rpart))) or []


def produce(conn, topic, partition, records_bytes, acks=-1, timeout_ms=10000):
    """Returns (error_code, base_offset) for one partition; with acks=0 returns None (no answer
    is sent)."""
    v = conn.need(PRODUCE, range(3, 9))
    body = produce_request(topic, partition, records_bytes, acks, timeout_ms)
    if acks == 0:
        conn.send_request(PRODUCE, v, body)
        return None
    r = conn.call(PRODUCE, v, body)
    for name, ps in produce_answer(r, v):
        for idx, err, base in ps or []:
            if name == topic and idx == partition:
                return err, base
    raise ProtoError("Produce answer lacks the partition")
