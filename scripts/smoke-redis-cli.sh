#!/usr/bin/env bash
# redis-cli smoke test against a real three-node cluster of `gridkv node`
# processes on loopback.
#
#     scripts/smoke-redis-cli.sh [PATH/TO/gridkv]
#
# Without an argument it builds the release binary (cargo build --release
# -p gridkv-server) and uses target/release/gridkv. Every node binds port 0
# (cluster, RESP and HTTP), so nothing collides with anything already
# running; the ports are read from each node's ready line
# (`gridkv ready: id=.. cluster=.. resp=.. http=..`), and nodes 2 and 3 are
# seeded with node 1's `cluster=` address. N=3, W=2, R=2 (the defaults).
#
# Checks, with redis-cli: PING; SET/GET (read back through another node);
# SET EX + TTL; DEL; EXISTS; MSET/MGET; INFO has `# Replication`; DBSIZE is
# an integer; an unknown command gets an error reply; a 100 KB binary value
# round-trips (redis-cli -x); RESP3 (redis-cli -3: HELLO 3, a map, a
# null); after `kill -9` of one node, GET and SET still
# work through the other two (checked 5 s after the cluster is healthy: see
# the comment at the kill). Finally SIGTERM makes a node leave and exit 0.
#
# The nodes are killed on any exit (trap). Exits non-zero with a message
# naming the failed check (and the nodes' last log lines). GRIDKV_SMOKE_TIMEOUT
# (seconds, default 60) bounds each wait: ready line, /health. Needs
# redis-cli (Debian: redis-tools) and curl.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
timeout_s=${GRIDKV_SMOKE_TIMEOUT:-60}
t0=$(date +%s)

log() { echo "smoke: $*"; }
fail_msg=
fail() {
    fail_msg=$*
    echo "smoke: FAILED: $*" >&2
    exit 1
}

for tool in redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (Debian: apt-get install redis-tools curl)"
done

if [ $# -ge 1 ]; then
    bin=$1
else
    log "building the release binary (cargo build --release -p gridkv-server)"
    (cd "$root" && cargo build --release -p gridkv-server) || fail "cargo build failed"
    bin=${CARGO_TARGET_DIR:-target}/release/gridkv
    [[ $bin == /* ]] || bin=$root/$bin
fi
[ -x "$bin" ] || fail "$bin is not an executable"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
log "binary: $bin"

# A dev's exported GRIDKV_* settings (a config file, other quorums...) must not
# leak into the nodes; GRIDKV_LOG may stay.
while IFS= read -r var; do
    [ "$var" = GRIDKV_LOG ] || unset "$var"
done < <(compgen -e | grep '^GRIDKV_' || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/gridkv-smoke.XXXXXX")
declare -a pids=()
failed=1
cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$failed" -ne 0 ]; then
        for f in "$work"/node*.err; do
            [ -e "$f" ] || continue
            echo "smoke: --- last lines of $(basename "$f")" >&2
            tail -n 20 "$f" >&2 || true
        done
        # Repeated after the logs, so it is the last thing printed.
        [ -z "$fail_msg" ] || echo "smoke: FAILED: $fail_msg" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'fail_msg="interrupted (SIGINT)"; echo "smoke: interrupted" >&2; exit 130' INT
trap 'fail_msg="interrupted (SIGTERM)"; echo "smoke: interrupted" >&2; exit 143' TERM

# Plain logs (no colour escapes) in node*.err.
export NO_COLOR=1
cluster_name="smoke-$$"
declare -A cluster resp http pid

# start N [SEED]: starts node N, waits for its ready line, records its ports.
start() {
    local n=$1 seed=${2:-} line deadline
    local -a args=(node --id "smoke$n" --cluster "$cluster_name"
        --listen 127.0.0.1:0 --resp 127.0.0.1:0 --http 127.0.0.1:0
        --max-memory 64mb)
    [ -n "$seed" ] && args+=(--seeds "$seed")
    "$bin" "${args[@]}" >"$work/node$n.out" 2>"$work/node$n.err" &
    pid[$n]=$!
    pids+=("$!")
    deadline=$(($(date +%s) + timeout_s))
    until line=$(grep -m1 '^gridkv ready: ' "$work/node$n.out" 2>/dev/null); do
        kill -0 "${pid[$n]}" 2>/dev/null || fail "node $n exited before its ready line"
        [ "$(date +%s)" -lt "$deadline" ] || fail "node $n printed no ready line in ${timeout_s}s"
        sleep 0.1
    done
    [[ $line =~ cluster=([^ ]+)\ resp=([^ ]+)\ http=([^ ]+) ]] ||
        fail "node $n: unexpected ready line: $line"
    cluster[$n]=${BASH_REMATCH[1]}
    resp[$n]=${BASH_REMATCH[2]##*:}
    http[$n]=${BASH_REMATCH[3]}
    log "node $n (pid ${pid[$n]}): cluster=${cluster[$n]} resp=127.0.0.1:${resp[$n]} http=${http[$n]}"
}

start 1
start 2 "${cluster[1]}"
start 3 "${cluster[1]}"

log "waiting up to ${timeout_s}s for /health 200 with 3 replicas on every node"
deadline=$(($(date +%s) + timeout_s))
for n in 1 2 3; do
    until body=$(curl --noproxy "*" -sf --max-time 5 "http://${http[$n]}/health" 2>/dev/null) &&
        [[ $body == *'"effective_replicas":3'* ]]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            last=$(curl --noproxy "*" -s --max-time 5 -w ' (HTTP %{http_code})' "http://${http[$n]}/health" 2>&1 || true)
            fail "node $n: no /health 200 with 3 effective replicas in ${timeout_s}s; last /health: ${last:-no answer}"
        fi
        sleep 0.2
    done
done
healthy_at=$(date +%s)
log "cluster healthy after $((healthy_at - t0))s"

# rcli N ARGS...: one redis-cli command against node N (replies raw).
rcli() {
    local n=$1
    shift
    timeout 15 redis-cli -h 127.0.0.1 -p "${resp[$n]}" "$@" 2>&1
}

# expect N WANT ARGS...: the reply must be exactly WANT.
expect() {
    local n=$1 want=$2 got
    shift 2
    got=$(rcli "$n" "$@") || true
    [ "$got" = "$want" ] || fail "$* via node $n: expected '$want', got '${got:-<nothing>}'"
    log "ok: $* via node $n -> $(printf "%s" "${want:-(nil)}" | tr "\n" " ")"
}

# expect_match N REGEX WHAT ARGS...: the reply must match REGEX (bash =~).
expect_match() {
    local n=$1 re=$2 what=$3 got
    shift 3
    got=$(rcli "$n" "$@") || true
    [[ $got =~ $re ]] || fail "$* via node $n: expected $what, got '${got:-<nothing>}'"
    log "ok: $* via node $n -> $what ($(printf '%s' "$got" | head -c 60 | tr '\n' ' '))"
}

expect 1 PONG PING
expect 1 OK SET smoke:k v1
expect 1 v1 GET smoke:k
expect 2 v1 GET smoke:k
expect 3 v1 GET smoke:k

expect 2 OK SET smoke:ttl tv EX 100
expect_match 1 '^(100|[1-9][0-9]?)$' 'a TTL in 1..100' TTL smoke:ttl
expect 3 -1 TTL smoke:k
expect 3 -2 TTL smoke:nosuchkey

expect 1 2 EXISTS smoke:k smoke:ttl
expect 3 1 DEL smoke:k
expect 2 "" GET smoke:k
expect 1 0 EXISTS smoke:k
expect 2 0 DEL smoke:k

expect 1 OK MSET smoke:a 1 smoke:b 2 smoke:c 3
# (A missing key is a nil: an empty line in redis-cli's raw output.)
expect 2 "$(printf '1\n\n2\n3')" MGET smoke:a smoke:nosuchkey smoke:b smoke:c

expect_match 3 '# Replication' 'a "# Replication" section' INFO
expect_match 1 '^[0-9]+$' 'an integer' DBSIZE
expect_match 2 '^ERR ' 'an error reply' NOSUCHCOMMAND arg

# RESP3: redis-cli -3 opens with HELLO 3; in raw output a map prints one
# "key value" line per entry (a RESP2 array would print them on two lines).
expect_match 1 $'(^|\n)proto 3(\n|$)' 'proto 3 in the HELLO map' -3 HELLO 3
expect 2 "databases 1" -3 CONFIG GET databases
expect 3 "" -3 GET smoke:nosuchkey

# A 100 KB binary value through redis-cli -x (stdin as the last argument).
head -c 102400 /dev/urandom >"$work/big.in"
expect 1 OK -x SET smoke:big <"$work/big.in"
rcli 3 --raw GET smoke:big >"$work/big.out" || fail "GET smoke:big via node 3 failed"
# redis-cli ends the raw reply with a newline.
size=$(wc -c <"$work/big.out")
[ "$size" -eq 102401 ] || fail "GET smoke:big via node 3: expected 102400 bytes (+ newline), got $size"
head -c 102400 "$work/big.out" | cmp -s - "$work/big.in" ||
    fail "GET smoke:big via node 3: the 100 KB value came back different"
log "ok: a 100 KB binary value round-trips (SET -x via node 1, GET via node 3)"

# A crash: kill -9 node 2. Two of three owners remain, so R=2 and W=2 are met
# at once, with no pause after the cluster became healthy: a crash right
# after the last join (inside its transition window) fails no write either.
log "kill -9 node 2 (pid ${pid[2]})"
# (Disowned first: bash would report the kill on stderr.)
disown "${pid[2]}"
kill -KILL "${pid[2]}"
while kill -0 "${pid[2]}" 2>/dev/null; do sleep 0.05; done
expect 1 "$(printf '1\n2\n3')" MGET smoke:a smoke:b smoke:c
expect 3 1 GET smoke:a
expect 3 OK SET smoke:after kill
expect 1 kill GET smoke:after

# SIGTERM: a graceful leave, then exit 0.
log "SIGTERM node 3 (pid ${pid[3]})"
kill -TERM "${pid[3]}"
deadline=$(($(date +%s) + timeout_s))
while kill -0 "${pid[3]}" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "node 3 still running ${timeout_s}s after SIGTERM"
    sleep 0.2
done
rc=0
wait "${pid[3]}" || rc=$?
[ "$rc" -eq 0 ] || fail "node 3 exited with status $rc after SIGTERM, expected 0"
log "ok: node 3 left and exited 0"

failed=0
log "all checks passed in $(($(date +%s) - t0))s"
