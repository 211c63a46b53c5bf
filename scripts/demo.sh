#!/usr/bin/env bash
# demo.sh — the main job end to end against a real local cluster:
#   1. scripts/broker.sh start           one name server + one broker (topic auto-creation on)
#   2. cargo run --release --example producer -- --namesrv ADDR --topic DemoTopic
#                                            --count 1000 --size 128
#   3. when examples/push_consumer.rs exists:
#      cargo run --release --example push_consumer -- --namesrv ADDR --topic DemoTopic
#                                            --group DemoGroup --count 1000 --from-first
# The cluster is stopped on exit (its logs are printed first if anything failed).
# DEMO_COUNT and DEMO_SIZE override the message count and size.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=${DEMO_COUNT:-1000}
size=${DEMO_SIZE:-128}

if [[ ! -f examples/producer.rs && ! -f examples/producer/main.rs ]]; then
    echo "demo.sh: examples/producer.rs does not exist yet" >&2
    exit 1
fi

bash scripts/broker.sh install
dir=$(mktemp -d "${TMPDIR:-/tmp}/rocketmq-sync-demo.XXXXXX")

cleanup() {
    local status=$?
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

bash scripts/broker.sh start --dir "$dir" --owner-pid $$ >/dev/null # cluster.env is read below
namesrv=$(sed -n 's/^NAMESRV_ADDR=//p' "$dir/cluster.env")
printf 'name server %s, broker %s\n' "$namesrv" "$(sed -n 's/^BROKER_A_ADDR=//p' "$dir/cluster.env")" >&2

set -x
cargo run --release --example producer -- --namesrv "$namesrv" --topic DemoTopic --count "$count" --size "$size"
if [[ -f examples/push_consumer.rs || -f examples/push_consumer/main.rs ]]; then
    cargo run --release --example push_consumer -- --namesrv "$namesrv" --topic DemoTopic \
        --group DemoGroup --count "$count" --from-first
fi
set +x
echo "demo finished" >&2
