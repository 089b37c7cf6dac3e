#!/usr/bin/env bash
# Benchmark: how often a listener rewrites (and syncs) tags.txt while PEERS peers of ours
# announce, each once per INTERVAL at its own moment, the same few files every time.
#
#   PEERS fake peers   127.0.0.10 and up (Python), each announcing FILES files of ours inline,
#                      one datagram every INTERVAL s, their first announcements spread over the
#                      first interval
#   listener           0.0.0.0, -v: its debug line "wrote N entries" marks each write of
#                      tags.txt (temporary file, fsync, rename)
#
# Runs in a network namespace of its own (ip netns), like bench-announce.sh. After one interval
# of warm-up (every peer listed), counts the writes over ROUNDS intervals and prints them per
# minute, and how many peers tags.txt listed meanwhile (it must list every one all along).
#
# Usage: ./scripts/bench-tags-writes.sh
#   env: PEERS=20, FILES=3, INTERVAL=60, ROUNDS=2, BENCH_UDP_PORT=15400, BIN_DIR (default:
#        build the listener into ${CARGO_TARGET_DIR:-target}/release), KEEP=1 keeps the work
#        folder.
#
# Needs root (ip netns) and python3. Only the processes this script started are signalled,
# by their PIDs; the namespace is deleted at the end.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PEERS=${PEERS:-20}
FILES=${FILES:-3}
INTERVAL=${INTERVAL:-60}
ROUNDS=${ROUNDS:-2}
UDP_PORT=${BENCH_UDP_PORT:-15400}
NS=p2ptags$$

PIDS=()
NAMES=()
NAME_LOGS=()
WORK=""

fail() { bench_fail "$@"; }
on_exit bench_cleanup

# start NAME PROGRAM ARGS...: a program in the namespace, its output in WORK/NAME.log.
start() { start_in_ns "$@"; }
writes() { grep -c 'debug: wrote [0-9]* entries' "$WORK/listener.log" || true; }
peers_listed() {
    [ -f "$WORK/listener/tags.txt" ] || { echo 0; return; }
    awk '!/^#/ && NF > 1 { u[$1] = 1 } END { print length(u) }' "$WORK/listener/tags.txt"
}

[ "$(id -u)" = 0 ] || fail "needs root (ip netns)"
command -v python3 >/dev/null || fail "needs python3"
if [ -z "${BIN_DIR:-}" ]; then
    say "Building the release listener"
    (cd "$ROOT" && build_release listener) || fail "the build failed"
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
[ -x "$BIN_DIR/listener" ] || fail "no listener binary in $BIN_DIR"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-tags-writes.XXXXXX")
BENCH_WORK=$WORK
bench_netns "$NS" || fail "cannot create the network namespace $NS"
mkdir -p "$WORK/listener"

cat >"$WORK/peers.py" <<'PY'
import json, socket, sys, time
peers, files, interval, port = (int(a) for a in sys.argv[1:])
socks = []
for i in range(peers):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((f"127.0.0.{10 + i}", 0))
    socks.append(s)
def datagram(i):
    names = [f"peer{i:02d}-file{j}.bin" for j in range(files)]
    contents = {n: {"size": 1000 + j, "sha256": f"{i:02x}{j:02x}" * 16} for j, n in enumerate(names)}
    return json.dumps({"username": f"peer{i:02d}", "files": [f"{n}_{k}" for n in names for k in range(1, 6)],
                       "p2p": {"v": 1, "port": 6001, "interval": interval, "contents": contents,
                               "instance": f"{i:016x}"}}, separators=(",", ":")).encode()
start = time.time()
nxt = [start + interval * i / peers for i in range(peers)]
while True:
    now = time.time()
    for i in range(peers):
        if now >= nxt[i]:
            socks[i].sendto(datagram(i), ("127.255.255.255", port))
            nxt[i] += interval
    time.sleep(max(0.0, min(nxt) - time.time()))
PY

say "A listener, and $PEERS peers announcing $FILES files each every $INTERVAL s"
start listener "$BIN_DIR/listener" --dir "$WORK/listener" --port "$UDP_PORT" \
    --broadcast "127.0.0.1:9" -v
sleep 1
start peers python3 "$WORK/peers.py" "$PEERS" "$FILES" "$INTERVAL" "$UDP_PORT"
all_listed() { [ "$(peers_listed)" -ge "$PEERS" ]; }
WAIT_CHECK=check_alive wait_for $((INTERVAL + 30)) 0.5 all_listed ||
    fail "not every peer listed after one interval"
sleep 2

say "Counting the writes of tags.txt over $ROUNDS intervals"
before=$(writes)
low=$PEERS high=0
for _ in $(seq $((ROUNDS * INTERVAL))); do
    sleep 1
    n=$(peers_listed)
    [ "$n" -lt "$low" ] && low=$n
    [ "$n" -gt "$high" ] && high=$n
    check_alive
done
count=$(($(writes) - before))
printf '\n== tags.txt with %d peers announcing every %d s ==\n' "$PEERS" "$INTERVAL"
printf '  writes            %d in %d s: %s a minute (each: temporary file, fsync, rename)\n' \
    "$count" "$((ROUNDS * INTERVAL))" "$(echo "scale=1; $count * 60 / ($ROUNDS * $INTERVAL)" | bc)"
printf '  peers listed      %d..%d of %d all along\n' "$low" "$high" "$PEERS"
