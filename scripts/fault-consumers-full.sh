#!/usr/bin/env bash
# fault-consumers-full.sh — the consumer-side fault scenarios (issue 9: 5, 6, 7, 8 and 10) at
# the issue's full size, which CI does not run: rebalance churn for 3 minutes instead of 45 s.
#
#   scripts/fault-consumers-full.sh                 all of tests/fault_consumers.rs, full size
#   scripts/fault-consumers-full.sh rebalance_churn only the churn scenario
#
# RELIABILITY_SCALE=full selects the full sizes; CHURN_SECS=<seconds> overrides the churn's
# length. Each scenario appends its figures to target/reliability/results.jsonl (or to the file
# named by RELIABILITY_RESULTS). Extra arguments go to `cargo test` as test-name filters.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/broker.sh install
export RELIABILITY_SCALE=full
exec cargo test --test fault_consumers "$@" -- --nocapture
