#!/usr/bin/env bash
# Where the broker spends its instructions for one matrix row: runs the broker under callgrind
# (this VM has no hardware counters, so `perf stat -e instructions` reports "not supported"),
# produces and consumes COUNT 1 KiB messages with acks=all, and prints the top functions.
#
#   bench/profile.sh ROW [COUNT]     ROW: plaintext | ssl | sasl_ssl | sasl_plaintext
#   PROFILER=perf bench/profile.sh ROW [COUNT]   sampled with perf's cpu-clock software event
#                                     instead: kernel time included, full speed (COUNT 500000)
#   PARTITIONS=8 ...                  spread the messages over 8 partitions
#   CG_OUT=FILE ...                   keep the callgrind output (e.g. to sum a subsystem's
#                                     functions with callgrind_annotate --inclusive=yes)
#
# callgrind slows the broker ~50x: COUNT defaults to 30000 (about a minute).
set -uo pipefail
cd "$(dirname "$0")/.."
ROW=${1:?usage: bench/profile.sh ROW [COUNT]}
PROFILER=${PROFILER:-callgrind}
PARTITIONS=${PARTITIONS:-1}
if [ "$PROFILER" = perf ]; then COUNT=${2:-500000}; else COUNT=${2:-30000}; fi
SLUICE=${SLUICE_BIN_BENCH:-build/release/sluice}
LG=build/bench/sl_loadgen
[ -f "bench/conf/$ROW.broker.properties" ] || { echo "profile: no row $ROW" >&2; exit 2; }
case "$PROFILER" in
callgrind) command -v valgrind >/dev/null || { echo "profile: valgrind not installed" >&2; exit 2; } ;;
perf) command -v perf >/dev/null || { echo "profile: perf not installed" >&2; exit 2; } ;;
*) echo "profile: PROFILER is callgrind or perf" >&2; exit 2 ;;
esac
make -s -j2 release bench >/dev/null || exit 1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-profile.XXXXXX")
VG=""
cleanup() { [ -n "$VG" ] && kill "$VG" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/certs"
(cd "$WORK/certs" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=ca" \
        -keyout ca.key -out ca.pem &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.crt && cat server.crt server.key >server.pem) >/dev/null 2>&1
for f in broker client; do
    sed -e "s|@PORT@|$PORT|g" -e "s|@DATA@|$DATA|g" -e "s|@CERTS@|$WORK/certs|g" \
        "bench/conf/$ROW.$f.properties" >"$WORK/$f.properties"
done
if grep -q '^sasl.username=' "$WORK/client.properties"; then
    sed -n 's/^sasl.password=//p' "$WORK/client.properties" |
        "$SLUICE" user add "$(sed -n 's/^sasl.username=//p' "$WORK/client.properties")" \
            --store "$DATA/sluice-users" --mechanism SCRAM-SHA-512 --password-stdin >/dev/null
fi
if [ "$PROFILER" = perf ]; then
    WRAP=(perf record -q -e cpu-clock -F 2000 -o "$WORK/perf.data")
else
    WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out")
fi
timeout -k 5 900 "${WRAP[@]}" \
    "$SLUICE" serve -c "$WORK/broker.properties" --override sluice.log.level=warn \
    --override sluice.metrics.listener=http://127.0.0.1:0 \
    >"$WORK/broker.log" 2>&1 &
VG=$!
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.2
done
"$LG" produce -b "127.0.0.1:$PORT" -t prof -p "$PARTITIONS" -n "$COUNT" --create -T 600 -F "$WORK/client.properties" | tail -2
"$LG" consume -b "127.0.0.1:$PORT" -t prof -p "$PARTITIONS" -n "$COUNT" -T 600 -F "$WORK/client.properties" | sed -n 2p
kill -TERM "$VG"
wait "$VG"
VG=""
if [ "$PROFILER" = perf ]; then
    echo "perf (cpu-clock), broker, $ROW, $COUNT messages produced and consumed; by object, then by symbol:"
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
    perf report -i "$WORK/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
else
    echo "callgrind, broker, $ROW, $COUNT messages produced and consumed (inclusive of children: no):"
    callgrind_annotate --threshold=95 "$WORK/cg.out" 2>/dev/null | sed -n '/^Ir/,$p' | head -30
    [ -z "${CG_OUT:-}" ] || cp "$WORK/cg.out" "$CG_OUT"
fi
