//! Where a passphrase comes from, first match wins: a program (`--extpass`),
//! a file (`--passphrase-file`, `ENVELOPEFS_PASSPHRASE_FILE`; `-` is standard
//! input), a systemd credential (`$CREDENTIALS_DIRECTORY/passphrase`), the
//! terminal, or standard input when it is not a terminal.

use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::KmsError;

/// The most a passphrase source may yield: a passphrase is a line, and a
/// program or pipe that goes on writing is an error, not a secret.
const MAX_PASSPHRASE_BYTES: u64 = 64 * 1024;

/// The name of the passphrase credential systemd's `LoadCredential=` exposes
/// in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "passphrase";

#[derive(Clone, Debug, Default)]
pub struct PassphraseSource {
    /// `--passphrase-file`; `-` is standard input.
    pub file: Option<PathBuf>,
    /// `--extpass`: a program and its arguments, run without a shell.
    pub program: Vec<OsString>,
    /// Whether systemd's passphrase credential applies (the key store's
    /// passphrase; not a backup's or a new one).
    pub credential: bool,
}

/// One place a passphrase is read from, decided before anything is read.
enum Origin<'a> {
    Program(&'a [OsString]),
    File(&'a Path),
    Stdin,
    /// Standard input because it is not a terminal and nothing else was named.
    PipedStdin,
    Credential(PathBuf),
    Terminal,
}

/// A passphrase file is a secret: say so when group or others can read it
/// (a pipe such as `<(pass show x)` is not a file and is not checked).
fn warn_if_others_read(p: &Path, md: &std::fs::Metadata) {
    let mode = md.permissions().mode() & 0o7777;
    if md.is_file() && mode & 0o044 != 0 {
        eprintln!(
            "envelopefs: warning: passphrase file {} is readable by group or others (mode {mode:04o}): chmod 600 it",
            p.display()
        );
    }
}

/// The passphrase in `raw`: UTF-8, one trailing newline dropped, not empty.
fn passphrase_of(raw: &[u8], what: &str) -> Result<Zeroizing<String>, KmsError> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| KmsError::Passphrase(format!("the passphrase from {what} is not UTF-8")))?;
    // One trailing newline is the file's, not the passphrase's.
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.is_empty() {
        return Err(KmsError::Passphrase(format!(
            "the passphrase from {what} is empty"
        )));
    }
    Ok(Zeroizing::new(s.to_owned()))
}

/// Everything `r` yields, capped, into a buffer sized up front (a growing
/// buffer would leave copies of the secret behind).
fn read_capped(r: impl Read, size_hint: u64, what: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let cap = MAX_PASSPHRASE_BYTES;
    let mut raw = Zeroizing::new(Vec::with_capacity(size_hint.min(cap) as usize + 1));
    r.take(cap + 1).read_to_end(&mut raw).map_err(|e| {
        KmsError::Passphrase(format!("cannot read the passphrase from {what}: {e}"))
    })?;
    if raw.len() as u64 > cap {
        return Err(KmsError::Passphrase(format!(
            "{what} gave more than {cap} bytes: not a passphrase"
        )));
    }
    Ok(raw)
}

fn from_file(p: &Path) -> Result<Zeroizing<String>, KmsError> {
    let what = format!("passphrase file {}", p.display());
    let cannot = |e| KmsError::Passphrase(format!("cannot read {what}: {e}"));
    let f = std::fs::File::open(p).map_err(cannot)?;
    let md = f.metadata().map_err(cannot)?;
    warn_if_others_read(p, &md);
    passphrase_of(&read_capped(f, md.len(), &what)?, &what)
}

fn from_stdin() -> Result<Zeroizing<String>, KmsError> {
    let what = "standard input";
    passphrase_of(&read_capped(std::io::stdin().lock(), 256, what)?, what)
}

/// How long the output of an `--extpass` program may stay open after the
/// program exited: something it started in the background may hold it.
const EXTPASS_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything a program's output yields, capped, read on a thread of its own
/// into a buffer sized up front (no reallocation leaves copies behind).
struct OutputReader {
    buf: std::sync::Arc<std::sync::Mutex<Zeroizing<Vec<u8>>>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl OutputReader {
    fn start(mut out: impl Read + Send + 'static) -> Self {
        let cap = MAX_PASSPHRASE_BYTES as usize + 1;
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Zeroizing::new(Vec::with_capacity(
            cap,
        ))));
        let (tx, done) = std::sync::mpsc::channel();
        let shared = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = Zeroizing::new([0u8; 4096]);
            let r = loop {
                match out.read(&mut chunk[..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        let Ok(mut b) = shared.lock() else {
                            break Ok(());
                        };
                        let room = cap - b.len();
                        b.extend_from_slice(&chunk[..n.min(room)]);
                        if b.len() == cap {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let _ = tx.send(r);
        });
        OutputReader { buf, done }
    }

    /// What was read, once the output ended or `wait` passed.
    fn finish(self, wait: std::time::Duration, what: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if let Ok(Err(e)) = self.done.recv_timeout(wait) {
            return Err(KmsError::Passphrase(format!(
                "cannot read the passphrase from {what}: {e}"
            )));
        }
        let b = self
            .buf
            .lock()
            .map_err(|_| KmsError::Passphrase(format!("cannot read the passphrase from {what}")))?;
        if b.len() as u64 > MAX_PASSPHRASE_BYTES {
            return Err(KmsError::Passphrase(format!(
                "{what} gave more than {MAX_PASSPHRASE_BYTES} bytes: not a passphrase"
            )));
        }
        let mut raw = Zeroizing::new(Vec::with_capacity(b.len()));
        raw.extend_from_slice(&b);
        Ok(raw)
    }
}

/// Runs the program without a shell; its standard output is the passphrase,
/// its standard error and the terminal stay the user's (an askpass dialog or
/// `systemd-ask-password` prompts there). The passphrase is what it wrote by
/// the time it exited: a background process it left holding its output
/// (an agent) does not keep us waiting.
fn from_program(argv: &[OsString]) -> Result<Zeroizing<String>, KmsError> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(KmsError::Passphrase("--extpass names no program".into()));
    };
    let what = format!("--extpass program {}", Path::new(prog).display());
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| KmsError::Passphrase(format!("cannot run {what}: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(KmsError::Passphrase(format!("no output from {what}")));
    };
    let reader = OutputReader::start(stdout);
    // A program that goes on writing is stopped once the cap is reached (its
    // output is closed then, so it ends on SIGPIPE).
    let status = child
        .wait()
        .map_err(|e| KmsError::Passphrase(format!("{what}: {e}")))?;
    let raw = reader.finish(EXTPASS_DRAIN, &what)?;
    if !status.success() {
        return Err(KmsError::Passphrase(format!("{what} failed ({status})")));
    }
    passphrase_of(&raw, &what)
}

fn prompt(text: &str) -> Result<Zeroizing<String>, KmsError> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| KmsError::Passphrase(e.to_string()))
}

impl PassphraseSource {
    /// The passphrase from a file, with no other source.
    pub fn file(p: Option<PathBuf>) -> Self {
        PassphraseSource {
            file: p,
            ..Self::default()
        }
    }

    fn origin(&self) -> Origin<'_> {
        if !self.program.is_empty() {
            return Origin::Program(&self.program);
        }
        match &self.file {
            Some(p) if p.as_os_str() == "-" => return Origin::Stdin,
            Some(p) => return Origin::File(p),
            None => {}
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|_| self.credential) {
            let cred = Path::new(&dir).join(CREDENTIAL_NAME);
            if cred.exists() {
                return Origin::Credential(cred);
            }
        }
        if std::io::stdin().is_terminal() {
            Origin::Terminal
        } else {
            Origin::PipedStdin
        }
    }

    /// The passphrase of an existing store.
    pub fn existing(&self) -> Result<Zeroizing<String>, KmsError> {
        match self.origin() {
            Origin::Program(argv) => from_program(argv),
            Origin::File(p) => from_file(p),
            Origin::Credential(p) => from_file(&p),
            Origin::Stdin => from_stdin(),
            Origin::PipedStdin => from_stdin().map_err(|e| {
                let e = match e {
                    KmsError::Passphrase(why) => why,
                    other => other.to_string(),
                };
                KmsError::Passphrase(format!(
                    "{e}, and there is no terminal to ask: give --passphrase-file FILE (or -), --extpass PROGRAM or ENVELOPEFS_PASSPHRASE_FILE"
                ))
            }),
            Origin::Terminal => prompt("Key store passphrase: "),
        }
    }

    /// A new passphrase (asked twice on a terminal, read once elsewhere).
    pub fn new_passphrase(&self) -> Result<Zeroizing<String>, KmsError> {
        if !matches!(self.origin(), Origin::Terminal) {
            return self.existing();
        }
        let a = prompt("New key store passphrase: ")?;
        if a.is_empty() {
            return Err(KmsError::Passphrase("empty passphrase".into()));
        }
        let b = prompt("Repeat passphrase: ")?;
        if *a != *b {
            return Err(KmsError::Passphrase("the passphrases differ".into()));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped_and_empty_is_refused() {
        assert_eq!(&*passphrase_of(b"abc\n", "t").unwrap(), "abc");
        assert_eq!(&*passphrase_of(b"abc\r\n", "t").unwrap(), "abc");
        assert_eq!(&*passphrase_of(b"abc\n\n", "t").unwrap(), "abc\n");
        assert!(passphrase_of(b"\n", "t").is_err());
        assert!(passphrase_of(b"\xff", "t").is_err());
    }

    #[test]
    fn a_source_that_goes_on_writing_is_refused() {
        let big = vec![b'a'; MAX_PASSPHRASE_BYTES as usize + 1];
        assert!(read_capped(&big[..], 0, "t").is_err());
        let ok = vec![b'a'; MAX_PASSPHRASE_BYTES as usize];
        assert_eq!(read_capped(&ok[..], 0, "t").unwrap().len(), ok.len());
    }

    #[test]
    fn a_program_is_run_without_a_shell() {
        let argv: Vec<OsString> = ["echo", "a;b $HOME"].iter().map(OsString::from).collect();
        assert_eq!(&*from_program(&argv).unwrap(), "a;b $HOME");
        let fails: Vec<OsString> = vec!["false".into()];
        let e = from_program(&fails).unwrap_err().to_string();
        assert!(e.contains("failed"), "{e}");
    }
}
