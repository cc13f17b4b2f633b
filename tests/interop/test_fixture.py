"""The harness itself: a fake broker proves that the fixture's checks (sanitizer output, exit
code after SIGTERM) really fail, so a green run means something."""
import sys
import textwrap

import pytest

from conftest import Broker

FAKE = textwrap.dedent("""\
    #!{python}
    import signal, socket, sys
    cfg = dict(l.strip().split("=", 1) for l in open(sys.argv[3]) if "=" in l)
    host, port = cfg["listeners"].split("//")[1].rsplit(":", 1)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port))); s.listen()
    mode = cfg.get("fake.mode", "clean")
    def term(*_):
        if mode == "asan":
            sys.stderr.write("==1==ERROR: AddressSanitizer: heap-use-after-free\\n")
        if mode == "ubsan":
            sys.stderr.write("x.c:1:2: runtime error: signed integer overflow\\n")
        sys.exit(3 if mode == "exit3" else 0)
    signal.signal(signal.SIGTERM, term)
    while True:
        signal.pause()
    """)


@pytest.fixture(autouse=True)
def no_sanitizer_log(monkeypatch):
    """The fake brokers' sanitizer reports are expected: keep them out of the list CI prints."""
    monkeypatch.delenv("SLUICE_SANITIZER_LOG", raising=False)


@pytest.fixture
def fake_bin(tmp_path):
    p = tmp_path / "fake-sluice"
    p.write_text(FAKE.format(python=sys.executable))
    p.chmod(0o755)
    return str(p)


def make(tmp_path, fake_bin, mode):
    d = tmp_path / mode
    d.mkdir()
    return Broker(d, {"fake.mode": mode}, binary=fake_bin).start()


def test_clean_stop_passes(tmp_path, fake_bin):
    b = make(tmp_path, fake_bin, "clean")
    assert b.stop() == 0


@pytest.mark.parametrize("mode", ["asan", "ubsan", "exit3"])
def test_bad_exit_is_caught(tmp_path, fake_bin, mode):
    b = make(tmp_path, fake_bin, mode)
    with pytest.raises(AssertionError):
        b.stop()


def test_restart_and_kill9(tmp_path, fake_bin):
    b = make(tmp_path, fake_bin, "clean")
    b.restart()
    b.kill9()
    assert not b.alive()
    b.start()
    assert b.stop() == 0


@pytest.mark.parametrize("how", ["sigkill", "sigsegv", "exit0"])
def test_broker_dead_without_sanitizer_output_fails_teardown(tmp_path, fake_bin, how):
    """finish_broker (every broker fixture's teardown) fails the test for a broker that died on
    its own, even without any sanitizer output: by a signal, or exiting by itself with 0."""
    import os
    import signal as sig
    from _pytest.outcomes import Failed
    from conftest import finish_broker
    b = make(tmp_path, fake_bin, "clean")
    if how == "exit0":
        b.proc.send_signal(sig.SIGTERM)  # as if the broker had exited by itself
    else:
        os.kill(b.proc.pid, sig.SIGKILL if how == "sigkill" else sig.SIGSEGV)
    b.proc.wait(10)
    with pytest.raises(Failed, match="broker died during the test"):
        finish_broker(b)


def test_broker_died_and_restarted_fails_teardown(tmp_path, fake_bin):
    import os
    import signal as sig
    from _pytest.outcomes import Failed
    from conftest import finish_broker
    b = make(tmp_path, fake_bin, "clean")
    os.kill(b.proc.pid, sig.SIGKILL)
    b.proc.wait(10)
    b.start()  # a test restarting a broker that had died unasked must not hide the death
    with pytest.raises(Failed, match="started again .*SIGKILL"):
        finish_broker(b)


def test_expected_stop_and_kill9_pass_teardown(tmp_path, fake_bin):
    from conftest import finish_broker
    b = make(tmp_path, fake_bin, "clean")
    b.kill9()
    b.start()
    finish_broker(b)  # stops it cleanly; kill9() was the test's own doing


def test_wait_until_fails_at_once_on_assertion():
    import time
    from conftest import wait_until
    calls = []

    def wrong():
        calls.append(1)
        raise AssertionError("a wrong answer")
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="a wrong answer"):
        wait_until(wrong, 30, "never")
    assert len(calls) == 1 and time.monotonic() - t0 < 1


def test_wait_until_retries_transient_errors():
    from conftest import wait_until
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not yet")
        return "ok"
    assert wait_until(flaky, 10, "flaky", interval=0.01) == "ok"
    with pytest.raises(AssertionError, match="timed out .*ConnectionRefusedError"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionRefusedError("down")), 0.2, "down")
