# shellcheck shell=bash disable=SC2016  # the runner's $vars are expanded by its own bash
# Section `clients` of scripts/bench.sh: $CLIENTS_N (100) downloads of one file started at once
# from one chunk server. Sourced, never run.
#
# In a network namespace of its own (root; otherwise on this host's loopback, where nstat's
# counters are the whole host's): peer srv (127.0.0.2) runs a chunk-server sharing a
# $CLIENTS_SIZE MiB file and an announcer, and a listener writes a tags.txt listing it, which is
# copied into each client's peer folder. Then $CLIENTS_N downloaders start together, each from
# a source address of its own (127.1.x.y: the chunk server's --max-per-ip is per address), and
# the section prints how many completed with a file identical to the original (exit status 0:
# verified by the downloader; then `cmp`), the total time from the start until the last one
# exited, the median and slowest client, and the listen-queue counters of nstat over the run:
# TcpExtListenOverflows and TcpExtListenDrops (connections the accept queue had no room for),
# TcpExtTCPSynRetrans (SYNs sent again, about 1 s each).

CLIENTS_NOTES=

section_clients() {
    log ""
    log "== section clients: $CLIENTS_N concurrent downloads of a $CLIENTS_SIZE MiB file from one chunk server"
    local bins=("$BIN/chunk-server" "$BIN/announcer" "$BIN/listener" "$BIN/downloader") b
    for b in "${bins[@]}"; do [[ -x $b ]] || { log "   skipped: $b is missing"; return 1; }; done
    make_file "$CLIENTS_SIZE" || { log "   cannot create the $CLIENTS_SIZE MiB file"; return 1; }

    local ns="" tcp udp d=$RUN/clients
    if ((EUID == 0)) && command -v ip >/dev/null; then
        ns=p2pb$$-clients
        ns_add "$ns" || { log "   cannot create a network namespace"; return 1; }
        tcp=5001 udp=5000
        log "   in network namespace $ns (its own loopback and counters)"
    else
        alloc_port tcp
        alloc_port udp
        log "   on this host's loopback (not root: no namespace; nstat counts the whole host)"
    fi
    ns_prefix "$ns"
    mkdir -p "$d/srv" "$d/index"
    local cs an li i
    start_server clients-chunk-server "${NSX[@]}" "$BIN/chunk-server" --dir "$d/srv" --bind 127.0.0.2 \
        --port "$tcp" --share "$SRC"
    cs=$LAST_PID
    start_server clients-listener "${NSX[@]}" "$BIN/listener" --dir "$d/index" --port "$udp" \
        --broadcast "127.255.255.255:$udp"
    li=$LAST_PID
    start_server clients-announcer "${NSX[@]}" "$BIN/announcer" --dir "$d/srv" --bind 127.0.0.2 \
        --broadcast "127.255.255.255:$udp" --port "$udp" --username srv
    an=$LAST_PID
    for ((i = 0; i < 600; i++)); do
        tags_count "$d/index/tags.txt" srv "$NAME" >/dev/null && break
        sleep 0.1
    done
    if ! tags_count "$d/index/tags.txt" srv "$NAME" >/dev/null; then
        log "   the listener did not list $NAME within 60 s (see $RUN/clients-*.log)"
        stop_server "$an"; stop_server "$li"; stop_server "$cs"
        [[ -n $ns ]] && ns_del "$ns"
        return 1
    fi
    # Copied before the announcer stops: its goodbye empties the listener's tags.txt. The copies
    # stay valid for 3 announce intervals (3 min).
    for ((i = 1; i <= CLIENTS_N; i++)); do
        mkdir -p "$d/c$i"
        cp "$d/index/tags.txt" "$d/c$i/tags.txt"
    done
    stop_server "$an"
    stop_server "$li"

    # One bash in the namespace forks every client, waits until all are ready, then releases
    # them together: each waits for one line from a FIFO (opened read-write, so no open blocks
    # and a late reader still finds its line). It writes the start and end times (ns) to
    # $d/t0 and $d/t1; each client leaves "STATUS MILLISECONDS" in its folder.
    local runner='
        n=$1 bin=$2 d=$3 name=$4
        mkfifo "$d/go" && exec 5<>"$d/go" || exit 1
        for ((i = 1; i <= n; i++)); do
            (
                : >"$d/c$i/ready"
                read -r -u 5 _
                s=${EPOCHREALTIME/./}000 # ns, without a fork
                "$bin" --dir "$d/c$i" --bind "127.1.$((i / 250)).$((i % 250 + 1))" --quiet get "$name" \
                    >/dev/null 2>"$d/c$i/stderr"
                rc=$?
                e=${EPOCHREALTIME/./}000
                echo "$rc $(((e - s) / 1000000)) $s" >"$d/c$i/result"
            ) &
        done
        until [ "$(find "$d" -maxdepth 2 -name ready | wc -l)" -ge "$n" ]; do sleep 0.05; done
        date +%s%N >"$d/t0"
        for ((i = 1; i <= n; i++)); do echo go; done >&5
        wait
        date +%s%N >"$d/t1"'
    local counters=(TcpExtListenOverflows TcpExtListenDrops TcpExtTCPSynRetrans) before=() after=() v t0 t1 pg
    while read -r v; do before+=("$v"); done < <(nstat_get "$ns" "${counters[@]}")
    start_server_group clients-runner 'ns=$1; shift; if [ -n "$ns" ]; then exec ip netns exec "$ns" bash -c "$@"; else exec bash -c "$@"; fi' \
        "$ns" "$runner" bash "$CLIENTS_N" "$BIN/downloader" "$d" "$NAME"
    pg=$LAST_PID
    wait "$pg"
    _untrack SERVER_PGIDS "$pg"
    t0=$(cat "$d/t0" 2>/dev/null || echo 0)
    t1=$(cat "$d/t1" 2>/dev/null || echo 0)
    while read -r v; do after+=("$v"); done < <(nstat_get "$ns" "${counters[@]}")
    local rss
    rss=$(peak_rss_mib "$cs")
    stop_server "$cs"
    [[ -n $ns ]] && ns_del "$ns"

    # Failed clients: their stderr in $RUN/clients-failures.log, their last lines counted.
    local ok=0 ms=() starts=() rc t st failures=$RUN/clients-failures.log
    : >"$failures"
    for ((i = 1; i <= CLIENTS_N; i++)); do
        if [[ -s $d/c$i/result ]]; then
            read -r rc t st <"$d/c$i/result"
            ms+=("$t")
            starts+=("$st")
        else
            rc=missing
        fi
        if [[ $rc == 0 ]] && cmp -s "$SRC" "$d/c$i/downloads/$NAME"; then
            ok=$((ok + 1))
        else
            {
                echo "--- client $i (127.1.$((i / 250)).$((i % 250 + 1))): status $rc"
                cat "$d/c$i/stderr" 2>/dev/null
            } >>"$failures"
        fi
        rm -rf "$d/c$i/downloads" "$d/c$i/temp"
    done
    # The chunk server's refusals, by outcome (its documented `refused ... outcome=` events).
    local refused
    refused=$(grep -o ' refused .*outcome=[a-z_]*' "$RUN/clients-chunk-server.log" 2>/dev/null |
        sed 's/.*outcome=//' | sort | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
    local out
    out=$(
        printf '  completed               %d of %d (exit 0 and identical to the original)\n' "$ok" "$CLIENTS_N"
        if ((ok < CLIENTS_N)); then
            printf '  failures                %d; their last lines (all in %s):\n' $((CLIENTS_N - ok)) "$failures"
            awk '/^--- client/ { if (l != "") print l; l = ""; next } { l = $0 } END { if (l != "") print l }' "$failures" |
                sort | uniq -c | sort -rn | head -n 5 | sed 's/^ */    /'
        fi
        printf '  refused by the server   %s\n' "${refused:-none}"
        awk -v ns="$((t1 - t0))" -v b="$SIZE_BYTES" -v n="$CLIENTS_N" \
            'BEGIN { printf "  total time              %.2f s   (%.0f MB/s in all)\n", ns / 1e9, n * b / (ns / 1e9) / 1e6 }'
        printf '  per client              median %s s, slowest %s s; the last one started %s s after the first\n' \
            "$(awk -v m="$(median_of "${ms[@]}")" 'BEGIN { printf "%.2f", m / 1000 }')" \
            "$(printf '%s\n' "${ms[@]}" | sort -n | tail -n 1 | awk '{ printf "%.2f", $1 / 1000 }')" \
            "$(printf '%s\n' "${starts[@]}" | sort -n | awk 'NR == 1 { f = $1 } { l = $1 } END { printf "%.2f", (l - f) / 1e9 }')"
        printf '  listen queue            ListenOverflows %d, ListenDrops %d, SYN retransmits %d (nstat%s, during the run)\n' \
            $((after[0] - before[0])) $((after[1] - before[1])) $((after[2] - before[2])) "${ns:+ in the namespace}"
        printf '  chunk-server peak RSS   %s MiB\n' "$rss"
    )
    # shellcheck disable=SC2034  # read by bench.sh's summary
    CLIENTS_NOTES=$out
    log "$out"
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$d"
}
