#!/usr/bin/env bash
# What TLS costs a client of a 3-node cluster: redis-benchmark through a
# plaintext cluster and through the same cluster with mutual TLS on its
# cluster connections, in the same run, alternating, and the ratios.
#
#     scripts/bench-tls.sh [--rounds 3] [--requests 100000] [--placement split|shared] [--no-resp-tls]
#
# Targets (each three `gridkv node` processes on loopback, N=3 W=2 R=2; the
# benchmark talks to the first node, which coordinates every operation):
#   plain     no TLS (allowed: every address is loopback)
#   tls       --tls-ca/--tls-cert/--tls-key: mutual TLS 1.3 between nodes,
#             the RESP listener plaintext
#   tls+resp  as tls, and --resp-tls: redis-benchmark connects with --tls
#             (what a client pays on top; --no-resp-tls leaves it out)
# Certificates: `gridkv cert cluster --out DIR --id t1,t2,t3,r1,r2,r3`.
# Tests: SET and GET, 100-byte values, random keys among 100,000 (-r), 50
# clients, unpipelined and with -P 16. Each round runs every target once per
# test, in turn, so drifting machine load hits all of them alike; the
# summary gives the median requests/s and p50 latency over the rounds and
# TLS / plain. Goal (issue 16): latency <= 1.2x, throughput >= 0.85x.
#
# CPU placement, as in scripts/bench-vs-redis.sh:
#   split   (default) redis-benchmark on CPU 0, the nodes on CPU 1, one tokio
#           worker thread each.
#   shared  nothing pinned; each node uses its default thread count.
#
# Needs redis-benchmark and redis-cli (Debian: redis-tools; installed with
# apt-get if missing and running as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=3
requests=100000
placement=split
resp_tls=1
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --placement) placement=$2; shift 2 ;;
        --no-resp-tls) resp_tls=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case $placement in split|shared) ;; *) echo "--placement: split or shared" >&2; exit 2 ;; esac
case $rounds in ''|*[!0-9]*|0) echo "--rounds: a positive number" >&2; exit 2 ;; esac
case $requests in ''|*[!0-9]*|0) echo "--requests: a positive number" >&2; exit 2 ;; esac

if ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing redis-tools"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
fi

cargo build --release -q -p gridkv-server
bin=${CARGO_TARGET_DIR:-target}/release/gridkv
# shellcheck source=lib/gridkv-nodes.sh
source scripts/lib/gridkv-nodes.sh

certs=$work/certs
"$bin" cert cluster --out "$certs" --id t1,t2,t3,r1,r2,r3 >/dev/null
ca=$certs/ca/ca.pem
tls_args() { echo "--tls-ca $ca --tls-cert $certs/$1/node.pem --tls-key $certs/$1/node.key"; }

# start_cluster TARGET ID1 ID2 ID3 -- ARGS...: three nodes, the first the
# seed; ARGS are given to each, with "@ID" replaced by the node's TLS flags.
declare -A port tls_client
start_cluster() {
    local target=$1 ids=("$2" "$3" "$4")
    shift 5
    local first=1 seed="" id
    for id in "${ids[@]}"; do
        local args=()
        for a in "$@"; do
            if [ "$a" = "@tls" ]; then read -ra more <<<"$(tls_args "$id")"; args+=("${more[@]}"); else args+=("$a"); fi
        done
        if [ -n "$seed" ]; then args+=(--seeds "$seed"); fi
        start_gridkv "$id" "${args[@]}"
        if [ $first = 1 ]; then
            port[$target]=$RESP_PORT
            seed=$CLUSTER_ADDR
            first=0
        fi
    done
}

# cli TARGET ARGS...: redis-cli to the target's first node.
cli() {
    local t=$1
    shift
    # shellcheck disable=SC2086 # tls_client holds several words on purpose
    redis-cli -p "${port[$t]}" ${tls_client[$t]} "$@"
}

wait_cluster() { # wait_cluster TARGET: three placement nodes, then ready
    for _ in $(seq 1 300); do
        if cli "$1" info cluster 2>/dev/null | grep -q 'cluster_placement_nodes:3'; then break; fi
        sleep 0.1
    done
    for _ in $(seq 1 300); do
        if cli "$1" info cluster 2>/dev/null | grep -q 'cluster_ready:1'; then return 0; fi
        sleep 0.1
    done
    echo "cluster $1 never became ready" >&2
    exit 1
}

targets=(plain tls)
start_cluster plain p1 p2 p3 --
tls_client[plain]=""
start_cluster tls t1 t2 t3 -- @tls
tls_client[tls]=""
if [ $resp_tls = 1 ]; then
    targets+=(tls+resp)
    start_cluster tls+resp r1 r2 r3 -- @tls --resp-tls
    tls_client[tls+resp]="--tls --cacert $ca"
fi
for t in "${targets[@]}"; do wait_cluster "$t"; done
# Each node's /cluster says whether its cluster traffic is TLS: check that
# every node is what its target claims.
for id in p1 p2 p3 t1 t2 t3 r1 r2 r3; do
    [ -n "${HTTP_ADDR[$id]:-}" ] || continue
    want=true
    [ "${id:0:1}" = p ] && want=false
    if ! curl -sf "http://${HTTP_ADDR[$id]}/cluster" | grep -q "\"tls\": *$want"; then
        echo "node $id: /cluster does not say tls: $want" >&2
        exit 1
    fi
done
sleep 2 # let the clusters settle (rings converged on every node)

declare -A rps_of p50_of
echo "placement: $placement; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(redis-benchmark --version)"
start=$(date +%s)
for round in $(seq 1 "$rounds"); do
    for pipeline in 1 16; do
        n=$requests
        [ "$pipeline" -gt 1 ] && n=$((requests * 5))
        # Rotate the order of the targets each round.
        order=("${targets[@]:$(( (round - 1) % ${#targets[@]} ))}" "${targets[@]:0:$(( (round - 1) % ${#targets[@]} ))}")
        for t in "${order[@]}"; do
            # --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
            # shellcheck disable=SC2086
            out=$(client_cpu redis-benchmark -p "${port[$t]}" ${tls_client[$t]} -t set,get -n "$n" -c 50 -d 100 \
                -r 100000 -P "$pipeline" --csv 2>"$work/bench.err" || true)
            for test in SET GET; do
                line=$(grep "^\"$test\"" <<<"$out" | tr -d '"' || true)
                rps=$(cut -d, -f2 <<<"$line")
                p50=$(cut -d, -f5 <<<"$line")
                if [ -z "$rps" ]; then
                    # redis-benchmark stops at the first error reply.
                    echo "  $t $test -P $pipeline: no result: $(tr '\r' '\n' <"$work/bench.err" | grep -v '^\s*$' | tail -n 1)"
                    rps=0 p50=0
                fi
                rps_of["$t|$test|$pipeline"]+="$rps "
                p50_of["$t|$test|$pipeline"]+="$p50 "
                printf 'round %d  %-8s %-3s -P %-2d %10s req/s  p50 %6s ms\n' "$round" "$t" "$test" "$pipeline" "$rps" "$p50"
            done
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(( $(date +%s) - start )) s of benchmarks"

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "=== medians over $rounds rounds: requests/s, p50 ms, and ratio to plain"
printf '| test | -P | target | req/s | p50 ms | req/s ÷ plain | p50 ÷ plain |\n'
printf '|---|---:|---|---:|---:|---:|---:|\n'
for pipeline in 1 16; do
    for test in SET GET; do
        pr=$(median "${rps_of[plain|$test|$pipeline]}")
        pl=$(median "${p50_of[plain|$test|$pipeline]}")
        for t in "${targets[@]}"; do
            r=$(median "${rps_of[$t|$test|$pipeline]}")
            l=$(median "${p50_of[$t|$test|$pipeline]}")
            printf '| %s | %d | %s | %.0f | %.3f | %s | %s |\n' "$test" "$pipeline" "$t" "$r" "$l" \
                "$(ratio "$r" "$pr")" "$(ratio "$l" "$pl")"
        done
    done
done
