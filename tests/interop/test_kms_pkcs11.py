"""Encryption at rest with sluice.kms.provider=pkcs11 against a SoftHSM2 token the test creates
(docs/kms-pkcs11.md): records produced with confluent-kafka are not in clear on disk, the only
keys on the token are sensitive, non-extractable secret keys (the KEK versions; topic keys live
wrapped in the keyring), and after a restart every record reads back intact. A second test takes
the token away while the broker is down: the start is refused with the reason (the topic registry
is sealed under the system key), and with the token back everything reads. (An outage while the
broker runs, and recovery without a restart, is tests/unit/test_kms_pkcs11.c's: it needs
`p11-kit server` in front of the token, which does not forward the wrapping mechanisms.)"""
import os
import subprocess
from pathlib import Path

import pytest

import helpers as h
from conftest import Broker, finish_broker

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321"
TOPIC = "p11-topic"
MARKER = "P11MARKERq7z"


class Token:
    """A SoftHSM2 token in its own directory; SOFTHSM2_CONF (read by the module at C_Initialize)
    is set in this process's environment, which the broker inherits."""

    def __init__(self, root, label, monkeypatch):
        self.root = Path(root)
        self.label = label
        self.tokendir = self.root / "tokens"
        self.tokendir.mkdir(parents=True)
        self.conf = self.root / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.tokendir}\n"
                             "objectstore.backend = file\nlog.level = ERROR\n")
        self.pin_file = self.root / "pin"
        self.pin_file.write_text(PIN + "\n")
        os.chmod(self.pin_file, 0o600)
        monkeypatch.setenv("SOFTHSM2_CONF", str(self.conf))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", "0000", "--pin", PIN], check=True, capture_output=True,
                       timeout=60)

    def config(self):
        return {"sluice.kms.provider": "pkcs11",
                "sluice.kms.pkcs11.module": SOFTHSM,
                "sluice.kms.pkcs11.token.label": self.label,
                "sluice.kms.pkcs11.pin.file": str(self.pin_file),
                "sluice.kms.pkcs11.key.label": "p11-test-kek"}

    def secret_keys(self):
        """[(extractable, sensitive)] of every secret key object on the token, read from the
        token's files with softhsm2-dump-file (the attributes checked here are stored in
        clear; the key values are not)."""
        out = []
        for f in sorted(self.tokendir.glob("*/*.object")):
            if f.name == "token.object":
                continue
            r = subprocess.run(["softhsm2-dump-file", str(f)], capture_output=True, text=True,
                               timeout=30)
            lines = r.stdout.splitlines()

            def attr(name):
                for i, line in enumerate(lines):
                    if line.endswith(" " + name) and i + 2 < len(lines):
                        return lines[i + 2].split()[-1]
                return None
            if attr("CKA_CLASS") == "CKO_SECRET_KEY":
                out.append((attr("CKA_EXTRACTABLE"), attr("CKA_SENSITIVE")))
        return out


def files_containing(root, needle):
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                with open(p, "rb") as f:
                    if needle in f.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


def start_broker(request, tmp_path, tok):
    b = Broker(tmp_path / "broker", tok.config())
    request.node._sluice_broker = b
    return b


@pytest.fixture
def token(tmp_path, monkeypatch):
    return Token(tmp_path / "hsm", "sluice-interop", monkeypatch)


@pytest.mark.timeout_s(300)
def test_pkcs11_produce_restart_consume(request, tmp_path, token):
    (tmp_path / "broker").mkdir()
    b = start_broker(request, tmp_path, token)
    try:
        b.start()
        h.ck_create_topic(b.bootstrap, TOPIC, 3)
        records = h.make_records(MARKER, 600)
        expected = h.expected_from_acks(h.ck_produce(b.bootstrap, TOPIC, records, "none"),
                                        "before restart")
        keys = token.secret_keys()
        assert keys, "no key-encryption key was created on the token"
        assert all(k == ("FALSE", "TRUE") for k in keys), \
            f"a secret key on the token is extractable or not sensitive: {keys}"
        hits = files_containing(b.data_dir, MARKER.encode())
        assert not hits, f"record bytes in clear on disk with the pkcs11 provider: {hits}"

        b.restart()
        got = h.ck_consume(b.bootstrap, TOPIC, {p: len(v) for p, v in expected.items()})
        h.verify(expected, got, "after restart with the pkcs11 provider")
        assert not files_containing(b.data_dir, MARKER.encode())
    finally:
        finish_broker(b)


@pytest.mark.timeout_s(300)
def test_pkcs11_token_missing_at_start_then_back(request, tmp_path, token):
    (tmp_path / "broker").mkdir()
    b = start_broker(request, tmp_path, token)
    try:
        b.start()
        h.ck_create_topic(b.bootstrap, TOPIC, 1)
        records = h.make_records(MARKER, 200, partitions=1)
        expected = h.expected_from_acks(h.ck_produce(b.bootstrap, TOPIC, records, "none"),
                                        "before the outage")
        b.stop()

        # The HSM is gone (SoftHSM finds no token in an empty token directory). The topic
        # registry is sealed under the system key, which only the token can unwrap: the start
        # is refused, saying why, rather than serving a broker that knows no topics.
        hidden = token.root / "tokens-away"
        token.tokendir.rename(hidden)
        token.tokendir.mkdir()
        rc = b.start_may_fail()
        assert rc is not None and rc != 0, "broker started without its keys"
        b.assert_no_sanitizer_report()
        tail = b.log_text()[-4000:]
        assert "key management service unreachable" in tail, b.log_tail()

        # The token is back: the broker starts and every record reads, nothing lost or in clear.
        token.tokendir.rmdir()
        hidden.rename(token.tokendir)
        b.start()
        got = h.ck_consume(b.bootstrap, TOPIC, {0: len(expected[0])})
        h.verify(expected, got, "after the token came back")
        assert not files_containing(b.data_dir, MARKER.encode())
    finally:
        finish_broker(b)
