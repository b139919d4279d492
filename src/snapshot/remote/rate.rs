//! `--limit-rate`: bytes per second over all transfers of a run, booked
//! before each transfer (a transfer waits until its bytes are due).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct RateLimit {
    bytes_per_sec: u64,
    start: Instant,
    booked: Mutex<u64>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: Option<u64>) -> Option<RateLimit> {
        bytes_per_sec.filter(|r| *r > 0).map(|r| RateLimit {
            bytes_per_sec: r,
            start: Instant::now(),
            booked: Mutex::new(0),
        })
    }

    /// Wait until `n` more bytes fit the rate.
    pub fn take(limit: Option<&RateLimit>, n: u64) {
        let Some(l) = limit else { return };
        let due = {
            let mut b = l.booked.lock();
            *b += n;
            l.start + Duration::from_secs_f64(*b as f64 / l.bytes_per_sec as f64)
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}
