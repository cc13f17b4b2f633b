"""Every request ends through one finish path that observers see exactly once, whatever its
outcome: an answer, an acks=0 produce, a version fallback, a malformed request that closes the
connection, SASL tokens. The broker's built-in observer logs each finished request at debug
level (sub=request msg="finished"), with its principal, resources and decisions."""
import re
import struct

import pytest

import helpers as h
import kproto as kp
import test_sasl as ts
from conftest import wait_until
from test_sasl import sasl_broker  # noqa: F401 - the fixture

LINE = re.compile(r'sub=request msg="finished" (.*)')


def finished(broker):
    out = []
    for m in LINE.finditer(broker.log_text()):
        out.append(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(1))))
    return out


def by_corr(lines, api):
    return {int(d["corr"]): d for d in lines if int(d["api"]) == api}


@pytest.mark.broker_config({"sluice.log.level": "debug"})
def test_every_outcome_is_observed_once(broker):
    h.ck_create_topic(broker.bootstrap, "obs", 1)
    with kp.Conn(broker.bootstrap) as c:
        # An answer with a named, allowed resource and bytes counted.
        kp.metadata(c, ["obs"])
        md_corr = c.corr
        # acks=0: completed without an answer.
        batch = kp.record_batch([(b"k", b"v", [])] * 3)
        w = kp.Writer().string(None).i16(0).i32(1000)
        w.array([0], lambda ww, _: (ww.string("obs"),
                                    ww.array([0], lambda x, _: (x.i32(0), x.i32(len(batch)),
                                                                x.raw(batch)))))
        ack0_corr = c.send_request(kp.PRODUCE, 3, w.bytes())
        err, _ = kp.produce(c, "obs", 7, kp.record_batch([(b"k", b"v", [])]), acks=1)
        assert err == 3
        bad_part_corr = c.corr
        # ApiVersions newer than we know: answered in v0 from the header alone.
        c.send_raw(kp.frame(struct.pack(">hhi", kp.API_VERSIONS, 99, 4242) + b"\x00" * 8))
        payload = c.recv_frame()
        assert payload is not None and struct.unpack(">i", payload[:4])[0] == 4242
        assert kp.fetch(c, "obs", 0, 0)["high_watermark"] == 3
    # An API we do not serve: the connection closes, and the request is still observed.
    with kp.Conn(broker.bootstrap) as c:
        bad_corr = c.send_request(9999, 0, b"")
        assert c.closed_by_peer()

    def all_seen():
        lines = finished(broker)
        return (by_corr(lines, kp.METADATA).get(md_corr)
                and by_corr(lines, kp.PRODUCE).get(ack0_corr)
                and by_corr(lines, kp.PRODUCE).get(bad_part_corr)
                and by_corr(lines, kp.API_VERSIONS).get(4242)
                and by_corr(lines, 9999).get(bad_corr))
    wait_until(all_seen, 10, "every request observed")
    lines = finished(broker)
    md = by_corr(lines, kp.METADATA)[md_corr]
    assert md["outcome"] == "response" and int(md["bytes_out"]) > 0
    assert "TOPIC:obs:DESCRIBE:allow:e0" in md["resources"]
    p = by_corr(lines, kp.PRODUCE)[ack0_corr]
    assert p["outcome"] == "noreply" and int(p["records_in"]) == 3
    assert "TOPIC:obs:WRITE:allow:e0" in p["resources"]
    # A per-resource outcome: produce to a partition that does not exist.
    bad = by_corr(lines, kp.PRODUCE)[bad_part_corr]
    assert bad["outcome"] == "response"
    assert "TOPIC:obs:WRITE:allow:e3" in bad["resources"]  # UNKNOWN_TOPIC_OR_PARTITION
    assert by_corr(lines, kp.API_VERSIONS)[4242]["outcome"] == "response"
    assert by_corr(lines, 9999)[bad_corr]["outcome"] == "closed"
    # Exactly once each: no request is reported twice.
    keys = [(d["peer"], d["api"], d["corr"]) for d in lines]
    assert len(keys) == len(set(keys)), "a request was observed twice"


@pytest.mark.broker_config({"sluice.log.level": "debug"})
def test_sasl_exchanges_are_observed_with_their_principal(sasl_broker):
    """Over SASL_PLAINTEXT with SCRAM: the handshake and authenticate requests are observed
    before there is a principal, the requests after it carry User:alice."""
    b = sasl_broker
    with ts.sasl_conn(b) as c:
        kp.metadata(c, [])
        corr = c.corr
    wait_until(lambda: by_corr(finished(b), kp.METADATA).get(corr), 10, "metadata observed")
    lines = finished(b)
    assert by_corr(lines, kp.METADATA)[corr]["principal"] == "User:alice"
    auth = [d for d in lines if int(d["api"]) == ts.SASL_AUTHENTICATE]
    assert auth and all(d["outcome"] == "response" for d in auth)
    assert [d["principal"] for d in lines if int(d["api"]) == ts.SASL_HANDSHAKE] == ["-"]


@pytest.mark.broker_config({"sluice.log.level": "debug"})
def test_outcomes_per_resource_come_from_the_answer(broker):
    """Each API's descriptor copies what the answer says about each named resource into the
    lifecycle: a CreateTopics of an existing topic records TOPIC_ALREADY_EXISTS (36) on that
    topic, a JoinGroup with an unknown member id records UNKNOWN_MEMBER_ID (25) on the group."""
    h.ck_create_topic(broker.bootstrap, "dup", 1)
    from confluent_kafka.admin import NewTopic
    admin = h.ck_admin(broker.bootstrap)  # kept: a destroyed client fails its futures unsent
    fs = admin.create_topics([NewTopic("dup", 1, 1)], request_timeout=15)
    with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS|already exists"):
        fs["dup"].result(timeout=30)
    with kp.Conn(broker.bootstrap) as c:
        # JoinGroup v5: group, session timeout, rebalance timeout, member id (unknown),
        # instance id (null), protocol type, one protocol.
        w = kp.Writer().string("g1").i32(10000).i32(10000).string("nobody").string(None)
        w.string("consumer").array([0], lambda ww, _: (ww.string("range"), ww.i32(0)))
        r = c.call(11, 5, w.bytes())
        r.i32()
        assert r.i16() == 25
        corr = c.corr

    def seen():
        lines = finished(broker)
        ct = [d for d in lines if int(d["api"]) == 19 and "TOPIC:dup:CREATE:allow:e36" in
              d["resources"]]
        jg = by_corr(lines, 11).get(corr)
        return ct and jg
    wait_until(seen, 10, "outcomes observed")
    jg = by_corr(finished(broker), 11)[corr]
    assert "GROUP:g1:READ:allow:e25" in jg["resources"] and jg["error"] == "25"
