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
