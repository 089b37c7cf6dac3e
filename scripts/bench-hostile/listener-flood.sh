#!/usr/bin/env bash
# Listener under a flood (issue 7, defect 4): how long an honest peer takes to appear in
# tags.txt while several hosts flood the listener with 64 KB announcements of thousands of
# fake chunk names, and what the flood costs the listener (peak memory, bytes written, CPU).
#
#   scripts/bench-hostile/listener-flood.sh
#
# Environment (all optional):
#   BIN_DIR          folder holding the `listener` binary (default: builds it with
#                    `cargo build --release -p listener` and uses target/release)
#   FLOOD_UDP_PORT   UDP port of the listener (default 15500)
#   FLOOD_SECS       how long the flood lasts (default 20)
#   FLOOD_RATE       flood datagrams per second, all sources together (default 2000)
#   FLOOD_BYTES      size of each flood datagram (default 64000)
#   FLOOD_SOURCES    how many flooding addresses, 127.0.0.21 and up (default 4, at most 200;
#                    the honest peer is 127.0.0.20)
#   LISTENER_ARGS    more listener flags, e.g. "--max-entries 50000" (default: none)
#   KEEP=1           keep the work folder (tags.txt, the listener's log)
#
# Only 127.0.0.x addresses are used. Bounded: the flood lasts FLOOD_SECS, the honest peer is
# given at most FLOOD_SECS + 10 s, and the listener is stopped (SIGTERM, then SIGKILL after
# 5 s) by the process id this script started; the whole run takes FLOOD_SECS + 30 s at most.
set -euo pipefail

. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${FLOOD_UDP_PORT:-15500}
SECS=${FLOOD_SECS:-20}
RATE=${FLOOD_RATE:-2000}
BYTES=${FLOOD_BYTES:-64000}
SOURCES=${FLOOD_SOURCES:-4}
(( SOURCES >= 1 && SOURCES <= 200 )) || { echo "FLOOD_SOURCES must be 1..200" >&2; exit 2; }
HONEST_IP=127.0.0.20

if [[ -z "${BIN_DIR:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p listener >&2)
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
LISTENER="$BIN_DIR/listener"
[[ -x "$LISTENER" ]] || { echo "no listener binary at $LISTENER" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the flooder" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/listener-flood.XXXXXX")
LISTENER_PID=""
FLOOD_PID=""
cleanup() {
    for pid in $FLOOD_PID $LISTENER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $FLOOD_PID $LISTENER_PID; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

mkdir -p "$WORK/peer"
TAGS="$WORK/peer/tags.txt"
# The start-up query goes to the listener's own port: nobody else is there to answer.
# shellcheck disable=SC2086 # LISTENER_ARGS is a list of flags
"$LISTENER" --dir "$WORK/peer" --port "$PORT" --broadcast "127.0.0.1:$PORT" \
    ${LISTENER_ARGS:-} 2>"$WORK/listener.log" &
LISTENER_PID=$!
wait_for 5 0.05 test -s "$TAGS" || { echo "the listener did not start; see $WORK/listener.log" >&2; exit 1; }

# The flooder: FLOOD_SOURCES sockets on 127.0.0.21.., round robin, each datagram one of our
# announcements listing chunk 1 of ~FLOOD_BYTES/20 contents never announced before.
python3 - "$PORT" "$SECS" "$RATE" "$BYTES" "$SOURCES" >"$WORK/flood.out" <<'PY' &
import socket, sys, time
port, secs, rate, size, sources = (int(a) for a in sys.argv[1:])
socks = []
for i in range(sources):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((f"127.0.0.{21 + i}", 0))
    socks.append(s)
head = b'{"username":"flood","files":['
tail = b'],"p2p":{"v":1,"port":6001,"interval":60,"contents":{}}}'
names, n = [], 0
while len(head) + len(tail) + sum(len(x) + 1 for x in names) < size - 30:
    names.append(b'"junk-@@@@@@@@-%05d_1"' % n)
    n += 1
template = head + b",".join(names) + tail
sent, seq, start = 0, 0, time.monotonic()
tick = 0.01
while time.monotonic() - start < secs:
    due = int((time.monotonic() - start) * rate)
    while sent < due:
        datagram = template.replace(b"@@@@@@@@", b"%08x" % seq)
        try:
            socks[seq % sources].sendto(datagram, ("127.255.255.255", port))
        except OSError:
            pass
        seq += 1
        sent += 1
    time.sleep(tick)
print(sent, len(template), n)
PY
FLOOD_PID=$!

# The honest peer joins 5 s into the flood, announcing (legacy style) every 100 ms until
# tags.txt lists it.
sleep 5
LATENCY=$(python3 - "$PORT" "$TAGS" "$HONEST_IP" "$((SECS + 10))" <<'PY'
import socket, sys, time
port, tags, ip, limit = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind((ip, 0))
datagram = b'{"username": "honest", "files": ["honest.txt_1"]}'
start = time.monotonic()
last = None
while time.monotonic() - start < limit:
    if last is None or time.monotonic() - last >= 0.1:
        s.sendto(datagram, ("127.255.255.255", port))
        last = time.monotonic()
    try:
        with open(tags) as f:
            if any(line.startswith("honest ") for line in f):
                print(f"{time.monotonic() - start:.3f} s")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
print(f"not listed within {limit:.0f} s")
PY
)
wait "$FLOOD_PID" || true
FLOOD_PID=""
read -r SENT DGRAM_BYTES NAMES <"$WORK/flood.out" || true

# What the flood cost the listener, measured while it still runs.
HWM=$(awk '/^VmHWM/ {print $2, $3}' "/proc/$LISTENER_PID/status")
WRITE_BYTES=$(awk '/^write_bytes/ {print $2}' "/proc/$LISTENER_PID/io" 2>/dev/null || echo "?")
WCHAR=$(awk '/^wchar/ {print $2}' "/proc/$LISTENER_PID/io" 2>/dev/null || echo "?")
TICKS=$(getconf CLK_TCK)
CPU=$(awk -v t="$TICKS" '{printf "%.1f s (user %.1f, system %.1f)", ($14 + $15) / t, $14 / t, $15 / t}' \
    "/proc/$LISTENER_PID/stat")
ENTRIES=$(grep -vc '^#' "$TAGS" || true)
TAGS_BYTES=$(stat -c %s "$TAGS")

# Stop it: SIGTERM, and how long that takes (SIGKILL after 5 s).
kill -TERM "$LISTENER_PID"
STOPPED="more than 5 s (killed)"
for i in $(seq 100); do
    if ! kill -0 "$LISTENER_PID" 2>/dev/null; then
        STOPPED="$(awk -v i="$i" 'BEGIN {printf "%.2f s", i * 0.05}')"
        break
    fi
    sleep 0.05
done
kill -KILL "$LISTENER_PID" 2>/dev/null || true
wait "$LISTENER_PID" 2>/dev/null || true
LISTENER_PID=""

echo "== listener under a flood: $SOURCES sources, ${SECS} s, $RATE datagrams/s =="
echo "  flood          $SENT datagrams of $DGRAM_BYTES bytes, $NAMES new chunk names each"
echo "  honest peer    listed after $LATENCY (announcing every 100 ms from 5 s into the flood)"
echo "  peak RSS       $HWM (VmHWM)"
echo "  written        $WRITE_BYTES bytes to disk (write_bytes), $WCHAR bytes by write calls (wchar)"
echo "  CPU time       $CPU"
echo "  tags.txt       $ENTRIES entries, $TAGS_BYTES bytes at the end of the flood"
echo "  SIGTERM        stopped after $STOPPED"
