# shellcheck shell=bash disable=SC2016  # single-quoted $1 etc. are expanded by `sh -c` on purpose
# The measuring machinery of scripts/bench.sh: sourced, never run.
#
# Adapted from the loopback baselines harness of the development setup (`../shared/bench/
# baselines.sh` and its `lib/stats.py`, copied here so that a fresh clone is self-contained),
# keeping its method: the timed region is the receiving command only (servers already listen),
# under /usr/bin/time for the receiver's peak RSS; the source file is warm in the page cache;
# the destination is a new file in $DSTDIR, deleted with a `sync` before every run; one
# untimed warm-up, then N timed runs, each checked (exit status, size, `cmp` on the first); one
# TSV row per run, summarised by scripts/bench/stats.py.
#
# Processes: every server is started by us and stopped by its PID (start_server) or by the
# process group that `setsid` gave it (start_server_group), from the EXIT trap too; network
# namespaces made with ns_add are deleted there. Nothing is ever signalled by name.
#
# Needs, set by the caller: WORKDIR SRCDIR DSTDIR RUN TSV RUNS WARMUP VERIFY SOCAT_BUF ONLY SKIP.

log() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------- processes
SERVER_PIDS=()   # started with start_server, not yet stopped
SERVER_PGIDS=()  # process groups started with start_server_group, not yet stopped
NETNS=()         # network namespaces made by ns_add, not yet deleted
LAST_PID=

_untrack() { # array_name value
    local -n arr=$1
    local v=$2 x keep=()
    for x in "${arr[@]}"; do [[ $x == "$v" ]] || keep+=("$x"); done
    arr=("${keep[@]}")
}

_ours() { # pid -> true if it is alive (not a zombie) and our direct child
    local pid=$1 ppid state
    [[ -r /proc/$pid/stat ]] || return 1
    ppid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')
    state=$(ps -o stat= -p "$pid" 2>/dev/null)
    [[ $ppid == "$$" && $state != Z* ]]
}

# start_server LOGNAME CMD...: runs CMD in the background, output to $RUN/LOGNAME.log; sets
# LAST_PID. `ip netns exec NS PROGRAM` execs PROGRAM, so LAST_PID is then the program's PID.
start_server() {
    local name=$1
    shift
    # fd 9, bench.sh's lock on the work folder, stays with the script.
    "$@" </dev/null >"$RUN/$name.log" 2>&1 9>&- &
    LAST_PID=$!
    SERVER_PIDS+=("$LAST_PID")
}

# start_server_group LOGNAME SHELL_STRING [ARG...]: runs `bash -c SHELL_STRING bash ARG...` in a
# session (and process group) of its own; sets LAST_PID, which is also the group's id.
start_server_group() {
    local name=$1 cmd=$2
    shift 2
    setsid bash -c "$cmd" bash "$@" </dev/null >"$RUN/$name.log" 2>&1 9>&- &
    LAST_PID=$!
    SERVER_PGIDS+=("$LAST_PID")
}

stop_server() { # pid
    local pid=$1 i
    if _ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do _ours "$pid" || break; sleep 0.05; done
        _ours "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    _untrack SERVER_PIDS "$pid"
}

stop_server_group() { # pgid
    local pg=$1 i
    if pgrep -g "$pg" >/dev/null 2>&1; then
        kill -TERM -- "-$pg" 2>/dev/null
        for ((i = 0; i < 100; i++)); do pgrep -g "$pg" >/dev/null 2>&1 || break; sleep 0.05; done
        pgrep -g "$pg" >/dev/null 2>&1 && kill -KILL -- "-$pg" 2>/dev/null
    fi
    wait "$pg" 2>/dev/null
    _untrack SERVER_PGIDS "$pg"
}

# ns_add NAME: a new network namespace with its loopback up; deleted at exit.
ns_add() {
    ip netns add "$1" || return 1
    NETNS+=("$1")
    ip -n "$1" link set lo up
}

ns_del() {
    ip netns del "$1" 2>/dev/null
    _untrack NETNS "$1"
}

# in_ns NS CMD...: CMD in network namespace NS, or here when NS is empty. Not for start_server,
# whose PID must be the program's own: use "${NSX[@]}" (ns_prefix) there.
in_ns() {
    local ns=$1
    shift
    if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

# ns_prefix NS: NSX = the words that run a command in namespace NS (none when NS is empty):
# `ip netns exec` execs the command, so `start_server NAME "${NSX[@]}" PROGRAM` keeps the
# program's PID (a function such as in_ns, run in the background, would be a subshell).
# shellcheck disable=SC2034  # read by the sections
NSX=()
ns_prefix() {
    NSX=()
    # shellcheck disable=SC2034
    if [[ -n $1 ]]; then NSX=(ip netns exec "$1"); fi
}

harness_cleanup() {
    local p
    for p in "${SERVER_PIDS[@]}"; do stop_server "$p"; done
    for p in "${SERVER_PGIDS[@]}"; do stop_server_group "$p"; done
    for p in "${NETNS[@]}"; do ns_del "$p"; done
    rm -rf "${DSTDIR:?}"/* 2>/dev/null
}

# ---------------------------------------------------------------- ports
NEXT_PORT=${BASE_PORT:-18400}
_port_busy() { ss -Htuan "sport = :$1" 2>/dev/null | grep -q .; }

# alloc_port VAR [COUNT]: VAR = the first of COUNT consecutive ports free for TCP and UDP.
alloc_port() {
    local -n out=$1
    local n=${2:-1} p k ok
    for ((p = NEXT_PORT; p < 65000; p++)); do
        ok=1
        for ((k = 0; k < n; k++)); do _port_busy $((p + k)) && { ok=0; break; }; done
        ((ok)) && break
    done
    # shellcheck disable=SC2034  # nameref
    out=$p
    NEXT_PORT=$((p + n))
}

# listening PID PORT: whether the network namespace of process PID has a TCP socket listening
# on PORT (read from /proc/PID/net/tcp, so it works from outside a namespace, and cheaply).
listening() {
    local hex
    hex=$(printf '%04X' "$2")
    awk -v p=":$hex" 'substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' \
        "/proc/$1/net/tcp" 2>/dev/null
}

# wait_listen ADDR PORT [TIMEOUT_S [NS]]: until something listens on ADDR:PORT (a wildcard
# listener counts too), in namespace NS when given.
wait_listen() {
    local addr=$1 port=$2 t=${3:-15} ns=${4:-} i
    for ((i = 0; i < t * 20; i++)); do
        in_ns "$ns" ss -Hltn "sport = :$port" 2>/dev/null | awk '{print $4}' |
            grep -qxE "(${addr//./\\.}|0\.0\.0\.0|\*|\[::\]):$port" && return 0
        sleep 0.05
    done
    log "    timeout waiting for a listener on $addr:$port${ns:+ in $ns}"
    return 1
}

# ---------------------------------------------------------------- measuring
want() {
    [[ -z $ONLY || $1 =~ $ONLY ]] && [[ -z $SKIP || ! $1 =~ $SKIP ]]
}

record() { # method status note
    printf '%s\t%s\t0\t0\t0\t0\t%s\t%s\n' "$1" "$LABEL" "$2" "${3//$'\t'/ }" >>"$TSV"
    log "    $2: $3"
}

need() { # method cmd...  -> a SKIP row if a tool is missing
    local m=$1 c
    shift
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || { record "$m" SKIP "missing $c (run as root to install it)"; return 1; }
    done
}

warm_src() { cat "$SRC" >/dev/null; }

# measure NAME NRUNS CMD...
#   Runs CMD (no shell) WARMUP+NRUNS times under /usr/bin/time; the timed region is CMD only.
#   Before each run: $DSTDIR wiped, sync, then the optional $PRE_RUN (a function name, e.g. to
#   start a one-shot server); after: $POST_RUN. The gap between the wipe and the start is kept
#   short: on a VM that hands RAM free for ~2 s back to the host (virtio-balloon free page
#   reporting), re-faulting it costs ~1-2.5 s/GiB; the pages freed by the wipe are reused hot.
#   Checks the exit status, the size of $DST (unless NO_DST=1) and `cmp` on the first run
#   (VERIFY=1). Writes one TSV row per timed run.
measure() {
    local name=$1 nruns=$2
    shift 2
    local i t0 t1 rc rss got ns
    log "  $name ($LABEL): $WARMUP warm-up + $nruns timed"
    warm_src
    for ((i = -WARMUP; i < nruns; i++)); do
        rm -rf "${DSTDIR:?}"/* 2>/dev/null
        sync
        if [[ -n ${PRE_RUN:-} ]] && ! $PRE_RUN; then
            [[ -n ${POST_RUN:-} ]] && $POST_RUN
            record "$name" FAIL "server setup failed (see $RUN)"
            return 1
        fi
        t0=$(date +%s%N)
        /usr/bin/time -f '%M' -o "$RUN/time.out" "$@" >"$RUN/cmd.out" 2>&1
        rc=$?
        t1=$(date +%s%N)
        [[ -n ${POST_RUN:-} ]] && $POST_RUN
        if ((rc != 0)); then
            record "$name" FAIL "exit $rc: $(tail -c 300 "$RUN/cmd.out" | tr '\n\t' '  ')"
            return 1
        fi
        if [[ -z ${NO_DST:-} ]]; then
            got=$(stat -c %s "$DST" 2>/dev/null || echo missing)
            if [[ $got != "$SIZE_BYTES" ]]; then
                record "$name" FAIL "dst size $got != $SIZE_BYTES"
                return 1
            fi
            if ((VERIFY && i == -WARMUP)) && ! cmp -s "$SRC" "$DST"; then
                record "$name" FAIL "dst content differs from src"
                return 1
            fi
        fi
        rss=$(tail -n 1 "$RUN/time.out")
        ns=$((t1 - t0))
        if ((i >= 0)); then
            printf '%s\t%s\t%d\t%d\t%d\t%s\tOK\n' "$name" "$LABEL" "$i" "$ns" "$SIZE_BYTES" "$rss" >>"$TSV"
        fi
        awk -v i="$i" -v ns="$ns" -v b="$SIZE_BYTES" -v r="$rss" 'BEGIN {
      printf "    %s %7.3f s %8.0f MB/s  rss %6.1f MiB\n", (i < 0 ? "warm-up" : "run " i "  "), ns/1e9, b/(ns/1e9)/1e6, r/1024 }'
    done
    rm -rf "${DSTDIR:?}"/* 2>/dev/null
    return 0
}

# make_file MiB: SRC = $SRCDIR/file_<MiB>M.bin (made once, pseudo-random), SHA = its SHA-256.
make_file() {
    SRC=$SRCDIR/file_${1}M.bin
    local want=$(($1 * 1048576)) shaf
    if [[ -f $SRC && $(stat -c %s "$SRC") == "$want" ]]; then
        log "reusing $SRC"
    else
        log "creating $SRC ($1 MiB)"
        # AES-CTR of zeros: incompressible and much faster than /dev/urandom.
        openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:p2p-bench-$1" </dev/zero 2>/dev/null |
            head -c "$want" >"$SRC.tmp"
        if [[ $(stat -c %s "$SRC.tmp" 2>/dev/null || echo 0) != "$want" ]]; then
            head -c "$want" /dev/urandom >"$SRC.tmp" || return 1
        fi
        mv "$SRC.tmp" "$SRC" || return 1
        rm -f "$WORKDIR/$(basename "$SRC").sha256"
    fi
    chmod 644 "$SRC"
    shaf=$WORKDIR/$(basename "$SRC").sha256
    if [[ ! -s $shaf || $shaf -ot $SRC ]]; then
        sha256sum "$SRC" | cut -d' ' -f1 >"$shaf"
    fi
    # shellcheck disable=SC2034  # read by the sections
    SHA=$(cat "$shaf")
    NAME=$(basename "$SRC")
    DST=$DSTDIR/$NAME
    SIZE_BYTES=$(stat -c %s "$SRC")
}

# ---------------------------------------------------------------- baseline rows
_socat_srv_start() {
    start_server socat socat -b "$SOCAT_BUF" -u "FILE:$SRC" "TCP-LISTEN:$SOCAT_PORT,bind=127.0.0.1,reuseaddr"
    SOCAT_PID=$LAST_PID
    wait_listen 127.0.0.1 "$SOCAT_PORT"
}
_socat_srv_end() { stop_server "$SOCAT_PID"; }

# One raw TCP stream into a file, no protocol: the ceiling of a single-stream download.
# socat's default 8 KiB buffer would cap it at about 250 MB/s, hence -b.
m_tcp_socat() {
    need tcp_socat socat || return
    alloc_port SOCAT_PORT
    PRE_RUN=_socat_srv_start POST_RUN=_socat_srv_end \
        measure tcp_socat "$RUNS" socat -b "$SOCAT_BUF" -u "TCP:127.0.0.1:$SOCAT_PORT" "CREATE:$DST"
}

# The same, then fsync of the file (`sync FILE`), as our downloader ends with one.
m_tcp_socat_fsync() {
    need tcp_socat_fsync socat || return
    alloc_port SOCAT_PORT
    PRE_RUN=_socat_srv_start POST_RUN=_socat_srv_end \
        measure tcp_socat_fsync "$RUNS" sh -c 'socat -b "$1" -u "TCP:127.0.0.1:$2" "CREATE:$3" && exec sync "$3"' \
        sh "$SOCAT_BUF" "$SOCAT_PORT" "$DST"
}

# nginx_start NAME NS ROOT ADDR:PORT...: an nginx (sendfile on) serving ROOT on each ADDR:PORT,
# in namespace NS (empty: here), from a config in $RUN/NAME; waits for its listeners and sets
# LAST_PID (the master's PID: stopping it stops the workers).
nginx_start() {
    local name=$1 ns=$2 root=$3 d=$RUN/$1 ap
    shift 3
    mkdir -p "$d/tmp"
    {
        ((EUID == 0)) && echo "user root root;"
        cat <<EOF
worker_processes auto;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 10;
  default_type application/octet-stream;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  server {
EOF
        for ap in "$@"; do echo "    listen $ap;"; done
        cat <<EOF
    root $root;
  }
}
EOF
    } >"$d/nginx.conf"
    if [[ -n $ns ]]; then
        start_server "$name" ip netns exec "$ns" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
    else
        start_server "$name" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
    fi
    local pid=$LAST_PID
    for ap in "$@"; do
        wait_listen "${ap%:*}" "${ap##*:}" 15 "$ns" || { stop_server "$pid"; return 1; }
    done
    LAST_PID=$pid
}

# The usual "just serve it over HTTP".
m_http_nginx_curl() {
    need http_nginx_curl nginx curl || return
    local port
    alloc_port port
    nginx_start nginx "" "$SRCDIR" "127.0.0.1:$port" ||
        { record http_nginx_curl FAIL "nginx did not start (see $RUN/nginx.log)"; return; }
    local pid=$LAST_PID
    measure http_nginx_curl "$RUNS" curl -sS --fail --noproxy '*' -o "$DST" "http://127.0.0.1:$port/$NAME"
    stop_server "$pid"
}

ARIA2_HTTP=()
# aria2_opts DIR NAME: ARIA2_HTTP = aria2c's options for one HTTP download of NAME into DIR.
aria2_opts() {
    ARIA2_HTTP=(--no-conf=true --quiet=true --allow-overwrite=true --auto-file-renaming=false
        --file-allocation=falloc --dir="$1" --out="$2" --min-split-size=1M
        --summary-interval=0 --console-log-level=warn --download-result=hide
        --remote-time=false --disable-ipv6=true)
}

# aria2c from nginx, one connection: aria2c's own overhead.
m_aria2c_1src() {
    need aria2c_1src nginx aria2c || return
    local port
    alloc_port port
    nginx_start nginx "" "$SRCDIR" "127.0.0.1:$port" ||
        { record aria2c_1src FAIL "nginx did not start (see $RUN/nginx.log)"; return; }
    local pid=$LAST_PID
    aria2_opts "$DSTDIR" "$NAME"
    measure aria2c_1src "$RUNS" aria2c "${ARIA2_HTTP[@]}" --split=1 --max-connection-per-server=1 \
        "http://127.0.0.1:$port/$NAME"
    stop_server "$pid"
}

# What rsync users get: with no basis file, a whole-file copy plus rsync's checksum and its
# temporary file + rename.
m_rsync_daemon() {
    need rsync_daemon rsync || return
    local port conf=$RUN/rsyncd.conf
    alloc_port port
    cat >"$conf" <<EOF
use chroot = no
uid = $(id -un)
gid = $(id -gn)
max connections = 8
log file = $RUN/rsyncd.log
[bench]
  path = $SRCDIR
  read only = yes
EOF
    start_server rsyncd rsync --daemon --no-detach --config="$conf" --address=127.0.0.1 --port="$port"
    local pid=$LAST_PID
    if wait_listen 127.0.0.1 "$port"; then
        measure rsync_daemon "$RUNS" rsync "rsync://127.0.0.1:$port/bench/$NAME" "$DST"
    else
        record rsync_daemon FAIL "rsync daemon did not start"
    fi
    stop_server "$pid"
}

# ---------------------------------------------------------------- process figures (from /proc)
# shellcheck disable=SC2034  # read by the sections
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }

# peak_rss_mib PID: the peak resident set size of PID so far (VmHWM), in MiB.
peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# wchar PID: bytes PID has written so far (write(2) and the like, to files and sockets).
wchar() { awk '/^wchar:/ { print $2 }' "/proc/$1/io" 2>/dev/null; }

# nstat_get NS COUNTER...: the absolute values of the counters in namespace NS, one per line in
# the order given (0 when absent).
nstat_get() {
    local ns=$1 out c
    shift
    out=$(in_ns "$ns" nstat -asz 2>/dev/null)
    for c in "$@"; do
        awk -v c="$c" '$1 == c { v = $2 } END { print v + 0 }' <<<"$out"
    done
}

# median_of N...: the median of the numbers.
median_of() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
