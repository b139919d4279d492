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
