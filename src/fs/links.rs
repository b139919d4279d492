//! Names and links: symlink, readlink, link, rename and unlink. A long name's
//! side file goes with its entry: made before it, removed after it.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags, Request};
use log::error;

use super::dir_ops::TakenIv;
use super::{io, EnvelopeFs, NameUse, Node, Res};
use crate::error::{volume_errno, VolumeError};
use crate::sys;
use crate::volume::{BackingName, Volume};

/// The two ends of a rename.
pub(super) struct RenameEnds<'a> {
    pub parent: INodeNo,
    pub name: &'a OsStr,
    pub new_parent: INodeNo,
    pub new_name: &'a OsStr,
}

impl EnvelopeFs {
    pub(super) fn read_link(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != FileType::Symlink {
            return Err(Errno::EINVAL);
        }
        let raw = sys::readlink_fd(node.fd().map_err(io)?.as_fd()).map_err(io)?;
        self.vol.open_symlink(&raw).map_err(|e| {
            match e {
                VolumeError::WriteOnly(_) => {
                    let path = node.backing_path();
                    super::refusals::warn_once(
                        &path,
                        format_args!(
                            "{path}: symlink of an earlier session: not read by a write-only mount"
                        ),
                    )
                }
                _ => error!(
                    "{}: symlink target fails authentication",
                    node.backing_path()
                ),
            }
            Errno::from_i32(volume_errno(&e))
        })
    }

    pub(super) fn make_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
    ) -> Res<(Arc<Node>, FileAttr)> {
        let entry = self.new_entry(parent, link_name)?;
        let target = target.as_os_str().as_bytes();
        if target.len() > Volume::MAX_SYMLINK_TARGET {
            return Err(Errno::ENAMETOOLONG);
        }
        let sealed_target = self
            .vol
            .encrypt_symlink(target)
            .map_err(|e| Errno::from_i32(crate::error::volume_errno(&e)))?;
        self.make_entry(&entry, |dir_fd, backing_name| {
            sys::symlinkat(&sealed_target, dir_fd, backing_name)
        })?;
        self.adopt_entry(req, &entry)
    }

    pub(super) fn make_link(
        &self,
        ino: INodeNo,
        new_parent: INodeNo,
        new_name: &OsStr,
    ) -> Res<(Arc<Node>, FileAttr)> {
        let entry = self.new_entry(new_parent, new_name)?;
        let node = self.node(ino)?;
        self.make_entry(&entry, |dir_fd, backing_name| {
            sys::linkat_fd(node.fd()?.as_fd(), dir_fd, backing_name)
        })?;
        self.lookup_backing(&entry.dir, &entry.backing.name)
    }

    pub(super) fn remove_link(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let _changing = self.writable()?;
        let dir = self.dir_node(parent)?;
        let backing = self.backing_name(&dir, name, NameUse::Existing)?;
        sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &backing.name, false).map_err(io)?;
        self.remove_side(&dir, &backing);
        Ok(())
    }

    pub(super) fn rename_entry(
        &self,
        req: &Request,
        ends: RenameEnds<'_>,
        flags: RenameFlags,
    ) -> Res<()> {
        let _changing = self.writable()?;
        let from_dir = self.dir_node(ends.parent)?;
        let to_dir = self.dir_node(ends.new_parent)?;
        let from = self.backing_name(&from_dir, ends.name, NameUse::Existing)?;
        let to = self.backing_name(&to_dir, ends.new_name, NameUse::New)?;
        let allowed = RenameFlags::RENAME_NOREPLACE
            | RenameFlags::RENAME_EXCHANGE
            | RenameFlags::RENAME_WHITEOUT;
        let whiteout = flags.contains(RenameFlags::RENAME_WHITEOUT);
        if !(flags - allowed).is_empty()
            || (whiteout && flags.contains(RenameFlags::RENAME_EXCHANGE))
        {
            return Err(Errno::EINVAL);
        }
        let rename = || {
            sys::renameat2(
                from_dir.fd().map_err(io)?.as_fd(),
                &from.name,
                to_dir.fd().map_err(io)?.as_fd(),
                &to.name,
                flags.bits(),
            )
            .map_err(io)
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            // Names stay where they are; only the entries behind them swap.
            return rename();
        }
        let taken_iv = if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            None
        } else {
            self.take_replaced_dir_iv(&from_dir, &from, &to_dir, &to)?
        };
        match self.with_side(&to_dir, &to, rename) {
            // A whiteout keeps the source's name, side file and all.
            Ok(()) if whiteout => self.give_whiteout(req, &from_dir, &from.name),
            Ok(()) => {
                if from.side_name() != to.side_name() || from_dir.id != to_dir.id {
                    self.remove_side(&from_dir, &from);
                }
                Ok(())
            }
            Err(err) => {
                if let Some(taken) = taken_iv {
                    Self::restore_iv(taken)?;
                }
                Err(err)
            }
        }
    }

    /// Replacing an empty directory by another: its IV file must go first.
    fn take_replaced_dir_iv(
        &self,
        from_dir: &Node,
        from: &BackingName,
        to_dir: &Node,
        to: &BackingName,
    ) -> Res<Option<TakenIv>> {
        if !self.vol.names().uses_diriv() {
            return Ok(None);
        }
        let source = sys::fstatat(from_dir.fd().map_err(io)?.as_fd(), &from.name).map_err(io)?;
        let Ok(target) = sys::fstatat(to_dir.fd().map_err(io)?.as_fd(), &to.name) else {
            return Ok(None);
        };
        let is_dir = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir(&target)
            && is_dir(&source)
            && (target.st_dev, target.st_ino) != (source.st_dev, source.st_ino)
        {
            return Ok(Some(self.take_dir_iv(to_dir, &to.name)?));
        }
        Ok(None)
    }
}
