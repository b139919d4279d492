#!/usr/bin/env bash
# The fuzz harness. Default: a bounded run (what scripts/test.sh uses);
# --long: far more cases, sequences, time per parser target, and fsx at 100,000 ops.
# Seeds: FUZZ_SEED=N reruns a reported failure exactly.
# --build-only: installs cargo-fuzz and builds the parser targets as
# --parsers-only does, runs nothing (scripts/test.sh builds in the background).
# --fault-check: for each fault planted for a parser target (FUZZ_FAULTS
# below), runs the target over its committed corpus without the fault (must
# pass) and with it (must fail): the targets' assertions can fail.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
LONG=0; PARSERS_ONLY=0; FAULT_CHECK=0; BUILD_ONLY=0
for a in "$@"; do
  case "$a" in
    --long) LONG=1 ;;
    --parsers-only) PARSERS_ONLY=1 ;;
    --fault-check) FAULT_CHECK=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    *) echo "usage: scripts/fuzz.sh [--long] [--parsers-only] [--fault-check] [--build-only]" >&2; exit 2 ;;
  esac
done
# The libFuzzer targets (fuzz/fuzz_targets/), each with seeds in fuzz/corpus/.
TARGETS="header config keystore keystore_plain kms_blob symlink_xattr names block"
# Faults planted in the library (src/fault.rs) that a target must catch on
# its corpus: FAULT:TARGET.
FUZZ_FAULTS="fuzz-header-roundtrip:header fuzz-names-dotdot:names"

if [ $BUILD_ONLY = 1 ]; then
  command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz@0.13.2
  RUSTC_BOOTSTRAP=1 exec cargo fuzz build -O
fi
if [ $FAULT_CHECK = 1 ]; then
  command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz@0.13.2
  export RUSTC_BOOTSTRAP=1
  caught=0; missed=0
  if ! cargo fuzz build -O --features fault-check >/tmp/envelopefs-fuzz-build.log 2>&1; then
    echo "PARSER build FAILED"; tail -30 /tmp/envelopefs-fuzz-build.log; exit 1
  fi
  art=$(mktemp -d)
  for ft in $FUZZ_FAULTS; do
    f=${ft%%:*}; t=${ft#*:}
    # -runs=0: only the committed corpus, no new inputs.
    run=(cargo fuzz run -O --features fault-check "$t" "fuzz/corpus/$t" -- -runs=0 -artifact_prefix="$art/")
    if ! "${run[@]}" >"$art/clean.log" 2>&1; then
      echo "BROKEN  $f: target $t fails on its corpus without the fault"; missed=$((missed+1))
    elif ENVELOPEFS_FAULT=$f "${run[@]}" >"$art/planted.log" 2>&1; then
      echo "MISSED  $f: target $t passes its corpus with the fault planted"; missed=$((missed+1))
    else
      echo "caught  $f: target $t: $(grep -m1 -A1 'panicked at' "$art/planted.log" | tail -1)"
      caught=$((caught+1))
    fi
  done
  rm -rf "$art"
  echo "fuzz fault-check: $caught caught, $missed missed or broken"
  [ "$missed" -eq 0 ]; exit
fi
if [ $LONG = 1 ]; then
  export FUZZ_CASES=${FUZZ_CASES:-3000} FUZZ_SEQS=${FUZZ_SEQS:-400} FUZZ_OPS=${FUZZ_OPS:-400} STRESS_SECS=${STRESS_SECS:-60}
  PARSER_SECS=${PARSER_SECS:-120}
else
  # Eight targets at 4 s: CI's fuzz stage stays at its ~4 minutes.
  PARSER_SECS=${PARSER_SECS:-4}
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
  for t in $TARGETS; do
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
