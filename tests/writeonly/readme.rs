//! The README's write-only example, run as written: its "# On the reading
//! machine" and "# On the writing machine" parts run in two directories, the
//! writer with no key store and no passphrase at all; between parts the test
//! carries the cipher directory (and recipient.der) as the comments say
//! scp/rsync would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

const MARKER: &str = "<!-- readme-test: write-only -->";

/// The block after the marker in README.md.
fn block() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains(MARKER),
        "README.md has the write-only example"
    );
    let rest = &readme[readme.find(MARKER).unwrap()..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let len = rest[start..].find("```").expect("the block's end");
    rest[start..start + len].to_owned()
}

/// The block's parts: (reading machine?, lines).
fn parts(block: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("# On the ") {
            let reader = rest.starts_with("reading machine");
            assert!(reader || rest.starts_with("writing machine"), "{line}");
            out.push((reader, String::new()));
            continue;
        }
        let (_, text) = out.last_mut().expect("a block starting with # On the ...");
        text.push_str(line);
        text.push('\n');
    }
    out
}

/// Unmounts whatever the block left mounted, even when the test fails.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for m in &self.0 {
            if is_mounted(m) {
                let _ = Command::new(BIN).arg("umount").arg(m).status();
            }
            if is_mounted(m) {
                let c = std::ffi::CString::new(m.to_str().unwrap()).unwrap();
                // SAFETY: valid C string; detach a mount left behind.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

fn run_part(env: &Env, dir: &Path, reader: bool, script: &str) -> Output {
    let bin_dir = Path::new(BIN).parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("bash");
    sh.arg("-euo").arg("pipefail").arg("-c").arg(script);
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    if !reader {
        // Another machine: no key store, no passphrase.
        sh.env("ENVELOPEFS_KEYSTORE", dir.join("no-keystore"))
            .env_remove("ENVELOPEFS_PASSPHRASE_FILE");
    }
    sh.env("PATH", path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `cp -a FROM/NAME TO/` after removing TO/NAME.
fn carry(from: &Path, to: &Path, name: &str) {
    let dst = to.join(name);
    if dst.is_dir() {
        std::fs::remove_dir_all(&dst).unwrap();
    } else if dst.exists() {
        std::fs::remove_file(&dst).unwrap();
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg(from.join(name))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp {name}");
}

#[test]
fn readme_write_only_example_runs_on_two_machines() {
    if !need_fuse("readme_write_only_example_runs_on_two_machines") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let (reader, writer) = (env.path("reader"), env.path("writer"));
        std::fs::create_dir(&reader).unwrap();
        std::fs::create_dir(&writer).unwrap();
        let _unmount = Unmount(vec![reader.join("logs"), writer.join("logs")]);
        let parts = parts(&block());
        assert_eq!(
            parts.iter().map(|p| p.0).collect::<Vec<_>>(),
            [true, false, true],
            "reader, writer, reader"
        );
        let mut outputs = Vec::new();
        for (i, (is_reader, script)) in parts.iter().enumerate() {
            if i > 0 && !is_reader {
                carry(&reader, &writer, "logs.cipher");
                carry(&reader, &writer, "recipient.der");
            } else if i > 0 {
                carry(&writer, &reader, "logs.cipher");
            }
            let dir = if *is_reader { &reader } else { &writer };
            let out = run_part(&env, dir, *is_reader, script);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "part {i} failed:\n{script}\n---\n{text}"
            );
            outputs.push(out);
        }
        let writer_out = String::from_utf8_lossy(&outputs[1].stdout);
        assert_eq!(
            writer_out,
            "boot 1: service started\nboot-2.log\nboot-1.log is sealed\n"
        );
        let writer_err = String::from_utf8_lossy(&outputs[1].stderr);
        assert!(
            writer_err.contains("cat: logs/boot-1.log: Permission denied"),
            "{writer_err}"
        );
        assert_eq!(
            String::from_utf8_lossy(&outputs[2].stdout),
            "boot 1: service started\nboot 2: service started\n"
        );
        // The writer never had a key store.
        assert!(!writer.join("no-keystore").exists());
    });
}
