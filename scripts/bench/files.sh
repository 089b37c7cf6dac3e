# shellcheck shell=bash
# Section `files` of scripts/bench.sh: a peer sharing $FILES_N (10,000) small files, measured
# from the outside only (sockets, a capture, /proc, nstat), so that the same figures can be
# taken before and after the programs change. Sourced, never run.
#
# In a network namespace of its own (root; otherwise on this host's loopback, where nstat's
# counters are the whole host's and nothing is captured): peer alice (127.0.0.2) runs a
# chunk-server sharing the folder and an announcer (--interval $FILES_INTERVAL); peer bob runs
# a listener (its defaults, or $FILES_LISTENER_ARGS beyond 10,000 files: room for every entry).
# All three start together.
#
#   listening after     chunk-server start until its TCP port is in the LISTEN state
#                       (/proc/PID/net/tcp), and until it answers a request: a prober sends a
#                       legacy request for a chunk every 20 ms (each given 0.25 s) until it gets
#                       bytes or an orderly close (a socket can listen long before its program
#                       accepts)
#   all listed after    start until bob's tags.txt lists every file with its 5 chunks
#                       (given up after $FILES_LIST_TIMEOUT s: then the most it listed)
#   start-up traffic    alice's UDP datagrams and their bytes from start until all listed, and
#                       the TCP bytes to and from the chunk server (tcpdump on the namespace's lo)
#   per announcement    once all are listed, the first whole periodic announcement: datagrams,
#                       bytes and how long the announcer took to send them (a burst: datagrams
#                       less than a tenth of an interval apart), with the TCP bytes of that
#                       interval; a sender with no pause that long is counted over one interval
#   idle CPU            each program's CPU over $FILES_IDLE s from then (/proc/PID/stat), and
#                       over one whole interval (with its announcement)
#   receiver drops      UdpRcvbufErrors and UdpInErrors (nstat, the namespace's, whole run) and
#                       the drops counted on the listener's and on the announcer's own sockets
#                       (/proc/PID/net/udp; the announcer hears queries on the broadcast port)
#   peak RSS, writes    VmHWM of each program; bytes the listener wrote in the steady phase

FILES_NOTES=

# make_small_files N: FILES_DIR = $WORKDIR/files_N, N files of 1 B to 4 KiB of random bytes
# (made once, kept for the next runs).
make_small_files() {
    FILES_DIR=$WORKDIR/files_$1
    [[ -f $FILES_DIR/.complete ]] && return 0
    log "creating $1 small files in $FILES_DIR"
    rm -rf "$FILES_DIR"
    mkdir -p "$FILES_DIR" || return 1
    python3 - "$FILES_DIR" "$1" <<'EOF' || return 1
import os, random, sys
folder, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    with open(os.path.join(folder, "f%05d.dat" % i), "wb") as f:
        f.write(os.urandom(random.randint(1, 4096)))
EOF
    : >"$FILES_DIR/.complete"
}

# The prober (python3 -c "$PROBE_PY" ADDR PORT CHUNK FROM): prints the epoch time at which the chunk
# server first answered a legacy request for CHUNK (bytes, an orderly close or a reset after the
# request). It connects from FROM, $PROBE_ADDR, whose packets the traffic figures leave out.
PROBE_ADDR=127.0.0.9
PROBE_PY='
import socket, sys, time
addr, port, chunk, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = ("{\"filename\": \"%s\"}" % chunk).encode()
while True:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(0.25)
    try:
        s.connect((addr, port))
        s.sendall(request)
        s.recv(1)
    except ConnectionResetError:
        pass
    except OSError:
        s.close()
        time.sleep(0.02)
        continue
    print("%.6f" % time.time(), flush=True)
    break
'

# socket_drops PID: the drops counted on the UDP sockets PID holds (/proc/PID/net/udp, by inode).
socket_drops() {
    local inodes
    inodes=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n')
    awk -v list="$inodes" 'BEGIN { n = split(list, a, "\n"); for (i = 1; i <= n; i++) mine[a[i]] = 1 }
        NR > 1 && ($10 in mine) { d += $NF } END { print d + 0 }' "/proc/$1/net/udp"
}

# capture_lines PCAP UDP_SRC TCP_PORT: one line per packet of interest, "TIME u BYTES" for a UDP
# datagram from address UDP_SRC, "TIME t BYTES" for TCP to or from TCP_PORT (payload bytes; the
# prober's connections left out).
capture_lines() {
    tcpdump -r "$1" -tt -nn 2>/dev/null | awk -v src="$2" -v tport="$3" -v probe="$PROBE_ADDR" '
        {
            len = 0
            for (i = 1; i < NF; i++) if ($i == "length") len = $(i + 1) + 0
            s = $3; sub(/\.[0-9]+$/, "", s)
            r = $5; sub(/\.[0-9]+:$/, "", r)
            if ($0 ~ /: UDP, length/) { if (s == src) print $1, "u", len }
            else if (($3 ~ "\\." tport "$" || $5 ~ "\\." tport ":$") && s != probe && r != probe) print $1, "t", len
        }'
}

# window_sums FROM TO < capture_lines: "datagrams udp_bytes tcp_bytes" between epoch times.
window_sums() {
    awk -v from="$1" -v to="$2" '$1 >= from && $1 < to { if ($2 == "u") { n++; ub += $3 } else tb += $3 }
        END { printf "%d %d %d\n", n, ub, tb }'
}

# first_burst AFTER END GAP < capture_lines: "datagrams udp_bytes start duration" of the first
# burst of datagrams (each less than GAP s after the previous one) that starts after AFTER, after
# a pause of at least GAP, and ends at least GAP before END; nothing when there is none.
first_burst() {
    awk -v after="$1" -v end="$2" -v gap="$3" '
        function emit() { printf "%d %d %.6f %.2f\n", n, b, start, last - start; done = 1 }
        $2 != "u" { next }
        {
            t = $1 + 0
            if (n > 0 && t - last >= gap) { # the burst ended at `last`, and a pause followed
                if (start > after) { emit(); exit }
                n = 0
            }
            if (n == 0) { start = t; b = 0 }
            n++; b += $3; last = t
        }
        END { if (!done && n > 0 && start > after && last + gap <= end) emit() }'
}

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }
sleep_until() { # EPOCH
    local s
    s=$(awk -v t="$1" -v n="$(now_s)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    sleep "$s"
}

section_files() {
    log ""
    log "== section files: a peer sharing $FILES_N small files (announce interval ${FILES_INTERVAL} s)"
    local bins=("$BIN/chunk-server" "$BIN/announcer" "$BIN/listener") b
    for b in "${bins[@]}"; do [[ -x $b ]] || { log "   skipped: $b is missing"; return 1; }; done
    make_small_files "$FILES_N" || { log "   cannot create the files"; return 1; }

    local ns="" tcp udp capture=0 d=$RUN/files
    if ((EUID == 0)) && command -v ip >/dev/null; then
        ns=p2pb$$-files
        ns_add "$ns" || { log "   cannot create a network namespace"; return 1; }
        tcp=5001 udp=5000
        command -v tcpdump >/dev/null && capture=1
        log "   in network namespace $ns (its own loopback and counters)"
    else
        alloc_port tcp
        alloc_port udp
        log "   on this host's loopback (not root: no namespace, no capture; nstat counts the whole host)"
    fi
    ns_prefix "$ns"
    mkdir -p "$d/alice" "$d/bob"

    local tcpdump_pid="" i
    if ((capture)); then
        start_server files-tcpdump "${NSX[@]}" tcpdump -i lo -nn -s 128 -B 32768 -U -w "$d/capture.pcap" \
            "udp port $udp or tcp port $tcp"
        tcpdump_pid=$LAST_PID
        for ((i = 0; i < 100; i++)); do
            grep -q 'listening on' "$RUN/files-tcpdump.log" 2>/dev/null && break
            sleep 0.05
        done
    fi
    local before=() after=() v
    while read -r v; do before+=("$v"); done < <(nstat_get "$ns" UdpRcvbufErrors UdpInErrors)

    # shellcheck disable=SC2206  # FILES_LISTENER_ARGS is a list of words
    local largs=($FILES_LISTENER_ARGS) cs li an t0
    t0=$(now_s)
    start_server files-chunk-server "${NSX[@]}" "$BIN/chunk-server" --dir "$d/alice" --bind 127.0.0.2 \
        --port "$tcp" --share "$FILES_DIR"
    cs=$LAST_PID
    start_server files-probe "${NSX[@]}" python3 -c "$PROBE_PY" 127.0.0.2 "$tcp" f00001.dat_1 "$PROBE_ADDR"
    local probe=$LAST_PID
    start_server files-listener "${NSX[@]}" "$BIN/listener" --dir "$d/bob" --port "$udp" \
        --broadcast "127.255.255.255:$udp" "${largs[@]}"
    li=$LAST_PID
    start_server files-announcer "${NSX[@]}" "$BIN/announcer" --dir "$d/alice" --bind 127.0.0.2 \
        --broadcast "127.255.255.255:$udp" --port "$udp" --interval "$FILES_INTERVAL" --username alice
    an=$LAST_PID

    local t_listen="" t_answer="" t_all="" listed=0 most=0 now deadline
    deadline=$(plus "$t0" "$FILES_LIST_TIMEOUT")
    while :; do
        now=$(now_s)
        if [[ -z $t_listen ]] && listening "$cs" "$tcp"; then t_listen=$(elapsed "$t0" "$now"); fi
        if [[ -z $t_answer && -s $RUN/files-probe.log ]]; then
            t_answer=$(elapsed "$t0" "$(head -n 1 "$RUN/files-probe.log")")
        fi
        listed=$(tags_count "$d/bob/tags.txt" alice || true)
        ((listed > most)) && most=$listed
        if ((listed >= FILES_N)) && [[ -n $t_answer ]]; then t_all=$(elapsed "$t0" "$now"); break; fi
        if ! _ours "$cs" || ! _ours "$li" || ! _ours "$an"; then
            log "   a program exited early (see $RUN/files-*.log)"
            break
        fi
        awk -v a="$now" -v b="$deadline" 'BEGIN { exit !(a > b) }' && break
        if [[ -z $t_listen || -z $t_answer ]]; then sleep 0.01; else sleep 0.2; fi
    done
    stop_server "$probe"
    local t_s
    t_s=$(now_s)
    log "   listening after ${t_listen:-never} s, answering after ${t_answer:-never} s; all $FILES_N listed after ${t_all:-never} s (most listed: $most)"

    # Steady state: CPU over $FILES_IDLE s and over one interval; the capture goes on for half an
    # interval more, so that one whole periodic announcement falls inside it.
    local p c0=() c1=() c2=() w0=() w1=() idle_s=$FILES_IDLE long_s=$FILES_INTERVAL t_end
    t_end=$(plus "$t_s" "$(awk -v i="$long_s" -v s="$idle_s" 'BEGIN { m = i * 1.5; print (m > s ? m : s) }')")
    log "   steady state: CPU over ${idle_s} s and over ${long_s} s, capture until $(elapsed "$t_s" "$t_end") s"
    for p in "$cs" "$an" "$li"; do c0+=("$(cpu_ticks "$p")") w0+=("$(wchar "$p")"); done
    if ((idle_s <= long_s)); then
        sleep_until "$(plus "$t_s" "$idle_s")"
        for p in "$cs" "$an" "$li"; do c1+=("$(cpu_ticks "$p")"); done
        sleep_until "$(plus "$t_s" "$long_s")"
        for p in "$cs" "$an" "$li"; do c2+=("$(cpu_ticks "$p")"); done
    else
        sleep_until "$(plus "$t_s" "$long_s")"
        for p in "$cs" "$an" "$li"; do c2+=("$(cpu_ticks "$p")"); done
        sleep_until "$(plus "$t_s" "$idle_s")"
        for p in "$cs" "$an" "$li"; do c1+=("$(cpu_ticks "$p")"); done
    fi
    sleep_until "$t_end"
    for p in "$cs" "$an" "$li"; do w1+=("$(wchar "$p")"); done

    local drops_li drops_an rss=()
    while read -r v; do after+=("$v"); done < <(nstat_get "$ns" UdpRcvbufErrors UdpInErrors)
    drops_li=$(socket_drops "$li")
    drops_an=$(socket_drops "$an")
    for p in "$cs" "$an" "$li"; do rss+=("$(peak_rss_mib "$p")"); done
    stop_server "$an"
    stop_server "$li"
    stop_server "$cs"

    local startup="" burst="" interval="" kdrop="" gap
    gap=$(awk -v i="$FILES_INTERVAL" 'BEGIN { print i / 10 }')
    if [[ -n $tcpdump_pid ]]; then
        stop_server "$tcpdump_pid"
        kdrop=$(awk '/dropped by kernel/ { print $1 }' "$RUN/files-tcpdump.log")
        capture_lines "$d/capture.pcap" 127.0.0.2 "$tcp" >"$d/capture.txt"
        startup=$(window_sums "$t0" "$t_s" <"$d/capture.txt")
        burst=$(first_burst "$t_s" "$t_end" "$gap" <"$d/capture.txt")
        if [[ -n $burst ]]; then
            read -r _ _ v _ <<<"$burst"
            interval=$(window_sums "$v" "$(plus "$v" "$FILES_INTERVAL")" <"$d/capture.txt")
        else
            interval=$(window_sums "$t_s" "$(plus "$t_s" "$FILES_INTERVAL")" <"$d/capture.txt")
        fi
    fi
    [[ -n $ns ]] && ns_del "$ns"

    local names=(chunk-server announcer listener) out k n ub tb dur
    out=$(
        printf '  files shared            %d (1 B - 4 KiB each); announce interval %d s; listener %s\n' \
            "$FILES_N" "$FILES_INTERVAL" "${FILES_LISTENER_ARGS:-with its defaults}"
        printf '  listening after         %s s; answering after %s s   (chunk-server start until its port listens; until it answers a request)\n' \
            "${t_listen:-never}" "${t_answer:-never}"
        if [[ -n $t_all ]]; then
            printf '  all listed after        %s s   (start until the listener'"'"'s tags.txt lists all %d)\n' "$t_all" "$FILES_N"
        else
            printf '  all listed after        never within %s s (at most %d of %d listed)\n' "$FILES_LIST_TIMEOUT" "$most" "$FILES_N"
        fi
        if [[ -n $startup ]]; then
            read -r n ub tb <<<"$startup"
            printf '  start-up traffic        %d datagrams, %d bytes UDP; %d bytes TCP (start until all listed)\n' "$n" "$ub" "$tb"
            if [[ -n $burst ]]; then
                read -r n ub _ dur <<<"$burst"
                printf '  per announcement        %d datagrams, %d bytes UDP, sent in %s s' "$n" "$ub" "$dur"
                read -r n ub tb <<<"$interval"
                printf '; that interval: %d datagrams, %d bytes TCP\n' "$n" "$tb"
            else
                read -r n ub tb <<<"$interval"
                printf '  per announce interval   %d datagrams, %d bytes UDP; %d bytes TCP (no pause of %s s: one interval)\n' \
                    "$n" "$ub" "$tb" "$gap"
            fi
        else
            printf '  datagrams               n/a (no capture: needs root and tcpdump)\n'
        fi
        printf '  %-24s' "idle CPU ($idle_s s)"
        for k in 0 1 2; do
            awk -v n="${names[k]}" -v a="${c0[k]}" -v b="${c1[k]}" -v t="$CLK_TCK" -v s="$idle_s" \
                'BEGIN { printf "%s%s %.2f %%", (n == "chunk-server" ? "" : ", "), n, (b - a) / t / s * 100 }'
        done
        echo " of a core"
        printf '  CPU over an interval    '
        for k in 0 1 2; do
            awk -v n="${names[k]}" -v a="${c0[k]}" -v b="${c2[k]}" -v t="$CLK_TCK" -v s="$long_s" \
                'BEGIN { printf "%s%s %.2f %%", (n == "chunk-server" ? "" : ", "), n, (b - a) / t / s * 100 }'
        done
        echo " ($long_s s, an announcement included)"
        printf '  receiver drops          UdpRcvbufErrors %d, UdpInErrors %d (nstat%s); on the sockets of the listener %d, of the announcer %d (/proc/net/udp)%s\n' \
            $((after[0] - before[0])) $((after[1] - before[1])) "${ns:+ in the namespace}" "$drops_li" "$drops_an" \
            "${kdrop:+; capture lost $kdrop}"
        printf '  peak RSS                chunk-server %s MiB, announcer %s MiB, listener %s MiB\n' "${rss[@]}"
        printf '  listener wrote          %d bytes in the steady %s s (wchar)\n' $((w1[2] - w0[2])) "$(elapsed "$t_s" "$t_end")"
    )
    # shellcheck disable=SC2034  # read by bench.sh's summary
    FILES_NOTES=$out
    log "$out"
}
