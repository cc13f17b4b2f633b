"""`sluice gateway` for the interop tests (issue 14, docs/gateway.md): a gateway process with a
SASL_SSL (SCRAM-SHA-512) client listener and the StandardAuthorizer, in front of either

  - "mock":  tests/tools/sl_mockcluster, a 3-broker librdkafka mock (PLAINTEXT, old protocol
             versions only, partitions led round-robin by brokers 1, 2, 3), or
  - "serve": a `sluice serve` started with the Broker fixture's SASL_SSL + SCRAM set-up, where
             the gateway logs in with its own SCRAM user ("gateway", a super user upstream).

Clients only ever get the gateway's addresses: the bootstrap listener, and node n at
127.0.0.1:base + (n - 1) (sluice.gateway.node.id.min = 1, three node ports, base picked free).
Also here: the SASL_SSL set-up shared with test_acl.py (sasl_ssl_setup) and client settings
for the gateway (confluent-kafka, kafka-python, kcat, the node scripts)."""
import os
import random
import re
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from conftest import START_DEADLINE_S, Broker, finish_broker, wait_until

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
MECHANISM = "SCRAM-SHA-512"
# Client users of the gateway (SCRAM in the gateway's own credential store). admin is a super
# user; the others get what each test grants them. admin's password is test_acl.USERS' so that
# test_acl.create_acls works against a gateway too.
USERS = {"admin": "admin-pw-1", "alice": "alice-pw-1", "writer": "writer-pw-1",
         "reader": "reader-pw-1", "mallory": "mallory-pw-1"}
# The gateway's own identity at a `sluice serve` upstream.
UPSTREAM_USER, UPSTREAM_PASSWORD = "gateway", "gateway-upstream-pw-1"
NODE_ID_MIN = 1
NODES = 3


# ---- SASL_SSL + SCRAM set-up (shared with test_acl.start_acl_broker) ------------------------------

def sasl_ssl_setup(b, pki_dir, users):
    """Makes the not yet started Broker `b` (serve or gateway) a SASL_SSL-only server: a CA of
    the test's own (PEM in `b.ca_pem`), a server certificate for localhost/127.0.0.1, and `users`
    (name: password, SCRAM) in its credential store (`b.users`)."""
    import tlsutil
    from test_sasl import add_user
    d = Path(pki_dir)
    d.mkdir(parents=True, exist_ok=True)
    ca = tlsutil.CA()
    ca.write(d / "ca.pem")
    cert, key = ca.issue("CN=localhost,O=Sluice Tests", server=True)
    tlsutil.write_keystore(d / "broker.pem", cert, key, [ca.cert])
    b.config["ssl.keystore.location"] = str(d / "broker.pem")
    b.config["listeners"] = f"SASL_SSL://{b.bootstrap}"
    b.write_config()
    b.data_dir.mkdir(parents=True, exist_ok=True)
    for u, pw in users.items():
        add_user(b, u, pw)
    b.ca_pem = d / "ca.pem"
    b.users = dict(users)
    return b


# ---- ports and health ----------------------------------------------------------------------------

def free_port_range(n, avoid=()):
    """A base port with base..base+n-1 all free on 127.0.0.1, below Linux's ephemeral range (so
    no client's outgoing port takes one before the gateway binds it)."""
    for _ in range(500):
        base = random.randrange(20000, 32000 - n)
        if any(p in avoid for p in range(base, base + n)):
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no {n} consecutive free ports")


def metrics_url(b, timeout=30):
    """The metrics endpoint's base URL, from the "listening" line (the port is free-picked)."""
    def find():
        m = re.findall(r'sub=metrics msg="listening" url=(\S+)', b.log_text())
        return m[-1] if m else None
    return wait_until(find, timeout, "the metrics endpoint's listening line")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def http_text(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


# ---- the gateway ---------------------------------------------------------------------------------

class Gateway(Broker):
    """`sluice gateway -c FILE`: a Broker (same lifecycle, log and teardown checks) run with the
    gateway subcommand. Ready once the client listener accepts and /readyz answers 200."""

    def __init__(self, workdir, overrides=None):
        super().__init__(workdir, overrides)
        self.command = "gateway"
        self.mock = None      # MockCluster, upstream "mock"
        self.upstream = None  # Broker, upstream "serve"
        self.node_base = None
        self.external = None  # upstream "external": its bootstrap
        self.ready_timeout = START_DEADLINE_S

    def wait_ready(self, timeout=None):
        timeout = self.ready_timeout if timeout is None else timeout
        super().wait_ready(timeout)
        url = None

        def ready():
            nonlocal url
            rc = self.proc.poll()
            assert rc is None, f"gateway exited with {rc} during startup\n{self.log_tail()}"
            url = url or metrics_url(self, timeout)
            return http_status(url + "/readyz") == 200
        wait_until(ready, timeout, f"the gateway's /readyz\n{self.log_tail()}")

    def readyz(self):
        return http_status(metrics_url(self) + "/readyz")

    def metrics(self):
        return http_text(metrics_url(self) + "/metrics")

    @property
    def node_ports(self):
        """{node id: gateway port} as configured (port mode)."""
        return {NODE_ID_MIN + i: self.node_base + i for i in range(NODES)}

    @property
    def gateway_ports(self):
        return {self.port, *self.node_ports.values()}

    @property
    def upstream_addrs(self):
        """Every upstream broker address ("host:port"): what no client may ever connect to."""
        if self.mock is not None:
            return set(self.mock.brokers.values())
        if self.external is not None:
            return {self.external}
        return {self.upstream.bootstrap}

    @property
    def upstream_ports(self):
        return {int(a.rsplit(":", 1)[1]) for a in self.upstream_addrs}

    def upstream_pids(self):
        """Processes allowed to connect to upstream ports: the gateway, and the mock itself (its
        own Metadata client)."""
        pids = {self.proc.pid}
        if self.mock is not None:
            pids.add(self.mock.proc.pid)
        return pids

    def logged(self):
        out = [("gateway stderr", self)]
        if self.mock is not None:
            out.append(("sl_mockcluster stderr", self.mock))
        if self.upstream is not None:
            out.append(("upstream broker stderr", self.upstream))
        return out

    def finish(self):
        """Teardown: the gateway and the upstream stop cleanly (each checked even if another
        failed)."""
        errors = []
        for fn in (lambda: finish_broker(self),
                   lambda: self._finish_mock(),
                   lambda: self.upstream is not None and finish_broker(self.upstream)):
            try:
                fn()
            except BaseException as e:  # pytest.fail raises a BaseException subclass
                errors.append(e)
        if errors:
            raise errors[0]

    def _finish_mock(self):
        if self.mock is not None:
            rc = self.mock.stop()
            assert rc in (0, None), f"sl_mockcluster exited with {rc}\n{self.mock.log_tail()}"


def start_gateway(workdir, upstream="mock", topics=(), config=None, upstream_config=None,
                  users=None, env=None, ready_timeout=START_DEADLINE_S, upstream_users=None):
    """Starts the upstream ("mock" with `topics` as "NAME:PARTITIONS", or "serve") and a gateway
    in front of it; returns the started Gateway (.mock or .upstream set). upstream="external":
    the test runs the upstream; `upstream_config` holds every sluice.gateway.upstream.* key.
    `env`: extra environment of the gateway process. `upstream_users` ("serve"): more SCRAM
    users of the upstream (name: password) besides admin and the gateway's own."""
    workdir = Path(workdir)
    users = dict(USERS if users is None else users)
    (workdir / "gw").mkdir(parents=True, exist_ok=True)
    (workdir / "upstream").mkdir(parents=True, exist_ok=True)
    g = Gateway(workdir / "gw", {
        "authorizer.class.name": STANDARD, "super.users": "User:admin",
        # One audit event per request, so tests can count what the gateway saw.
        "sluice.audit.data.interval.ms": "0",
        "sluice.gateway.advertised.host": "127.0.0.1",
        "sluice.gateway.node.id.min": str(NODE_ID_MIN),
        "sluice.gateway.node.port.count": str(NODES),
        # Leader moves in the mock are followed quickly even without client Metadata.
        "sluice.gateway.metadata.refresh.ms": "1000",
        "sluice.gateway.upstream.connect.timeout.ms": "5000",
    })
    try:
        if upstream == "mock":
            from mockcluster import MockCluster
            g.mock = MockCluster(workdir / "mockcluster.log", topics, NODES).start()
            assert sorted(g.mock.brokers) == list(range(NODE_ID_MIN, NODE_ID_MIN + NODES))
            up = {"sluice.gateway.upstream.bootstrap.servers": g.mock.bootstrap,
                  "sluice.gateway.upstream.security.protocol": "PLAINTEXT"}
        elif upstream == "serve":
            assert not topics, "serve upstream: topics are created through the gateway"
            ub = Broker(workdir / "upstream", {
                "authorizer.class.name": STANDARD,
                "super.users": f"User:admin;User:{UPSTREAM_USER}",
                "node.id": str(NODE_ID_MIN), **(upstream_config or {})})
            sasl_ssl_setup(ub, ub.workdir / "pki", {"admin": USERS["admin"],
                                                      UPSTREAM_USER: UPSTREAM_PASSWORD,
                                                      **(upstream_users or {})})
            g.upstream = ub
            ub.start()
            pw = g.workdir / "upstream-password"
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(UPSTREAM_PASSWORD + "\n")
            up = {"sluice.gateway.upstream.bootstrap.servers": ub.bootstrap,
                  "sluice.gateway.upstream.security.protocol": "SASL_SSL",
                  "sluice.gateway.upstream.ssl.ca.location": str(ub.ca_pem),
                  "sluice.gateway.upstream.sasl.mechanism": MECHANISM,
                  "sluice.gateway.upstream.sasl.username": UPSTREAM_USER,
                  "sluice.gateway.upstream.sasl.password.file": str(pw)}
        elif upstream == "external":
            up = dict(upstream_config)
            g.external = up["sluice.gateway.upstream.bootstrap.servers"]
        else:
            raise AssertionError(f"unknown upstream {upstream!r}")
        if env:
            from conftest import sanitizer_env
            g.env = {**sanitizer_env(), **env}
        g.ready_timeout = ready_timeout
        g.node_base = free_port_range(NODES, avoid={g.port})
        g.config.update(up)
        g.config["sluice.gateway.node.port.base"] = str(g.node_base)
        for k, v in (config or {}).items():
            g.config[k] = str(v).lower() if isinstance(v, bool) else str(v)
        sasl_ssl_setup(g, g.workdir / "pki", users)
        g.start()
    except BaseException:
        try:
            g.finish()
        except BaseException:
            pass  # the start failure is the one to report
        raise
    return g


# ---- client settings for the gateway -------------------------------------------------------------

def ck_conf(g, user="alice", **extra):
    """confluent-kafka (librdkafka) settings: SASL_SSL + SCRAM-SHA-512 to the gateway."""
    return {"bootstrap.servers": g.bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(g.ca_pem), "sasl.mechanisms": MECHANISM,
            "sasl.username": user, "sasl.password": g.users[user], **extra}


def kp_kw(g, user="alice", **extra):
    """kafka-python keyword arguments for the gateway."""
    return dict(bootstrap_servers=g.bootstrap, security_protocol="SASL_SSL",
                ssl_cafile=str(g.ca_pem), ssl_check_hostname=False, sasl_mechanism=MECHANISM,
                sasl_plain_username=user, sasl_plain_password=g.users[user],
                request_timeout_ms=30000, api_version_auto_timeout_ms=10000, **extra)


def kcat_args(g, user="alice"):
    """kcat arguments for the gateway; the password goes in a 0600 -F file, never argv."""
    path = g.workdir / f"kcat-{user}.properties"
    if not path.exists():
        conf = ck_conf(g, user)
        conf.pop("bootstrap.servers")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in conf.items()))
    return ["-b", g.bootstrap, "-F", str(path)]


def node_env(g, user="alice", **extra):
    """Environment for the node scripts (common.mjs: connOptions)."""
    return {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1",
            "SLUICE_SASL_MECHANISM": MECHANISM, "SLUICE_SASL_USERNAME": user,
            "SASL_PASSWORD": g.users[user], "SASL_SSL_CA": str(g.ca_pem), **extra}


# ---- "no client ever connects to an upstream address" --------------------------------------------

_SS_PROC = re.compile(r'\("([^"]*)",pid=(\d+),')


def _upstream_sockets(g):
    """[(state, local, peer, [(name, pid)...])] of TCP sockets toward an upstream port."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, timeout=10).stdout
    ports, found = g.upstream_ports, []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] == "LISTEN":
            continue
        host, _, port = f[4].rpartition(":")
        if not port.isdigit() or int(port) not in ports or not host.endswith("127.0.0.1"):
            continue
        found.append((f[0], f[3], f[4], [(n, int(p)) for n, p in _SS_PROC.findall(line)]))
    return found


def foreign_upstream_connections(g):
    """TCP connections (any state but LISTEN) toward an upstream port whose owner is neither the
    gateway nor the mock: ["proc(pid) local -> peer state", ...]. Empty is the good answer.
    ss maps sockets to processes by scanning /proc after listing the sockets, so a socket opened
    or closed meanwhile shows no owner: those are looked at once more, and judged only if they
    then have one (a client's connection to a broker lives far longer than that)."""
    allowed, bad = g.upstream_pids(), []
    first = _upstream_sockets(g)
    unowned = {local for state, local, _, owners in first if not owners}
    again = {local: owners for _, local, _, owners in _upstream_sockets(g) if local in unowned} \
        if unowned else {}
    for state, local, peer, owners in first:
        if not owners:
            owners = again.get(local, [])
        for name, pid in owners:
            if pid not in allowed:
                bad.append(f"{name}({pid}) {local} -> {peer} {state}")
    return bad
