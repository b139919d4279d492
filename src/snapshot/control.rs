//! The control socket of a mount daemon: a snapshot asks it to hold every
//! change (writes and namespace changes) while it copies the backing files.
//! Protocol, one line each: client `HOLD`, daemon `HELD` once in-flight
//! changes are done; while it holds, the client sends `ALIVE` every
//! `HEARTBEAT`; client `RELEASE`, daemon `RELEASED`. A holder that
//! disconnects, sends no complete line for `HOLDER_TIMEOUT`, or still holds when the
//! mount's `--max-hold` has passed loses the hold: the daemon logs it and,
//! if the holder is still there, answers `DROPPED <why>` and hangs up (so a
//! snapshot can never freeze the mount for longer than that). Client
//! `NODES`, daemon `NODES <n>`: how many nodes the kernel holds lookups of
//! (tests check it returns to about zero once the kernel's caches drop).
//! The socket lives in a 0700 runtime directory of the daemon's user and
//! is named after the cipher directory's device and inode.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// How often a holder says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A holder silent this long loses its hold.
pub const HOLDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket of the daemon serving `cipherdir`, named after the
/// directory's identity (device and inode), not its path: a bind mount,
/// another path or a rename reaches the same daemon and its hold.
pub fn socket_path(cipherdir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let base = match std::env::var_os("XDG_RUNTIME_DIR").filter(|_| crate::sys::geteuid() != 0) {
        Some(d) => PathBuf::from(d).join("envelopefs"),
        None => PathBuf::from("/run/envelopefs"),
    };
    let id = match std::fs::metadata(cipherdir) {
        Ok(md) => format!("dev {} ino {}", md.dev(), md.ino()),
        Err(_) => cipherdir.display().to_string(),
    };
    let h = Sha256::digest(id.as_bytes());
    let hex: String = h.iter().take(12).map(|b| format!("{b:02x}")).collect();
    base.join(format!("{hex}.sock"))
}

/// Serve hold requests in a background thread; returns the socket path.
/// `max_hold` bounds every hold (`mount --max-hold`).
pub fn serve(
    cipherdir: &Path,
    hold: Arc<parking_lot::RwLock<()>>,
    max_hold: Option<Duration>,
) -> std::io::Result<PathBuf> {
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
                std::thread::spawn(move || handle(conn, &hold, max_hold));
            }
        })?;
    Ok(path)
}

/// How a hold ended.
enum Ended {
    Released,
    Disconnected,
    Silent,
    MaxHold(Duration),
}

fn handle(conn: UnixStream, hold: &parking_lot::RwLock<()>, max_hold: Option<Duration>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let _ = conn.set_read_timeout(Some(HOLDER_TIMEOUT));
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let read = r.read_line(&mut line);
    if read.is_ok() && line.trim() == "NODES" {
        let answer = format!("NODES {}\n", crate::fs::nodes::known_nodes());
        let _ = w.write_all(answer.as_bytes());
        return;
    }
    if read.is_err() || line.trim() != "HOLD" {
        let _ = w.write_all(b"ERR expected HOLD\n");
        return;
    }
    let guard = hold.write();
    let since = Instant::now();
    if w.write_all(b"HELD\n").is_err() {
        return;
    }
    let ended = watch_holder(&mut r, since, max_hold);
    drop(guard);
    let answer: &[u8] = match ended {
        Ended::Released => b"RELEASED\n",
        Ended::Disconnected => {
            log::warn!("snapshot hold released: its holder disconnected");
            return;
        }
        Ended::Silent => {
            log::warn!(
                "snapshot hold dropped: its holder sent no heartbeat for {} s",
                HOLDER_TIMEOUT.as_secs()
            );
            b"DROPPED no heartbeat\n"
        }
        Ended::MaxHold(m) => {
            log::warn!(
                "snapshot hold dropped: held for the mount's --max-hold of {} s",
                m.as_secs()
            );
            b"DROPPED --max-hold\n"
        }
    };
    let _ = w.write_all(answer);
}

/// Reads the holder's lines until it releases, goes away, falls silent or
/// outlives `max_hold`.
fn watch_holder(
    r: &mut BufReader<UnixStream>,
    since: Instant,
    max_hold: Option<Duration>,
) -> Ended {
    // Deadlines run from the last complete line and from the start of the
    // hold, never from the last byte: a holder trickling bytes without a
    // newline is silent.
    let mut last_line = Instant::now();
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        let silent_left = HOLDER_TIMEOUT.saturating_sub(last_line.elapsed());
        if silent_left.is_zero() {
            return Ended::Silent;
        }
        let mut wait = silent_left;
        if let Some(m) = max_hold {
            let left = m.saturating_sub(since.elapsed());
            if left.is_zero() {
                return Ended::MaxHold(m);
            }
            wait = wait.min(left);
        }
        if r.get_ref().set_read_timeout(Some(wait)).is_err() {
            return Ended::Disconnected;
        }
        let mut byte = [0u8; 1];
        match r.read(&mut byte) {
            Ok(0) => return Ended::Disconnected,
            Ok(_) if byte[0] != b'\n' => {
                // No line of the protocol is this long: not a holder.
                if line.len() == MAX_LINE {
                    return Ended::Released;
                }
                line.push(byte[0]);
            }
            Ok(_) => {
                if line.trim_ascii() != b"ALIVE" {
                    // RELEASE, or anything else, ends the hold.
                    return Ended::Released;
                }
                last_line = Instant::now();
                line.clear();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ended::Disconnected,
        }
    }
}

/// The longest line of the control protocol.
const MAX_LINE: usize = 16;

/// Flush the kernel's dirty pages of the mount at `mountpoint` to its
/// daemon, before a hold: a write still in the page cache when the hold
/// begins would be missing from the snapshot.
pub fn flush_mount(mountpoint: &Path) -> std::io::Result<()> {
    if crate::fault::planted("snapshot-syncfs-fails") {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    crate::sys::sync_mount(mountpoint)
}

/// A hold granted by a running daemon, kept alive by a heartbeat thread;
/// released by `release` (or on drop).
pub struct Hold {
    w: Arc<Mutex<UnixStream>>,
    /// Set once the daemon dropped the hold (or went away).
    lost: Arc<AtomicBool>,
    /// Set once this side asked for the release.
    releasing: Arc<AtomicBool>,
    /// The heartbeat thread; it returns whether the daemon confirmed the
    /// release (the hold lasted until it was asked to end).
    beat: Option<std::thread::JoinHandle<bool>>,
}

impl Hold {
    /// Ask the daemon serving `cipherdir` to hold changes (after
    /// `flush_mount`). `Ok(None)` when no daemon serves that volume.
    pub fn acquire(cipherdir: &Path) -> std::io::Result<Option<Hold>> {
        let path = socket_path(cipherdir);
        let Ok(stream) = UnixStream::connect(&path) else {
            return Ok(None);
        };
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut w = stream.try_clone()?;
        w.write_all(b"HOLD\n")?;
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim() != "HELD" {
            return Err(std::io::Error::other(format!(
                "the mount daemon answered {line:?}"
            )));
        }
        let w = Arc::new(Mutex::new(w));
        let lost = Arc::new(AtomicBool::new(false));
        let releasing = Arc::new(AtomicBool::new(false));
        let beat = {
            let (w, lost, releasing) = (w.clone(), lost.clone(), releasing.clone());
            std::thread::Builder::new()
                .name("envelopefs-heartbeat".into())
                .spawn(move || heartbeat(r, &w, &lost, &releasing))?
        };
        Ok(Some(Hold {
            w,
            lost,
            releasing,
            beat: Some(beat),
        }))
    }

    /// Raised once the daemon has dropped the hold: a copy under it is no
    /// longer consistent.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Ends the hold; true if it lasted until now (the daemon confirmed the
    /// release and had not dropped it before).
    pub fn release(mut self) -> bool {
        self.end()
    }

    fn end(&mut self) -> bool {
        let Some(beat) = self.beat.take() else {
            return false;
        };
        self.releasing.store(true, Ordering::SeqCst);
        let _ = self.w.lock().write_all(b"RELEASE\n");
        beat.join().unwrap_or(false) && !self.lost.load(Ordering::SeqCst)
    }
}

/// Sends `ALIVE` every `HEARTBEAT` while reading the daemon's next line:
/// `RELEASED` after our `RELEASE` (returns true), or `DROPPED`, a hang-up or
/// an error (the hold is lost; returns false).
fn heartbeat(
    mut r: BufReader<UnixStream>,
    w: &Mutex<UnixStream>,
    lost: &AtomicBool,
    releasing: &AtomicBool,
) -> bool {
    let mut line = String::new();
    let mut waited_for_release = Duration::ZERO;
    let confirmed = loop {
        if r.get_ref().set_read_timeout(Some(HEARTBEAT)).is_err() {
            break false;
        }
        match r.read_line(&mut line) {
            Ok(_) if line.trim() == "RELEASED" && releasing.load(Ordering::SeqCst) => break true,
            Ok(_) => break false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if releasing.load(Ordering::SeqCst) {
                    waited_for_release += HEARTBEAT;
                    if waited_for_release >= HOLDER_TIMEOUT {
                        break false;
                    }
                }
                if w.lock().write_all(b"ALIVE\n").is_err() {
                    break false;
                }
            }
            Err(_) => break false,
        }
    };
    if !confirmed {
        lost.store(true, Ordering::SeqCst);
    }
    confirmed
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.end();
    }
}
