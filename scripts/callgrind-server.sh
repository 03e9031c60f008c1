#!/usr/bin/env bash
# Instructions per request of one `gridkv node` under callgrind: repeatable
# on a noisy machine, unlike requests/s.
#
#     scripts/callgrind-server.sh [--mode n1|n3] [--test set|get] [--requests 20000]
#                                 [--pipeline 1] [--bin target/release/gridkv] [--annotate 40]
#
# n1: one node (N=1 W=1 R=1) under callgrind. n3: three nodes (N=3 W=2 R=2),
# the first under callgrind, coordinating every request. redis-benchmark
# sends -c 50 -d 100 -r 100000 (GET preloads the keys first, not counted).
# Each node runs one tokio worker. Instrumentation is switched on only for
# the measured requests (callgrind_control), so start-up is not counted;
# idle background work (SWIM, anti-entropy) is, and is small.
# Needs valgrind, redis-benchmark and redis-cli (Debian: valgrind,
# redis-tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=n1 test=set requests=20000 pipeline=1 bin=target/release/gridkv annotate=0
while [ $# -gt 0 ]; do
    case $1 in
        --mode) mode=$2; shift 2 ;;
        --test) test=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --pipeline) pipeline=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --annotate) annotate=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in valgrind callgrind_control redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind redis-tools)" >&2; exit 1; }
done
[ -x "$bin" ] || cargo build --release -q -p gridkv-server

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME WRAPPER ARGS...: starts a node (under WRAPPER, if any), waits
# for its ready line; sets PID, RESP_PORT and CLUSTER_ADDR.
start() {
    local name=$1 wrap=$2
    shift 2
    # shellcheck disable=SC2086 # the wrapper is words
    TOKIO_WORKER_THREADS=1 GRIDKV_LOG=warn $wrap "$bin" node --id "$name" --listen 127.0.0.1:0 \
        --resp 127.0.0.1:0 --http 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null &
    PID=$!
    pids+=("$PID")
    local line
    for _ in $(seq 1 600); do
        line=$(grep -m1 '^gridkv ready:' "$work/$name.out" || true)
        if [ -n "$line" ]; then
            RESP_PORT=$(sed -E 's/.* resp=[^ ]*:([0-9]+).*/\1/' <<<"$line")
            CLUSTER_ADDR=$(sed -E 's/.* cluster=([^ ]+).*/\1/' <<<"$line")
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 1
}

cg="valgrind --tool=callgrind --callgrind-out-file=$work/cg.out --instr-atstart=no"
case $mode in
    n1)
        start s1 "$cg" --replicas 1 --write-quorum 1 --read-quorum 1
        measured=$PID port=$RESP_PORT
        ;;
    n3)
        start c1 "$cg"
        measured=$PID port=$RESP_PORT seed=$CLUSTER_ADDR
        start c2 "" --seeds "$seed"
        start c3 "" --seeds "$seed"
        for _ in $(seq 1 600); do
            redis-cli -p "$port" info cluster 2>/dev/null | grep -q 'cluster_placement_nodes:3' && break
            sleep 0.2
        done
        sleep 5 # rings converged everywhere
        ;;
    *) echo "--mode: n1 or n3" >&2; exit 2 ;;
esac
for _ in $(seq 1 600); do
    redis-cli -p "$port" info cluster 2>/dev/null | grep -q 'cluster_ready:1' && break
    sleep 0.2
done
if [ "$test" = get ]; then
    redis-benchmark -p "$port" -t set -n 100000 -c 50 -d 100 -r 100000 -P 16 -q >/dev/null 2>&1
fi
callgrind_control -i on "$measured" >/dev/null 2>&1
redis-benchmark -p "$port" -t "$test" -n "$requests" -c 50 -d 100 -r 100000 -P "$pipeline" -q 2>/dev/null |
    tr '\r' '\n' | grep -v '^\s*$' | tail -n 1
callgrind_control -d "$measured" >/dev/null 2>&1
sleep 1
out=$(find "$work" -name 'cg.out.*' | sort | tail -n 1)
total=$(grep -E '^totals:' "$out" | awk '{print $2}')
echo "mode=$mode test=$test pipeline=$pipeline instructions/request=$((total / requests))"
if [ "$annotate" -gt 0 ]; then
    callgrind_annotate --inclusive=no "$out" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -n "$annotate"
fi
