#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs the gate
# (fmt, clippy), unit and mount tests, pjdfstest and fsx. CI runs this.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH

need_apt=()
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
command -v setfattr >/dev/null || need_apt+=(attr)
command -v setfacl >/dev/null || need_apt+=(acl)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v script >/dev/null || need_apt+=(bsdutils) # script(1): progress bars under a pty
command -v openssl >/dev/null || need_apt+=(openssl) # the asymmetric-key tests' oracle
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing packages: ${need_apt[*]} (run as root to install)" >&2
  fi
fi
install_tool() { # name version
  if ! "$1" --version 2>/dev/null | grep -q "$2"; then
    cargo install --locked --quiet "$1@$2" || { echo "cannot install $1 $2" >&2; return 1; }
  fi
}

PASSED=0; FAILED=0; SKIPPED_STAGES=0
# Tests that cannot run here record `SKIPPED: test: reason` in this file
# (tests/common: skip); cargo shows no output of a passing test.
ENVELOPEFS_SKIP_LOG=$(mktemp /tmp/envelopefs-skips.XXXXXX)
export ENVELOPEFS_SKIP_LOG
skipped_stage() { # name, reason
  echo "=== $1: skipped ($2)"; SKIPPED_STAGES=$((SKIPPED_STAGES+1))
}
stage() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then
    PASSED=$((PASSED+1)); echo "=== $name: ok ($((SECONDS-t0)) s)"
  else
    FAILED=$((FAILED+1)); echo "=== $name: FAILED ($((SECONDS-t0)) s)"
  fi
}

# Builds that later stages need run in the background from the start, at
# the lowest CPU priority: the cargo tests, the third-party suites and the
# package test mostly wait on mounts and leave a CPU idle, which these builds
# fill, while a stage in the foreground always gets the CPU first. Each is
# the command its stage runs again, which then finds everything built (or
# builds and reports what failed).
BG_DIR=$(mktemp -d /tmp/envelopefs-bg.XXXXXX)
declare -A BG_PID=() BG_T0=()
background() { # name, command...: in a session of its own (so it can be ended), at nice 19
  local name=$1; shift
  BG_T0[$name]=$SECONDS
  setsid nice -n 19 "$@" >"$BG_DIR/$name.log" 2>&1 &
  BG_PID[$name]=$!
}
await() { # name: wait for a background build (how long it ran, how long we waited); its log when it failed
  local pid=${BG_PID[$1]:-} t0=$SECONDS rc=0
  [ -n "$pid" ] || return 0
  unset "BG_PID[$1]"
  wait "$pid" || rc=$?
  echo "=== background $1: rc=$rc, started $((t0-BG_T0[$1])) s ago, waited $((SECONDS-t0)) s"
  [ $rc -eq 0 ] || tail -40 "$BG_DIR/$1.log"
}
end_background() {
  local pid
  for pid in "${BG_PID[@]}"; do kill -- "-$pid" 2>/dev/null; done
  rm -rf "$BG_DIR"
}
# The AWS SDK features together, so the SDK builds once: KMS and S3 against
# moto. fault-check rides along (it plants nothing unless a test asks), so the
# fault-injection tests and the concurrent push + delete test on S3 need no
# build of their own. A target directory of its own: the foreground's cargo
# commands never wait for its lock.
AWS_FEATURES=aws-kms,s3,fault-check
SDK=(env CARGO_TARGET_DIR=target/sdk cargo test --release --features "$AWS_FEATURES")
background tools bash -c "$(declare -f install_tool); install_tool pjdfstest 0.2.2 && install_tool fsx 0.3.2"
# A local KMS and S3 emulator for the aws-kms and s3 features' tests (only those use it).
background moto bash -c "python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install -q 'moto[server]' 2>&1 | grep -v WARNING || true"
background fuzz-build scripts/fuzz.sh --build-only
background sdk-build "${SDK[@]}" --no-run --test aws_kms --test s3 --test remote --test snapshot --test system

# The kernel's FUSE-over-io_uring switch (Linux 6.14+) decides which transport
# a mount uses; the mount tests and third-party suites run under each.
URING_KNOB=/sys/module/fuse/parameters/enable_uring
URING_WAS=$(cat "$URING_KNOB" 2>/dev/null || echo none)
uring() { # Y|N: set the switch if this kernel has it and we may
  [ -w "$URING_KNOB" ] && echo "$1" > "$URING_KNOB" 2>/dev/null
}
restore_uring() { [ "$URING_WAS" != none ] && echo "$URING_WAS" > "$URING_KNOB" 2>/dev/null; true; }
trap 'end_background; restore_uring; rm -f "$ENVELOPEFS_SKIP_LOG"' EXIT

stage fmt cargo fmt --check
stage clippy cargo clippy --all-targets --release -- -D warnings
uring N
stage cargo-test cargo test --release --no-fail-fast
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  await tools
  stage third-party scripts/third-party.sh --fsx-ops 20000
  stage package scripts/test-package.sh
else
  [ "${CI:-}" = true ] && { echo "=== CI=true: root and /dev/fuse are required" >&2; FAILED=$((FAILED+1)); }
  for s in third-party package; do skipped_stage "$s" "needs root and /dev/fuse"; done
fi
await fuzz-build
stage parser-fuzz scripts/fuzz.sh --parsers-only
# The fault-check build linted on its own (a cfg(feature = "fault-check")
# item must not need the SDK features); its tests run in the SDK build.
stage fault-check-clippy cargo clippy --release --features fault-check --all-targets -- -D warnings
stage aws-clippy cargo clippy --release --features $AWS_FEATURES --all-targets -- -D warnings
await sdk-build
await moto
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  # Errors that only a planted fault can provoke (an xattr that cannot be
  # read, a flush that fails), and a push held at its pause point while a
  # delete runs: these tests exist only in a build with fault-check.
  stage fault-injection-tests "${SDK[@]}" --test snapshot --test remote -- \
    fsck_reports_xattrs_it_cannot_read copies_fail_on_xattrs_they_cannot_read \
    snapshot_fails_when_the_mount_cannot_be_flushed failed_rmdir_reports_an_iv_it_cannot_put_back \
    sweep::a_delete_during_a_push_that_reuses_its_chunks_loses_nothing
  stage fault-injection-daemon "${SDK[@]}" --test system -- \
    daemon::daemon_killed_while_checking_readiness_leaves_a_stale_mount_not_a_hung_one \
    lookup::umount_of_a_slow_daemon_is_not_busy_with_its_own_probe
else
  skipped_stage fault-injection-tests "needs root and /dev/fuse"
  skipped_stage fault-injection-daemon "needs root and /dev/fuse"
fi
stage aws-moto "${SDK[@]}" --test aws_kms --test s3
# The remote snapshot tests again, on an S3 repository (moto) instead of a directory.
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  stage s3-remote-snapshots env ENVELOPEFS_TEST_REMOTE=s3 "${SDK[@]}" --test remote
else
  skipped_stage s3-remote-snapshots "needs root and /dev/fuse"
fi
# The mount tests and the third-party suites again over FUSE-over-io_uring,
# last: its queue threads idle below every other process (vendor/fuser
# src/uring_sched.rs), so no background build may be running by then.
if [ "$(id -u)" != 0 ] || [ ! -e /dev/fuse ]; then
  for s in io-uring-mount-tests io-uring-third-party; do skipped_stage "$s" "needs root and /dev/fuse"; done
elif uring Y; then
  stage io-uring-mount-tests cargo test --release --no-fail-fast --test mount --test names --test crash --test hostile \
    --test stress --test fuzz_fuse --test agent --test snapshot --test system --test writeonly
  stage io-uring-third-party scripts/third-party.sh --fsx-ops 20000
  uring N
else
  skipped_stage io-uring-mount-tests "this kernel has no FUSE over io_uring switch we may set"
  skipped_stage io-uring-third-party "this kernel has no FUSE over io_uring switch we may set"
fi
# Every skip, once (a test run under both transports may skip twice).
SKIPPED_TESTS=$(sort -u "$ENVELOPEFS_SKIP_LOG" | grep -c '^SKIPPED: ')
if [ "$SKIPPED_TESTS" -gt 0 ]; then
  echo "=== skipped tests:"; sort -u "$ENVELOPEFS_SKIP_LOG"
fi
IGNORED=$(grep -rn -A1 '#\[ignore' src tests 2>/dev/null | grep -o 'fn [a-z0-9_]*' || true)
if [ -n "$IGNORED" ]; then
  echo "=== #[ignore]d tests (not run):"; echo "$IGNORED"
fi
echo "test.sh: $PASSED passed, $FAILED failed, $((SKIPPED_STAGES + SKIPPED_TESTS)) skipped"
[ "$FAILED" -eq 0 ]
