# Shared by the bench scripts: a scratch directory, node processes killed
# on exit, CPU placement, and starting one `gridkv node`.
#
# Source it after setting `bin` (the gridkv binary) and `placement`
# (`split`: servers on CPU 1, clients on CPU 0; `shared`: anywhere).

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# Run as `server_cpu CMD &`: exec keeps the server's pid the one `$!` names.
server_cpu() { if [ "$placement" = split ]; then exec taskset -c 1 "$@"; else exec "$@"; fi; }
client_cpu() { if [ "$placement" = split ]; then taskset -c 0 "$@"; else "$@"; fi; }
threads_env() { if [ "$placement" = split ]; then echo 1; else nproc; fi; }

# start_gridkv NAME ARGS...: starts a node, waits for its ready line, sets
# RESP_PORT, CLUSTER_ADDR and HTTP_ADDR[NAME]. (Not in a subshell: the pid
# must reach cleanup, and the node must not hold a pipe open.)
declare -A HTTP_ADDR
start_gridkv() {
    local name=$1
    shift
    local out=$work/$name.out
    TOKIO_WORKER_THREADS=$(threads_env) GRIDKV_LOG=warn server_cpu "$bin" node --id "$name" \
        --listen 127.0.0.1:0 --resp 127.0.0.1:0 --http 127.0.0.1:0 "$@" >"$out" 2>"$work/$name.err" </dev/null &
    pids+=($!)
    local line
    for _ in $(seq 1 200); do
        line=$(grep -m1 '^gridkv ready:' "$out" || true)
        if [ -n "$line" ]; then
            RESP_PORT=$(sed -E 's/.* resp=[^ ]*:([0-9]+).*/\1/' <<<"$line")
            CLUSTER_ADDR=$(sed -E 's/.* cluster=([^ ]+).*/\1/' <<<"$line")
            HTTP_ADDR[$name]=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
            return 0
        fi
        sleep 0.05
    done
    echo "$name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 1
}
