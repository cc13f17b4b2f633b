#!/usr/bin/env bash
# The standard benchmark matrix, one command. Writes a markdown table to stdout and to
# bench/results/<date>.md (raw JSON lines beside it). See docs/benchmarks.md.
#
#   bench/run_matrix.sh                 full matrix (~10-15 min on 2 cores)
#   bench/run_matrix.sh --smoke         seconds: PLAINTEXT, mock, gateway, IAM and txn100 rows,
#                                       1 partition, tiny counts; exits non-zero if the harness is
#                                       broken
#   options: --rows "plaintext idempotent txn100 ssl sasl_ssl sasl_ssl_iam sasl_ssl_audit_off sasl_ssl_enc_off sasl_ssl_protect sasl_plaintext gateway mock nats"
#            --partitions "1 8"  --count N (messages per throughput run)  --secs S (per fixed-rate
#            run)  --out FILE  --e2e-linger MS (producer linger.ms in the fixed-rate latency runs;
#            default 1, "default" keeps librdkafka's 5 ms, which then is the latency floor)
#            --base-bin PATH (another build's sluice, e.g. from before a change: adds the row
#            sasl_ssl_base, the sasl_ssl row served by that binary, right after sasl_ssl)
#            --txn-count N (messages per throughput run of the txn100 row; default the smaller
#            of --count and 100000: it is commit-bound at a few thousand msgs/s here, and a
#            million would pass the runs' time cap; its ratio to idempotent is in msgs/s)
#            --pairs N (the gateway rows' paired latency runs, below; default 5, 0: none)
#            --pair-load "PCT..." (their rates, % of the lower of the two gateway rows' tailing
#            rates; default 50)
#
# Every row: 1 KiB incompressible messages, acks=all; but sasl_ssl_protect stands for two rows
# served by one broker: sasl_ssl_json and sasl_ssl_protect, 1 KiB JSON documents on a topic
# without and with field protection (bench/conf/sasl_ssl_protect.*). Per partition count: produce at max rate
# (broker CPU measured over this run), consume catch-up from the beginning, tailing (producer at
# max rate and consumer at the head, in one loadgen), then end-to-end latency at 50 % and 80 % of
# the tailing rate. `gateway` stands for two rows measured against one `sluice serve`
# (bench/conf/gateway_upstream.*): gateway_direct, clients on its SASL_SSL listener, then
# gateway, the same clients through `sluice gateway` (bench/conf/gateway.gateway.properties)
# forwarding to its PLAINTEXT listener. sasl_ssl_iam is the sasl_ssl row with IAM (issue 15):
# OAUTHBEARER with MSK IAM tokens signed by the load generator (--msk-iam) with a key made by
# `sluice iam key create`, every request authorized by an IAM policy (bench/conf/sasl_ssl_iam.*)
# instead of ACLs. idempotent and txn100 are the plaintext row with an idempotent producer
# (enable.idempotence=true) and with a transactional one committing every 100 messages
# (sl_loadgen --txn 100; consumers read_committed, as librdkafka's default has every row do) (issue
# 16): produce, catch-up and tailing only, no fixed-rate e2e, whose read_committed latency would
# mostly be the commit cadence at that rate (100 / rate seconds), not comparable with the other
# rows. Security rows are only property files (bench/conf/<row>.*.properties); a row
# whose broker will not start on its listener is reported as "n/a (not yet supported)".
#
# Traffic stays on 127.0.0.1; every process has a time cap and is stopped by this script.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SMOKE=0
ROWS="plaintext idempotent txn100 ssl sasl_ssl sasl_ssl_iam sasl_ssl_audit_off sasl_ssl_enc_off sasl_ssl_protect sasl_plaintext gateway mock nats"
PARTS="1 8"
COUNT=1000000
SECS=10
OUT=""
E2E_LINGER=1
BASE_BIN=${SLUICE_BASE_BIN:-}
TXN_COUNT=""
PAIRS=5
PAIR_LOAD=50
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --rows) ROWS=$2; shift ;;
    --partitions) PARTS=$2; shift ;;
    --count) COUNT=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --e2e-linger) E2E_LINGER=$2; shift ;;
    --base-bin) BASE_BIN=$2; shift ;;
    --txn-count) TXN_COUNT=$2; shift ;;
    --pairs) PAIRS=$2; shift ;;
    --pair-load) PAIR_LOAD=$2; shift ;;
    -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "run_matrix: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SMOKE" = 1 ]; then
    ROWS=${SMOKE_ROWS:-"plaintext mock gateway sasl_ssl_iam txn100"}
    PARTS=1
    COUNT=20000
    SECS=1
fi
if [ -n "$BASE_BIN" ]; then
    [ -x "$BASE_BIN" ] || { echo "run_matrix: --base-bin $BASE_BIN is not an executable" >&2; exit 2; }
    case " $ROWS " in
    *" sasl_ssl_base "*) ;;
    *" sasl_ssl "*) ROWS=$(printf '%s\n' "$ROWS" | sed 's/\(^\| \)sasl_ssl\( \|$\)/\1sasl_ssl sasl_ssl_base\2/') ;;
    *) ROWS="$ROWS sasl_ssl_base" ;;
    esac
fi
E2E_ARGS=""
[ "$E2E_LINGER" = default ] || E2E_ARGS="-l $E2E_LINGER"
[ -n "$TXN_COUNT" ] || TXN_COUNT=$((COUNT < 100000 ? COUNT : 100000))
case "$COUNT$SECS${E2E_LINGER#default}$TXN_COUNT$PAIRS${PAIR_LOAD// /}" in *[!0-9]*) echo "run_matrix: --count/--secs/--txn-count/--pairs/--pair-load must be integers" >&2; exit 2 ;; esac

BIN=$ROOT/build/bench
SLUICE=${SLUICE_BIN_BENCH:-$ROOT/build/release/sluice}
LG=$BIN/sl_loadgen
log() { printf 'run_matrix: %s\n' "$*" >&2; }

# Builds what is missing or stale; a failed build is fatal only if there is nothing to run
# (a half-edited tree elsewhere should not stop a benchmark of the binaries already built).
BUILD_LOG="${TMPDIR:-/tmp}/run_matrix_build.$$"
if ! make -s -j2 release bench >/dev/null 2>"$BUILD_LOG"; then
    if [ -x "$SLUICE" ] && [ -x "$LG" ] && [ -x "$BIN/sl_mockbroker" ]; then
        log "build failed; using the binaries already built:"
        tail -5 "$BUILD_LOG" >&2
    else
        cat "$BUILD_LOG" >&2
        rm -f "$BUILD_LOG"
        log "build failed"
        exit 1
    fi
fi
rm -f "$BUILD_LOG"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
SERVER_PID=""
GW_PID=""
cleanup() {
    if [ -n "$GW_PID" ]; then
        kill "$GW_PID" 2>/dev/null
        wait "$GW_PID" 2>/dev/null
    fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# Pinning: broker on CPU 0, load generator on CPU 1 when there are two, so neither steals the
# other's core; on one core both share it (and the table says so).
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SRV="taskset -c 0"
    PIN_LG="taskset -c 1"
    PINNING="broker on CPU 0, load generator on CPU 1"
else
    PIN_SRV=""
    PIN_LG=""
    PINNING="not pinned ($NCPU CPU)"
fi
# Experiments (docs/benchmarks.md, "Gateway passthrough"): BENCH_PIN_LG and BENCH_PIN_GW replace
# the load generator's and the gateway's pinning (empty: not pinned).
if [ "${BENCH_PIN_LG+set}" ]; then
    PIN_LG=$BENCH_PIN_LG
    PINNING="$PINNING (load generator: ${BENCH_PIN_LG:-not pinned})"
fi
HZ=$(getconf CLK_TCK)

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # $1 port, $2 pid; true once something listens, false if the process died
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cpu_ticks() { # utime + stime of a process, in clock ticks
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}
vmhwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# Makes a throwaway CA and a server certificate for 127.0.0.1 (ECDSA P-256, as a modern
# deployment would use; its handshake cost is part of what the SSL rows measure).
make_certs() {
    local d=$WORK/certs
    mkdir -p "$d"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=sluice-bench-ca" -keyout ca.key -out ca.pem &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -subj "/CN=127.0.0.1" -keyout server.key -out server.csr &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf &&
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile ext.cnf -out server.crt &&
            cat server.crt ca.pem >chain.pem && cat server.crt server.key >server.pem
    ) >"$WORK/certs.log" 2>&1
}

UPORT=""
GWPORT=""
NODEPORT=""
GWDATA=""
fill() { # template -> file with @PORT@ @DATA@ @CERTS@ (and the gateway rows' ports) replaced
    sed -e "s|@PORT@|$PORT|g" -e "s|@DATA@|$DATA|g" -e "s|@CERTS@|$WORK/certs|g" \
        -e "s|@UPORT@|$UPORT|g" -e "s|@GWPORT@|$GWPORT|g" -e "s|@NODEPORT@|$NODEPORT|g" \
        -e "s|@GWDATA@|$GWDATA|g" "$1" >"$2"
}

# Records one result line: row, phase, partitions, broker CPU seconds, RSS, loadgen JSON.
record() { # $1 row $2 phase $3 parts $4 cpu_s $5 json
    local json=${5:-null}
    [ -n "$json" ] || json=null
    printf '{"row":"%s","phase":"%s","partitions":%s,"broker_cpu_s":%s,"lg":%s}\n' \
        "$1" "$2" "$3" "${4:-null}" "$json" >>"$RESULTS"
}
record_na() { # $1 row $2 reason
    printf '{"row":"%s","phase":"na","reason":"%s"}\n' "$1" "$2" >>"$RESULTS"
}

# Runs one generator invocation pinned to the load generator's core; prints its JSON line.
run_gen() { # $1 tool, rest args
    local tool=$1 out
    shift
    out=$($PIN_LG "$tool" "$@" 2>>"$WORK/gen.stderr")
    printf '%s\n' "$out" | grep -v '^{' >&2
    printf '%s\n' "$out" | grep '^{' | tail -1
}

rate_of() { # JSON -> produce msgs/s
    /usr/bin/python3 -c 'import json,sys; print(int(json.loads(sys.argv[1]).get("produce_msgs_per_s",0)))' "$1" 2>/dev/null || echo 0
}

recorded_rate() { # $1 row $2 phase $3 partitions -> produce msgs/s of its last recorded run
    rate_of "$(grep "\"row\":\"$1\",\"phase\":\"$2\",\"partitions\":$3," "$RESULTS" | tail -1 | sed 's/.*"lg"://; s/}$//')"
}

# The phases for one partition count against a running server. $GEN is the generator, $ADDR
# the bootstrap, $GEN_ARGS row-specific options (properties file, CA).
run_phases() { # $1 row $2 partitions
    local row=$1 p=$2 topic="bench-$1-p$2" t0 t1 j rate r50 r80 cpu e2e_args=$E2E_ARGS
    [ "$row" = nats ] && e2e_args="" # JetStream publishes at once: no linger to set
    local T=$((SECS * 4 + 120)) n=$COUNT
    [ "$row" = txn100 ] && n=$TXN_COUNT
    # Earlier phases and rows leave up to gigabytes dirty in the page cache; their writeback
    # would otherwise land inside this measurement (ext4 ties fsyncs to the journal), and which
    # row it lands in would depend on the row order.
    sync
    log "$row: $p partition(s): produce $n at max rate"
    t0=$(cpu_ticks "$(server_proc)")
    # shellcheck disable=SC2086
    j=$(run_gen "$GEN" produce -b "$ADDR" -t "$topic" -p "$p" -n "$n" $CREATE -T "$T" $GEN_ARGS --label "$row")
    t1=$(cpu_ticks "$(server_proc)")
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { if (a == "" || b == "") print "null"; else printf "%.3f", (b - a) / hz }')
    record "$row" produce "$p" "$cpu" "$j"
    # The mock cluster keeps only the newest ~5 MB per partition and answers a fetch at the log
    # end only after fetch.wait.max.ms (no wake-up on produce): consumers either find their
    # offset pruned or measure that timer, so the mock is a produce-only reference.
    [ "$row" = mock ] && return 0
    log "$row: $p partition(s): consume $n from the beginning"
    # shellcheck disable=SC2086
    j=$(run_gen "$GEN" consume -b "$ADDR" -t "$topic" -p "$p" -n "$n" -T "$T" $GEN_ARGS --label "$row")
    record "$row" catchup "$p" null "$j"
    # Smoke: the gateway, IAM and transactional rows only show that they produce and consume
    # (keeps --smoke short).
    if [ "$SMOKE" = 1 ]; then case $row in gateway* | sasl_ssl_iam | txn100) return 0 ;; esac; fi
    log "$row: $p partition(s): tailing, $n at max rate"
    # shellcheck disable=SC2086
    j=$(run_gen "$GEN" e2e -b "$ADDR" -t "$topic" -p "$p" -n "$n" -T "$T" $GEN_ARGS --label "$row")
    record "$row" tail "$p" null "$j"
    # A fixed-rate read_committed e2e of the transactional row would measure its commit cadence
    # at that rate (100 / rate seconds); its idempotent pair stops here with it.
    case $row in idempotent | txn100) return 0 ;; esac
    rate=$(rate_of "$j")
    [ "$rate" -gt 0 ] 2>/dev/null || rate=$(recorded_rate "$row" produce "$p")
    if [ "$rate" -gt 0 ] 2>/dev/null; then
        for pct in 50 80; do
            r=$((rate * pct / 100))
            log "$row: $p partition(s): end-to-end at $pct% of $rate msgs/s = $r msgs/s for ${SECS}s"
            # shellcheck disable=SC2086
            j=$(run_gen "$GEN" e2e -b "$ADDR" -t "$topic" -p "$p" -r "$r" -d "$SECS" -T "$T" $e2e_args $GEN_ARGS --label "$row")
            record "$row" "e2e$pct" "$p" null "$j"
        done
    fi
}

start_sluice() { # $1 row, $2 its configuration (default: the row's), $3 the binary (default
    # $SLUICE); sets SERVER_PID ADDR; false if the broker would not start
    local row=$1 conf=${2:-$1} bin=${3:-$SLUICE}
    DATA=$WORK/data-$row
    mkdir -p "$DATA"
    PORT=$(free_port)
    fill "bench/conf/$conf.broker.properties" "$WORK/$row.broker.properties"
    fill "bench/conf/$conf.client.properties" "$WORK/$row.client.properties"
    if grep -q '^sasl.username=' "$WORK/$row.client.properties"; then
        local user pw
        user=$(sed -n 's/^sasl.username=//p' "$WORK/$row.client.properties")
        pw=$(sed -n 's/^sasl.password=//p' "$WORK/$row.client.properties")
        printf '%s\n' "$pw" | "$bin" user add "$user" --store "$DATA/sluice-users" \
            --mechanism SCRAM-SHA-512 --password-stdin >>"$WORK/$row.broker.log" 2>&1 || return 1
    fi
    # A policy file must exist at start; protect_setup fills it in once the field keys exist.
    if grep -q '^sluice.protect.policy.file=' "$WORK/$row.broker.properties"; then
        printf '# filled in by run_matrix.sh once the field keys exist\n' >"$DATA/protect.policy"
    fi
    $PIN_SRV timeout -k 5 3600 "$bin" serve -c "$WORK/$row.broker.properties" \
        --override sluice.log.level=warn --override sluice.metrics.listener=http://127.0.0.1:0 \
        >>"$WORK/$row.broker.log" 2>&1 &
    SERVER_PID=$!
    ADDR=127.0.0.1:$PORT
    GEN=$LG
    GEN_ARGS="-F $WORK/$row.client.properties"
    CREATE=--create
    wait_port "$PORT" "$SERVER_PID"
}

# The field-protection rows' set-up on their running broker: the field keys the policy names, then
# the policy (the broker loads it by itself: waited for through `sluice protect status`'s digest
# of the file), then the bench user's grant to see the encrypted field in clear (so catch-up
# consume of the protected topic measures reveal). False when any step fails.
protect_setup() { # $1 row
    local row=$1 conf=$WORK/$1.broker.properties pol=$DATA/protect.policy k digest ok=""
    for k in tok pii; do
        for _ in $(seq 1 50); do
            "$SLUICE" keys create --field "$k" -c "$conf" >>"$WORK/$row.broker.log" 2>&1 && ok=1 && break
            ok=""
            sleep 0.1
        done
        [ -n "$ok" ] || return 1
    done
    cp "bench/conf/$row.policy" "$pol.tmp" && mv "$pol.tmp" "$pol" || return 1
    digest=$(sha256sum "$pol" | cut -d' ' -f1)
    ok=""
    for _ in $(seq 1 100); do
        if "$SLUICE" protect status -c "$conf" 2>>"$WORK/$row.broker.log" | grep -q "$digest"; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [ -n "$ok" ] || return 1
    "$SLUICE" protect grant -c "$conf" --principal User:bench --topic "bench-$row-*" --field '*' \
        --view reveal >>"$WORK/$row.broker.log" 2>&1
}

# The IAM row's set-up on its running broker, through the CLI as an operator would: the user
# "bench", one access key (handed to the load generator in AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, as the AWS libraries read it) and the row's policy, attached. A login
# reads the store afresh, so the probe that follows already authenticates. False when a step
# fails.
iam_setup() { # $1 row
    local row=$1 conf=$WORK/$1.broker.properties log=$WORK/$1.broker.log key
    "$SLUICE" iam user add bench -c "$conf" >>"$log" 2>&1 || return 1
    key=$("$SLUICE" iam key create --user bench --json -c "$conf" 2>>"$log") || return 1
    AWS_ACCESS_KEY_ID=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKey"]["AccessKeyId"])' <<<"$key") &&
        AWS_SECRET_ACCESS_KEY=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKey"]["SecretAccessKey"])' <<<"$key") ||
        return 1
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    unset AWS_SESSION_TOKEN
    "$SLUICE" iam policy put bench "bench/conf/$row.policy.json" -c "$conf" >>"$log" 2>&1 &&
        "$SLUICE" iam policy attach bench --user bench -c "$conf" >>"$log" 2>&1 || return 1
    GEN_ARGS="$GEN_ARGS --msk-iam --region us-east-1"
}

start_mock() {
    # The mock does not answer CreateTopics: it creates the topics itself.
    local topics="bench-probe:1" p
    for p in $PARTS; do topics="$topics bench-mock-p$p:$p"; done
    # shellcheck disable=SC2086
    $PIN_SRV "$BIN/sl_mockbroker" -T 3600 $topics >"$WORK/mock.out" 2>"$WORK/mock.broker.log" &
    SERVER_PID=$!
    for _ in $(seq 1 50); do
        ADDR=$(sed -n 's/^bootstrap=//p' "$WORK/mock.out")
        [ -n "$ADDR" ] && break
        sleep 0.1
    done
    GEN=$LG
    GEN_ARGS=""
    CREATE=""
    [ -n "$ADDR" ]
}

start_nats() {
    command -v nats-server >/dev/null || return 1
    [ -x "$BIN/sl_natsgen" ] || return 1
    DATA=$WORK/data-nats
    mkdir -p "$DATA"
    PORT=$(free_port)
    fill bench/conf/nats-server.conf "$WORK/nats-server.conf"
    $PIN_SRV timeout -k 5 3600 nats-server -c "$WORK/nats-server.conf" >"$WORK/nats.broker.log" 2>&1 &
    SERVER_PID=$!
    ADDR=tls://127.0.0.1:$PORT
    GEN=$BIN/sl_natsgen
    GEN_ARGS="--ca $WORK/certs/ca.pem"
    CREATE=--create
    wait_port "$PORT" "$SERVER_PID"
}

# The server runs under `timeout` (so it ends by itself even if this script is killed); its
# CPU and memory are read from the child that timeout started.
server_proc() {
    local c
    c=$(awk '{print $1; exit}' "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null)
    echo "${c:-$SERVER_PID}"
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

# Probes a running server with a tiny produce; false if it cannot complete one (a listener that
# starts but cannot finish a handshake is "not yet supported").
probe_ok() { # $1 row
    local probe
    # shellcheck disable=SC2086
    probe=$(run_gen "$GEN" produce -b "$ADDR" -t "bench-probe" -p 1 -n 10 $CREATE -T 20 $GEN_ARGS --label probe)
    grep -q '"ok":true' <<<"$probe" && return 0
    log "$1: probe produce failed"
    tail -5 "$WORK/gen.stderr" >&2
    return 1
}

# The gateway's throughput and added latency, paired (first throughput, below): --pairs N times
# (default 5), one fixed-rate e2e run straight
# to the broker and one through the gateway, back to back at the same rate (--pair-load per cent,
# default 50, of the lower of the two rows' tailing rates) on the same topic, the order alternating (ABBA) so a
# drift in the machine's load falls on both. The table reports the median of the N differences:
# one run's p50 moves by milliseconds with the disk's fsync times, which a difference of
# neighbours taken seconds apart cancels. Phases tput-1..N and pair<PCT>-1..N of both rows.
run_gateway_pairs() { # $1 partitions $2 the broker's SASL_SSL address; ADDR is the gateway's
    local p=$1 daddr=$2 gaddr=$ADDR rate r i row order j pct addr T=$((SECS * 4 + 120))
    # Throughput, paired the same way: one max-rate produce of COUNT records straight to the
    # broker and one through the gateway, back to back, order alternating. A lone max-rate run
    # lasts a second or two, and one writeback stall of the broker's disk halves it.
    for i in $(seq 1 "$PAIRS"); do
        order="gateway_direct gateway"
        [ $((i % 2)) = 0 ] && order="gateway gateway_direct"
        for row in $order; do
            addr=$gaddr
            [ "$row" = gateway_direct ] && addr=$daddr
            sync
            log "$row: $p partition(s): pair $i of $PAIRS, produce $COUNT at max rate"
            # shellcheck disable=SC2086
            j=$(run_gen "$GEN" produce -b "$addr" -t "bench-gateway-p$p" -p "$p" -n "$COUNT" -T "$T" $GEN_ARGS --label "$row")
            record "$row" "tput-$i" "$p" null "$j"
        done
    done
    # The lower of the two rows' tailing rates: the load is the same fraction of what the slower
    # path sustains, whichever it was in this run (one tailing run each, noisy here).
    local rd rg
    rd=$(recorded_rate gateway_direct tail "$p")
    rg=$(recorded_rate gateway tail "$p")
    rate=$rg
    [ "$rd" -gt 0 ] 2>/dev/null && [ "$rd" -lt "$rate" ] && rate=$rd
    [ "$rate" -gt 0 ] 2>/dev/null || return 0
    for pct in $PAIR_LOAD; do
        r=$((rate * pct / 100))
        [ "$r" -gt 0 ] || r=1
        for i in $(seq 1 "$PAIRS"); do
            order="gateway_direct gateway"
            [ $((i % 2)) = 0 ] && order="gateway gateway_direct"
            for row in $order; do
                log "$row: $p partition(s): pair $i of $PAIRS at $pct%, end-to-end at $r msgs/s for ${SECS}s"
                addr=$gaddr
                [ "$row" = gateway_direct ] && addr=$daddr
                # shellcheck disable=SC2086
                j=$(run_gen "$GEN" e2e -b "$addr" -t "bench-gateway-p$p" -p "$p" -r "$r" -d "$SECS" -T "$T" $E2E_ARGS $GEN_ARGS --label "$row")
                record "$row" "pair$pct-$i" "$p" null "$j"
            done
        done
    done
}

# The two gateway rows, one upstream `sluice serve`: gateway_direct (SASL_SSL straight to it),
# then gateway (SASL_SSL to `sluice gateway`, PLAINTEXT from there to the same broker). The
# gateway runs on the broker's CPU (PIN_SRV): on two cores both servers share one, so its CPU
# column is the gateway process alone and its throughput is a lower bound.
run_gateway_rows() {
    local up_pid cli p direct_addr
    UPORT=$(free_port)
    if ! start_sluice gateway_direct gateway_upstream; then
        log "gateway: upstream broker did not start; see below"
        tail -5 "$WORK/gateway_direct.broker.log" >&2
        record_na gateway_direct "n/a (upstream broker did not start)"
        record_na gateway "n/a (upstream broker did not start)"
        stop_server
        return
    fi
    if ! probe_ok gateway_direct; then
        record_na gateway_direct "n/a (not yet supported)"
        record_na gateway "n/a (upstream broker not reachable)"
        stop_server
        return
    fi
    for p in $PARTS; do run_phases gateway_direct "$p"; done
    printf '{"row":"gateway_direct","phase":"rss","peak_rss_kb":%s}\n' "$(vmhwm_kb "$(server_proc)" || echo null)" >>"$RESULTS"
    up_pid=$SERVER_PID
    direct_addr=$ADDR
    cli=$WORK/gateway_direct.client.properties
    GWDATA=$WORK/data-gateway
    mkdir -p "$GWDATA"
    GWPORT=$(free_port)
    NODEPORT=$(free_port)
    fill bench/conf/gateway.gateway.properties "$WORK/gateway.gateway.properties"
    sed -n 's/^sasl.password=//p' "$cli" | "$SLUICE" user add "$(sed -n 's/^sasl.username=//p' "$cli")" \
        --store "$GWDATA/sluice-users" --mechanism SCRAM-SHA-512 --password-stdin \
        >>"$WORK/gateway.broker.log" 2>&1
    ${BENCH_PIN_GW-$PIN_SRV} timeout -k 5 3600 "$SLUICE" gateway -c "$WORK/gateway.gateway.properties" \
        --override sluice.log.level=warn --override sluice.metrics.listener=http://127.0.0.1:0 \
        >>"$WORK/gateway.broker.log" 2>&1 &
    GW_PID=$!
    # From here the gateway is "the server" whose CPU run_phases measures.
    SERVER_PID=$GW_PID
    ADDR=127.0.0.1:$GWPORT
    if ! wait_port "$GWPORT" "$GW_PID" || ! probe_ok gateway; then
        log "gateway: not running or not forwarding; see below"
        tail -5 "$WORK/gateway.broker.log" >&2
        record_na gateway "n/a (not yet supported)"
    else
        for p in $PARTS; do run_phases gateway "$p"; done
        printf '{"row":"gateway","phase":"rss","peak_rss_kb":%s}\n' "$(vmhwm_kb "$(server_proc)" || echo null)" >>"$RESULTS"
        if [ "$SMOKE" = 0 ]; then for p in $PARTS; do run_gateway_pairs "$p" "$direct_addr"; done; fi
    fi
    stop_server
    GW_PID=""
    SERVER_PID=$up_pid
    stop_server
}

make_certs || { log "certificate generation failed"; cat "$WORK/certs.log" >&2; }
# What AES-256-GCM itself costs on this machine, recorded with the run: the encryption-at-rest
# rows are judged against it (docs/benchmarks.md, "Encryption at rest"). 1 MiB is about the batch
# size librdkafka builds at max rate with 1 KiB messages; 16 KiB is recorded for small batches.
if case " $ROWS " in *" sasl_ssl_enc_off "*) true ;; *) false ;; esac; then
    for bytes in 16384 1048576; do
        for dir in encrypt decrypt; do
            flag=""
            [ "$dir" = decrypt ] && flag="-decrypt"
            # shellcheck disable=SC2086
            rate=$(openssl speed -evp aes-256-gcm $flag -bytes "$bytes" -seconds 1 -mr 2>/dev/null |
                awk -F: '/^\+F:/ {print $4}' | tail -1)
            printf '{"row":"openssl","phase":"aes_%s","bytes":%s,"bytes_per_s":%s,"version":"%s"}\n' \
                "$dir" "$bytes" "${rate:-null}" "$(openssl version)" >>"$RESULTS"
        done
    done
fi
START=$(date +%s)
for row in $ROWS; do
    case "$row" in
    mock) start_mock ;;
    gateway)
        run_gateway_rows
        continue
        ;;
    nats)
        if ! command -v nats-server >/dev/null || [ ! -x "$BIN/sl_natsgen" ]; then
            record_na nats "n/a (nats-server or libnats-dev not installed)"
            continue
        fi
        start_nats
        ;;
    sasl_ssl_base) start_sluice sasl_ssl_base sasl_ssl "$BASE_BIN" ;;
    *)
        if [ ! -f "bench/conf/$row.broker.properties" ]; then
            log "no bench/conf/$row.broker.properties"
            record_na "$row" "n/a (no such row)"
            continue
        fi
        start_sluice "$row"
        ;;
    esac
    if [ $? -ne 0 ]; then
        log "$row: server did not start; see below"
        tail -5 "$WORK/$row.broker.log" "$WORK/nats.broker.log" 2>/dev/null | grep -v '^$' >&2
        record_na "$row" "n/a (not yet supported)"
        stop_server
        continue
    fi
    if [ "$row" = sasl_ssl_iam ] && ! iam_setup "$row"; then
        log "$row: IAM set-up failed; see below"
        tail -5 "$WORK/$row.broker.log" >&2
        record_na "$row" "n/a (IAM set-up failed)"
        stop_server
        unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
        continue
    fi
    # Every loadgen of the transactional row (the probe too: a broker without transactions
    # reports "n/a") produces in transactions of 100 messages.
    [ "$row" = txn100 ] && GEN_ARGS="$GEN_ARGS --txn 100"
    # A listener that starts but cannot complete a handshake is also "not yet supported": a
    # tiny produce decides before the row spends minutes timing out.
    # shellcheck disable=SC2086
    probe=$(run_gen "$GEN" produce -b "$ADDR" -t "bench-probe" -p 1 -n 10 $CREATE -T 20 $GEN_ARGS --label probe)
    if ! grep -q '"ok":true' <<<"$probe"; then
        log "$row: probe produce failed"
        tail -5 "$WORK/gen.stderr" >&2
        record_na "$row" "n/a (not yet supported)"
        stop_server
        unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
        continue
    fi
    if [ "$row" = sasl_ssl_protect ]; then
        if ! protect_setup "$row"; then
            log "$row: field protection set-up failed; see below"
            tail -5 "$WORK/$row.broker.log" >&2
            record_na sasl_ssl_json "n/a (field protection set-up failed)"
            record_na "$row" "n/a (field protection set-up failed)"
            stop_server
            continue
        fi
        # The same JSON records on an unprotected and a protected topic of one broker.
        GEN_ARGS="$GEN_ARGS --json"
        # The first row on a fresh broker tends to be favoured on a shared machine:
        # PROTECT_FIRST=1 reverses the order, for runs in both orders.
        for p in $PARTS; do
            if [ "${PROTECT_FIRST:-0}" = 1 ]; then
                run_phases "$row" "$p"
                run_phases sasl_ssl_json "$p"
            else
                run_phases sasl_ssl_json "$p"
                run_phases "$row" "$p"
            fi
        done
        printf '{"row":"sasl_ssl_json","phase":"rss","peak_rss_kb":%s}\n' "$(vmhwm_kb "$(server_proc)" || echo null)" >>"$RESULTS"
    else
        for p in $PARTS; do run_phases "$row" "$p"; done
    fi
    printf '{"row":"%s","phase":"rss","peak_rss_kb":%s}\n' "$row" "$(vmhwm_kb "$(server_proc)" || echo null)" >>"$RESULTS"
    stop_server
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
done
ELAPSED=$(($(date +%s) - START))

MACHINE="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $NCPU CPU, $(uname -sr)"
if [ -z "$OUT" ] && [ "$SMOKE" = 0 ]; then
    mkdir -p bench/results
    OUT=bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
fi
TABLE=$WORK/table.md
/usr/bin/python3 bench/sl_table.py "$RESULTS" --machine "$MACHINE" --pinning "$PINNING" \
    --count "$COUNT" --secs "$SECS" --elapsed "$ELAPSED" --e2e-linger "$E2E_LINGER" >"$TABLE"
rc=$?
cat "$TABLE"
if [ -n "$OUT" ]; then
    cp "$TABLE" "$OUT"
    cp "$RESULTS" "${OUT%.md}.jsonl"
    log "wrote $OUT"
fi
if [ "$SMOKE" = 1 ]; then
    # The harness works if the PLAINTEXT row produced, consumed and measured latency, completely.
    HAS_GW=0
    case " $ROWS " in *" gateway "*) "$SLUICE" gateway --help >/dev/null 2>&1 && HAS_GW=1 ;; esac
    /usr/bin/python3 - "$RESULTS" "$HAS_GW" "$TXN_COUNT" <<'PY' || rc=1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
need = {"produce", "catchup", "tail", "e2e50", "e2e80"}
seen = {r["phase"] for r in rows
        if r.get("row") == "plaintext" and r.get("lg") and r["lg"].get("ok")}
missing = need - seen
if missing:
    print("smoke: plaintext phases missing or incomplete: " + ", ".join(sorted(missing)))
    sys.exit(1)
# The gateway rows: the direct one always; the gateway itself once this build has it.
gw = {r["phase"] for r in rows if r.get("row") == "gateway" and r.get("lg") and r["lg"].get("ok")}
direct = {r["phase"] for r in rows
          if r.get("row") == "gateway_direct" and r.get("lg") and r["lg"].get("ok")}
if "gateway_direct" in {r.get("row") for r in rows} and not {"produce", "catchup"} <= direct:
    print("smoke: gateway_direct produce/catch-up missing or incomplete")
    sys.exit(1)
if sys.argv[2] == "1" and not {"produce", "catchup"} <= gw:
    print("smoke: gateway produce/catch-up missing or incomplete (this build has `sluice gateway`)")
    sys.exit(1)
# The IAM row (MSK IAM tokens from sl_loadgen --msk-iam, IAM policy authorization).
iam = {r["phase"] for r in rows
       if r.get("row") == "sasl_ssl_iam" and r.get("lg") and r["lg"].get("ok")}
if "sasl_ssl_iam" in {r.get("row") for r in rows} and not {"produce", "catchup"} <= iam:
    print("smoke: sasl_ssl_iam produce/catch-up missing or incomplete")
    sys.exit(1)
# The transactional row (sl_loadgen --txn 100): every transaction committed, none aborted, and a
# read_committed catch-up sees exactly what was produced.
if "txn100" in {r.get("row") for r in rows}:
    count = int(sys.argv[3])
    t = {r["phase"]: r["lg"] for r in rows if r.get("row") == "txn100" and r.get("lg")}
    prod, cat = t.get("produce") or {}, t.get("catchup") or {}
    want = (count + 99) // 100
    if not prod.get("ok") or not cat.get("ok"):
        print("smoke: txn100 produce/catch-up missing or incomplete")
        sys.exit(1)
    if prod.get("txns") != want or prod.get("txns_aborted") != 0:
        print(f"smoke: txn100 committed {prod.get('txns')} transactions (want {want}), "
              f"aborted {prod.get('txns_aborted')}")
        sys.exit(1)
    if cat.get("consumed") != count:
        print(f"smoke: txn100 read_committed catch-up consumed {cat.get('consumed')} (want {count})")
        sys.exit(1)
print("smoke: ok")
PY
fi
exit $rc
