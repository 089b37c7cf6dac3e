# shellcheck shell=bash disable=SC2016  # single-quoted $1 etc. are expanded by `sh -c` on purpose
# Section `shaped` of scripts/bench.sh: one download from 1 source and from 3 sources, each
# source's sending shaped to $SHAPED_RATE (100mbit), ours and aria2c (from nginx) in the same
# run, and the 3-vs-1 speedups. Sourced, never run. Needs root and iproute2 (ip, tc).
#
# Five network namespaces made here and deleted at the end (and by the EXIT trap):
#
#   <p>-hub   a bridge, br0, joining the four hosts below by veth pairs
#   <p>-s1    10.223.0.11   nginx, our chunk-server + announcer (user src1)   eth0: tbf $SHAPED_RATE
#   <p>-s2    10.223.0.12   the same (src2)                                   eth0: tbf $SHAPED_RATE
#   <p>-s3    10.223.0.13   the same (src3)                                   eth0: tbf $SHAPED_RATE
#   <p>-c     10.223.0.10   two listeners and the receivers (aria2c, our downloader)
#
# Each source's egress (what it sends: the file) goes through a token bucket of $SHAPED_RATE;
# the client's link is not shaped. Two peer folders on the client keep 1 and 3 sources apart:
# c1's listener hears only src1 (src1's announcer also broadcasts to c1's port), c3's hears all
# three. Rows: ours_1src, ours_3src (downloader get from c1 / c3), aria2c_1src (one URL,
# --split=1), aria2c_3src (three URLs, --split=3 --max-connection-per-server=1).

SHAPED_NET=10.223.0

section_shaped() {
    log ""
    log "== section shaped: 1 vs 3 sources, each sending at most $SHAPED_RATE (netns + veth + tc)"
    if ((EUID != 0)); then
        log "   skipped: network namespaces need root"
        return 0
    fi
    local tool
    for tool in ip tc nginx aria2c; do
        command -v "$tool" >/dev/null || { log "   skipped: $tool is missing (run as root to install it)"; return 0; }
    done
    make_file "$SHAPED_SIZE" || { log "cannot create the $SHAPED_SIZE MiB file"; return 1; }
    LABEL="${SHAPED_SIZE}MiB@${SHAPED_RATE}"

    local p=p2pb$$ hub client i ns ip
    hub=$p-hub
    client=$p-c
    local sources=("$p-s1" "$p-s2" "$p-s3")
    ns_add "$hub" || { log "   cannot create network namespaces"; return 1; }
    if ! ip -n "$hub" link add br0 type bridge || ! ip -n "$hub" link set br0 up; then
        log "   cannot create a bridge"
        _shaped_down
        return 1
    fi
    # host i: namespace, address
    local hosts=("$client" "${sources[@]}") addrs=("$SHAPED_NET.10" "$SHAPED_NET.11" "$SHAPED_NET.12" "$SHAPED_NET.13")
    for i in 0 1 2 3; do
        ns=${hosts[i]}
        if ! { ns_add "$ns" &&
            ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns" &&
            ip -n "$hub" link set "v$i" master br0 up &&
            ip -n "$ns" addr add "${addrs[i]}/24" dev eth0 &&
            ip -n "$ns" link set eth0 up; }; then
            log "   cannot set up host ${addrs[i]} in $ns"
            _shaped_down
            return 1
        fi
    done
    for ns in "${sources[@]}"; do
        # burst: above one GSO super-packet, small next to a second's worth (12.5 MB).
        tc -n "$ns" qdisc add dev eth0 root tbf rate "$SHAPED_RATE" burst 256k latency 50ms ||
            { log "   tc cannot shape $ns"; _shaped_down; return 1; }
    done
    log "   namespaces $hub (bridge), $client (${addrs[0]}), ${sources[*]} (${addrs[*]:1}); tbf $SHAPED_RATE on each source"

    local hport tcp u1 u3 d=$RUN/shaped
    hport=8080 tcp=5001 u1=5010 u3=5030 # fresh namespaces: every port is free
    mkdir -p "$d/c1" "$d/c3"
    for i in 1 2 3; do
        ns=${sources[i - 1]} ip=${addrs[i]}
        mkdir -p "$d/s$i"
        nginx_start "nginx-s$i" "$ns" "$SRCDIR" "$ip:$hport" || { log "   nginx did not start in $ns"; _shaped_down; return 1; }
        start_server "shaped-chunk-server-s$i" ip netns exec "$ns" "$BIN/chunk-server" --dir "$d/s$i" \
            --bind "$ip" --port "$tcp" --share "$SRC"
        local extra=()
        ((i == 1)) && extra=(--broadcast "$SHAPED_NET.255:$u1")
        start_server "shaped-announcer-s$i" ip netns exec "$ns" "$BIN/announcer" --dir "$d/s$i" --bind "$ip" \
            --broadcast "$SHAPED_NET.255:$u3" "${extra[@]}" --port "$u3" --interval 2 --username "src$i"
    done
    start_server shaped-listener-c1 ip netns exec "$client" "$BIN/listener" --dir "$d/c1" --port "$u1" \
        --broadcast "$SHAPED_NET.255:$u1"
    start_server shaped-listener-c3 ip netns exec "$client" "$BIN/listener" --dir "$d/c3" --port "$u3" \
        --broadcast "$SHAPED_NET.255:$u3"

    # Until c1 lists src1's file and c3 every source's (each chunk server hashes it first).
    local t
    for ((t = 0; t < 1200; t++)); do
        tags_count "$d/c1/tags.txt" src1 "$NAME" >/dev/null &&
            tags_count "$d/c3/tags.txt" src1 "$NAME" >/dev/null &&
            tags_count "$d/c3/tags.txt" src2 "$NAME" >/dev/null &&
            tags_count "$d/c3/tags.txt" src3 "$NAME" >/dev/null && break
        sleep 0.1
    done
    if ((t == 1200)); then
        log "   the listeners did not list the sources within 120 s (see $RUN/shaped-*.log)"
        _shaped_down
        return 1
    fi
    if awk '$1 ~ /^src[23]$/ { f = 1 } END { exit !f }' "$d/c1/tags.txt"; then
        log "   c1 lists more than src1: the 1-source rows would not be"
        _shaped_down
        return 1
    fi

    warm_src
    log "-- $LABEL file $SRC sha256 $SHA"
    local get='"$1" --dir "$2" --bind "$3" --quiet get "$4" >/dev/null && exec mv "$2/downloads/$4" "$5"'
    if want ours_1src; then
        OURS_PEER=$d/c1 PRE_RUN=_ours_clean measure ours_1src "$RUNS" \
            ip netns exec "$client" sh -c "$get" sh "$BIN/downloader" "$d/c1" "${addrs[0]}" "$NAME" "$DST"
    fi
    if want ours_3src; then
        OURS_PEER=$d/c3 PRE_RUN=_ours_clean measure ours_3src "$RUNS" \
            ip netns exec "$client" sh -c "$get" sh "$BIN/downloader" "$d/c3" "${addrs[0]}" "$NAME" "$DST"
    fi
    aria2_opts "$DSTDIR" "$NAME"
    if want aria2c_1src; then
        measure aria2c_1src "$RUNS" ip netns exec "$client" aria2c "${ARIA2_HTTP[@]}" \
            --split=1 --max-connection-per-server=1 "http://${addrs[1]}:$hport/$NAME"
    fi
    if want aria2c_3src; then
        measure aria2c_3src "$RUNS" ip netns exec "$client" aria2c "${ARIA2_HTTP[@]}" \
            --split=3 --max-connection-per-server=1 \
            "http://${addrs[1]}:$hport/$NAME" "http://${addrs[2]}:$hport/$NAME" "http://${addrs[3]}:$hport/$NAME"
    fi
    _shaped_down
}

# Stops what the section started (every server still tracked) and deletes its namespaces.
_shaped_down() {
    local pid ns
    for pid in "${SERVER_PIDS[@]}"; do stop_server "$pid"; done
    for ns in "${NETNS[@]}"; do ns_del "$ns"; done
}
