#!/usr/bin/env bash
# Benchmarks (not part of the test suite). Needs root.
#   scripts/bench.sh [--quick] [--tmpfs] [--rounds N]   filesystem figures vs gocryptfs
#   scripts/bench.sh --copies                           snapshot copy / import throughput
#   scripts/bench.sh --blocks                           cargo bench of the block layer
#   scripts/bench.sh --scaling [--quick-scaling] [--big-gib N]  how cost grows with size (bench/scaling.py --help)
#   scripts/bench.sh --s3                               remote snapshot push/pull vs aws s3 sync (local moto)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
# Its own build (feature s3) and tools.
[ "${1:-}" = --s3 ] && exec bash bench/s3.sh
need=()
command -v gocryptfs >/dev/null || need+=(gocryptfs)
command -v fio >/dev/null || need+=(fio)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib 2>&1 | grep -v WARNING || true
cargo build --release --quiet --bin envelopefs --example passthrough
case "${1:-}" in
  --blocks) exec cargo bench --bench blocks ;;
  --copies) exec bash bench/copies.sh ;;
  --scaling) shift; exec python3 bench/scaling.py "$@" ;;
esac
exec python3 bench/bench.py "$@"
