//! Becoming a daemon: the ready pipe, fork, a new session, the standard
//! descriptors, inherited descriptors, and the private directories a log
//! file falls back to.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::*;

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Which side of a fork this is.
pub enum Forked {
    Child,
    Parent(u32),
}

/// The number of threads of this process (1 where /proc cannot tell).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// fork(2). Only the calling thread goes on in the child: call it while the
/// process has no other thread (the mount forks before any FUSE, signal or
/// key-service thread starts), or the child may find a lock another thread
/// held at the fork locked for ever.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the child continues only in the calling thread; callers fork
    // while single-threaded (see above), so no lock is left held by a thread
    // that does not exist in the child.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid as u32)
    })
}

/// setsid(2): a new session without a controlling terminal, so the
/// terminal's hangup and job-control signals no longer reach the daemon.
pub fn setsid() -> io::Result<()> {
    // SAFETY: plain syscall without arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// dup2(2) `src` onto the descriptor number `target` (a standard descriptor).
pub fn dup_onto(src: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: src is a descriptor we hold; dup2 replaces `target` atomically,
    // and callers pass only the standard descriptors 0-2, which no Rust
    // object owns.
    check(unsafe { libc::dup2(src.as_raw_fd(), target) })?;
    Ok(())
}

/// Wait up to `timeout_ms` for `fd` to become readable (or hung up).
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    match check(r) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// The open descriptors of this process, from /proc/self/fd.
fn open_fds() -> io::Result<Vec<RawFd>> {
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// Close every descriptor above 2 that this process inherited, except
/// `keep`; returns how many were closed. Inherited ones are told from our
/// own by the close-on-exec flag: the program opens every descriptor with
/// `O_CLOEXEC` (std and the sys helpers do), while one that survived the
/// exec that started us cannot have it. So no descriptor a Rust object
/// owns is closed under it. Call it while single-threaded.
pub fn close_inherited(keep: &[RawFd]) -> io::Result<usize> {
    let mut closed = 0;
    for fd in open_fds()? {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // SAFETY: F_GETFD only reads the flags of a descriptor number; a
        // number that is no longer open (the listing's own) gives EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: closes one descriptor that no Rust object owns (it lacks
        // the close-on-exec flag every descriptor we open has), while no
        // other thread runs that could reuse its number.
        if unsafe { libc::close(fd) } == 0 {
            closed += 1;
        }
    }
    Ok(closed)
}

/// Create `dir` and any missing parents, new ones with `mode`; an existing
/// `dir` must be a directory owned by us that others cannot write (it will
/// hold a private file). Each level is made with `mkdirat` relative to its
/// parent's descriptor.
pub fn make_private_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    let mut at = std::path::PathBuf::from("/");
    let mut fd = open_user_dir(&at)?;
    for part in dir.components() {
        let name = match part {
            std::path::Component::Normal(n) => n,
            std::path::Component::RootDir => continue,
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match mkdirat(std::os::fd::AsFd::as_fd(&fd), name, mode) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        at.push(name);
        fd = open_user_dir(&at)?;
    }
    let st = fstat(std::os::fd::AsFd::as_fd(&fd))?;
    if st.st_uid != geteuid() || st.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to another user or others can write it",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// A child process that stats one path and exits: how a FUSE daemon asks
/// its own mount whether it answers. The request must not come from the
/// daemon's own process: one the daemon has read waits for its answer
/// uninterruptibly, so a daemon killed before answering could never finish
/// exiting, its /dev/fuse descriptor would stay open, and the mount would
/// hang for ever instead of going stale. The child holds no descriptor of
/// the daemon's, so the daemon's death aborts the connection and ends it.
pub struct StatProbe {
    pid: libc::pid_t,
}

impl StatProbe {
    /// Fork the child. Safe to call with other threads running: the child
    /// makes only async-signal-safe calls (close_range or close, stat,
    /// _exit) on memory prepared before the fork.
    pub fn start(path: &Path) -> io::Result<StatProbe> {
        let c = cstr(path.as_os_str())?;
        // For a kernel without close_range: every descriptor number below
        // the open-file limit.
        let max_fd = libc::c_int::try_from(nofile_limit()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the child runs only async-signal-safe calls on `c`
        // (allocated before the fork) and stack memory, and leaves by
        // _exit, so no lock another thread held at the fork is taken and no
        // destructor or atexit handler of the parent's runs in it.
        let pid = check(unsafe { libc::fork() })?;
        if pid == 0 {
            // SAFETY: see above; closing every descriptor of the child's own
            // table (copies of the parent's) leaves the parent's untouched.
            unsafe {
                if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                    for fd in 0..max_fd {
                        libc::close(fd);
                    }
                }
                let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                libc::stat(c.as_ptr(), st.as_mut_ptr());
                libc::_exit(0);
            }
        }
        Ok(StatProbe { pid })
    }

    /// Whether the child has exited (reaping it): `Some(true)` when its
    /// stat returned, whatever it returned.
    pub fn exited(&self) -> io::Result<Option<bool>> {
        let mut status = 0;
        // SAFETY: waits only for our own child, status is a valid int.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match check(r) {
            // SIGCHLD ignored (inherited from whoever started us): the
            // kernel reaped it, and it exited.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Some(true)),
            Err(e) => Err(e),
            Ok(0) => Ok(None),
            _ => Ok(Some(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            )),
        }
    }

    /// Kill the child and reap it; this waits for its stat to end (the
    /// kill does not cut short a request the daemon has already read).
    pub fn kill_and_reap(self) {
        // SAFETY: our own child, not reaped yet, so the pid is still its.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}
