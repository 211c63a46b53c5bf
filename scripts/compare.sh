#!/usr/bin/env bash
# compare.sh — rocketmq-sync side by side with the async Rust client (rocketmq-client-rust
# 1.0.0 from crates.io, driven by compare/'s peer-bench) on one local broker, and with Java's
# own benchmark when ROCKETMQ_HOME points at an Apache RocketMQ distribution.
#
#   scripts/compare.sh [--count N] [--size BYTES] [--queues Q] [--window W] [--out DIR]
#                      [--timeout SECS]
#
#   1. scripts/broker.sh install, then the release builds (reused once built):
#        cargo build --release --features bench-tool --bin rmq-bench
#        cargo build --release --manifest-path compare/Cargo.toml --bins   (peer-bench, compare-plot)
#   2. scripts/broker.sh start: one name server and one broker in a fresh directory (stopped
#      at exit by a trap; kept, with its logs printed, if anything failed).
#   3. A backlog of N messages of BYTES on a topic created with Q queues, sent by
#      `rmq-bench producer` (not measured).
#   4. The same backlog drained from its first offset, each in its own consumer group:
#        rmq-bench rawpull   bare PULL_MESSAGE loops, the broker-bound limit
#        rmq-bench consumer  this client's push consumer
#        peer-bench consumer the peer's push consumer
#   5. Each client's producer, async (window W) and sync, N messages on a fresh Q-queue topic
#      per run.
#   6. With ROCKETMQ_HOME: Java's benchmark/consumer.sh on the backlog and benchmark/producer.sh
#      (sync, -w 1) on a fresh topic, each for COMPARE_JAVA_SECONDS (default 60) s; see
#      java_run below for how little that measures. Needs a Java install.
#   7. The table (client, mode, TPS, CPU seconds per 100k messages, RSS MiB, threads, failed),
#      also in DIR/results.csv, then ratios between the clients and how many messages each
#      push consumer sent back for retry (its %RETRY% topic, read back independently). Each
#      consumer's per-second consume TPS goes to DIR/consume-tps-<client>.csv and the plot of
#      all of them to DIR/consume-tps.png.
#
# Every run's output is shown and kept in DIR/logs/<step>.log (default DIR: target/compare).
# Each tool is bounded by --timeout (default 900 s); a step that fails is reported with its
# log and the others still run; the exit code is then 1.
#
# Environment: COMPARE_COUNT, COMPARE_SIZE, COMPARE_QUEUES, COMPARE_WINDOW, COMPARE_OUT,
# COMPARE_TIMEOUT (defaults of the flags), ROCKETMQ_HOME, COMPARE_JAVA_SECONDS,
# CARGO_TARGET_DIR (where both builds go when set).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=${COMPARE_COUNT:-100000}
size=${COMPARE_SIZE:-128}
queues=${COMPARE_QUEUES:-8}
window=${COMPARE_WINDOW:-128}
out=${COMPARE_OUT:-target/compare}
timeout=${COMPARE_TIMEOUT:-900}
java_secs=${COMPARE_JAVA_SECONDS:-60}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --count | --size | --queues | --window | --out | --timeout)
            [[ $# -ge 2 ]] || { echo "compare.sh: $1 needs a value" >&2; exit 2; }
            case $1 in
                --count) count=$2 ;;
                --size) size=$2 ;;
                --queues) queues=$2 ;;
                --window) window=$2 ;;
                --out) out=$2 ;;
                --timeout) timeout=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'compare.sh: unknown argument %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in count size queues window timeout java_secs; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

say() { printf '\n[compare.sh] %s\n' "$*" >&2; }

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
rm -f "$out"/logs/*.log "$out"/consume-tps-*.csv "$out"/consume-tps.png "$out"/results.csv

# ---------------------------------------------------------------------------------------------
# builds

bash scripts/broker.sh install >/dev/null
say "building rmq-bench and compare/ in release (once; later runs reuse the builds)"
cargo build --release --features bench-tool --bin rmq-bench
cargo build --release --manifest-path compare/Cargo.toml --bins
rmq_bench=${CARGO_TARGET_DIR:-target}/release/rmq-bench
peer_bench=${CARGO_TARGET_DIR:-compare/target}/release/peer-bench
compare_plot=${CARGO_TARGET_DIR:-compare/target}/release/compare-plot

# ---------------------------------------------------------------------------------------------
# cluster

dir=$(mktemp -d "${TMPDIR:-/tmp}/rocketmq-sync-compare.XXXXXX")
java_sid=""
cleanup() {
    local status=$?
    set +e
    [[ -n $java_sid ]] && kill -TERM -- "-$java_sid" 2>/dev/null
    if [[ $status -ne 0 ]]; then
        for f in "$dir"/*.log; do
            [[ -f $f ]] || continue
            printf '\n----- last 40 lines of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2
        done
        bash scripts/broker.sh stop "$dir"
        printf '\ncompare.sh FAILED (exit %d); cluster files kept in %s, run logs in %s/logs\n' \
            "$status" "$dir" "$out" >&2
    else
        bash scripts/broker.sh stop "$dir" --rm
    fi
    exit "$status"
}
trap cleanup EXIT

bash scripts/broker.sh start --dir "$dir" --owner-pid $$ >/dev/null
namesrv=$(sed -n 's/^NAMESRV_ADDR=//p' "$dir/cluster.env")
mapfile -t brokers < <(sed -n 's/^BROKER_[A-Z0-9_]*_ADDR=//p' "$dir/cluster.env")
[[ -n $namesrv && ${#brokers[@]} -gt 0 ]] || { echo "compare.sh: no addresses in $dir/cluster.env" >&2; exit 1; }
say "cluster up: name server $namesrv, broker ${brokers[*]} (files in $dir)"

# create_topic TOPIC: TOPIC with $queues read and write queues on every broker (what
# `mqadmin updateTopic -c` does), then waits until the name server's route shows them. Sent
# with scripts/independent_client.py, which shares no code with either client.
create_topic() {
    python3 - "$1" "$queues" "$namesrv" "${brokers[@]}" <<'PY'
import sys, time
sys.path.insert(0, "scripts")
from independent_client import call, route

topic, queues, namesrv, brokers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
for addr in brokers:
    code, _, body = call(addr, 17, {
        "topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues,
        "writeQueueNums": queues, "perm": 6, "topicFilterType": "SINGLE_TAG", "order": "false",
    })
    if code != 0:
        sys.exit(f"create {topic} on {addr}: code {code} {body[:200]!r}")
deadline = time.time() + 30
while True:
    r = route(namesrv, topic)
    if r and sum(q["writeQueueNums"] for q in r["queueDatas"]) == queues * len(brokers):
        break
    if time.time() > deadline:
        sys.exit(f"the route of {topic} never showed {queues} queues per broker: {r}")
    time.sleep(0.1)
PY
}

# ---------------------------------------------------------------------------------------------
# runs

failed_steps=()
# run STEP CMD...: runs CMD, its output shown and kept in $out/logs/STEP.log. A failure is
# reported with the log's path and remembered; the script goes on.
run() {
    local step=$1 log="$out/logs/$1.log"
    shift
    say "$step: $*"
    if ! "$@" 2>&1 | tee "$log"; then
        say "$step FAILED; its log: $log"
        failed_steps+=("$step ($log)")
    fi
}

# summary STEP: the SUMMARY line of STEP's log, empty when there is none.
summary() { grep -h '^SUMMARY ' "$out/logs/$1.log" 2>/dev/null | tail -n 1 || true; }

# field LINE NAME: the value of NAME=... in a SUMMARY line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# consume_csv STEP FILE: a row `t_s,tps` of 0,0 for the start, then one per `Consume TPS:` line
# of STEP, a second apart; the last line covers the interval's remainder and is placed at the
# run's elapsed time.
consume_csv() {
    local elapsed
    elapsed=$(field "$(summary "$1")" elapsed_s)
    awk -v elapsed="${elapsed:-0}" '
        /^Consume TPS: / { n++; tps[n] = $3 }
        END {
            print "t_s,tps"
            print "0,0"
            for (i = 1; i <= n; i++) {
                t = i
                if (i == n && elapsed + 0 > n - 1) t = elapsed
                print t "," tps[i]
            }
        }' "$out/logs/$1.log" >"$2"
}

backlog=CompareBacklog
create_topic "$backlog"
run backlog "$rmq_bench" producer -n "$namesrv" -t "$backlog" -s "$size" --mode async \
    --window "$window" --count "$count" --duration "$timeout"
[[ -n $(summary backlog) && $(field "$(summary backlog)" count) -ge $count ]] ||
    { say "the backlog was not produced in full; see $out/logs/backlog.log"; exit 1; }

run rawpull "$rmq_bench" rawpull -n "$namesrv" -t "$backlog" -g compare_rawpull \
    --count "$count" --duration "$timeout"
run consumer-rocketmq-sync "$rmq_bench" consumer -n "$namesrv" -t "$backlog" \
    -g compare_rocketmq_sync --count "$count" --duration "$timeout"
run consumer-peer "$peer_bench" consumer -n "$namesrv" -t "$backlog" -g compare_peer \
    --count "$count" --duration "$timeout"

# retried GROUP: how many messages GROUP's consumer sent back for a later retry (those stored in
# its %RETRY% topic by now), or "no retry topic" when the name server has no route for one.
retried() {
    local n
    n=$(python3 scripts/independent_client.py count --namesrv "$namesrv" --topic "%RETRY%$1" \
        2>/dev/null | sed -n 's/^read \([0-9]*\) messages.*/\1/p')
    printf '%s' "${n:-no retry topic}"
}
retried_ours=$(retried compare_rocketmq_sync)
retried_peer=$(retried compare_peer)

for mode in async sync; do
    for client in rocketmq-sync peer; do
        topic="Compare_${client//-/_}_$mode"
        bin=$rmq_bench
        [[ $client == peer ]] && bin=$peer_bench
        create_topic "$topic"
        run "producer-$mode-$client" "$bin" producer -n "$namesrv" -t "$topic" -s "$size" \
            --mode "$mode" --window "$window" --count "$count" --duration "$timeout"
    done
done

# ---------------------------------------------------------------------------------------------
# Java (only with ROCKETMQ_HOME)

# java_run STEP SCRIPT ARGS...: runs $ROCKETMQ_HOME/benchmark/SCRIPT in a session of its own
# for $java_secs seconds, then samples its java process's /proc (CPU, RSS, threads) and stops
# the session. Java's tools have no message count and print their TPS only every 10 s, over
# the last 10 s, so this is rough: TPS is the mean of the non-zero status lines (the
# producer's `Send TPS`) or their highest (the consumer's `Consume TPS`: a backlog drains in
# less than one window), the messages are estimated as the sum of TPS x 10 s, and CPU is the
# whole process's at the end. consumer.sh starts a new group at the last offset (Java's
# default); a broker that keeps the backlog in memory answers such a group with offset 0, else
# its lines stay at 0 and the row says so. Writes a SUMMARY line like the Rust tools' to the
# step's log.
java_run() {
    local step=$1 script=$2 log="$out/logs/$1.log" pid="" i stat ticks rss threads
    shift 2
    say "$step: $ROCKETMQ_HOME/benchmark/$script $* (for $java_secs s)"
    # The subshell is not a process group leader, so setsid makes it a session leader in
    # place: $! is the session id, shared by the java process the scripts start.
    (cd "$ROCKETMQ_HOME/benchmark" && exec setsid sh "./$script" "$@") >"$log" 2>&1 </dev/null &
    java_sid=$!
    for ((i = 0; i < 300; i++)); do
        pid=$(ps -e -o pid=,sid=,comm= | awk -v s="$java_sid" '$2 == s && $3 == "java" { print $1; exit }')
        [[ -z $pid ]] || break
        sleep 0.1
    done
    if [[ -z $pid ]]; then
        say "$step FAILED: no java process started; its log: $log"
        failed_steps+=("$step ($log)")
    else
        # Waiting out a fixed run is the measurement here, not a synchronisation.
        sleep "$java_secs"
        stat=$(cat "/proc/$pid/stat" 2>/dev/null || true)
        stat=${stat##*) }
        read -r -a f <<<"$stat"
        ticks=$(( ${f[11]:-0} + ${f[12]:-0} ))
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    fi
    kill -TERM -- "-$java_sid" 2>/dev/null || true
    wait "$java_sid" 2>/dev/null || true
    java_sid=""
    cat "$log"
    [[ -n $pid ]] || return 0
    awk -v ticks="$ticks" -v rss="${rss:-0}" -v threads="${threads:-0}" -v secs="$java_secs" '
        /^Send TPS: / { label = "producer"; tps = $3; failed = $(NF - 3) + $NF }
        /^Consume TPS: / { label = "consumer"; tps = $3 }
        /^(Send|Consume) TPS: / && tps > 0 { n++; sum += tps; if (tps > max) max = tps }
        END {
            rate = (label == "consumer") ? max : (n ? sum / n : 0)
            printf "SUMMARY mode=%s tps=%.0f cpu_s=%.2f rss_kib=%d threads=%d count=%d failed=%d elapsed_s=%d\n",
                label, rate, ticks / 100, rss, threads, sum * 10, failed + 0, secs
        }' "$log" | tee -a "$log"
}

if [[ -n ${ROCKETMQ_HOME:-} ]]; then
    if [[ ! -f $ROCKETMQ_HOME/benchmark/producer.sh ]]; then
        say "ROCKETMQ_HOME=$ROCKETMQ_HOME has no benchmark/producer.sh; no Java rows"
        failed_steps+=("java (no benchmark/ in ROCKETMQ_HOME)")
    else
        java_run consumer-java consumer.sh -n "$namesrv" -t "$backlog" -g compare_java -p false -w 20
        create_topic Compare_java_sync
        java_run producer-sync-java producer.sh -n "$namesrv" -t Compare_java_sync -w 1 -s "$size"
    fi
fi

# ---------------------------------------------------------------------------------------------
# table, ratios, CSV, plot

rows=(
    "consumer-rocketmq-sync|rocketmq-sync|push consumer"
    "consumer-peer|rocketmq-client-rust|push consumer"
    "consumer-java|Java 4.x (benchmark)|push consumer"
    "rawpull|rocketmq-sync|rawpull (broker limit)"
    "producer-async-rocketmq-sync|rocketmq-sync|async producer"
    "producer-async-peer|rocketmq-client-rust|async producer"
    "producer-sync-rocketmq-sync|rocketmq-sync|sync producer"
    "producer-sync-peer|rocketmq-client-rust|sync producer"
    "producer-sync-java|Java 4.x (benchmark)|sync producer"
)
fmt='%-22s %-22s %9s %14s %8s %8s %7s %10s\n'
{
    printf "\nN=%s messages of %s B, %s queues, async window %s; broker rocketmq-rust 1.0.0\n\n" \
        "$count" "$size" "$queues" "$window"
    # shellcheck disable=SC2059
    printf "$fmt" client mode TPS "CPU s/100k" "RSS MiB" threads failed "elapsed s"
} | tee "$out/table.txt"
echo "step,client,mode,tps,cpu_s_per_100k,rss_mib,threads,failed,count,elapsed_s" >"$out/results.csv"
declare -A tps_of=() cpu_of=() rss_of=()
for row in "${rows[@]}"; do
    IFS='|' read -r step client mode <<<"$row"
    [[ -f $out/logs/$step.log ]] || continue
    s=$(summary "$step")
    if [[ -z $s ]]; then
        # shellcheck disable=SC2059
        printf "$fmt" "$client" "$mode" "no SUMMARY: see logs/$step.log" "" "" "" "" "" | tee -a "$out/table.txt"
        continue
    fi
    n=$(field "$s" count)
    cpu=$(field "$s" cpu_s)
    cpu100k=$(awk -v c="$cpu" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", c * 100000 / n; else print "-" }')
    rss=$(awk -v k="$(field "$s" rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
    tps=$(field "$s" tps)
    # shellcheck disable=SC2059
    printf "$fmt" "$client" "$mode" "$tps" "$cpu100k" "$rss" "$(field "$s" threads)" \
        "$(field "$s" failed)" "$(field "$s" elapsed_s)" | tee -a "$out/table.txt"
    echo "$step,$client,$mode,$tps,$cpu100k,$rss,$(field "$s" threads),$(field "$s" failed),$n,$(field "$s" elapsed_s)" \
        >>"$out/results.csv"
    tps_of[$step]=$tps cpu_of[$step]=$cpu100k rss_of[$step]=$rss
done

# ratio A B: A / B to two decimals, or - when either is missing or B is 0.
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a != "" && a != "-" && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
{
    echo
    echo "ratios (rocketmq-sync over rocketmq-client-rust; CPU and RSS: rocketmq-client-rust over rocketmq-sync):"
    for m in consumer producer-async producer-sync; do
        ours=$m-rocketmq-sync peer=$m-peer
        [[ $m == consumer ]] && ours=consumer-rocketmq-sync peer=consumer-peer
        printf '  %-15s TPS x%s   CPU per message x%s   RSS x%s\n' "$m" \
            "$(ratio "${tps_of[$ours]:-}" "${tps_of[$peer]:-}")" \
            "$(ratio "${cpu_of[$peer]:-}" "${cpu_of[$ours]:-}")" \
            "$(ratio "${rss_of[$peer]:-}" "${rss_of[$ours]:-}")"
    done
    printf '  push consumer TPS over rawpull TPS: rocketmq-sync %s, rocketmq-client-rust %s\n' \
        "$(ratio "${tps_of[consumer-rocketmq-sync]:-}" "${tps_of[rawpull]:-}")" \
        "$(ratio "${tps_of[consumer-peer]:-}" "${tps_of[rawpull]:-}")"
    printf '  messages the push consumers sent back for retry: rocketmq-sync %s, rocketmq-client-rust %s\n' \
        "$retried_ours" "$retried_peer"
} | tee -a "$out/table.txt"

series=()
for pair in "consumer-rocketmq-sync|rocketmq-sync push consumer" \
    "consumer-peer|rocketmq-client-rust 1.0.0 push consumer" \
    "rawpull|rawpull (bare pull loop, broker-bound)"; do
    IFS='|' read -r step label <<<"$pair"
    [[ -n $(summary "$step") ]] || continue
    csv="$out/consume-tps-${step#consumer-}.csv"
    consume_csv "$step" "$csv"
    series+=("$label=$csv")
done
if [[ ${#series[@]} -gt 0 ]]; then
    run plot "$compare_plot" --out "$out/consume-tps.png" \
        --title "consume TPS, one backlog of $count x $size B over $queues queues" "${series[@]}"
fi

say "table: $out/table.txt, CSV: $out/results.csv and $out/consume-tps-*.csv, plot: $out/consume-tps.png, logs: $out/logs/"
if [[ ${#failed_steps[@]} -gt 0 ]]; then
    say "failed steps:"
    printf '  %s\n' "${failed_steps[@]}" >&2
    exit 1
fi
