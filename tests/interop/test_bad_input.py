"""Hostile and malformed input over raw sockets. After every case the broker (ASan+UBSan build)
must still be running and answer ApiVersions on a fresh connection; the fixture's teardown fails
the test if the sanitizers printed anything or the broker does not exit cleanly on SIGTERM."""
import random
import socket
import struct
import time

import pytest

import kproto as kp
from kproto import Conn, Writer, frame, request_header


def assert_healthy(broker):
    assert broker.alive(), f"broker died\n{broker.log_tail()}"
    with Conn(broker.bootstrap) as c:
        err, keys = kp.api_versions(c, 0)
        assert err == kp.NONE, f"ApiVersions v0 error {err}"
        assert kp.API_VERSIONS in keys and keys[kp.API_VERSIONS][1] >= 3, keys
        err3, keys3 = kp.api_versions(c, 3)
        assert err3 == kp.NONE and keys3 == keys, "ApiVersions v3 differs from v0"
    assert broker.alive(), f"broker died\n{broker.log_tail()}"


MAX_ANSWER = 64 * 1024 * 1024  # no answer to these small requests comes anywhere near this


def read_answer(conn, timeout=10.0):
    """Reads what the broker sends next: returns the payload of one whole, well-formed frame,
    or None if the broker closed the connection (EOF or reset) at a frame boundary. Fails the
    test on anything else: no answer and no close within `timeout` seconds, a size prefix that
    is negative, shorter than a correlation id or absurdly large, or a frame cut short of its
    announced size."""
    conn.sock.settimeout(timeout)
    head = bytearray()
    try:
        while len(head) < 4:
            chunk = conn.sock.recv(4 - len(head))
            if not chunk:
                break
            head += chunk
    except socket.timeout:
        pytest.fail(f"broker neither answered nor closed within {timeout}s")
    except ConnectionResetError:
        head = head or None
    if not head:
        return None
    assert len(head) == 4, f"connection closed inside a response size prefix ({bytes(head)!r})"
    (n,) = struct.unpack(">i", head)
    assert 4 <= n <= MAX_ANSWER, f"response frame announces {n} bytes"
    body = bytearray()
    try:
        while len(body) < n:
            chunk = conn.sock.recv(n - len(body))
            assert chunk, f"response frame of {n} bytes cut after {len(body)}"
            body += chunk
    except socket.timeout:
        pytest.fail(f"response frame of {n} bytes stalled after {len(body)} within {timeout}s")
    except ConnectionResetError:
        pytest.fail(f"connection reset inside a response frame of {n} bytes ({len(body)} read)")
    return bytes(body)


def closes_or_answers(conn, corr=None, timeout=10.0):
    """Waits for the broker to either close the connection or answer `corr` with one whole,
    well-formed frame; returns "closed" or "answered". Fails on a timeout, a corrupt or
    wrong-size frame, or an answer to another correlation id."""
    payload = read_answer(conn, timeout)
    if payload is None:
        return "closed"
    got = struct.unpack(">i", payload[:4])[0]
    if corr is not None:
        assert got == corr, f"answer with correlation id {got}, expected {corr}"
    return "answered"


def closes(conn, timeout=10.0):
    """The broker closes the connection without sending anything (first) within `timeout`."""
    payload = read_answer(conn, timeout)
    assert payload is None, f"broker answered ({len(payload)} bytes) instead of closing"


def test_healthy_baseline(broker):
    assert_healthy(broker)


def test_truncated_frame_then_close(broker):
    hdr = request_header(kp.API_VERSIONS, 0, 1)
    for cut in (1, 3, 4, 5, 8, len(hdr) - 1):
        full = frame(hdr)
        with Conn(broker.bootstrap) as c:
            c.send_raw(full[:cut])
    assert_healthy(broker)


def test_size_prefix_larger_than_data_then_close(broker):
    body = request_header(kp.API_VERSIONS, 0, 1)
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", 1000) + body)
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", 50_000) + body + b"\0" * 20_000)
    assert_healthy(broker)


@pytest.mark.parametrize("size", [-1, -2, -(2**31), 2**31 - 1, 200 * 1024 * 1024, 104857601])
def test_bad_frame_size_closes(broker, size):
    """Negative sizes and sizes over socket.request.max.bytes (100 MiB by default): the broker
    must close the connection without trying to buffer the frame."""
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", size) + request_header(kp.API_VERSIONS, 0, 1))
        assert c.closed_by_peer(10), f"connection with frame size {size} not closed"
    assert_healthy(broker)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 7])
def test_frame_shorter_than_header(broker, size):
    """Shorter than api key, version and correlation id: nothing to answer, so it must close."""
    with Conn(broker.bootstrap) as c:
        c.send_raw(struct.pack(">i", size) + b"\x00" * size)
        closes(c)
    assert_healthy(broker)


def metadata_v1_with_count(count):
    return Writer().i32(count).raw(b"\x00\x03abc").bytes()


@pytest.mark.parametrize("count", [-2, -1000, -(2**31)])
def test_negative_array_count(broker, count):
    """Metadata v1 topics = -1 means "all topics"; other negative counts are malformed."""
    with Conn(broker.bootstrap) as c:
        corr = c.send_request(kp.METADATA, 1, metadata_v1_with_count(count))
        closes_or_answers(c, corr)
    with Conn(broker.bootstrap) as c:
        # Produce v3: negative topic count, then negative partition count.
        body = Writer().string(None).i16(1).i32(1000).i32(count).bytes()
        corr = c.send_request(kp.PRODUCE, 3, body)
        closes_or_answers(c, corr)
    with Conn(broker.bootstrap) as c:
        body = Writer().string(None).i16(1).i32(1000).i32(1).string("t").i32(count).bytes()
        corr = c.send_request(kp.PRODUCE, 3, body)
        closes_or_answers(c, corr)
    assert_healthy(broker)


@pytest.mark.parametrize("count", [2**31 - 1, 1 << 24, 5000])
def test_huge_array_count_in_small_frame(broker, count):
    cases = [
        (kp.METADATA, 1, metadata_v1_with_count(count), False),
        (kp.PRODUCE, 3, Writer().string(None).i16(1).i32(1000).i32(count).bytes(), False),
        (kp.PRODUCE, 3, Writer().string(None).i16(1).i32(1000).i32(1).string("t").i32(count)
         .bytes(), False),
        # Flexible: compact array count as a uvarint (count + 1).
        (kp.METADATA, 12, Writer().uvarint(count + 1).bytes(), True),
        # ApiVersions v3 with a client software name claiming `count` bytes.
        (kp.API_VERSIONS, 3, Writer().uvarint(count + 1).raw(b"x").bytes(), True),
        # ListOffsets v1: topics then partitions counts.
        (kp.LIST_OFFSETS, 1, Writer().i32(-1).i32(count).bytes(), False),
        (kp.FETCH, 4, Writer().i32(-1).i32(100).i32(1).i32(1 << 20).i8(0).i32(count).bytes(),
         False),
    ]
    for key, ver, body, flex in cases:
        with Conn(broker.bootstrap) as c:
            corr = c.send_request(key, ver, body, flexible=flex)
            closes_or_answers(c, corr)
        assert broker.alive(), f"broker died on api {key} v{ver} count {count}\n" \
            f"{broker.log_tail()}"
    assert_healthy(broker)


def test_overlong_uvarint(broker):
    with Conn(broker.bootstrap) as c:
        corr = c.send_request(kp.METADATA, 12, b"\xff" * 12, flexible=True)
        closes_or_answers(c, corr)
    assert_healthy(broker)


@pytest.mark.parametrize("api_key", [999, 32767, -1, -32768, 1000])
def test_unknown_api_key(broker, api_key):
    """As Kafka: an API key the broker does not know closes the connection (there is no
    response schema to answer in)."""
    with Conn(broker.bootstrap) as c:
        c.send_request(api_key, 0, b"\x00" * 16)
        closes(c)
    assert_healthy(broker)


@pytest.mark.parametrize("version", [4, 5, 100, 32767, -1])
def test_api_versions_unsupported_version(broker, version):
    """Kafka's contract: an ApiVersions request with a version the broker does not know gets
    UNSUPPORTED_VERSION (35) with a v0 body that still lists the supported versions, so the
    client can retry with one of them."""
    with Conn(broker.bootstrap) as c:
        top = c.versions()[kp.API_VERSIONS][1]
        if 0 <= version <= top:
            # Supported after all (v4 is, today): then it must be answered normally, with the
            # same version ranges as v0 (its layout is v3's).
            err, keys = kp.api_versions(c, version)
            assert err == kp.NONE and keys == c.versions(), f"ApiVersions v{version}: {err}"
            return
        # As a newer client would send it: header v2 and a v3-style body for versions >= 3
        # (Kafka's rule for ApiVersions); the broker must not need the body to answer.
        flex = version >= 3
        corr = c.send_request(kp.API_VERSIONS, version,
                              kp.api_versions_body(3) if flex else b"", flexible=flex)
        payload = c.recv_frame()
        assert payload is not None, "broker closed instead of answering UNSUPPORTED_VERSION"
        r = kp.Reader(payload)
        assert r.i32() == corr
        err, keys = kp.parse_api_versions(r, 0)
        assert err == kp.UNSUPPORTED_VERSION, f"error {err}, expected 35"
        assert kp.API_VERSIONS in keys, f"v0 body lists no ApiVersions entry: {keys}"
        assert keys[kp.API_VERSIONS][0] == 0
        # The connection stays usable for a supported version.
        err2, _ = kp.api_versions(c, 0)
        assert err2 == kp.NONE
    assert_healthy(broker)


def test_unsupported_version_of_other_api(broker):
    """Metadata v9999: Kafka closes the connection; an error answer is also acceptable."""
    with Conn(broker.bootstrap) as c:
        corr = c.send_request(kp.METADATA, 9999, metadata_v1_with_count(0))
        closes_or_answers(c, corr)
    assert_healthy(broker)


@pytest.mark.parametrize("garbage", [b"\xff" * 64, b"\x00\x00\x00\x08" + b"\x07" * 8,
                                     b"\x7f\xff\xff\xff" + b"junk", bytes(range(256))])
def test_valid_request_then_garbage(broker, garbage):
    """Kafka answers the valid request before reading the garbage; closing at once (dropping
    the answer) is accepted too. A wrong or corrupt answer is not."""
    with Conn(broker.bootstrap) as c:
        corr = c.corr = 41
        c.send_raw(frame(request_header(kp.API_VERSIONS, 0, corr + 1)) + garbage)
        payload = read_answer(c)
        if payload is not None:
            r = kp.Reader(payload)
            assert r.i32() == corr + 1
            err, keys = kp.parse_api_versions(r, 0)
            assert err == kp.NONE and kp.API_VERSIONS in keys
            assert r.left() == 0, f"{r.left()} bytes after the ApiVersions v0 body"
        # No more input comes: whatever the garbage decodes to (a bad size, an unknown API, a
        # frame still incomplete), the broker must close the connection; it has nothing more
        # to answer, so anything else it sends, or a hang, fails.
        if payload is not None:
            c.sock.shutdown(socket.SHUT_WR)
            closes(c)
    assert_healthy(broker)


@pytest.mark.timeout_s(120)
def test_random_frames(broker):
    """A few hundred seeded random requests for each advertised API: random bodies, and valid
    headers followed by random bytes; the broker may answer or close but must survive."""
    rnd = random.Random(1234)
    with Conn(broker.bootstrap) as c:
        versions = c.versions()
    sent = 0
    for key, (lo, hi) in sorted(versions.items()):
        for _ in range(12):
            ver = rnd.randint(lo, hi)
            body = rnd.randbytes(rnd.choice([0, 1, 5, 17, 64, 300]))
            flex = rnd.random() < 0.5
            with Conn(broker.bootstrap, timeout=10) as c:
                corr = c.send_request(key, ver, body, flexible=flex)
                # An answer must be one whole frame for this request; closing is fine.
                closes_or_answers(c, corr)
            sent += 1
        assert broker.alive(), f"broker died on api {key}\n{broker.log_tail()}"
    assert sent > 0
    assert_healthy(broker)


def test_many_half_open_connections(broker):
    socks = []
    try:
        for i in range(50):
            s = socket.create_connection(kp.split_host_port(broker.bootstrap), timeout=5)
            s.sendall(struct.pack(">i", 64) + b"\x00" * (i % 30))
            socks.append(s)
        assert_healthy(broker)
    finally:
        for s in socks:
            s.close()
    assert_healthy(broker)


@pytest.mark.broker_config({"connections.max.idle.ms": 1000})
def test_idle_and_slow_connections_are_closed(broker):
    """connections.max.idle.ms: a silent connection, and one that stalls inside a frame
    (slowloris), are both closed by the broker."""
    with Conn(broker.bootstrap) as idle, Conn(broker.bootstrap) as slow:
        slow.send_raw(struct.pack(">i", 100) + b"\x00\x12")
        assert idle.closed_by_peer(8), "idle connection still open after 8 s"
        assert slow.closed_by_peer(8), "connection stalled mid-frame still open after 8 s"
    # A connection in use is not closed: answers keep coming for longer than the idle limit.
    with Conn(broker.bootstrap) as busy:
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            assert kp.api_versions(busy, 0)[0] == kp.NONE
            time.sleep(0.2)
    assert_healthy(broker)


@pytest.mark.broker_config({"socket.request.max.bytes": 4096})
def test_socket_request_max_bytes(broker):
    with Conn(broker.bootstrap) as c:
        corr = c.send_request(kp.API_VERSIONS, 0, b"")
        assert closes_or_answers(c, corr) == "answered"
        c.send_raw(struct.pack(">i", 4097) + b"\x00" * 64)
        assert c.closed_by_peer(10), "frame over socket.request.max.bytes not refused"
    with Conn(broker.bootstrap) as c:
        # Exactly at the limit: accepted (answered or refused as a request, not as a frame).
        body = Writer().string(None).i16(1).i32(1000).i32(0).bytes()
        hdr = request_header(kp.PRODUCE, 3, 9)
        pad = 4096 - len(hdr) - len(body)
        c.send_raw(struct.pack(">i", 4096) + hdr + body + b"\x00" * pad)
        closes_or_answers(c, 9)
    assert_healthy(broker)


@pytest.mark.broker_config({"max.connections": 4})
def test_max_connections(broker):
    socks = []
    try:
        served = 0
        for _ in range(8):
            try:
                c = Conn(broker.bootstrap, timeout=3)
                socks.append(c)
                if kp.api_versions(c, 0)[0] == kp.NONE:
                    served += 1
            except (OSError, kp.ProtoError):
                pass
        assert 1 <= served <= 4, f"{served} connections served with max.connections=4"
    finally:
        for c in socks:
            c.close()
    from conftest import wait_until

    def served_again():
        with Conn(broker.bootstrap, timeout=3) as c:
            return kp.api_versions(c, 0)[0] == kp.NONE
    wait_until(served_again, 10, "a new connection to be served after the others closed")
    assert_healthy(broker)
