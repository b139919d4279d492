#!/usr/bin/env bash
# Runs pjdfstest and fsx against real envelopefs mounts (header and xattr key
# location). Usage: scripts/third-party.sh [--fsx-ops N]
# Needs root (pjdfstest switches users; mounts use allow_other).
set -uo pipefail
cd "$(dirname "$0")/.."
FSX_OPS=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --fsx-ops) FSX_OPS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
BIN=${ENVELOPEFS_BIN:-target/release/envelopefs}
CONF=$PWD/tests/conf
PASSED=0; FAILED=0
# Short paths: pjdfstest binds unix sockets about 60 bytes below the test dir.
WORK=$(mktemp -d /tmp/efs3p.XXXX)
chmod 0755 "$WORK"
export ENVELOPEFS_KEYSTORE=$WORK/ks
printf 'third-party tests\n' > "$WORK/pass"
chmod 600 "$WORK/pass"
export ENVELOPEFS_PASSPHRASE_FILE=$WORK/pass
MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do
    timeout 20 "$BIN" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

run_on() { # label, init flags...
  local label=$1; shift
  local c=$WORK/$label.c m=$WORK/$label
  mkdir -p "$m"
  "$BIN" init "$c" "$@" >/dev/null || { echo "THIRDPARTY $label: init failed"; FAILED=$((FAILED+1)); return; }
  if ! timeout 60 "$BIN" mount "$c" "$m" --allow-other --log-file "$WORK/$label.log"; then
    echo "THIRDPARTY $label: mount failed"; FAILED=$((FAILED+1)); return
  fi
  MOUNTS+=("$m")
  chmod 0755 "$m"
  local sec; sec=$(mktemp -d /tmp/efs3s.XXXX)
  local out=$WORK/$label.pjd
  NO_COLOR=1 RUST_BACKTRACE=0 timeout -k 10 600 pjdfstest -c "$CONF/pjdfstest.toml" -p "$m" -s "$sec" >"$out" 2>&1
  local rc=$?
  rm -rf "$sec"
  local summary; summary=$(grep '^Summary:' "$out" | tail -1)
  echo "THIRDPARTY $label pjdfstest: rc=$rc $summary"
  if [ $rc -eq 0 ] && echo "$summary" | grep -q ' 0 failed'; then
    PASSED=$((PASSED+1))
  else
    FAILED=$((FAILED+1))
    grep -A3 'FAILED' "$out" | head -60
  fi
  mkdir -p "$WORK/$label.fsx"
  local t0=$SECONDS
  NO_COLOR=1 timeout -k 10 900 fsx -f "$CONF/fsx-core.toml" -N "$FSX_OPS" -S 42 -P "$WORK/$label.fsx" "$m/fsx.dat" >"$WORK/$label.fsxout" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q 'A-OK' "$WORK/$label.fsxout"; then
    echo "THIRDPARTY $label fsx: OK ops=$FSX_OPS seed=42 time=$((SECONDS-t0))s"
    PASSED=$((PASSED+1))
  else
    echo "THIRDPARTY $label fsx: FAIL rc=$rc"; tail -30 "$WORK/$label.fsxout"
    FAILED=$((FAILED+1))
  fi
  timeout 20 "$BIN" umount "$m" || umount -l "$m"
  MOUNTS=("${MOUNTS[@]/$m}")
  if grep -qi 'panick' "$WORK/$label.log"; then
    echo "THIRDPARTY $label: daemon panicked"; cat "$WORK/$label.log"; FAILED=$((FAILED+1))
  fi
}

run_on hdr
run_on xat --key-location xattr
run_on pln --plaintext-names --long-name-max 64
echo "third-party: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
