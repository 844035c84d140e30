#!/usr/bin/env bash
# Run a local dcache cluster (three nodes by default) from configs/node{1,2,3}.yaml.
#
# Usage:
#   scripts/cluster.sh start  [DIR]   start node1 (bootstrap), then the others
#                                     (they join through node1), wait until all
#                                     are ready and node1 reports them as voters
#   scripts/cluster.sh stop   [DIR]   SIGTERM the nodes started from DIR, wait,
#                                     then SIGKILL any that are still running
#   scripts/cluster.sh status [DIR]   print each node's pid state and GET /health
#
# DIR (default: <repo>/cluster-data) holds, per node n:
#   DIR/node<n>/      the node's data dir (DCACHE_NODE_DATA_DIR), so ./data is untouched
#   DIR/node<n>.log   its stdout + stderr
#   DIR/node<n>.pid   its process id
# Starting again on an existing DIR restarts the nodes from their data.
#
# Environment (none of these start with DCACHE_, which dcache reserves):
#   CLUSTER_BIN              dcache binary (default: <repo>/target/release/dcache,
#                            built with `cargo build --release` if missing)
#   CLUSTER_HTTP_PORT_BASE   if set, node n listens for HTTP on localhost:<base+n>
#                            instead of the port in its config (11001..11003)
#   CLUSTER_RAFT_PORT_BASE   likewise for Raft (configs: 12001..12003)
#   CLUSTER_REDIS_PORT_BASE  likewise for the Redis protocol (configs: 6380..6382:
#                            redis-cli -p 6380 talks to node1)
#   CLUSTER_NODES            number of nodes, 3 to 9 (default 3); nodes 4.. take
#                            configs/node3.yaml with their own id, data dir and
#                            ports (HTTP 11000+n, Raft 12000+n, Redis 6379+n, or
#                            from the port bases), joining through node1
#   CLUSTER_START_TIMEOUT    seconds to wait for the cluster to form (default 30)
#   CLUSTER_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 20)
# Any DCACHE_* variable in the environment is passed to all the nodes
# (e.g. DCACHE_LOGGING_LEVEL=debug); do not set per-node ones such as
# DCACHE_HTTP_BIND_ADDR, they would apply to every node.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=${CLUSTER_NODES:-3}
[[ $COUNT =~ ^[3-9]$ ]] || { echo "cluster.sh: CLUSTER_NODES must be 3 to 9" >&2; exit 1; }

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
CMD=$1
DIR=${2:-$REPO/cluster-data}
case $DIR in
/*) ;;
*) DIR=$PWD/$DIR ;;
esac
# stop and status also cover nodes started with a larger CLUSTER_NODES.
if [[ $CMD != start ]]; then
    for f in "$DIR"/node*.pid; do
        [[ -e $f ]] || continue
        n=${f##*/node}
        n=${n%.pid}
        if [[ $n =~ ^[0-9]$ ]] && ((n > COUNT)); then COUNT=$n; fi
    done
fi
mapfile -t NODES < <(seq 1 "$COUNT")

BIN=${CLUSTER_BIN:-$REPO/target/release/dcache}
START_TIMEOUT=${CLUSTER_START_TIMEOUT:-30}
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-20}
[[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "CLUSTER_START_TIMEOUT must be a number of seconds"
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "CLUSTER_STOP_TIMEOUT must be a number of seconds"

# HTTP / Raft address of node n.
http_addr() {
    if [[ -n ${CLUSTER_HTTP_PORT_BASE:-} ]]; then
        echo "localhost:$((CLUSTER_HTTP_PORT_BASE + $1))"
    else
        echo "localhost:$((11000 + $1))"
    fi
}
raft_addr() {
    if [[ -n ${CLUSTER_RAFT_PORT_BASE:-} ]]; then
        echo "localhost:$((CLUSTER_RAFT_PORT_BASE + $1))"
    else
        echo "localhost:$((12000 + $1))"
    fi
}

pid_file() { echo "$DIR/node$1.pid"; }
log_file() { echo "$DIR/node$1.log"; }

# The pid recorded for node n, if that process is alive and still a dcache
# process (guards against a stale pid file whose pid was reused).
live_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q dcache || return 1
    fi
    echo "$pid"
}

ensure_binary() {
    if [[ -n ${CLUSTER_BIN:-} ]]; then
        [[ -x $BIN ]] || die "CLUSTER_BIN=$BIN is not an executable"
    elif [[ ! -x $BIN ]]; then
        echo "building $BIN ..."
        (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    fi
}

start_node() {
    local n=$1 cfg
    cfg=$REPO/configs/node$n.yaml
    local -a envs=("DCACHE_NODE_DATA_DIR=$DIR/node$n")
    if ((n > 3)); then
        # No config file of its own: node3's, with this node's identity.
        cfg=$REPO/configs/node3.yaml
        envs+=("DCACHE_NODE_ID=node$n" "DCACHE_HTTP_BIND_ADDR=$(http_addr "$n")"
            "DCACHE_RAFT_BIND_ADDR=$(raft_addr "$n")" "DCACHE_CLUSTER_JOIN_ADDR=$(http_addr 1)"
            "DCACHE_REDIS_BIND_ADDR=localhost:$((${CLUSTER_REDIS_PORT_BASE:-6379} + n))")
    fi
    [[ -f $cfg ]] || die "missing $cfg"
    mkdir -p "$DIR/node$n"
    if [[ -n ${CLUSTER_HTTP_PORT_BASE:-} ]]; then
        envs+=("DCACHE_HTTP_BIND_ADDR=$(http_addr "$n")")
        if [[ $n != 1 ]]; then
            envs+=("DCACHE_CLUSTER_JOIN_ADDR=$(http_addr 1)")
        fi
    fi
    if [[ -n ${CLUSTER_RAFT_PORT_BASE:-} ]]; then
        envs+=("DCACHE_RAFT_BIND_ADDR=$(raft_addr "$n")")
    fi
    if [[ -n ${CLUSTER_REDIS_PORT_BASE:-} ]]; then
        envs+=("DCACHE_REDIS_BIND_ADDR=localhost:$((CLUSTER_REDIS_PORT_BASE + n))")
    fi
    # The inner shell records its own pid and then execs dcache, so the pid file
    # holds dcache's pid. setsid detaches the node from this terminal's process
    # group: a Ctrl-C aimed at a later command does not kill the cluster.
    local -a detach=()
    if command -v setsid >/dev/null; then detach=(setsid); fi
    (
        cd "$REPO"
        # shellcheck disable=SC2016 # $$ and $1 are expanded by the inner shell
        env "${envs[@]}" "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' \
            _ "$(pid_file "$n")" "$BIN" -config "$cfg" \
            </dev/null >>"$(log_file "$n")" 2>&1 &
    )
    # Wait (bounded) for the pid file to appear.
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $(pid_file "$n") ]] && return 0
        sleep 0.1
    done
    die "node$n did not start (see $(log_file "$n"))"
}

# Fail with the log tail of any node that has exited.
check_alive() {
    local n
    for n in "$@"; do
        if ! live_pid "$n" >/dev/null; then
            echo "cluster.sh: node$n exited; last lines of $(log_file "$n"):" >&2
            tail -n 20 "$(log_file "$n")" | cut -c1-300 >&2 || true
            return 1
        fi
    done
}

is_ready() { "$BIN" health --addr "$(http_addr "$1")" >/dev/null 2>&1; }

voter_count() {
    curl -fsS --max-time 2 "http://$(http_addr 1)/v1/cluster" 2>/dev/null |
        grep -o '"role" *: *"voter"' | wc -l | tr -d ' '
}

# Wait until `cond` succeeds, the deadline passes, or a node in `nodes` dies.
wait_until() {
    local deadline=$1 what=$2 cond=$3
    shift 3
    while ((SECONDS < deadline)); do
        check_alive "$@" || return 1
        if "$cond"; then return 0; fi
        sleep 0.2
    done
    echo "cluster.sh: timed out after ${START_TIMEOUT}s waiting for $what" >&2
    return 1
}

node1_ready() { is_ready 1; }
all_ready() {
    local n
    for n in "${NODES[@]}"; do is_ready "$n" || return 1; done
}
all_voters() { [[ $(voter_count) -ge $COUNT ]]; }

cmd_start() {
    command -v curl >/dev/null || die "curl is required"
    local n running=()
    for n in "${NODES[@]}"; do
        if live_pid "$n" >/dev/null; then running+=("node$n"); fi
    done
    ((${#running[@]} == 0)) || die "${running[*]} already running from $DIR (run: $0 stop $DIR)"
    ensure_binary
    mkdir -p "$DIR"
    rm -f "$DIR"/node*.pid

    local deadline=$((SECONDS + START_TIMEOUT))
    echo "starting node1 (bootstrap) ..."
    start_node 1
    if ! wait_until "$deadline" "node1 to be ready" node1_ready 1; then
        cmd_stop >/dev/null
        die "cluster did not form; logs in $DIR"
    fi
    echo "starting node2..node$COUNT (joining via $(http_addr 1)) ..."
    for n in "${NODES[@]:1}"; do start_node "$n"; done
    if ! wait_until "$deadline" "all nodes to be ready" all_ready "${NODES[@]}" ||
        ! wait_until "$deadline" "$COUNT voters in $(http_addr 1)/v1/cluster" all_voters "${NODES[@]}"; then
        for n in "${NODES[@]}"; do
            echo "--- last lines of $(log_file "$n")" >&2
            tail -n 8 "$(log_file "$n")" | cut -c1-300 >&2 || true
        done
        cmd_stop >/dev/null
        die "cluster did not form; logs in $DIR"
    fi
    echo "cluster ready in ${SECONDS}s (data and logs in $DIR):"
    for n in "${NODES[@]}"; do
        echo "  node$n  http $(http_addr "$n")  raft $(raft_addr "$n")  pid $(live_pid "$n")"
    done
    local leader
    leader=$(curl -fsS --max-time 2 "http://$(http_addr 1)/v1/cluster" |
        grep -o '"leader_id" *: *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true)
    echo "  leader: ${leader:-unknown}"
    echo "try: curl -X PUT -d world http://$(http_addr 1)/v1/kv/hello; curl http://$(http_addr 2)/v1/kv/hello"
}

cmd_stop() {
    local n pid pids=() names=()
    for n in "${NODES[@]}"; do
        if pid=$(live_pid "$n"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("node$n")
        fi
    done
    if ((${#pids[@]} == 0)); then
        echo "no running nodes recorded in $DIR"
        rm -f "$DIR"/node*.pid
        return 0
    fi
    echo "sent SIGTERM to ${names[*]} (pids ${pids[*]}); waiting up to ${STOP_TIMEOUT}s ..."
    local deadline=$((SECONDS + STOP_TIMEOUT)) alive
    while :; do
        alive=()
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
        done
        ((${#alive[@]} > 0 && SECONDS < deadline)) || break
        sleep 0.2
    done
    if ((${#alive[@]} > 0)); then
        echo "still running after ${STOP_TIMEOUT}s, sending SIGKILL to pids ${alive[*]}" >&2
        kill -KILL "${alive[@]}" 2>/dev/null || true
    else
        echo "all nodes exited"
    fi
    rm -f "$DIR"/node*.pid
}

cmd_status() {
    local n pid rc=0
    for n in "${NODES[@]}"; do
        if pid=$(live_pid "$n"); then
            printf 'node%s  pid %-7s http %s  ' "$n" "$pid" "$(http_addr "$n")"
            if ! curl -fsS --max-time 2 "http://$(http_addr "$n")/health"; then
                printf '(no answer from /health)'
                rc=1
            fi
            echo
        else
            echo "node$n  not running (no live pid in $(pid_file "$n"))"
            rc=1
        fi
    done
    return "$rc"
}

case $CMD in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) usage ;;
*) usage ;;
esac
