#!/usr/bin/env bash
# Mutation testing of the format's arithmetic and crypto core: cargo-mutants
# mutates src/crypto/{offsets,content,header}.rs one change at a time and runs
# the crypto unit tests (`cargo test --lib -- crypto::`) against each mutant.
# Not part of scripts/test.sh: it takes the better part of an hour on 2 cores.
#
# It mutates the files IN PLACE (to reuse target/mutants/ between runs instead
# of building every dependency again in a copy): do not edit, build or commit
# in this checkout while it runs. cargo-mutants restores each file after each
# mutant; the script checks at the end that no mutation was left behind.
#
# A missed mutant fails the run unless docs/TESTING.md lists it (as
# "- `FILE: MUTATION`", line numbers left out) with the reason it cannot
# matter. Results: target/mutants.out/ (outcomes.json, caught.txt, missed.txt...).
# Usage: scripts/mutants.sh [extra cargo-mutants options, e.g. --list]
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
FILES=(src/crypto/offsets.rs src/crypto/content.rs src/crypto/header.rs)
MARKER='changed by cargo-mutants'

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "--- installing cargo-mutants"
  cargo install --locked cargo-mutants || exit 1
fi
if grep -l "$MARKER" "${FILES[@]}"; then
  echo "mutants: a mutation from an interrupted run is still in the files above; restore them (git checkout) first" >&2
  exit 1
fi

# --lib as a cargo argument (not only a test argument) keeps the build of each
# mutant to the library's unit tests: no binary, no integration tests.
args=(--in-place --profile mutants --cargo-arg=--lib --output target --timeout "${MUTANTS_TIMEOUT:-120}" --build-timeout "${MUTANTS_BUILD_TIMEOUT:-900}")
for f in "${FILES[@]}"; do args+=(--file "$f"); done
start=$(date +%s)
nice -n 10 cargo mutants "${args[@]}" "$@" -- -- crypto::
status=$?
echo "mutants: cargo-mutants exited $status after $(( $(date +%s) - start )) s"

if grep -l "$MARKER" "${FILES[@]}"; then
  echo "mutants: a mutation was left in the files above: restore them (git checkout) before anything else" >&2
  exit 1
fi
out=target/mutants.out
[ -f "$out/outcomes.json" ] || exit "$status"
for kind in caught missed unviable timeout; do
  printf '%s %s  ' "$kind" "$(cat "$out/$kind.txt" 2>/dev/null | wc -l)"
done
echo
# Exit 2 is cargo-mutants' "some mutants were missed": judge those against
# the equivalent mutants docs/TESTING.md lists. Any other failure stands.
[ "$status" -eq 0 ] || [ "$status" -eq 2 ] || exit "$status"
accepted=$(sed -n 's/^- `\(src\/crypto\/[^`]*\)`.*/\1/p' docs/TESTING.md)
unexplained=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  key=$(printf '%s\n' "$line" | sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /')
  if grep -qxF -- "$key" <<<"$accepted"; then
    echo "equivalent (docs/TESTING.md): $key"
  else
    echo "MISSED: $line"; unexplained=$((unexplained+1))
  fi
done < "$out/missed.txt"
echo "mutants: $unexplained missed mutant(s) neither killed nor listed as equivalent in docs/TESTING.md"
[ "$unexplained" -eq 0 ]
