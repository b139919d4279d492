//! FUSE over io_uring (envelopefs fork; Linux 6.14+ with `fuse.enable_uring=1`).
//!
//! The kernel keeps one request queue per CPU and puts a request on the queue
//! of the CPU its caller runs on. Each queue here is served by one thread
//! pinned to that CPU, so a request is handled, and its caller woken, without
//! a cross-CPU wake-up: on virtual machines that wake-up dominates the cost of
//! a small request.
//!
//! Each ring entry is one buffer: the 288-byte `fuse_uring_req_header`
//! (in/out header, per-op header, entry metadata) followed by the payload. A
//! request is made contiguous in the `/dev/fuse` layout (header, per-op
//! header, payload) by moving the two headers to just before the payload, so
//! the parser and the dispatcher are the ones the `/dev/fuse` path uses. The
//! reply is captured by `ReplySender::Ring` and copied into the entry.
//!
//! Who replies: a filesystem replies to a ring request either before its
//! method returns, or later from any thread. Only the thread serving the entry
//! (its queue thread, or the helper thread a large read was lent to) writes
//! the entry, and only the queue thread commits it: a reply sent during the
//! method is captured and written by the serving thread once the method
//! returns; one sent after it (the method returned with the reply object
//! alive) is routed to the queue thread (`LateCommit`), which writes and
//! commits the entry it is still holding for that request. The entry's
//! payload area is lent for a reply body (`data_in_place`) only to the
//! serving thread during the method: lent to another thread, the body could
//! be written after the method returned, when no one routes it to the queue
//! thread (the entry would never be committed). Debug builds assert both:
//! `filled` runs on the serving thread before any late routing, and an entry
//! takes back only the reply of the request it was sent out for
//! (`Entry::take_back`), never another request's.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::sync::Arc;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::ll::Operation;
use crate::reply::ReplyEmpty;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: in_out[128], op_in[128], ring_ent_in_out.
const OP_IN_OFF: usize = 128;
const OP_IN_SIZE: usize = 128;
const ENT_IN_OUT_OFF: usize = 256;
const HEADER_SIZE: usize = 288;
const COMMIT_ID_OFF: usize = ENT_IN_OUT_OFF + 8;
const PAYLOAD_SZ_OFF: usize = ENT_IN_OUT_OFF + 16;
const IN_HEADER_SIZE: usize = 40;
const OUT_HEADER_SIZE: usize = 16;
/// user_data of the teardown eventfd poll.
const STOP_TOKEN: u64 = u64::MAX;
/// user_data of the helper's "entries handed back" eventfd read.
const DONE_TOKEN: u64 = u64::MAX - 1;

/// A reply captured for a ring entry. The out-header, and the body when it
/// cannot go straight into the entry, are staged here; when the request left
/// the entry's payload area unused (reads, getattr...), the body is written
/// there directly, saving a copy of up to max_write bytes.
#[derive(Debug, Default)]
pub(crate) struct RingReply {
    staged: Vec<u8>,
    direct: Option<RingPayload>,
    direct_len: Option<usize>,
    /// A reply was captured for the current request.
    replied: bool,
    /// Set when the request returned from dispatch without a reply while
    /// its reply object lives on (the filesystem finishes it on another
    /// thread): the reply, once sent, goes to the queue thread through this.
    late: Option<LateCommit>,
    /// The thread serving the entry (set by `reset`): the only one the
    /// payload area is lent to.
    server: Option<std::thread::ThreadId>,
}

/// Where a reply sent after its request returned from dispatch goes: the
/// queue thread that owns the entry copies it in and commits it.
#[derive(Debug, Clone)]
struct LateRoute {
    tx: std::sync::mpsc::Sender<Late>,
    /// The queue's "entries handed back" eventfd, kept open while a late
    /// reply may still write to it.
    efd: Arc<std::os::fd::OwnedFd>,
    /// The entry was lent to the helper thread (and counts as lent out).
    lent: bool,
}

#[derive(Debug)]
struct LateCommit {
    route: LateRoute,
    idx: usize,
    unique: u64,
}

/// A late reply, captured in `sink`, for entry `idx`.
struct Late {
    idx: usize,
    unique: u64,
    lent: bool,
    sink: Arc<Mutex<RingReply>>,
}

impl LateCommit {
    fn send(self, sink: Arc<Mutex<RingReply>>) {
        let late = Late {
            idx: self.idx,
            unique: self.unique,
            lent: self.route.lent,
            sink,
        };
        // The queue thread may be gone (unmounted): then the kernel has
        // cancelled the entry and the reply has nowhere to go.
        if self.route.tx.send(late).is_ok() {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd that the
            // route's Arc keeps open.
            unsafe { libc::write(self.route.efd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }
}

/// Captures a reply for a ring entry; one sent late (after its request
/// returned from dispatch) is handed to the queue thread to commit.
pub(crate) fn ring_send(sink: &Arc<Mutex<RingReply>>, data: &[std::io::IoSlice<'_>]) {
    let mut reply = sink.lock();
    reply.capture(data);
    if let Some(late) = reply.late.take() {
        drop(reply);
        late.send(sink.clone());
    }
}

/// The payload area of the ring entry being served.
#[derive(Debug)]
struct RingPayload {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

// SAFETY: the pointer is only written through while the ring thread that
// owns the entry waits in `dispatch` for the reply; `direct` is cleared
// before the entry is touched again.
unsafe impl Send for RingPayload {}

impl RingReply {
    fn reset(&mut self, direct: Option<RingPayload>) {
        self.staged.clear();
        self.direct = direct;
        self.direct_len = None;
        self.replied = false;
        self.late = None;
        self.server = Some(std::thread::current().id());
    }

    fn on_server(&self) -> bool {
        self.server == Some(std::thread::current().id())
    }

    /// Lends the entry's payload area (its whole length) for a reply body of
    /// at most `cap` bytes, if the request left it free, it is that large
    /// and the caller is the thread serving the entry (see the module doc).
    pub(crate) fn lend_payload(&mut self, cap: usize) -> Option<(std::ptr::NonNull<u8>, usize)> {
        if !self.on_server() {
            return None;
        }
        match &self.direct {
            Some(p) if p.cap >= cap => self.direct.take().map(|p| (p.ptr, p.cap)),
            _ => None,
        }
    }

    /// Records a successful reply whose `n`-byte body was written into the
    /// lent payload area.
    pub(crate) fn filled(&mut self, unique: u64, n: usize) {
        // Only the serving thread is lent the payload, during the method, so
        // the reply cannot have been routed late (it would never be committed).
        debug_assert!(
            self.on_server() && self.late.is_none(),
            "a reply filled the ring entry off the thread serving it"
        );
        self.staged.clear();
        self.staged
            .extend_from_slice(&((OUT_HEADER_SIZE + n) as u32).to_ne_bytes());
        self.staged.extend_from_slice(&0i32.to_ne_bytes());
        self.staged.extend_from_slice(&unique.to_ne_bytes());
        self.direct_len = Some(n);
        self.replied = true;
    }

    pub(crate) fn capture(&mut self, data: &[std::io::IoSlice<'_>]) {
        self.staged.clear();
        self.direct_len = None;
        self.replied = true;
        let total: usize = data.iter().map(|d| d.len()).sum();
        if let Some(p) = &self.direct {
            if total >= OUT_HEADER_SIZE && total - OUT_HEADER_SIZE <= p.cap {
                let mut at = 0usize;
                for d in data {
                    let mut d: &[u8] = d;
                    if at < OUT_HEADER_SIZE {
                        let n = d.len().min(OUT_HEADER_SIZE - at);
                        self.staged.extend_from_slice(&d[..n]);
                        d = &d[n..];
                        at += n;
                    }
                    if d.is_empty() {
                        // All header (a slice shorter than the out-header): no
                        // body offset yet, and `at - OUT_HEADER_SIZE` would wrap.
                        continue;
                    }
                    // SAFETY: `at - OUT_HEADER_SIZE + d.len() <= total -
                    // OUT_HEADER_SIZE <= cap`, inside the payload area, which
                    // no live reference covers (see RingPayload).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            d.as_ptr(),
                            p.ptr.as_ptr().add(at - OUT_HEADER_SIZE),
                            d.len(),
                        );
                    }
                    at += d.len();
                }
                self.direct_len = Some(total - OUT_HEADER_SIZE);
                return;
            }
        }
        for d in data {
            self.staged.extend_from_slice(d);
        }
    }
}

/// One ring entry's memory. `u64` storage keeps every header 8-aligned, as
/// the parser requires.
struct Entry {
    mem: Box<[u64]>,
    iov: Box<[libc::iovec; 2]>,
    commit_id: u64,
    /// The request whose reply the entry is out for (lent to the helper, or
    /// waiting for a late reply); the queue thread leaves it alone meanwhile.
    out_for: Option<u64>,
}

impl Entry {
    fn new(payload: usize) -> Entry {
        // Room beyond the kernel's maximum payload, so that a read can be
        // filled in place with its ciphertext (which is larger) and decrypted
        // there (see `ReplyData::data_in_place`).
        let payload = payload + payload / 8;
        let words = (HEADER_SIZE + payload).div_ceil(8);
        let mut mem = vec![0u64; words].into_boxed_slice();
        let base = mem.as_mut_ptr().cast::<u8>();
        let iov = Box::new([
            libc::iovec {
                iov_base: base.cast(),
                iov_len: HEADER_SIZE,
            },
            libc::iovec {
                // SAFETY: HEADER_SIZE is inside the allocation of
                // HEADER_SIZE + payload bytes.
                iov_base: unsafe { base.add(HEADER_SIZE) }.cast(),
                iov_len: payload,
            },
        ]);
        Entry {
            mem,
            iov,
            commit_id: 0,
            out_for: None,
        }
    }

    /// The entry goes out awaiting the reply to request `unique`.
    fn send_out(&mut self, unique: u64) {
        debug_assert!(self.out_for.is_none(), "a ring entry sent out twice");
        self.out_for = Some(unique);
    }

    /// The entry comes back with the reply to `unique` (`None`: from the
    /// helper, which replied to the request it was lent).
    fn take_back(&mut self, unique: Option<u64>) {
        let out = self.out_for.take();
        debug_assert!(
            out.is_some() && (unique.is_none() || unique == out),
            "a reply for request {unique:?} reached a ring entry out for {out:?}"
        );
    }

    fn bytes(&mut self) -> &mut [u8] {
        let len = self.mem.len() * 8;
        // SAFETY: the u64 slice is `len` initialised bytes; u8 has no
        // alignment or validity requirement.
        unsafe { std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast::<u8>(), len) }
    }
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    u64::from(u32_at(buf, off)) | (u64::from(u32_at(buf, off + 4)) << 32)
}

/// Reads at least this large go to the queue's helper thread: kernel
/// readahead issues them ahead of the reader, and served on the reader's own
/// CPU they would wait for it (and it for them).
const OFFLOAD_READ_MIN: u32 = 128 * 1024;
const FUSE_READ: u32 = 15;

fn offload(buf: &[u8]) -> bool {
    // fuse_in_header.opcode at 4; fuse_read_in.size at 16 of the op header.
    u32_at(buf, 4) == FUSE_READ && u32_at(buf, OP_IN_OFF + 16) >= OFFLOAD_READ_MIN
}

/// Entries a queue may add while requests wait for late replies (parked by
/// the filesystem), so that they do not take every entry and stall the
/// CPU's other requests; each is max_write and an eighth more.
const MAX_EXTRA_ENTRIES: usize = 16;

/// A CPU set with no CPU in it.
fn empty_cpu_set() -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    unsafe { std::mem::zeroed() }
}

/// Lets the calling thread run on the CPUs in `set` only.
fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: sched_setaffinity reads the set we pass, nothing else.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the calling thread run on the process's CPUs but `cpu` (if there is
/// another). The process's set is the main thread's: queue threads and
/// their helpers inherit a pinned one.
fn keep_off_cpu(cpu: usize) {
    let mut set = empty_cpu_set();
    // SAFETY: sched_getaffinity writes the set we own; CPU_CLR and CPU_COUNT
    // touch only that set.
    let others = unsafe {
        if libc::sched_getaffinity(
            libc::getpid(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        ) != 0
        {
            return;
        }
        libc::CPU_CLR(cpu, &mut set);
        libc::CPU_COUNT(&set)
    };
    if others > 0 {
        let _ = set_affinity(&set);
    }
}

/// An entry lent to the helper thread; the queue thread leaves it alone
/// until the helper hands its index back.
struct Lent {
    idx: usize,
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the memory behind `ptr` is used by exactly one thread at a time:
// the queue thread lends it and takes it back through channels.
unsafe impl Send for Lent {}

fn cmd_req(qid: u16, commit_id: u64) -> [u8; 80] {
    // struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; u8 pad[6]; }
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

fn register_sqe(dev: RawFd, qid: u16, idx: usize, ent: &Entry) -> squeue::Entry128 {
    let sqe = opcode::UringCmd80::new(types::Fd(dev), CMD_REGISTER)
        .cmd(cmd_req(qid, 0))
        .addr(Some(ent.iov.as_ptr() as u64))
        .build()
        .user_data(idx as u64);
    // The crate has no setter for `sqe->len`, which REGISTER uses for the
    // iovec count (2).
    // SAFETY: Entry128 is repr(C), 128 bytes, all initialised (built from a
    // zeroed SQE); `len` is the u32 at offset 24 of `struct io_uring_sqe`.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
    // SAFETY: as above, the bytes are a valid Entry128.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

fn commit_sqe(dev: RawFd, qid: u16, idx: usize, ent: &Entry) -> squeue::Entry128 {
    opcode::UringCmd80::new(types::Fd(dev), CMD_COMMIT_AND_FETCH)
        .cmd(cmd_req(qid, ent.commit_id))
        .build()
        .user_data(idx as u64)
}

/// Serves queue `qid` until the connection ends or `stop_fd` is signalled.
pub(crate) fn serve_queue<FS: Filesystem>(
    se: &SessionEventLoop<FS>,
    qid: u16,
    depth: usize,
    payload: usize,
    stop_fd: RawFd,
    sched: Option<Arc<crate::uring_sched::Sched>>,
    started: std::sync::mpsc::Sender<bool>,
) -> io::Result<()> {
    let mut pinned: libc::cpu_set_t = empty_cpu_set();
    // SAFETY: CPU_SET writes one bit of a set we own.
    unsafe { libc::CPU_SET(usize::from(qid), &mut pinned) };
    if let Err(e) = set_affinity(&pinned) {
        warn!("io_uring queue {qid}: cannot pin to its CPU: {e}");
    }
    let mut class = sched.map(|s| crate::uring_sched::QueueClass::register(&s, usize::from(qid)));
    // Reads out with the helper, and whether this batch commits one.
    let mut lent_out = 0usize;
    // Entries out for a late reply.
    let mut late_out = 0usize;
    let mut committing_read = false;
    let built = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .build(((depth + MAX_EXTRA_ENTRIES) as u32 + 1) * 2);
    let mut ring = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = started.send(false);
            return Err(e);
        }
    };
    let dev = se.ch.as_fd().as_raw_fd();
    let mut entries: Vec<Entry> = (0..depth).map(|_| Entry::new(payload)).collect();
    let mut stop_buf = 0u64;
    let mut done_buf = 0u64;
    // SAFETY: plain syscall; the result is checked before use.
    let done_efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if done_efd < 0 {
        let _ = started.send(false);
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let done_efd = Arc::new(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(done_efd)
    });
    // Replies sent after their request returned from dispatch (the
    // filesystem parked the request), to be committed here.
    let (late_tx, late_rx) = std::sync::mpsc::channel::<Late>();
    let route = LateRoute {
        tx: late_tx,
        efd: done_efd.clone(),
        lent: false,
    };
    let helper_route = LateRoute {
        lent: true,
        ..route.clone()
    };
    let done_read = |buf: *mut u64| {
        opcode::Read::new(types::Fd(done_efd.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(DONE_TOKEN)
            .into()
    };
    // The helper serves lent entries on any CPU but the queue's. Started before
    // the entries are registered: a queue must not register and then fail.
    let (lend_tx, lend_rx) = std::sync::mpsc::channel::<Lent>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<usize>();
    let helper_se = SessionEventLoop {
        thread_name: se.thread_name.replace("ring", "help"),
        ch: se.ch.clone(),
        filesystem: se.filesystem.clone(),
        allowed: se.allowed,
        session_owner: se.session_owner,
    };
    let back_efd = done_efd.clone();
    let helper = std::thread::Builder::new()
        .name(helper_se.thread_name.clone())
        .spawn(move || {
            // Off the queue's CPU, where the reader runs: there the read
            // would wait for it (and the reader for the read).
            keep_off_cpu(usize::from(qid));
            let mut sink = Arc::new(Mutex::new(RingReply::default()));
            let mut scratch: Vec<u64> = Vec::new();
            for lent in lend_rx {
                // SAFETY: the queue thread lent these bytes to us alone.
                let buf = unsafe { std::slice::from_raw_parts_mut(lent.ptr.as_ptr(), lent.len) };
                let at = (lent.idx, &helper_route);
                if !handle(&helper_se, buf, &mut sink, &mut scratch, at) {
                    // Replied later, through the route.
                    continue;
                }
                if back_tx.send(lent.idx).is_err() {
                    break;
                }
                let one = 1u64;
                // SAFETY: writes 8 bytes from a live u64 to an eventfd that
                // the Arc keeps open.
                unsafe { libc::write(back_efd.as_raw_fd(), (&raw const one).cast(), 8) };
            }
        })?;
    // SAFETY: the pushed SQEs point at iovecs, entry buffers, `stop_buf` and
    // `done_buf` that outlive the ring: it is dropped (cancelling what the
    // kernel still holds) before them at the end of this function.
    unsafe {
        let mut sq = ring.submission();
        for (i, ent) in entries.iter().enumerate() {
            sq.push(&register_sqe(dev, qid, i, ent))
                .map_err(io::Error::other)?;
        }
        let poll = opcode::Read::new(types::Fd(stop_fd), (&raw mut stop_buf).cast(), 8)
            .build()
            .user_data(STOP_TOKEN);
        sq.push(&poll.into()).map_err(io::Error::other)?;
        sq.push(&done_read(&raw mut done_buf))
            .map_err(io::Error::other)?;
    }
    let submitted = ring.submit();
    let _ = started.send(submitted.is_ok());
    submitted?;

    let mut sink = Arc::new(Mutex::new(RingReply::default()));
    let mut scratch: Vec<u64> = Vec::new();
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(depth + 2);
    // SQEs to queue once this batch of completions is handled.
    let mut next: Vec<squeue::Entry128> = Vec::with_capacity(depth + 2);
    let result = 'serve: loop {
        if let Some(c) = class.as_mut() {
            c.settle(lent_out > 0 || committing_read);
        }
        committing_read = false;
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => break Err(e),
        }
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(token, res) in &done {
            if token == STOP_TOKEN {
                break 'serve Ok(());
            }
            if token == DONE_TOKEN {
                while let Ok(idx) = back_rx.try_recv() {
                    lent_out = lent_out.saturating_sub(1);
                    committing_read = true;
                    if let Some(ent) = entries.get_mut(idx) {
                        ent.take_back(None);
                        next.push(commit_sqe(dev, qid, idx, ent));
                    }
                }
                while let Ok(late) = late_rx.try_recv() {
                    if late.lent {
                        lent_out = lent_out.saturating_sub(1);
                        committing_read = true;
                    } else {
                        late_out = late_out.saturating_sub(1);
                    }
                    if let Some(ent) = entries.get_mut(late.idx) {
                        ent.take_back(Some(late.unique));
                        write_reply(ent.bytes(), &late.sink.lock(), true, late.unique);
                        next.push(commit_sqe(dev, qid, late.idx, ent));
                    }
                }
                next.push(done_read(&raw mut done_buf));
                continue;
            }
            let idx = token as usize;
            let Some(ent) = entries.get_mut(idx) else {
                continue;
            };
            if res == -libc::EAGAIN || res == -libc::EINTR {
                next.push(if ent.commit_id == 0 {
                    register_sqe(dev, qid, idx, ent)
                } else {
                    commit_sqe(dev, qid, idx, ent)
                });
                continue;
            }
            if res < 0 {
                // ENOTCONN/ECANCELED/ENODEV: the connection is gone.
                if ![libc::ENOTCONN, libc::ECANCELED, libc::ENODEV].contains(&-res) {
                    error!(
                        "io_uring queue {qid}: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                break 'serve Ok(());
            }
            // The kernel fills only entries that were committed.
            debug_assert!(
                ent.out_for.is_none(),
                "the kernel filled an entry still out"
            );
            ent.commit_id = u64_at(ent.bytes(), COMMIT_ID_OFF);
            let unique = u64_at(ent.bytes(), 8);
            if offload(ent.bytes()) {
                ent.send_out(unique);
                let bytes = ent.bytes();
                let lent = Lent {
                    idx,
                    ptr: std::ptr::NonNull::from(&mut bytes[0]),
                    len: bytes.len(),
                };
                if lend_tx.send(lent).is_ok() {
                    lent_out += 1;
                    continue;
                }
                ent.take_back(None);
            }
            if handle(se, ent.bytes(), &mut sink, &mut scratch, (idx, &route)) {
                next.push(commit_sqe(dev, qid, idx, ent));
            } else {
                ent.send_out(unique);
                late_out += 1;
                // Keep two entries free for the CPU's other requests.
                let free = entries.len().saturating_sub(late_out + lent_out);
                if free < 2 && entries.len() < depth + MAX_EXTRA_ENTRIES {
                    let i = entries.len();
                    entries.push(Entry::new(payload));
                    next.push(register_sqe(dev, qid, i, &entries[i]));
                }
            }
        }
        for sqe in next.drain(..) {
            // SAFETY: as for the first registration. An error leaves the
            // loop by `break`, so the clean-up below always runs.
            if let Err(e) = unsafe { ring.submission().push(&sqe) } {
                break 'serve Err(io::Error::other(e));
            }
        }
    };
    // The helper may hold a lent entry: it finishes before the entries go.
    drop(lend_tx);
    let _ = helper.join();
    // The kernel may still hold entries; dropping the ring cancels them
    // before the buffers below are freed.
    drop(ring);
    drop(entries);
    result
}

#[cfg(test)]
mod tests;

/// Turns a ring entry's bytes into one request, dispatches it and writes the
/// reply back into the entry; false when the filesystem replies later (from
/// another thread): then the reply reaches the queue thread through `at`'s
/// route, and `sink` is replaced (the late reply owns the old one).
fn handle<FS: Filesystem>(
    se: &SessionEventLoop<FS>,
    buf: &mut [u8],
    sink: &mut Arc<Mutex<RingReply>>,
    scratch: &mut Vec<u64>,
    at: (usize, &LateRoute),
) -> bool {
    let (len, unique, payload_sz) = (
        u32_at(buf, 0) as usize,
        u64_at(buf, 8),
        u32_at(buf, PAYLOAD_SZ_OFF) as usize,
    );
    sink.lock().reset(None);
    let arg0 = len.checked_sub(IN_HEADER_SIZE + payload_sz);
    let ok = match arg0 {
        Some(arg0) if arg0 <= OP_IN_SIZE && HEADER_SIZE + payload_sz <= buf.len() => {
            // Move the per-op header, then the in-header, to sit just before
            // the payload: the bytes then read as one /dev/fuse request.
            let start = HEADER_SIZE - arg0 - IN_HEADER_SIZE;
            buf.copy_within(OP_IN_OFF..OP_IN_OFF + arg0, HEADER_SIZE - arg0);
            buf.copy_within(0..IN_HEADER_SIZE, start);
            let end = HEADER_SIZE + payload_sz;
            if start % 8 == 0 && payload_sz == 0 {
                // The request lies wholly in the header area: the reply body
                // may be written straight into the (disjoint) payload area.
                let (head, payload) = buf.split_at_mut(HEADER_SIZE);
                sink.lock().reset(Some(RingPayload {
                    ptr: std::ptr::NonNull::from(&mut payload[0]),
                    cap: payload.len(),
                }));
                let ok = dispatch(se, sink, &head[start..]);
                sink.lock().direct = None;
                ok
            } else if start % 8 == 0 {
                dispatch(se, sink, &buf[start..end])
            } else {
                scratch.clear();
                scratch.resize(len.div_ceil(8), 0);
                // SAFETY: `scratch` holds at least `len` initialised bytes.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<u8>(), len)
                };
                bytes.copy_from_slice(&buf[start..end]);
                dispatch(se, sink, bytes)
            }
        }
        _ => {
            error!("io_uring: malformed request (len {len}, payload {payload_sz})");
            false
        }
    };
    let mut reply = sink.lock();
    // Still out with a live reply object: the filesystem finishes it later.
    if ok && !reply.replied && Arc::strong_count(sink) > 1 {
        reply.late = Some(LateCommit {
            route: at.1.clone(),
            idx: at.0,
            unique,
        });
        drop(reply);
        *sink = Arc::new(Mutex::new(RingReply::default()));
        return false;
    }
    write_reply(buf, &reply, ok, unique);
    true
}

/// Writes a captured reply (or EIO when there is none) into a ring entry.
fn write_reply(buf: &mut [u8], reply: &RingReply, ok: bool, unique: u64) {
    let staged = &reply.staged;
    let payload_cap = buf.len() - HEADER_SIZE;
    if ok && staged.len() == OUT_HEADER_SIZE && reply.direct_len.is_some() {
        buf[..OUT_HEADER_SIZE].copy_from_slice(staged);
        let n = reply.direct_len.unwrap_or(0) as u32;
        buf[PAYLOAD_SZ_OFF..PAYLOAD_SZ_OFF + 4].copy_from_slice(&n.to_ne_bytes());
    } else if ok && staged.len() >= OUT_HEADER_SIZE && staged.len() - OUT_HEADER_SIZE <= payload_cap
    {
        buf[..OUT_HEADER_SIZE].copy_from_slice(&staged[..OUT_HEADER_SIZE]);
        let body = &staged[OUT_HEADER_SIZE..];
        buf[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
        buf[PAYLOAD_SZ_OFF..PAYLOAD_SZ_OFF + 4].copy_from_slice(&(body.len() as u32).to_ne_bytes());
    } else {
        // No usable reply: answer EIO so the caller is not left waiting.
        buf[0..4].copy_from_slice(&(OUT_HEADER_SIZE as u32).to_ne_bytes());
        buf[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
        buf[8..16].copy_from_slice(&unique.to_ne_bytes());
        buf[PAYLOAD_SZ_OFF..PAYLOAD_SZ_OFF + 4].copy_from_slice(&0u32.to_ne_bytes());
    }
}

fn dispatch<FS: Filesystem>(
    se: &SessionEventLoop<FS>,
    sink: &Arc<Mutex<RingReply>>,
    data: &[u8],
) -> bool {
    let Some(req) = RequestWithSender::new_ring(se.ch.sender(), sink.clone(), data) else {
        return false;
    };
    if let Ok(Operation::Destroy(_)) = req.request.operation() {
        debug!("io_uring: DESTROY");
        req.reply::<ReplyEmpty>().ok();
    } else {
        req.dispatch(se);
    }
    true
}

/// The running queue threads.
pub(crate) struct Ring {
    threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
    stop: std::os::fd::OwnedFd,
    watchdog: Option<(Arc<crate::uring_sched::Sched>, std::thread::JoinHandle<()>)>,
}

/// Starts one pinned thread per possible CPU, each registering `depth`
/// entries of `payload` bytes. Returns once every queue has registered (or
/// failed, which leaves the kernel on /dev/fuse).
pub(crate) fn start<FS: Filesystem>(
    filesystem: &Arc<crate::session::FilesystemHolder<FS>>,
    ch: &crate::channel::Channel,
    allowed: crate::session::SessionACL,
    session_owner: nix::unistd::Uid,
    depth: usize,
    payload: usize,
    yield_cpu: bool,
) -> io::Result<Ring> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the result is checked before use.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_SEMAPHORE) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `efd` is a fresh descriptor owned by nobody else.
    let stop = unsafe { std::os::fd::OwnedFd::from_raw_fd(efd) };
    let cpus = possible_cpus();
    // Without its watchdog the idle class could starve a queue: no yielding then.
    let mut watchdog = None;
    if yield_cpu {
        let sched = crate::uring_sched::Sched::new(cpus);
        match sched.watch() {
            Ok(w) => watchdog = Some((sched, w)),
            Err(e) => warn!(
                "io_uring: queue threads keep the normal class (a thread must be able to leave the idle class: root, CAP_SYS_NICE or RLIMIT_NICE 20): {e}"
            ),
        }
    }
    let sched = watchdog.as_ref().map(|(s, _)| s.clone());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(cpus);
    let mut spawn_error = None;
    for qid in 0..cpus {
        let se = SessionEventLoop {
            thread_name: format!("fuser-ring-{qid}"),
            ch: ch.clone(),
            filesystem: filesystem.clone(),
            allowed,
            session_owner,
        };
        let started = started_tx.clone();
        let sched = sched.clone();
        let spawned = std::thread::Builder::new()
            .name(se.thread_name.clone())
            .spawn(move || {
                serve_queue(&se, qid as u16, depth.max(1), payload, efd, sched, started)
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                spawn_error = Some(e);
                break;
            }
        }
    }
    // A thread that fails reports false or drops its sender.
    let registered = (0..threads.len())
        .filter(|_| started_rx.recv().unwrap_or(false))
        .count();
    let ring = Ring {
        threads,
        stop,
        watchdog,
    };
    if registered < cpus {
        // The kernel holds every request until each queue has an entry; tell
        // it to give up on the ring, or the mount would hang.
        abandon(ch);
        let _ = ring.stop();
        return Err(spawn_error.unwrap_or_else(|| {
            io::Error::other(format!("{registered} of {cpus} queues registered"))
        }));
    }
    debug!("io_uring: {cpus} queues of {depth} entries, {payload}-byte payloads");
    Ok(ring)
}

/// Whether this process can set up the rings at all (io_uring may be
/// disabled by `kernel.io_uring_disabled` or a seccomp filter). Asked before
/// FUSE over io_uring is accepted at INIT: once accepted, the kernel holds
/// every request until the rings are registered.
pub(crate) fn probe() -> io::Result<()> {
    IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .build(2)
        .map(|_| ())
}

/// Makes the kernel drop FUSE over io_uring for this connection and serve it
/// on /dev/fuse: a registration it must refuse (an out-of-range queue) does
/// that.
fn abandon(ch: &crate::channel::Channel) {
    let Ok(mut ring) = IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(2) else {
        warn!("io_uring: cannot hand the connection back to /dev/fuse");
        return;
    };
    let ent = Entry::new(0);
    let sqe = register_sqe(ch.as_fd().as_raw_fd(), u16::MAX, 0, &ent);
    // SAFETY: the iovecs of `ent` outlive the wait below, after which the
    // refused registration holds nothing.
    if unsafe { ring.submission().push(&sqe) }.is_ok() {
        let _ = ring.submit_and_wait(1);
    }
    warn!("io_uring: queues not all registered; serving on /dev/fuse");
}

/// The kernel makes one queue per possible CPU (not per present or online
/// one) and becomes ready only when every queue has an entry.
pub fn possible_cpus() -> usize {
    let ranges = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let max = ranges
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max();
    match max {
        Some(m) => m + 1,
        // SAFETY: sysconf has no memory effects.
        None => unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize,
    }
}

impl Ring {
    /// Wakes every queue thread and waits for it. A queue that failed left
    /// its requests on /dev/fuse, so failures are logged, not returned.
    pub(crate) fn stop(self) -> io::Result<()> {
        let n = self.threads.len() as u64;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe {
            libc::write(self.stop.as_raw_fd(), (&raw const n).cast(), 8);
        }
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("io_uring queue thread: {e}"),
                Err(_) => result = Err(io::Error::other("io_uring queue thread panicked")),
            }
        }
        if let Some((sched, watchdog)) = self.watchdog {
            sched.stop(watchdog);
        }
        result
    }
}
