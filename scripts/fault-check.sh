#!/usr/bin/env bash
# Proves that the checks guarding against each planted fault can fail: for every
# row of scripts/faults/*.tsv it runs the guarding test without the fault (it
# must pass) and with the fault planted (ENVELOPEFS_FAULT=NAME; it must fail).
# Row format (tab-separated): NAME  CARGO-TEST-ARGS  WHAT-THE-FAULT-IS
# Usage: scripts/fault-check.sh [NAME...]   (default: every row)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
caught=0; missed=0; broken=0
want() { [ $# -eq 1 ] && return 0; local n; for n in "${@:2}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
log=$(mktemp -d); trap 'rm -rf "$log"' EXIT
# A fault planted in the caller's environment must not reach the clean runs.
unset ENVELOPEFS_FAULT
# Tests that ran (the "N passed" of every test binary) in a cargo test log.
passed() { grep -oE '^test result: [A-Za-z]+\. [0-9]+ passed' "$1" | awk '{s+=$4} END {print s+0}'; }
for table in scripts/faults/*.tsv; do
  while IFS=$'\t' read -r name args what; do
    case "$name" in ''|'#'*) continue ;; esac
    want "$name" "$@" || continue
    if [ -z "$args" ] || [ -z "$what" ]; then
      echo "BROKEN  $name: the row needs three tab-separated fields ($table)"; broken=$((broken+1)); continue
    fi
    # shellcheck disable=SC2086 # ARGS is a list of cargo test arguments
    if ! cargo test --release --features fault-check $args >"$log/$name.clean" 2>&1; then
      echo "BROKEN  $name: the guarding test fails without the fault (cargo test $args)"
      tail -n 20 "$log/$name.clean"; broken=$((broken+1)); continue
    fi
    # A filter that matches no test passes clean and planted alike.
    if [ "$(passed "$log/$name.clean")" -eq 0 ]; then
      echo "BROKEN  $name: cargo test $args runs no test"; broken=$((broken+1)); continue
    fi
    # shellcheck disable=SC2086
    if ENVELOPEFS_FAULT=$name cargo test --release --features fault-check $args >"$log/$name.planted" 2>&1; then
      echo "MISSED  $name: $what (cargo test $args passed with it planted)"; missed=$((missed+1))
    elif ! grep -q '^test result: FAILED' "$log/$name.planted"; then
      # Caught means a test failed, not that cargo stopped for another reason.
      echo "BROKEN  $name: cargo test $args failed with it planted, but no test failed"
      tail -n 20 "$log/$name.planted"; broken=$((broken+1))
    else
      failed=$(grep -oE '^test [^ ]+ \.\.\. FAILED' "$log/$name.planted" | awk '{print $2}' | paste -sd' ')
      echo "caught  $name: $what (failed: $failed)"; caught=$((caught+1))
    fi
  done < "$table"
done
echo "fault-check: $caught caught, $missed missed, $broken broken"
[ "$missed" -eq 0 ] && [ "$broken" -eq 0 ] && [ "$caught" -gt 0 ]
