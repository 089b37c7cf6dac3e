#!/usr/bin/env bash
# Benchmark: a peer sharing 10,000 files (issue 12, target 3). What its announcements cost on
# the wire, whether a listener on the same host loses datagrams, and how long a new listener
# takes to list every file.
#
#   peer alice 127.0.0.2   chunk-server sharing FILES small files + announcer (--interval)
#   listener   0.0.0.0     a listener of ours on the same host (same announce port)
#   legacy     127.0.0.9   a legacy peer (Python, the students' protocol): announces itself
#                          once a second for the first seconds, then every INTERVAL, and
#                          counts the chunk names of alice it receives (default receive
#                          buffer, as the real ones have)
#
# Everything runs in a network namespace of its own (ip netns), so the counters read are this
# run's only, whatever else the machine does: the datagrams and bytes alice sends to the
# announce port (an iptables counter in the namespace), the TCP bytes her chunk server sends
# (the catalog fetches, once there are any), the kernel's receive-buffer drops (UdpRcvbufErrors
# of the namespace, and the listener socket's own drops column in /proc/net/udp), and the
# datagrams the listener itself refused (its "dropped" warnings).
#
# Prints: the time until the listener's tags.txt lists all FILES contents of alice with their
# five chunks (from the listener's start), then, over ROUNDS announce intervals in steady
# state (during which one file is added, 2 s in), datagrams and bytes per interval, drops, how
# long the added file took to be listed, peak memory, and what the legacy peer got.
#
# Usage: ./scripts/bench-announce.sh
#   env: FILES=10000, INTERVAL=30 (alice's announce interval, s), ROUNDS=2 (intervals measured
#        after the listener listed everything, or gave up), BENCH_UDP_PORT=15300,
#        BENCH_TCP_PORT=15301, LEGACY=1 (0: no legacy peer), ANNOUNCER_ARGS (extra announcer
#        flags, e.g. "--legacy-list on"), LISTENER_ARGS (extra listener flags),
#        BIN_DIR (binaries to use; default: build them with cargo into
#        ${CARGO_TARGET_DIR:-target}/release), KEEP=1 keeps the work folder.
#
# Needs root (ip netns, iptables in the namespace) and python3. Only the processes this script
# started are signalled, by their PIDs; the namespace is deleted at the end.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

FILES=${FILES:-10000}
INTERVAL=${INTERVAL:-30}
ROUNDS=${ROUNDS:-2}
UDP_PORT=${BENCH_UDP_PORT:-15300}
TCP_PORT=${BENCH_TCP_PORT:-15301}
LEGACY=${LEGACY:-1}
A_IP=127.0.0.2
LEGACY_IP=127.0.0.9
BROADCAST=127.255.255.255:$UDP_PORT
NS=p2pann$$

PIDS=()
NAMES=()
NAME_LOGS=()
WORK=""
LEGACY_PID=""

fail() { bench_fail "$@"; }
on_exit bench_cleanup

in_ns() { ip netns exec "$NS" "$@"; }
# start NAME PROGRAM ARGS...: a program in the namespace, its output in WORK/NAME.log.
start() { start_in_ns "$@"; }

# The packets and bytes (UDP payload) alice sent to the announce port, and the bytes her chunk
# server sent over TCP (payload and headers), since the counters were last zeroed.
counters() {
    in_ns iptables -L OUTPUT -v -n -x | awk -v port="$UDP_PORT" -v tcp="$TCP_PORT" '
        $0 ~ "udp dpt:" port "$" { up = $1; ub = $2 - 28 * $1 }
        $0 ~ "tcp spt:" tcp "$" { tb = $2 }
        END { printf "%d %d %d\n", up, ub, tb }'
}
# The namespace's UDP receive-buffer errors so far.
rcvbuf_errors() { in_ns awk '/^Udp:/ { if (!h) { h = 1; for (i = 1; i <= NF; i++) c[$i] = i } else print $c["RcvbufErrors"] }' /proc/net/snmp; }
# socket_drops PID: the drops column of the UDP sockets of process PID bound to the announce
# port (summed).
socket_drops() {
    local pid=$1 inodes
    # A descriptor closed while find walks the folder makes it fail: what it found still counts.
    inodes=$({ find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null || true; } |
        tr -dc '0-9\n' | paste -sd '|')
    [ -n "$inodes" ] || { echo 0; return; }
    in_ns awk -v port="$(printf '%04X' "$UDP_PORT")" -v inodes="^($inodes)\$" '
        NR > 1 { split($2, a, ":"); if (a[2] == port && $10 ~ inodes) d += $NF } END { print d + 0 }' /proc/net/udp
}
# listed: how many contents of alice tags.txt lists with all five chunks.
listed() {
    [ -f "$WORK/listener/tags.txt" ] || { echo 0; return; }
    awk '$1 == "alice" && $6 == "12345" { n++ } END { print n + 0 }' "$WORK/listener/tags.txt"
}
# intake_drops: datagrams the listener dropped itself (its warnings; source rate, full queue).
intake_drops() {
    # "dropped N datagrams (… bytes) from … sending more than …[; M datagrams because more
    # than … bytes were waiting]", or "dropped M datagrams because …".
    { grep -oE '(dropped|;) [0-9]+ datagrams' "$WORK/listener.log" 2>/dev/null || true; } |
        awk '{ n += $2 } END { print n + 0 }'
}

# ---------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "needs root (ip netns, iptables)"
command -v python3 >/dev/null || fail "needs python3"
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || fail "FILES must be a positive number"

if [ -z "${BIN_DIR:-}" ]; then
    say "Building release binaries (chunk-server, announcer, listener)"
    (cd "$ROOT" && build_release chunk-server announcer listener) || fail "the build failed"
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
for b in chunk-server announcer listener; do
    [ -x "$BIN_DIR/$b" ] || fail "no $b binary in $BIN_DIR"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-announce.XXXXXX")
BENCH_WORK=$WORK
bench_netns "$NS" || fail "cannot create the network namespace $NS"
in_ns iptables -A OUTPUT -p udp -s "$A_IP" --dport "$UDP_PORT"
in_ns iptables -A OUTPUT -p tcp -s "$A_IP" --sport "$TCP_PORT"

say "Writing $FILES files to share ($WORK/alice/served_files)"
mkdir -p "$WORK/alice/served_files" "$WORK/listener" "$WORK/legacy"
python3 - "$WORK/alice/served_files" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(root, f"file-{i:05d}.txt"), "w") as f:
        f.write(f"file number {i} of the announce benchmark\n" * (1 + i % 7))
PY

say "Starting alice's chunk server; waiting until it has hashed every file"
t0=$(date +%s%N)
start chunk-server "$BIN_DIR/chunk-server" --dir "$WORK/alice" --bind "$A_IP" --port "$TCP_PORT"
hashed() { [ "$(find "$WORK/alice/temp/.manifests" -name '*.json' 2>/dev/null | wc -l)" -ge "$FILES" ]; }
WAIT_CHECK=check_alive wait_for 600 0.2 hashed || fail "the chunk server did not hash $FILES files in 600 s"
printf '    hashed %d files in %.1f s\n' "$FILES" "$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)"

if [ "$LEGACY" = 1 ]; then
    # A legacy peer: announces {"username": "ece", "files": ["ece_1"]} by broadcast (every
    # second for 5 s, then every INTERVAL), and counts what alice sends it.
    cat >"$WORK/legacy/peer.py" <<'PY'
import json, os, socket, sys, time
ip, port, interval, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.bind(("0.0.0.0", port))
rx.settimeout(0.2)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
tx.bind((ip, 0))
hello = json.dumps({"username": "ece", "files": ["ece_1"]}).encode()
datagrams, names, start, sent, next_send, next_write = 0, set(), time.time(), 0, 0, 0
while True:
    now = time.time()
    if now >= next_send:
        tx.sendto(hello, ("127.255.255.255", port))
        sent += 1
        next_send = now + (1 if sent < 5 else interval)
    try:
        data, (src, _) = rx.recvfrom(1024)  # as the real ones read
        if src == "127.0.0.2":
            datagrams += 1
            names.update(f for f in json.loads(data).get("files", []) if isinstance(f, str))
    except (socket.timeout, ValueError):
        pass
    if now >= next_write:
        with open(out + ".tmp", "w") as f:
            f.write(f"{datagrams} {len(names)}\n")
        os.replace(out + ".tmp", out)
        next_write = now + 0.5
PY
    start legacy python3 "$WORK/legacy/peer.py" "$LEGACY_IP" "$UDP_PORT" "$INTERVAL" "$WORK/legacy/stats"
    LEGACY_PID=${PIDS[-1]}
fi

say "Starting alice's announcer (--interval $INTERVAL ${ANNOUNCER_ARGS:-})"
# shellcheck disable=SC2086
start announcer "$BIN_DIR/announcer" --dir "$WORK/alice" --bind "$A_IP" --broadcast "$BROADCAST" \
    --port "$UDP_PORT" --interval "$INTERVAL" --username alice -v ${ANNOUNCER_ARGS:-}
ANNOUNCER_PID=${PIDS[-1]}
sleep 2

say "Starting a listener on the same host; timing until tags.txt lists all $FILES files"
drops_before=$(rcvbuf_errors)
t0=$(date +%s%N)
# shellcheck disable=SC2086
start listener "$BIN_DIR/listener" --dir "$WORK/listener" --port "$UDP_PORT" \
    --broadcast "$BROADCAST" --max-entries $((FILES * 2)) --max-entries-per-source $((FILES * 2)) \
    ${LISTENER_ARGS:-}
LISTENER_PID=${PIDS[-1]}
limit=$((INTERVAL * 3 + 30))
all_ms=""
while :; do
    n=$(listed)
    if [ "$n" -ge "$FILES" ]; then all_ms=$((($(date +%s%N) - t0) / 1000000)); break; fi
    if [ $((($(date +%s%N) - t0) / 1000000000)) -ge "$limit" ]; then break; fi
    check_alive
    sleep 0.05
done
if [ -n "$all_ms" ]; then
    printf '    tags.txt lists all %d files after %d ms\n' "$FILES" "$all_ms"
else
    printf '    tags.txt lists %d of %d files after %d s (gave up)\n' "$(listed)" "$FILES" "$limit"
fi

say "Steady state: $ROUNDS announce intervals of $INTERVAL s"
in_ns iptables -Z OUTPUT
window_rcvbuf=$(rcvbuf_errors)
window_sock=$(socket_drops "$LISTENER_PID")
window_ears=$(socket_drops "$ANNOUNCER_PID")
window_legacy=$( [ -n "$LEGACY_PID" ] && socket_drops "$LEGACY_PID" || echo 0)
window_intake=$(intake_drops)
# A file added 2 s into the window: how long until the listener lists it.
added_ms=""
added_at=$((($(date +%s%N) + 2000000000)))
samples=()
for _ in $(seq $((ROUNDS * INTERVAL * 10))); do
    sleep 0.1
    now=$(date +%s%N)
    if [ "$now" -ge "$added_at" ] && [ ! -e "$WORK/alice/served_files/added-later.txt" ]; then
        echo "a file added during the benchmark" >"$WORK/alice/served_files/added-later.txt"
        added_at=$(date +%s%N)
    fi
    if [ -z "$added_ms" ] && [ -e "$WORK/alice/served_files/added-later.txt" ] &&
        awk '$1 == "alice" && $5 == "added-later.txt" && $6 == "12345" { f = 1 } END { exit !f }' \
            "$WORK/listener/tags.txt"; then
        added_ms=$(((now - added_at) / 1000000))
    fi
    samples+=("$(listed)")
    check_alive
done
read -r packets bytes tcp_bytes < <(counters)
end_rcvbuf=$(rcvbuf_errors)
end_sock=$(socket_drops "$LISTENER_PID")
end_ears=$(socket_drops "$ANNOUNCER_PID")
end_legacy=$( [ -n "$LEGACY_PID" ] && socket_drops "$LEGACY_PID" || echo 0)
end_intake=$(intake_drops)
min_listed=$(printf '%s\n' "${samples[@]}" | sort -n | head -n 1)
max_listed=$(printf '%s\n' "${samples[@]}" | sort -n | tail -n 1)

printf '\n== %d shared files, announce interval %d s%s ==\n' "$FILES" "$INTERVAL" \
    "${ANNOUNCER_ARGS:+ (announcer ${ANNOUNCER_ARGS})}"
if [ -n "$all_ms" ]; then
    printf '  listed all           %d ms after the listener started\n' "$all_ms"
else
    printf '  listed all           never within %d s (%d of %d)\n' "$limit" "${samples[0]}" "$FILES"
fi
printf '  per interval         %s datagrams, %s bytes of UDP payload to the announce port; %s bytes over TCP from the chunk server\n' \
    "$(echo "$packets / $ROUNDS" | bc)" "$(echo "$bytes / $ROUNDS" | bc)" "$(echo "$tcp_bytes / $ROUNDS" | bc)"
printf '  receiver drops       in the window: kernel %d (UdpRcvbufErrors of the namespace), of which listener socket %d, legacy peer socket %d, announcer query sockets %d; listener intake (its own limits) %d\n' \
    "$((end_rcvbuf - window_rcvbuf))" "$((end_sock - window_sock))" "$((end_legacy - window_legacy))" "$((end_ears - window_ears))" "$((end_intake - window_intake))"
printf '                       since the listener started: kernel %d\n' "$((end_rcvbuf - drops_before))"
printf '  tags.txt in window   %d..%d of %d files listed (%d with the one added)\n' "$min_listed" "$max_listed" "$FILES" "$((FILES + 1))"
if [ -n "$added_ms" ]; then
    printf '  a file added         listed %d ms after it was written (hashed, announced, fetched)\n' "$added_ms"
else
    printf '  a file added         not listed by the end of the window\n'
fi
hwm() { awk '/^VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
printf '  peak RSS             chunk-server %s, announcer %s, listener %s\n' \
    "$(hwm "${PIDS[0]}")" "$(hwm "$ANNOUNCER_PID")" "$(hwm "$LISTENER_PID")"
if [ "$LEGACY" = 1 ] && [ -f "$WORK/legacy/stats" ]; then
    read -r l_datagrams l_names <"$WORK/legacy/stats"
    printf '  legacy peer          received %d datagrams from alice, %d distinct chunk names (of %d)\n' \
        "$l_datagrams" "$l_names" "$((FILES * 5))"
fi
