//! Scanning a running process's memory for secrets (/proc/PID/smaps and
//! /proc/PID/mem), and the non-dumpable oracle: shared by the mount
//! daemon's (tests/hostile/core_dump.rs) and the key agent's
//! (tests/agent/memory.rs) memory tests.

use std::fs;
use std::os::unix::fs::FileExt;

pub const CAP_SYS_PTRACE: u32 = 19;

/// One mapping of /proc/PID/smaps.
#[derive(Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub name: String,
    pub flags: Vec<String>,
    pub locked_kb: u64,
}

impl Mapping {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Locked (`lo`, with `Locked:` above 0) and out of core dumps (`dd`).
    pub fn locked_undumped(&self) -> bool {
        self.has("lo") && self.has("dd") && self.locked_kb > 0
    }
}

pub fn mappings(pid: u32) -> Vec<Mapping> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Mapping> = Vec::new();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(m) = out.last_mut() {
                m.flags = rest.split_whitespace().map(String::from).collect();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Locked:") {
            if let Some(m) = out.last_mut() {
                let kb = rest.split_whitespace().next().unwrap_or("0");
                m.locked_kb = kb.parse().unwrap_or(0);
            }
            continue;
        }
        // A mapping's first line: "start-end perms offset dev inode [name]".
        let mut f = line.split_whitespace();
        let Some((a, b)) = f.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        out.push(Mapping {
            start,
            end,
            perms: f.next().unwrap_or("").to_owned(),
            name: f.nth(3).unwrap_or("").to_owned(),
            flags: Vec::new(),
            locked_kb: 0,
        });
    }
    out
}

/// Every address of the process's readable memory where `needle` occurs.
pub fn copies_of(pid: u32, maps: &[Mapping], needle: &[u8]) -> Vec<u64> {
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    const CHUNK: u64 = 1 << 20;
    let overlap = needle.len() as u64 - 1;
    let mut hits = Vec::new();
    let mut buf = vec![0u8; (CHUNK + overlap) as usize];
    for m in maps.iter().filter(|m| m.perms.starts_with('r')) {
        let mut at = m.start;
        while at < m.end {
            let len = (m.end - at).min(CHUNK + overlap) as usize;
            let Ok(n) = mem.read_at(&mut buf[..len], at) else {
                break; // [vvar] and the like cannot be read
            };
            for (i, w) in buf[..n].windows(needle.len()).enumerate() {
                if w[0] == needle[0] && w == needle {
                    hits.push(at + i as u64);
                }
            }
            at += CHUNK;
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits
}

/// Drop one capability from this thread's effective set (capabilities are
/// per thread; the thread ends right after).
pub fn drop_effective_cap(cap: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs as capget/capset take them.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        d[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads 8 bytes of process `pid`'s memory (process_vm_readv) as uid 0
/// without CAP_SYS_PTRACE in the effective set: the kernel allows that for a
/// dumpable root process and refuses (EPERM) one that made itself
/// non-dumpable — the oracle for PR_SET_DUMPABLE, since the daemon runs as
/// root and root-owned /proc files say nothing. (process_vm_readv checks the
/// caller's permitted set, which keeps CAP_SYS_PTRACE, against the target's;
/// /proc/PID/mem would compare the effective set and refuse either way.)
pub fn read_memory_without_ptrace(pid: u32) -> std::io::Result<()> {
    let maps = mappings(pid);
    let addr = maps
        .iter()
        .find(|m| m.perms.starts_with('r'))
        .map(|m| m.start)
        .unwrap();
    std::thread::spawn(move || {
        drop_effective_cap(CAP_SYS_PTRACE)?;
        let mut buf = [0u8; 8];
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: one local iovec over buf; the remote one is only read.
        let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })
    .join()
    .unwrap()
}
