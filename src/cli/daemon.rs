//! Running the mount as a daemon: where it logs (syslog, a log file, or a
//! fallback file when there is no syslog socket), the fork into the
//! background with a ready pipe, sd_notify under systemd, and the signals
//! (SIGTERM and SIGINT unmount, SIGHUP reopens the log file).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::logging::{self, LogLevel};
use super::Failure;
use crate::sys;

/// Where the daemon logs, and how much.
#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Log to this file (created 0600) instead of syslog (in the background)
    /// or stderr (in the foreground). SIGHUP opens it anew.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Log records of this level and above (default: warn, or RUST_LOG's
    /// filter).
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// The syslog socket a background daemon logs to.
    #[arg(
        long,
        hide = true,
        env = "ENVELOPEFS_SYSLOG_SOCKET",
        default_value = "/dev/log"
    )]
    pub syslog_socket: PathBuf,
}

/// `--log-level`, if given, from now on.
pub fn set_log_level(d: &DaemonArgs) {
    if let Some(level) = d.log_level {
        logging::set_level(level);
    }
}

/// Where the daemon's records go, decided before it detaches (so that a
/// refused log file is an error, and a missing syslog socket is said, on
/// the terminal).
pub enum LogTarget {
    Stderr,
    Syslog(PathBuf),
    File(PathBuf, File),
}

impl LogTarget {
    pub fn choose(d: &DaemonArgs, foreground: bool, mountpoint: &Path) -> Result<Self, Failure> {
        let open = |p: &Path| {
            sys::open_log(p).map_err(|e| Failure::Usage(format!("log file {}: {e}", p.display())))
        };
        if let Some(p) = &d.log_file {
            // Absolute: the daemon works in `/`, and SIGHUP reopens by path.
            let p = std::path::absolute(p)
                .map_err(|e| Failure::Usage(format!("log file {}: {e}", p.display())))?;
            let f = open(&p)?;
            return Ok(LogTarget::File(p, f));
        }
        if foreground {
            return Ok(LogTarget::Stderr);
        }
        let Err(e) = logging::syslog_listens(&d.syslog_socket) else {
            let socket =
                std::path::absolute(&d.syslog_socket).unwrap_or_else(|_| d.syslog_socket.clone());
            return Ok(LogTarget::Syslog(socket));
        };
        let place = fallback_log_path(mountpoint).ok_or_else(|| {
            Failure::Usage(format!(
                "no syslog socket at {} ({e}), and no home directory for a log file: give --log-file",
                d.syslog_socket.display()
            ))
        })?;
        if let Some(dir) = place.parent() {
            sys::daemon::make_private_dirs(dir, 0o700)
                .map_err(|e| Failure::Usage(format!("{}: {e}", dir.display())))?;
        }
        let f = open(&place)?;
        eprintln!(
            "envelopefs: no syslog socket at {} ({e}); logging to {}",
            d.syslog_socket.display(),
            place.display()
        );
        Ok(LogTarget::File(place, f))
    }

    /// Send records there from now on; `stdout` too for a daemon, whose
    /// stdout is otherwise /dev/null. The file is closed here: stderr holds
    /// it, and SIGHUP replaces it.
    fn install(self, stdout: bool) {
        let r = match &self {
            LogTarget::Stderr => Ok(()),
            LogTarget::Syslog(p) => logging::to_syslog(p),
            LogTarget::File(p, f) => logging::to_file(p, f, stdout),
        };
        if let Err(e) = r {
            log::error!("cannot log where asked: {e}");
        }
    }
}

/// The log file a background daemon falls back to without a syslog socket:
/// `$XDG_STATE_HOME/envelopefs/` if set, else `/var/log/envelopefs/` for
/// root and `~/.local/state/envelopefs/` (the home in the password
/// database) for other users; the file is named
/// after the mount point as `systemd-escape --path` names it.
pub fn fallback_log_path(mountpoint: &Path) -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(x) if x.is_absolute() => x,
        _ if sys::geteuid() == 0 => PathBuf::from("/var/log"),
        // The user's own home, from the password database: a mount helper
        // run for a `user` fstab line has HOME set to root's.
        _ => sys::home_of(sys::geteuid())?.join(".local/state"),
    };
    Some(
        dir.join("envelopefs")
            .join(format!("{}.log", escape_path(mountpoint))),
    )
}

/// `systemd-escape --path`: slashes become `-`, other bytes than ASCII
/// letters, digits, `_` and a `.` not in front become `\xNN`; `/` is `-`.
pub fn escape_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let b = p.as_os_str().as_bytes();
    let trimmed: Vec<&[u8]> = b.split(|c| *c == b'/').filter(|s| !s.is_empty()).collect();
    if trimmed.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, part) in trimmed.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, &c) in part.iter().enumerate() {
            let plain = c.is_ascii_alphanumeric() || c == b'_' || (c == b'.' && (i, j) != (0, 0));
            if plain {
                out.push(c as char);
            } else {
                out.push_str(&format!("\\x{c:02x}"));
            }
        }
    }
    out
}

/// sd_notify: the datagram socket systemd named in NOTIFY_SOCKET (a path,
/// or `@name` in the abstract namespace).
pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
    stopping: AtomicBool,
}

impl Notifier {
    /// Take NOTIFY_SOCKET out of the environment (as sd_notify's
    /// unset_environment does): programs we start (a passphrase program,
    /// fusermount3) must not report to systemd in our name. Call it first
    /// thing, while single-threaded.
    pub fn take_from_env() -> Option<Notifier> {
        let v = std::env::var_os("NOTIFY_SOCKET")?;
        std::env::remove_var("NOTIFY_SOCKET");
        let addr = notify_addr(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
        let r = addr.and_then(|addr| {
            Ok(Notifier {
                sock: UnixDatagram::unbound()?,
                addr,
                stopping: AtomicBool::new(false),
            })
        });
        match r {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET unusable, systemd will not hear from us: {e}");
                None
            }
        }
    }

    fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            log::warn!("sd_notify: {e}");
        }
    }

    fn ready(&self, mountpoint: &Path) {
        // One line per variable: a newline in the path must not start one.
        let status = mountpoint.display().to_string().replace('\n', " ");
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=Serving {status}",
            std::process::id()
        ));
    }

    /// STOPPING=1, once.
    fn stopping(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            self.send("STOPPING=1\nSTATUS=Unmounting");
        }
    }
}

fn notify_addr(v: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match v.first() {
        Some(b'@') => std::os::unix::net::SocketAddr::from_abstract_name(&v[1..]),
        Some(b'/') => std::os::unix::net::SocketAddr::from_pathname(Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(v),
        )),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "neither a path nor an abstract socket name",
        )),
    }
}

/// How the serving daemon says it is ready: to the parent waiting on the
/// ready pipe (background), or to systemd (foreground, `NOTIFY_SOCKET`).
pub struct Ready {
    pipe: Option<OwnedFd>,
    notify: Option<Arc<Notifier>>,
    /// Foreground only: where records go once serving.
    logs: Option<LogTarget>,
}

impl Ready {
    pub fn foreground(notify: Option<Notifier>, logs: LogTarget) -> Ready {
        Ready {
            pipe: None,
            notify: notify.map(Arc::new),
            logs: Some(logs),
        }
    }

    /// A daemon other than a mount (the key agent) serves `what` now: its
    /// records go where chosen, and the parent (or systemd) hears it.
    pub fn serving_now(self, what: &Path) {
        let Ready { pipe, notify, logs } = self;
        if let Some(l) = logs {
            l.install(false);
        }
        if let Some(fd) = pipe {
            let _ = File::from(fd).write_all(b"OK");
        }
        if let Some(n) = notify {
            n.ready(what);
        }
    }

    /// The mount failed: tell the waiting parent why (`CODE message`).
    pub fn failed(&self, f: &Failure) {
        if let Some(fd) = &self.pipe {
            if let Ok(fd) = fd.try_clone() {
                let _ = File::from(fd).write_all(f.report().as_bytes());
            }
        }
    }
}

/// What `serving` leaves for the end of the session.
pub struct Serving {
    notify: Option<Arc<Notifier>>,
}

impl Serving {
    /// The session ended (unmounted, by us or by umount(8)).
    pub fn ended(self) {
        if let Some(n) = &self.notify {
            n.stopping();
        }
    }
}

/// The session is mounted and about to run: SIGTERM and SIGINT unmount,
/// SIGHUP reopens the log file; and once the mount answers a request, the
/// parent (or systemd) hears that it is ready. The mount answers only once
/// `run` serves it (its INIT has been answered, but requests wait for the
/// session threads), so a thread asks, bounded, and reports.
pub fn serving(mut unmounter: fuser::SessionUnmounter, mountpoint: &Path, ready: Ready) -> Serving {
    let Ready { pipe, notify, logs } = ready;
    if let Some(l) = logs {
        l.install(false);
    }
    let on_signal = notify.clone();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(mut signals) => {
            let spawned = std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    for sig in signals.forever() {
                        if sig == signal_hook::consts::SIGHUP {
                            logging::reopen();
                            continue;
                        }
                        if let Some(n) = &on_signal {
                            n.stopping();
                        }
                        let _ = unmounter.unmount();
                        break;
                    }
                });
            if let Err(e) = spawned {
                log::error!("no signal thread (SIGTERM will not unmount): {e}");
            }
        }
        Err(e) => log::error!("cannot handle signals (SIGTERM will not unmount): {e}"),
    }
    let mp = mountpoint.to_owned();
    let on_ready = notify.clone();
    let spawned = std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || report_when_answering(&mp, pipe, on_ready));
    if let Err(e) = spawned {
        log::error!("no thread to report readiness: {e}");
    }
    Serving { notify }
}

/// The longest the mount may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn report_when_answering(mountpoint: &Path, pipe: Option<OwnedFd>, notify: Option<Arc<Notifier>>) {
    if !answers_by(mountpoint, Instant::now() + READY_TIMEOUT) {
        log::error!(
            "{} did not answer in {} s: not reported ready",
            mountpoint.display(),
            READY_TIMEOUT.as_secs()
        );
        return;
    }
    if let Some(fd) = pipe {
        let _ = File::from(fd).write_all(b"OK");
    }
    if let Some(n) = notify {
        n.ready(mountpoint);
    }
}

/// Whether the mount at `mountpoint` answers a stat by `deadline` (any
/// answer, an error too: the session serves). A child process asks (see
/// `sys::daemon::StatProbe` for why not a thread of ours).
fn answers_by(mountpoint: &Path, deadline: Instant) -> bool {
    let probe = match sys::daemon::StatProbe::start(mountpoint) {
        Ok(p) => p,
        Err(e) => {
            log::error!("cannot start the readiness check: {e}");
            return false;
        }
    };
    loop {
        match probe.exited() {
            Ok(Some(answered)) => return answered,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => break,
        }
    }
    probe.kill_and_reap();
    false
}

/// Fork into the background: the child detaches (new session, cwd `/`,
/// stdio to /dev/null or the log file, inherited descriptors closed except
/// `keep`), logs to `logs` and runs `serve`; the parent returns once the
/// child reports the mount ready (with the daemon's pid), or why it failed.
/// Call it while single-threaded.
pub fn daemonize(
    mountpoint: &Path,
    logs: LogTarget,
    keep: &[RawFd],
    serve: impl FnOnce(Ready) -> Result<(), Failure>,
) -> Result<u32, Failure> {
    let (rd, wr) =
        sys::daemon::pipe_cloexec().map_err(|e| Failure::Process(format!("pipe failed: {e}")))?;
    let threads = sys::daemon::thread_count();
    if threads > 1 {
        log::warn!("forking the daemon with {threads} threads running");
    }
    match sys::daemon::fork().map_err(|e| Failure::Process(format!("fork failed: {e}")))? {
        sys::daemon::Forked::Child => {
            drop(rd);
            detach(&logs, wr.as_raw_fd(), keep);
            logs.install(true);
            let ready = Ready {
                pipe: Some(wr),
                notify: None,
                logs: None,
            };
            let code = match serve(ready) {
                Ok(()) => 0,
                Err(f) => {
                    log::error!("{f}");
                    f.exit_code()
                }
            };
            std::process::exit(code);
        }
        sys::daemon::Forked::Parent(pid) => {
            drop(wr);
            wait_ready(rd, mountpoint).map(|()| pid)
        }
    }
}

/// In the child: leave the terminal's session, work in `/` (no directory
/// stays busy), stdio to /dev/null, and close descriptors inherited from
/// whoever started us (they would keep pipes, sockets or files of theirs
/// open for the life of the mount).
fn detach(logs: &LogTarget, ready_pipe: RawFd, keep: &[RawFd]) {
    let _ = sys::daemon::setsid();
    let _ = std::env::set_current_dir("/");
    redirect_stdio();
    let mut keep = keep.to_vec();
    keep.push(ready_pipe);
    if let LogTarget::File(_, f) = logs {
        keep.push(f.as_raw_fd());
    }
    let _ = sys::daemon::close_inherited(&keep);
}

fn redirect_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..=2 {
            let _ = sys::daemon::dup_onto(null.as_fd(), fd);
        }
    }
}

fn wait_ready(rd: OwnedFd, mountpoint: &Path) -> Result<(), Failure> {
    // The child's own bound, and a little for it to say so.
    let deadline = Instant::now() + READY_TIMEOUT + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::MountFailed(format!(
                "mount of {} did not become ready in {} s",
                mountpoint.display(),
                READY_TIMEOUT.as_secs()
            )));
        }
        if sys::daemon::poll_readable(rd.as_fd(), left.as_millis().min(1000) as i32)
            .unwrap_or(false)
        {
            break;
        }
    }
    let mut msg = String::new();
    let _ = File::from(rd).read_to_string(&mut msg);
    match msg.strip_prefix("OK") {
        Some(_) => Ok(()),
        None => Err(Failure::from_report(&msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names_are_systemd_escape_path() {
        // As `systemd-escape --path` prints them.
        for (p, want) in [
            ("/srv/plain", "srv-plain"),
            ("/", "-"),
            ("/a b/.x", "a\\x20b-.x"),
            ("/mnt/ü-x_y.z/", "mnt-\\xc3\\xbc\\x2dx_y.z"),
            ("/.hidden", "\\x2ehidden"),
            ("//a//b", "a-b"),
        ] {
            assert_eq!(escape_path(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let a = notify_addr(b"@sd-test").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"sd-test"[..]));
        let p = notify_addr(b"/run/systemd/notify").unwrap();
        assert_eq!(p.as_pathname(), Some(Path::new("/run/systemd/notify")));
        assert!(notify_addr(b"vsock:2:1234").is_err());
        assert!(notify_addr(b"").is_err());
    }
}
