# shellcheck shell=bash
# What the scripts under scripts/ share: sourced (`. scripts/lib.sh`), never run.
#
# - Output: say/ok/indent (colours only after `use_colors`, and only on a terminal), tail_logs.
# - Cleanup: on_exit installs the traps (EXIT runs the script's cleanup; Ctrl-C exits 130,
#   SIGTERM 143); stop_pids stops exactly the processes a script started, by their PIDs only.
# - Benchmarks: bench_fail and bench_cleanup, the failure and the cleanup of a benchmark that
#   works in BENCH_WORK (and, as root, in the network namespace of bench_netns); start_in_ns.
# - Processes: start_bg runs a program in the background and records its PID in PIDS;
#   start_named also records its name and log, for check_alive.
# - Waiting: wait_for polls a condition with a deadline instead of sleeping blindly.
# - Building and checking: build_release, port_busy, tags_lists.
# - The demos' report: show_transfers.

bold='' green='' red='' off=''

# Turns on bold and colours when stdout is a terminal.
use_colors() {
    if [ -t 1 ]; then bold=$'\e[1m' green=$'\e[32m' red=$'\e[31m' off=$'\e[0m'; fi
}

say() { printf '%s==>%s %s\n' "$bold" "$off" "$*"; }
ok() { printf '    %s✓%s %s\n' "$green" "$off" "$*"; }
indent() { sed 's/^/    /'; }

# tail_logs SUFFIX FILE...: the last 5 lines of each non-empty FILE on stderr, each under a
# `--- FILE<SUFFIX>` line.
tail_logs() {
    local suffix=$1 f
    shift
    for f in "$@"; do
        [ -s "$f" ] || continue
        printf -- '--- %s%s\n' "$f" "$suffix" >&2
        tail -n 5 "$f" >&2
    done
}

# on_exit FUNCTION: runs FUNCTION when the script exits, however it exits (Ctrl-C exits 130,
# SIGTERM 143, both through FUNCTION).
on_exit() {
    # shellcheck disable=SC2064
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_bg LOG COMMAND...: runs COMMAND in the background (stdin closed, stdout and stderr to
# LOG) and appends its PID to the array PIDS, so the script can stop exactly what it started.
start_bg() {
    local log=$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    PIDS+=("$!")
}

# start_named NAME LOG COMMAND...: start_bg LOG COMMAND..., and appends NAME and LOG to the
# arrays NAMES and NAME_LOGS, in step with PIDS, so check_alive can say which program stopped.
start_named() {
    local name=$1 log=$2
    shift 2
    start_bg "$log" "$@"
    NAMES+=("$name")
    NAME_LOGS+=("$log")
}

# check_alive: calls the script's `fail` when a program started with start_named has exited,
# naming it and its log.
check_alive() {
    local i
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || fail "${NAMES[$i]} exited early (see ${NAME_LOGS[$i]})"
    done
}

# stop_pids SIGNAL TENTHS LAST_SIGNAL PID...: sends SIGNAL to each PID, waits up to TENTHS
# tenths of a second for all of them to exit, sends LAST_SIGNAL to those still running, and
# reaps them all. Only the given PIDs are ever signalled.
stop_pids() {
    local first=$1 tenths=$2 last=$3 pid alive
    shift 3
    [ "$#" -gt 0 ] || return 0
    for pid in "$@"; do kill "-$first" "$pid" 2>/dev/null || true; done
    for _ in $(seq "$tenths"); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do kill "-$last" "$pid" 2>/dev/null || true; done
    wait "$@" 2>/dev/null || true
}

# What a benchmark made, undone by bench_cleanup: its work folder (logs as WORK/*.log), once
# created, and its network namespace, once created by bench_netns.
BENCH_WORK=""
BENCH_NS=""

# bench_fail MESSAGE...: says that the script failed, and why, shows the last lines of the logs
# in BENCH_WORK, and exits 1 (bench_cleanup then runs). A benchmark's `fail` calls it.
bench_fail() {
    printf '\n%s failed: %s\n' "$(basename "$0" .sh)" "$*" >&2
    if [ -n "$BENCH_WORK" ]; then tail_logs ' (last lines)' "$BENCH_WORK"/*.log; fi
    exit 1
}

# bench_cleanup: the EXIT trap of a benchmark (`on_exit bench_cleanup`): stops the processes in
# PIDS (SIGINT, then SIGKILL after 5 s), deletes the namespace of bench_netns, removes
# BENCH_WORK unless KEEP=1, and exits with the script's status.
bench_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pids INT 50 KILL "${PIDS[@]}"
    PIDS=()
    if [ -n "$BENCH_NS" ]; then ip netns delete "$BENCH_NS" 2>/dev/null || true; fi
    if [ -n "$BENCH_WORK" ]; then
        if [ "${KEEP:-0}" = 1 ]; then echo "Kept $BENCH_WORK (KEEP=1)."; else rm -rf "$BENCH_WORK"; fi
    fi
    exit "$status"
}

# bench_netns NAME: creates the network namespace NAME with its loopback up, and records it in
# BENCH_NS for bench_cleanup to delete; fails when it cannot be created.
bench_netns() {
    ip netns add "$1" || return 1
    BENCH_NS=$1
    ip netns exec "$1" ip link set lo up
}

# start_in_ns NAME PROGRAM ARGS...: start_named NAME BENCH_WORK/NAME.log, PROGRAM running in the
# namespace BENCH_NS (`ip netns exec` execs it: the PID recorded is the program's own).
start_in_ns() {
    local name=$1
    shift
    start_named "$name" "$BENCH_WORK/$name.log" ip netns exec "$BENCH_NS" "$@"
}

# wait_for SECONDS STEP COMMAND...: runs COMMAND every STEP seconds until it succeeds (0), or
# returns 1 once SECONDS have passed. Between tries it runs $WAIT_CHECK when set (a function
# that fails the script, e.g. when a program it started has exited).
wait_for() {
    local deadline=$((SECONDS + $1)) step=$2
    shift 2
    until "$@"; do
        if [ -n "${WAIT_CHECK:-}" ]; then "$WAIT_CHECK"; fi
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep "$step"
    done
}

# build_release PACKAGE...: `cargo build --release --quiet` of the packages (the whole
# workspace when none is given).
build_release() {
    local packages=() package
    for package in "$@"; do packages+=(-p "$package"); done
    if [ "$#" -eq 0 ]; then packages=(--workspace); fi
    cargo build --release "${packages[@]}" --quiet
}

# port_busy tcp|udp PORT: whether something listens on that port (needs `ss`; false without).
port_busy() {
    local flags=-ltn
    [ "$1" = udp ] && flags=-lun
    command -v ss >/dev/null 2>&1 && [ -n "$(ss -H "$flags" "sport = :$2" 2>/dev/null)" ]
}

# tags_lists TAGS CONTENT HOLDER...: whether the tags.txt file TAGS lists all five chunks of
# CONTENT for every HOLDER (columns: USER PEER_ID ADDRESS PROTO CONTENT CHUNKS ...; an
# impostor's line, PEER_ID `!ID`, does not count for its claimed USER).
tags_lists() {
    local tags=$1 content=$2 holder
    shift 2
    [ -f "$tags" ] || return 1
    for holder in "$@"; do
        awk -v u="$holder" -v c="$content" '$1 == u && $2 !~ /^!/ && $5 == c && $6 == "12345" { found = 1 } END { exit !found }' \
            "$tags" || return 1
    done
}

# show_transfers RUN TRIM: the chunks alice and bob served or refused (RUN/<peer>/server.log)
# and those carol fetched (RUN/carol/client.log), each line passed through the sed script TRIM
# (empty, or one dropping the timestamp), indented under its heading.
show_transfers() {
    local run=$1 trim=$2 peer
    say "Chunks served (alice's and bob's server.log)"
    for peer in alice bob; do
        grep -h -E '\] (served|refused) ' "$run/$peer/server.log" | sed -e "$trim" -e "s/^/$peer: /" | indent || true
    done

    say "Chunks fetched (carol's client.log)"
    grep -h -E '\] (fetched|download) ' "$run/carol/client.log" | sed -e "$trim" | indent || true
}
