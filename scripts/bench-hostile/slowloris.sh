#!/usr/bin/env bash
# Benchmark: a chunk server under three denial-of-service attacks, and an honest client beside.
#
#   chunk server   127.0.0.2:$BENCH_PORT, default limits, sharing one 50 MB file (10 MB chunks)
#   attackers      127.0.0.5, written in Python below:
#     slowloris    70 connections, each sending a valid request prefix `{"filename"` and then one
#                  byte of JSON white space every 4 s
#     idle         300 connections that send nothing
#     slow readers 64 connections asking for a 10 MB chunk and reading 1 KB every 10 s (with a
#                  4 KB receive buffer, so socket buffers cannot absorb the chunk)
#   honest client  127.0.0.6, a new address: during each attack it asks for a whole 10 MB chunk
#                  (extended request, digest checked) 2 s after the attack starts and then every
#                  3 s; the time of each request is printed.
#
# For each attack it prints the honest request times, how many attacker connections the server
# closed (as the attackers saw it: end of stream or reset) and the server's log outcomes for
# them, and the chunk server's peak RSS so far (VmHWM of /proc/PID/status).
#
# Usage: ./scripts/bench-hostile/slowloris.sh
#   env: BIN_DIR (where chunk-server is; default $CARGO_TARGET_DIR/release or target/release,
#        built with `cargo build --release -p chunk-server` when missing), BENCH_PORT=15301,
#        KEEP=1 keeps the temporary folder (its path is printed)
#
# Only 127.0.0.x addresses are used. Only the process this script starts is ever signalled, by
# its PID. The attacks take about 60 s in all.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PORT=${BENCH_PORT:-15301}
KEEP=${KEEP:-0}
SERVER_IP=127.0.0.2
ATTACKER_IP=127.0.0.5
HONEST_IP=127.0.0.6
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}

SERVER_PID=""
WORK=""

fail() {
    printf '\nbench-hostile/slowloris failed: %s\n' "$*" >&2
    if [ -n "$WORK" ] && [ -s "$WORK/peer/server.log" ]; then
        tail -n 10 "$WORK/peer/server.log" >&2
    fi
    exit 1
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$SERVER_PID" ]; then stop_pids TERM 50 KILL "$SERVER_PID"; fi
    if [ -n "$WORK" ]; then
        if [ "$KEEP" = 1 ]; then echo "Kept $WORK (KEEP=1)."; else rm -rf "$WORK"; fi
    fi
    exit "$status"
}
on_exit cleanup

command -v python3 >/dev/null || fail "python3 is needed for the attacking clients"
if [ ! -x "$BIN_DIR/chunk-server" ]; then
    say "building chunk-server (release)"
    cargo build --release -p chunk-server
    [ -x "$BIN_DIR/chunk-server" ] || fail "no chunk-server in $BIN_DIR after the build (set BIN_DIR)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-hostile.XXXXXX")
mkdir -p "$WORK/peer/served_files"
head -c 50000000 /dev/urandom >"$WORK/peer/served_files/big.bin"

say "starting chunk-server on $SERVER_IP:$PORT ($BIN_DIR/chunk-server, default limits)"
"$BIN_DIR/chunk-server" --dir "$WORK/peer" --bind "$SERVER_IP" --port "$PORT" \
    >"$WORK/stdout.txt" 2>"$WORK/stderr.txt" &
SERVER_PID=$!
server_alive() { kill -0 "$SERVER_PID" 2>/dev/null || fail "chunk-server exited: $(cat "$WORK/stderr.txt")"; }
server_listening() { grep -q "listening on" "$WORK/peer/server.log" 2>/dev/null; }
WAIT_CHECK=server_alive wait_for 10 0.05 server_listening || true
grep -q "listening on" "$WORK/peer/server.log" || fail "chunk-server did not start"

cat >"$WORK/attack.py" <<'PY'
"""One attack on the chunk server, with an honest client timed beside it."""
import errno, hashlib, json, re, socket, struct, sys, threading, time

kind, server_ip, port, attacker_ip, honest_ip, duration, log_path, pid = sys.argv[1:9]
port, duration = int(port), float(duration)
server = (server_ip, port)

def peak_rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1

def log_size():
    try:
        with open(log_path, "rb") as f:
            return len(f.read())
    except OSError:
        return 0

class Conn:
    def __init__(self, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.bind((attacker_ip, 0))
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.setblocking(False)
        self.s.connect_ex(server)
        self.closed = False
        self.sent_prefix = False

    def _error(self, e):
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOTCONN, errno.EINPROGRESS):
            self.closed = True

    def send(self, data):
        try:
            self.s.send(data)
            return True
        except OSError as e:
            self._error(e)
            return False

    def read(self, n):
        try:
            if not self.s.recv(n):
                self.closed = True
        except OSError as e:
            self._error(e)

    # TCP states (linux/tcp_states.h) in which the server has not closed its side.
    OPEN_STATES = (1, 2)  # ESTABLISHED, SYN_SENT

    def check_closed(self):
        """Whether the server closed or reset this connection, whatever is still unread here:
        unread bytes would hide a reset from recv for as long as they last."""
        try:
            state = struct.unpack("B", self.s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]
        except OSError:
            return self.closed
        if state not in self.OPEN_STATES:
            self.closed = True
        return self.closed

def honest_fetch():
    """A whole chunk by extended request from a new address: seconds, or the error."""
    started = time.monotonic()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(30)
        s.bind((honest_ip, 0))
        s.connect(server)
        s.sendall(b'{"filename":"big.bin_1","p2p":{"v":1}}')
        buf = b""
        while b"\n" not in buf:
            more = s.recv(65536)
            if not more:
                raise IOError("closed before the header")
            buf += more
        line, body = buf.split(b"\n", 1)
        header = json.loads(line)["chunk"]
        digest = hashlib.sha256(body)
        got = len(body)
        while got < header["length"]:
            more = s.recv(1 << 20)
            if not more:
                raise IOError(f"closed after {got} of {header['length']} bytes")
            digest.update(more)
            got += len(more)
        s.close()
        if digest.hexdigest() != header["sha256"]:
            raise IOError("digest mismatch")
        return time.monotonic() - started, None
    except Exception as e:  # reported, not raised: the attack goes on
        return time.monotonic() - started, str(e)

log_before = log_size()
if kind == "slowloris":
    conns, period = [Conn() for _ in range(70)], 4.0
elif kind == "idle":
    conns, period = [Conn() for _ in range(300)], 1.0
elif kind == "slowread":
    conns, period = [Conn(rcvbuf=4096) for _ in range(64)], 10.0
else:
    sys.exit(f"unknown attack {kind}")

results = []
def honest_loop():
    time.sleep(2)
    while time.monotonic() < end - 1:
        results.append(honest_fetch())
        time.sleep(3)

start = time.monotonic()
end = start + duration
honest = threading.Thread(target=honest_loop)
honest.start()
next_step = start
while time.monotonic() < end:
    now = time.monotonic()
    step = now >= next_step
    if step:
        next_step += period
    for c in conns:
        if c.closed:
            continue
        if kind == "slowloris":
            if not c.sent_prefix:
                c.sent_prefix = c.send(b'{"filename"')
            elif step:
                c.send(b" ")
            c.read(1)
        elif kind == "idle":
            c.read(1)
        elif kind == "slowread":
            if not c.sent_prefix:
                c.sent_prefix = c.send(b'{"filename": "big.bin_1"}')
            elif step:
                c.read(1024)
        c.check_closed()
    time.sleep(0.1)
honest.join()

closed = sum(c.closed for c in conns)
with open(log_path, "rb") as f:
    f.seek(log_before)
    new_log = f.read().decode("utf-8", "replace")
outcomes = {}
for m in re.finditer(r"(refused|served) peer=" + re.escape(attacker_ip) + r":\d+ .*?outcome=(\w+)", new_log):
    key = f"{m.group(1)} {m.group(2)}"
    outcomes[key] = outcomes.get(key, 0) + 1
for m in re.finditer(r"served chunk=\S+ peer=" + re.escape(attacker_ip) + r":\d+ .*?outcome=(\w+)", new_log):
    key = f"served {m.group(1)}"
    outcomes[key] = outcomes.get(key, 0) + 1
unlogged = sum(int(n) for n in re.findall(r"turned away (\d+) more connections", new_log))
if unlogged:
    outcomes["turned away, summed up"] = unlogged

times = [t for t, err in results if err is None]
errors = [err for _, err in results if err is not None]
print(f"  honest requests: {len(results)}, ok {len(times)}, failed {len(errors)}"
      + (f" ({errors[0]})" if errors else ""))
if times:
    print("  honest request time: first %.0f ms, max %.0f ms, all: %s" % (
        times[0] * 1000, max(times) * 1000, " ".join("%.0f" % (t * 1000) for t in times)))
print(f"  attacker connections closed by the server: {closed} of {len(conns)}")
print("  server log for the attacker: " + (", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "nothing"))
print(f"  chunk-server peak RSS so far: {peak_rss_kib()} KiB")
for c in conns:
    c.s.close()
PY

run_attack() {
    local kind=$1 title=$2 duration=$3
    say "$title (${duration} s)"
    timeout $((${duration%.*} + 30)) python3 "$WORK/attack.py" "$kind" "$SERVER_IP" "$PORT" \
        "$ATTACKER_IP" "$HONEST_IP" "$duration" "$WORK/peer/server.log" "$SERVER_PID" \
        || fail "the $kind attack did not finish"
    kill -0 "$SERVER_PID" 2>/dev/null || fail "chunk-server died during the $kind attack"
}

BENCH_STARTED=$(date +%s)
python3 - "$SERVER_IP" "$PORT" "$HONEST_IP" <<'PY'
import socket, sys, time
server_ip, port, honest_ip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
started = time.monotonic()
s = socket.create_connection((server_ip, port), timeout=10, source_address=(honest_ip, 0))
s.sendall(b'{"filename":"big.bin_1","p2p":{"v":1}}')
n = 0
while True:
    more = s.recv(1 << 20)
    if not more:
        break
    n += len(more)
print("==> baseline, no attack: honest request %.0f ms (%d bytes with header)" % ((time.monotonic() - started) * 1000, n))
PY
run_attack slowloris "slowloris: 70 connections from $ATTACKER_IP, one byte every 4 s" 12
run_attack idle "idle flood: 300 connections from $ATTACKER_IP that send nothing" 14
run_attack slowread "slow readers: 64 connections from $ATTACKER_IP reading 1 KB every 10 s" 32
say "done in $(($(date +%s) - BENCH_STARTED)) s; chunk-server still serving: $(kill -0 "$SERVER_PID" 2>/dev/null && echo yes || echo no)"
