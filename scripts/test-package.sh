#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg -i, checks what it holds,
# mounts a volume from an fstab line with `mount -T` through the installed
# binary (as a user of the package would), verifies the installed systemd
# unit, and purges the package again, also when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [ "${CI:-}" = true ]; then echo "test-package: $1 (CI=true: a missing prerequisite fails)" >&2; exit 1; fi
  echo "SKIPPED: test-package: $1"; exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (dpkg -i, mount)"
[ -e /dev/fuse ] || skip "no /dev/fuse"
command -v dpkg >/dev/null || skip "not a Debian system (no dpkg)"
if dpkg -s envelopefs >/dev/null 2>&1; then
  echo "test-package: an envelopefs package is already installed; not touching it" >&2; exit 1
fi

deb=$(scripts/package.sh)
T=$(mktemp -d /tmp/efs-pkg.XXXXXX)
cleanup() {
  umount -l "$T/plain" 2>/dev/null || true
  dpkg --purge envelopefs >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "test-package: $*" >&2; exit 1; }

dpkg -i "$deb" >/dev/null
dpkg -L envelopefs > "$T/list"
for f in /usr/bin/envelopefs \
         /usr/share/man/man1/envelopefs.1.gz /usr/share/man/man1/envelopefs-mount.1.gz \
         /usr/share/man/man1/envelopefs-kms-create-key.1.gz \
         /usr/share/bash-completion/completions/envelopefs \
         /usr/share/zsh/vendor-completions/_envelopefs \
         /usr/share/fish/vendor_completions.d/envelopefs.fish \
         /usr/lib/systemd/system/envelopefs@.service /usr/lib/systemd/system/envelopefs-agent.service \
         /usr/share/doc/envelopefs/README.md /usr/share/doc/envelopefs/FORMAT.md \
         /usr/share/doc/envelopefs/copyright /usr/share/doc/envelopefs/examples/fstab.example; do
  grep -qx "$f" "$T/list" || fail "dpkg -L envelopefs lacks $f"
  [ -e "$f" ] || fail "$f is listed but not installed"
done
zcat /usr/share/man/man1/envelopefs.1.gz | grep -q '^\.TH' || fail "envelopefs.1 is not a man page"
bash -c 'source /usr/share/bash-completion/completions/envelopefs && declare -F _envelopefs >/dev/null' \
  || fail "the bash completion does not define _envelopefs"
/usr/bin/envelopefs --version | grep -q '^envelopefs ' || fail "envelopefs --version"

# A volume mounted from an fstab line by mount(8), which finds the installed
# binary through mount.fuse3 (its PATH has /usr/bin).
printf 'package test passphrase\n' > "$T/pass"; chmod 600 "$T/pass"
mkdir "$T/plain"
/usr/bin/envelopefs init "$T/cipher" --keystore "$T/ks" --passphrase-file "$T/pass" >/dev/null 2>&1
echo "$T/cipher $T/plain fuse.envelopefs keystore=$T/ks,passfile=$T/pass,log_file=$T/daemon.log 0 0" > "$T/fstab"
timeout 60 mount -T "$T/fstab" "$T/plain"
[ "$(findmnt -no FSTYPE,SOURCE "$T/plain")" = "fuse.envelopefs $T/cipher" ] || fail "findmnt: $(findmnt -no FSTYPE,SOURCE "$T/plain")"
# The daemon serving the mount (found by its command line; no procps needed).
daemon_exe=
for d in /proc/[0-9]*; do
  if { tr '\0' ' ' < "$d/cmdline"; } 2>/dev/null | grep -q "^envelopefs $T/cipher $T/plain "; then
    daemon_exe=$(readlink "$d/exe"); break
  fi
done
[ "$daemon_exe" = /usr/bin/envelopefs ] || fail "the daemon is '$daemon_exe', not the installed binary"
echo "through the package" > "$T/plain/f"
timeout 60 umount "$T/plain"
timeout 60 mount -T "$T/fstab" "$T/plain"
[ "$(cat "$T/plain/f")" = "through the package" ] || fail "the file did not survive a remount"
timeout 60 umount "$T/plain"

if command -v systemd-analyze >/dev/null; then
  err=$(systemd-analyze verify /usr/lib/systemd/system/envelopefs@pkgtest.service 2>&1) || fail "systemd-analyze verify: $err"
  [ -z "$err" ] || fail "systemd-analyze verify complains: $err"
elif [ "${CI:-}" = true ]; then
  fail "no systemd-analyze (CI=true: a missing prerequisite fails)"
else
  echo "SKIPPED: test-package: systemd-analyze verify (no systemd-analyze)"
fi

dpkg --purge envelopefs >/dev/null
[ ! -e /usr/bin/envelopefs ] || fail "/usr/bin/envelopefs is still there after dpkg --purge"
echo "test-package: built $deb, installed, mounted from fstab, verified, purged"
