//! README's asymmetric-key example, run as written in a scratch directory
//! with the test's key store: the signature it makes must verify with
//! openssl, and a changed release must not.

use std::process::Command;

use crate::common::*;
use crate::support::have_openssl;

/// The shell lines of the README block marked `<!-- readme-test: NAME -->`.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let marker = format!("<!-- readme-test: {name} -->");
    let rest = &readme[readme.find(&marker).expect("the block's marker")..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let len = rest[start..].find("```").expect("the block's end");
    rest[start..start + len].to_owned()
}

/// Runs `script` under bash -e in the test's directory, with `envelopefs`
/// first on PATH and the test's key store; returns (success, stdout+stderr).
fn run_block(env: &Env, script: &str) -> (bool, String) {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_envelopefs"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let c = env.cmd();
    let mut sh = Command::new("bash");
    sh.arg("-euo").arg("pipefail").arg("-c").arg(script);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh
        .env("PATH", path)
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn readme_sign_release_example_verifies_with_openssl() {
    if !have_openssl("readme_sign_release_example_verifies_with_openssl") {
        return;
    }
    let env = Env::new();
    std::fs::write(env.path("app-1.0.tar.gz"), pattern(7, 100_000)).unwrap();
    let block = readme_block("sign-release");
    let (ok, text) = run_block(&env, &block);
    assert!(ok, "the README block failed:\n{text}");
    assert!(text.contains("Verified OK"), "{text}");
    // The oracle can say no: the same check over a changed release fails.
    let mut changed = pattern(7, 100_000);
    changed[5] ^= 1;
    std::fs::write(env.path("app-1.0.tar.gz"), changed).unwrap();
    let last = block.lines().last().unwrap();
    let (ok, text) = run_block(&env, last);
    assert!(!ok, "a changed release verified:\n{text}");
    assert!(text.contains("Verification failure"), "{text}");
}
