//! The command line as a user meets it: help text for every argument,
//! `--version`, shell completions, man pages, and one JSON naming style.
#![allow(clippy::disallowed_methods)]

#[path = "common/mod.rs"]
mod common;

use common::*;

/// Every subcommand at every depth, with its path (`envelopefs kms create-key`).
fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    // clap's own `help` subcommand documents itself.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let p = format!("{path} {}", sub.get_name());
        out.push((p.clone(), sub.clone()));
        walk(sub, &p, out);
    }
}

fn all_commands() -> Vec<(String, clap::Command)> {
    let mut root = envelopefs::cli::command();
    root.build();
    let mut all = vec![("envelopefs".to_owned(), root.clone())];
    walk(&root, "envelopefs", &mut all);
    all
}

#[test]
fn help_has_a_line_for_every_subcommand_and_argument() {
    let mut blank = Vec::new();
    for (path, cmd) in all_commands() {
        if path != "envelopefs" && cmd.get_about().is_none() {
            blank.push(format!("{path} (about)"));
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let has = a
                .get_help()
                .map(|h| !h.to_string().trim().is_empty())
                .unwrap_or(false);
            if !has {
                blank.push(format!("{path} {id}"));
            }
        }
    }
    assert!(blank.is_empty(), "no help text: {blank:#?}");
}

#[test]
fn version_lists_the_features_built_in() {
    let env = Env::new();
    let out = env.run(&["--version"]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    let v = String::from_utf8_lossy(&out.stdout);
    let line = v.trim_end();
    assert!(
        line.starts_with(&format!(
            "envelopefs {} (features: ",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    assert_eq!(
        line.contains("aws-kms"),
        cfg!(feature = "aws-kms"),
        "{line}"
    );
    assert_eq!(
        line.contains("rustcrypto"),
        cfg!(feature = "rustcrypto"),
        "{line}"
    );
    let aead = if cfg!(feature = "rustcrypto") {
        "AES-256-GCM: RustCrypto aes-gcm"
    } else {
        "AES-256-GCM: ring"
    };
    assert!(line.contains(aead), "{line}");
}

/// The subcommands a man page is written for: all but clap's `help`.
fn documented_commands() -> Vec<String> {
    all_commands()
        .into_iter()
        .filter(|(_, c)| !c.is_hide_set())
        .map(|(p, _)| p.replace(' ', "-"))
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let env = Env::new();
    let script = env.run_ok(&["completions", "bash"]);
    assert!(script.contains("_envelopefs()"), "{script}");
    std::fs::write(env.path("envelopefs.bash"), &script).unwrap();
    // What bash does on `envelopefs km<TAB>` and `envelopefs kms describe-key --k<TAB>`.
    let probe = format!(
        "set -e; source {}; declare -F _envelopefs >/dev/null
         COMP_WORDS=(envelopefs km); COMP_CWORD=1; _envelopefs envelopefs km envelopefs
         echo \"1:${{COMPREPLY[*]}}\"
         COMP_WORDS=(envelopefs kms describe-key --k); COMP_CWORD=3
         _envelopefs envelopefs --k describe-key
         echo \"2:${{COMPREPLY[*]}}\"",
        env.path("envelopefs.bash").display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1:kms\n"), "{text}");
    let flags = text.lines().find_map(|l| l.strip_prefix("2:")).unwrap();
    assert!(flags.split_whitespace().any(|w| w == "--key-id"), "{text}");
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let env = Env::new();
    for shell in ["zsh", "fish"] {
        let script = env.run_ok(&["completions", shell]);
        for name in [
            "init",
            "mount",
            "umount",
            "snapshot",
            "kms",
            "create-key",
            "completions",
        ] {
            assert!(script.contains(name), "{shell} script lacks {name}");
        }
    }
    let out = env.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// A completion script written to a reader that went away ends quietly
/// (141, nothing on stderr), as the other printing commands do; a full
/// standard output is an I/O error (23) that says what it could not write.
#[test]
fn completions_to_a_closed_or_full_stdout() {
    let env = Env::new();
    let (rd, wr) = std::io::pipe().unwrap();
    drop(rd);
    let out = env
        .cmd()
        .args(["completions", "bash"])
        .stdout(wr)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.is_empty(), "{err}");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .cmd()
        .args(["completions", "bash"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "{err}");
    assert_eq!(
        err,
        "envelopefs: cannot write the script: No space left on device (os error 28)\n"
    );
}

#[test]
fn man_writes_a_page_for_every_subcommand() {
    let env = Env::new();
    let dir = env.path("man/man1");
    env.run_ok(&["man", dir.to_str().unwrap()]);
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = documented_commands()
        .iter()
        .map(|p| format!("{p}.1"))
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    assert!(written.contains(&"envelopefs-kms-create-key.1".to_owned()));
    assert!(written.contains(&"envelopefs-snapshot-copy.1".to_owned()));
    let page = std::fs::read_to_string(dir.join("envelopefs.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH envelopefs 1"),
        "{page}"
    );
    // A second run replaces the pages (a package build may run it twice).
    // From a directory holding `man`, `man/man1` is still the subcommand's
    // argument, not the mount(8) form `envelopefs SOURCE MOUNTPOINT`.
    let again = env
        .cmd()
        .current_dir(env.dir.path())
        .args(["man", "man/man1"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), expected.len());
    let groff = std::process::Command::new("groff")
        .args(["-man", "-Tascii", "-P", "-cbou"])
        .arg(dir.join("envelopefs-kms-create-key.1"))
        .output();
    match groff {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("envelopefs-kms-create-key"), "{text}");
            assert!(text.contains("--description"), "{text}");
            assert!(
                text.contains("Create a symmetric customer managed key"),
                "{text}"
            );
        }
        Err(_) => skip("groff rendering", "groff is not installed"),
    }
}

/// Every object key at every depth, with where it was found.
fn keys_of(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{at}.{k}"));
                keys_of(x, &format!("{at}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys_of(x, &format!("{at}[]"), out)),
        _ => {}
    }
}

fn is_pascal(key: &str) -> bool {
    let mut c = key.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase()) && c.all(|x| x.is_ascii_alphanumeric())
}

/// Runs a command with `--output json`; its stdout must be one JSON value.
fn json_of(env: &Env, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "envelopefs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "envelopefs {args:?} printed no JSON ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Unmounts (lazily) a mount made by `envelopefs mount` even if the test fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[test]
fn json_output_uses_pascal_case_keys_everywhere() {
    if !need_root("json_output_uses_pascal_case_keys_everywhere") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let mut results: Vec<(String, serde_json::Value)> = Vec::new();
        let mut run = |args: &[&str], code: i32| {
            let v = json_of(&env, args, code);
            results.push((args[..2].join(" "), v.clone()));
            v
        };
        let (c, m) = (s(&env.path("c")), s(&env.path("m")));
        run(&["init", &c], 0);
        run(&["info", &c], 0);
        std::fs::create_dir(&m).unwrap();
        let _guard = Unmount(m.clone().into());
        let mounted = run(&["mount", &c, &m], 0);
        assert_eq!(mounted["MountPoint"], m.as_str(), "{mounted}");
        assert_eq!(mounted["CipherDir"], c.as_str(), "{mounted}");
        assert!(mounted["Pid"].as_u64().is_some_and(|p| p > 1), "{mounted}");
        std::fs::write(format!("{m}/f"), pattern(1, 10000)).unwrap();
        let snap = s(&env.path("snap"));
        run(&["snapshot", "create", &c, &snap], 0);
        let unmounted = run(&["umount", &m], 0);
        assert_eq!(unmounted["MountPoint"], m.as_str(), "{unmounted}");
        assert!(!is_mounted(std::path::Path::new(&m)));
        run(&["rewrap", &c], 0);
        let key = run(&["kms", "create-key", "--description", "d"], 0);
        let key = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        run(
            &["snapshot", "copy", &c, &s(&env.path("copy")), "--key", &key],
            0,
        );
        let plain = env.path("plain");
        std::fs::create_dir_all(plain.join("d")).unwrap();
        std::fs::write(plain.join("d/x"), "x").unwrap();
        run(&["import", &s(&plain), &s(&env.path("imp"))], 0);
        // A stray entry in the backing directory: fsck reports a problem.
        std::fs::write(format!("{c}/stray-name"), "x").unwrap();
        let r = run(&["fsck", &c], 30);
        assert!(!r["Problems"].as_array().unwrap().is_empty(), "{r}");
        run(&["kms", "describe-key", "--key-id", &key], 0);
        run(&["kms", "list-keys"], 0);
        env.run_ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            "alias/a",
            "--target-key-id",
            &key,
        ]);
        run(&["kms", "list-aliases"], 0);
        let dk = run(
            &[
                "kms",
                "generate-data-key",
                "--key-id",
                &key,
                "--key-spec",
                "AES_256",
                "--encryption-context",
                "a=b",
            ],
            0,
        );
        let blob = dk["CiphertextBlob"].as_str().unwrap().to_owned();
        run(
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob,
                "--encryption-context",
                "a=b",
            ],
            0,
        );
        let enc = run(
            &["kms", "encrypt", "--key-id", &key, "--plaintext", "aGk="],
            0,
        );
        let blob = enc["CiphertextBlob"].as_str().unwrap().to_owned();
        run(
            &[
                "kms",
                "re-encrypt",
                "--ciphertext-blob",
                &blob,
                "--destination-key-id",
                "alias/a",
            ],
            0,
        );
        run(&["kms", "rotate-key-on-demand", "--key-id", &key], 0);
        run(&["kms", "list-key-rotations", "--key-id", &key], 0);
        run(&["kms", "get-key-rotation-status", "--key-id", &key], 0);
        let ext = run(&["kms", "create-key", "--origin", "EXTERNAL"], 0);
        let ext = ext["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        run(&["kms", "get-parameters-for-import", "--key-id", &ext], 0);
        run(
            &[
                "kms",
                "schedule-key-deletion",
                "--key-id",
                &ext,
                "--pending-window-in-days",
                "7",
            ],
            0,
        );
        run(&["kms", "cancel-key-deletion", "--key-id", &ext], 0);
        let mut bad = Vec::new();
        for (cmd, v) in &results {
            let mut keys = Vec::new();
            keys_of(v, cmd, &mut keys);
            assert!(!keys.is_empty(), "{cmd}: {v}");
            bad.extend(
                keys.into_iter()
                    .filter(|k| !is_pascal(k.rsplit('.').next().unwrap())),
            );
        }
        assert!(bad.is_empty(), "keys not in PascalCase: {bad:#?}");
    });
}

#[test]
fn kms_failures_name_the_aws_error_on_stderr_only() {
    let env = Env::new();
    env.run_ok(&["kms", "create-key"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &[
                "kms",
                "describe-key",
                "--key-id",
                "1234abcd-12ab-34cd-56ef-1234567890ab",
            ],
            16,
            "NotFoundException: ",
        ),
        (
            &["kms", "describe-key", "--key-id", "alias/nope"],
            16,
            "NotFoundException: ",
        ),
        (
            &["kms", "decrypt", "--ciphertext-blob", "AAAA"],
            17,
            "InvalidCiphertextException: ",
        ),
        (
            &[
                "kms",
                "schedule-key-deletion",
                "--key-id",
                "alias/envelopefs/default",
                "--pending-window-in-days",
                "3",
            ],
            18,
            "ValidationException: ",
        ),
    ];
    for (args, code, name) in cases {
        for output in ["text", "json"] {
            let mut all = vec!["--output", output];
            all.extend_from_slice(args);
            let out = env.run(&all);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.starts_with(&format!("envelopefs: {name}")),
                "{args:?}: {err}"
            );
        }
    }
}
