//! README's "On a server" blocks, run as written, as root, in a private mount
//! namespace: /etc, /root and /usr/bin are overlays (writes stay in the test's
//! directory; /usr/bin gains `envelopefs` and the `systemctl` and `pass`
//! shims), /srv and /var/log are tmpfs. Nothing outside the test's directory
//! changes, and the namespace ends with the blocks' own unmounts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const BLOCKS: [&str; 3] = ["fstab", "systemd", "extpass"];

/// The shell lines of the README block marked `<!-- readme-test: NAME -->`.
fn readme_block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->");
    let rest = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let len = rest[start..].find("```").expect("the block's end");
    let block = rest[start..start + len].to_owned();
    assert!(
        block.contains("envelopefs") || block.contains("mount"),
        "{block}"
    );
    block
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The namespace's setup, then each block under an `== NAME` line.
fn script(t: &Path, blocks: &[(&str, String)]) -> String {
    let t = t.display();
    let mut s = format!(
        "set -e
cleanup() {{
  umount -l /srv/plain 2>/dev/null || true
  for p in {t}/state/*.pid; do [ -f \"$p\" ] && kill \"$(cat \"$p\")\" 2>/dev/null; done
  true
}}
trap cleanup EXIT
mount -t tmpfs tmpfs /srv
mount -t tmpfs tmpfs /var/log
for d in etc root; do
  mkdir -p {t}/ov/$d-up {t}/ov/$d-work
  mount -t overlay overlay -o lowerdir=/$d,upperdir={t}/ov/$d-up,workdir={t}/ov/$d-work /$d
done
mount -t overlay overlay -o lowerdir={t}/bin:/usr/bin /usr/bin
mkdir -p /etc/systemd/system
export HOME=/root SHIM_STATE={t}/state
unset ENVELOPEFS_KEYSTORE ENVELOPEFS_PASSPHRASE_FILE ENVELOPEFS_EXTPASS XDG_DATA_HOME XDG_STATE_HOME
cd {}
",
        repo().display()
    );
    for (name, block) in blocks {
        s.push_str(&format!("echo '== {name}'\n{block}\n"));
    }
    s
}

#[test]
fn readme_server_blocks_run_as_written() {
    if !need_root("readme_server_blocks_run_as_written") {
        return;
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<(&str, String)> = BLOCKS
        .iter()
        .map(|n| (*n, readme_block(&readme, n)))
        .collect();
    let env = Env::new();
    let t = env.path("ns");
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    copy_executable(std::path::Path::new(BIN), &bin.join("envelopefs"));
    std::fs::copy(
        repo().join("tests/system/readme/systemctl"),
        bin.join("systemctl"),
    )
    .unwrap();
    std::fs::write(
        bin.join("pass"),
        "#!/bin/sh\n[ \"$1 $2\" = 'show envelopefs/plain' ] && exec cat /etc/envelopefs/plain.pass\nexit 1\n",
    )
    .unwrap();
    for f in ["systemctl", "pass"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = script(&t, &blocks);
    let out = bounded(240, move || {
        Command::new("timeout")
            .args([
                "200",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "bash",
                "-c",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(t.join("state/plain.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nservice log:\n{log}",
        out.status.code()
    );
    for name in BLOCKS {
        assert!(stdout.contains(&format!("== {name}\n")), "{stdout}");
    }
    // The fstab mount and the systemd unit's mount, as findmnt sees them.
    assert_eq!(
        stdout.matches("fuse.envelopefs /srv/cipher\n").count(),
        2,
        "{stdout}\n{stderr}"
    );
}
