"""Secure by default: a broker whose only listener is SASL_SSL and which was given no TLS
material and no users makes them on first start, and the client configuration it writes works
as is. (The README's `sluice serve` is this with port 9092; here the port is free-picked.)"""
import os
import time
import stat
import subprocess

import pytest

import kproto as kp



@pytest.fixture
def secure(broker):
    broker.stop()
    broker.config = {"listeners": f"SASL_SSL://{broker.bootstrap}",
                     "log.dirs": str(broker.data_dir)}
    broker.write_config()
    broker.start()
    return broker


def props(path):
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_first_start_creates_private_material_and_client_config(secure):
    d = secure.secrets_dir
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    secrets = ("ca-key.pem", "broker.pem", "client.properties", "client-java.properties",
               "sluice-users", "sluice-audit-key.pem", "sluice-master.key")
    for name in secrets:
        mode = stat.S_IMODE(os.stat(d / name).st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    # None of them is in the data directory: a copy or backup of log.dirs holds no secret.
    for name in secrets:
        assert not list(secure.data_dir.rglob(name)), f"{name} is in the data directory"
    assert (d / "ca.pem").exists()
    p = props(d / "client.properties")
    assert p["security.protocol"] == "SASL_SSL" and p["sasl.mechanism"] == "SCRAM-SHA-512"
    assert p["bootstrap.servers"] == secure.bootstrap
    assert os.path.isabs(p["ssl.ca.location"])
    assert len(p["sasl.password"]) >= 32
    log = secure.log_path.read_text()
    assert p["sasl.password"] not in log, "the generated password reached the log"
    assert "kcat -F" in log


def test_generated_client_config_works_with_kcat_and_librdkafka(secure):
    cfgfile = secure.secrets_dir / "client.properties"
    r = subprocess.run(["kcat", "-F", str(cfgfile), "-P", "-t", "secured", "-k", "k"],
                       input=b"hello over SASL_SSL\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-F", str(cfgfile), "-C", "-t", "secured", "-o", "beginning",
                        "-e", "-f", "%k=%s\n"], capture_output=True, timeout=60)
    assert r.returncode == 0 and b"k=hello over SASL_SSL" in r.stdout, r.stderr
    from confluent_kafka import Consumer, TopicPartition
    conf = props(cfgfile)
    conf.update({"group.id": "g", "enable.auto.commit": False})
    c = Consumer(conf)
    try:
        c.assign([TopicPartition("secured", 0, 0)])
        m = c.poll(30)
        assert m is not None and not m.error() and m.value() == b"hello over SASL_SSL"
    finally:
        c.close()


def test_plaintext_and_wrong_password_are_refused(secure):
    with kp.Conn(secure.bootstrap) as c:
        c.send_request(kp.API_VERSIONS, 0, b"")
        assert c.closed_by_peer(), "plaintext Kafka bytes were answered on the SASL_SSL port"
    conf = props(secure.secrets_dir / "client.properties")
    conf["sasl.password"] = "not-the-password"
    conf["error_cb"] = lambda e: None
    from confluent_kafka.admin import AdminClient
    a = AdminClient(conf)
    md = None
    try:
        md = a.list_topics(timeout=5)
    except Exception:  # noqa: BLE001 - the expected outcome
        pass
    assert md is None, "a wrong password was accepted"


def test_restart_keeps_material_and_admin(secure):
    d = secure.secrets_dir
    ca = (d / "ca.pem").read_bytes()
    pw = props(d / "client.properties")["sasl.password"]
    secure.stop()
    secure.start()
    assert (d / "ca.pem").read_bytes() == ca, "the CA was regenerated"
    assert props(d / "client.properties")["sasl.password"] == pw
    r = subprocess.run(["kcat", "-F", str(d / "client.properties"), "-L"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0 and b"1 brokers" in r.stdout, r.stderr


def test_secrets_an_older_version_kept_in_the_data_directory_are_still_used(secure):
    """Before sluice.secrets.dir, provisioned files lived in log.dirs: an upgraded broker keeps
    using them (same CA, same admin password) instead of provisioning new ones."""
    secure.stop()
    for name in ("ca.pem", "ca-key.pem", "broker.pem", "client.properties",
                 "client-java.properties", "sluice-users", "sluice-provisioned-admin",
                 "sluice-audit-key.pem", "sluice-audit-key.pem.pub"):
        os.rename(secure.secrets_dir / name, secure.data_dir / name)
    # As the older version wrote it: the CA path points into the data directory.
    cp = secure.data_dir / "client.properties"
    cp.write_text(cp.read_text().replace(str(secure.secrets_dir), str(secure.data_dir)))
    ca = (secure.data_dir / "ca.pem").read_bytes()
    secure.start()
    assert (secure.data_dir / "ca.pem").read_bytes() == ca
    assert not (secure.secrets_dir / "broker.pem").exists(), "a second CA was provisioned"
    assert not (secure.secrets_dir / "client.properties").exists(), "a second admin was made"
    r = subprocess.run(["kcat", "-F", str(secure.data_dir / "client.properties"), "-L"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and b"1 brokers" in r.stdout, r.stderr


def test_provisioned_broker_denies_by_default_and_grants_with_sluice_acl(secure):
    """The generated admin is a super user; another user can log in but may do nothing until
    `sluice acl add` grants it, as the quickstart output says."""
    from confluent_kafka import Producer
    from conftest import SLUICE_BIN
    d = secure.secrets_dir
    r = subprocess.run([SLUICE_BIN, "user", "add", "app", "--store",
                        str(secure.secrets_dir / "sluice-users"),
                        "--password-stdin"], input=b"app-secret\n", capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    conf = props(d / "client.properties")
    conf.update({"sasl.username": "app", "sasl.password": "app-secret",
                 "message.timeout.ms": 5000, "error_cb": lambda e: None})

    def produce_once():
        res = []
        p = Producer(dict(conf))  # confluent-kafka 1.7 consumes the callbacks of the dict it is given
        p.produce("payments", b"card", on_delivery=lambda e, m: res.append(e))
        p.flush(20)
        return res

    admin = Producer(props(d / "client.properties"))  # super user: may create the topic
    admin.produce("payments", b"seed")
    assert admin.flush(20) == 0
    res = produce_once()
    assert res and res[0] is not None and res[0].code() == 29, f"app wrote without an ACL: {res}"
    r = subprocess.run([SLUICE_BIN, "acl", "add", "--store", str(secure.data_dir / "sluice-acls"),
                        "--allow-principal", "User:app", "--operation", "Write",
                        "--operation", "Describe", "--topic", "payments"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while True:  # the broker picks the ACL file change up within a second
        res = produce_once()
        # (KafkaError cannot be compared with None: check identity.)
        if (len(res) == 1 and res[0] is None) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(res) == 1 and res[0] is None, f"app still refused after the grant: {res}"
    assert "sluice acl add --allow-principal User:app" in secure.log_path.read_text()
