#!/usr/bin/env bash
# Benchmark: how soon a newly started peer's listener lists a peer that is already running.
#
#   peer A 127.0.0.2   chunk-server + listener + announcer (--interval 60), sharing one file
#   peer B             a listener only, started once A is up; timed until its tags.txt lists A
#
# A announces every 60 s, so its periodic announcements cannot explain a fast result: what makes
# B see A is B's start-up query. It reaches A's listener (both listeners share the announce port,
# as on one host), which leaves a query file in A's .queries/; A's announcer answers it by unicast
# to B's query socket. Every trial starts A and B afresh in a new folder. Prints each trial and
# the median, in milliseconds (the clock starts just before B's listener is started, and B's
# tags.txt is polled every 10 ms).
#
# With A_LISTENER=0, peer A runs no listener: then B's query is heard by A's announcer itself
# (its sockets on the broadcast address it announces to), as for a peer whose listener is not
# running or not started yet.
#
# Usage: ./scripts/bench-discovery.sh [TRIALS]          (default 9)
#   env: A_LISTENER=1 (0: peer A without a listener),
#        BENCH_UDP_PORT=15100 BENCH_TCP_PORT=15101 (non-default ports, so a running peer on
#        5000/5001 is not disturbed), BENCH_TIMEOUT=20 (seconds any one wait may take),
#        KEEP=1 keeps the temporary folder (its path is printed)
#
# Only the processes this script starts are ever signalled, by their PIDs.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TRIALS=${1:-9}
UDP_PORT=${BENCH_UDP_PORT:-15100}
TCP_PORT=${BENCH_TCP_PORT:-15101}
TIMEOUT=${BENCH_TIMEOUT:-20}
KEEP=${KEEP:-0}
A_LISTENER=${A_LISTENER:-1}
BIN=target/release
A_IP=127.0.0.2
BROADCAST=127.255.255.255:$UDP_PORT
FILE=shared.bin

PIDS=()  # every process started and not yet stopped
NET=""

fail() {
    printf '\nbench-discovery failed: %s\n' "$*" >&2
    if [ -n "$NET" ]; then tail_logs ' (last lines)' "$NET"/*/*/*.log; fi
    exit 1
}

# Stops the processes we started: SIGINT (their clean shutdown), SIGKILL after 5 s.
stop_all() {
    stop_pids INT 50 KILL "${PIDS[@]}"
    PIDS=()
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_all
    if [ -n "$NET" ]; then
        if [ "$KEEP" = 1 ]; then echo "Kept $NET (KEEP=1)."; else rm -rf "$NET"; fi
    fi
    exit "$status"
}
on_exit cleanup

# start LOG PROGRAM ARGS...: runs a release binary in the background; its PID is the program's.
start() { start_bg "$1" "$BIN/$2" "${@:3}"; }

check_alive() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || fail "a program exited early (PID $pid); see the logs below"
    done
}

# lists DIR: whether DIR/tags.txt lists alice's $FILE with all five chunks.
lists() { tags_lists "$1/tags.txt" "$FILE" alice; }
# announced A: whether A's announcer has announced the file (its debug line says so).
announced() { grep -q "announced [1-9][0-9]* chunks of 1 contents" "$1/announcer.log"; }

# ---------------------------------------------------------------------------------------------
[[ "$TRIALS" =~ ^[1-9][0-9]*$ ]] || fail "TRIALS must be a positive number, not '$TRIALS'"

say "Building release binaries (chunk-server, announcer, listener)"
build_release chunk-server announcer listener || fail "the build failed"

port_busy udp "$UDP_PORT" && fail "UDP port $UDP_PORT is in use; pick another with BENCH_UDP_PORT"
port_busy tcp "$TCP_PORT" && fail "TCP port $TCP_PORT is in use; pick another with BENCH_TCP_PORT"

NET=$(mktemp -d "${TMPDIR:-/tmp}/bench-discovery.XXXXXX")
say "$TRIALS trials in $NET (UDP $UDP_PORT, TCP $TCP_PORT)"

results=()
for trial in $(seq "$TRIALS"); do
    a=$NET/$trial/a b=$NET/$trial/b
    mkdir -p "$a/served_files" "$b"
    head -c 100000 /dev/urandom >"$a/served_files/$FILE"

    start "$a/chunk-server.log" chunk-server --dir "$a" --bind "$A_IP" --port "$TCP_PORT"
    if [ "$A_LISTENER" = 1 ]; then
        start "$a/listener.log" listener --dir "$a" --port "$UDP_PORT" --broadcast "$BROADCAST"
    fi
    start "$a/announcer.log" announcer --dir "$a" --bind "$A_IP" --broadcast "$BROADCAST" \
        --port "$UDP_PORT" --interval 60 --chunk-port "$TCP_PORT" --username alice -v

    if [ "$A_LISTENER" = 1 ]; then
        # A is up when its own listener lists its file: split, announced, heard.
        WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.05 lists "$a" ||
            fail "trial $trial: peer A not up after ${TIMEOUT}s"
    else
        # A is up when its announcer hears queries and has announced the file (debug line).
        WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.05 announced "$a" ||
            fail "trial $trial: peer A not up after ${TIMEOUT}s"
    fi

    t0=$(date +%s%N)
    start "$b/listener.log" listener --dir "$b" --port "$UDP_PORT" --broadcast "$BROADCAST"
    until lists "$b"; do
        if [ $((($(date +%s%N) - t0) / 1000000000)) -ge "$TIMEOUT" ]; then
            check_alive
            fail "trial $trial: B's tags.txt does not list A after ${TIMEOUT}s"
        fi
        sleep 0.01
    done
    ms=$((($(date +%s%N) - t0) / 1000000))
    results+=("$ms")
    printf '    trial %2d: %4d ms\n' "$trial" "$ms"
    stop_all
done

median=$(printf '%s\n' "${results[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
printf '\n== discovery of a running peer by a new listener: median %s ms over %d trials (min %s, max %s) ==\n' \
    "$median" "$TRIALS" "$(printf '%s\n' "${results[@]}" | sort -n | head -n 1)" \
    "$(printf '%s\n' "${results[@]}" | sort -n | tail -n 1)"
