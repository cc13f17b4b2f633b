"""Fixtures for Sluice's interop tests: each test gets its own broker process (ASan+UBSan build by
default) on a free loopback port with a fresh data directory.

Per-test broker settings: @pytest.mark.broker_config({"log.segment.bytes": 16384, ...}).
Per-test time limit: @pytest.mark.timeout_s(N) (default 240 s), enforced with SIGALRM so a hung
client or broker fails the test instead of the whole CI run.
"""
import os
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLUICE_BIN = os.path.abspath(os.environ.get("SLUICE_BIN", str(REPO / "build" / "asan" / "sluice")))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
DEFAULT_TIMEOUT_S = 240
_REPORTED = set()  # broker logs whose sanitizer report went to SLUICE_SANITIZER_LOG
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0


def transient_errors():
    """Exceptions that mean "not yet" (a connection refused or reset, a client timeout, a
    malformed answer from a restarting broker): what `wait_until` retries on by default. An
    AssertionError is never among them: a wrong answer fails at once instead of being polled
    away until a right one happens to come."""
    import kproto
    errs = [OSError, kproto.ProtoError]
    try:
        from confluent_kafka import KafkaException
        errs.append(KafkaException)
    except ImportError:
        pass
    try:
        from kafka.errors import KafkaError
        errs.append(KafkaError)
    except ImportError:
        pass
    return tuple(errs)


def wait_until(pred, timeout, what, interval=0.05, retry_on=None):
    """Polls `pred` until it returns a truthy value (returned) or `timeout` seconds pass (fails).
    `pred` raising one of `retry_on` (default: transient_errors()) counts as "not yet"; any
    other exception, AssertionError included, propagates at once."""
    retry_on = transient_errors() if retry_on is None else tuple(retry_on)
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except AssertionError:
            raise
        except retry_on as e:  # reported below if the deadline passes
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise AssertionError(msg)
        time.sleep(interval)


_HANDED_OUT = set()  # every port free_port() gave this process


def free_port():
    """A port free on 127.0.0.1 now that this process was never given before. Servers get
    their port before they bind it, a gateway and its upstream both before either starts, and
    the kernel may offer a port it just took back again (seen: a gateway given its upstream's
    port failed to listen)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def reserve_port():
    """(socket, port): a free port on 127.0.0.1 held by a bound, never listening socket with
    SO_REUSEADDR. A server that binds with SO_REUSEADDR (sluice's listeners do) listens on it,
    and restarts on it, while the socket is open; meanwhile no other bind gets the port, to port
    0 or to it without SO_REUSEADDR, in any process. So a broker given its port long before it
    starts (TLS material, users and a gateway's upstream are made in between) cannot lose it to
    another worker's broker or client in the meantime, nor between a stop and a start."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    _HANDED_OUT.add(s.getsockname()[1])
    return s, s.getsockname()[1]


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


class Broker:
    """A broker process owned by one test. Its stderr (structured log lines and any sanitizer
    report) goes to `log_path`, appended across restarts."""

    def __init__(self, workdir, overrides=None, binary=None, nofile=None):
        self.binary = binary or SLUICE_BIN
        # The subcommand: "serve", or "gateway" for tests/interop/gateway.py's Gateway.
        self.command = "serve"
        # Environment of the process (None: sanitizer_env()).
        self.env = None
        # With `nofile`, the broker runs with that soft and hard file limit (RLIMIT_NOFILE).
        self.nofile = nofile
        self.workdir = Path(workdir)
        hold, self.port = reserve_port()
        weakref.finalize(self, hold.close)  # the port is this broker's as long as it exists
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"
        self.data_dir = self.workdir / "data"
        # Provisioned keys, the admin's client properties, the SCRAM store, the audit signing key
        # and the local master key: the default sluice.secrets.dir, beside log.dirs.
        self.secrets_dir = self.workdir / "sluice-secrets"
        self.config_path = self.workdir / "server.properties"
        self.log_path = self.workdir / "broker.log"
        self.proc = None
        self.starts = 0
        # Set by stop() and kill9(); a broker dead for any other reason fails the test.
        self.exit_expected = False
        # Exit codes of earlier processes that died unasked before a start() replaced them.
        self.unexpected_exits = []
        self.config = {
            "listeners": f"PLAINTEXT://{self.bootstrap}",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "true",
            "num.partitions": "1",
            # A free port: the default 9404 would collide between brokers of parallel runs.
            "sluice.metrics.listener": "http://127.0.0.1:0",
            # A new group's first rebalance still waits for more members (the delayed join),
            # for 200 ms instead of 3 s: nearly every group a client starts here is new.
            "group.initial.rebalance.delay.ms": "200",
        }
        for k, v in (overrides or {}).items():
            self.config[k] = str(v).lower() if isinstance(v, bool) else str(v)
        self.write_config()

    def write_config(self):
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.config.items()))

    # Lifecycle ------------------------------------------------------------------------------

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        if self.proc is not None and not self.exit_expected:
            self.unexpected_exits.append(self.proc.returncode)
        if not os.access(self.binary, os.X_OK):
            pytest.fail(f"broker binary {self.binary} missing (build it: make asan)")
        self.starts += 1
        self.exit_expected = False
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {self.binary} {self.command} -c "
                      f"{self.config_path}\n"
                      .encode())
            log.flush()
            self.proc = subprocess.Popen([self.binary, self.command, "-c", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self.env or sanitizer_env(), cwd=str(self.workdir),
                                         preexec_fn=self._preexec())
        self.wait_ready()
        return self

    def _preexec(self):
        if self.nofile is None:
            return None
        n = self.nofile

        def limit():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        return limit

    def start_may_fail(self, timeout=START_DEADLINE_S):
        """Starts the broker when refusing to start is an acceptable outcome: returns None once
        it accepts connections, or its exit code if it exits first."""
        try:
            self.start()
            return None
        except AssertionError:
            if self.proc is not None and self.proc.poll() is not None:
                self.exit_expected = True
                return self.proc.returncode
            raise

    def wait_ready(self, timeout=START_DEADLINE_S):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"broker exited with {rc} during startup\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"broker did not accept on {self.bootstrap} within "
                                     f"{timeout}s\n{self.log_tail()}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True):
        """SIGTERM, wait; with `check`, asserts a clean exit (code 0, no sanitizer report)."""
        if self.proc is None:
            return None
        self.exit_expected = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    raise AssertionError(f"broker ignored SIGTERM for {STOP_DEADLINE_S}s "
                                         f"(killed)\n{self.log_tail()}")
        rc = self.proc.returncode
        if check:
            self.assert_no_sanitizer_report()
            assert rc == 0, f"broker exited with {rc} after SIGTERM\n{self.log_tail()}"
        return rc

    def kill9(self):
        assert self.alive(), f"broker not running before kill -9\n{self.log_tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.exit_expected = True
        with open(self.log_path, "ab") as log:
            log.write(b"==== killed with SIGKILL\n")

    def restart(self):
        self.stop()
        return self.start()

    # Logs -----------------------------------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        lines = self.log_text().splitlines()
        return f"--- broker log tail ({self.log_path}) ---\n" + "\n".join(lines[-n:])

    def sanitizer_report(self):
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                # From the report's own first line: the stack is what a CI excerpt must show.
                return text[text.rfind("\n", 0, i) + 1:][:8000]
        return None

    def assert_no_sanitizer_report(self):
        rep = self.sanitizer_report()
        if rep is not None and os.environ.get("SLUICE_SANITIZER_LOG") and \
                str(self.log_path) not in _REPORTED:
            _REPORTED.add(str(self.log_path))
            # tests/run_all.sh prints these last, where a truncated CI log still shows them.
            with open(os.environ["SLUICE_SANITIZER_LOG"], "a") as f:
                f.write(f"--- {self.log_path} ---\n" + "\n".join(rep.splitlines()[:45]) + "\n")
        assert rep is None, f"sanitizer report in broker stderr:\n{rep}"


def finish_broker(b):
    """Teardown shared by every broker fixture: a running broker must stop cleanly on SIGTERM
    (exit 0, no sanitizer report); one that is not running must have been stopped or killed by
    the test itself. A broker that exited on its own - non-zero, by a signal, or even 0 - or
    was replaced by start() after such an exit fails the test, sanitizer output or not."""
    if b.proc is None:
        return
    if b.alive():
        b.stop(check=True)
    else:
        b.assert_no_sanitizer_report()
        if not b.exit_expected:
            pytest.fail(f"broker died during the test ({describe_exit(b.proc.returncode)})\n"
                        f"{b.log_tail()}")
    if b.unexpected_exits:
        pytest.fail("broker died during the test and was started again ("
                    + ", ".join(describe_exit(rc) for rc in b.unexpected_exits)
                    + f")\n{b.log_tail()}")


def describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


@pytest.fixture
def broker(request, tmp_path):
    marker = request.node.get_closest_marker("broker_config")
    overrides = marker.args[0] if marker else {}
    b = Broker(tmp_path, overrides)
    request.node._sluice_broker = b
    b.start()
    yield b
    # Teardown: a clean SIGTERM exit and no sanitizer output, whatever the test did.
    finish_broker(b)


@pytest.fixture
def mock_cluster(request, tmp_path):
    """A librdkafka mock cluster (tests/interop/mockcluster.py), 3 brokers unless
    @pytest.mark.mock_topics(..., brokers=N) says otherwise; topics as "NAME:PARTITIONS"."""
    from mockcluster import MockCluster
    marker = request.node.get_closest_marker("mock_topics")
    topics = marker.args if marker else ()
    brokers = marker.kwargs.get("brokers", 3) if marker else 3
    mc = MockCluster(tmp_path / "mockcluster.log", topics, brokers)
    request.node._sluice_mock_cluster = mc
    mc.start()
    yield mc
    rc = mc.stop()
    assert rc in (0, None), f"sl_mockcluster exited with {rc}\n{mc.log_tail()}"


@pytest.fixture(scope="module")
def gateway(request, tmp_path_factory):
    """A `sluice gateway` (tests/interop/gateway.py) shared by the module's tests: a SASL_SSL
    (SCRAM-SHA-512) client listener with the StandardAuthorizer, in front of either a 3-broker
    mock cluster (@pytest.mark.gateway(upstream="mock", topics=["NAME:PARTITIONS", ...]), the
    default) or a `sluice serve` upstream with SASL_SSL + SCRAM (upstream="serve"). Extra
    gateway keys: config={...}; extra upstream keys (serve): upstream_config={...}."""
    import gateway as gwmod
    marker = request.node.get_closest_marker("gateway")
    kw = dict(marker.kwargs) if marker else {}
    g = gwmod.start_gateway(tmp_path_factory.mktemp("gateway"), **kw)
    request.module._sluice_logs = getattr(request.module, "_sluice_logs", []) + g.logged()
    try:
        yield g
    finally:
        g.finish()


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_config(dict): server.properties overrides")
    config.addinivalue_line("markers", "mock_topics(*'NAME:PARTITIONS', brokers=3): "
                            "the mock_cluster fixture's topics")
    config.addinivalue_line("markers", "timeout_s(n): per-test time limit in seconds")
    config.addinivalue_line("markers", "gateway(upstream='mock'|'serve', topics=[...], config={}, "
                            "upstream_config={}): the module-scoped gateway fixture")


class _TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("timeout_s")
    limit = int(m.args[0]) if m else DEFAULT_TIMEOUT_S

    def on_alarm(_sig, _frame):
        raise _TestTimeout(f"test exceeded its {limit}s limit")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    b = getattr(item, "_sluice_broker", None)
    if b is not None and rep.failed:
        rep.sections.append(("broker stderr (tail)", b.log_tail(80)))
    mc = getattr(item, "_sluice_mock_cluster", None)
    if mc is not None and rep.failed:
        rep.sections.append(("sl_mockcluster stderr (tail)", mc.log_tail(80)))
    # Module-scoped processes (the gateway fixture): (name, object with log_tail()).
    mod = getattr(item, "module", None)
    if rep.failed and rep.when == "call":
        for name, proc in getattr(mod, "_sluice_logs", ()):
            rep.sections.append((f"{name} (tail)", proc.log_tail(80)))


# ---- two workers (pytest-xdist; tests/run_all.sh: -n INTEROP_WORKERS) -------------------------
# Every test has its own broker, data directory (tmp_path) and free-picked ports, so most tests
# may run on either worker, side by side with any other. A few may not be split up:
#  - a module whose tests share a module- or session-scoped fixture (a gateway and its upstream,
#    the field protection environment, the sarama build): all its tests go to one worker, so the
#    fixture is set up once;
#  - brokers that take the default metrics port 127.0.0.1:9404 (the secure-default fixtures of
#    test_attacker.py and test_secure_default.py write their configuration from scratch, as a
#    user would) and test_metrics.py, whose test holds that port to see a broker do without it:
#    one worker, one after the other.
# pytest_collection_modifyitems checks that no other module has a shared fixture.
SERIAL_GROUPS = {
    "test_gateway.py": "test_gateway.py",
    "test_field_protection.py": "test_field_protection.py",
    "test_alert_rules.py": "test_alert_rules.py",
    "test_sarama.py": "test_sarama.py",
    "test_metrics.py": "metrics-port-9404",
    "test_attacker.py": "metrics-port-9404",
    "test_secure_default.py": "metrics-port-9404",
}


def _serial_group(nodeid):
    return SERIAL_GROUPS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])


def _own_fixture(fixturedef):
    """A fixture defined in tests/interop (not one of pytest's, such as tmp_path_factory)."""
    import inspect
    here = Path(__file__).resolve().parent
    try:
        return Path(inspect.getfile(fixturedef.func)).resolve().parent == here
    except TypeError:
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = [name for name, defs in item._fixtureinfo.name2fixturedefs.items()
                  if defs and defs[-1].scope != "function" and _own_fixture(defs[-1])]
        if shared and _serial_group(item.nodeid) is None:
            # Failed at setup (pytest_runtest_setup), where a worker's message reaches the report.
            item._sluice_unsplittable = (
                f"uses the shared fixture(s) {shared}: add its module to SERIAL_GROUPS in "
                "tests/interop/conftest.py, or two workers would each set them up")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The serial groups are the longest units: start them first, so that the workers end
        # together instead of one running a long group alone at the end. (Stable: both workers
        # must collect the same order.)
        items.sort(key=lambda it: _serial_group(it.nodeid) is None)


def pytest_runtest_setup(item):
    msg = getattr(item, "_sluice_unsplittable", None)
    if msg:
        pytest.fail(msg)


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist, pytest runs everything in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class _SluiceScheduling(LoadScopeScheduling):
        """One test per work unit, except the SERIAL_GROUPS (one unit each). Unlike --dist
        loadgroup, the node ids stay as they are (the skip allow-list names them)."""

        def _split_scope(self, nodeid):
            return _serial_group(nodeid) or nodeid

    def pytest_xdist_make_scheduler(config, log):
        return _SluiceScheduling(config, log)


# ---- skip report for tests/run_all.sh --------------------------------------------------------
# With SLUICE_SKIP_REPORT set, every skipped or xfailed test (and every module skipped at
# collection) is appended there as "node id<TAB>kind<TAB>reason", so that CI can refuse skips
# that tests/skip-allowlist.txt does not list.

def _note_skip(report):
    path = os.environ.get("SLUICE_SKIP_REPORT")
    # Under pytest-xdist the controller receives every worker's reports (collection skips
    # included) and writes them; a worker writing too would only repeat them.
    if not path or not report.skipped or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if hasattr(report, "wasxfail"):
        kind, reason = "xfailed", str(report.wasxfail)
    else:
        kind = "skipped"
        lr = report.longrepr
        reason = str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    reason = reason.replace("\t", " ").replace("\n", " ")
    with open(path, "a") as f:
        f.write(f"{report.nodeid}\t{kind}\t{reason}\n")


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)
