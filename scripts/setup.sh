#!/usr/bin/env bash
# Installs everything needed to build Sluice and run its whole test suite on Debian 12.
# Idempotent: runs apt-get only for packages that are missing, npm ci only when the lock changed.
# Quiet when all is well; on failure it prints the failing step's output and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command quietly; shows its output only if it fails.
quiet() {
    local out
    out=$(mktemp)
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "command failed: $*"
    fi
    rm -f "$out"
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "must run as root (or with sudo available)"
    SUDO="sudo"
fi

PKGS=(
    build-essential make pkg-config clang clang-format libclang-rt-14-dev
    libssl-dev zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev libcmocka-dev
    librdkafka-dev kcat
    # `ss`: the gateway's leader-move test checks no client connects to an upstream port.
    iproute2
    python3 python3-pytest python3-confluent-kafka python3-kafka python3-cryptography
    # Two interop workers (tests/run_all.sh: pytest -n 2), which keeps the suite under 20 minutes.
    python3-pytest-xdist
    # Benchmarks (bench/): the NATS JetStream reference row, and profilers for docs/benchmarks.md.
    nats-server libnats-dev linux-perf valgrind
    # Compression codecs for kafka-python (snappy, lz4, zstd).
    python3-snappy python3-lz4 python3-zstandard
    # Old-client interop (tests/interop/test_sarama.py): sarama 1.22 and its dependencies as
    # Debian source packages under /usr/share/gocode, built offline in GOPATH mode.
    golang-go golang-github-shopify-sarama-dev
    # The openssl command line (test_tls.py drives s_client with protocol versions Python refuses).
    openssl
    # Audit and metrics (issue 11): a real Prometheus server and promtool scrape and check the
    # endpoint and the shipped alert rules; headless Chromium renders the status page; the
    # OCSF events are checked against JSON schemas.
    prometheus chromium python3-jsonschema
    # Encryption at rest, pkcs11 KMS (issue 12): SoftHSM2 as the test token, p11-kit's proxy (the
    # default module), p11-kit-client.so + `p11-kit server` (the outage test's network HSM), and
    # the Cryptoki header the provider compiles against.
    softhsm2 p11-kit p11-kit-modules libp11-kit-dev
    # Encryption at rest, kmip KMS provider (issue 12): PyKMIP's server is the KMIP peer of
    # tests/interop/test_kms_kmip.py, and its codec made tests/unit/fixtures/ttlv_fixtures.h.
    python3-pykmip
    # aws-kms provider (issue 12): tests/interop/kmsd.py checks every request's SigV4 signature
    # with botocore's signer; curl --aws-sigv4 is a second, independent signer for that check.
    python3-botocore curl
)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
    case "$p" in \#*) continue ;; esac
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quiet $SUDO apt-get update -q
    quiet $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Sanity: the Debian interpreter must see the Kafka client libraries (a pyenv python3 first on
# PATH would not, which is why the tests always use /usr/bin/python3).
/usr/bin/python3 -c 'import confluent_kafka, kafka, pytest' 2>/dev/null ||
    die "/usr/bin/python3 cannot import confluent_kafka, kafka and pytest"
/usr/bin/python3 -c 'import xdist' 2>/dev/null ||
    die "/usr/bin/python3 cannot import xdist (python3-pytest-xdist)"
command -v kcat >/dev/null || die "kcat not found"
command -v node >/dev/null || die "node not found"
command -v openssl >/dev/null || die "openssl not found"
/usr/bin/python3 -c 'import cryptography, snappy, lz4, zstandard' 2>/dev/null ||
    die "/usr/bin/python3 cannot import cryptography, snappy, lz4 and zstandard"
# The sarama tests skip without these; CI must not (tests/skip-allowlist.txt does not list them).
command -v ss >/dev/null || die "ss not found (iproute2)"
command -v prometheus >/dev/null || die "prometheus not found"
command -v promtool >/dev/null || die "promtool not found (prometheus)"
command -v chromium >/dev/null || die "chromium not found"
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || die "/usr/bin/python3 cannot import jsonschema"
/usr/bin/python3 -c 'import kmip.services.server' 2>/dev/null && [ -x /usr/bin/pykmip-server ] ||
    die "PyKMIP server missing (python3-pykmip: /usr/bin/pykmip-server, import kmip)"
/usr/bin/python3 -c 'import botocore.auth' 2>/dev/null || die "/usr/bin/python3 cannot import botocore"
curl --help all 2>/dev/null | grep -- --aws-sigv4 >/dev/null || die "curl without --aws-sigv4 (needs 7.75+)"
command -v go >/dev/null || die "go not found (golang-go)"
[ -f /usr/share/gocode/src/github.com/Shopify/sarama/sarama.go ] ||
    die "sarama sources missing under /usr/share/gocode (golang-github-shopify-sarama-dev)"
command -v softhsm2-util >/dev/null || die "softhsm2-util not found (softhsm2)"
[ -e /usr/lib/softhsm/libsofthsm2.so ] || die "/usr/lib/softhsm/libsofthsm2.so missing (libsofthsm2)"
[ -e /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so ] || die "p11-kit-proxy.so missing (p11-kit-modules)"
[ -e /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so ] ||
    die "p11-kit-client.so missing (p11-kit-modules)"
[ -f /usr/include/p11-kit-1/p11-kit/pkcs11.h ] || die "p11-kit pkcs11.h missing (libp11-kit-dev)"

# Node clients for the interop suite, pinned by the committed package-lock.json.
NODE_DIR=tests/interop/node
stamp="$NODE_DIR/node_modules/.sluice-lock-stamp"
if [ ! -f "$stamp" ] || ! cmp -s "$NODE_DIR/package-lock.json" "$stamp"; then
    log "npm ci in $NODE_DIR"
    (cd "$NODE_DIR" && quiet npm ci --no-audit --no-fund --loglevel=error)
    cp "$NODE_DIR/package-lock.json" "$stamp"
fi
(cd "$NODE_DIR" && node -e 'require("kafkajs"); import("@platformatic/kafka").catch(e => { console.error(e); process.exit(1); })') ||
    die "node cannot load kafkajs and @platformatic/kafka from $NODE_DIR"
# IAM clients (issue 15): the AWS_MSK_IAM mechanism for kafkajs and AWS's MSK token signer.
(cd "$NODE_DIR" && node -e 'const m = require("@jm18457/kafkajs-msk-iam-authentication-mechanism"), s = require("aws-msk-iam-sasl-signer-js"); if (typeof m.createMechanism !== "function" || typeof s.generateAuthToken !== "function") process.exit(1)') ||
    die "node cannot load the MSK IAM packages from $NODE_DIR"
exit 0
