#!/usr/bin/env bash
# Build envelopefs and mount a demo encrypted directory on the embedded local
# key store, with no other set-up. Leaves the mount running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
cargo build --release --quiet
BIN=$PWD/target/release/envelopefs
DEMO=${DEMO_DIR:-/tmp/envelopefs-demo}
mkdir -p "$DEMO/plain"
export ENVELOPEFS_KEYSTORE=$DEMO/keystore
# A demo passphrase in a file; real use: a prompt, or --passphrase-file you keep safe.
[ -f "$DEMO/passphrase" ] || { head -c 24 /dev/urandom | base64 > "$DEMO/passphrase"; chmod 600 "$DEMO/passphrase"; }
export ENVELOPEFS_PASSPHRASE_FILE=$DEMO/passphrase
if grep -qs " $DEMO/plain " /proc/self/mountinfo; then "$BIN" umount "$DEMO/plain"; fi
[ -f "$DEMO/cipher/envelopefs.conf" ] || "$BIN" init "$DEMO/cipher"
"$BIN" mount "$DEMO/cipher" "$DEMO/plain" --log-file "$DEMO/daemon.log"
echo "Hello from envelopefs, $(date)" > "$DEMO/plain/hello.txt"
mkdir -p "$DEMO/plain/docs" && seq 1 10000 > "$DEMO/plain/docs/numbers.txt"
echo
echo "Mounted: $DEMO/plain (plaintext) <- $DEMO/cipher (ciphertext)"
echo "  cat $DEMO/plain/hello.txt        # plaintext through the mount"
echo "  xxd $DEMO/cipher/hello.txt | head # what is on disk"
echo "  ENVELOPEFS_KEYSTORE=$DEMO/keystore $BIN info $DEMO/cipher"
echo "  $BIN umount $DEMO/plain           # unmount"
