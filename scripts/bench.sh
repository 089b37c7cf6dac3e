#!/usr/bin/env bash
# Benchmark: a 1 GiB single-source download over loopback, with release binaries.
#
#   peer A 127.0.0.2   chunk-server + announcer, sharing bench-net/a/served_files/big.bin
#   peer C 127.0.0.3   listener, then `downloader get big.bin`
#
# Every program runs under /usr/bin/time -v, which records its peak resident set size. Prints the
# download throughput, each program's peak RSS and how long the chunk server took to split the
# file, and checks that the download is identical to the original.
#
# Usage: ./scripts/bench.sh
#   env: BENCH_UDP_PORT=15000 BENCH_TCP_PORT=15001 BENCH_SIZE=1073741824 (bytes)
#        BENCH_TIMEOUT=600 (seconds to wait for the split and the announcement)
#        KEEP=1 keeps bench-net/ (about 4 x BENCH_SIZE of disk) instead of removing it
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UDP_PORT=${BENCH_UDP_PORT:-15000}
TCP_PORT=${BENCH_TCP_PORT:-15001}
SIZE=${BENCH_SIZE:-1073741824}
TIMEOUT=${BENCH_TIMEOUT:-600}
KEEP=${KEEP:-0}
NET=bench-net
BIN=target/release
TIME=/usr/bin/time
A_IP=127.0.0.2
C_IP=127.0.0.3
FILE=big.bin

PIDS=()        # the /usr/bin/time processes we started, one per long-running program
NAMES=()       # the program each of them runs
NAME_LOGS=()   # and its log

fail() {
    printf '\nbench failed: %s\n' "$*" >&2
    tail_logs ' (last lines)' "$NET"/logs/*
    exit 1
}

# The program /usr/bin/time runs: its only child.
child_of() { pgrep -P "$1" | head -n 1; }

# Stops the programs we started. The signal goes to the program itself (found by parent PID), not
# to `time`, so that `time` outlives it and writes its report; SIGINT is the programs' clean
# Ctrl-C shutdown, SIGTERM the fallback five seconds later.
stop_programs() {
    local tpid child i alive
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    for tpid in "${PIDS[@]}"; do
        child=$(child_of "$tpid" || true)
        if [ -n "$child" ]; then kill -INT "$child" 2>/dev/null || true; fi
    done
    for i in $(seq 50); do
        alive=0
        for tpid in "${PIDS[@]}"; do kill -0 "$tpid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for tpid in "${PIDS[@]}"; do
        child=$(child_of "$tpid" || true)
        if [ -n "$child" ]; then kill "$child" 2>/dev/null || true; fi
    done
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_programs
    if [ "$KEEP" = 1 ]; then
        echo "Kept $NET/ (KEEP=1)."
    else
        rm -rf "$NET"
    fi
    exit "$status"
}
on_exit cleanup

# start NAME PROGRAM ARGS...: runs a program in the background under /usr/bin/time -v.
start() {
    local name=$1 program=$2
    shift 2
    start_named "$name" "$NET/logs/$name.log" "$TIME" -v -o "$NET/time-$name.txt" "$BIN/$program" "$@"
}

# Peak RSS in MiB from a `time -v` report.
rss_mib() {
    awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) printf "?" }' "$1" 2>/dev/null ||
        printf '?'
}

# ---------------------------------------------------------------------------------------------
if [ ! -x "$TIME" ]; then
    say "Installing GNU time (/usr/bin/time is missing)"
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time </dev/null ||
            { apt-get update -qq </dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time </dev/null; } ||
            fail "cannot install the Debian package 'time'"
    else
        fail "/usr/bin/time is missing: install it with 'sudo apt-get install time'"
    fi
fi

say "Building release binaries"
build_release || fail "the build failed"

port_busy udp "$UDP_PORT" && fail "UDP port $UDP_PORT is in use; pick another with BENCH_UDP_PORT"
port_busy tcp "$TCP_PORT" && fail "TCP port $TCP_PORT is in use; pick another with BENCH_TCP_PORT"

rm -rf "$NET"
mkdir -p "$NET/logs" "$NET/a/served_files" "$NET/c"
need_kib=$((SIZE * 4 / 1024 + 1024 * 1024))
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
[ "$free_kib" -ge "$need_kib" ] ||
    fail "not enough disk space: need about $((need_kib / 1024)) MiB in $PWD, have $((free_kib / 1024)) MiB"

say "Creating $NET/a/served_files/$FILE ($SIZE bytes)"
src=$NET/a/served_files/$FILE
t0=$(date +%s%N)
if command -v openssl >/dev/null 2>&1; then
    # AES-CTR of zeros: incompressible, deterministic and much faster than /dev/urandom.
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:p2p-bench </dev/zero 2>/dev/null | head -c "$SIZE" >"$src" || true
fi
if [ "$(stat -c %s "$src" 2>/dev/null || echo 0)" -ne "$SIZE" ]; then
    head -c "$SIZE" /dev/urandom >"$src"
fi
printf '    %s ms\n' $((($(date +%s%N) - t0) / 1000000))

say "Starting peer A ($A_IP: chunk-server, announcer) and peer C ($C_IP: listener)"
start chunk-server chunk-server --dir "$NET/a" --bind "$A_IP" --port "$TCP_PORT"
start listener listener --dir "$NET/c" --port "$UDP_PORT"
start announcer announcer --dir "$NET/a" --bind "$A_IP" --broadcast "127.255.255.255:$UDP_PORT" \
    --port "$UDP_PORT" --interval 2 --chunk-port "$TCP_PORT" --username bench-a
sleep 0.5
check_alive

say "Waiting for the split and for C to hear A (up to ${TIMEOUT}s)"
WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.2 tags_lists "$NET/c/tags.txt" "$FILE" bench-a ||
    fail "C's tags.txt does not list $FILE after ${TIMEOUT}s"
split_ms=$(sed -n "s/.*split $FILE ([0-9]* bytes) into [0-9]* chunks in \([0-9]*\) ms.*/\1/p" "$NET/a/server.log" | tail -n 1)

say "C: downloader get $FILE"
t0=$(date +%s%N)
out=$("$TIME" -v -o "$NET/time-downloader.txt" "$BIN/downloader" --dir "$NET/c" get "$FILE" \
    </dev/null 2>"$NET/logs/downloader.log") || fail "downloader get $FILE failed"
elapsed_ns=$(($(date +%s%N) - t0))
path=$(tail -n 1 <<<"$out")
[ "$path" -ef "$NET/c/downloads/$FILE" ] || fail "expected the path of $NET/c/downloads/$FILE on stdout, got: $out"

stop_programs

say "Verifying"
cmp "$src" "$path" || fail "the download differs from the original"
sum_src=$(sha256sum "$src" | cut -d' ' -f1)
sum_dst=$(sha256sum "$path" | cut -d' ' -f1)
[ "$sum_src" = "$sum_dst" ] || fail "sha256 differs: $sum_src vs $sum_dst"

awk -v b="$SIZE" -v ns="$elapsed_ns" -v split_ms="${split_ms:-}" \
    -v rss_cs="$(rss_mib "$NET/time-chunk-server.txt")" -v rss_an="$(rss_mib "$NET/time-announcer.txt")" \
    -v rss_li="$(rss_mib "$NET/time-listener.txt")" -v rss_dl="$(rss_mib "$NET/time-downloader.txt")" \
    -v sum="$sum_dst" 'BEGIN {
    s = ns / 1e9
    if (b >= 1073741824) size = sprintf("%.2f GiB", b / 1073741824); else size = sprintf("%.1f MiB", b / 1048576)
    printf "\n== %s single-source download over loopback ==\n", size
    printf "  download      %.2f s   %.1f MB/s   %.1f MiB/s   (%d bytes, downloader get, wall clock)\n", s, b / s / 1e6, b / s / 1048576, b
    if (split_ms != "") printf "  split         %.2f s   %.1f MB/s   (chunk-server, from server.log)\n", split_ms / 1000, (split_ms > 0 ? b / (split_ms / 1000) / 1e6 : 0)
    else printf "  split         ?        (no split line in server.log)\n"
    printf "  peak RSS      chunk-server %s MiB, announcer %s MiB, listener %s MiB, downloader %s MiB\n", rss_cs, rss_an, rss_li, rss_dl
    printf "  verified      identical (cmp), sha256 %s\n", sum
}'
