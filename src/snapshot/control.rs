//! The control socket of a mount daemon: a snapshot asks it to hold every
//! change (writes and namespace changes) while it copies the backing files.
//! Protocol, one line each: client `HOLD`, daemon `HELD` once in-flight
//! changes are done; client `RELEASE` (or disconnect), daemon `RELEASED`.
//! The socket lives in a 0700 runtime directory of the daemon's user.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The socket of the daemon serving `cipherdir` (canonical path).
pub fn socket_path(cipherdir: &Path) -> PathBuf {
    let base = match std::env::var_os("XDG_RUNTIME_DIR").filter(|_| crate::sys::geteuid() != 0) {
        Some(d) => PathBuf::from(d).join("envelopefs"),
        None => PathBuf::from("/run/envelopefs"),
    };
    let h = Sha256::digest(cipherdir.as_os_str().as_encoded_bytes());
    let hex: String = h.iter().take(12).map(|b| format!("{b:02x}")).collect();
    base.join(format!("{hex}.sock"))
}

/// Serve hold requests in a background thread; returns the socket path.
pub fn serve(cipherdir: &Path, hold: Arc<parking_lot::RwLock<()>>) -> std::io::Result<PathBuf> {
    let path = socket_path(cipherdir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("envelopefs-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let hold = hold.clone();
                std::thread::spawn(move || handle(conn, &hold));
            }
        })?;
    Ok(path)
}

fn handle(conn: UnixStream, hold: &parking_lot::RwLock<()>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.trim() != "HOLD" {
        let _ = w.write_all(b"ERR expected HOLD\n");
        return;
    }
    let guard = hold.write();
    if w.write_all(b"HELD\n").is_err() {
        return;
    }
    line.clear();
    // Held until RELEASE or the client goes away.
    let _ = r.read_line(&mut line);
    drop(guard);
    let _ = w.write_all(b"RELEASED\n");
}

/// A hold granted by a running daemon; released on drop.
pub struct Hold {
    stream: UnixStream,
}

impl Hold {
    /// Ask the daemon serving `cipherdir` (mounted at `mountpoint`) to hold
    /// changes, after a syncfs of the mount so the kernel's dirty pages reach
    /// it first. `Ok(None)` when no daemon serves that volume.
    pub fn acquire(cipherdir: &Path, mountpoint: Option<&Path>) -> std::io::Result<Option<Hold>> {
        let path = socket_path(cipherdir);
        let Ok(stream) = UnixStream::connect(&path) else {
            return Ok(None);
        };
        if let Some(mp) = mountpoint {
            if let Ok(f) = std::fs::File::open(mp) {
                // SAFETY: syncfs on a valid fd.
                unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
            }
        }
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut w = stream.try_clone()?;
        w.write_all(b"HOLD\n")?;
        let mut r = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim() != "HELD" {
            return Err(std::io::Error::other(format!(
                "the mount daemon answered {line:?}"
            )));
        }
        Ok(Some(Hold { stream }))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.stream.write_all(b"RELEASE\n");
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        let _ = BufReader::new(&self.stream).read_line(&mut line);
    }
}
