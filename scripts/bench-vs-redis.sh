#!/usr/bin/env bash
# redis-benchmark against redis-server and against GridKV, in the same run,
# alternating, and the ratios.
#
#     scripts/bench-vs-redis.sh [--rounds 3] [--requests 200000] [--placement split|shared]
#                               [--tests set,get[,incr]]
#
# Targets compared (each on its own ports, all on loopback):
#   redis       redis-server, no persistence
#   gridkv-1    one `gridkv node`, N=1 W=1 R=1
#   gridkv-3    three `gridkv node` processes, N=3 W=2 R=2; the benchmark
#               talks to node 1, which coordinates every operation
# Tests: SET and GET (and INCR with --tests set,get,incr: GridKV's counters
# are convergent PN-counters, a read then a merged write), 100-byte values,
# random keys among 100,000 (-r), 50 clients, unpipelined and with -P 16. Each round runs every target once per
# test, in turn, so drifting machine load hits all of them alike; the
# summary gives the median requests/s over the rounds and GridKV/Redis.
#
# CPU placement (on a 2-core machine it decides the picture):
#   split   (default) redis-benchmark on CPU 0, the servers on CPU 1 (GridKV
#           with one tokio worker thread per process, as Redis has one
#           main thread): server against server on one core each.
#   shared  nothing pinned; GridKV uses its default thread count and
#           competes with redis-benchmark for both cores.
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools;
# installed with apt-get if missing and running as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=3
requests=200000
placement=split
tests=set,get
while [ $# -gt 0 ]; do
    case $1 in
        --tests) tests=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --placement) placement=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case $placement in split|shared) ;; *) echo "--placement: split or shared" >&2; exit 2 ;; esac

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "installing redis-server and redis-tools"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi

cargo build --release -q -p gridkv-server
bin=target/release/gridkv
# shellcheck source=lib/gridkv-nodes.sh
source scripts/lib/gridkv-nodes.sh

wait_health() { # wait_health PORT_OF_RESP: until INFO says ready
    for _ in $(seq 1 300); do
        if redis-cli -p "$1" info cluster 2>/dev/null | grep -q 'cluster_ready:1'; then return 0; fi
        sleep 0.1
    done
    echo "node on $1 never became ready" >&2
    exit 1
}

redis_port=6501
server_cpu redis-server --port $redis_port --save '' --appendonly no --daemonize no \
    --logfile "$work/redis.log" </dev/null &
pids+=($!)

start_gridkv bench-single --replicas 1 --write-quorum 1 --read-quorum 1
single_port=$RESP_PORT
start_gridkv bench-c1
cluster_port=$RESP_PORT
seed=$CLUSTER_ADDR
start_gridkv bench-c2 --seeds "$seed"
start_gridkv bench-c3 --seeds "$seed"
wait_health "$single_port"
for _ in $(seq 1 300); do
    if redis-cli -p "$cluster_port" info cluster | grep -q 'cluster_placement_nodes:3'; then break; fi
    sleep 0.1
done
wait_health "$cluster_port"
sleep 2 # let the 3-node cluster settle (rings converged on every node)

declare -A port=([redis]=$redis_port [gridkv-1]=$single_port [gridkv-3]=$cluster_port)
targets=(redis gridkv-1 gridkv-3)
declare -A results
read -r -a upper <<<"$(tr 'a-z,' 'A-Z ' <<<"$tests")"

echo "placement: $placement; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "redis: $(redis-server --version | cut -d' ' -f3)"
for round in $(seq 1 "$rounds"); do
    for pipeline in 1 16; do
        n=$requests
        [ "$pipeline" -gt 1 ] && n=$((requests * 5))
        for t in "${targets[@]}"; do
            # --csv lines: "SET","98039.22",...
            out=$(client_cpu redis-benchmark -p "${port[$t]}" -t "$tests" -n "$n" -c 50 -d 100 \
                -r 100000 -P "$pipeline" --csv 2>"$work/bench.err" || true)
            for test in "${upper[@]}"; do
                rps=$(grep "^\"$test\"" <<<"$out" | cut -d, -f2 | tr -d '"' || true)
                if [ -z "$rps" ]; then
                    # redis-benchmark stops at the first error reply.
                    echo "  $t $test -P $pipeline: no result: $(tr '\r' '\n' <"$work/bench.err" | grep -v '^\s*$' | tail -n 1)"
                    rps=0
                fi
                results["$t|$test|$pipeline"]+="$rps "
                printf 'round %d  %-9s %-3s -P %-2d %12s req/s\n' "$round" "$t" "$test" "$pipeline" "$rps"
            done
        done
    done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "=== medians over $rounds rounds (requests/s) and ratios to Redis"
printf '%-4s %-3s %12s %12s %12s %8s %8s\n' test P redis gridkv-1 gridkv-3 "1/redis" "3/redis"
for pipeline in 1 16; do
    for test in "${upper[@]}"; do
        r=$(median "${results[redis|$test|$pipeline]}")
        g1=$(median "${results[gridkv-1|$test|$pipeline]}")
        g3=$(median "${results[gridkv-3|$test|$pipeline]}")
        printf '%-4s %-3s %12.0f %12.0f %12.0f %8.2f %8.2f\n' "$test" "$pipeline" "$r" "$g1" "$g3" \
            "$(awk -v a="$g1" -v b="$r" 'BEGIN{print a/b}')" "$(awk -v a="$g3" -v b="$r" 'BEGIN{print a/b}')"
    done
done
