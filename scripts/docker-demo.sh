#!/usr/bin/env bash
# The three-peer demo across real container boundaries: docker-compose.yml runs each peer as four
# containers (chunk-server, announcer, listener, downloader) on one Docker network.
#
#   alice  P2P_NET.11   notes.txt, dataset.bin, archive.bin
#   bob    P2P_NET.12   recipes.txt, the same dataset.bin and archive.bin
#   carol  P2P_NET.13   poem.txt; downloads notes.txt, dataset.bin (from alice and bob), then
#                       archive.bin while alice's containers are stopped mid-download
#   then: bob shares memo.txt while running (downloader share) and unshares it, each seen in
#   carol's tags.txt; carol subscribes to bob's recipes.txt, bob rewrites it, and carol-sync
#   (downloader sync) replaces her copy, keeping the old one in downloads/.previous/;
#   bob sends report.txt to carol (downloader send --to carol): carol's accept-from.txt lists
#   bob, so carol-sync accepts it; alice's offer to carol stays pending, unwritten
#
# P2P_PRIVATE=1: the same demo on a private network. Before the peers start, alice runs
# `downloader network new` and bob and carol `downloader network join "PHRASE"` with the
# passphrase it printed (one-off containers with no network: the key is made from the phrase
# alone). One more container, mallory (P2P_NET.14, no key, service mallory-listener), listens on
# the same Docker network all along: its tags.txt lists none of the three, and its downloader,
# given carol's tags.txt (names, addresses), gets 0 bytes from alice's and bob's chunk servers.
#
# Usage: ./scripts/docker-demo.sh [demo|build|up|down]
#   demo (default)  build, start, download, verify, show tags.txt and logs, tear everything down
#   build           static binaries (cargo) and the FROM-scratch image
#   up              build, create the peer folders under P2P_RUN_DIR, start the peers (up -d),
#                   and print how to get a prompt and read tags.txt and logs
#   down            stop and remove the peers' containers and network (keeps folders and image)
#
# Nothing is pulled from a registry: the binaries are built here, statically linked, and copied
# into a FROM scratch image. Environment (defaults):
#   P2P_IMAGE=p2p-demo:latest  P2P_RUN_DIR=docker/run  P2P_NET=10.77.0 (the network is
#   P2P_NET.0/24; "auto" picks a free 10.x.y)  P2P_INTERVAL=5  P2P_MAX_RATE (demo: 131072, so that
#   a chunk takes 8 s and alice can be stopped mid-download; up: 0 = unlimited)
#   COMPOSE_PROJECT_NAME (as docker-compose: the repository folder's name)
#   DEMO_TIMEOUT=60  DEMO_FAILOVER=1 (0 skips the mid-download stop)  DEMO_KEEP_IMAGE=0
#   (1 keeps the image after the demo)  P2P_PRIVATE=0 (1: a private network and an outsider;
#   `up` too)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MODE=${1:-demo}
case $MODE in
demo | build | up | down) ;;
-h | --help | help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    printf 'usage: %s [demo|build|up|down]\n' "$0" >&2
    exit 2
    ;;
esac

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/$TARGET/release
PROGRAMS=(chunk-server announcer listener downloader)
PEERS=(alice bob carol)
CARGO=${CARGO:-cargo}
TIMEOUT=${DEMO_TIMEOUT:-60}
FAILOVER=${DEMO_FAILOVER:-1}
KEEP_IMAGE=${DEMO_KEEP_IMAGE:-0}
PRIVATE=${P2P_PRIVATE:-0}
case $PRIVATE in 0 | 1) ;; *) printf 'P2P_PRIVATE is 0 or 1, not %s\n' "$PRIVATE" >&2 && exit 2 ;; esac

export P2P_IMAGE=${P2P_IMAGE:-p2p-demo:latest}
export P2P_INTERVAL=${P2P_INTERVAL:-5}
if [ "$MODE" = demo ]; then
    export P2P_MAX_RATE=${P2P_MAX_RATE:-131072}
else
    export P2P_MAX_RATE=${P2P_MAX_RATE:-0}
fi
RUN=${P2P_RUN_DIR:-docker/run}
case $RUN in /*) ;; *) RUN=$ROOT/$RUN ;; esac
export P2P_RUN_DIR=$RUN
# The programs run as you, so that what they write under P2P_RUN_DIR is yours.
export P2P_UID=${P2P_UID:-$(id -u)} P2P_GID=${P2P_GID:-$(id -g)}
# docker-compose's own default, made explicit so every command below agrees on it.
COMPOSE_PROJECT_NAME_SET=${COMPOSE_PROJECT_NAME:+1}
PROJECT=${COMPOSE_PROJECT_NAME:-$(basename "$ROOT" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9_-')}
export COMPOSE_PROJECT_NAME=$PROJECT

use_colors

fail() {
    printf '\n%sdocker demo failed:%s %s\n' "$red" "$off" "$*" >&2
    if [ "${UP:-0}" -eq 1 ]; then
        printf 'The last lines of each program (docker-compose logs):\n' >&2
        compose logs --no-color --tail=5 >&2 2>/dev/null || true
    fi
    exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# `docker compose` (the plugin) when there is one, else `docker-compose` (v1).
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    COMPOSE=()
fi
compose() { "${COMPOSE[@]}" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" "$@"; }

need_docker() {
    command -v docker >/dev/null 2>&1 || fail "docker is not installed"
    docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info failed): is dockerd running, and may you use it?"
    [ "${#COMPOSE[@]}" -gt 0 ] || fail "neither 'docker compose' nor 'docker-compose' is available"
}

# ---------------------------------------------------------------------------------------------
# The network: P2P_NET.0/24 must not overlap another Docker network or a route of this host.

ip2int() {
    local IFS=.
    # shellcheck disable=SC2086
    set -- $1
    echo $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4))
}
# overlaps A/n B/m: whether the two IPv4 networks share an address.
overlaps() {
    local a=${1%/*} al=${1#*/} b=${2%/*} bl=${2#*/} len mask
    [ "$al" = "$1" ] && al=32
    [ "$bl" = "$2" ] && bl=32
    len=$((al < bl ? al : bl))
    mask=$(((0xFFFFFFFF << (32 - len)) & 0xFFFFFFFF))
    [ "$len" -eq 0 ] && mask=0
    [ $(($(ip2int "$a") & mask)) -eq $(($(ip2int "$b") & mask)) ]
}
# Lines "SUBNET WHAT" for every IPv4 network in use: Docker networks (except our project's own)
# and this host's routes.
used_subnets() {
    local id
    for id in $(docker network ls -q); do
        docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}|{{.Name}}|{{index .Labels "com.docker.compose.project"}}' "$id" 2>/dev/null
    done | while IFS='|' read -r subnets name project; do
        [ "$project" = "$PROJECT" ] && continue
        for s in $subnets; do
            case $s in *:*) ;; *) echo "$s docker-network:$name" ;; esac
        done
    done
    if command -v ip >/dev/null 2>&1; then
        ip -4 route show table all 2>/dev/null | awk '$1 ~ /^[0-9.]+(\/[0-9]+)?$/ && $1 != "0.0.0.0/0" { print $1, "route" }' |
            grep -v -E '^(127\.|224\.|255\.)' || true
    fi
}
# net_conflict PREFIX: prints what P2P_NET=PREFIX would overlap, if anything.
net_conflict() {
    local subnet what
    while read -r subnet what; do
        if overlaps "$1.0/24" "$subnet"; then
            echo "$subnet ($what)"
            return 0
        fi
    done < <(used_subnets)
    return 1
}
choose_net() {
    local conflict candidate i
    if [ "${P2P_NET:-10.77.0}" = auto ]; then
        for i in $(seq 0 199); do
            candidate=10.$((77 + (i + $$) % 100)).$((($$ / 100 + i) % 250))
            if ! net_conflict "$candidate" >/dev/null; then
                export P2P_NET=$candidate
                return 0
            fi
        done
        fail "found no free 10.x.y.0/24 for the network; set P2P_NET=a.b.c"
    fi
    export P2P_NET=${P2P_NET:-10.77.0}
    if conflict=$(net_conflict "$P2P_NET"); then
        fail "the network $P2P_NET.0/24 would overlap $conflict; pick another: P2P_NET=10.78.0 $0 $MODE (or P2P_NET=auto)"
    fi
}

# ---------------------------------------------------------------------------------------------

build() {
    say "Building static binaries (cargo build --release --target $TARGET, crt-static)"
    # Only RUSTFLAGS: an inherited CARGO_ENCODED_RUSTFLAGS would take precedence over it.
    env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS='-C target-feature=+crt-static' \
        "$CARGO" build --release --target "$TARGET" --workspace --quiet || fail "the build failed"
    local p kind
    for p in "${PROGRAMS[@]}"; do
        [ -x "$BIN/$p" ] || fail "$BIN/$p was not built"
        if command -v file >/dev/null 2>&1; then
            kind=$(file -b "$BIN/$p")
            case $kind in
            *static*) ;;
            *) fail "$BIN/$p is not statically linked: $kind" ;;
            esac
        fi
    done
    ok "$BIN/{$(
        IFS=,
        echo "${PROGRAMS[*]}"
    )}: statically linked"

    say "Building the image $P2P_IMAGE (FROM scratch; nothing is pulled)"
    # The build context: bin/ with the four programs, and nothing else.
    local stage out
    stage=$(mktemp -d "${TMPDIR:-/tmp}/p2p-image.XXXXXX")
    mkdir "$stage/bin"
    cp "${PROGRAMS[@]/#/$BIN/}" "$stage/bin/"
    # Symbols are of no use in the image; strip them when we can.
    if command -v strip >/dev/null 2>&1; then strip "$stage"/bin/*; fi
    out=$(docker build -t "$P2P_IMAGE" -f docker/Dockerfile "$stage" 2>&1) || {
        rm -rf "$stage"
        printf '%s\n' "$out" >&2
        fail "docker build failed"
    }
    rm -rf "$stage"
    ok "$(docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}  (id {{.ID}})' "$P2P_IMAGE" | head -n 1)"
}

# Creates P2P_RUN_DIR/<peer>/ with each peer's sample files, from scratch.
make_peer_folders() {
    say "Creating the peer folders in $RUN/ with sample files"
    local peer
    for peer in "${PEERS[@]}" mallory; do
        rm -rf "${RUN:?}/$peer" 2>/dev/null ||
            fail "cannot remove $RUN/$peer (written by another user? remove it, or set P2P_RUN_DIR)"
    done
    for peer in "${PEERS[@]}"; do
        mkdir -p "$RUN/$peer/served_files"
    done
    [ "$PRIVATE" = 0 ] || mkdir -p "$RUN/mallory/served_files"
    for i in $(seq 1 150); do
        printf 'Note %03d: peers announce their chunks over UDP and serve them over TCP.\n' "$i"
    done >"$RUN/alice/served_files/notes.txt"
    for i in $(seq 1 40); do
        printf 'Recipe %02d: mix, bake for %d minutes, share with your peers.\n' "$i" $((10 + i))
    done >"$RUN/bob/served_files/recipes.txt"
    for i in $(seq 1 20); do
        printf 'Line %02d: a chunk in flight, a container away.\n' "$i"
    done >"$RUN/carol/served_files/poem.txt"
    head -c $((5 * 1024 * 1024)) /dev/urandom >"$RUN/alice/served_files/dataset.bin"
    head -c $((5 * 1024 * 1024)) /dev/urandom >"$RUN/alice/served_files/archive.bin"
    cp "$RUN/alice/served_files/dataset.bin" "$RUN/alice/served_files/archive.bin" "$RUN/bob/served_files/"
    mkdir -p "$RUN/bob/extra" "$RUN/alice/extra"
    printf 'Memo: shared while the peer runs, with downloader share.\n' >"$RUN/bob/extra/memo.txt"
    head -c $((256 * 1024)) /dev/urandom >"$RUN/bob/extra/report.txt"
    printf 'A gift carol did not ask for.\n' >"$RUN/alice/extra/gift.txt"
    # The listeners record the offers made to the name their announcer announces (--username,
    # recorded in .run/announcer.json); carol accepts bob's offers unasked.
    printf '# downloader sync accepts the offers of these users unasked\nbob\n' >"$RUN/carol/accept-from.txt"
    ok "alice: notes.txt, dataset.bin (5 MiB), archive.bin (5 MiB)"
    ok "bob:   recipes.txt, the same dataset.bin and archive.bin (and extra/memo.txt, not shared yet)"
    ok "carol: poem.txt (accept-from.txt: bob)"
}

# peer_network PEER ARGS...: PEER's `downloader network ARGS`, in a one-off container of the
# image with no network at all (the key is made from the phrase alone) on PEER's folder.
peer_network() {
    docker run --rm --network none --label "com.docker.compose.project=$PROJECT" \
        -u "$P2P_UID:$P2P_GID" -v "$RUN/$1:/peer" "$P2P_IMAGE" network "${@:2}" </dev/null
}

# network_id PEER: the network id of PEER's folder (`downloader network --json`), or "open".
network_id() {
    local json
    json=$(peer_network "$1" --json) || return 1
    if grep -q '"private":true' <<<"$json"; then
        sed -n 's/.*"network":"\([^"]*\)".*/\1/p' <<<"$json"
    else
        echo open
    fi
}

# make_private_network: alice makes a network, bob and carol join it with its passphrase;
# mallory has no key. Sets PHRASE, NETWORK and KEYS_MS.
make_private_network() {
    local out peer start id
    say "Making a private network: alice runs downloader network new; bob and carol join with its passphrase"
    start=$(now_ms)
    out=$(peer_network alice new) || fail "downloader network new failed: $out"
    indent <<<"$out"
    PHRASE=$(sed -n 's/^ *downloader network join "\(.*\)" *$/\1/p' <<<"$out" | head -n 1)
    [ -n "$PHRASE" ] || fail "downloader network new printed no passphrase"
    for peer in bob carol; do
        printf '%s$ downloader network join "%s"\n' "$peer" "$PHRASE" | indent
        peer_network "$peer" join "$PHRASE" | indent || fail "$peer: downloader network join failed"
    done
    KEYS_MS=$(($(now_ms) - start))
    NETWORK=$(network_id alice) || fail "downloader network --json failed"
    for peer in bob carol; do
        id=$(network_id "$peer") || fail "$peer: downloader network --json failed"
        [ "$id" = "$NETWORK" ] || fail "$peer is on network $id, alice on $NETWORK"
        cmp -s "$RUN/alice/network.key" "$RUN/$peer/network.key" || fail "$peer's network.key differs from alice's"
    done
    ok "alice, bob and carol are on private network $NETWORK (one key file, mode $(stat -c %a "$RUN/carol/network.key")) in $(secs "$KEYS_MS") s: three one-off containers, three Argon2id derivations"
    id=$(network_id mallory) || fail "mallory: downloader network --json failed"
    [ "$id" = open ] || fail "mallory should have no key"
    [ ! -e "$RUN/mallory/network.key" ] || fail "mallory should have no key"
    ok "mallory ($P2P_NET.14) has no key: an outsider on the same Docker network"
}

# compose_noise: drops docker-compose's own lines (Creating …, Attaching to …) from its output.
# (docker-compose 1 also prints a failed `run`'s exit status alone on a line.)
compose_noise() { grep -v -E '^(Creating|Attaching to|Starting) |^[0-9]+$' || true; }

# entries TAGS: the entry lines of the tags.txt file TAGS (none if it does not exist).
entries() { [ ! -f "$1" ] || grep -v -e '^#' -e '^[[:space:]]*$' "$1" || true; }

# tags_have PEER CONTENT HOLDER...: whether PEER's tags.txt lists all five chunks of CONTENT for
# every HOLDER.
tags_have() { tags_lists "$RUN/$1/tags.txt" "${@:2}"; }

# Fails if one of the peers' long-running containers has stopped (docker-compose ps lists the
# running ones with --filter, in v1 and v2 alike).
check_running() {
    local running service peer services
    running=$(compose ps --services --filter status=running 2>/dev/null || true)
    for peer in "$@"; do
        services=("$peer-chunk-server" "$peer-announcer" "$peer-listener")
        [ "$peer" != mallory ] || services=(mallory-listener)
        for service in "${services[@]}"; do
            if ! grep -qx "$service" <<<"$running"; then
                compose logs --no-color --tail=20 "$service" >&2 || true
                fail "$service is not running (its last output is above)"
            fi
        done
    done
}

# get PEER NAME: carol's (or any peer's) `downloader get NAME`, in a one-off container on the
# peer's network identity; the path of the file on stdout, progress on stderr.
get() {
    compose run --rm -T --no-deps "$1-downloader" get "$2" </dev/null
}

print_howto() {
    local c="${COMPOSE[*]}" env="" dir=${RUN#"$ROOT"/}
    [ "$P2P_UID:$P2P_GID" = "0:0" ] || env+="P2P_UID=$P2P_UID P2P_GID=$P2P_GID "
    [ "$RUN" = "$ROOT/docker/run" ] || env+="P2P_RUN_DIR=$RUN "
    [ "$P2P_NET" = 10.77.0 ] || env+="P2P_NET=$P2P_NET "
    [ "$P2P_IMAGE" = p2p-demo:latest ] || env+="P2P_IMAGE=$P2P_IMAGE "
    [ "$P2P_INTERVAL" = 5 ] || env+="P2P_INTERVAL=$P2P_INTERVAL "
    [ "$P2P_MAX_RATE" = 0 ] || env+="P2P_MAX_RATE=$P2P_MAX_RATE "
    [ -z "$COMPOSE_PROJECT_NAME_SET" ] || env+="COMPOSE_PROJECT_NAME=$PROJECT "
    printf '    The peers run. From %s:\n' "$ROOT"
    # The same settings for docker-compose, or it would see a different configuration.
    [ -z "$env" ] || printf '      export %s\n' "${env% }"
    while IFS='|' read -r command what; do
        printf '      %-58s %s\n' "$command" "$what"
    done <<EOF
$c ps|the containers
$c run --rm carol-downloader|carol's prompt: list, get NAME, history, quit
$c run --rm carol-downloader get dataset.bin|one download, no prompt
cat $dir/carol/tags.txt|who holds what, as carol's listener heard it
cat $dir/alice/server.log|chunks alice served (carol/client.log: fetched)
$c logs -f alice-chunk-server|a program's output, live
$c stop alice-chunk-server alice-announcer alice-listener|alice leaves (start: alice comes back)
$c down|stop and remove it all (or: $0 down)
EOF
}

# ---------------------------------------------------------------------------------------------

case $MODE in
build)
    need_docker
    build
    exit 0
    ;;
down)
    need_docker
    say "Stopping and removing the peers (project $PROJECT)"
    compose --profile downloader --profile outsider down --remove-orphans
    ok "peer folders kept in ${RUN#"$ROOT"/}/; the image stays too: docker image rm $P2P_IMAGE"
    exit 0
    ;;
up)
    need_docker
    build
    choose_net
    make_peer_folders
    [ "$PRIVATE" = 0 ] || make_private_network
    say "Starting the peers (project $PROJECT, network $P2P_NET.0/24)"
    compose up -d
    ok "alice $P2P_NET.11, bob $P2P_NET.12, carol $P2P_NET.13"
    if [ "$PRIVATE" = 1 ]; then
        compose --profile outsider up -d --no-deps mallory-listener
        ok "mallory $P2P_NET.14 (no key): ${COMPOSE[*]} run --rm mallory-downloader list shows nothing"
    fi
    print_howto
    exit 0
    ;;
esac

# ---------------------------------------------------------------------------------------------
# demo

need_docker
UP=0
BUILT=0
GET_PID=""
# Containers and networks of this project that still exist, one "kind id" per line.
leftovers() {
    local label=label=com.docker.compose.project=$PROJECT
    docker ps -aq --filter "$label" | sed 's/^/container /'
    docker network ls -q --filter "$label" | sed 's/^/network /'
}
cleanup() {
    local status=$? kind id
    trap - EXIT INT TERM
    if [ -n "$GET_PID" ]; then
        kill "$GET_PID" 2>/dev/null || true
        wait "$GET_PID" 2>/dev/null || true
    fi
    if [ "$UP" -eq 1 ]; then
        say "Tearing down (containers, network$([ "$KEEP_IMAGE" = 1 ] || echo ", image"))"
        compose --profile downloader --profile outsider down -v --remove-orphans >/dev/null 2>&1 ||
            compose down -v --remove-orphans >/dev/null 2>&1 || true
        # Whatever `down` missed (a one-off container still starting, say), by the project label.
        while read -r kind id; do
            case $kind in
            container) docker rm -f "$id" >/dev/null 2>&1 || true ;;
            network) docker network rm "$id" >/dev/null 2>&1 || true ;;
            esac
        done < <(leftovers)
        if [ -n "$(leftovers)" ]; then
            printf 'warning: project %s left: %s\n' "$PROJECT" "$(leftovers | paste -sd, -)" >&2
        fi
    fi
    if [ "$KEEP_IMAGE" != 1 ] && [ "$BUILT" -eq 1 ]; then
        docker image rm "$P2P_IMAGE" >/dev/null 2>&1 || true
    fi
    exit "$status"
}
on_exit cleanup

# A clean slate: the containers of an earlier `up` or demo of this project go first.
compose down -v --remove-orphans >/dev/null 2>&1 || true
BUILT=1
build
choose_net
make_peer_folders
if [ "$PRIVATE" = 1 ]; then
    UP=1 # the one-off containers of `network` carry the project's label: cleaned up with it
    make_private_network
fi

say "Starting three peers, 3 containers each (project $PROJECT, network $P2P_NET.0/24)"
UP=1
t_up=$(now_ms)
compose up -d 2>&1 | indent || fail "docker-compose up failed"
if [ "$PRIVATE" = 1 ]; then
    compose --profile outsider up -d --no-deps mallory-listener 2>&1 | indent || fail "starting mallory-listener failed"
fi
t_started=$(now_ms)
ok "alice $P2P_NET.11, bob $P2P_NET.12, carol $P2P_NET.13$([ "$PRIVATE" = 0 ] || echo ", mallory $P2P_NET.14 (listener, no key)") (started in $(secs $((t_started - t_up))) s)"
sleep 0.5
check_running "${PEERS[@]}"
[ "$PRIVATE" = 0 ] || check_running mallory

say "Waiting for carol's listener to hear alice and bob (up to ${TIMEOUT}s)"
carol_hears_all() {
    tags_have carol notes.txt alice && tags_have carol recipes.txt bob &&
        tags_have carol dataset.bin alice bob && tags_have carol archive.bin alice bob
}
if ! wait_for "$TIMEOUT" 0.2 carol_hears_all; then
    check_running "${PEERS[@]}"
    if [ -f "$RUN/carol/tags.txt" ]; then
        printf "carol's tags.txt now:\n" >&2
        indent <"$RUN/carol/tags.txt" >&2
    fi
    fail "carol's tags.txt still does not list alice's and bob's files after ${TIMEOUT}s"
fi
t_heard=$(now_ms)
ok "heard after $(secs $((t_heard - t_up))) s: notes.txt (alice), recipes.txt (bob), dataset.bin and archive.bin (both)"

say "carol: downloader list"
compose run --rm -T --no-deps carol-downloader list </dev/null 2>/dev/null | indent || fail "downloader list failed"

# get_verified FILE: carol downloads FILE and compares it with alice's (or bob's) original.
get_verified() {
    local file=$1 out path original start
    start=$(now_ms)
    out=$(get carol "$file" 2> >(indent >&2)) || fail "downloader get $file failed"
    GOT_MS=$(($(now_ms) - start))
    path=$(tail -n 1 <<<"$out" | tr -d '\r')
    [ "$path" = "/peer/downloads/$file" ] || fail "expected /peer/downloads/$file on stdout, got: $out"
    original=$RUN/alice/served_files/$file
    [ -f "$original" ] || original=$RUN/bob/served_files/$file
    cmp "$original" "$RUN/carol/downloads/$file" || fail "carol's $file differs from the original"
    ok "$file: saved as $path (${RUN#"$ROOT"/}/carol/downloads/$file) in $(secs "$GOT_MS") s"
    ok "byte-identical to the original (cmp); sha256 $(sha256sum "$original" | cut -c1-16)…"
}

say "carol: downloader get notes.txt (alice's file; the first download since up)"
get_verified notes.txt
t_first=$(now_ms)
COLD_START_MS=$((t_first - t_up))

say "carol: downloader get dataset.bin (alice and bob both hold it; chunk servers at --max-rate $P2P_MAX_RATE B/s)"
get_verified dataset.bin
sources=$(grep -h ' fetched ' "$RUN/carol/client.log" | grep -F 'content=dataset.bin ' | grep -F 'outcome=ok' |
    grep -o 'user=[^ ]*' | sort | uniq -c | awk '{ sub("user=", "", $2); printf "%s%s (%d)", sep, $2, $1; sep = ", " }')
ok "chunks from: $sources"
for peer in alice bob; do
    grep -q -E "\] served chunk=dataset\.bin_[1-5] .*outcome=ok" "$RUN/$peer/server.log" ||
        fail "$peer's server.log shows no dataset.bin chunk served"
done
ok "alice's and bob's server.log both show dataset.bin chunks served to $P2P_NET.13"

if [ "$FAILOVER" = 1 ]; then
    say "carol: downloader get archive.bin, and alice's containers stop in the middle"
    start=$(now_ms)
    get carol archive.bin >"$RUN/archive.out" 2>"$RUN/archive.err" &
    GET_PID=$!
    # Wait until chunks are on their way (the file being received, or part files, in carol's
    # temp/.incoming/), then stop alice.
    until compgen -G "$RUN/carol/temp/.incoming/archive.bin[._]*" >/dev/null; do
        kill -0 "$GET_PID" 2>/dev/null || break
        [ $(($(now_ms) - start)) -lt $((TIMEOUT * 1000)) ] || fail "archive.bin's chunks did not start arriving"
        sleep 0.1
    done
    sleep 1
    ok "transfers under way after $(secs $(($(now_ms) - start))) s; stopping alice-announcer, alice-listener, alice-chunk-server"
    compose stop alice-announcer alice-listener alice-chunk-server 2>&1 | indent
    ok "alice stopped $(secs $(($(now_ms) - start))) s into the download"
    status=0
    wait "$GET_PID" || status=$?
    GET_PID=""
    indent <"$RUN/archive.err" >&2
    [ "$status" -eq 0 ] || fail "downloader get archive.bin failed (status $status) after alice stopped"
    path=$(tail -n 1 "$RUN/archive.out" | tr -d '\r')
    rm -f "$RUN/archive.out" "$RUN/archive.err"
    [ "$path" = /peer/downloads/archive.bin ] || fail "expected /peer/downloads/archive.bin on stdout, got: $path"
    cmp "$RUN/bob/served_files/archive.bin" "$RUN/carol/downloads/archive.bin" || fail "carol's archive.bin differs"
    ok "archive.bin complete in $(secs $(($(now_ms) - start))) s and byte-identical (cmp), although alice left"
    grep -h -E '\] fetched content=archive\.bin ' "$RUN/carol/client.log" | sed 's/^[^ ]* //' | indent
fi

say "carol's tags.txt (${RUN#"$ROOT"/}/carol/tags.txt)"
indent <"$RUN/carol/tags.txt"

show_transfers "$RUN" 's/^[^ ]* //'

say "carol: downloader history"
compose run --rm -T --no-deps carol-downloader history </dev/null 2>/dev/null | indent || fail "downloader history failed"

# dl PEER ARGS...: PEER's downloader with ARGS, in a one-off container.
dl() { compose run --rm -T --no-deps "$1-downloader" "${@:2}" </dev/null 2>&1; }

say "bob: downloader share /peer/extra/memo.txt (while his programs run; no restart)"
start=$(now_ms)
dl bob share /peer/extra/memo.txt | indent || fail "downloader share failed"
wait_for "$TIMEOUT" 0.05 tags_have carol memo.txt bob || fail "carol's tags.txt does not list memo.txt"
ok "memo.txt in carol's tags.txt $(secs $(($(now_ms) - start))) s after the command started (a one-off container)"
dl bob shared | indent
say "bob: downloader unshare memo.txt"
start=$(now_ms)
dl bob unshare memo.txt | indent || fail "downloader unshare failed"
not_listed() { ! grep -q ' memo\.txt ' "$RUN/carol/tags.txt"; }
wait_for "$TIMEOUT" 0.05 not_listed || fail "memo.txt is still in carol's tags.txt"
ok "memo.txt gone from carol's tags.txt $(secs $(($(now_ms) - start))) s after the command started"

say "carol: downloader subscribe recipes.txt --from bob (carol-sync fetches it)"
dl carol subscribe recipes.txt --from bob | indent || fail "downloader subscribe failed"
same_as_bob() { cmp -s "$RUN/bob/served_files/recipes.txt" "$RUN/carol/downloads/recipes.txt"; }
wait_for "$TIMEOUT" 0.1 same_as_bob || fail "carol-sync did not fetch recipes.txt"
ok "carol/downloads/recipes.txt is bob's (cmp)"
say "bob rewrites recipes.txt; carol-sync replaces her copy"
old_sum=$(sha256sum "$RUN/bob/served_files/recipes.txt" | cut -c1-12)
printf 'Recipe 41: a new version, followed by carol.\n' | cat "$RUN/bob/served_files/recipes.txt" - >"$RUN/bob/recipes.new"
mv "$RUN/bob/recipes.new" "$RUN/bob/served_files/recipes.txt"
start=$(now_ms)
wait_for "$TIMEOUT" 0.1 same_as_bob || fail "carol's recipes.txt was not updated"
ok "the new version is in carol/downloads/ $(secs $(($(now_ms) - start))) s after bob's change"
[ -f "$RUN/carol/downloads/.previous/recipes.txt.$old_sum" ] || fail "the previous version was not kept"
ok "the previous one is kept as downloads/.previous/recipes.txt.$old_sum"
dl carol subscriptions | indent

say "bob: downloader send /peer/extra/report.txt --to carol (carol-sync accepts it: accept-from.txt lists bob)"
start=$(now_ms)
dl bob send /peer/extra/report.txt --to carol | indent || fail "downloader send failed"
same_report() { cmp -s "$RUN/bob/extra/report.txt" "$RUN/carol/downloads/report.txt"; }
wait_for "$TIMEOUT" 0.05 same_report || fail "carol-sync did not accept bob's report.txt"
SEND_MS=$(($(now_ms) - start))
ok "carol/downloads/report.txt is bob's (cmp; sha256 $(sha256sum "$RUN/carol/downloads/report.txt" | cut -c1-16)…) $(secs "$SEND_MS") s after the command started"
say "alice: downloader send /peer/extra/gift.txt --to carol (alice is not in carol's accept-from.txt)"
# alice's containers were stopped mid-download above: she comes back first.
compose start alice-chunk-server alice-announcer alice-listener 2>&1 | indent
dl alice send /peer/extra/gift.txt --to carol | indent || fail "downloader send failed"
gift_offered() { grep -q 'gift\.txt' "$RUN/carol/offers.txt" 2>/dev/null; }
wait_for "$TIMEOUT" 0.05 gift_offered || fail "carol's listener did not record alice's offer"
sleep 1
[ ! -e "$RUN/carol/downloads/gift.txt" ] || fail "alice's gift.txt was written without carol's consent"
dl carol offers | indent
ok "alice's offer waits for carol (downloader accept 1 / decline 1); nothing of it is written"

if [ "$PRIVATE" = 1 ]; then
    say "mallory (no key; its listener has been on the same Docker network since the start): what it sees"
    check_running mallory
    seen=$(entries "$RUN/mallory/tags.txt")
    if [ -n "$seen" ]; then
        indent <<<"$seen" >&2
        fail "mallory's tags.txt lists entries of the private network"
    fi
    heard_for=$(secs $(($(now_ms) - t_started)))
    if [ -f "$RUN/mallory/tags.txt" ]; then
        ok "mallory's tags.txt has no entry after $heard_for s beside alice, bob and carol"
    else
        ok "mallory's listener wrote no tags.txt at all in $heard_for s beside alice, bob and carol"
    fi
    printf "mallory's listener said (the last lines of its output):\n" | indent
    compose logs --no-color --tail=4 mallory-listener 2>&1 | compose_noise | sed 's/^[^|]*| //' | indent
    printf 'mallory$ downloader list\n' | indent
    compose run --rm -T --no-deps mallory-downloader list </dev/null 2>&1 | compose_noise | indent || true

    say "mallory: downloader get dataset.bin, given carol's tags.txt (every name and address, as if stolen)"
    mkdir -p "$RUN/mallory/stolen"
    cp "$RUN/carol/tags.txt" "$RUN/mallory/stolen/tags.txt"
    start=$(now_ms)
    status=0
    out=$(compose run --rm -T --no-deps --entrypoint /bin/downloader mallory-downloader \
        --dir /peer/stolen get dataset.bin </dev/null 2>&1) || status=$?
    MALLORY_MS=$(($(now_ms) - start))
    compose_noise <<<"$out" | indent
    [ "$status" -ne 0 ] || fail "mallory's downloader get dataset.bin succeeded without the key"
    grep -q 'private network' <<<"$out" || fail "mallory's downloader did not say that the holders are on a private network"
    got=$(find "$RUN/mallory" -type f \( -path '*/downloads/*' -o -path '*/temp/*' \) -printf '%s\n' |
        awk '{ s += $1 } END { print s + 0 }')
    [ "$got" -eq 0 ] || fail "mallory holds $got bytes under downloads/ and temp/"
    ok "refused (exit status $status, $(secs "$MALLORY_MS") s, the one-off container included): mallory holds 0 bytes (downloads/, temp/)"
    for peer in alice bob; do
        lines=$(grep -h -F "$P2P_NET.14" "$RUN/$peer/server.log" | sed 's/^[^ ]* //' | tail -n 2)
        [ -z "$lines" ] || printf '%s: %s\n' "$peer" "$lines" | indent
    done
fi

say "${green}Docker demo passed.${off}"
size=$(docker image ls --format '{{.Size}}' "$P2P_IMAGE" | head -n 1)
bytes=$(docker image inspect -f '{{.Size}}' "$P2P_IMAGE" 2>/dev/null || echo '?')
printf '    image          %s  %s (%s bytes; FROM scratch + 4 static binaries)\n' "$P2P_IMAGE" "$size" "$bytes"
printf '    cold start     %s s from "up" to the first successful "downloader get" (containers started in %s s, peers heard after %s s)\n' \
    "$(secs "$COLD_START_MS")" "$(secs $((t_started - t_up)))" "$(secs $((t_heard - t_up)))"
printf '    send           %s s from "downloader send" (a one-off container) to the verified file in carol/downloads/\n' "$(secs "$SEND_MS")"
if [ "$PRIVATE" = 1 ]; then
    printf '    private        network %s: the three keys made in %s s (network new + 2 joins, one-off containers)\n' "$NETWORK" "$(secs "$KEYS_MS")"
    printf '    outsider       mallory: 0 entries in tags.txt, 0 bytes of dataset.bin (refused in %s s)\n' "$(secs "$MALLORY_MS")"
fi
printf '    peer folders   %s/{alice,bob,carol%s}/ (kept; the containers, network%s are removed next)\n' \
    "${RUN#"$ROOT"/}" "$([ "$PRIVATE" = 0 ] || echo ',mallory')" "$([ "$KEEP_IMAGE" = 1 ] && echo '' || echo ' and image')"
