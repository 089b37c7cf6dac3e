#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), each for a bounded time.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]
#
# --seconds N   time per target (default: $FUZZ_SECONDS, else 20)
# TARGET...     the targets to run (default: all of `cargo fuzz list`)
#
# Needs a nightly toolchain (libFuzzer instrumentation): without one it says so and exits 0, so
# CI passes on machines that have none. Installs cargo-fuzz when missing. Each target starts from
# a temporary copy of its committed seed corpus (fuzz/corpus/<target>/), so the repository's
# corpus does not grow. Prints, per target, how many inputs it ran, and exits 1 when any target
# crashed (the crashing input is kept under fuzz/artifacts/<target>/, with the command that
# replays it).
#
# Environment: FUZZ_SECONDS (time per target), FUZZ_TARGET_DIR (build folder, default
# fuzz/target: the nightly build never mixes with the stable one of CARGO_TARGET_DIR).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

seconds="${FUZZ_SECONDS:-20}"
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "fuzz: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
case "$seconds" in
    ''|*[!0-9]*|0) echo "fuzz: --seconds must be a positive whole number, not '$seconds'" >&2; exit 2 ;;
esac

# The nightly cargo: through rustup's `+nightly`, or the default one when it is a nightly.
if cargo +nightly --version >/dev/null 2>&1; then
    nightly=(cargo +nightly)
elif cargo --version 2>/dev/null | grep -q nightly; then
    nightly=(cargo)
else
    echo "fuzz: SKIPPED: no nightly Rust toolchain ('cargo +nightly --version' fails); cargo-fuzz"
    echo "fuzz: needs one for libFuzzer: 'rustup toolchain install nightly' enables this step."
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"
# The code under test is safe Rust (no `unsafe` in the workspace): what we look for are panics,
# overflows and failed assertions. AddressSanitizer would only halve the speed.
fuzz=("${nightly[@]}" fuzz)
fuzz_opts=(--fuzz-dir "$ROOT/fuzz" --sanitizer none)

"${nightly[@]}" --version
cargo fuzz --version

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$ROOT/fuzz")
fi

echo "fuzz: building the fuzz targets"
build_start=$(date +%s)
if ! "${fuzz[@]}" build "${fuzz_opts[@]}"; then
    echo "fuzz: FAILED: the fuzz targets do not build" >&2
    exit 1
fi
echo "fuzz: build took $(( $(date +%s) - build_start )) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir -p "$corpus"
    if [ -d "$ROOT/fuzz/corpus/$target" ]; then
        cp -R "$ROOT/fuzz/corpus/$target/." "$corpus/"
    fi
    log="$work/$target.log"
    echo "fuzz: running $target for $seconds s ($(find "$corpus" -type f | wc -l) seeds)"
    status=0
    # -max_len: requests are at most 4096 bytes (MAX_REQUEST_BYTES) and larger inputs only
    # slow the search; -timeout: an input taking 10 s is a hang, reported like a crash.
    "${fuzz[@]}" run "${fuzz_opts[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        echo "fuzz: FAILED: $target (exit status $status):"
        # The panic (or libFuzzer's own report: timeout, out of memory), then the input.
        if grep -q -E 'panicked at|ERROR: libFuzzer' "$log"; then
            grep -m 1 -A 20 -E 'panicked at|ERROR: libFuzzer' "$log" | grep -v -E '^\s+(at |[0-9]+: )'
            sed -n '/^Failing input:/,/^Minimize test case with:/p' "$log"
        else
            tail -n 40 "$log"
        fi
        failed+=("$target")
        summary+=("$(printf '%-24s FAILED' "$target")")
        continue
    fi
    runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
    secs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
    line=$(printf '%-24s %10s inputs in %3s s (%s/s), corpus %s -> %s inputs' "$target" "$runs" \
        "$secs" "$(( runs / (secs > 0 ? secs : 1) ))" \
        "$(find "$ROOT/fuzz/corpus/$target" -type f 2>/dev/null | wc -l)" \
        "$(find "$corpus" -type f | wc -l)")
    echo "fuzz: $line"
    summary+=("$line")
done

echo
echo "fuzz: summary ($seconds s per target)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}: the crashing inputs are in fuzz/artifacts/<target>/;"
    echo "fuzz: replay one with: cargo +nightly fuzz run --sanitizer none <target> <file>"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran without a crash"
