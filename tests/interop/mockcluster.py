"""Drives build/tools/sl_mockcluster (tests/tools/sl_mockcluster.c): a librdkafka mock cluster
with N brokers, as the upstream of gateway tests. Commands go over the tool's stdin, one line
each, and each gets one answer line; closing stdin makes the tool exit, so a test that dies
leaves no cluster behind. See docs/TESTING.md for its commands and limits."""
import os
import select
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MOCKCLUSTER_BIN = os.path.abspath(os.environ.get(
    "SLUICE_MOCKCLUSTER_BIN", str(REPO / "build" / "tools" / "sl_mockcluster")))
READY_DEADLINE_S = 20.0
# `metadata` may wait up to the tool's 5 s Metadata timeout; the other commands are immediate.
CMD_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0


class MockClusterError(AssertionError):
    pass


class MockCluster:
    """One sl_mockcluster process. `bootstrap` is the comma-separated list of broker addresses,
    `brokers` maps broker id to "host:port". Its stderr (the mock's own diagnostics, e.g.
    "unsupported MetadataRequest version") goes to `log_path`."""

    def __init__(self, log_path, topics=(), brokers=3, binary=None):
        self.binary = binary or MOCKCLUSTER_BIN
        self.log_path = Path(log_path)
        self.args = ["--brokers", str(brokers)]
        for t in topics:
            self.args += ["--topic", t]
        self.proc = None
        self._buf = b""
        self.bootstrap = None
        self.brokers = {}

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise MockClusterError(f"{self.binary} missing (build it: make asan)")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary] + self.args, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log)
        line = self._readline(READY_DEADLINE_S, "the READY line")
        fields = line.split()
        if not fields or fields[0] != "READY":
            raise MockClusterError(f"expected READY, got {line!r}\n{self.log_tail()}")
        kv = dict(f.split("=", 1) for f in fields[1:])
        self.bootstrap = kv["bootstrap"]
        for b in kv["brokers"].split(","):
            bid, addr = b.split("@", 1)
            self.brokers[int(bid)] = addr
        return self

    def _readline(self, timeout, what):
        """One line from the tool's stdout within `timeout` seconds (os.read on the raw pipe, so
        select() sees every byte not yet returned)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MockClusterError(f"no answer from sl_mockcluster within {timeout}s "
                                       f"waiting for {what}\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.proc.poll()
                    raise MockClusterError(f"sl_mockcluster closed stdout (exit {rc}) "
                                           f"waiting for {what}\n{self.log_tail()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, line, check=True):
        """Sends one command, returns its answer line; with `check`, fails unless it is
        "ok ..."."""
        assert "\n" not in line
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._readline(CMD_DEADLINE_S, repr(line))
        if check and not answer.startswith("ok"):
            raise MockClusterError(f"sl_mockcluster: {line!r} -> {answer!r}")
        return answer

    def set_leader(self, topic, partition, broker):
        self.cmd(f"leader {topic} {partition} {broker}")

    def leaders(self):
        """{topic: [leader of partition 0, 1, ...]} as the cluster's Metadata says."""
        out = {}
        for item in self.cmd("metadata").split()[1:]:
            name, ids = item.rsplit(":", 1)
            out[name] = [int(x) for x in ids.split(",")] if ids else []
        return out

    def stop(self):
        """Closes stdin (the tool's way out) and waits; kills it only if it hangs. Returns the
        exit code, which is 0 after a clean stop."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise MockClusterError(f"sl_mockcluster ignored stdin EOF for {STOP_DEADLINE_S}s "
                                   f"(killed)\n{self.log_tail()}")
        finally:
            self.proc.stdout.close()

    def log_tail(self, n=40):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        return f"--- sl_mockcluster stderr ({self.log_path}) ---\n" + "\n".join(lines[-n:])
