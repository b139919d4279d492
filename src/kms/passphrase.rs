//! Where a passphrase comes from: `--passphrase-file`, the variable
//! `ENVELOPEFS_PASSPHRASE_FILE`, or a prompt on the terminal.

use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::KmsError;

#[derive(Clone, Debug, Default)]
pub struct PassphraseSource {
    pub file: Option<PathBuf>,
}

/// A passphrase file is a secret: say so when group or others can read it
/// (a pipe such as `<(pass show x)` is not a file and is not checked).
fn warn_if_others_read(p: &std::path::Path, md: &std::fs::Metadata) {
    let mode = md.permissions().mode() & 0o7777;
    if md.is_file() && mode & 0o044 != 0 {
        eprintln!(
            "envelopefs: warning: passphrase file {} is readable by group or others (mode {mode:04o}): chmod 600 it",
            p.display()
        );
    }
}

impl PassphraseSource {
    fn from_file(p: &PathBuf) -> Result<Zeroizing<String>, KmsError> {
        let cannot =
            |e| KmsError::Passphrase(format!("cannot read passphrase file {}: {e}", p.display()));
        let mut f = std::fs::File::open(p).map_err(cannot)?;
        let md = f.metadata().map_err(cannot)?;
        warn_if_others_read(p, &md);
        // Sized up front: a growing buffer would leave copies behind.
        let mut raw = Zeroizing::new(Vec::with_capacity(md.len().min(1 << 16) as usize + 1));
        f.read_to_end(&mut raw).map_err(cannot)?;
        let s = std::str::from_utf8(&raw)
            .map_err(|_| KmsError::Passphrase(format!("{} is not UTF-8", p.display())))?;
        // One trailing newline is the file's, not the passphrase's.
        let s = s.strip_suffix('\n').unwrap_or(s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        if s.is_empty() {
            return Err(KmsError::Passphrase(format!("{} is empty", p.display())));
        }
        Ok(Zeroizing::new(s.to_owned()))
    }

    fn prompt(text: &str) -> Result<Zeroizing<String>, KmsError> {
        if !std::io::stdin().is_terminal() {
            return Err(KmsError::Passphrase(
                "no terminal to ask for the passphrase: use --passphrase-file or ENVELOPEFS_PASSPHRASE_FILE".into(),
            ));
        }
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|e| KmsError::Passphrase(e.to_string()))
    }

    /// The passphrase of an existing store.
    pub fn existing(&self) -> Result<Zeroizing<String>, KmsError> {
        match &self.file {
            Some(p) => Self::from_file(p),
            None => Self::prompt("Key store passphrase: "),
        }
    }

    /// A new passphrase (asked twice on a terminal).
    pub fn new_passphrase(&self) -> Result<Zeroizing<String>, KmsError> {
        if let Some(p) = &self.file {
            return Self::from_file(p);
        }
        let a = Self::prompt("New key store passphrase: ")?;
        if a.is_empty() {
            return Err(KmsError::Passphrase("empty passphrase".into()));
        }
        let b = Self::prompt("Repeat passphrase: ")?;
        if *a != *b {
            return Err(KmsError::Passphrase("the passphrases differ".into()));
        }
        Ok(a)
    }
}
