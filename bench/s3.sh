#!/usr/bin/env bash
# Remote snapshot throughput against a local S3 server (moto on 127.0.0.1,
# objects in memory): `snapshot push` and `snapshot pull` of 1 GiB in large
# files and of 10,000 small files, beside `aws s3 sync` (or `rclone sync`) of
# the same ciphertext tree up and down, and the incremental case (one 4 KiB
# block changed, pushed again). Needs root and /dev/fuse for the incremental
# case. Run through scripts/bench.sh --s3.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
cargo build --release --quiet --features s3 --bin envelopefs
BIN=$PWD/target/release/envelopefs
python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install -q 'moto[server]' 2>&1 | grep -v WARNING || true
command -v aws >/dev/null || python3 -m pip install -q awscli 2>&1 | grep -v WARNING || true
SYNC=
if aws --version >/dev/null 2>&1; then SYNC=aws
elif command -v rclone >/dev/null; then SYNC=rclone
fi

W=$(mktemp -d /var/tmp/efss3.XXXX)
MOTO=
cleanup() {
  [ -n "$MOTO" ] && kill "$MOTO" 2>/dev/null
  grep -q " $W/m " /proc/mounts && "$BIN" umount "$W/m" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
export ENVELOPEFS_KEYSTORE=$W/ks
echo "s3 bench" > "$W/pass"
export ENVELOPEFS_PASSPHRASE_FILE=$W/pass
"$BIN" kms create-key >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
MOTO=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "$ENDPOINT" && break; sleep 0.1; done
curl -sf -o /dev/null "$ENDPOINT" || { echo "moto did not start" >&2; exit 1; }
export AWS_ENDPOINT_URL_S3=$ENDPOINT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
curl -sf -o /dev/null -X PUT "$ENDPOINT/bench" || { echo "cannot create the bucket" >&2; exit 1; }
if [ "$SYNC" = rclone ]; then
  export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
    RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=bench \
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=bench RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
fi
sync_up() { # dir prefix
  case $SYNC in
    aws) aws --endpoint-url "$ENDPOINT" s3 sync --quiet "$1" "s3://bench/$2" ;;
    rclone) rclone sync "$1" "bench:bench/$2" ;;
  esac
}
sync_down() { # prefix dir
  case $SYNC in
    aws) aws --endpoint-url "$ENDPOINT" s3 sync --quiet "s3://bench/$1" "$2" ;;
    rclone) rclone sync "bench:bench/$1" "$2" ;;
  esac
}

mkdir -p "$W/large" "$W/small" "$W/m"
for i in 1 2 3 4; do head -c 268435456 /dev/urandom > "$W/large/f$i"; done
for i in $(seq 1 10000); do head -c 4096 /dev/urandom > "$W/small/f$i"; done 2>/dev/null
"$BIN" import "$W/large" "$W/vl" >/dev/null
"$BIN" import "$W/small" "$W/vs" >/dev/null
rm -rf "$W/large" "$W/small"
sync

now() { date +%s.%N; }
# Runs a command, its --json summary kept in $W/out; prints the seconds.
t() { local s; s=$(now); "$@" > "$W/out"; sync; echo "$(now) - $s" | bc -l; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/out" "$1"; }
row() { printf '%-48s %10.2f %9.1f MiB/s\n' "$1" "$2" "$(echo "$3/1048576/$2" | bc -l)"; }

printf '%-48s %10s %15s\n' "operation" "seconds" "rate"
for set in l s; do
  src=$W/v$set
  name=$([ $set = l ] && echo "1 GiB in 4 files" || echo "10,000 files of 4 KiB")
  bytes=$(du -sb "$src" | cut -f1)
  tp=$(t "$BIN" snapshot push "$src" "s3://bench/repo-$set" --name one --json)
  row "push ($name)" "$tp" "$bytes"
  echo "    uploaded $(field BytesUploaded) bytes in $(field ChunksUploaded) chunks"
  tl=$(t "$BIN" snapshot pull "s3://bench/repo-$set/one" "$W/pull$set" --json)
  row "pull ($name)" "$tl" "$bytes"
  rm -rf "$W/pull$set"
  if [ -n "$SYNC" ]; then
    ts=$(t sync_up "$src" "sync-$set")
    row "$SYNC sync up ($name)" "$ts" "$bytes"
    td=$(t sync_down "sync-$set" "$W/down$set")
    row "$SYNC sync down ($name)" "$td" "$bytes"
    rm -rf "$W/down$set"
  else
    echo "SKIPPED: sync comparison ($name): neither aws nor rclone is available"
  fi
done

# Incremental: one 4 KiB block of one large file changed, pushed again.
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  "$BIN" mount "$W/vl" "$W/m"
  head -c 4096 /dev/urandom | dd of="$W/m/f2" bs=4096 seek=1000 conv=notrunc status=none
  "$BIN" umount "$W/m"
  ti=$(t "$BIN" snapshot push "$W/vl" "s3://bench/repo-l" --name two --json)
  printf '%-48s %10.2f %12s bytes uploaded\n' "incremental push (one 4 KiB block of 1 GiB)" \
    "$ti" "$(field BytesUploaded)"
  echo "    scanned $(field BytesScanned), skipped $(field BytesSkipped) bytes"
else
  echo "SKIPPED: incremental push: needs root and /dev/fuse to change a block through a mount"
fi
