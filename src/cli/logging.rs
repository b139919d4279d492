//! The process's logger. Records go to stderr (in a background daemon,
//! stderr is its log file) formatted by env_logger, or as syslog datagrams
//! (`<PRI>envelopefs[PID]: message`, facility daemon) to the local syslog
//! socket, which the journal also reads. The level is `RUST_LOG`'s filter,
//! or `--log-level`'s, which wins.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::ValueEnum;
use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::{Mutex, RwLock};

use crate::sys;

/// The name records carry in syslog and the journal (`SYSLOG_IDENTIFIER`).
pub const IDENTIFIER: &str = "envelopefs";
/// syslog's facility `daemon`, as the PRI field counts it (3 << 3).
const FACILITY_DAEMON: u8 = 3 << 3;
/// The default filter: warnings and errors; fuser's own records only when
/// they are errors (its debug records name files).
const DEFAULT_FILTER: &str = "warn,fuser=error";

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

struct Syslog {
    path: PathBuf,
    sock: UnixDatagram,
    pid: u32,
}

impl Syslog {
    fn connect(path: &Path) -> io::Result<UnixDatagram> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(path)?;
        // A stalled syslog daemon drops records instead of stalling a
        // FUSE thread that logs.
        sock.set_nonblocking(true)?;
        Ok(sock)
    }

    fn send(&mut self, record: &Record<'_>) {
        let line = format!(
            "<{}>{IDENTIFIER}[{}]: {}",
            FACILITY_DAEMON + severity(record.level()),
            self.pid,
            record.args()
        );
        if self.sock.send(line.as_bytes()).is_ok() {
            return;
        }
        // The syslog daemon restarted (its socket is a new one): once more.
        if let Ok(s) = Self::connect(&self.path) {
            self.sock = s;
            let _ = self.sock.send(line.as_bytes());
        }
    }
}

/// syslog severities: err 3, warning 4, info 6, debug 7.
fn severity(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

struct Logger {
    /// Filters, and formats what goes to stderr.
    inner: RwLock<env_logger::Logger>,
    syslog: Mutex<Option<Syslog>>,
    /// The log file stderr (and, in the background, stdout) points to, and
    /// whether stdout does too: what SIGHUP opens anew.
    file: Mutex<Option<(PathBuf, bool)>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.inner.read().enabled(m)
    }

    fn log(&self, record: &Record<'_>) {
        let inner = self.inner.read();
        if !inner.matches(record) {
            return;
        }
        if let Some(s) = self.syslog.lock().as_mut() {
            s.send(record);
            return;
        }
        inner.log(record);
    }

    fn flush(&self) {
        self.inner.read().flush();
    }
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn build(filter: Option<&str>) -> env_logger::Logger {
    let mut b = match filter {
        Some(f) => {
            let mut b = env_logger::Builder::new();
            b.parse_filters(f);
            b
        }
        None => env_logger::Builder::from_env(
            env_logger::Env::default().default_filter_or(DEFAULT_FILTER),
        ),
    };
    b.format_timestamp_millis().build()
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        inner: RwLock::new(build(None)),
        syslog: Mutex::new(None),
        file: Mutex::new(None),
    })
}

/// Install the logger: stderr, `RUST_LOG`'s filter (default: warnings).
pub fn init() {
    let l = logger();
    log::set_max_level(l.inner.read().filter());
    let _ = log::set_logger(l);
}

/// `--log-level`: this level for envelopefs, errors only for fuser.
pub fn set_level(level: LogLevel) {
    let l = logger();
    let inner = build(Some(&format!("{},fuser=error", level.filter())));
    log::set_max_level(inner.filter());
    *l.inner.write() = inner;
}

/// Send records to the syslog socket at `path` from now on.
pub fn to_syslog(path: &Path) -> io::Result<()> {
    let sock = Syslog::connect(path)?;
    *logger().syslog.lock() = Some(Syslog {
        path: path.to_owned(),
        sock,
        pid: std::process::id(),
    });
    Ok(())
}

/// Whether a syslog daemon listens at `path`.
pub fn syslog_listens(path: &Path) -> io::Result<()> {
    Syslog::connect(path).map(drop)
}

/// Point stderr (and stdout, if `stdout`) at `file`, the log file opened
/// at `path`; SIGHUP opens `path` anew.
pub fn to_file(path: &Path, file: &std::fs::File, stdout: bool) -> io::Result<()> {
    point_stdio(file, stdout)?;
    *logger().file.lock() = Some((path.to_owned(), stdout));
    Ok(())
}

fn point_stdio(file: &std::fs::File, stdout: bool) -> io::Result<()> {
    if stdout {
        sys::daemon::dup_onto(file.as_fd(), 1)?;
    }
    sys::daemon::dup_onto(file.as_fd(), 2)
}

/// SIGHUP: open the log file anew at its path (after logrotate moved it
/// away), created 0600 if missing. Nothing to do for syslog or stderr.
pub fn reopen() {
    let Some((path, stdout)) = logger().file.lock().clone() else {
        return;
    };
    match sys::open_log(&path).and_then(|f| point_stdio(&f, stdout)) {
        Ok(()) => log::info!("log file reopened (SIGHUP)"),
        Err(e) => log::error!("cannot reopen the log file {}: {e}", path.display()),
    }
}
