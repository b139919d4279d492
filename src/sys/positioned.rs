//! Positioned reads and writes of whole buffers (pread/pwrite), retried on
//! EINTR and short transfers by one loop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Runs `step(done, offset + done)` until `len` bytes are done or a step
/// transfers nothing (end of file); a step returns what pread/pwrite return.
/// EINTR repeats the step. Returns the bytes done.
fn transfer_at(
    len: usize,
    offset: u64,
    mut step: impl FnMut(usize, libc::off_t) -> libc::ssize_t,
) -> io::Result<usize> {
    let mut done = 0;
    while done < len {
        let n = step(done, (offset + done as u64) as libc::off_t);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

/// Fills `buf` from `offset`, short only at end of file; the bytes read.
pub fn pread_exact_or_eof(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let len = buf.len();
    transfer_at(len, offset, |done, at| {
        // SAFETY: buf[done..] is valid for len - done bytes.
        unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf[done..].as_mut_ptr() as *mut libc::c_void,
                len - done,
                at,
            )
        }
    })
}

/// Writes all of `buf` at `offset`; EIO if the file takes no more.
pub fn pwrite_all(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<()> {
    let done = transfer_at(buf.len(), offset, |done, at| {
        // SAFETY: buf[done..] is valid for buf.len() - done bytes.
        unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                buf[done..].as_ptr() as *const libc::c_void,
                buf.len() - done,
                at,
            )
        }
    })?;
    if done < buf.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The loop itself, on scripted steps: EINTR repeats the step at the same
    /// place, a short transfer continues where it stopped, another error
    /// ends it with that error, a step of 0 ends it short.
    #[test]
    fn transfer_at_retries_eintr_and_continues_short_transfers() {
        fn scripted(
            len: usize,
            script: &[libc::ssize_t],
        ) -> (io::Result<usize>, Vec<(usize, libc::off_t)>) {
            let mut calls = Vec::new();
            let mut next = script.iter();
            let r = transfer_at(len, 1000, |done, at| {
                calls.push((done, at));
                let &n = next.next().expect("the loop stepped past its script");
                if n < 0 {
                    // SAFETY: errno is this thread's; -n is the errno to report.
                    unsafe { *libc::__errno_location() = -n as libc::c_int };
                    return -1;
                }
                n
            });
            (r, calls)
        }
        let eintr = -(libc::EINTR as libc::ssize_t);
        let (r, calls) = scripted(10, &[3, eintr, eintr, 4, 3]);
        assert_eq!(r.unwrap(), 10);
        assert_eq!(
            calls,
            [(0, 1000), (3, 1003), (3, 1003), (3, 1003), (7, 1007)]
        );
        let (r, calls) = scripted(10, &[6, 0]);
        assert_eq!(r.unwrap(), 6);
        assert_eq!(calls, [(0, 1000), (6, 1006)]);
        let (r, calls) = scripted(10, &[2, -(libc::EIO as libc::ssize_t)]);
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(calls, [(0, 1000), (2, 1002)]);
        assert_eq!(scripted(0, &[]).0.unwrap(), 0);
    }

    /// Whole buffers at an offset; a read past the end is short by exactly
    /// the missing bytes; a refused write gives its errno.
    #[test]
    fn whole_buffers_at_offsets_short_only_at_end_of_file() {
        let f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        pwrite_all(f.as_fd(), &data, 7).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 100_007);
        let mut back = vec![0xffu8; 100_000];
        assert_eq!(
            pread_exact_or_eof(f.as_fd(), &mut back, 7).unwrap(),
            100_000
        );
        assert_eq!(back, data);
        let mut tail = vec![0u8; 50];
        assert_eq!(
            pread_exact_or_eof(f.as_fd(), &mut tail, 100_000).unwrap(),
            7
        );
        assert_eq!(tail[..7], data[99_993..]);
        assert_eq!(
            pread_exact_or_eof(f.as_fd(), &mut tail, 200_000).unwrap(),
            0
        );
        let mut head = [0u8; 7];
        assert_eq!(pread_exact_or_eof(f.as_fd(), &mut head, 0).unwrap(), 7);
        assert_eq!(head, [0; 7]);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let e = pwrite_all(full.as_fd(), b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }
}
