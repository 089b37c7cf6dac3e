#!/usr/bin/env bash
# Benchmark: a peer sharing many small files (10,000 by default), on loopback.
#
#   alice 127.0.0.2   chunk-server (--share FOLDER) + announcer, sharing FILES small files
#   bob               a listener, hearing alice's announcements (bound to any address, as
#                     on a LAN; LISTENER_ARGS raise its per-source entry limit above FILES)
#
# Prints, with the release binaries:
#   listen        time from the chunk server's start until it answers a request
#   announced     until alice's announcer announces all FILES contents (its debug line)
#   listed        until bob's tags.txt lists all FILES contents of alice, every chunk
#                 (or how many it lists when the wait times out)
#   idle CPU      of each program over IDLE_SECS with nothing changing (utime+stime from
#                 /proc/PID/stat), after SETTLE seconds of calm
#   peak RSS      of each program (VmHWM), at the end
#   hashed        how long the chunk server's first scan took (every file hashed; its log)
#   restart       the chunk server stopped and started again on the same folder: time to answer,
#                 how long its first scan took, and how many files it hashed again (none: the
#                 manifests in temp/.manifests match each file's path, size and mtime)
#
# Usage: ./scripts/bench-many-files.sh
#   env: FILES=10000, FOLDERS=100 (the files are spread over this many subfolders),
#        IDLE_SECS=30, SETTLE=5, BENCH_TIMEOUT=120 (seconds any one wait may take),
#        BENCH_UDP_PORT / BENCH_TCP_PORT (default: free ports picked at random),
#        BENCH_DIR=target (where the temporary folder goes), KEEP=1 keeps it,
#        BIN=<dir of release binaries> (default: $CARGO_TARGET_DIR/release, built first),
#        NO_BUILD=1 skips the build, LISTENER_ARGS (default: --max-entries and
#        --max-entries-per-source twice FILES)
#
# Every packet stays on loopback (127.0.0.x, broadcast to 127.255.255.255). Only the processes
# this script starts are ever signalled, by their PIDs.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FILES=${FILES:-10000}
FOLDERS=${FOLDERS:-100}
IDLE_SECS=${IDLE_SECS:-30}
SETTLE=${SETTLE:-5}
TIMEOUT=${BENCH_TIMEOUT:-120}
BASE=${BENCH_DIR:-target}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
A_IP=127.0.0.2
# The listener's defaults hold 10,000 entries per source; raised so that any FILES fits.
LISTENER_ARGS=${LISTENER_ARGS:---max-entries $((FILES * 2)) --max-entries-per-source $((FILES * 2))}

PIDS=()  # every process started and not yet stopped
RUN=""

fail() { bench_fail "$@"; }
on_exit bench_cleanup

check_alive() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || fail "a program exited early (PID $pid); see the logs below"
    done
}

now_ns() { date +%s%N; }
# secs_between T0 T1: (T1 - T0) in seconds, 3 decimals.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
elapsed_s() { echo $((($(now_ns) - $1) / 1000000000)); }

# free_port tcp|udp: a port nothing listens on, picked at random above 20000.
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        port_busy "$1" "$port" || { echo "$port"; return; }
    done
    fail "no free $1 port found"
}
UDP_PORT=${BENCH_UDP_PORT:-$(free_port udp)}
TCP_PORT=${BENCH_TCP_PORT:-$(free_port tcp)}
BROADCAST=127.255.255.255:$UDP_PORT

# answers: whether alice's chunk server answers a request (for the manifest of a content it
# does not have: a one-line `error` header), waiting up to BENCH_TIMEOUT for the answer. The
# kernel completes TCP handshakes into the listen queue before the server calls accept, so a
# bare connect says nothing about the server; an answer does.
answers() {
    local line=""
    exec 3<>"/dev/tcp/$A_IP/$TCP_PORT" || return 1
    printf '{"p2p":{"v":1,"manifest":"no-such-content"}}\n' >&3
    IFS= read -r -t "$TIMEOUT" line <&3 || true
    exec 3>&- 3<&-
    [[ "$line" == '{"error"'* ]]
} 2>/dev/null

# announced_all LOG: whether the announcer's log (at debug level) says it announced FILES
# contents, inline ("announced N chunks of F contents") or compactly ("announced the catalog H
# of F contents").
announced_all() { grep -Eq "announced ([0-9]* chunks|the catalog [0-9a-f]*) of $FILES contents" "$1"; }

# listed: how many contents of alice bob's tags.txt lists with all five chunks.
listed() {
    [ -f "$RUN/bob/tags.txt" ] || { echo 0; return; }
    awk '$1 == "alice" && $6 == "12345" { n++ } END { print n + 0 }' "$RUN/bob/tags.txt" 2>/dev/null
}

# cpu_ticks PID: utime + stime of PID, in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the parenthesised command name).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || fail "FILES must be a positive number, not '$FILES'"
[[ "$FOLDERS" =~ ^[1-9][0-9]*$ ]] || fail "FOLDERS must be a positive number, not '$FOLDERS'"
[ -d /proc/self ] || fail "this benchmark reads /proc (Linux only)"

if [ "${NO_BUILD:-0}" != 1 ]; then
    say "Building the release chunk-server, announcer and listener"
    build_release chunk-server announcer listener || fail "the build failed"
fi
for program in chunk-server announcer listener; do
    [ -x "$BIN/$program" ] || fail "$BIN/$program is missing (set BIN, or build)"
done

mkdir -p "$BASE"
RUN=$(mktemp -d "$BASE/bench-many-files.XXXXXX")
RUN=$(cd "$RUN" && pwd)
BENCH_WORK=$RUN
mkdir -p "$RUN/share" "$RUN/alice" "$RUN/bob"

say "Writing $FILES small files in $FOLDERS folders under $RUN/share"
for d in $(seq 1 "$FOLDERS"); do mkdir -p "$RUN/share/d$d"; done
for i in $(seq 1 "$FILES"); do
    # 1 to 4 KiB each, different contents.
    printf "file %d %0$((1000 + (i * 7919) % 3000))d\n" "$i" "$i" \
        >"$RUN/share/d$((i % FOLDERS + 1))/f$i.txt"
done

say "Starting bob's listener, then alice's chunk server and announcer (UDP $UDP_PORT, TCP $TCP_PORT)"
# Bound to any address (the default), as on a LAN: a socket bound to 127.0.0.3 would not
# hear what is broadcast to 127.255.255.255.
# shellcheck disable=SC2086 # LISTENER_ARGS is a list of flags
start_bg "$RUN/listener.log" "$BIN/listener" --dir "$RUN/bob" --port "$UDP_PORT" \
    --broadcast "$BROADCAST" $LISTENER_ARGS
LISTENER=${PIDS[-1]}
t0=$(now_ns)
start_bg "$RUN/chunk-server.log" "$BIN/chunk-server" --dir "$RUN/alice" --bind "$A_IP" \
    --port "$TCP_PORT" --share "$RUN/share"
SERVER=${PIDS[-1]}
start_bg "$RUN/announcer.log" "$BIN/announcer" --dir "$RUN/alice" --bind "$A_IP" \
    --broadcast "$BROADCAST" --port "$UDP_PORT" --username alice -v
ANNOUNCER=${PIDS[-1]}

until answers; do
    check_alive
    [ "$(elapsed_s "$t0")" -lt "$TIMEOUT" ] || fail "the chunk server does not answer after ${TIMEOUT}s"
    sleep 0.005
done
listen_s=$(secs_between "$t0" "$(now_ns)")

announced_s="" listed_s=""
while [ -z "$announced_s" ] || [ -z "$listed_s" ]; do
    check_alive
    now=$(now_ns)
    if [ -z "$announced_s" ] && announced_all "$RUN/announcer.log"; then
        announced_s=$(secs_between "$t0" "$now")
    fi
    if [ -z "$listed_s" ] && [ "$(listed)" -ge "$FILES" ]; then
        listed_s=$(secs_between "$t0" "$now")
    fi
    if [ "$(elapsed_s "$t0")" -ge "$TIMEOUT" ]; then
        [ -n "$announced_s" ] || announced_s="not within ${TIMEOUT}s"
        [ -n "$listed_s" ] || listed_s="not within ${TIMEOUT}s ($(listed) of $FILES listed)"
        break
    fi
    sleep 0.05
done

say "Idle: ${SETTLE}s to settle, then CPU over ${IDLE_SECS}s"
sleep "$SETTLE"
check_alive
hz=$(getconf CLK_TCK)
declare -A before
for pid in "$SERVER" "$ANNOUNCER" "$LISTENER"; do before[$pid]=$(cpu_ticks "$pid"); done
sleep "$IDLE_SECS"
check_alive
idle() { awk -v t="$(($(cpu_ticks "$1") - before[$1]))" -v hz="$hz" -v s="$IDLE_SECS" \
    'BEGIN { printf "%5.2f %% of a core (%d ticks of 1/%d s)", t / hz / s * 100, t, hz }'; }
idle_server=$(idle "$SERVER") idle_announcer=$(idle "$ANNOUNCER") idle_listener=$(idle "$LISTENER")
rss() { awk -v k="$(peak_rss_kib "$1")" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
rss_server=$(rss "$SERVER") rss_announcer=$(rss "$ANNOUNCER") rss_listener=$(rss "$LISTENER")
listed_end=$(listed)

# first_scan LOG: the seconds the chunk server says its first scan took, empty before.
first_scan() { sed -n 's/.*first scan of the shares done in \([0-9.]*\) s.*/\1/p' "$1" | tail -n 1; }
hashed_s=$(first_scan "$RUN/alice/server.log")
hashed_s=${hashed_s:-"(no 'first scan' line in server.log)"}

say "Restarting the chunk server on the same folder"
before_restart=$(grep -c '\] split ' "$RUN/alice/server.log" || true)
stop_pids INT 50 KILL "$SERVER"
PIDS=("$LISTENER" "$ANNOUNCER")
t1=$(now_ns)
start_bg "$RUN/chunk-server-2.log" "$BIN/chunk-server" --dir "$RUN/alice" --bind "$A_IP" \
    --port "$TCP_PORT" --share "$RUN/share"
until answers; do
    check_alive
    [ "$(elapsed_s "$t1")" -lt "$TIMEOUT" ] || fail "the restarted chunk server does not answer after ${TIMEOUT}s"
    sleep 0.005
done
relisten_s=$(secs_between "$t1" "$(now_ns)")
# Both runs log to server.log: the second "first scan" line is the restarted server's.
scans() { grep -c 'first scan of the shares done' "$RUN/alice/server.log" || true; }
until [ "$(scans)" -ge 2 ]; do
    check_alive
    [ "$(elapsed_s "$t1")" -lt "$TIMEOUT" ] || break
    sleep 0.05
done
rescan_s=$(first_scan "$RUN/alice/server.log")
[ "$(scans)" -ge 2 ] || rescan_s="not within ${TIMEOUT}s"
rehashed=$(($(grep -c '\] split ' "$RUN/alice/server.log" || true) - before_restart))

printf '\n== a peer sharing %d small files (%d folders), loopback ==\n' "$FILES" "$FOLDERS"
printf '  listen          %s s   (chunk-server start until it answers a request)\n' "$listen_s"
printf '  hashed          %s s   (its first scan, all %d files hashed: server.log)\n' "$hashed_s" "$FILES"
printf '  announced       %s s   (until the announcer announces all %d)\n' "$announced_s" "$FILES"
printf '  listed          %s s   (until the listener'"'"'s tags.txt lists all %d)\n' "$listed_s" "$FILES"
printf '  idle CPU        chunk-server %s\n' "$idle_server"
printf '                  announcer    %s\n' "$idle_announcer"
printf '                  listener     %s\n' "$idle_listener"
printf '  peak RSS        chunk-server %s, announcer %s, listener %s\n' "$rss_server" \
    "$rss_announcer" "$rss_listener"
printf '  listed at end   %s of %d\n' "$listed_end" "$FILES"
printf '  restart         listen %s s, first scan done in %s s, files hashed again: %s\n' \
    "$relisten_s" "$rescan_s" "$rehashed"
