//! `envelopefs agent`: the key agent. It unlocks the key store once and
//! serves the key service on a Unix socket to the users of this machine,
//! each request decided by `kms::access::authorize` for the caller the
//! kernel names (`SO_PEERCRED`, `SO_PEERGROUPS`), and audited in its name.
//! The socket is open to every user, so the agent bounds what one user can
//! take: connections per user and in all, request size, idle and request
//! time, and the rate of audited denials.

mod limits;
mod ops;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::daemon::{self, DaemonArgs};
use super::{Failure, Global};
use crate::kms::access::Caller;
use crate::kms::agent::{error_json, write_frame};
use crate::kms::local::LocalKeyService;
use crate::kms::KmsError;
use crate::sys;
pub use limits::Denials;
use limits::{Limits, Slot};

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The socket to serve on; its directory is made root-owned 0755 if
    /// missing, and refused if a symlink, not this user's, or writable by
    /// group or others.
    #[arg(long, default_value = crate::kms::agent::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Stay in the foreground (under systemd: Type=notify).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Open connections one user may hold at once.
    #[arg(long, default_value_t = 16)]
    max_connections_per_user: usize,
    /// Open connections of all users at once.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Seconds a connection may sit without a request before it is closed.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    /// Seconds a request may take to arrive once it has begun (and an
    /// answer to be taken); a knob for the tests.
    #[arg(long, default_value_t = 5, hide = true)]
    request_timeout: u64,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub fn agent(g: &Global, a: AgentArgs) -> Result<(), Failure> {
    // First, while single-threaded: it changes the environment.
    let notify = daemon::Notifier::take_from_env();
    daemon::set_log_level(&a.daemon);
    // Before the key store is unlocked.
    let _ = sys::set_dumpable(false);
    let socket = std::path::absolute(&a.socket)
        .map_err(|e| Failure::Usage(format!("--socket {}: {e}", a.socket.display())))?;
    prepare_socket_dir(&socket)?;
    let ks = g.open_store()?;
    let listener = bind(&socket)?;
    let logs = daemon::LogTarget::choose(&a.daemon, a.foreground, &socket)?;
    if a.foreground {
        let ready = daemon::Ready::foreground(notify, logs);
        return serve(ks, listener, &socket, &a, ready);
    }
    let keep = [std::os::fd::AsRawFd::as_raw_fd(&listener)];
    let pid = daemon::daemonize(&socket, logs, &keep, |ready| {
        serve(ks, listener, &socket, &a, ready)
    })?;
    if g.output == super::Output::Json {
        super::print_result(
            g.output,
            &serde_json::json!({"Socket": socket.display().to_string(), "Pid": pid}),
            "",
        );
    }
    Ok(())
}

fn usage(msg: String) -> Failure {
    Failure::Usage(msg)
}

/// The socket's directory: made 0755 if missing; refused if a symlink, not
/// this user's, or writable by group or others (whoever could write there
/// could put their own socket in the agent's place).
fn prepare_socket_dir(socket: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = socket
        .parent()
        .ok_or_else(|| usage(format!("{}: no directory", socket.display())))?;
    let fail = |e: std::io::Error| usage(format!("agent socket directory {}: {e}", dir.display()));
    if let Err(e) = std::fs::symlink_metadata(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(fail(e));
        }
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .map_err(fail)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    }
    let md = std::fs::symlink_metadata(dir).map_err(fail)?;
    let why = if !md.file_type().is_dir() {
        Some("not a directory (a symlink is not followed)".to_owned())
    } else if md.uid() != sys::geteuid() {
        Some(format!("owned by uid {}, not by this user", md.uid()))
    } else if md.mode() & 0o022 != 0 {
        Some(format!(
            "mode {:o}: writable by group or others",
            md.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(usage(format!(
            "agent socket directory {}: {why}: refused",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Bind the socket (mode 0666: every user may ask; the agent decides). A
/// socket left by an agent that died is replaced; one that answers is not.
fn bind(socket: &Path) -> Result<UnixListener, Failure> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let fail = |e: std::io::Error| usage(format!("agent socket {}: {e}", socket.display()));
    if let Ok(md) = std::fs::symlink_metadata(socket) {
        if !md.file_type().is_socket() {
            return Err(usage(format!(
                "agent socket {}: exists and is not a socket: refused",
                socket.display()
            )));
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(usage(format!(
                "agent socket {}: another agent serves it",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(fail)?;
    }
    let l = UnixListener::bind(socket).map_err(fail)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).map_err(fail)?;
    Ok(l)
}

/// The principal of a uid in the store `store_id`.
pub fn principal_of(store_id: &str, uid: u32) -> String {
    if uid == 0 {
        return format!("arn:envelopefs:iam::{store_id}:root");
    }
    match sys::user_name(uid) {
        Some(n) => format!("arn:envelopefs:iam::{store_id}:user/{n}"),
        None => format!("arn:envelopefs:iam::{store_id}:user/uid-{uid}"),
    }
}

fn serve(
    ks: LocalKeyService,
    listener: UnixListener,
    socket: &Path,
    a: &AgentArgs,
    ready: daemon::Ready,
) -> Result<(), Failure> {
    crate::volume::harden_daemon(false);
    let stop = Arc::new(AtomicBool::new(false));
    let wake = listener
        .try_clone()
        .map_err(|e| Failure::Process(format!("agent socket: {e}")))?;
    on_signals(wake, stop.clone());
    let ks = Arc::new(ks);
    let limits = Arc::new(Limits::new(a.max_connections_per_user, a.max_connections));
    let denials = Arc::new(Denials::default());
    let times = Times {
        idle: Duration::from_secs(a.idle_timeout.max(1)),
        request: Duration::from_secs(a.request_timeout.max(1)),
    };
    ready.serving_now(socket);
    log::info!("key agent serving {}", socket.display());
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let Ok(cred) = sys::peer_cred(conn.as_fd()) else {
            continue;
        };
        let Some(slot) = limits.take(cred.uid) else {
            refuse(conn);
            continue;
        };
        let groups = sys::peer_groups(conn.as_fd()).unwrap_or_default();
        let caller = Caller {
            uid: cred.uid,
            gid: cred.gid,
            groups,
            pid: cred.pid,
            principal_arn: principal_of(ks.store_id(), cred.uid),
        };
        let (ks, denials) = (ks.clone(), denials.clone());
        let spawned = std::thread::Builder::new()
            .name("agent-conn".into())
            .spawn(move || connection(&ks, &denials, conn, &caller, times, slot));
        if let Err(e) = spawned {
            log::warn!("no thread for a connection: {e}");
        }
    }
    let _ = std::fs::remove_file(socket);
    log::info!("key agent stopped; {} removed", socket.display());
    Ok(())
}

/// SIGTERM and SIGINT stop the agent (the listening socket is shut down,
/// which wakes the accept loop even when its path was removed); SIGHUP
/// reopens the log file.
fn on_signals(listener: UnixListener, stop: Arc<AtomicBool>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let spawned = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map(|mut s| {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in s.forever() {
                    if sig == SIGHUP {
                        super::logging::reopen();
                        continue;
                    }
                    stop.store(true, Ordering::SeqCst);
                    if let Err(e) = sys::shutdown_listener(listener.as_fd()) {
                        log::error!("cannot stop the agent's socket: {e}");
                    }
                    break;
                }
            })
    });
    if !matches!(spawned, Ok(Ok(_))) {
        log::error!("cannot handle signals: SIGTERM will not stop the agent cleanly");
    }
}

/// Over a limit: one error frame, then the connection is closed.
fn refuse(mut conn: UnixStream) {
    let e = KmsError::LimitExceeded("too many connections to the key agent".into());
    let _ = conn.set_nonblocking(true);
    if let Ok(body) = serde_json::to_vec(&error_json(&e)) {
        let _ = write_frame(&mut conn, &body);
    }
}

/// How long a connection may idle before a request, and how long a
/// request (or its answer) may take to pass once begun.
#[derive(Clone, Copy)]
struct Times {
    idle: Duration,
    request: Duration,
}

/// Serve one client until it closes, idles out, or breaks the protocol.
fn connection(
    ks: &LocalKeyService,
    denials: &Denials,
    mut conn: UnixStream,
    caller: &Caller,
    times: Times,
    _slot: Slot,
) {
    if conn.set_write_timeout(Some(times.request)).is_err() {
        return;
    }
    loop {
        let req = match limits::read_request(&mut conn, times.idle, times.request) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let mut answer = match serde_json::from_slice::<serde_json::Value>(&req) {
            Ok(mut v) => {
                let a = ops::handle(ks, caller, denials, &v);
                crate::kms::agent::client::wipe(&mut v);
                a
            }
            Err(_) => error_json(&KmsError::Validation("the request is not JSON".into())),
        };
        // In locked memory: a growing Vec would leave the data keys of
        // the answer in the heap buffers it outgrew.
        let mut body = crate::crypto::secmem::SecretVec::with_capacity(4096);
        let encoded = serde_json::to_writer(&mut body, &answer);
        crate::kms::agent::client::wipe(&mut answer);
        // What the request's functions left on this thread's stack (key
        // schedules, data keys) goes before the thread waits again.
        crate::crypto::secmem::scrub_stack();
        if encoded.is_err() {
            return;
        }
        if write_frame(&mut conn, body.as_slice())
            .and_then(|()| conn.flush())
            .is_err()
        {
            return;
        }
    }
}
