#!/usr/bin/env bash
# fuzz.sh — run the coverage-guided fuzz targets in fuzz/ for a fixed time each (not part of CI).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 180
#   TARGET              default: every target in fuzz/fuzz_targets (frame header_json
#                       header_rocketmq message_decoder message_compressed json_bodies
#                       offsets_file)
#
# The fuzzer is cargo-fuzz (libFuzzer) on the stable toolchain: the targets build without a
# sanitizer (`-s none`, the crate forbids unsafe code), so no nightly flag is needed, with debug
# assertions and overflow checks on. cargo-fuzz is installed once, pinned, into the per-user
# cache and reused:
#
#   $CACHE/cargo-fuzz-0.13.2/bin/cargo-fuzz
#   CACHE = ${ROCKETMQ_SYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-sync}
#
# Targets run one at a time, one libFuzzer job each. Each starts from its committed seeds,
# fuzz/corpus/TARGET (read only; regenerate them with `cd fuzz && cargo run --example seeds`),
# plus the corpus earlier runs grew in fuzz/work/corpus/TARGET (not committed). Logs go to
# fuzz/work/logs/TARGET.log, crashing inputs to fuzz/artifacts/TARGET/ (libFuzzer stops a target
# at its first crash). At the end a table gives per target: executions, coverage (edges hit of
# the instrumented edges, and libFuzzer's features), corpus size and crashes found.
# Exit status: 0 when no target crashed, 1 otherwise.
#
# Environment: ROCKETMQ_SYNC_CACHE (see above), FUZZ_RSS_LIMIT_MB (default 2048),
# FUZZ_TIMEOUT_SECS (a single input running longer is a crash; default 10), CARGO_BUILD_JOBS.
set -euo pipefail

readonly CARGO_FUZZ_VERSION=0.13.2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly FUZZ_DIR="$ROOT/fuzz"
CACHE="${ROCKETMQ_SYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-sync}"
readonly CACHE
readonly INSTALL_ROOT="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
readonly RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
readonly TIMEOUT_SECS="${FUZZ_TIMEOUT_SECS:-10}"
# The build flags, identical for `build` and `run` so that `run` reuses the build.
readonly FUZZ_FLAGS=(--sanitizer none --release --debug-assertions)

log() { printf '[fuzz.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

seconds="${1:-180}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    die "SECONDS_PER_TARGET must be a positive integer, got '$seconds'"
fi
shift || true

all_targets=()
for f in "$FUZZ_DIR"/fuzz_targets/*.rs; do
    all_targets+=("$(basename "$f" .rs)")
done
if (($# > 0)); then
    targets=("$@")
    for t in "${targets[@]}"; do
        [[ -f "$FUZZ_DIR/fuzz_targets/$t.rs" ]] || die "no target '$t' (targets: ${all_targets[*]})"
    done
else
    targets=("${all_targets[@]}")
fi

# Install cargo-fuzz once; a second run finds it. Builds in a temporary target directory.
if [[ ! -x "$INSTALL_ROOT/bin/cargo-fuzz" ]]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $INSTALL_ROOT (a few minutes, once)"
    mkdir -p "$CACHE"
    build_dir="$(mktemp -d)"
    CARGO_TARGET_DIR="$build_dir" cargo install --locked --quiet \
        --version "$CARGO_FUZZ_VERSION" --root "$INSTALL_ROOT" cargo-fuzz
    rm -rf "$build_dir"
fi
export PATH="$INSTALL_ROOT/bin:$PATH"
cargo fuzz --version >/dev/null || die "cargo-fuzz in $INSTALL_ROOT does not run"

cd "$FUZZ_DIR"
log "building ${targets[*]}"
for t in "${targets[@]}"; do
    cargo fuzz build "${FUZZ_FLAGS[@]}" "$t"
done

mkdir -p work/logs
results=()
crashed=0
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "artifacts/$t"
    marker="work/logs/$t.start"
    touch "$marker"
    log "running $t for $seconds s (log: fuzz/work/logs/$t.log)"
    status=0
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$t" "work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_SECS" \
        >"work/logs/$t.log" 2>&1 || status=$?
    mapfile -t found < <(find "artifacts/$t" -type f -newer "$marker")
    crashes=${#found[@]}
    if ((status != 0 && crashes == 0)); then
        # A failure that left no artifact (a build or start-up error) still counts.
        crashes=1
        log "$t exited with status $status and no artifact; see fuzz/work/logs/$t.log"
    fi
    if ((crashes > 0)); then
        crashed=1
        for f in "${found[@]}"; do
            log "  $t crash: fuzz/$f"
        done
        grep -m 1 -E "panicked at|ERROR: libFuzzer" "work/logs/$t.log" | sed 's/^/    /' >&2 || true
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "work/logs/$t.log" | tail -n 1)"
    edges="$(sed -n 's/.*Loaded 1 modules *(\([0-9]*\) inline 8-bit counters).*/\1/p' "work/logs/$t.log" | head -n 1)"
    last="$(grep -E '^#[0-9]+' "work/logs/$t.log" | tail -n 1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")"
    results+=("$(printf '%-20s %12s %15s %8s %8s %8s' "$t" "${execs:-?}" \
        "${cov:-?}/${edges:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done

printf '\n%-20s %12s %15s %8s %8s %8s\n' target executions 'edges hit/all' features corpus crashes
printf '%s\n' "${results[@]}"
exit "$crashed"
