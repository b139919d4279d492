//! Passphrases from a program (`--extpass`), from piped standard input
//! (`--passphrase-file -`, or no terminal), and from systemd credentials.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::*;

const PASS: &str = "test passphrase";
const PASSPHRASE_EXIT: i32 = 24;
const WRONG_PASSPHRASE_EXIT: i32 = 12;

/// An environment whose store exists, and a command with no passphrase source
/// of its own (no file, no credential, standard input /dev/null).
fn store() -> Env {
    let env = Env::new();
    env.init("c0", &[]);
    env
}

fn bare(env: &Env) -> Command {
    let mut c = env.cmd();
    c.env_remove("ENVELOPEFS_PASSPHRASE_FILE")
        .env_remove("ENVELOPEFS_EXTPASS")
        .env_remove("CREDENTIALS_DIRECTORY");
    c
}

fn with_stdin(mut c: Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    bounded(60, move || child.wait_with_output().unwrap())
}

fn run(mut c: Command) -> Output {
    bounded(60, move || c.output().unwrap())
}

/// A failure is one line on stderr with the expected exit code, and the
/// passphrase never appears in it.
fn fails_with(out: &Output, code: i32, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!err.contains(PASS), "the passphrase leaked: {err}");
    assert!(
        !err.contains("passphrase: passphrase:"),
        "said twice: {err}"
    );
    err
}

fn lists_keys(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alias/envelopefs/default"));
}

#[test]
fn extpass_output_opens_the_store_for_a_mount() {
    if !need_root("extpass_output_opens_the_store_for_a_mount") {
        return;
    }
    let env = Env::new();
    let c = env.init("c", &[]);
    let cat = format!("cat {}", env.path("pass").display());
    // A wrong file as well: --extpass takes precedence over it.
    let m = env.mount_env(
        &c,
        "m",
        &["--extpass", &cat],
        &[("ENVELOPEFS_PASSPHRASE_FILE", "/nonexistent/pass")],
    );
    std::fs::write(m.p("f"), b"through extpass").unwrap();
    assert_eq!(std::fs::read(m.p("f")).unwrap(), b"through extpass");
}

#[test]
fn extpass_runs_without_a_shell_one_argument_per_flag() {
    let env = store();
    // Given once: split at spaces.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass"])
        .arg(format!("cat {}", env.path("pass").display()));
    lists_keys(&run(c));
    // Given several times: one argument each, nothing interpreted by a shell.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"]).args([
        "--extpass",
        "printf",
        "--extpass",
        "%s",
        "--extpass",
        PASS,
    ]);
    lists_keys(&run(c));
    // The environment variable is the same as one flag.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"]).env(
        "ENVELOPEFS_EXTPASS",
        format!("cat {}", env.path("pass").display()),
    );
    lists_keys(&run(c));
    // A shell's syntax is data: `;` does not start a second command.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "echo test;passphrase"]);
    fails_with(&run(c), WRONG_PASSPHRASE_EXIT, "");
}

#[test]
fn extpass_failures_are_one_line_errors() {
    let env = store();
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "false"]);
    fails_with(&run(c), PASSPHRASE_EXIT, "--extpass program false failed");
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "/nonexistent/askpass"]);
    fails_with(
        &run(c),
        PASSPHRASE_EXIT,
        "cannot run --extpass program /nonexistent/askpass",
    );
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "true"]);
    fails_with(&run(c), PASSPHRASE_EXIT, "is empty");
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "echo wrong"]);
    fails_with(&run(c), WRONG_PASSPHRASE_EXIT, "");
    // A program that leaves a process behind holding its output (an agent)
    // does not keep the command waiting: what it wrote before it exited is
    // the passphrase.
    let mut c = bare(&env);
    c.args([
        "kms",
        "list-aliases",
        "--extpass",
        "sh",
        "--extpass=-c",
        "--extpass",
    ])
    .arg(format!("echo '{PASS}'; sleep 30 2>/dev/null &"));
    let t0 = std::time::Instant::now();
    lists_keys(&run(c));
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
    // A program that never stops writing is cut off, not read into memory.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--extpass", "yes"]);
    fails_with(&run(c), PASSPHRASE_EXIT, "not a passphrase");
}

#[test]
fn a_passphrase_on_piped_standard_input() {
    let env = store();
    // Named: `--passphrase-file -`.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--passphrase-file", "-"]);
    lists_keys(&with_stdin(c, format!("{PASS}\n").as_bytes()));
    // Not named, no terminal: standard input, as gocryptfs reads it.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"]);
    lists_keys(&with_stdin(c, PASS.as_bytes()));
    // A wrong one is refused as wrong.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases", "--passphrase-file", "-"]);
    fails_with(&with_stdin(c, b"wrong\n"), WRONG_PASSPHRASE_EXIT, "");
    // Nothing at all: says where a passphrase can come from.
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"]);
    fails_with(&run(c), PASSPHRASE_EXIT, "--extpass");
}

#[test]
fn a_new_store_takes_its_passphrase_from_stdin_once() {
    let env = Env::new();
    let mut c = bare(&env);
    c.args([
        "init",
        env.path("c").to_str().unwrap(),
        "--passphrase-file",
        "-",
    ]);
    let out = with_stdin(c, format!("{PASS}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The store opens with the passphrase that came through the pipe.
    env.run_ok(&["kms", "list-aliases"]);
}

#[test]
fn a_systemd_credential_is_the_passphrase() {
    use std::os::unix::fs::PermissionsExt;
    let env = store();
    let creds = env.path("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("passphrase"), PASS).unwrap();
    std::fs::set_permissions(
        creds.join("passphrase"),
        std::fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"])
        .env("CREDENTIALS_DIRECTORY", &creds);
    lists_keys(&run(c));
    // A file named on the command line wins over the credential.
    std::fs::set_permissions(
        creds.join("passphrase"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(creds.join("passphrase"), "wrong").unwrap();
    let mut c = env.cmd();
    c.args(["kms", "list-aliases"])
        .env("CREDENTIALS_DIRECTORY", &creds);
    lists_keys(&run(c));
    // A credentials directory without our credential is not a source.
    std::fs::remove_file(creds.join("passphrase")).unwrap();
    let mut c = bare(&env);
    c.args(["kms", "list-aliases"])
        .env("CREDENTIALS_DIRECTORY", &creds);
    fails_with(&run(c), PASSPHRASE_EXIT, "no terminal");
}
