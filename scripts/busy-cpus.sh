#!/usr/bin/env bash
# Run a command with every online CPU kept busy by a spinner in the normal
# scheduling class, to check the scheduling levers (the io_uring queue
# threads in the idle class and their watchdog) under contention.
#   scripts/busy-cpus.sh [--io-uring] [--cpus N] COMMAND...
# --io-uring switches the kernel's FUSE-over-io_uring on for the command
# (root) and puts it back afterwards; --cpus N runs command and spinners on
# the first N CPUs only (taskset), where N may not exceed the CPUs online.
set -euo pipefail
cd "$(dirname "$0")/.."
URING=0
CPUS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --io-uring) URING=1; shift ;;
    --cpus) CPUS=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: scripts/busy-cpus.sh [--io-uring] [--cpus N] COMMAND..." >&2; exit 2; }
ONLINE=$(nproc --all)
if [ "$CPUS" -gt "$ONLINE" ]; then
  echo "busy-cpus: $CPUS CPUs asked for, this machine has $ONLINE" >&2
  exit 2
fi
MASK=0-$((CPUS-1))
KNOB=/sys/module/fuse/parameters/enable_uring
KNOB_WAS=$(cat "$KNOB" 2>/dev/null || echo none)
SPINNERS=()
cleanup() {
  for p in "${SPINNERS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "$URING" = 1 ] && [ "$KNOB_WAS" != none ] && echo "$KNOB_WAS" > "$KNOB"
  true
}
trap cleanup EXIT
if [ "$URING" = 1 ]; then
  [ -w "$KNOB" ] || { echo "busy-cpus: no FUSE over io_uring switch we may set ($KNOB)" >&2; exit 2; }
  echo Y > "$KNOB"
fi
for ((c = 0; c < CPUS; c++)); do
  # Each spinner ends by itself after two hours should this script be killed.
  taskset -c "$c" timeout 7200 sh -c 'while :; do :; done' &
  SPINNERS+=($!)
done
echo "busy-cpus: $CPUS spinners on CPUs $MASK; io_uring: $([ "$URING" = 1 ] && echo on || echo as it was)" >&2
taskset -c "$MASK" "$@"
