//! `envelopefs completions SHELL` and `envelopefs man DIR`: the shell
//! completion scripts and man pages a package installs, made from the same
//! clap tree the command line parses with, so they never drift from it.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use super::Failure;

/// Writes the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = super::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "envelopefs", &mut script);
    write_stdout(&script)
}

/// The man pages: `envelopefs.1`, then one per subcommand at every depth,
/// named by its path (`envelopefs-kms-create-key.1`), as git names its own.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut root = super::command().disable_help_subcommand(true);
    root.build();
    let mut out = Vec::new();
    collect(&root, &mut out);
    out
}

fn collect(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    // Rendering into memory cannot fail.
    let _ = man.render(&mut page);
    out.push((man.get_filename(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

/// Writes the man pages into `dir` (made if missing), replacing older ones.
pub fn man(dir: &Path) -> Result<(), Failure> {
    let io = |source| Failure::Io {
        what: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let fd = crate::sys::open_dir_path(dir).map_err(io)?;
    for (name, page) in pages() {
        crate::sys::write_new_file(
            fd.as_fd(),
            name.as_ref(),
            &page,
            0o644,
            crate::sys::Placement::Replace,
        )
        .map_err(io)?;
    }
    Ok(())
}

/// Stdout for a script: a reader that went away ends the command quietly.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::stdout("cannot write the script", e))
}
