"""The test tool's own tests: sl_mockcluster (tests/tools/sl_mockcluster.c) through the
mock_cluster fixture, checked from outside with kcat. The gateway tests (issue 14) rely on each
of these behaviours: three brokers on their own ports, partitions led by different brokers,
data that survives leader moves, and a broker port that really closes and reopens."""
import json
import signal
import socket
import subprocess
import time

import pytest

from conftest import wait_until
from mockcluster import MockCluster, STOP_DEADLINE_S

pytestmark = pytest.mark.timeout_s(60)


def kcat(*args, stdin=None, timeout=20):
    r = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {args} exited {r.returncode}: {r.stderr}"
    return r.stdout


def metadata(bootstrap, topic):
    """kcat -L -J for one topic (which exists: the mock auto-creates any topic named here)."""
    return json.loads(kcat("-b", bootstrap, "-L", "-J", "-t", topic))


def leaders(md, topic):
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    return {p["partition"]: p["leader"] for p in t["partitions"]}


def can_connect(addr):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except ConnectionRefusedError:
        return False


@pytest.mark.mock_topics("gw:6")
def test_three_brokers_and_partitions_on_different_leaders(mock_cluster):
    md = metadata(mock_cluster.bootstrap, "gw")
    # The READY line's broker map is what the cluster itself reports.
    assert {b["id"]: b["name"] for b in md["brokers"]} == mock_cluster.brokers
    assert sorted(mock_cluster.brokers) == [1, 2, 3]
    assert len(set(mock_cluster.brokers.values())) == 3
    assert sorted(mock_cluster.bootstrap.split(",")) == sorted(mock_cluster.brokers.values())
    # Round-robin, not the mock's random choice: every broker leads two partitions.
    assert leaders(md, "gw") == {p: p % 3 + 1 for p in range(6)}
    assert mock_cluster.leaders()["gw"] == [1, 2, 3, 1, 2, 3]


@pytest.mark.mock_topics("rt:3")
def test_produce_consume_round_trip(mock_cluster):
    n = 300
    lines = [f"k{i}:v{i}" for i in range(n)]
    kcat("-b", mock_cluster.bootstrap, "-P", "-t", "rt", "-K:", stdin="\n".join(lines) + "\n")
    out = kcat("-b", mock_cluster.bootstrap, "-C", "-t", "rt", "-o", "beginning", "-e", "-q",
               "-f", "%p %k:%s\n")
    got = [line.split(" ", 1) for line in out.splitlines()]
    assert sorted(kv for _, kv in got) == sorted(lines)
    # Keys hashed over all three partitions, so all three leaders served produce and fetch.
    assert {p for p, _ in got} == {"0", "1", "2"}


@pytest.mark.mock_topics("mv:3", brokers=3)
def test_leader_moves_and_bad_commands(mock_cluster):
    kcat("-b", mock_cluster.bootstrap, "-P", "-t", "mv", "-p", "0", stdin="before\n")
    mock_cluster.set_leader("mv", 0, 3)
    mock_cluster.set_leader("mv", 2, -1)
    # The answer line comes after the change: the next Metadata already shows it.
    assert leaders(metadata(mock_cluster.bootstrap, "mv"), "mv") == {0: 3, 1: 2, 2: -1}
    assert mock_cluster.leaders()["mv"] == [3, 2, -1]
    # The partition log is the cluster's, not the old leader's: the record is still there.
    out = kcat("-b", mock_cluster.bootstrap, "-C", "-t", "mv", "-p", "0", "-o", "beginning",
               "-e", "-q")
    assert out.split() == ["before"]

    for bad in ["leader mv 3 1", "leader mv 0 4", "leader mv 0 0", "leader mv 0 1x",
                "leader mv -0x1 1", "leader nosuch 0 1", "create bad/name 1", "create t 0",
                "rtt 1 -5", "rtt 9 5", "down 0", "up 4", "coord grp g 1", "leader mv 0",
                "frobnicate", "x" * 600]:
        assert mock_cluster.cmd(bad, check=False).startswith("error"), bad
    # Still in step after the errors (one answer per line, the long one included), and the
    # refused `leader nosuch` did not create the topic as the mock's set_leader would.
    assert mock_cluster.cmd("create made 2") == "ok created made 2"
    assert mock_cluster.cmd("coord group g1 2") == "ok coord"
    assert mock_cluster.cmd("coord txn tx1 3") == "ok coord"
    now = mock_cluster.leaders()
    assert now["made"] == [1, 2] and "nosuch" not in now


@pytest.mark.mock_topics("d:3")
def test_down_closes_and_up_reopens_the_broker_port(mock_cluster):
    addr = mock_cluster.brokers[2]
    assert can_connect(addr)
    assert mock_cluster.cmd("down 2") == "ok down"
    wait_until(lambda: not can_connect(addr), 5, f"broker 2's port {addr} to refuse")
    # The others still serve, and (a limit of the mock) broker 2 stays listed and leading.
    md = metadata(mock_cluster.brokers[1], "d")
    assert leaders(md, "d")[1] == 2
    assert mock_cluster.cmd("up 2") == "ok up"
    # Same port again: the gateway's upstream address for broker 2 stays valid.
    wait_until(lambda: can_connect(addr), 5, f"broker 2's port {addr} to accept again")
    assert mock_cluster.cmd("rtt 2 20") == "ok rtt"


def test_exits_on_sigterm_and_on_stdin_eof(tmp_path):
    for how in ("sigterm", "eof"):
        mc = MockCluster(tmp_path / f"{how}.log", ["s:1"]).start()
        t0 = time.monotonic()
        if how == "sigterm":
            mc.proc.send_signal(signal.SIGTERM)
            rc = mc.proc.wait(timeout=STOP_DEADLINE_S)
            mc.stop()
        else:
            rc = mc.stop()
        assert rc == 0, f"{how}: exit {rc}\n{mc.log_tail()}"
        assert time.monotonic() - t0 < STOP_DEADLINE_S
        wait_until(lambda: not can_connect(mc.brokers[1]), 5, "the ports to close")
