//! The ring transport without a kernel: entries are built by hand in the
//! layout the kernel fills (`fuse_uring_req_header`, then the payload), served
//! by `handle` with a test filesystem, and the replies read back out of them.

use std::ffi::OsStr;
use std::sync::mpsc;
use std::time::Duration;
use std::time::UNIX_EPOCH;

use super::*;
use crate::FileAttr;
use crate::FileHandle;
use crate::FileType;
use crate::Generation;
use crate::INodeNo;
use crate::LockOwner;
use crate::OpenFlags;
use crate::ReplyAttr;
use crate::ReplyData;
use crate::ReplyEntry;
use crate::ReplyWrite;
use crate::Request;
use crate::WriteFlags;
use crate::session::FilesystemHolder;
use crate::session::SessionACL;

const LOOKUP: u32 = 1;
const GETATTR: u32 = 3;
const WRITE: u32 = 16;
/// `sizeof(struct fuse_attr_out)`.
const ATTR_OUT: usize = 104;
const PAYLOAD: usize = 4096;

fn attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 7,
        blocks: 1,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// What the test filesystem saw, and replies it keeps for later.
#[derive(Default)]
struct Seen {
    names: Vec<Vec<u8>>,
    writes: Vec<(u64, Vec<u8>)>,
    kept: Vec<ReplyEntry>,
}

/// A filesystem whose `read` may reply from another thread: with `release`
/// set, it starts the in-place reply on a thread of its own, returns once
/// that thread is filling the buffer, and the fill ends when the test
/// signals `release` (after the method returned).
struct TestFs {
    seen: Mutex<Seen>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl crate::Filesystem for TestFs {
    fn lookup(&self, _req: &Request, _parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        use std::os::unix::ffi::OsStrExt;
        let mut seen = self.seen.lock();
        seen.names.push(name.as_bytes().to_vec());
        if name.as_bytes() == b"later" {
            // Parked: replied after the method returned.
            seen.kept.push(reply);
        } else {
            reply.entry(&Duration::from_secs(1), &attr(9), Generation(0));
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.attr(&Duration::from_secs(1), &attr(ino.0));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fill = move |buf: &mut [u8]| {
            for (i, b) in buf[..size as usize].iter_mut().enumerate() {
                *b = (offset as usize + i) as u8;
            }
            Ok(size as usize)
        };
        let Some(release) = self.release.lock().take() else {
            return reply.data_in_place(size as usize, fill);
        };
        let (filling, started) = mpsc::channel();
        std::thread::spawn(move || {
            reply.data_in_place(size as usize, move |buf| {
                let _ = filling.send(());
                let _ = release.recv();
                fill(buf)
            })
        });
        let _ = started.recv_timeout(Duration::from_secs(5));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.seen.lock().writes.push((offset, data.to_vec()));
        reply.written(data.len() as u32);
    }
}

fn session() -> SessionEventLoop<TestFs> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    SessionEventLoop {
        thread_name: "test-ring".into(),
        ch: crate::channel::Channel::new(Arc::new(crate::dev_fuse::DevFuse(null))),
        filesystem: Arc::new(FilesystemHolder {
            fs: Some(TestFs {
                seen: Mutex::new(Seen::default()),
                release: Mutex::new(None),
            }),
        }),
        allowed: SessionACL::All,
        session_owner: nix::unistd::Uid::current(),
    }
}

fn fs(se: &SessionEventLoop<TestFs>) -> &TestFs {
    se.filesystem.fs.as_ref().unwrap()
}

/// A ring entry as the kernel fills it: the in-header at 0, the per-op
/// header at `OP_IN_OFF`, the commit ID and payload size in the entry
/// metadata, variable arguments (names, written data) in the payload.
fn entry(opcode: u32, unique: u64, nodeid: u64, op_in: &[u8], payload: &[u8]) -> Entry {
    let mut ent = Entry::new(PAYLOAD);
    let b = ent.bytes();
    let len = (IN_HEADER_SIZE + op_in.len() + payload.len()) as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..8].copy_from_slice(&opcode.to_ne_bytes());
    b[8..16].copy_from_slice(&unique.to_ne_bytes());
    b[16..24].copy_from_slice(&nodeid.to_ne_bytes());
    b[24..28].copy_from_slice(&nix::unistd::getuid().as_raw().to_ne_bytes());
    b[OP_IN_OFF..OP_IN_OFF + op_in.len()].copy_from_slice(op_in);
    b[COMMIT_ID_OFF..COMMIT_ID_OFF + 8].copy_from_slice(&77u64.to_ne_bytes());
    b[PAYLOAD_SZ_OFF..PAYLOAD_SZ_OFF + 4].copy_from_slice(&(payload.len() as u32).to_ne_bytes());
    b[HEADER_SIZE..HEADER_SIZE + payload.len()].copy_from_slice(payload);
    ent
}

/// `struct fuse_read_in` / `fuse_write_in`: fh, offset, size, flags, lock
/// owner, flags, padding (40 bytes).
fn io_in(offset: u64, size: u32) -> Vec<u8> {
    let mut v = vec![0u8; 40];
    v[0..8].copy_from_slice(&5u64.to_ne_bytes());
    v[8..16].copy_from_slice(&offset.to_ne_bytes());
    v[16..20].copy_from_slice(&size.to_ne_bytes());
    v
}

/// The reply in an entry: (out-header length, error, unique, payload size).
fn reply_of(ent: &mut Entry) -> (u32, i32, u64, usize) {
    let b = ent.bytes();
    (
        u32_at(b, 0),
        u32_at(b, 4) as i32,
        u64_at(b, 8),
        u32_at(b, PAYLOAD_SZ_OFF) as usize,
    )
}

struct Queue {
    sink: Arc<Mutex<RingReply>>,
    scratch: Vec<u64>,
    route: LateRoute,
    late_rx: mpsc::Receiver<Late>,
}

fn queue() -> Queue {
    let (tx, late_rx) = mpsc::channel();
    // SAFETY: plain syscall; checked below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(efd >= 0);
    // SAFETY: a fresh descriptor owned by nobody else.
    let efd =
        Arc::new(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(efd) });
    Queue {
        sink: Arc::new(Mutex::new(RingReply::default())),
        scratch: Vec::new(),
        route: LateRoute {
            tx,
            efd,
            lent: false,
        },
        late_rx,
    }
}

fn serve(se: &SessionEventLoop<TestFs>, q: &mut Queue, idx: usize, ent: &mut Entry) -> bool {
    handle(
        se,
        ent.bytes(),
        &mut q.sink,
        &mut q.scratch,
        (idx, &q.route),
    )
}

#[test]
fn getattr_reply_is_written_straight_into_the_payload() {
    let se = session();
    let mut q = queue();
    let mut ent = entry(GETATTR, 41, 7, &[0u8; 16], &[]);
    assert!(serve(&se, &mut q, 0, &mut ent));
    let (len, err, unique, payload) = reply_of(&mut ent);
    assert_eq!(
        (len, err, unique, payload),
        ((OUT_HEADER_SIZE + ATTR_OUT) as u32, 0, 41, ATTR_OUT)
    );
    // fuse_attr_out: attr_valid, attr_valid_nsec, dummy, then fuse_attr (ino first).
    assert_eq!(u64_at(ent.bytes(), HEADER_SIZE + 16), 7);
    assert_eq!(u64_at(ent.bytes(), HEADER_SIZE + 24), 7, "size");
    // The body went into the payload area, not through the staging buffer.
    let sink = q.sink.lock();
    assert_eq!(
        (sink.staged.len(), sink.direct_len),
        (OUT_HEADER_SIZE, Some(ATTR_OUT))
    );
}

#[test]
fn lookup_name_comes_from_the_payload() {
    let se = session();
    let mut q = queue();
    let mut ent = entry(LOOKUP, 42, 1, &[], b"a-name\0");
    assert!(serve(&se, &mut q, 0, &mut ent));
    assert_eq!(fs(&se).seen.lock().names, vec![b"a-name".to_vec()]);
    let (len, err, unique, payload) = reply_of(&mut ent);
    // fuse_entry_out: 40 bytes of ids and timeouts, then fuse_attr (88).
    assert_eq!(
        (len, err, unique),
        ((OUT_HEADER_SIZE + payload) as u32, 0, 42)
    );
    assert_eq!(payload, 128);
    assert_eq!(u64_at(ent.bytes(), HEADER_SIZE), 9, "nodeid");
}

#[test]
fn write_request_is_assembled_with_its_data() {
    let se = session();
    let mut q = queue();
    let data = b"written through the ring";
    let mut ent = entry(WRITE, 43, 3, &io_in(4096, data.len() as u32), data);
    assert!(serve(&se, &mut q, 0, &mut ent));
    assert_eq!(fs(&se).seen.lock().writes, vec![(4096, data.to_vec())]);
    let (len, err, unique, payload) = reply_of(&mut ent);
    // fuse_write_out: size, padding; staged (the payload held the data).
    assert_eq!((len, err, unique, payload), (24, 0, 43, 8));
    assert_eq!(u32_at(ent.bytes(), HEADER_SIZE) as usize, data.len());
}

#[test]
fn read_fills_the_entry_in_place() {
    let se = session();
    let mut q = queue();
    let mut ent = entry(FUSE_READ, 44, 3, &io_in(10, 300), &[]);
    assert!(serve(&se, &mut q, 0, &mut ent));
    let (len, err, unique, payload) = reply_of(&mut ent);
    assert_eq!((len, err, unique, payload), (316, 0, 44, 300));
    let body = &ent.bytes()[HEADER_SIZE..HEADER_SIZE + 300];
    assert!(body.iter().enumerate().all(|(i, b)| *b == (10 + i) as u8));
}

#[test]
fn malformed_requests_get_eio() {
    let se = session();
    let mut q = queue();
    // The length is shorter than the in-header and the payload.
    let mut ent = entry(GETATTR, 45, 7, &[0u8; 16], &[]);
    ent.bytes()[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(serve(&se, &mut q, 0, &mut ent));
    assert_eq!(reply_of(&mut ent), (16, -libc::EIO, 45, 0));
    // A per-op header longer than its area.
    let mut ent = entry(GETATTR, 46, 7, &[0u8; 16], &[]);
    ent.bytes()[0..4].copy_from_slice(&((IN_HEADER_SIZE + OP_IN_SIZE + 8) as u32).to_ne_bytes());
    assert!(serve(&se, &mut q, 0, &mut ent));
    assert_eq!(reply_of(&mut ent), (16, -libc::EIO, 46, 0));
    // A payload size past the entry.
    let mut ent = entry(LOOKUP, 47, 1, &[], b"x\0");
    let huge = (PAYLOAD * 2) as u32;
    ent.bytes()[PAYLOAD_SZ_OFF..PAYLOAD_SZ_OFF + 4].copy_from_slice(&huge.to_ne_bytes());
    ent.bytes()[0..4].copy_from_slice(&(IN_HEADER_SIZE as u32 + huge).to_ne_bytes());
    assert!(serve(&se, &mut q, 0, &mut ent));
    assert_eq!(reply_of(&mut ent), (16, -libc::EIO, 47, 0));
    assert!(fs(&se).seen.lock().names.is_empty());
}

#[test]
fn a_parked_reply_reaches_its_own_entry_through_the_route() {
    let se = session();
    let mut q = queue();
    let mut parked = entry(LOOKUP, 48, 1, &[], b"later\0");
    let first_sink = q.sink.clone();
    assert!(
        !serve(&se, &mut q, 3, &mut parked),
        "the reply is still out"
    );
    parked.send_out(48);
    assert!(
        !Arc::ptr_eq(&first_sink, &q.sink),
        "the next request gets a fresh sink"
    );
    drop(first_sink);
    // The queue serves another request meanwhile, on the fresh sink.
    let mut other = entry(GETATTR, 49, 7, &[0u8; 16], &[]);
    assert!(serve(&se, &mut q, 4, &mut other));
    assert_eq!(reply_of(&mut other).2, 49);
    assert!(q.late_rx.try_recv().is_err());
    // The filesystem replies from another thread.
    let kept = fs(&se).seen.lock().kept.pop().unwrap();
    std::thread::spawn(move || kept.entry(&Duration::from_secs(1), &attr(11), Generation(0)))
        .join()
        .unwrap();
    let late = q.late_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((late.idx, late.unique, late.lent), (3, 48, false));
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from the route's eventfd.
    let r = unsafe { libc::read(q.route.efd.as_raw_fd(), (&raw mut n).cast(), 8) };
    assert_eq!((r, n), (8, 1), "the queue thread is woken");
    // What the queue thread does with it.
    parked.take_back(Some(late.unique));
    write_reply(parked.bytes(), &late.sink.lock(), true, late.unique);
    assert_eq!(reply_of(&mut parked), (144, 0, 48, 128));
    assert_eq!(u64_at(parked.bytes(), HEADER_SIZE), 11);
}

/// `data_in_place` started by another thread while the method runs and
/// finished after it returned: the payload area is not lent to that thread
/// (filled, it would have no one to commit it, and the request would hang);
/// the body is staged and routed to the queue thread like any late reply.
#[test]
fn in_place_reply_from_another_thread_is_routed_late() {
    let se = session();
    let mut q = queue();
    let (release, released) = mpsc::channel();
    *fs(&se).release.lock() = Some(released);
    let mut ent = entry(FUSE_READ, 50, 3, &io_in(0, 200), &[]);
    assert!(!serve(&se, &mut q, 2, &mut ent), "the read is still out");
    ent.send_out(50);
    release.send(()).unwrap();
    let late = q
        .late_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the late in-place reply reaches the queue thread");
    assert_eq!((late.idx, late.unique), (2, 50));
    ent.take_back(Some(late.unique));
    write_reply(ent.bytes(), &late.sink.lock(), true, late.unique);
    assert_eq!(reply_of(&mut ent), (216, 0, 50, 200));
    let body = &ent.bytes()[HEADER_SIZE..HEADER_SIZE + 200];
    assert!(body.iter().enumerate().all(|(i, b)| *b == i as u8));
}

#[test]
fn payload_is_lent_only_to_the_serving_thread_and_once() {
    let mut area = vec![0u8; 64];
    let payload = RingPayload {
        ptr: std::ptr::NonNull::from(&mut area[0]),
        cap: 64,
    };
    let sink = Arc::new(Mutex::new(RingReply::default()));
    sink.lock().reset(Some(payload));
    let other = sink.clone();
    let elsewhere = std::thread::spawn(move || other.lock().lend_payload(8).is_some());
    assert!(!elsewhere.join().unwrap(), "lent to another thread");
    assert!(
        sink.lock().lend_payload(65).is_none(),
        "lent for more than it holds"
    );
    assert!(sink.lock().lend_payload(64).is_some());
    assert!(sink.lock().lend_payload(1).is_none(), "lent twice");
    sink.lock().filled(51, 5);
    let r = sink.lock();
    assert!(r.replied);
    assert_eq!(r.direct_len, Some(5));
    assert_eq!(u32_at(&r.staged, 0), 21);
    assert_eq!(u32_at(&r.staged, 4), 0);
    assert_eq!(u64_at(&r.staged, 8), 51);
}

#[test]
fn capture_splits_the_header_across_slices_and_stages_what_does_not_fit() {
    let mut area = vec![0u8; 32];
    let mut r = RingReply::default();
    r.reset(Some(RingPayload {
        ptr: std::ptr::NonNull::from(&mut area[0]),
        cap: 32,
    }));
    let header: Vec<u8> = (0..16).collect();
    let body: Vec<u8> = (100..120).collect();
    // The out-header split over two slices, the second also carrying body.
    let second = [&header[10..], &body[..4]].concat();
    r.capture(&[
        std::io::IoSlice::new(&header[..10]),
        std::io::IoSlice::new(&second),
        std::io::IoSlice::new(&body[4..]),
    ]);
    assert_eq!(r.staged, header);
    assert_eq!(r.direct_len, Some(20));
    r.direct = None;
    assert_eq!(&area[..20], &body[..]);
    // Too large for the payload area: everything staged.
    let mut r = RingReply::default();
    r.reset(Some(RingPayload {
        ptr: std::ptr::NonNull::from(&mut area[0]),
        cap: 4,
    }));
    r.capture(&[std::io::IoSlice::new(&header), std::io::IoSlice::new(&body)]);
    assert_eq!(r.staged, [&header[..], &body[..]].concat());
    assert_eq!(r.direct_len, None);
}

#[test]
fn write_reply_answers_eio_when_nothing_usable_was_captured() {
    let mut ent = Entry::new(16);
    let cap = ent.bytes().len() - HEADER_SIZE;
    // A staged body larger than the entry's payload area.
    let mut r = RingReply::default();
    let big = vec![0u8; OUT_HEADER_SIZE + cap + 1];
    r.capture(&[std::io::IoSlice::new(&big)]);
    write_reply(ent.bytes(), &r, true, 52);
    assert_eq!(reply_of(&mut ent), (16, -libc::EIO, 52, 0));
    // No reply at all.
    write_reply(ent.bytes(), &RingReply::default(), true, 53);
    assert_eq!(reply_of(&mut ent), (16, -libc::EIO, 53, 0));
    // A reply that fits.
    let mut r = RingReply::default();
    let fits = [
        &((OUT_HEADER_SIZE + 3) as u32).to_ne_bytes()[..],
        &[0; 4],
        &54u64.to_ne_bytes(),
        b"abc",
    ]
    .concat();
    r.capture(&[std::io::IoSlice::new(&fits)]);
    write_reply(ent.bytes(), &r, true, 54);
    assert_eq!(reply_of(&mut ent), (19, 0, 54, 3));
    assert_eq!(&ent.bytes()[HEADER_SIZE..HEADER_SIZE + 3], b"abc");
}

#[test]
fn large_reads_are_offloaded_small_ones_and_others_not() {
    let mut big = entry(FUSE_READ, 1, 3, &io_in(0, OFFLOAD_READ_MIN), &[]);
    let mut small = entry(FUSE_READ, 2, 3, &io_in(0, OFFLOAD_READ_MIN - 1), &[]);
    let mut write = entry(WRITE, 3, 3, &io_in(0, OFFLOAD_READ_MIN), &[]);
    assert!(offload(big.bytes()));
    assert!(!offload(small.bytes()));
    assert!(!offload(write.bytes()));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "reached a ring entry out for")]
fn an_entry_takes_back_only_its_own_request() {
    let mut ent = Entry::new(16);
    ent.send_out(60);
    ent.take_back(Some(61));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "off the thread serving it")]
fn filling_off_the_serving_thread_is_caught() {
    let sink = Arc::new(Mutex::new(RingReply::default()));
    sink.lock().reset(None);
    let other = sink.clone();
    let r = std::thread::spawn(move || other.lock().filled(62, 0)).join();
    if let Err(panic) = r {
        std::panic::resume_unwind(panic);
    }
}
