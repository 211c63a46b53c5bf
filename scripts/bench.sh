#!/usr/bin/env bash
# bench.sh — this client's figures against the broker-bound floors, in one run on one local
# broker: what BENCHMARKS.md reports.
#
#   scripts/bench.sh [--out DIR] [--skip-latency]
#
#   1. scripts/broker.sh install; cargo build --release --features bench-tool --bin rmq-bench
#   2. scripts/broker.sh start: one name server and one broker in DIR/cluster (stopped at exit).
#   3. Sends, 128 B on fresh 8-queue topics:
#        rawsend          sync floor: one thread, blocking socket          (BENCH_SYNC messages)
#        producer sync                                                     (BENCH_SYNC)
#        rawsend --window 128   async floor: a writer and a reader thread  (BENCH_ASYNC)
#        producer async --window 128, callbacks on the pool                (BENCH_ASYNC)
#        producer async --window 128 --disable-callback-executor           (BENCH_ASYNC)
#        producer oneway  (the client's own cost; the broker may drop a burst) (BENCH_ASYNC)
#   4. Consumption of a BENCH_BACKLOG backlog of 128 B on 8 queues, then on 64 queues, each
#      drained from its first offset in its own group: rawpull (the floor), the push consumer,
#      the lite pull consumer's poll loop (consumer --poll), and the push consumer starved of
#      CPU (nice 19 beside four busy loops, one per core and more). Then 200 empty polls of
#      10 ms on an idle topic (pollidle): how late an empty poll returns.
#   5. Idle produce-to-consume latency at 100 msg/s for BENCH_LATENCY_SECS: the bare long-poll
#      floor (latency --floor), then the push consumer.
#   6. A table of every run's SUMMARY (also DIR/results.csv) and the ratios the targets are
#      stated in.
#
# Every run's output is shown and kept in DIR/logs/<step>.log (default DIR: target/bench).
# Environment: BENCH_SYNC (5000), BENCH_ASYNC (20000), BENCH_BACKLOG (100000),
# BENCH_LATENCY_SECS (60), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=target/bench
skip_latency=false
while [[ $# -gt 0 ]]; do
    case $1 in
        --out)
            [[ $# -ge 2 ]] || { echo "bench.sh: --out needs a value" >&2; exit 2; }
            out=$2
            shift 2
            ;;
        --skip-latency) skip_latency=true; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
sync_n=${BENCH_SYNC:-5000}
async_n=${BENCH_ASYNC:-20000}
backlog=${BENCH_BACKLOG:-100000}
latency_secs=${BENCH_LATENCY_SECS:-60}

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
rm -f "$out/results.csv"

printf '\n+ scripts/broker.sh install\n' >&2
bash scripts/broker.sh install
printf '\n+ cargo build --release --features bench-tool --bin rmq-bench\n' >&2
cargo build --release --features bench-tool --bin rmq-bench
bench="${CARGO_TARGET_DIR:-target}/release/rmq-bench"

cluster="$out/cluster"
rm -rf "$cluster"
hogs=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -f $cluster/cluster.env ]]; then
        bash scripts/broker.sh stop "$cluster" --rm >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
bash scripts/broker.sh start --dir "$cluster" --owner-pid $$
namesrv=$(sed -n 's/^NAMESRV_ADDR=//p' "$cluster/cluster.env")
[[ -n $namesrv ]] || { echo "bench.sh: no NAMESRV_ADDR in $cluster/cluster.env" >&2; exit 1; }
run_id=$(date +%s)

failed=0
# run STEP ARGS...: runs rmq-bench, shows and logs its output, records its SUMMARY.
run() {
    local step=$1
    shift
    printf '\n+ %s %s\n' "$step" "$*" >&2
    local status=0
    "$@" 2>&1 | tee "$out/logs/$step.log" || status=$?
    local summary
    summary=$(grep '^SUMMARY ' "$out/logs/$step.log" | tail -1 || true)
    if [[ $status -ne 0 || -z $summary ]]; then
        echo "bench.sh: $step failed (exit $status); its log: $out/logs/$step.log" >&2
        failed=1
    fi
    if [[ -n $summary ]]; then
        printf '%s %s\n' "$step" "${summary#SUMMARY }" >> "$out/results.csv"
    fi
}

# Starves what runs under it: four busy loops at normal priority, the run at nice 19.
starve_start() {
    for _ in 1 2 3 4; do
        bash -c 'while :; do :; done' &
        hogs+=("$!")
    done
}
starve_stop() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    hogs=()
}

t() { echo "Bench${1}_$run_id"; }

run rawsend_sync "$bench" rawsend -n "$namesrv" -t "$(t RawSync)" --count "$sync_n"
run producer_sync "$bench" producer -n "$namesrv" -t "$(t Sync)" --mode sync --count "$sync_n"
run rawsend_async "$bench" rawsend -n "$namesrv" -t "$(t RawAsync)" --window 128 --count "$async_n"
run producer_async "$bench" producer -n "$namesrv" -t "$(t Async)" --mode async --window 128 \
    --count "$async_n"
run producer_async_io "$bench" producer -n "$namesrv" -t "$(t AsyncIo)" --mode async \
    --window 128 --disable-callback-executor --count "$async_n"
run producer_oneway "$bench" producer -n "$namesrv" -t "$(t Oneway)" --mode oneway \
    --count "$async_n"

for q in 8 64; do
    topic=$(t "Backlog$q")
    run "backlog_$q" "$bench" producer -n "$namesrv" -t "$topic" --queues "$q" --mode async \
        --window 128 --disable-callback-executor --count "$backlog"
    run "rawpull_$q" "$bench" rawpull -n "$namesrv" -t "$topic" -g "raw${q}_$run_id" \
        --count "$backlog"
    run "consumer_$q" "$bench" consumer -n "$namesrv" -t "$topic" -g "push${q}_$run_id" \
        --count "$backlog"
    run "poll_$q" "$bench" consumer -n "$namesrv" -t "$topic" -g "poll${q}_$run_id" --poll \
        --count "$backlog"
    starve_start
    run "consumer_${q}_starved" nice -n 19 "$bench" consumer -n "$namesrv" -t "$topic" \
        -g "starved${q}_$run_id" --count "$backlog"
    starve_stop
done

run pollidle "$bench" pollidle -n "$namesrv" -t "$(t PollIdle)" -g "pidle_$run_id" \
    --polls 200 --timeout-ms 10

if [[ $skip_latency == false ]]; then
    run latency_floor "$bench" latency -n "$namesrv" -t "$(t LatFloor)" -g "latf_$run_id" \
        --floor --duration "$latency_secs"
    run latency_push "$bench" latency -n "$namesrv" -t "$(t LatPush)" -g "latp_$run_id" \
        --duration "$latency_secs"
fi

printf '\n%s\n' "results ($out/results.csv):"
python3 - "$out/results.csv" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    step, *fields = line.split()
    pairs = (f.split("=", 1) for f in fields)
    rows[step] = {k: float(v) for k, v in pairs if k != "mode"}
print(f"{'run':24} {'TPS':>8} {'CPU us/msg':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
      f"{'RSS MiB':>8} {'threads':>7} {'failed':>6}")
for step, r in rows.items():
    per = r["cpu_s"] / r["count"] * 1e6 if r["count"] else float("nan")
    print(f"{step:24} {r['tps']:8.0f} {per:10.1f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
          f"{r['max_ms']:8.3f} {r['rss_kib'] / 1024:8.1f} {r['threads']:7.0f} {r['failed']:6.0f}")

def per(step):
    r = rows[step]
    return r["cpu_s"] / r["count"] * 1e6

def ratio(label, a, b, f):
    if a in rows and b in rows:
        try:
            print(f"  {label}: {f(a, b)}")
        except ZeroDivisionError:
            print(f"  {label}: too few messages to tell")

print("\nratios (same run):")
def drain(step):
    # The rate from the first message to the last; start-up weighs on a short run's tps.
    return rows[step].get("drain_tps", rows[step]["tps"])

for q in (8, 64):
    ratio(f"push / rawpull, drain TPS, {q} queues", f"consumer_{q}", f"rawpull_{q}",
          lambda a, b: f"{drain(a):.0f} / {drain(b):.0f} = {drain(a) / drain(b):.2f}")
for q in (8, 64):
    ratio(f"poll / rawpull, drain TPS, {q} queues", f"poll_{q}", f"rawpull_{q}",
          lambda a, b: f"{drain(a):.0f} / {drain(b):.0f} = {drain(a) / drain(b):.2f}")
    ratio(f"poll / push, CPU per message, {q} queues", f"poll_{q}", f"consumer_{q}",
          lambda a, b: f"{per(a):.1f} / {per(b):.1f} us = {per(a) / per(b):.2f}")
if "pollidle" in rows:
    r = rows["pollidle"]
    print(f"  empty poll(10 ms) returns late by: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
          f"max {r['late_max_us'] / 1000:.3f} ms")
ratio("sync send CPU / sync floor CPU", "producer_sync", "rawsend_sync",
      lambda a, b: f"{per(a):.1f} / {per(b):.1f} us = {per(a) / per(b):.2f}")
ratio("async send CPU (pool) / async floor CPU", "producer_async", "rawsend_async",
      lambda a, b: f"{per(a):.1f} / {per(b):.1f} us = {per(a) / per(b):.2f}")
ratio("async send CPU (io thread) / async floor CPU", "producer_async_io", "rawsend_async",
      lambda a, b: f"{per(a):.1f} / {per(b):.1f} us = {per(a) / per(b):.2f}")
ratio("latency p50 push - floor", "latency_push", "latency_floor",
      lambda a, b: f"{rows[a]['p50_ms']:.3f} - {rows[b]['p50_ms']:.3f} = "
                   f"{rows[a]['p50_ms'] - rows[b]['p50_ms']:+.3f} ms")
ratio("latency p99 push / floor", "latency_push", "latency_floor",
      lambda a, b: f"{rows[a]['p99_ms']:.3f} / {rows[b]['p99_ms']:.3f} = "
                   f"{rows[a]['p99_ms'] / rows[b]['p99_ms']:.2f}")
EOF
exit "$failed"
