#!/usr/bin/env bash
# Copy throughput: snapshot copy --mode reencrypt of 1 GiB in large files and of
# 10,000 small files, beside `cp -a` of the same backing tree on the same disk;
# --mode rekey in files per second. Run through scripts/bench.sh --copies.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/envelopefs
W=$(mktemp -d /var/tmp/efscopy.XXXX)
trap 'rm -rf "$W"' EXIT
export ENVELOPEFS_KEYSTORE=$W/ks
echo "copy bench" > "$W/pass"
export ENVELOPEFS_PASSPHRASE_FILE=$W/pass
"$BIN" kms create-key >/dev/null
KEY=$("$BIN" kms create-key --query KeyMetadata.KeyId --output text)
mkdir -p "$W/large" "$W/small"
for i in 1 2 3 4; do head -c 268435456 /dev/urandom > "$W/large/f$i"; done
for i in $(seq 1 10000); do head -c 4096 /dev/urandom > "$W/small/f$i"; done 2>/dev/null
"$BIN" import "$W/large" "$W/vl" >/dev/null
"$BIN" import "$W/small" "$W/vs" >/dev/null
sync
t() { local s; s=$(date +%s.%N); "$@" >/dev/null; sync; echo "$(date +%s.%N) - $s" | bc -l; }
printf '%-44s %10s %12s\n' "operation" "seconds" "rate"
for set in l s; do
  src=$W/v$set
  bytes=$(du -sb "$src" | cut -f1)
  files=$(find "$src" -type f | wc -l)
  tc=$(t cp -a "$src" "$W/cp$set")
  tr=$(t "$BIN" snapshot copy "$src" "$W/re$set" --key "$KEY" --mode reencrypt)
  tk=$(t "$BIN" snapshot copy "$src" "$W/rk$set" --key "$KEY" --mode rekey)
  name=$([ $set = l ] && echo "1 GiB in 4 files" || echo "10,000 files of 4 KiB")
  printf '%-44s %10.2f %9.1f MiB/s\n' "cp -a ($name)" "$tc" "$(echo "$bytes/1048576/$tc" | bc -l)"
  printf '%-44s %10.2f %9.1f MiB/s\n' "reencrypt ($name)" "$tr" "$(echo "$bytes/1048576/$tr" | bc -l)"
  printf '%-44s %10.2f %9.0f files/s\n' "rekey ($name)" "$tk" "$(echo "$files/$tk" | bc -l)"
done
