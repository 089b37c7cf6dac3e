#!/usr/bin/env bash
# Benchmark: what the encrypted channel of a private network costs. A 1 GiB single-source
# download over loopback with release binaries, keyed (private network) and open, in the same
# run, alternating, several times each; prints the median MB/s of each and their ratio.
#
#   keyed  peer A 127.0.0.2  chunk-server + announcer   peer C 127.0.0.3  listener + downloader
#   open   peer B 127.0.0.4  chunk-server + announcer   peer D 127.0.0.5  listener + downloader
#
# A and C share one network key (written as `downloader network join` would: a random 32-byte
# key, no passphrase needed for a benchmark); B and D have none. Both chunk servers share the same
# file. Before each download the downloader's temp/ and downloads/ are emptied, so every run
# fetches all five chunks; each download is checked against the original (sha256).
#
# Usage: ./scripts/bench-private.sh
#   env: BENCH_RUNS=5 (downloads of each kind) BENCH_SIZE=1073741824 (bytes)
#        BENCH_UDP_PORT=15100 (keyed; open uses +1) BENCH_TCP_PORT=15101 (keyed; open uses +2)
#        BENCH_TIMEOUT=600 (seconds to wait for the splits and the announcements)
#        KEEP=1 keeps bench-private-net/ (about 6 x BENCH_SIZE of disk) instead of removing it
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${BENCH_RUNS:-5}
SIZE=${BENCH_SIZE:-1073741824}
UDP_KEYED=${BENCH_UDP_PORT:-15100}
UDP_OPEN=$((UDP_KEYED + 1))
TCP_KEYED=${BENCH_TCP_PORT:-15101}
TCP_OPEN=$((TCP_KEYED + 2))
TIMEOUT=${BENCH_TIMEOUT:-600}
KEEP=${KEEP:-0}
NET=bench-private-net
BIN=${CARGO_TARGET_DIR:-target}/release
FILE=big.bin

PIDS=()
NAMES=()
NAME_LOGS=()

fail() {
    printf '\nbench failed: %s\n' "$*" >&2
    tail_logs ' (last lines)' "$NET"/logs/*
    exit 1
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pids INT 50 TERM "${PIDS[@]}"
    if [ "$KEEP" = 1 ]; then
        echo "Kept $NET/ (KEEP=1)."
    else
        rm -rf "$NET"
    fi
    exit "$status"
}
on_exit cleanup

start() {
    local name=$1 program=$2
    shift 2
    start_named "$name" "$NET/logs/$name.log" "$BIN/$program" "$@"
}

# ---------------------------------------------------------------------------------------------
say "Building release binaries"
cargo build --release --quiet -p chunk-server -p announcer -p listener -p downloader ||
    fail "the build failed"

for port in "udp $UDP_KEYED" "udp $UDP_OPEN" "tcp $TCP_KEYED" "tcp $TCP_OPEN"; do
    # shellcheck disable=SC2086
    port_busy $port && fail "port $port is in use; pick others with BENCH_UDP_PORT/BENCH_TCP_PORT"
done

rm -rf "$NET"
mkdir -p "$NET/logs" "$NET/a" "$NET/b" "$NET/c" "$NET/d"
need_kib=$((SIZE * 6 / 1024 + 1024 * 1024))
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
[ "$free_kib" -ge "$need_kib" ] ||
    fail "not enough disk space: need about $((need_kib / 1024)) MiB in $PWD, have $((free_kib / 1024)) MiB"

say "Creating $NET/$FILE ($SIZE bytes)"
src=$NET/$FILE
if command -v openssl >/dev/null 2>&1; then
    # AES-CTR of zeros: incompressible, deterministic and much faster than /dev/urandom.
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:p2p-bench </dev/zero 2>/dev/null | head -c "$SIZE" >"$src" || true
fi
if [ "$(stat -c %s "$src" 2>/dev/null || echo 0)" -ne "$SIZE" ]; then
    head -c "$SIZE" /dev/urandom >"$src"
fi
sum_src=$(sha256sum "$src" | cut -d' ' -f1)

# The network key of A and C, in the format of DIR/network.key.
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for peer in a c; do
    (umask 077 && printf '# p2p network key (benchmark)\nkey %s\n' "$key" >"$NET/$peer/network.key")
done

say "Starting keyed A (127.0.0.2) -> C (127.0.0.3) and open B (127.0.0.4) -> D (127.0.0.5)"
start chunk-server-a chunk-server --dir "$NET/a" --bind 127.0.0.2 --port "$TCP_KEYED" --share "$src"
start chunk-server-b chunk-server --dir "$NET/b" --bind 127.0.0.4 --port "$TCP_OPEN" --share "$src"
start listener-c listener --dir "$NET/c" --port "$UDP_KEYED" --broadcast "127.255.255.255:$UDP_KEYED"
start listener-d listener --dir "$NET/d" --port "$UDP_OPEN" --broadcast "127.255.255.255:$UDP_OPEN"
start announcer-a announcer --dir "$NET/a" --bind 127.0.0.2 --broadcast "127.255.255.255:$UDP_KEYED" \
    --port "$UDP_KEYED" --interval 2 --chunk-port "$TCP_KEYED" --username bench-keyed
start announcer-b announcer --dir "$NET/b" --bind 127.0.0.4 --broadcast "127.255.255.255:$UDP_OPEN" \
    --port "$UDP_OPEN" --interval 2 --chunk-port "$TCP_OPEN" --username bench-open
sleep 0.5
check_alive
grep -q "private network" "$NET/a/server.log" || fail "A's chunk server does not say it is on a private network"

say "Waiting for the splits and the announcements (up to ${TIMEOUT}s)"
WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.2 tags_lists "$NET/c/tags.txt" "$FILE" bench-keyed ||
    fail "C's tags.txt does not list $FILE after ${TIMEOUT}s"
WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.2 tags_lists "$NET/d/tags.txt" "$FILE" bench-open ||
    fail "D's tags.txt does not list $FILE after ${TIMEOUT}s"

# download PEER: one timed `downloader get` into an emptied folder; prints MB/s.
download() {
    local peer=$1 t0 ns out path
    rm -rf "$NET/$peer/temp" "$NET/$peer/downloads"
    sync
    t0=$(date +%s%N)
    out=$("$BIN/downloader" --dir "$NET/$peer" get "$FILE" </dev/null 2>>"$NET/logs/downloader-$peer.log") ||
        fail "downloader get $FILE by $peer failed"
    ns=$(($(date +%s%N) - t0))
    path=$(tail -n 1 <<<"$out")
    [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$sum_src" ] || fail "$peer's download differs from the original"
    awk -v b="$SIZE" -v ns="$ns" 'BEGIN { printf "%.1f", b / (ns / 1e9) / 1e6 }'
}

keyed=()
open=()
for i in $(seq "$RUNS"); do
    # Alternating (open first on even runs), so a drift of the machine's load touches both.
    if [ $((i % 2)) -eq 1 ]; then
        keyed+=("$(download c)")
        open+=("$(download d)")
    else
        open+=("$(download d)")
        keyed+=("$(download c)")
    fi
    printf '    run %d: keyed %s MB/s, open %s MB/s\n' "$i" "${keyed[-1]}" "${open[-1]}"
done

served=$(grep -c ' served .*proto=p2p' "$NET/a/server.log" || true)
ids=$(grep ' served ' "$NET/a/server.log" | grep -c ' id=' || true)
[ "$ids" -gt 0 ] && [ "$ids" -eq "$served" ] ||
    fail "A's served events do not all name the client's peer ID: the keyed runs were not encrypted"

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mk=$(median "${keyed[@]}")
mo=$(median "${open[@]}")
awk -v k="$mk" -v o="$mo" -v runs="$RUNS" -v b="$SIZE" -v sum="$sum_src" 'BEGIN {
    if (b >= 1073741824) size = sprintf("%.2f GiB", b / 1073741824); else size = sprintf("%.1f MiB", b / 1048576)
    printf "\n== %s single-source download over loopback, keyed vs open (median of %d each) ==\n", size, runs
    printf "  keyed (encrypted channel)  %8.1f MB/s\n", k
    printf "  open (plaintext)           %8.1f MB/s\n", o
    printf "  keyed / open               %8.3f   (encryption costs %.1f %%; target < 25 %%)\n", k / o, (1 - k / o) * 100
    printf "  verified                   every download identical, sha256 %s\n", sum
}'
