//! The per-file header: the file's random ID and its data key, wrapped under a
//! key derived from the volume key (format 1) or from a write session's key
//! (format 2), with the volume ID and file ID bound in.
//!
//! Format 1 (84 bytes):
//! `magic "EFSH" | version u8 = 1 | reserved [3] = 0 | file_id [16] |
//!  nonce [12] | wrapped data key [32] | tag [16]`
//! Format 2 (100 bytes):
//! `magic "EFSH" | version u8 = 2 | reserved [3] = 0 | file_id [16] |
//!  session_id [16] | nonce [12] | wrapped data key [32] | tag [16]`

use super::aead::{Cipher, NONCE_LEN, TAG_LEN};
use super::keys::{derive, DataKey, FileId, SessionKey, VolumeId, VolumeKey, KEY_LEN};
use super::recipient::SessionId;
use super::secmem::scrub_stack;

/// The header length of format 1.
pub const HEADER_LEN: usize = 84;
/// The header length of format 2 (write-only volumes).
pub const HEADER_V2_LEN: usize = 100;
pub const MAX_HEADER_LEN: usize = HEADER_V2_LEN;
const MAGIC: &[u8; 4] = b"EFSH";
const VERSION: u8 = 1;
const VERSION_2: u8 = 2;
const PREFIX_LEN: usize = 24; // magic, version, reserved, file_id: the authenticated prefix
const PREFIX_V2_LEN: usize = 40; // and the session ID

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
    /// The write session whose key wraps the data key (format 2).
    session: Option<SessionId>,
    len: usize,
    bytes: [u8; MAX_HEADER_LEN],
}

impl std::fmt::Debug for FileHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHeader")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

/// Where a header version keeps its fields: everything before the nonce is
/// the authenticated prefix; the wrapped key and the tag follow the nonce.
struct Layout {
    version: u8,
    /// Offset of the nonce (the prefix's length).
    nonce: usize,
    len: usize,
    /// The data-key wrap label of the key it is derived from.
    label: &'static [u8],
}

const V1: Layout = Layout {
    version: VERSION,
    nonce: PREFIX_LEN,
    len: HEADER_LEN,
    label: b"envelopefs data-key wrap v1",
};
const V2: Layout = Layout {
    version: VERSION_2,
    nonce: PREFIX_V2_LEN,
    len: HEADER_V2_LEN,
    label: b"envelopefs data-key wrap v2",
};

impl Layout {
    fn key_at(&self) -> usize {
        self.nonce + NONCE_LEN
    }

    fn tag_at(&self) -> usize {
        self.key_at() + KEY_LEN
    }

    /// The cipher wrapping file `fid`'s data key, from the volume key
    /// (format 1) or a session key (format 2).
    fn wrap(&self, parent: &[u8; KEY_LEN], vid: &VolumeId, fid: &FileId) -> Cipher {
        Cipher::new(derive(parent, &vid.0, &[self.label, &fid.0]).expose())
    }

    fn aad(&self, b: &[u8], vid: &VolumeId) -> Vec<u8> {
        let mut a = b[..self.nonce].to_vec();
        a.extend_from_slice(&vid.0);
        a
    }

    /// Encrypts the key in place on the stack; the caller scrubs the stack.
    #[inline(never)]
    fn seal(
        &self,
        parent: &[u8; KEY_LEN],
        vid: &VolumeId,
        file_id: FileId,
        session: Option<SessionId>,
        key: &DataKey,
    ) -> FileHeader {
        let mut b = [0u8; MAX_HEADER_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4] = self.version;
        b[8..24].copy_from_slice(&file_id.0);
        if let Some(sid) = &session {
            b[24..40].copy_from_slice(&sid.0);
        }
        let nonce: [u8; NONCE_LEN] = super::random_array();
        b[self.nonce..self.key_at()].copy_from_slice(&nonce);
        b[self.key_at()..self.tag_at()].copy_from_slice(key.expose());
        let a = self.aad(&b, vid);
        let tag =
            self.wrap(parent, vid, &file_id)
                .seal(&nonce, &a, &mut b[self.key_at()..self.tag_at()]);
        b[self.tag_at()..self.len].copy_from_slice(&tag);
        FileHeader {
            file_id,
            session,
            len: self.len,
            bytes: b,
        }
    }

    fn parse(&self, raw: &[u8]) -> Result<FileHeader, HeaderError> {
        if raw.len() < self.len {
            return Err(HeaderError::Short(raw.len()));
        }
        // Nothing unauthenticated rides along.
        if raw.len() > self.len {
            return Err(HeaderError::Long(raw.len()));
        }
        if &raw[..4] != MAGIC || raw[4] != self.version || raw[5..8] != [0, 0, 0] {
            return Err(HeaderError::BadMagic);
        }
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[..self.len].copy_from_slice(raw);
        if self.version == VERSION && crate::fault::planted("fuzz-header-roundtrip") {
            bytes[..HEADER_LEN].copy_within(1.., 0); // drops the first byte
        }
        let id16 = |at: usize| -> [u8; 16] {
            let mut x = [0u8; 16];
            x.copy_from_slice(&raw[at..at + 16]);
            x
        };
        Ok(FileHeader {
            file_id: FileId(id16(8)),
            session: (self.version == VERSION_2).then(|| SessionId(id16(24))),
            len: self.len,
            bytes,
        })
    }

    /// Decrypts in place in the key arena: the data key never sits on the
    /// stack; the caller scrubs the stack of the key schedule.
    #[inline(never)]
    fn open(
        &self,
        h: &FileHeader,
        parent: &[u8; KEY_LEN],
        vid: &VolumeId,
    ) -> Result<DataKey, HeaderError> {
        if h.len != self.len {
            return Err(HeaderError::Auth);
        }
        let b = &h.bytes;
        let nonce: [u8; NONCE_LEN] = b[self.nonce..self.key_at()]
            .try_into()
            .map_err(|_| HeaderError::Auth)?;
        let tag: [u8; TAG_LEN] = b[self.tag_at()..self.len]
            .try_into()
            .map_err(|_| HeaderError::Auth)?;
        let mut key = DataKey::zeroed();
        key.expose_mut()
            .copy_from_slice(&b[self.key_at()..self.tag_at()]);
        self.wrap(parent, vid, &h.file_id)
            .open(&nonce, &self.aad(b, vid), key.expose_mut(), &tag)
            .map_err(|_| HeaderError::Auth)?;
        Ok(key)
    }
}

impl FileHeader {
    /// Wrap `key` for the file `file_id` in volume `vid`.
    pub fn seal(vk: &VolumeKey, vid: &VolumeId, file_id: FileId, key: &DataKey) -> FileHeader {
        let h = V1.seal(vk.expose(), vid, file_id, None, key);
        // The key was encrypted in place on the stack, under a key schedule there.
        scrub_stack();
        h
    }

    /// Wrap `key` for the file `file_id` under the session key `s` (format 2).
    pub fn seal_v2(
        s: &SessionKey,
        session: SessionId,
        vid: &VolumeId,
        file_id: FileId,
        key: &DataKey,
    ) -> FileHeader {
        let h = V2.seal(s.expose(), vid, file_id, Some(session), key);
        scrub_stack();
        h
    }

    /// Parse a header of the length the volume's format gives (84 or 100).
    pub fn parse_for(raw: &[u8], header_len: usize) -> Result<FileHeader, HeaderError> {
        if header_len == HEADER_V2_LEN {
            Self::parse_v2(raw)
        } else {
            Self::parse(raw)
        }
    }

    /// Parse a format 2 header (100 bytes, version 2).
    pub fn parse_v2(raw: &[u8]) -> Result<FileHeader, HeaderError> {
        V2.parse(raw)
    }

    /// The write session of a format 2 header.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Unwrap a format 2 header's data key with its session's key.
    pub fn open_v2(&self, s: &SessionKey, vid: &VolumeId) -> Result<DataKey, HeaderError> {
        let r = V2.open(self, s.expose(), vid);
        scrub_stack();
        r
    }

    /// Parse a format 1 header (84 bytes, version 1).
    pub fn parse(raw: &[u8]) -> Result<FileHeader, HeaderError> {
        V1.parse(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Unwrap the data key; fails if the header was edited or belongs to another volume.
    pub fn open(&self, vk: &VolumeKey, vid: &VolumeId) -> Result<DataKey, HeaderError> {
        let r = V1.open(self, vk.expose(), vid);
        // The wrapping key's schedule (and any AES-GCM spill) was on the stack.
        scrub_stack();
        r
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
            let mut raw = h.as_bytes().to_vec();
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
        let raw: [u8; HEADER_LEN] = h.as_bytes().try_into().unwrap();
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
        assert_eq!((p.file_id, p.as_bytes()), (FileId([3; 16]), &raw[..]));
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

        let sealed = FileHeader::seal(&vk, &vid, FileId(fid), &DataKey::from_bytes(dk))
            .as_bytes()
            .to_vec();
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

    #[test]
    fn v2_round_trip_binding_and_every_bit() {
        let s = SessionKey::random();
        let (sid, vid, dk) = (SessionId([6; 16]), VolumeId([1; 16]), DataKey::random());
        let h = FileHeader::seal_v2(&s, sid, &vid, FileId([9; 16]), &dk);
        assert_eq!(h.as_bytes().len(), HEADER_V2_LEN);
        assert_eq!(&h.as_bytes()[..8], b"EFSH\x02\0\0\0");
        assert_eq!(&h.as_bytes()[24..40], &[6; 16]);
        let p = FileHeader::parse_v2(h.as_bytes()).unwrap();
        assert_eq!(p.session(), Some(sid));
        assert_eq!(p.open_v2(&s, &vid).unwrap().expose(), dk.expose());
        assert_eq!(
            p.open_v2(&SessionKey::random(), &vid).unwrap_err(),
            HeaderError::Auth
        );
        assert_eq!(
            p.open_v2(&s, &VolumeId([2; 16])).unwrap_err(),
            HeaderError::Auth
        );
        // A v2 header is never a v1 one and the other way round.
        assert_eq!(FileHeader::parse(h.as_bytes()), Err(HeaderError::Long(100)));
        let v1 = FileHeader::seal(&VolumeKey::random(), &vid, FileId([9; 16]), &dk);
        assert_eq!(
            FileHeader::parse_v2(v1.as_bytes()),
            Err(HeaderError::Short(84))
        );
        for i in 0..HEADER_V2_LEN * 8 {
            let mut raw = h.as_bytes().to_vec();
            raw[i / 8] ^= 1 << (i % 8);
            let r = FileHeader::parse_for(&raw, HEADER_V2_LEN).and_then(|h| h.open_v2(&s, &vid));
            assert!(r.is_err(), "bit {i}");
        }
    }

    /// FORMAT.md's v2 header from `derive` and `Cipher` alone: key
    /// `HKDF(S, volume ID, "envelopefs data-key wrap v2" || file ID)`,
    /// associated data `bytes 0..40 || volume ID`.
    #[test]
    fn v2_header_format_matches_the_spec() {
        let (s, vid, fid, sid, dk) = ([1u8; 32], [2u8; 16], [3u8; 16], [4u8; 16], [5u8; 32]);
        let key = derive(&s, &vid, &[b"envelopefs data-key wrap v2", &fid]);
        let mut raw = [0u8; HEADER_V2_LEN];
        raw[..5].copy_from_slice(b"EFSH\x02");
        raw[8..24].copy_from_slice(&fid);
        raw[24..40].copy_from_slice(&sid);
        raw[40..52].copy_from_slice(&[6; 12]);
        raw[52..84].copy_from_slice(&dk);
        let aad = [&raw[..40], &vid[..]].concat();
        let tag = Cipher::new(key.expose()).seal(&[6; 12], &aad, &mut raw[52..84]);
        raw[84..].copy_from_slice(&tag);
        let opened = FileHeader::parse_v2(&raw)
            .unwrap()
            .open_v2(&SessionKey::from_bytes(s), &VolumeId(vid))
            .unwrap();
        assert_eq!(opened.expose(), &dk);
    }
}
