//! The per-file header: the file's random ID and its data key, wrapped under a
//! key derived from the volume key with the volume ID and file ID bound in.
//!
//! Layout (84 bytes):
//! `magic "EFSH" | version u8 = 1 | reserved [3] = 0 | file_id [16] |
//!  nonce [12] | wrapped data key [32] | tag [16]`

use super::aead::{Cipher, NONCE_LEN, TAG_LEN};
use super::keys::{derive, DataKey, FileId, VolumeId, VolumeKey, KEY_LEN};
use super::secmem::scrub_stack;

pub const HEADER_LEN: usize = 84;
const MAGIC: &[u8; 4] = b"EFSH";
const VERSION: u8 = 1;
const PREFIX_LEN: usize = 24; // magic, version, reserved, file_id: the authenticated prefix

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("file header is too short ({0} bytes)")]
    Short(usize),
    #[error("file header is longer than this format's ({0} bytes)")]
    Long(usize),
    #[error("file header has a bad magic or version")]
    BadMagic,
    #[error("file header failed authentication (tampered, or from another volume)")]
    Auth,
}

/// A wrapped data key as stored in a header or an xattr.
#[derive(Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub file_id: FileId,
    bytes: [u8; HEADER_LEN],
}

impl std::fmt::Debug for FileHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHeader")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

fn wrap_key(vk: &VolumeKey, vid: &VolumeId, fid: &FileId) -> Cipher {
    let k = derive(
        vk.expose(),
        &vid.0,
        &[b"envelopefs data-key wrap v1", &fid.0],
    );
    Cipher::new(k.expose())
}

fn aad(prefix: &[u8], vid: &VolumeId) -> Vec<u8> {
    let mut a = prefix.to_vec();
    a.extend_from_slice(&vid.0);
    a
}

impl FileHeader {
    /// Wrap `key` for the file `file_id` in volume `vid`.
    pub fn seal(vk: &VolumeKey, vid: &VolumeId, file_id: FileId, key: &DataKey) -> FileHeader {
        let h = Self::seal_unscrubbed(vk, vid, file_id, key);
        // The key was encrypted in place on the stack, under a key schedule there.
        scrub_stack();
        h
    }

    #[inline(never)]
    fn seal_unscrubbed(
        vk: &VolumeKey,
        vid: &VolumeId,
        file_id: FileId,
        key: &DataKey,
    ) -> FileHeader {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4] = VERSION;
        b[8..24].copy_from_slice(&file_id.0);
        let nonce: [u8; NONCE_LEN] = super::random_array();
        b[24..36].copy_from_slice(&nonce);
        b[36..68].copy_from_slice(key.expose());
        let a = aad(&b[..PREFIX_LEN], vid);
        let (head, rest) = b.split_at_mut(36);
        let tag = wrap_key(vk, vid, &file_id).seal(&nonce, &a, &mut rest[..KEY_LEN]);
        let _ = head;
        b[68..84].copy_from_slice(&tag);
        FileHeader { file_id, bytes: b }
    }

    pub fn parse(raw: &[u8]) -> Result<FileHeader, HeaderError> {
        if raw.len() < HEADER_LEN {
            return Err(HeaderError::Short(raw.len()));
        }
        // Nothing unauthenticated rides along (a later format may define a
        // longer header; this one does not).
        if raw.len() > HEADER_LEN {
            return Err(HeaderError::Long(raw.len()));
        }
        if &raw[..4] != MAGIC || raw[4] != VERSION || raw[5..8] != [0, 0, 0] {
            return Err(HeaderError::BadMagic);
        }
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&raw[..HEADER_LEN]);
        if crate::fault::planted("fuzz-header-roundtrip") {
            bytes.copy_within(1.., 0); // drops the first byte
        }
        let mut fid = [0u8; 16];
        fid.copy_from_slice(&raw[8..24]);
        Ok(FileHeader {
            file_id: FileId(fid),
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    /// Unwrap the data key; fails if the header was edited or belongs to another volume.
    pub fn open(&self, vk: &VolumeKey, vid: &VolumeId) -> Result<DataKey, HeaderError> {
        let r = self.open_unscrubbed(vk, vid);
        // The wrapping key's schedule (and any AES-GCM spill) was on the stack.
        scrub_stack();
        r
    }

    /// Decrypts in place in the key arena: the data key never sits on the stack.
    #[inline(never)]
    fn open_unscrubbed(&self, vk: &VolumeKey, vid: &VolumeId) -> Result<DataKey, HeaderError> {
        let b = &self.bytes;
        let nonce: [u8; NONCE_LEN] = b[24..36].try_into().map_err(|_| HeaderError::Auth)?;
        let tag: [u8; TAG_LEN] = b[68..84].try_into().map_err(|_| HeaderError::Auth)?;
        let mut key = DataKey::zeroed();
        key.expose_mut().copy_from_slice(&b[36..68]);
        wrap_key(vk, vid, &self.file_id)
            .open(&nonce, &aad(&b[..PREFIX_LEN], vid), key.expose_mut(), &tag)
            .map_err(|_| HeaderError::Auth)?;
        Ok(key)
    }

    /// The same file's data key wrapped under another volume (snapshot `rekey`).
    pub fn rewrap(
        &self,
        old: (&VolumeKey, &VolumeId),
        new: (&VolumeKey, &VolumeId),
    ) -> Result<FileHeader, HeaderError> {
        let k = self.open(old.0, old.1)?;
        Ok(FileHeader::seal(new.0, new.1, self.file_id, &k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let vk = VolumeKey::random();
        let vid = VolumeId([1; 16]);
        let dk = DataKey::random();
        let h = FileHeader::seal(&vk, &vid, FileId([9; 16]), &dk);
        let p = FileHeader::parse(h.as_bytes()).unwrap();
        assert_eq!(p.open(&vk, &vid).unwrap().expose(), dk.expose());
        // Another volume ID or key fails.
        assert_eq!(
            p.open(&vk, &VolumeId([2; 16])).unwrap_err(),
            HeaderError::Auth
        );
        assert_eq!(
            p.open(&VolumeKey::random(), &vid).unwrap_err(),
            HeaderError::Auth
        );
        // Every single bit flip is detected.
        for i in 0..HEADER_LEN * 8 {
            let mut raw = *h.as_bytes();
            raw[i / 8] ^= 1 << (i % 8);
            let r = FileHeader::parse(&raw).and_then(|h| h.open(&vk, &vid));
            assert!(r.is_err(), "bit {i}");
        }
        assert_eq!(
            FileHeader::parse(&[0; 10]).unwrap_err(),
            HeaderError::Short(10)
        );
        // Debug shows neither the data key nor the wrapped key, in any of
        // the ways bytes are usually printed.
        let shown = format!("{h:?} {p:?}");
        for secret in [&dk.expose()[..], &h.as_bytes()[36..68]] {
            let hex: String = secret[..8].iter().map(|x| format!("{x:02x}")).collect();
            let dec = format!("{:?}", &secret[..8]);
            let dec = dec.trim_start_matches('[').trim_end_matches(']');
            assert!(!shown.contains(&hex) && !shown.contains(dec), "{shown}");
        }
    }

    #[test]
    fn rewrap_keeps_key() {
        let (vk1, vk2) = (VolumeKey::random(), VolumeKey::random());
        let (v1, v2) = (VolumeId([1; 16]), VolumeId([2; 16]));
        let dk = DataKey::random();
        let h = FileHeader::seal(&vk1, &v1, FileId([3; 16]), &dk);
        let h2 = h.rewrap((&vk1, &v1), (&vk2, &v2)).unwrap();
        assert_eq!(h2.file_id, h.file_id);
        assert_eq!(h2.open(&vk2, &v2).unwrap().expose(), dk.expose());
        assert!(h2.open(&vk1, &v1).is_err());
    }

    #[test]
    fn debug_names_the_file() {
        let h = FileHeader::seal(
            &VolumeKey::random(),
            &VolumeId([1; 16]),
            FileId([0x5c; 16]),
            &DataKey::random(),
        );
        let shown = format!("{h:?}");
        assert!(shown.starts_with("FileHeader"), "{shown}");
        assert!(
            shown.contains(&format!("{:?}", FileId([0x5c; 16]))),
            "{shown}"
        );
    }

    #[test]
    fn parse_checks_length_and_prefix_only() {
        let h = FileHeader::seal(
            &VolumeKey::random(),
            &VolumeId([1; 16]),
            FileId([3; 16]),
            &DataKey::random(),
        );
        let raw = *h.as_bytes();
        assert_eq!(&raw[..8], b"EFSH\x01\0\0\0");
        assert_eq!(&raw[8..24], &[3; 16]);
        assert_eq!(
            FileHeader::parse(&raw[..HEADER_LEN - 1]),
            Err(HeaderError::Short(HEADER_LEN - 1))
        );
        let mut long = raw.to_vec();
        long.push(0);
        assert_eq!(
            FileHeader::parse(&long),
            Err(HeaderError::Long(HEADER_LEN + 1))
        );
        // Each bit of magic, version and reserved is checked before any key is used.
        for i in 0..8 * 8 {
            let mut bad = raw;
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(
                FileHeader::parse(&bad),
                Err(HeaderError::BadMagic),
                "bit {i}"
            );
        }
        let p = FileHeader::parse(&raw).unwrap();
        assert_eq!((p.file_id, p.as_bytes()), (FileId([3; 16]), &raw));
        assert_eq!(p, h);
    }

    /// FORMAT.md's header, built here from `derive` and `Cipher` alone: key
    /// `HKDF(volume key, volume ID, "envelopefs data-key wrap v1" || file ID)`,
    /// associated data `bytes 0..24 || volume ID`.
    #[test]
    fn header_format_matches_the_spec() {
        let (vk, vid, fid, dk) = ([1u8; 32], [2u8; 16], [3u8; 16], [4u8; 32]);
        let key = derive(&vk, &vid, &[b"envelopefs data-key wrap v1", &fid]);
        let cipher = Cipher::new(key.expose());
        let mut raw = [0u8; HEADER_LEN];
        raw[..5].copy_from_slice(b"EFSH\x01");
        raw[8..24].copy_from_slice(&fid);
        raw[24..36].copy_from_slice(&[5; 12]);
        raw[36..68].copy_from_slice(&dk);
        let aad = [&raw[..24], &vid[..]].concat();
        let tag = cipher.seal(&[5; 12], &aad, &mut raw[36..68]);
        raw[68..].copy_from_slice(&tag);
        let (vk, vid) = (VolumeKey::from_bytes(vk), VolumeId(vid));
        let opened = FileHeader::parse(&raw).unwrap().open(&vk, &vid).unwrap();
        assert_eq!(opened.expose(), &dk);

        let sealed = *FileHeader::seal(&vk, &vid, FileId(fid), &DataKey::from_bytes(dk)).as_bytes();
        let (nonce, tag) = (
            sealed[24..36].try_into().unwrap(),
            sealed[68..].try_into().unwrap(),
        );
        let mut wrapped = sealed[36..68].to_vec();
        let aad = [&sealed[..24], &vid.0[..]].concat();
        cipher.open(nonce, &aad, &mut wrapped, tag).unwrap();
        assert_eq!(wrapped, dk);
    }

    #[test]
    fn rewrap_needs_the_old_key() {
        let (vk, v1, v2) = (VolumeKey::random(), VolumeId([1; 16]), VolumeId([2; 16]));
        let h = FileHeader::seal(&vk, &v1, FileId([3; 16]), &DataKey::random());
        let other = VolumeKey::random();
        assert_eq!(h.rewrap((&other, &v1), (&vk, &v2)), Err(HeaderError::Auth));
    }
}
