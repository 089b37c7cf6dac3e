#!/usr/bin/env bash
# Benchmark: the time to share a folder, next to `cp -r` and `sha256sum` of the same folder.
#
# Creates a folder of FILES pseudo-random files totalling SIZE (default 5G: 20 × 256 MiB) and a
# peer folder beside it, on the same disk; then, in one run:
#   cp -r       copies the folder (what sharing used to cost: every file copied into temp/)
#   sha256sum   hashes every file once
#   share       starts a chunk server sharing the folder (--share) and waits until its store
#               lists every file as servable (one manifest per file in temp/.manifests/); the
#               files are served in place, so this is one read and hash of each
# and prints the three times, with how many bytes sharing added under the peer folder. The
# files were just written, so the three read them as the page cache holds them (on a machine
# with less free memory than SIZE, from disk, in the same way for the three).
#
# Usage: ./scripts/bench-share.sh
#   env: SIZE=5G (total, with a K/M/G suffix: SIZE=1G for a quick run), FILES=20,
#        BENCH_DIR=target (where the temporary folder goes: on the disk being measured, not a
#        tmpfs), BENCH_TCP_PORT=15201, BENCH_TIMEOUT=600 (seconds the share may take),
#        KEEP=1 keeps the temporary folder (its path is printed)
#
# Only the processes this script starts are ever signalled, by their PIDs.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZE=${SIZE:-5G}
FILES=${FILES:-20}
BASE=${BENCH_DIR:-target}
TCP_PORT=${BENCH_TCP_PORT:-15201}
TIMEOUT=${BENCH_TIMEOUT:-600}
KEEP=${KEEP:-0}
BIN=${CARGO_TARGET_DIR:-target}/release
IP=127.0.0.2

PIDS=()  # every process started and not yet stopped
RUN=""

fail() {
    printf '\nbench-share failed: %s\n' "$*" >&2
    if [ -n "$RUN" ]; then tail_logs ' (last lines)' "$RUN"/peer/server.log "$RUN"/chunk-server.out; fi
    exit 1
}

on_exit bench_cleanup # stops PIDS, removes BENCH_WORK (= RUN once made) unless KEEP=1

check_alive() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || fail "the chunk server exited early (PID $pid)"
    done
}

now_ns() { date +%s%N; }
seconds_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# ---------------------------------------------------------------------------------------------
total=$(numfmt --from=iec "$SIZE" 2>/dev/null) || fail "SIZE must be a size like 5G or 512M, not '$SIZE'"
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || fail "FILES must be a positive number, not '$FILES'"
each=$((total / FILES))
[ "$each" -gt 0 ] || fail "SIZE $SIZE is too small for $FILES files"
port_busy tcp "$TCP_PORT" && fail "TCP port $TCP_PORT is in use; pick another with BENCH_TCP_PORT"

say "Building the release chunk-server"
build_release chunk-server || fail "the build failed"

mkdir -p "$BASE"
RUN=$(mktemp -d "$BASE/bench-share.XXXXXX")
RUN=$(cd "$RUN" && pwd)
BENCH_WORK=$RUN
free=$(df -B1 --output=avail "$RUN" | tail -n 1)
[ "$free" -gt $((total * 2 + (1 << 30))) ] ||
    fail "$RUN has $free bytes free; the run needs twice SIZE ($total) and 1 GiB to spare"

say "Writing $FILES files of $(numfmt --to=iec "$each") in $RUN/folder"
mkdir -p "$RUN/folder" "$RUN/peer"
for i in $(seq -w 1 "$FILES"); do
    # Pseudo-random, incompressible: AES-CTR of zeros under a random key, much faster than
    # /dev/urandom; falls back to /dev/urandom without openssl.
    if command -v openssl >/dev/null 2>&1; then
        head -c "$each" /dev/zero |
            openssl enc -aes-128-ctr -nosalt -pass "pass:$RANDOM$RANDOM$i" -pbkdf2 2>/dev/null \
                >"$RUN/folder/file$i.bin"
    else
        head -c "$each" /dev/urandom >"$RUN/folder/file$i.bin"
    fi
done
sync
bytes=$(find "$RUN/folder" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')

say "cp -r"
t0=$(now_ns)
cp -r "$RUN/folder" "$RUN/copy"
sync
cp_s=$(seconds_since "$t0")
rm -rf "$RUN/copy"
sync

say "sha256sum"
t0=$(now_ns)
sha256sum "$RUN"/folder/* >/dev/null
sha_s=$(seconds_since "$t0")

say "chunk-server --share (until its store lists all $FILES files as servable)"
manifests=$RUN/peer/temp/.manifests
t0=$(now_ns)
start_bg "$RUN/chunk-server.out" "$BIN/chunk-server" --dir "$RUN/peer" --bind "$IP" \
    --port "$TCP_PORT" --share "$RUN/folder"
servable() { [ "$(find "$manifests" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l)" -ge "$FILES" ]; }
until servable; do
    check_alive
    [ "$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { print int((b - a) / 1e9) }')" -lt "$TIMEOUT" ] ||
        fail "the store does not list all $FILES files after ${TIMEOUT}s"
    sleep 0.02
done
share_s=$(seconds_since "$t0")
stop_pids INT 50 KILL "${PIDS[@]}"
PIDS=()
added=$(find "$RUN/peer" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')

printf '\n== sharing %s (%d files, %s bytes) on %s ==\n' "$(numfmt --to=iec "$bytes")" "$FILES" \
    "$bytes" "$(df --output=source "$RUN" | tail -n 1)"
awk -v b="$bytes" -v cp="$cp_s" -v sha="$sha_s" -v share="$share_s" 'BEGIN {
    printf "  cp -r         %7.2f s   %7.1f MB/s\n", cp, b / cp / 1e6
    printf "  sha256sum     %7.2f s   %7.1f MB/s\n", sha, b / sha / 1e6
    printf "  share         %7.2f s   %7.1f MB/s   (chunk-server start until all files servable)\n", share, b / share / 1e6
}'
printf '  disk added by sharing: %s bytes under the peer folder (manifests and logs)\n' "$added"
