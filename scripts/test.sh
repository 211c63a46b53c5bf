#!/usr/bin/env bash
# test.sh — THE test command of rocketmq-sync: run it from anywhere as `scripts/test.sh`.
#
#   1. scripts/broker.sh install   the pinned RocketMQ name server and broker (rocketmq-rust
#                                  1.0.0 from crates.io) into the cache, unless already there
#                                  (the first install takes 15-25 minutes);
#   2. cargo test --all-targets    unit tests, integration tests (they start their own real
#                                  clusters through tests/support/broker.rs), examples, benches;
#   3. cargo test --doc            doc tests.
#
# Extra arguments go to both cargo test runs, e.g. `scripts/test.sh broker_harness` or
# `scripts/test.sh -- --nocapture`. Set NAMESRV_ADDR=host:port to run the tests that use the
# shared cluster against an external cluster instead. The exit code is cargo's (the first
# failing step's). Lint checks are separate: scripts/lint.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
    printf '\n+ %s\n' "$*" >&2
    "$@"
}

run bash scripts/broker.sh install
if [[ -n ${NAMESRV_ADDR:-} ]]; then
    printf 'NAMESRV_ADDR=%s: the shared cluster of the tests is that external one\n' "$NAMESRV_ADDR" >&2
fi

status=0
run cargo test --all-targets --no-fail-fast "$@" || status=$?
if [[ $status -ne 0 ]]; then
    printf '\ncargo test --all-targets failed (exit %d); running the doc tests anyway\n' "$status" >&2
fi
doc_status=0
run cargo test --doc "$@" || doc_status=$?
if [[ $status -eq 0 ]]; then
    status=$doc_status
fi
if [[ $status -eq 0 ]]; then
    printf '\nall tests passed\n' >&2
else
    printf '\ntests FAILED (exit %d)\n' "$status" >&2
fi
exit "$status"
