#!/usr/bin/env bash
# SCAN over a three-node cluster (N=3, W=2, R=2) of `gridkv node`
# processes on loopback: loads KEYS distinct keys (100-byte values), then
# walks them all with SCAN ... COUNT (redis-py's scan_iter) through node 1 and
# reports keys/s and the cluster bytes the walk cost (node 1's transport,
# sent and received, from /metrics).
#
#     scripts/bench-scan.sh [--keys 1000000] [--count 1000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keys=1000000
count=1000
while [ $# -gt 0 ]; do
    case $1 in
        --keys) keys=$2; shift 2 ;;
        --count) count=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
python3 -c 'import redis' || { echo "needs redis-py: pip install redis" >&2; exit 1; }
command -v redis-cli >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
}
cargo build --release -q -p gridkv-server
bin=target/release/gridkv
placement=shared
# shellcheck source=lib/gridkv-nodes.sh
source scripts/lib/gridkv-nodes.sh

start_gridkv scan-1 --max-memory 2gb
port=$RESP_PORT
seed=$CLUSTER_ADDR
http=${HTTP_ADDR[scan-1]}
start_gridkv scan-2 --seeds "$seed" --max-memory 2gb
start_gridkv scan-3 --seeds "$seed" --max-memory 2gb
for _ in $(seq 1 300); do
    redis-cli -p "$port" info cluster | grep -q 'cluster_placement_nodes:3' && break
    sleep 0.1
done
sleep 2

value=$(head -c 100 /dev/zero | tr '\0' v)
start=$(date +%s.%N)
awk -v n="$keys" -v v="$value" 'BEGIN { for (i = 0; i < n; i++) printf "SET key:%d %s\r\n", i, v }' |
    redis-cli -p "$port" --pipe >/dev/null
loaded=$(redis-cli -p "$port" gridkv.dbsize)
echo "loaded $loaded keys in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}') s"

bytes() {
    curl -s "http://$http/metrics" |
        awk '/^gridkv_transport_bytes_(sent|received)_total / {s += $2} END {printf "%d", s}'
}
before=$(bytes)
start=$(date +%s.%N)
walked=$(python3 -c '
import sys, redis
r = redis.Redis(port=int(sys.argv[1]))
print(len(set(r.scan_iter(count=int(sys.argv[2])))))' "$port" "$count")
end=$(date +%s.%N)
after=$(bytes)
awk -v k="$walked" -v s="$start" -v e="$end" -v b=$((after - before)) -v n="$keys" -v c="$count" 'BEGIN {
    t = e - s
    printf "SCAN COUNT %d: %d of %d keys in %.2f s: %.0f keys/s, %.1f MB over the cluster transport (%.0f bytes per key)\n", c, k, n, t, k / t, b / 1e6, b / k
}'
[ "$walked" -eq "$keys" ] || { echo "error: the walk returned $walked distinct keys, not $keys" >&2; exit 1; }
