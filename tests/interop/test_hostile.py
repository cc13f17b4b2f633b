"""A hostile client with a valid account: requests of one connection must never run inside the
handling of another connection's request (issue 9's reproduction: a produce that woke parked
fetches used to run the fetching connection's buffered DeleteTopics nested inside the produce
handler, which then used the freed partition)."""
import pytest

import helpers as h
import kproto as kp

TOPIC = "victim"
INFLIGHT = 4


def fetch_at_end_body(topic, offset, max_wait_ms):
    """Fetch v4 for partition 0 of `topic` at `offset`, min_bytes 1."""
    w = kp.Writer().i32(-1).i32(max_wait_ms).i32(1).i32(1 << 20).i8(0)
    w.array([0], lambda ww, _: (ww.string(topic),
                                ww.array([0], lambda x, _: (x.i32(0), x.i64(offset),
                                                            x.i32(1 << 20)))))
    return w.bytes()


def parse_fetch_v4(r):
    r.i32()  # throttle

    def rpart(rr):
        p = {"partition": rr.i32(), "error": rr.i16(), "high_watermark": rr.i64()}
        rr.i64()
        rr.array(lambda x: (x.i64(), x.i64()))
        p["records"] = rr.nbytes() or b""
        return p
    return r.array(lambda rr: (rr.string(), rr.array(rpart)))


def delete_topics_v1_body(topics, timeout_ms=10000):
    return kp.Writer().array(topics, lambda w, t: w.string(t)).i32(timeout_ms).bytes()


def recv_response(conn, corr):
    payload = conn.recv_frame()
    assert payload is not None, "broker closed the connection"
    r = kp.Reader(payload)
    assert r.i32() == corr
    return r


@pytest.mark.broker_config({"sluice.max.inflight.requests": INFLIGHT})
def test_produce_waking_fetches_does_not_run_their_connections_delete_nested(broker):
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    with kp.Conn(broker.bootstrap) as a, kp.Conn(broker.bootstrap) as b:
        assert kp.produce(a, TOPIC, 0, kp.record_batch([(b"k", b"first", [])])) == (kp.NONE, 0)
        # B parks INFLIGHT fetches at the log end; its DeleteTopics waits behind them, read
        # into the connection's buffer but not dispatched (the in-flight limit is reached).
        fetch_corrs = [b.send_request(kp.FETCH, 4, fetch_at_end_body(TOPIC, 1, 30000))
                       for _ in range(INFLIGHT)]
        del_corr = b.send_request(kp.DELETE_TOPICS, 1, delete_topics_v1_body([TOPIC]))
        # A barrier, not a sleep: B's bytes reached the broker before this new connection
        # did, and the loop reads a readable socket in the iteration it is reported, so once a
        # round trip on a third connection is answered, B's fetches are parked.
        with kp.Conn(broker.bootstrap) as c:
            kp.api_versions(c)
        # A's produce wakes B's fetches. B's DeleteTopics must run after A's produce handler
        # has returned (deleting the partition A's handler is still using was the crash).
        err, base = kp.produce(a, TOPIC, 0, kp.record_batch([(b"k", b"second", [])]))
        assert (err, base) == (kp.NONE, 1)
        for corr in fetch_corrs:
            topics = parse_fetch_v4(recv_response(b, corr))
            (name, parts), = topics
            assert name == TOPIC and parts[0]["error"] == kp.NONE
            assert parts[0]["high_watermark"] == 2
            assert [o for o, _ in kp.batch_base_offsets(parts[0]["records"])] == [1]
        r = recv_response(b, del_corr)
        r.i32()  # throttle
        assert r.array(lambda rr: (rr.string(), rr.i16())) == [(TOPIC, kp.NONE)]
        # The broker is still up and consistent: the topic is gone for both connections.
        md = kp.metadata(a, [TOPIC])
        assert broker.alive()
    assert md is not None
    broker.assert_no_sanitizer_report()
