# shellcheck shell=bash disable=SC2016  # single-quoted $1 etc. are expanded by `sh -c` on purpose
# Section `single` of scripts/bench.sh: one source over loopback, 100 MiB and 1 GiB (--sizes),
# our verified download next to the tools a user would use instead. Sourced, never run.
#
#   tcp_socat         socat -> socat into a file: the ceiling of one TCP stream into a file
#   tcp_socat_fsync   the same, then fsync of the file (our downloader ends with one)
#   http_nginx_curl   nginx (sendfile) -> curl -o
#   aria2c_1src       nginx -> aria2c, one connection
#   rsync_daemon      rsync --daemon -> rsync
#   ours              our release chunk-server + announcer (127.0.0.2) and listener, then the
#                     timed `downloader --bind 127.0.0.3 get NAME` (the file verified chunk by
#                     chunk and whole, and fsynced, in downloads/), then moved to $DST
#
# The table (scripts/bench/stats.py) gives medians, spread, the receiver's peak RSS, and the
# ratio of ours to every row of the same size.

SINGLE_METHODS=(tcp_socat tcp_socat_fsync http_nginx_curl aria2c_1src rsync_daemon ours)

# Peak RSS of our long-running programs in the `ours` rows, one line per size, for the summary.
SINGLE_NOTES=

_ours_clean() { rm -rf "$OURS_PEER/downloads" "$OURS_PEER/temp"; }

m_ours() {
    local d=$RUN/ours-$LABEL tcp udp cs an li
    local bins=("$BIN/chunk-server" "$BIN/announcer" "$BIN/listener" "$BIN/downloader")
    need ours "${bins[@]}" || return
    alloc_port tcp
    alloc_port udp
    mkdir -p "$d/a" "$d/c"
    start_server ours-chunk-server "$BIN/chunk-server" --dir "$d/a" --bind 127.0.0.2 --port "$tcp" --share "$SRC"
    cs=$LAST_PID
    start_server ours-listener "$BIN/listener" --dir "$d/c" --port "$udp" --broadcast "127.255.255.255:$udp"
    li=$LAST_PID
    start_server ours-announcer "$BIN/announcer" --dir "$d/a" --bind 127.0.0.2 \
        --broadcast "127.255.255.255:$udp" --port "$udp" --interval 2 --username bench-a
    an=$LAST_PID
    # The chunk server hashes the file before it is announced: untimed, as for the other rows'
    # servers, which are listening before their clock starts.
    local i
    for ((i = 0; i < 6000; i++)); do
        tags_count "$d/c/tags.txt" bench-a "$NAME" >/dev/null && break
        if ! _ours "$cs" || ! _ours "$an" || ! _ours "$li"; then break; fi
        sleep 0.1
    done
    if ! tags_count "$d/c/tags.txt" bench-a "$NAME" >/dev/null; then
        record ours FAIL "the listener never listed $NAME (see $RUN/ours-*.log)"
    else
        OURS_PEER=$d/c PRE_RUN=_ours_clean \
            measure ours "$RUNS" sh -c '"$1" --dir "$2" --bind 127.0.0.3 --quiet get "$3" >/dev/null && exec mv "$2/downloads/$3" "$4"' \
            sh "$BIN/downloader" "$d/c" "$NAME" "$DST"
        SINGLE_NOTES+="  ours $LABEL: peak RSS chunk-server $(peak_rss_mib "$cs") MiB, announcer $(peak_rss_mib "$an") MiB, listener $(peak_rss_mib "$li") MiB (downloader: recv RSS above)"$'\n'
    fi
    stop_server "$an"
    stop_server "$li"
    stop_server "$cs"
    rm -rf "$d"
}

# tags_count TAGS USER [NAME]: prints how many different contents TAGS lists for USER with all
# five chunks (only NAME, when given); fails when none. Columns, as README's tags.txt says:
# USER PEER_ID ADDRESS PROTO CONTENT CHUNKS ...; an impostor's PEER_ID is `!ID`.
tags_count() {
    [[ -f $1 ]] || return 1
    awk -v u="$2" -v c="${3:-}" '
        $1 == u && $2 !~ /^!/ && $6 == "12345" && (c == "" || $5 == c) && !seen[$5]++ { n++ }
        END { print n + 0; exit !n }' "$1"
}

section_single() {
    local sz m
    log ""
    log "== section single: one source over loopback, sizes ${SIZES// /, } MiB"
    for sz in $SIZES; do
        make_file "$sz" || { log "cannot create the $sz MiB file"; return 1; }
        if ((sz % 1024 == 0)); then LABEL="$((sz / 1024))GiB"; else LABEL="${sz}MiB"; fi
        warm_src
        log "-- $LABEL file $SRC sha256 $SHA"
        log "   page cache: $(fincore -nb -o RES "$SRC" 2>/dev/null | awk -v s="$SIZE_BYTES" '{printf "%.0f%% of src resident", 100*$1/s}')"
        for m in "${SINGLE_METHODS[@]}"; do
            want "$m" && "m_$m"
        done
    done
}
