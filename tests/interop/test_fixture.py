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
