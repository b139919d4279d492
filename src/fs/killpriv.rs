//! Setuid and setgid bits after another user changes a file (write,
//! truncate, fallocate) or after a chown, cleared exactly when the kernel's
//! own filesystems clear them. For a change (setattr_should_drop_suidgid):
//! nothing for a caller with CAP_FSETID; otherwise setuid always, and
//! setgid when the file is group-executable or the caller is not in the
//! file's group. For a chown (chown_common): setuid always, setgid as for a
//! change but judged on the group the file had before.
//!
//! The mount negotiates FUSE_HANDLE_KILLPRIV_V2 (in return the kernel sets
//! SB_NOSEC and stops asking for security.capability before every write),
//! so the kernel sends no mode change of its own: all of this is the
//! daemon's, decided with the caller's groups and capabilities read from
//! /proc (the request carries only its fsuid, fsgid and pid). The kernel's
//! KILL_SUIDGID flags (write, setattr, open) are derived from the same
//! facts, so the daemon need not read them. No reply to a WRITE or a
//! FALLOCATE carries the mode, so after clearing a bit there the daemon
//! tells the kernel to drop its cached attributes. A write from the page cache
//! (FUSE_WRITE_CACHE) has no caller and clears nothing: the kernel writes
//! through, with a caller, whenever a bit is to be cleared.
//! security.capability stays the kernel's: it asks for it (while the inode
//! is not S_NOSEC) and removes it through REMOVEXATTR.

use std::io;
use std::os::fd::BorrowedFd;

use fuser::Request;

use crate::sys;

/// CAP_FSETID (linux/capability.h).
const CAP_FSETID: u32 = 4;
/// CAP_SYS_ADMIN (linux/capability.h): what trusted.* xattrs need.
const CAP_SYS_ADMIN: u32 = 21;

/// Who made a change, from the request header.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    uid: u32,
    gid: u32,
    pid: u32,
}

impl Caller {
    pub fn of(req: &Request) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        }
    }
}

/// What ext4 looks at: group membership and CAP_FSETID.
struct Creds {
    fsgid: u32,
    groups: Vec<u32>,
    fsetid: bool,
    sys_admin: bool,
}

impl Creds {
    fn in_group(&self, gid: u32) -> bool {
        self.fsgid == gid || self.groups.contains(&gid)
    }

    /// The caller's credentials from /proc/PID/status, if that is still the
    /// caller (same fsuid and fsgid); else only what the header says: the
    /// fsgid, and root taken as holding CAP_FSETID.
    fn of(caller: Caller) -> Creds {
        let mut creds = std::fs::read_to_string(format!("/proc/{}/status", caller.pid))
            .ok()
            .and_then(|status| parse_status(&status, caller))
            .unwrap_or(Creds {
                fsgid: caller.gid,
                groups: Vec::new(),
                fsetid: caller.uid == 0,
                sys_admin: caller.uid == 0,
            });
        // Capabilities count only in the daemon's user namespace: ext4 asks
        // for CAP_FSETID over the inode's namespace, and root inside
        // `unshare -U` has a full CapEff line but no such power here.
        if (creds.fsetid || creds.sys_admin) && !same_user_namespace(caller.pid) {
            creds.fsetid = false;
            creds.sys_admin = false;
        }
        creds
    }
}

fn same_user_namespace(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    match (
        ns(format!("/proc/{pid}/ns/user")),
        ns("/proc/self/ns/user".into()),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `Uid:`/`Gid:` (real, effective, saved, fs), `Groups:` and `CapEff:` of a
/// /proc/PID/status text; None if it is not the caller's.
fn parse_status(status: &str, caller: Caller) -> Option<Creds> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|values| values.split_whitespace().collect::<Vec<_>>())
    };
    let fs_id = |name: &str| field(name)?.get(3)?.parse::<u32>().ok();
    if fs_id("Uid:")? != caller.uid || fs_id("Gid:")? != caller.gid {
        return None;
    }
    let groups = field("Groups:")?
        .iter()
        .map(|group| group.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    let cap_eff = u64::from_str_radix(field("CapEff:")?.first()?, 16).ok()?;
    Some(Creds {
        fsgid: caller.gid,
        groups,
        fsetid: cap_eff & (1 << CAP_FSETID) != 0,
        sys_admin: cap_eff & (1 << CAP_SYS_ADMIN) != 0,
    })
}

/// Whether `caller` may keep a file's setgid bit when it sets the file's
/// access ACL (posix_acl_update_mode): in the file's group, or CAP_FSETID.
pub fn may_keep_setgid(caller: Caller, file_gid: u32) -> bool {
    let creds = Creds::of(caller);
    creds.fsetid || creds.in_group(file_gid)
}

/// Whether `caller` holds CAP_SYS_ADMIN, which trusted.* xattrs need
/// (fs/xattr.c: xattr_permission). The kernel checks it before a get or a
/// set reaches the daemon; a listing is the daemon's to filter.
pub fn has_sys_admin(caller: Caller) -> bool {
    Creds::of(caller).sys_admin
}

/// The mode ext4 leaves after a change by `creds` to a regular file.
fn mode_after_change(mode: u32, file_gid: u32, creds: &Creds) -> u32 {
    if creds.fsetid {
        return mode;
    }
    let mut kept = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !creds.in_group(file_gid)) {
        kept &= !libc::S_ISGID;
    }
    kept
}

/// The mode the VFS leaves after a chown by `creds` of a non-directory
/// whose group was `old_gid`.
fn mode_after_chown(mode: u32, old_gid: u32, creds: &Creds) -> u32 {
    let mut kept = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0
        && (mode & libc::S_IXGRP != 0 || !(creds.fsetid || creds.in_group(old_gid)))
    {
        kept &= !libc::S_ISGID;
    }
    kept
}

/// After `caller` changed the owner or group of the file behind `fd`, whose
/// status before was `before`: clear setuid/setgid as the VFS would (the
/// backing chown, made with the daemon's rights, may have kept some).
pub fn after_chown(caller: Caller, fd: BorrowedFd<'_>, before: &libc::stat) -> io::Result<()> {
    let mode = before.st_mode & 0o7777;
    if before.st_mode & libc::S_IFMT == libc::S_IFDIR || mode & (libc::S_ISUID | libc::S_ISGID) == 0
    {
        return Ok(());
    }
    let kept = mode_after_chown(mode, before.st_gid, &Creds::of(caller));
    let now = sys::fstat(fd)?.st_mode & 0o7777;
    if now & !kept != 0 {
        sys::fchmod_fd(fd, now & kept)?;
    }
    Ok(())
}

/// When `caller` changes the regular file behind `fd` (a write, a truncate,
/// an fallocate): clear its setuid/setgid bits as ext4 would; whether it
/// cleared any. Costs one fstat; /proc is read only for a file with either
/// bit set.
pub fn on_change(caller: Caller, fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = sys::fstat(fd)?;
    let mode = st.st_mode & 0o7777;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
        return Ok(false);
    }
    let after = mode_after_change(mode, st.st_gid, &Creds::of(caller));
    if after == mode {
        return Ok(false);
    }
    sys::fchmod_fd(fd, after)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Caller = Caller {
        uid: 65534,
        gid: 65534,
        pid: 1,
    };

    fn creds(groups: &[u32], fsetid: bool) -> Creds {
        Creds {
            fsgid: 65534,
            groups: groups.to_vec(),
            fsetid,
            sys_admin: false,
        }
    }

    #[test]
    fn ext4_rule() {
        let none = creds(&[], false);
        assert_eq!(mode_after_change(0o4755, 0, &none), 0o0755);
        assert_eq!(mode_after_change(0o2755, 0, &none), 0o0755);
        assert_eq!(mode_after_change(0o2745, 0, &none), 0o0745);
        assert_eq!(mode_after_change(0o2745, 65534, &none), 0o2745);
        assert_eq!(
            mode_after_change(0o2745, 100, &creds(&[100], false)),
            0o2745
        );
        assert_eq!(
            mode_after_change(0o2755, 100, &creds(&[100], false)),
            0o0755
        );
        assert_eq!(mode_after_change(0o6755, 0, &creds(&[], true)), 0o6755);
    }

    #[test]
    fn chown_rule() {
        let none = creds(&[], false);
        let root = creds(&[], true);
        assert_eq!(mode_after_chown(0o4755, 0, &root), 0o0755, "root too");
        assert_eq!(mode_after_chown(0o6745, 0, &root), 0o2745);
        assert_eq!(mode_after_chown(0o2757, 0, &root), 0o0757);
        assert_eq!(mode_after_chown(0o2747, 0, &none), 0o0747, "not in group 0");
        assert_eq!(mode_after_chown(0o2747, 65534, &none), 0o2747);
        assert_eq!(mode_after_chown(0o0755, 0, &none), 0o0755);
    }

    #[test]
    fn status_is_the_callers_or_ignored() {
        let s = "Name:\tsh\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                 Groups:\t100 200 \nCapEff:\t0000000000000010\n";
        let c = parse_status(s, NOBODY).unwrap();
        assert_eq!(c.groups, vec![100, 200]);
        assert!(c.fsetid);
        assert!(!c.sys_admin);
        let other = Caller {
            uid: 1000,
            ..NOBODY
        };
        assert!(parse_status(s, other).is_none(), "another process's status");
        let empty = s.replace("Groups:\t100 200 ", "Groups:\t");
        assert!(parse_status(&empty, NOBODY).unwrap().groups.is_empty());
    }
}
