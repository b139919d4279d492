//! RENAME_WHITEOUT (what overlayfs needs of an upper directory): the backing
//! rename leaves a whiteout, a 0:0 character device, at the source's backing
//! name, so the mount shows one under the source's name. Like any device node
//! in the backing directory it is inert (no driver has 0:0, and mounts are
//! `nodev`). The backing filesystem makes it as the daemon's user; as
//! `set_owner` does for other new entries, a root daemon gives it to the caller.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use fuser::{Errno, Request};
use log::warn;

use super::{io, EnvelopeFs, Node, Res};
use crate::sys;

impl EnvelopeFs {
    pub(super) fn give_whiteout(&self, req: &Request, dir: &Node, bname: &OsStr) -> Res<()> {
        let fd = sys::openat(
            dir.fd().map_err(io)?.as_fd(),
            bname,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .map_err(io)?;
        let st = sys::fstat(fd.as_fd()).map_err(io)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != 0 {
            // Replaced behind our back: not ours to chown.
            warn!(
                "{}: the whiteout of a rename is not there",
                dir.backing_path()
            );
            return Err(Errno::EIO);
        }
        self.set_owner(req, dir, fd.as_fd())
    }
}
