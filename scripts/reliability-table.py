#!/usr/bin/env python3
"""Prints RELIABILITY.md's scenario table from the fault suite's results.

The fault scenarios (tests/fault_*.rs) append one JSON line each to
target/reliability/results.jsonl (see tests/support/ledger.rs). Usage:

    python3 scripts/reliability-table.py [target/reliability/results.jsonl]

The last line of each scenario wins, so the table shows the latest run.
"""
import json
import sys


def ms(v):
    if v is None:
        return "-"
    if v >= 10_000:
        return f"{v / 1000:.0f} s"
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{v} ms"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/reliability/results.jsonl"
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                rows[r["scenario"]] = r

    def order(name):
        head = name.split()[0]
        num = "".join(ch for ch in head if ch.isdigit())
        return (int(num) if num else 999, head)

    print("| Scenario | Produced | Send failed (in doubt) | Lost | Duplicates (window) "
          "| Worst gap | Recovery | Fault |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in sorted(rows, key=order):
        r = rows[name]
        print(f"| {name} | {r['produced']} | {r['send_failed']} ({r['in_doubt']}) "
              f"| {r['lost']} | {r['duplicates']} ({r['window']}) | {ms(r['worst_gap_ms'])} "
              f"| {ms(r['recovery_ms'])} | {ms(r['fault_ms'])} |")


if __name__ == "__main__":
    main()
