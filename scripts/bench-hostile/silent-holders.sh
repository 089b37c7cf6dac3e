#!/usr/bin/env bash
# Benchmark: one honest holder and N silent fake holders of the same content; how long does
# `downloader get` take?
#
#   alice          127.0.0.2: real chunk-server + announcer, sharing a 10 MiB file
#   silent fakes   127.0.0.10.. (N of them, default 6), written in Python below: each announces
#                  alice's content (name, size, SHA-256 and manifest root, copied from alice's
#                  manifest, all public) from its own address and accepts TCP connections, reads
#                  the request and never answers
#   carol          127.0.0.3: real listener + downloader (default flags: 15 s idle timeout)
#
# Prints the download time with and without the silent holders, the downloader's peak RSS, and
# checks the file with cmp. Before the fix (manifest asked of one holder after another, 15 s
# each) six silent holders turned a 0.05 s download into about 123 s.
#
# Usage: ./scripts/bench-hostile/silent-holders.sh
#   env: BIN_DIR (default $CARGO_TARGET_DIR/release or target/release, built when missing),
#        SILENT=6, BENCH_UDP_PORT=15401, KEEP=1 keeps the temporary folder
#
# Only 127.0.0.x addresses are used; only the processes this script starts are signalled, by PID.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SILENT=${SILENT:-6}
UDP_PORT=${BENCH_UDP_PORT:-15401}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
KEEP=${KEEP:-0}
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/p2p-bench-silent-XXXXXX")

cleanup() {
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

for bin in chunk-server announcer listener downloader; do
    if [ ! -x "$BIN_DIR/$bin" ]; then
        echo "==> building release binaries"
        build_release chunk-server announcer listener downloader
        break
    fi
done

mkdir -p "$WORK/alice/served_files" "$WORK/carol"
head -c $((10 << 20)) /dev/urandom > "$WORK/alice/served_files/data.bin"
"$BIN_DIR/chunk-server" --dir "$WORK/alice" --bind 127.0.0.2 --port 15402 2>"$WORK/alice.cs.err" &
PIDS+=($!)
"$BIN_DIR/announcer" --dir "$WORK/alice" --bind 127.0.0.2 --username alice --broadcast "127.255.255.255:$UDP_PORT" \
    --interval 1 --chunk-port 15402 2>"$WORK/alice.an.err" &
PIDS+=($!)
"$BIN_DIR/listener" --dir "$WORK/carol" --port "$UDP_PORT" --broadcast "127.255.255.255:$UDP_PORT" 2>"$WORK/carol.li.err" &
PIDS+=($!)

wait_or_die() { # wait_or_die SECONDS COMMAND...
    wait_for "$1" 0.1 "${@:2}" || { echo "timed out waiting for: ${*:2}" >&2; exit 1; }
}
wait_or_die 30 test -s "$WORK/alice/temp/.manifests/data.bin.json"
wait_or_die 30 grep -q "^alice .*data.bin" "$WORK/carol/tags.txt"

download() { # download LABEL
    rm -rf "$WORK/carol/downloads" "$WORK/carol/temp"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/rss" "$BIN_DIR/downloader" --dir "$WORK/carol" get data.bin \
        >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    end=$(date +%s.%N)
    cmp -s "$(cat "$WORK/out")" "$WORK/alice/served_files/data.bin" || { echo "file differs" >&2; exit 1; }
    printf '  %-34s %6.2f s   downloader peak RSS %s KiB   identical (cmp)\n' \
        "$1" "$(echo "$end - $start" | bc)" "$(cat "$WORK/rss")"
}

command -v bc >/dev/null || { echo "needs bc" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }

echo "== 10 MiB download, one honest holder, $SILENT silent holders (idle timeout 15 s) =="
download "honest holder alone"

python3 - "$WORK/alice/temp/.manifests/data.bin.json" "$UDP_PORT" "$SILENT" <<'PY' &
import json, socket, sys, threading, time, hashlib
manifest = json.load(open(sys.argv[1]))["manifest"]
udp_port, n = int(sys.argv[2]), int(sys.argv[3])
root = hashlib.sha256(b"p2p manifest root v1\0" + manifest["size"].to_bytes(8, "big")
                      + b"".join(bytes.fromhex(c) for c in manifest["chunks"])).hexdigest()
held = []
def silent(ip):
    srv = socket.socket(); srv.bind((ip, 0)); srv.listen(64)
    port = srv.getsockname()[1]
    def accept():
        while True:
            c, _ = srv.accept(); c.recv(1024); held.append(c)  # never answers
    threading.Thread(target=accept, daemon=True).start()
    return port
fakes = []
for i in range(n):
    ip = f"127.0.0.{10 + i}"
    port = silent(ip)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); u.bind((ip, 0))
    msg = json.dumps({"username": f"mute{i}", "files": [f"data.bin_{k}" for k in range(1, 6)],
        "p2p": {"v": 1, "port": port, "interval": 1, "contents": {"data.bin": {
            "size": manifest["size"], "sha256": manifest["sha256"], "root": root}}}}).encode()
    fakes.append((u, msg))
for _ in range(120):
    for u, msg in fakes:
        u.sendto(msg, ("127.255.255.255", udp_port))
    time.sleep(0.5)
PY
PIDS+=($!)
wait_or_die 30 bash -c "[ \$(grep -c '^mute' '$WORK/carol/tags.txt') -ge $SILENT ]"
download "beside $SILENT silent holders"
