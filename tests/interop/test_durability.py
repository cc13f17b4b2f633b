"""acks=all is answered only once the batch is on disk. With the broker's fsyncs held (an
LD_PRELOAD shim makes fsync wait while a gate file is missing), an acks=all produce gets no
answer, while an acks=1 produce to the same partition is answered at once; opening the gate
releases the acks=all answer."""
import os
import socket
import subprocess

import pytest

import helpers as h
import kproto as kp
from conftest import Broker

SHIM_SRC = os.path.join(os.path.dirname(__file__), "shim", "fsync_gate.c")
TOPIC = "durable"


def produce_body(acks, records):
    return kp.produce_request(TOPIC, 0, kp.record_batch(records), acks, 30000)


def produce_answer(conn, corr, timeout):
    """(error, base offset) of the Produce v3 answer to `corr`, or None if none came in time."""
    conn.sock.settimeout(timeout)
    try:
        payload = conn.recv_frame()
    except socket.timeout:
        return None
    finally:
        conn.sock.settimeout(conn.timeout)
    assert payload is not None, "broker closed the connection"
    r = kp.Reader(payload)
    assert r.i32() == corr
    (name, parts), = kp.produce_answer(r, 3)
    assert name == TOPIC
    _, err, base = parts[0]
    return err, base


@pytest.fixture
def gated_broker(tmp_path, monkeypatch):
    shim = tmp_path / "fsync_gate.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), SHIM_SRC, "-ldl"],
                   check=True)
    gate = tmp_path / "gate-open"
    gate.touch()
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("SLUICE_TEST_FSYNC_GATE", str(gate))
    # The shim is loaded before the ASan runtime; that is harmless for fsync interposition.
    opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":verify_asan_link_order=0")
    b = Broker(tmp_path)
    b.start()
    monkeypatch.delenv("LD_PRELOAD")  # the clients run without it
    yield b, gate
    gate.touch()
    if b.alive():
        b.stop(check=True)
    else:
        b.assert_no_sanitizer_report()
        pytest.fail(f"broker died during the test\n{b.log_tail()}")


def test_acks_all_waits_for_fsync(gated_broker):
    broker, gate = gated_broker
    h.ck_create_topic(broker.bootstrap, TOPIC, 1)
    with kp.Conn(broker.bootstrap) as slow, kp.Conn(broker.bootstrap) as fast:
        gate.unlink()  # from here every fsync waits
        corr = slow.send_request(kp.PRODUCE, 3, produce_body(-1, [(b"k", b"all", [])]))
        # acks=1 on another connection: answered while the fsync is held, so the broker is
        # serving (and has appended both batches, in whichever order it read them).
        fast_corr = fast.send_request(kp.PRODUCE, 3, produce_body(1, [(b"k", b"one", [])]))
        fast_err, fast_base = produce_answer(fast, fast_corr, 10)
        assert fast_err == kp.NONE and fast_base in (0, 1)
        # Nothing for acks=all while its fsync cannot complete (bounded look, not a sleep
        # standing in for synchronization: the answer must not come at all).
        assert produce_answer(slow, corr, 1.5) is None, "acks=all answered before fsync"
        gate.touch()
        assert produce_answer(slow, corr, 10) == (kp.NONE, 1 - fast_base)
