#!/usr/bin/env bash
# lint.sh — formatting and lint checks (run by .ci/run before the tests; fails fast):
#   cargo fmt --all -- --check
#   cargo clippy --all-targets -- -D warnings
#   lint the shell scripts with shellcheck, when it is installed
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
    printf '\n+ %s\n' "$*" >&2
    "$@"
}

run cargo fmt --all -- --check
run cargo clippy --all-targets -- -D warnings
if command -v shellcheck >/dev/null; then
    run shellcheck scripts/*.sh .ci/run
else
    printf '\nshellcheck not installed; shell scripts not linted\n' >&2
fi
printf '\nlint passed\n' >&2
