#!/usr/bin/env bash
# The fuzz harness. Default: a bounded run (what scripts/test.sh uses);
# --long: far more cases, sequences, time per parser target, and fsx at 100,000 ops.
# Seeds: FUZZ_SEED=N reruns a reported failure exactly.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
LONG=0; PARSERS_ONLY=0
for a in "$@"; do
  case "$a" in
    --long) LONG=1 ;;
    --parsers-only) PARSERS_ONLY=1 ;;
    *) echo "usage: scripts/fuzz.sh [--long] [--parsers-only]" >&2; exit 2 ;;
  esac
done
if [ $LONG = 1 ]; then
  export FUZZ_CASES=${FUZZ_CASES:-3000} FUZZ_SEQS=${FUZZ_SEQS:-400} FUZZ_OPS=${FUZZ_OPS:-400} STRESS_SECS=${STRESS_SECS:-60}
  PARSER_SECS=${PARSER_SECS:-120}
else
  PARSER_SECS=${PARSER_SECS:-5}
fi
PASSED=0; FAILED=0
step() { local n=$1; shift; echo "--- $n"; if "$@"; then PASSED=$((PASSED+1)); else FAILED=$((FAILED+1)); echo "--- $n FAILED"; fi; }

if [ $PARSERS_ONLY = 0 ]; then
  step content-differential cargo test --release --lib content_fuzz -- --nocapture
  step tamper cargo test --release --lib tamper_fuzz -- --nocapture
  step torn-writes cargo test --release --lib torn_writes
  step fuse-differential cargo test --release --test fuzz_fuse -- --nocapture
  step crash cargo test --release --test crash
  step stress cargo test --release --test stress -- --nocapture
fi

# Coverage-guided parser fuzzing (libFuzzer via cargo-fuzz). The toolchain here
# is stable; cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP allows.
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
if cargo fuzz build -O >/tmp/envelopefs-fuzz-build.log 2>&1; then
  for t in header config keystore kms_blob symlink_xattr block; do
    work=$(mktemp -d)
    # New inputs go to the scratch dir; the committed seeds stay as they are.
    if cargo fuzz run -O "$t" "$work" "fuzz/corpus/$t" -- -max_total_time="$PARSER_SECS" >"$work.log" 2>&1; then
      echo "PARSER $t: ok ($(grep -o 'Done [0-9]* runs' "$work.log" | tail -1))"; PASSED=$((PASSED+1))
    else
      echo "PARSER $t: FAILED"; tail -40 "$work.log"; FAILED=$((FAILED+1))
    fi
    rm -rf "$work" "$work.log"
  done
else
  echo "PARSER build FAILED"; tail -30 /tmp/envelopefs-fuzz-build.log; FAILED=$((FAILED+1))
fi

if [ $LONG = 1 ] && [ "$(id -u)" = 0 ]; then
  step fsx-100k scripts/third-party.sh --fsx-ops 100000
fi
echo "fuzz: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
