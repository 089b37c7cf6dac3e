#!/usr/bin/env bash
# One command for a whole peer: starts the chunk server, announcer, listener and
# `downloader sync` (which keeps subscribed files up to date) of the peer folder DIR in the
# background, then opens the downloader's prompt in the foreground. When the
# prompt ends (`quit`, Ctrl-D, Ctrl-C at the prompt) or this script gets SIGTERM or SIGHUP, it
# stops exactly the programs it started, by their PIDs, waits for them, and exits with the
# downloader's status (143 after SIGTERM, 129 after SIGHUP).
#
# Usage: scripts/peer.sh DIR
#
# Every program gets only `--dir DIR`: the settings (addresses, ports, username, shares, ...)
# come from DIR/peer.toml (see the README, "Configuration file").
#
# Files in DIR:
#   logs/chunk-server.log, logs/announcer.log, logs/listener.log, logs/downloader.log (sync)
#                 what each background program prints (appended to, one header line per start)
#   logs/peer.pids
#                 "<program> <pid>" of each background program, written once all of them run,
#                 removed when they are stopped
#   server.log, client.log, tags.txt, ...   as when the programs are started by hand
#
# The binaries are looked for in $P2P_BIN_DIR if set, else in target/release, then target/debug
# of the checkout this script is in, else on PATH.
#
# The background programs run in sessions of their own (setsid), away from the terminal: a
# Ctrl-C typed to cancel a download reaches the downloader only, and closing the terminal
# reaches them only through this script, which stops them.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROGRAMS=(chunk-server announcer listener)

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    printf 'peer.sh: error: %s\n' "$*" >&2
    exit "${2:-1}"
}

case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
esac
[ "$#" -eq 1 ] || {
    printf 'usage: scripts/peer.sh DIR   (--help for more)\n' >&2
    exit 2
}
DIR=$1
[ -d "$DIR" ] || die "no peer folder at $DIR (create it: mkdir -p $DIR; put its settings in $DIR/peer.toml)"

# bin_dir: the folder holding all four programs, or nothing when they are to be found on PATH.
bin_dir() {
    local here candidate program
    if [ -n "${P2P_BIN_DIR:-}" ]; then
        printf '%s' "$P2P_BIN_DIR"
        return
    fi
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    for candidate in "$here/target/release" "$here/target/debug"; do
        for program in "${PROGRAMS[@]}" downloader; do
            [ -x "$candidate/$program" ] || continue 2
        done
        printf '%s' "$candidate"
        return
    done
}
BIN=$(bin_dir)
# bin PROGRAM: the path of PROGRAM.
bin() {
    if [ -n "$BIN" ]; then printf '%s/%s' "$BIN" "$1"; else command -v "$1"; fi
}
for program in "${PROGRAMS[@]}" downloader; do
    path=$(bin "$program") && [ -x "$path" ] ||
        die "cannot find the program $program (in ${BIN:-PATH}): build them (cargo build --release --workspace), install them (cargo install --path $program), or set P2P_BIN_DIR"
done

# The username: the announcer in the background has no terminal to ask at, and would announce
# the host name. Asked here once, at the terminal, when neither DIR/username.txt nor peer.toml
# gives one; stored where the announcer keeps the name it asks for itself.
if [ -t 0 ] && [ ! -s "$DIR/username.txt" ] &&
    ! grep -qE '^[[:space:]]*username[[:space:]]*=' "$DIR/peer.toml" 2>/dev/null; then
    while :; do
        read -r -p "Username to announce (kept in $DIR/username.txt): " name || die "no username given"
        if [ -n "$name" ] && [ "${#name}" -le 64 ] && [[ $name != *[[:cntrl:]]* ]]; then break; fi
        echo "A username is 1 to 64 characters, without control characters." >&2
    done
    printf '%s\n' "$name" >"$DIR/username.txt.tmp" && mv "$DIR/username.txt.tmp" "$DIR/username.txt"
fi

LOGS=$DIR/logs
PIDFILE=$LOGS/peer.pids
mkdir -p "$LOGS"
PIDS=()
NAMES=()
DOWNLOADER=
WROTE_PIDFILE=

# stop_all: stops the downloader (if it still runs) and the background programs, by PID only:
# SIGTERM (each stops cleanly; the announcer says goodbye), SIGKILL for any still running 5 s
# later; then reaps them.
stop_all() {
    if [ -n "$DOWNLOADER" ]; then
        stop_pids TERM 50 KILL "$DOWNLOADER"
        DOWNLOADER=
    fi
    if [ "${#PIDS[@]}" -gt 0 ]; then
        stop_pids TERM 50 KILL "${PIDS[@]}"
        PIDS=()
    fi
    # Only our own: a second peer.sh refused on the same folder must not remove the first's.
    if [ -n "$WROTE_PIDFILE" ]; then rm -f "$PIDFILE"; fi
}

on_signal() {
    trap - TERM HUP
    printf '\npeer.sh: got SIG%s: stopping the peer\n' "$1" >&2
    stop_all
    exit "$2"
}

trap stop_all EXIT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP
# Ctrl-C belongs to the prompt (it cancels a download, or leaves the prompt), as when the
# downloader runs alone; the peer stops when the prompt ends.
trap '' INT

# start PROGRAM [ARG...]: starts PROGRAM --dir DIR [ARG...] in a session of its own, output
# appended to its log.
start() {
    local program=$1 log=$LOGS/$1.log launcher=()
    shift
    if command -v setsid >/dev/null 2>&1; then launcher=(setsid); fi
    printf '=== peer.sh: %s started %s ===\n' "$program" "$(date '+%Y-%m-%d %H:%M:%S')" >>"$log"
    # setsid execs the program (a background job is no process-group leader): $! is its PID.
    "${launcher[@]}" "$(bin "$program")" --dir "$DIR" "$@" </dev/null >>"$log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$program")
}

# holds_lock I: whether program I has taken its lock on the folder (its PID is in
# DIR/.run/<program>.lock) and, for the chunk server, recorded where it listens.
holds_lock() {
    local name=${NAMES[$1]} pid=${PIDS[$1]}
    [ "$(cat "$DIR/.run/$name.lock" 2>/dev/null)" = "$pid" ] || return 1
    [ "$name" != chunk-server ] || grep -q "\"pid\": *$pid\b" "$DIR/.run/chunk-server.json" 2>/dev/null
}

# failed I: says that program I could not start (with the end of its log), stops the others.
failed() {
    local name=${NAMES[$1]}
    printf 'peer.sh: error: %s did not start; the end of %s:\n' "$name" "$LOGS/$name.log" >&2
    tail -n 5 "$LOGS/$name.log" | sed 's/^/    /' >&2
    stop_all
    exit 1
}

# One after the other, each once it has taken its lock on the folder (another instance on the
# folder or a bad peer.toml make it exit instead), so that a failure starts nothing more.
# `downloader sync` keeps the subscribed files up to date (the prompt leaves that to it).
for entry in "${PROGRAMS[@]}" "downloader sync"; do
    # shellcheck disable=SC2086 # "downloader sync" is a program and its argument
    start $entry
    i=$((${#PIDS[@]} - 1))
    deadline=$((SECONDS + 15))
    until holds_lock "$i"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || failed "$i"
        [ "$SECONDS" -lt "$deadline" ] || failed "$i"
        sleep 0.1
    done
done
# A socket that cannot be bound makes a program exit just after it took its lock.
sleep 0.5
for i in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || failed "$i"
done
for i in "${!PIDS[@]}"; do printf '%s %s\n' "${NAMES[$i]}" "${PIDS[$i]}"; done >"$PIDFILE.tmp"
mv "$PIDFILE.tmp" "$PIDFILE"
WROTE_PIDFILE=1
running=$(for i in "${!PIDS[@]}"; do printf '%s (pid %s), ' "${NAMES[$i]}" "${PIDS[$i]}"; done)
printf 'peer.sh: %s run for %s; their output is in %s/\n' "${running%, }" "$DIR" "$LOGS" >&2

# The prompt, on this script's stdin and terminal. Started with & and waited for, so that a
# SIGTERM or SIGHUP to this script is acted on at once rather than when the prompt ends.
"$(bin downloader)" --dir "$DIR" <&0 &
DOWNLOADER=$!
status=0
wait "$DOWNLOADER" || status=$?
DOWNLOADER=
stop_all
exit "$status"
