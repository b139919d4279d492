//! What one user may take of the agent: connections (per user and in all),
//! the time a request may take to arrive, and audited denials per minute.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::kms::agent::MAX_REQUEST;

/// Open connections, by uid and in all.
pub struct Limits {
    per_user: usize,
    total: usize,
    open: Mutex<(HashMap<u32, usize>, usize)>,
}

/// One connection's place; given back when dropped.
pub struct Slot {
    limits: Arc<Limits>,
    uid: u32,
}

impl Limits {
    pub fn new(per_user: usize, total: usize) -> Self {
        Limits {
            per_user: per_user.max(1),
            total: total.max(1),
            open: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// A place for a connection of `uid`, if it is under both caps.
    pub fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut g = self.open.lock();
        let (by_uid, total) = &mut *g;
        let mine = by_uid.entry(uid).or_insert(0);
        if *mine >= self.per_user || *total >= self.total {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot {
            limits: self.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.limits.open.lock();
        let (by_uid, total) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = by_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_uid.remove(&self.uid);
            }
        }
    }
}

/// Read one request: the connection may idle `idle` before it begins; once
/// begun it must arrive whole within `request` (a client trickling bytes
/// holds its slot no longer); at most MAX_REQUEST bytes.
pub fn read_request(
    conn: &mut UnixStream,
    idle: Duration,
    request: Duration,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    conn.set_read_timeout(Some(idle))?;
    let mut first = [0u8; 1];
    if conn.read(&mut first)? == 0 {
        return Ok(None);
    }
    let deadline = Instant::now() + request;
    let mut rest = Deadline {
        conn,
        deadline,
        first: Some(first[0]),
    };
    crate::kms::agent::read_frame(&mut rest, MAX_REQUEST)
}

/// A reader that fails once its deadline passes.
struct Deadline<'a> {
    conn: &'a mut UnixStream,
    deadline: Instant,
    first: Option<u8>,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.first.take() {
            buf[0] = b;
            return Ok(1);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

/// Audited denials: at most [`DENIALS_PER_MINUTE`] lines a minute per
/// user; the rest are counted, and the next line logged says how many.
#[derive(Default)]
pub struct Denials {
    by_uid: Mutex<HashMap<u32, (Instant, u32, u64)>>,
}

pub const DENIALS_PER_MINUTE: u32 = 20;

impl Denials {
    /// Whether to log this denial; Some(how many went unlogged before it).
    pub fn admit(&self, uid: u32) -> Option<u64> {
        let mut m = self.by_uid.lock();
        let now = Instant::now();
        let e = m.entry(uid).or_insert((now, 0, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            e.0 = now;
            e.1 = 0;
        }
        if e.1 >= DENIALS_PER_MINUTE {
            e.2 += 1;
            return None;
        }
        e.1 += 1;
        Some(std::mem::take(&mut e.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_user_and_given_back() {
        let l = Arc::new(Limits::new(2, 3));
        let a = l.take(1).unwrap();
        let _b = l.take(1).unwrap();
        assert!(l.take(1).is_none());
        let _c = l.take(2).unwrap();
        assert!(l.take(3).is_none(), "the total cap");
        drop(a);
        assert!(l.take(1).is_some());
    }

    #[test]
    fn denials_are_logged_at_a_bounded_rate() {
        let d = Denials::default();
        for _ in 0..DENIALS_PER_MINUTE {
            assert_eq!(d.admit(7), Some(0));
        }
        assert_eq!(d.admit(7), None);
        assert_eq!(d.admit(8), Some(0));
    }
}
