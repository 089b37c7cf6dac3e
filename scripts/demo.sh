#!/usr/bin/env bash
# A three-peer network on this machine's loopback, end to end:
#
#   alice 127.0.0.2   shares notes.txt and dataset.bin (5 MiB)
#   bob   127.0.0.3   shares the same dataset.bin and his own recipes.txt
#   carol 127.0.0.4   downloads dataset.bin (from both) and notes.txt, then checks them
#
# Each peer runs chunk-server, announcer and listener in the background, under demo-net/<peer>/;
# carol runs the downloader as a command. Every process started here is stopped on exit.
#
# Usage: ./scripts/demo.sh      (env: DEMO_UDP_PORT=5000 DEMO_TCP_PORT=5001 DEMO_TIMEOUT=60)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UDP_PORT=${DEMO_UDP_PORT:-5000}
TCP_PORT=${DEMO_TCP_PORT:-5001}
TIMEOUT=${DEMO_TIMEOUT:-60}
NET=demo-net
LOGS=$NET/logs
BIN=target/release
BROADCAST=127.255.255.255:$UDP_PORT

declare -A IP=([alice]=127.0.0.2 [bob]=127.0.0.3 [carol]=127.0.0.4)
PEERS=(alice bob carol)
PIDS=()     # every background process we started
NAMES=()    # "peer/program" of each, same order
NAME_LOGS=() # and its log

use_colors

fail() {
    printf '\n%sdemo failed:%s %s\n' "$red" "$off" "$*" >&2
    if [ "${#PIDS[@]}" -gt 0 ]; then
        printf 'Program output is in %s/; the last lines:\n' "$LOGS" >&2
        tail_logs '' "$LOGS"/*
    fi
    exit 1
}

# Stops exactly the processes this script started: SIGINT first (a clean Ctrl-C shutdown), then
# SIGTERM for any that are still running two seconds later.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pids INT 20 TERM "${PIDS[@]}"
    exit "$status"
}
on_exit cleanup

# start NAME PEER PROGRAM ARGS...: runs a program in the background, output to demo-net/logs/.
start() { start_named "$1/$2" "$LOGS/$1-$2.log" "$BIN/$2" "${@:3}"; }

# port_busy tcp|udp PORT: whether something already listens on that port.
port_busy() {
    local proto=$1 port=$2
    if command -v ss >/dev/null 2>&1; then
        local flags=-ltn
        [ "$proto" = udp ] && flags=-lun
        [ -n "$(ss -H "$flags" "sport = :$port" 2>/dev/null)" ]
    elif [ "$proto" = tcp ]; then
        local ip
        for ip in 127.0.0.1 "${IP[@]}"; do
            if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then return 0; fi
        done
        return 1
    else
        return 1 # cannot tell without ss; the listener would report a failed bind
    fi
}

# tags_have PEER CONTENT HOLDER...: whether PEER's tags.txt lists all five chunks of CONTENT for
# every HOLDER.
tags_have() { tags_lists "$NET/$1/tags.txt" "${@:2}"; }

# ---------------------------------------------------------------------------------------------
say "Building release binaries (cargo build --release --workspace)"
build_release || fail "the build failed"
for program in chunk-server announcer listener downloader; do
    [ -x "$BIN/$program" ] || fail "$BIN/$program was not built"
done
ok "built $BIN/{chunk-server,announcer,listener,downloader}"

say "Checking ports (UDP $UDP_PORT for announcements, TCP $TCP_PORT for chunks)"
if port_busy udp "$UDP_PORT"; then
    fail "UDP port $UDP_PORT is already in use (a listener still running?). Stop it, or pick another port: DEMO_UDP_PORT=15000 ./scripts/demo.sh"
fi
if port_busy tcp "$TCP_PORT"; then
    fail "TCP port $TCP_PORT is already in use. Stop what uses it, or pick another port: DEMO_TCP_PORT=15001 ./scripts/demo.sh"
fi
ok "both free"

say "Creating $NET/ with sample files"
rm -rf "$NET"
mkdir -p "$LOGS"
for peer in "${PEERS[@]}"; do mkdir -p "$NET/$peer/served_files"; done
for i in $(seq 1 150); do
    printf 'Note %03d: peers announce their chunks over UDP and serve them over TCP.\n' "$i"
done >"$NET/alice/served_files/notes.txt"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$NET/alice/served_files/dataset.bin"
cp "$NET/alice/served_files/dataset.bin" "$NET/bob/served_files/dataset.bin"
for i in $(seq 1 40); do
    printf 'Recipe %02d: mix, bake for %d minutes, share with your peers.\n' "$i" $((10 + i))
done >"$NET/bob/served_files/recipes.txt"
ok "alice: notes.txt ($(wc -c <"$NET/alice/served_files/notes.txt") bytes), dataset.bin (5 MiB)"
ok "bob:   dataset.bin (same bytes), recipes.txt ($(wc -c <"$NET/bob/served_files/recipes.txt") bytes)"
ok "carol: nothing yet"

say "Starting three peers (chunk-server, listener, announcer each)"
for peer in "${PEERS[@]}"; do
    dir=$NET/$peer ip=${IP[$peer]}
    start "$peer" chunk-server --dir "$dir" --bind "$ip" --port "$TCP_PORT"
    # The listener binds 0.0.0.0 (shared port) and queries the loopback network at start.
    start "$peer" listener --dir "$dir" --port "$UDP_PORT" --broadcast "$BROADCAST"
    start "$peer" announcer --dir "$dir" --bind "$ip" --broadcast "$BROADCAST" --port "$UDP_PORT" \
        --interval 5 --chunk-port "$TCP_PORT" --username "$peer"
    ok "$peer on $ip (chunks on TCP $ip:$TCP_PORT)"
done
sleep 0.5
check_alive

say "Waiting for carol's listener to hear alice and bob (up to ${TIMEOUT}s)"
carol_hears_all() {
    tags_have carol dataset.bin alice bob && tags_have carol notes.txt alice && tags_have carol recipes.txt bob
}
if ! WAIT_CHECK=check_alive wait_for "$TIMEOUT" 0.5 carol_hears_all; then
    if [ -f "$NET/carol/tags.txt" ]; then
        printf "carol's tags.txt now:\n" >&2
        indent <"$NET/carol/tags.txt" >&2
    fi
    fail "carol's tags.txt still does not list alice's and bob's files after ${TIMEOUT}s"
fi
ok "tags.txt lists dataset.bin (alice, bob), notes.txt (alice), recipes.txt (bob)"

say "carol: downloader list"
"$BIN/downloader" --dir "$NET/carol" list </dev/null 2>>"$LOGS/carol-downloader.log" | indent ||
    fail "downloader list failed"

for file in dataset.bin notes.txt; do
    say "carol: downloader get $file (connecting from ${IP[carol]}: --bind)"
    start_ns=$(date +%s%N)
    out=$("$BIN/downloader" --dir "$NET/carol" --bind "${IP[carol]}" get "$file" </dev/null 2>>"$LOGS/carol-downloader.log") ||
        fail "downloader get $file failed"
    ms=$((($(date +%s%N) - start_ns) / 1000000))
    path=$(tail -n 1 <<<"$out")  # `get` prints the finished file's path on stdout
    ok "saved to $path in ${ms} ms"
    [ "$path" -ef "$NET/carol/downloads/$file" ] ||
        fail "expected the path of $NET/carol/downloads/$file on stdout, got: $out"
    cmp "$NET/alice/served_files/$file" "$path" || fail "$path differs from alice's original"
    ok "identical to alice's original (cmp); sha256 $(sha256sum "$path" | cut -c1-16)…"
done

sources=$(grep -h ' fetched ' "$NET/carol/client.log" | grep -F 'content=dataset.bin ' |
    grep -o 'source=[^ ]*' | sort -u | sed 's/source=//' | paste -sd, - || true)
if [ "$(tr ',' '\n' <<<"$sources" | grep -c .)" -ge 2 ]; then
    ok "dataset.bin chunks came from several peers: $sources"
else
    ok "dataset.bin chunks came from: ${sources:-?}"
fi

say "carol's tags.txt"
indent <"$NET/carol/tags.txt"

show_transfers "$NET" ''

say "carol: downloader history"
"$BIN/downloader" --dir "$NET/carol" history </dev/null 2>>"$LOGS/carol-downloader.log" | indent ||
    fail "downloader history failed"

say "${green}Demo passed.${off}"
cat <<EOF
    Look around in $NET/:
      $NET/<peer>/tags.txt       who holds what, as each listener heard it
      $NET/<peer>/temp/          each peer's chunk store (carol now serves what she fetched)
      $NET/carol/downloads/      carol's finished, verified files
      $NET/<peer>/server.log     chunks served;  $NET/carol/client.log: chunks fetched
      $LOGS/                 each program's terminal output
    The peers are stopped now; run ./scripts/demo.sh again for a fresh network.
EOF
