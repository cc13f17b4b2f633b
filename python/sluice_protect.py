"""Sluice field protection for Python producers and consumers (libsluice through ctypes).

    from sluice_protect import Protector
    p = Protector("/etc/sluice/server.properties", policy="/etc/sluice/policy.txt")
    key, value, headers = p.protect("payments", value, key=key, headers=headers)
    producer.produce("payments", value, key=key, headers=headers)

The same policy file, keys, ciphertext and token formats as the broker (docs/field-protection.md,
"Library"): a record protected here passes the broker unchanged and is revealed by it to granted
principals; a broker-protected record is revealed here. `properties` is a broker-style
properties file giving the keys (sluice.kms.*, log.dirs, sluice.secrets.dir); None when the
policy only masks and redacts.

Headers are a list of (str, bytes | None) pairs, as confluent-kafka and kafka-python use. Keys
and values are bytes (str is encoded as UTF-8) or None. A Protector is used by one thread at a
time: open one per thread.

The library is $SLUICE_LIB, else build/release/libsluice.so of the repository this file is in.
No compilation: ctypes only.
"""

import ctypes
import os
import threading

__all__ = ["Protector", "SluiceError"]

SLUICE_OK = 0
SLUICE_EINVAL = -1
SLUICE_ECONFIG = -2
SLUICE_EUNPROTECTABLE = -3
SLUICE_EKEY = -4
SLUICE_ENOMEM = -5
SLUICE_EIO = -6

_NAMES = {
    SLUICE_EINVAL: "EINVAL",
    SLUICE_ECONFIG: "ECONFIG",
    SLUICE_EUNPROTECTABLE: "EUNPROTECTABLE",
    SLUICE_EKEY: "EKEY",
    SLUICE_ENOMEM: "ENOMEM",
    SLUICE_EIO: "EIO",
}

_ERRLEN = 1024


class SluiceError(Exception):
    """A libsluice failure: `code` is one of the SLUICE_E* constants (negative), `message` the
    library's one-line reason (never record data or key material)."""

    def __init__(self, code, message):
        self.code = code
        self.message = message
        super().__init__("%s: %s" % (_NAMES.get(code, str(code)), message))


class _Header(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_void_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_size_t),
    ]


class _Record(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_void_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_size_t),
        ("headers", ctypes.POINTER(_Header)),
        ("nheaders", ctypes.c_size_t),
    ]


_lib = None
_lib_lock = threading.Lock()


def _library_path():
    env = os.environ.get("SLUICE_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(here), "build", "release", "libsluice.so")


def _load():
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        lib = ctypes.CDLL(_library_path())
        P = ctypes.c_void_p
        rec_p = ctypes.POINTER(_Record)
        lib.sluice_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(P),
                                    ctypes.c_char_p, ctypes.c_size_t]
        lib.sluice_open.restype = ctypes.c_int
        lib.sluice_close.argtypes = [P]
        lib.sluice_close.restype = None
        for name in ("sluice_protect", "sluice_reveal"):
            f = getattr(lib, name)
            f.argtypes = [P, ctypes.c_char_p, rec_p, rec_p, ctypes.c_char_p, ctypes.c_size_t]
            f.restype = ctypes.c_int
        for name in ("sluice_protect_value", "sluice_reveal_value"):
            f = getattr(lib, name)
            f.argtypes = [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                          ctypes.POINTER(P), ctypes.POINTER(ctypes.c_size_t),
                          ctypes.c_char_p, ctypes.c_size_t]
            f.restype = ctypes.c_int
        lib.sluice_record_free.argtypes = [rec_p]
        lib.sluice_record_free.restype = None
        lib.sluice_free.argtypes = [P]
        lib.sluice_free.restype = None
        lib.sluice_version.argtypes = []
        lib.sluice_version.restype = ctypes.c_char_p
        _lib = lib
        return lib


def _fspath(p):
    return None if p is None else os.fsencode(p)


def _as_bytes(v, what):
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError("%s must be bytes, str or None, not %s" % (what, type(v).__name__))


def _take(ptr, n):
    return None if not ptr else ctypes.string_at(ptr, n)


def version():
    """The library's version ("0.1.0")."""
    return _load().sluice_version().decode()


class Protector:
    """One libsluice handle: a policy file and, when `properties` is given, the keys it names."""

    def __init__(self, properties=None, policy=None):
        if policy is None:
            raise TypeError("policy (the policy file) is required")
        self._lib = _load()
        self._h = ctypes.c_void_p()
        err = ctypes.create_string_buffer(_ERRLEN)
        rc = self._lib.sluice_open(_fspath(properties), _fspath(policy),
                                   ctypes.byref(self._h), err, _ERRLEN)
        if rc != SLUICE_OK:
            self._h = None
            raise SluiceError(rc, err.value.decode("utf-8", "replace"))

    def close(self):
        """Releases the handle (cached keys are cleansed). Safe to call twice."""
        h, self._h = getattr(self, "_h", None), None
        if h:
            self._lib.sluice_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._h:
            raise SluiceError(SLUICE_EINVAL, "the protector is closed")
        return self._h

    def _record(self, fn, topic, value, key, headers):
        h = self._handle()
        key_b = _as_bytes(key, "key")
        val_b = _as_bytes(value, "value")
        hdrs = list(headers or [])
        keep = []  # buffers the C side borrows during the call
        arr = (_Header * max(len(hdrs), 1))()
        for i, (hk, hv) in enumerate(hdrs):
            hk_b = _as_bytes(hk, "header key") or b""
            hv_b = _as_bytes(hv, "header value")
            kbuf = ctypes.create_string_buffer(hk_b, len(hk_b) + 1)
            keep.append(kbuf)
            arr[i].key = ctypes.cast(kbuf, ctypes.c_void_p)
            arr[i].key_len = len(hk_b)
            if hv_b is not None:
                vbuf = ctypes.create_string_buffer(hv_b, len(hv_b) + 1)
                keep.append(vbuf)
                arr[i].value = ctypes.cast(vbuf, ctypes.c_void_p)
                arr[i].value_len = len(hv_b)
        rin = _Record()
        for attr, b in (("key", key_b), ("value", val_b)):
            if b is not None:
                buf = ctypes.create_string_buffer(b, len(b) + 1)
                keep.append(buf)
                setattr(rin, attr, ctypes.cast(buf, ctypes.c_void_p))
                setattr(rin, attr + "_len", len(b))
        rin.headers = arr
        rin.nheaders = len(hdrs)
        out = _Record()
        err = ctypes.create_string_buffer(_ERRLEN)
        rc = fn(h, topic.encode("utf-8"), ctypes.byref(rin), ctypes.byref(out), err, _ERRLEN)
        if rc != SLUICE_OK:
            raise SluiceError(rc, err.value.decode("utf-8", "replace"))
        try:
            okey = _take(out.key, out.key_len)
            oval = _take(out.value, out.value_len)
            ohdrs = []
            for i in range(out.nheaders):
                oh = out.headers[i]
                name = ctypes.string_at(oh.key, oh.key_len) if oh.key_len else b""
                ohdrs.append((name.decode("utf-8", "surrogateescape"),
                              _take(oh.value, oh.value_len)))
        finally:
            self._lib.sluice_record_free(ctypes.byref(out))
        return okey, oval, ohdrs

    def _value(self, fn, topic, value):
        h = self._handle()
        b = _as_bytes(value, "value")
        if b is None:
            raise TypeError("value must be bytes or str")
        out = ctypes.c_void_p()
        n = ctypes.c_size_t()
        err = ctypes.create_string_buffer(_ERRLEN)
        rc = fn(h, topic.encode("utf-8"), b, len(b), ctypes.byref(out), ctypes.byref(n), err,
                _ERRLEN)
        if rc != SLUICE_OK:
            raise SluiceError(rc, err.value.decode("utf-8", "replace"))
        try:
            return ctypes.string_at(out, n.value) if n.value else b""
        finally:
            self._lib.sluice_free(out)

    def protect(self, topic, value, key=None, headers=None):
        """Protects one record for `topic` as the broker would on produce. Returns
        (key, value, headers); unprotected topics come back unchanged."""
        return self._record(self._lib.sluice_protect, topic, value, key, headers)

    def reveal(self, topic, value, key=None, headers=None):
        """Shows every encrypted field of one record of `topic` in clear. Values that do not
        decrypt (forgotten subject, shredded key) stay as they are. Returns (key, value,
        headers)."""
        return self._record(self._lib.sluice_reveal, topic, value, key, headers)

    def protect_value(self, topic, value):
        """protect() for a value alone: bytes in, bytes out."""
        return self._value(self._lib.sluice_protect_value, topic, value)

    def reveal_value(self, topic, value):
        """reveal() for a value alone: bytes in, bytes out."""
        return self._value(self._lib.sluice_reveal_value, topic, value)
