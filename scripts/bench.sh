#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Speed and scale benchmarks (issue 12), in one run, with the release binaries; figures, not
# pass/fail. Four sections, each selectable (--sections):
#
#   single   one source over loopback, 100 MiB and 1 GiB: socat into a file, socat + fsync,
#            nginx + curl, aria2c, rsync daemon and ours (chunk-server + announcer + listener
#            on 127.0.0.2, `downloader get` on 127.0.0.3: verified and fsynced), medians of 7,
#            spread, receiver peak RSS, and the ratio of ours to every other row
#   shaped   3 sources each shaped to 100 Mbit/s (network namespaces + veth + tc): ours from
#            1 source vs 3, aria2c (nginx) from 1 vs 3, and the 3-vs-1 speedups
#   files    a peer sharing 10,000 small files: time until the chunk server listens and
#            answers, until a listener lists them all, datagrams and bytes per announcement,
#            idle CPU of each program, receiver drops, peak RSS
#   clients  100 downloads started at once from one chunk server: completions (verified),
#            listen-queue overflows and drops (nstat), total time
#
# Everything runs on loopback or in network namespaces made here; every process is stopped by
# its PID or its process group from an EXIT trap, never by name. Run as root: missing tools are
# installed with apt-get, and the shaped, files and clients sections use namespaces (shaped
# needs them). The whole run takes 6 to 9 minutes (--help: per section). See README,
# "Benchmarks"; the method follows the loopback baselines harness (scripts/bench/harness.sh).
#
#   ./scripts/bench.sh                                   # everything, as in the README
#   ./scripts/bench.sh --sections single --sizes 100 -n 3
#   ./scripts/bench.sh --sections files,clients
set -uo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPTS/.." && pwd)

SECTIONS=single,shaped,files,clients
RUNS=${RUNS:-7}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"100 1024"}
WORKDIR=${BENCH_WORKDIR:-/tmp/p2p-bench}
ONLY=${ONLY:-}
SKIP=${SKIP:-}
VERIFY=1
SOCAT_BUF=131072 # socat's default 8 KiB buffer caps it at about 250 MB/s
BIN_DIR=${P2P_BIN_DIR:-}
BUILD=1
SHAPED_SIZE=100
SHAPED_RATE=100mbit
FILES_N=10000
FILES_INTERVAL=60
FILES_IDLE=30
FILES_LIST_TIMEOUT=150
FILES_LISTENER_ARGS=
CLIENTS_N=100
CLIENTS_SIZE=10
DO_INSTALL=0

usage() {
    sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --sections LIST       comma-separated, of: single shaped files clients   [$SECTIONS]
  -n, --runs N          timed runs per row (single, shaped)                [$RUNS]
  --warmup N            untimed warm-up runs per row                       [$WARMUP]
  --sizes "MiB ..."     file sizes of the single section                   ["$SIZES"]
  --only REGEX          only the rows (methods) matching REGEX; --list names them
  --skip REGEX          not the rows matching REGEX
  --workdir DIR         test files, scratch and results                    [$WORKDIR]
  --bin-dir DIR         take the programs from DIR, no build (default: cargo build --release,
                        then \$CARGO_TARGET_DIR/release or target/release)
  --no-build            do not build; use the release binaries already there
  --shaped-size MiB     file of the shaped section                         [$SHAPED_SIZE]
  --shaped-rate RATE    each source's rate, in tc's units                  [$SHAPED_RATE]
  --files N             files shared in the files section                  [$FILES_N]
  --files-interval S    the announcer's --interval there                   [$FILES_INTERVAL]
  --files-idle S        seconds of idle CPU sampled                        [$FILES_IDLE]
  --files-timeout S     longest wait for the listener to list all files    [$FILES_LIST_TIMEOUT]
  --clients N           concurrent downloads in the clients section        [$CLIENTS_N]
  --clients-size MiB    the file they download                             [$CLIENTS_SIZE]
  --install             apt-get install every tool the sections use (root), then exit
  --list                print the sections and rows, then exit

Time per section on a 2-core VM with the defaults: single about 1.5 min (most of it the 1 GiB
rows; a little more the first time, which writes the test files), shaped about 3 min (a
1-source run takes 9 s), files 1.5 min (4 min when the listener never lists all files:
--files-timeout, then 1.5 intervals), clients under 1 min.
Results: WORKDIR/results/<time>.{log,tsv,txt}; logs and peer folders in WORKDIR/run/<time>/ (the
folders are removed at the end unless KEEP=1). Environment: RUNS, WARMUP, SIZES, ONLY, SKIP,
BENCH_WORKDIR, P2P_BIN_DIR, KEEP.
EOF
}

while (($#)); do
    case $1 in
        --sections | -n | --runs | --warmup | --sizes | --only | --skip | --workdir | --bin-dir | --shaped-* | \
            --files | --files-* | --clients | --clients-size)
            (($# >= 2)) || { echo "bench: $1 needs a value (see --help)" >&2; exit 2; } ;;
    esac
    case $1 in
        --sections) SECTIONS=$2; shift 2 ;;
        -n | --runs) RUNS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --skip) SKIP=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --shaped-size) SHAPED_SIZE=$2; shift 2 ;;
        --shaped-rate) SHAPED_RATE=$2; shift 2 ;;
        --files) FILES_N=$2; shift 2 ;;
        --files-interval) FILES_INTERVAL=$2; shift 2 ;;
        --files-idle) FILES_IDLE=$2; shift 2 ;;
        --files-timeout) FILES_LIST_TIMEOUT=$2; shift 2 ;;
        --clients) CLIENTS_N=$2; shift 2 ;;
        --clients-size) CLIENTS_SIZE=$2; shift 2 ;;
        --install) DO_INSTALL=1; shift ;;
        --list)
            echo "single:  tcp_socat tcp_socat_fsync http_nginx_curl aria2c_1src rsync_daemon ours"
            echo "shaped:  ours_1src ours_3src aria2c_1src aria2c_3src"
            echo "files:   (figures, no rows)"
            echo "clients: (figures, no rows)"
            exit 0
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

for n in "$RUNS" "$WARMUP" "$SHAPED_SIZE" "$FILES_N" "$FILES_INTERVAL" "$FILES_IDLE" "$FILES_LIST_TIMEOUT" \
    "$CLIENTS_N" "$CLIENTS_SIZE" $SIZES; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a whole number: '$n' (see --help)"
done
((RUNS >= 1 && FILES_N >= 1 && CLIENTS_N >= 1 && CLIENTS_N <= 60000 && FILES_INTERVAL >= 1)) ||
    die "--runs, --files, --clients and --files-interval must be at least 1 (--clients at most 60000)"
IFS=, read -ra SECTION_LIST <<<"$SECTIONS"
for s in "${SECTION_LIST[@]}"; do
    case $s in single | shaped | files | clients) ;; *) die "unknown section '$s' (single, shaped, files, clients)" ;; esac
done
# The listener's defaults (12,000 entries, 10,000 per source address) list up to 10,000 files,
# the issue's case, and are measured as they are; a bigger --files raises them.
if [[ -z $FILES_LISTENER_ARGS ]] && ((FILES_N > 10000)); then
    FILES_LISTENER_ARGS="--max-entries $((FILES_N * 2)) --max-entries-per-source $FILES_N"
fi

# Everything is local; no proxy from the environment may get involved.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY ftp_proxy FTP_PROXY no_proxy NO_PROXY

# ---------------------------------------------------------------- tools
# command:package of what the sections use.
TOOLS=(socat:socat nginx:nginx curl:curl aria2c:aria2 rsync:rsync /usr/bin/time:time ss:iproute2
    ip:iproute2 tc:iproute2 nstat:iproute2 tcpdump:tcpdump flock:util-linux fincore:util-linux
    setsid:util-linux pgrep:procps ps:procps python3:python3 openssl:openssl cmp:diffutils)

missing_packages() {
    local t pkgs=()
    for t in "${TOOLS[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "${t%%:*}" >/dev/null 2>&1 || pkgs+=("${t##*:}")
    done
    printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' '
}

install_packages() { # package...
    ((EUID == 0)) || die "installing $* needs root"
    command -v apt-get >/dev/null || die "missing $*, and there is no apt-get to install them"
    apt-get update -qq </dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

if ((DO_INSTALL)); then
    # shellcheck disable=SC2046  # a list of package names
    install_packages $(printf '%s\n' "${TOOLS[@]}" | cut -d: -f2 | sort -u)
    exit $?
fi
export PATH="$PATH:/usr/sbin:/sbin"
missing=$(missing_packages)
if [[ -n ${missing// /} ]]; then
    if ((EUID == 0)); then
        echo "bench: installing $missing"
        # shellcheck disable=SC2086
        install_packages $missing || die "apt-get could not install $missing"
    else
        echo "bench: missing $missing(not root: the rows needing them are skipped)"
    fi
fi
for t in /usr/bin/time ss python3 openssl flock; do
    command -v "$t" >/dev/null || die "$t is needed (run as root to install it, or --install)"
done

# ---------------------------------------------------------------- binaries
cd "$REPO" || exit 1
if [[ -n $BIN_DIR ]]; then
    BIN=$(cd "$BIN_DIR" && pwd) || die "no folder $BIN_DIR"
    BIN_FROM="$BIN (--bin-dir)"
else
    BIN=${CARGO_TARGET_DIR:-target}/release
    if ((BUILD)); then
        echo "bench: cargo build --release (chunk-server, announcer, listener, downloader)"
        cargo build --release --quiet -p chunk-server -p announcer -p listener -p downloader ||
            die "the build failed"
    fi
    BIN=$(cd "$BIN" && pwd) || die "no release binaries in $BIN (drop --no-build)"
    BIN_FROM="$BIN, built from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') ($(git -C "$REPO" rev-parse --abbrev-ref HEAD 2>/dev/null))"
fi

# ---------------------------------------------------------------- work folder and log
mkdir -p "$WORKDIR" || die "cannot create $WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
exec 9>"$WORKDIR/.lock"
flock -n 9 || die "another bench run is using $WORKDIR (--workdir)"
SRCDIR=$WORKDIR/src # test files, served by every server
DSTDIR=$WORKDIR/dst # receivers write here; wiped before every run
TS=$(date +%Y%m%d-%H%M%S)
RUN=$WORKDIR/run/$TS # configs, logs, peer folders
RESULTS=$WORKDIR/results
TSV=$RESULTS/$TS.tsv
mkdir -p "$SRCDIR" "$DSTDIR" "$RUN" "$RESULTS" || exit 1
chmod 755 "$WORKDIR" "$SRCDIR"
: >"$TSV"
exec > >(tee -a "$RESULTS/$TS.log") 2>&1

# shellcheck source=bench/harness.sh
. "$SCRIPTS/bench/harness.sh"
# shellcheck source=bench/single.sh
. "$SCRIPTS/bench/single.sh"
# shellcheck source=bench/shaped.sh
. "$SCRIPTS/bench/shaped.sh"
# shellcheck source=bench/files.sh
. "$SCRIPTS/bench/files.sh"
# shellcheck source=bench/clients.sh
. "$SCRIPTS/bench/clients.sh"

cleanup() {
    harness_cleanup
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $RUN (KEEP=1)"
    else
        rm -rf "${RUN:?}"/*/ 2>/dev/null # peer folders and downloads; the logs stay
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

header() {
    local cpu sha_ni mem fs
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
    grep -qw sha_ni /proc/cpuinfo && sha_ni=yes || sha_ni=no
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
    fs=$(findmnt -no FSTYPE -T "$WORKDIR" 2>/dev/null)
    log "== p2p speed and scale benchmarks  $(date -Is)"
    log "host: $(uname -sr), CPU: $cpu x $(nproc), RAM $mem, sha_ni: $sha_ni, load $(cut -d' ' -f1-3 /proc/loadavg)"
    log "programs: $BIN_FROM"
    log "workdir: $WORKDIR ($fs); results: $RESULTS/$TS.{log,tsv,txt}"
    log "tools: $(nginx -v 2>&1 | sed 's/.*\///') nginx, $(curl -V 2>/dev/null | awk 'NR==1{print $2}') curl," \
        "$(aria2c -v 2>/dev/null | awk 'NR==1{print $3}') aria2, $(rsync -V 2>/dev/null | awk 'NR==1{print $3}') rsync," \
        "$(socat -V 2>/dev/null | awk '/socat version/{print $3}') socat"
    log "sections: ${SECTION_LIST[*]}; $RUNS timed runs per row after $WARMUP warm-up"
}

header
declare -A SECTION_SECS
for s in "${SECTION_LIST[@]}"; do
    started=$SECONDS
    "section_$s"
    SECTION_SECS[$s]=$((SECONDS - started))
done

summary() {
    local s
    log ""
    log "== summary ($TS; programs: $BIN_FROM)"
    for s in "${SECTION_LIST[@]}"; do
        log ""
        case $s in
            single)
                log "1. one source over loopback (receiver timed, file warm in the page cache; MB = 10^6 bytes)"
                python3 "$SCRIPTS/bench/stats.py" "$TSV" --labels '^[0-9]+[MG]iB$'
                printf '%s' "$SINGLE_NOTES"
                ;;
            shaped)
                log "2. three sources, each sending at most $SHAPED_RATE (network namespaces + tc)"
                python3 "$SCRIPTS/bench/stats.py" "$TSV" --labels '@'
                ;;
            files)
                log "3. a peer sharing $FILES_N small files"
                log "${FILES_NOTES:-  (no figures: see the log of the section above)}"
                ;;
            clients)
                log "4. $CLIENTS_N concurrent downloads of a $CLIENTS_SIZE MiB file from one chunk server"
                log "${CLIENTS_NOTES:-  (no figures: see the log of the section above)}"
                ;;
        esac
        log "   (section $s took ${SECTION_SECS[$s]} s)"
    done
}
summary | tee "$RESULTS/$TS.txt"
