#!/usr/bin/env bash
# Container test: a three-node cluster from deploy/compose.yaml, in the
# FROM-scratch image, seeded by service names.
#
#     deploy/docker-test.sh
#
# 1. builds the static binary and the image gridkv:test (deploy/build-image.sh;
#    GRIDKV_BIN=<static binary> packs that one instead of building);
# 2. `compose up -d` under a project name of its own (gridkv-test-<pid>-<time>),
#    with Docker picking free host ports, so it cannot collide with a dev's
#    containers or ports;
# 3. waits (GRIDKV_DOCKER_TIMEOUT seconds, default 60) until /health is 200 on
#    all three nodes and each sees three replicas, and checks that node1's
#    /cluster lists the members by their advertised names (nodeN:7380);
# 4. SET through node1's RESP port, GET through node3's (and node2's);
# 5. `docker kill` node2 (a crash: no graceful leave) and checks that reads
#    and writes still succeed through node1 and node3 (N=3, W=2, R=2: two of
#    three owners remain), at the first try (the kill comes 5 s after the
#    cluster is healthy, past the ring-change grace: see the comment there);
# 6. `docker stop` node3: SIGTERM, a graceful leave, exit status 0;
# 7. `compose down -v` on every exit (trap), printing the nodes' logs first
#    if a check failed.
#
# Exits 0 when all checks pass, and also (with a message) when no Docker
# engine is reachable: the test is skipped. Any failure exits non-zero with
# a message saying what failed. Needs redis-cli (Debian: redis-tools), curl,
# and `docker compose` or `docker-compose`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

timeout_s=${GRIDKV_DOCKER_TIMEOUT:-60}
image=gridkv:test
t0=$(date +%s)

log() { echo "docker-test: $*"; }
fail_msg=
fail() {
    fail_msg=$*
    echo "docker-test: FAILED: $*" >&2
    exit 1
}

# --- prerequisites ------------------------------------------------------------

if ! command -v docker >/dev/null 2>&1; then
    log "skipped: docker is not installed"
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    log "skipped: no Docker engine is reachable ('docker info' fails)"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    fail "a Docker engine is reachable but neither 'docker compose' nor 'docker-compose' works"
fi
for tool in redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (Debian: apt-get install redis-tools curl)"
done
log "using ${compose_cmd[*]} ($("${compose_cmd[@]}" version --short 2>/dev/null || echo '?'))"

# --- image ----------------------------------------------------------------------

log "building the static binary and image $image"
bash deploy/build-image.sh "$image" || fail "could not build the image $image"

# --- cluster --------------------------------------------------------------------

project="gridkv-test-$$-$(date +%s)"
export GRIDKV_IMAGE=$image
# Empty host ports: Docker picks free ones (read back with `compose port`).
for n in 1 2 3; do
    export "NODE${n}_RESP_PORT=" "NODE${n}_HTTP_PORT="
done
compose() { "${compose_cmd[@]}" -f deploy/compose.yaml -p "$project" "$@"; }

failed=1
cleanup() {
    local rc=$?
    if [ "$failed" -ne 0 ]; then
        echo "docker-test: --- containers and last log lines (project $project)" >&2
        compose ps >&2 || true
        compose logs --no-color --tail=40 >&2 || true
        # Repeated after the logs, so it is the last thing printed.
        [ -z "$fail_msg" ] || echo "docker-test: FAILED: $fail_msg" >&2
    fi
    log "cleaning up: compose down -v (project $project)"
    compose down -v --remove-orphans -t 10 >/dev/null 2>&1 ||
        echo "docker-test: warning: 'compose down' failed for project $project" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'fail_msg="interrupted (SIGINT)"; echo "docker-test: interrupted" >&2; exit 130' INT
trap 'fail_msg="interrupted (SIGTERM)"; echo "docker-test: interrupted" >&2; exit 143' TERM

log "compose up -d (project $project)"
compose up -d || fail "compose up failed"

# host_port SERVICE CONTAINER_PORT: the published loopback port.
host_port() {
    local out
    out=$(compose port "$1" "$2" 2>/dev/null | tail -n 1) || true
    [[ $out =~ :([0-9]+)$ ]] || fail "no host port published for $1:$2 (got '$out')"
    echo "${BASH_REMATCH[1]}"
}
declare -A resp http
for s in node1 node2 node3; do
    resp[$s]=$(host_port "$s" 6379)
    http[$s]=$(host_port "$s" 8080)
    log "$s: RESP 127.0.0.1:${resp[$s]}, HTTP 127.0.0.1:${http[$s]}"
done

# healthy SERVICE: /health is 200 and the node sees all three replicas.
healthy() {
    local body
    body=$(curl --noproxy "*" -sf --max-time 5 "http://127.0.0.1:${http[$1]}/health" 2>/dev/null) || return 1
    [[ $body == *'"effective_replicas":3'* ]]
}

log "waiting up to ${timeout_s}s for /health 200 (3 replicas) on all nodes"
deadline=$(($(date +%s) + timeout_s))
for s in node1 node2 node3; do
    until healthy "$s"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            last=$(curl --noproxy "*" -s --max-time 5 -w ' (HTTP %{http_code})' "http://127.0.0.1:${http[$s]}/health" 2>&1 || true)
            fail "$s: no /health 200 with 3 effective replicas in ${timeout_s}s; last /health: ${last:-no answer}"
        fi
        sleep 1
    done
    log "$s healthy after $(($(date +%s) - deadline + timeout_s))s"
done

# The members know each other by the advertised service names.
# Off loopback (inside its container) /cluster needs the admin token; without
# it the node refuses.
unauth=$(curl --noproxy "*" -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${http[node1]}/cluster") || true
[[ $unauth == 401 ]] || fail "GET /cluster without the admin token answered $unauth, not 401"
cluster=$(curl --noproxy "*" -sf --max-time 5 -H "Authorization: Bearer ${GRIDKV_ADMIN_TOKEN:-gridkv-dev-token}" \
    "http://127.0.0.1:${http[node1]}/cluster") || fail "GET /cluster on node1 failed"
[[ $cluster == *'"tls":true'* ]] || fail "node1's /cluster does not say its cluster traffic is TLS: $cluster"
for s in node1 node2 node3; do
    [[ $cluster == *"\"address\":\"$s:7380\""* ]] || fail "node1's /cluster does not list $s:7380: $cluster"
done
log "ok: node1's /cluster lists node1:7380, node2:7380, node3:7380"

# --- checks ---------------------------------------------------------------------

# rcli SERVICE ARGS...: one redis-cli command against SERVICE's RESP port.
rcli() {
    local s=$1
    shift
    timeout 15 redis-cli -h 127.0.0.1 -p "${resp[$s]}" "$@" 2>&1
}

# expect SERVICE WANT ARGS...: the reply must be exactly WANT.
expect() {
    local s=$1 want=$2 got
    shift 2
    got=$(rcli "$s" "$@") || true
    [ "$got" = "$want" ] || fail "$* via $s: expected '$want', got '${got:-<nothing>}'"
    log "ok: $* via $s -> $want"
}

val="hello-from-node1-$$"
expect node1 PONG PING
expect node1 OK SET docker:k1 "$val"
expect node3 "$val" GET docker:k1
expect node2 "$val" GET docker:k1

# The crash comes as soon as the cluster is healthy (a crash inside the last
# join's transition window must fail no write); from then on every check must
# pass at the first try.
node2_id=$(compose ps -q node2)
[ -n "$node2_id" ] || fail "no container for node2"
log "docker kill node2 (${node2_id:0:12})"
docker kill "$node2_id" >/dev/null || fail "docker kill node2 failed"

# Two of three owners remain: W=2 and R=2 are still met.
expect node1 "$val" GET docker:k1
expect node3 "$val" GET docker:k1
expect node3 OK SET docker:k2 written-after-kill
expect node1 written-after-kill GET docker:k2
expect node1 OK SET docker:k1 overwritten-after-kill
expect node3 overwritten-after-kill GET docker:k1

# docker stop sends SIGTERM to the binary (PID 1 of its container): a
# graceful leave, then exit 0.
node3_id=$(compose ps -q node3)
log "docker stop node3 (graceful leave)"
docker stop -t 30 "$node3_id" >/dev/null || fail "docker stop node3 failed"
code=$(docker inspect -f '{{.State.ExitCode}}' "$node3_id") || fail "docker inspect node3 failed"
[ "$code" = 0 ] || fail "node3 exited with status $code after SIGTERM, expected 0"
log "ok: node3 left and exited 0"

failed=0
log "all checks passed in $(($(date +%s) - t0))s"
