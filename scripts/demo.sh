#!/usr/bin/env bash
# demo.sh — the main job end to end against a real local cluster:
#   1. scripts/broker.sh start           one name server + one broker (topic auto-creation on)
#                                        in a fresh directory, so the topic is fresh too
#   2. cargo run --release --example producer -- --namesrv ADDR --topic DemoTopic
#                                            --count 1000 --size 128 --queues 8
#   3. cargo run --release --example push_consumer -- --namesrv ADDR --topic DemoTopic
#                                            --group DemoGroup --count 1000 --from-first
#   4. check that the consumer's last line says `consumed 1000 messages`
#   5. read the topic back with scripts/independent_client.py, a remoting client written in
#      Python that shares no code with the crate, and check it finds all 1000 messages
# The cluster is stopped on exit, whatever happened (its logs are printed first if anything
# failed, and its directory is kept for inspection).
# DEMO_COUNT and DEMO_SIZE override the message count and size.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=${DEMO_COUNT:-1000}
size=${DEMO_SIZE:-128}
topic=DemoTopic
group=DemoGroup

bash scripts/broker.sh install
dir=$(mktemp -d "${TMPDIR:-/tmp}/rocketmq-sync-demo.XXXXXX")

cleanup() {
    local status=$?
    set +x
    if [[ $status -ne 0 ]]; then
        for f in "$dir"/*.log; do
            [[ -f $f ]] || continue
            printf '\n----- last 40 lines of %s -----\n' "$f" >&2
            tail -n 40 "$f" >&2 || true
        done
        bash scripts/broker.sh stop "$dir" || true
        printf '\ndemo FAILED (exit %d); cluster files kept in %s\n' "$status" "$dir" >&2
    else
        bash scripts/broker.sh stop "$dir" --rm || true
    fi
    exit "$status"
}
trap cleanup EXIT

# Prints the cluster's KEY=VALUE lines (also kept in $dir/cluster.env).
bash scripts/broker.sh start --dir "$dir" --owner-pid $$
namesrv=$(sed -n 's/^NAMESRV_ADDR=//p' "$dir/cluster.env")
[[ -n $namesrv ]] || { echo "demo.sh: no NAMESRV_ADDR in $dir/cluster.env" >&2; exit 1; }

set -x
cargo run --release --example producer -- --namesrv "$namesrv" --topic "$topic" \
    --count "$count" --size "$size" --queues 8
cargo run --release --example push_consumer -- --namesrv "$namesrv" --topic "$topic" \
    --group "$group" --count "$count" --from-first | tee "$dir/consumer.out"
python3 scripts/independent_client.py count --namesrv "$namesrv" --topic "$topic" \
    --expect "$count"
set +x

last=$(tail -n 1 "$dir/consumer.out")
if [[ $last != "consumed $count messages"* ]]; then
    printf 'demo.sh: expected the consumer to end with "consumed %s messages", got "%s"\n' \
        "$count" "$last" >&2
    exit 1
fi
echo "demo finished: produced and consumed $count messages ($last); an independent client read them all back" >&2
