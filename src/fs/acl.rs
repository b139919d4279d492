//! POSIX ACLs in their xattr form (`system.posix_acl_access`,
//! `system.posix_acl_default`; linux/posix_acl_xattr.h), and the mode
//! arithmetic ext4 does with them (fs/posix_acl.c): an access ACL sets the
//! mode's permission bits, chmod sets the ACL's owner, mask (or group) and
//! other entries, and a directory's default ACL becomes a new entry's ACLs.
//!
//! The kernel enforces ACLs (FUSE_POSIX_ACL); the daemon stores them and keeps
//! them and the mode consistent. Values are validated before they are stored
//! (EINVAL), as the kernel's posix_acl_valid does.

use fuser::Errno;

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const HEADER_LEN: usize = 4;
const ENTRY_LEN: usize = 8;
/// The kernel asks for at most a page (fs/fuse/acl.c).
const MAX_LEN: usize = 4096;
const UNDEFINED_ID: u32 = u32::MAX;

pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A valid ACL: its entries in the kernel's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Parse and validate an xattr value; EINVAL unless it is exactly what
    /// the kernel accepts: version 2, whole entries, each tag once (USER and
    /// GROUP once per id, ids ascending), in tag order, owner, group and
    /// other present, a mask when there are named entries, permissions rwx.
    pub fn parse(v: &[u8]) -> Result<Acl, Errno> {
        if v.len() < HEADER_LEN || (v.len() - HEADER_LEN) % ENTRY_LEN != 0 || v.len() > MAX_LEN {
            return Err(Errno::EINVAL);
        }
        if u32::from_le_bytes([v[0], v[1], v[2], v[3]]) != VERSION {
            return Err(Errno::EINVAL);
        }
        let entries: Vec<Entry> = v[HEADER_LEN..]
            .chunks_exact(ENTRY_LEN)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let acl = Acl { entries };
        acl.validate()?;
        Ok(acl)
    }

    fn validate(&self) -> Result<(), Errno> {
        let mut last: Option<(u16, u32)> = None;
        let mut named = false;
        let mut seen = 0u16;
        for e in &self.entries {
            if e.perm & !7 != 0 {
                return Err(Errno::EINVAL);
            }
            let key = match e.tag {
                USER_OBJ | GROUP_OBJ | MASK | OTHER => (e.tag, 0),
                USER | GROUP => {
                    named = true;
                    (e.tag, e.id)
                }
                _ => return Err(Errno::EINVAL),
            };
            // Strictly ascending by (tag, id): order, and no duplicates.
            if last.is_some_and(|l| l >= key) {
                return Err(Errno::EINVAL);
            }
            last = Some(key);
            seen |= e.tag;
        }
        let needed = USER_OBJ | GROUP_OBJ | OTHER;
        if seen & needed != needed || (named && seen & MASK == 0) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    pub fn to_xattr(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.entries.len());
        v.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            v.extend_from_slice(&e.tag.to_le_bytes());
            v.extend_from_slice(&e.perm.to_le_bytes());
            let id = if matches!(e.tag, USER | GROUP) {
                e.id
            } else {
                UNDEFINED_ID
            };
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn perm_of(&self, tag: u16) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map(|e| u32::from(e.perm))
    }

    /// The mode an access ACL gives a file whose mode was `mode`, and whether
    /// the ACL says more than that mode (posix_acl_equiv_mode: an ACL of only
    /// owner, group and other is the mode, and ext4 stores none).
    pub fn apply_to_mode(&self, mode: u32) -> (u32, bool) {
        let user = self.perm_of(USER_OBJ).unwrap_or(0);
        let other = self.perm_of(OTHER).unwrap_or(0);
        let (group, extended) = match self.perm_of(MASK) {
            Some(m) => (m, true),
            None => (self.perm_of(GROUP_OBJ).unwrap_or(0), false),
        };
        let extended = extended || self.entries.iter().any(|e| matches!(e.tag, USER | GROUP));
        let new = (mode & !0o777) | (user << 6) | (group << 3) | other;
        (new, extended)
    }

    /// The ACL after a chmod to `mode` (posix_acl_chmod): the owner, the
    /// mask (or, without one, the group) and other take the mode's bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.entries.iter().any(|e| e.tag == MASK);
        for e in &mut self.entries {
            let bits = match e.tag {
                USER_OBJ => (mode >> 6) & 7,
                MASK => (mode >> 3) & 7,
                GROUP_OBJ if !has_mask => (mode >> 3) & 7,
                OTHER => mode & 7,
                _ => continue,
            };
            e.perm = bits as u16;
        }
    }

    /// A new entry's access ACL from its directory's default ACL and the
    /// mode it was created with (posix_acl_create_masq): returns the new
    /// mode, and the ACL unless it says no more than that mode.
    pub fn create_masq(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        let mut mode = mode;
        let mut extended = false;
        let has_mask = acl.entries.iter().any(|e| e.tag == MASK);
        for e in &mut acl.entries {
            let p = u32::from(e.perm);
            match e.tag {
                USER_OBJ => {
                    let p = p & ((mode >> 6) & 7);
                    e.perm = p as u16;
                    mode &= (p << 6) | !0o700;
                }
                USER | GROUP => extended = true,
                OTHER => {
                    let p = p & (mode & 7);
                    e.perm = p as u16;
                    mode &= p | !0o007;
                }
                _ => {}
            }
        }
        // The mask if there is one, else the owning group, meets the mode's group bits.
        let group_tag = if has_mask { MASK } else { GROUP_OBJ };
        extended |= has_mask;
        if let Some(e) = acl.entries.iter_mut().find(|e| e.tag == group_tag) {
            let p = u32::from(e.perm) & ((mode >> 3) & 7);
            e.perm = p as u16;
            mode &= (p << 3) | !0o070;
        }
        (mode, extended.then_some(acl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: u32 = UNDEFINED_ID;

    fn xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for (t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    fn extended() -> Vec<u8> {
        xattr(&[
            (USER_OBJ, 7, U),
            (USER, 6, 1000),
            (USER, 4, 2000),
            (GROUP_OBJ, 5, U),
            (GROUP, 4, 100),
            (MASK, 6, U),
            (OTHER, 0, U),
        ])
    }

    #[test]
    fn parses_and_writes_back_the_same_bytes() {
        let v = extended();
        assert_eq!(Acl::parse(&v).unwrap().to_xattr(), v);
        let base = xattr(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
        assert_eq!(Acl::parse(&base).unwrap().to_xattr(), base);
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let bad = [
            vec![],
            vec![2, 0, 0],
            xattr(&[]),
            {
                let mut v = extended();
                v[0] = 1;
                v
            },
            extended()[..extended().len() - 1].to_vec(),
            xattr(&[(USER_OBJ, 7, U), (OTHER, 0, U)]),
            xattr(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U)]),
            xattr(&[(GROUP_OBJ, 5, U), (USER_OBJ, 7, U), (OTHER, 0, U)]),
            xattr(&[(USER_OBJ, 8, U), (GROUP_OBJ, 5, U), (OTHER, 0, U)]),
            xattr(&[
                (USER_OBJ, 7, U),
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (OTHER, 0, U),
            ]),
            xattr(&[
                (USER_OBJ, 7, U),
                (USER, 7, 5),
                (GROUP_OBJ, 5, U),
                (OTHER, 0, U),
            ]),
            xattr(&[
                (USER_OBJ, 7, U),
                (USER, 7, 5),
                (USER, 7, 5),
                (GROUP_OBJ, 5, U),
                (MASK, 7, U),
                (OTHER, 0, U),
            ]),
            xattr(&[
                (USER_OBJ, 7, U),
                (USER, 7, 6),
                (USER, 7, 5),
                (GROUP_OBJ, 5, U),
                (MASK, 7, U),
                (OTHER, 0, U),
            ]),
            xattr(&[
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (OTHER, 0, U),
                (0x40, 0, U),
            ]),
            vec![0; MAX_LEN + 4],
        ];
        for b in bad {
            assert_eq!(Acl::parse(&b), Err(Errno::EINVAL), "{b:?}");
        }
    }

    #[test]
    fn mode_from_access_acl() {
        let acl = Acl::parse(&extended()).unwrap();
        assert_eq!(acl.apply_to_mode(0o2644), (0o2760, true));
        let base = Acl::parse(&xattr(&[
            (USER_OBJ, 6, U),
            (GROUP_OBJ, 4, U),
            (OTHER, 0, U),
        ]));
        assert_eq!(base.unwrap().apply_to_mode(0o777), (0o640, false));
    }

    #[test]
    fn chmod_sets_mask_or_group() {
        let mut acl = Acl::parse(&extended()).unwrap();
        acl.chmod(0o640);
        let e = acl.entries();
        assert_eq!(e[0].perm, 6);
        assert_eq!(e[3].perm, 5, "the group entry stays under a mask");
        assert_eq!(e[5].perm, 4);
        assert_eq!(e[6].perm, 0);
        let mut base = Acl::parse(&xattr(&[
            (USER_OBJ, 7, U),
            (GROUP_OBJ, 7, U),
            (OTHER, 7, U),
        ]))
        .unwrap();
        base.chmod(0o751);
        assert_eq!(base.apply_to_mode(0), (0o751, false));
    }

    #[test]
    fn create_masq_as_ext4() {
        let def = Acl::parse(&extended()).unwrap();
        // A file created 0666 under this default: owner rw, mask rw, other none.
        let (mode, acl) = def.create_masq(0o666);
        assert_eq!(mode, 0o660);
        let acl = acl.unwrap();
        assert_eq!(acl.apply_to_mode(0), (0o660, true));
        // Without named entries or mask the ACL is the mode.
        let base = Acl::parse(&xattr(&[
            (USER_OBJ, 7, U),
            (GROUP_OBJ, 5, U),
            (OTHER, 0, U),
        ]));
        let (mode, acl) = base.unwrap().create_masq(0o777);
        assert_eq!((mode, acl), (0o750, None));
        // Other bits of the mode survive.
        let (mode, _) = def.create_masq(0o1777);
        assert_eq!(mode, 0o1760);
    }
}
