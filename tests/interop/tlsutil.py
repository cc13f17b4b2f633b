"""Test PKI for the TLS interop tests: CAs, server and client certificates as PEM files, made with
python3-cryptography (Debian: python3-cryptography). Keys are ECDSA P-256 unless asked for RSA;
every private key file is written 0600."""
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ATTRS = {"CN": NameOID.COMMON_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
          "O": NameOID.ORGANIZATION_NAME, "L": NameOID.LOCALITY_NAME,
          "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME}


def _name(subject):
    """`subject` in RFC 2253 order (most specific first, "CN=a,OU=b,O=c"); the certificate holds
    the reverse, as X.500 does, so the broker prints it back unchanged."""
    rdns = []
    for part in subject.split(","):
        k, v = part.split("=", 1)
        rdns.append(x509.NameAttribute(_ATTRS[k.strip()], v.strip()))
    return x509.Name(list(reversed(rdns)))


def _key(kind):
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(
        ec.SECP256R1())


def _write(path, data, private=False):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # a reader (the broker's reload) sees the old or the new file, whole
    return path


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key, password=None):
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


class CA:
    def __init__(self, subject="CN=Test CA,O=Sluice Tests", kind="ec"):
        self.key = _key(kind)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = _name(subject)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), True)
                     .sign(self.key, hashes.SHA256()))

    def write(self, path):
        return _write(path, pem_cert(self.cert))

    def issue(self, subject, server=False, days=30, expired=False, kind="ec", serial=None):
        """A leaf certificate and its key. `expired`: valid only in the past."""
        key = _key(kind)
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            nb, na = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            nb, na = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
        b = (x509.CertificateBuilder().subject_name(_name(subject))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(serial or x509.random_serial_number())
             .not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False)
        return b.sign(self.key, hashes.SHA256()), key


def write_keystore(path, cert, key, chain=(), password=None):
    """A Kafka-style PEM keystore: the certificate, its chain, then the (PKCS#8) key."""
    data = pem_cert(cert) + b"".join(pem_cert(c) for c in chain) + pem_key(key, password)
    return _write(path, data, private=True)


def write_cert_and_key(dirpath, stem, cert, key):
    """Separate files, as kcat/librdkafka, kafka-python and Node want them for client certs."""
    d = Path(dirpath)
    return (_write(d / f"{stem}.crt", pem_cert(cert)),
            _write(d / f"{stem}.key", pem_key(key), private=True))


def serial_of_der(der):
    return x509.load_der_x509_certificate(der).serial_number
