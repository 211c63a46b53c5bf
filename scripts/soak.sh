#!/usr/bin/env bash
# soak.sh [MINUTES] [RATE] — the soak benchmark against a real local cluster. Not part of CI.
#
#   1. scripts/broker.sh install         the rocketmq-rust name server and broker, if missing
#   2. cargo build --release --example soak
#   3. scripts/broker.sh start           one name server + one broker in a fresh directory
#   4. target/release/examples/soak      produce and consume together at RATE msg/s (default
#                                        1000) for MINUTES (default 30) in one process; every
#                                        10 s a CSV row: RSS, threads, fds, lag, counts
#   5. the cluster is stopped; the CSV, the PNG plot and the summary (targets met or not) stay
#      in the result directory, printed at the end
#
# Environment: SOAK_OUT (result directory, default target/soak/<date>-<time>), SOAK_SIZE
# (message bytes, default 128), SOAK_WARMUP_SECS (default 120, a quarter of the run when the
# run is shorter than 8 minutes), SOAK_ARGS (more flags for the soak program, see
# `examples/soak.rs`), TMPDIR (where the cluster's directory goes; the broker's store grows by
# about RATE x SECONDS x (SIZE + 300) bytes). The exit code is the soak's: 0 when every target
# is met, 1 when one is not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=${1:-30}
rate=${2:-1000}
size=${SOAK_SIZE:-128}
out=${SOAK_OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}
secs=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); if (s < 1) exit 1; print s }') ||
    { echo "soak.sh: MINUTES must be a positive number, not '$minutes'" >&2; exit 2; }
if [[ -n ${SOAK_WARMUP_SECS:-} ]]; then
    warmup=$SOAK_WARMUP_SECS
elif ((secs < 480)); then
    warmup=$((secs / 4))
else
    warmup=120
fi

bash scripts/broker.sh install >/dev/null
# Built before the cluster starts, so that the build does not compete with the run.
cargo build --release --example soak

dir=$(mktemp -d "${TMPDIR:-/tmp}/rocketmq-sync-soak.XXXXXX")
soaked=false
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    [[ -z ${monitor:-} ]] || kill "$monitor" 2>/dev/null || true
    if [[ ! -f $dir/cluster.env ]]; then
        rm -rf "$dir" # the cluster never started: nothing to see
    elif [[ $soaked != true ]]; then
        for f in "$dir"/*.log; do
            [[ -f $f ]] || continue
            printf '\n----- last 40 lines of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2 || true
        done
        bash scripts/broker.sh stop "$dir" || true
        printf '\nsoak FAILED (exit %d); cluster files kept in %s\n' "$status" "$dir" >&2
    else
        bash scripts/broker.sh stop "$dir" --rm || true
    fi
    exit "$status"
}
trap cleanup EXIT

# The broker refuses writes (and to start) once its disk is 90% used, counting space reserved
# for root as used (its diskSpaceWarningLevelRatio, at most 0.90). The run stores about
# RATE x SECONDS x (SIZE + 300) bytes; check that it fits, so that a full disk does not pass for
# a client fault half-way through.
read -r total avail < <(df -P -B1 "$dir" | awk 'NR == 2 { print $2, $4 }')
need=$((rate * secs * (size + 300)))
if awk -v t="$total" -v a="$avail" -v n="$need" 'BEGIN { exit !((t - a + n) / t >= 0.90) }'; then
    printf 'soak.sh: %s has %d MiB free of %d MiB; with the ~%d MiB this run stores, it would pass 90%% used, where the broker stops accepting messages. Free some space, or put the cluster elsewhere (TMPDIR=/dev/shm).\n' \
        "$dir" $((avail >> 20)) $((total >> 20)) $((need >> 20)) >&2
    exit 3
fi

# The broker logs at warn: at thousands of messages per second its info lines would only fill
# the disk.
ROCKETMQ_SYNC_LOG_FILTER=${ROCKETMQ_SYNC_LOG_FILTER:-warn} \
    bash scripts/broker.sh start --dir "$dir" --owner-pid $$ >/dev/null
namesrv=$(sed -n 's/^NAMESRV_ADDR=//p' "$dir/cluster.env")
broker_pid=$(sed -n 's/^BROKER_A_PID=//p' "$dir/cluster.env")
[[ -n $namesrv && -n $broker_pid ]] || { echo "soak.sh: no NAMESRV_ADDR or BROKER_A_PID in $dir/cluster.env" >&2; exit 3; }

mkdir -p "$out"
# How full the store's filesystem is, as the broker counts it (root's reserve as used), every
# 10 s: other processes can fill a shared disk during a long run, and the broker stops storing
# at 90% (see above). Sampled here, outside the process the soak measures.
(
    echo "unix_time,store_disk_used_pct"
    while true; do
        df -P -B1 "$dir" | awk -v t="$(date +%s)" 'NR == 2 { printf "%s,%.1f\n", t, ($2 - $4) * 100 / $2 }'
        sleep 10
    done
) >"$out/store_disk.csv" &
monitor=$!
status=0
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
target/release/examples/soak --namesrv "$namesrv" --out "$out" --duration-secs "$secs" \
    --rate "$rate" --size "$size" --warmup-secs "$warmup" --broker-pid "$broker_pid" \
    ${SOAK_ARGS:-} || status=$?
kill "$monitor" 2>/dev/null || true
# 0: every target met; 1: a target missed (the figures say which). Anything else is a crash.
[[ $status -gt 1 ]] || soaked=true
echo "soak.sh: results in $out (soak.csv, soak.png, summary.txt, store_disk.csv)" >&2
exit "$status"
