//! A plain FUSE passthrough on fuser with the same levers as envelopefs
//! (worker threads with cloned fds, 1 MiB requests): the ceiling that
//! `scripts/bench.sh` measures envelopefs against. Not encrypted; benchmark only.
//! Usage: passthrough BACKING MOUNTPOINT

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::*;
use parking_lot::Mutex;

const TTL: Duration = Duration::from_secs(1);

struct Pt {
    paths: Mutex<HashMap<u64, PathBuf>>,
    files: Mutex<HashMap<u64, std::sync::Arc<File>>>,
    next: AtomicU64,
}

fn ts(s: i64, n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::new(s.max(0) as u64, n as u32)
}

fn attr(md: &std::fs::Metadata, ino: u64) -> FileAttr {
    let kind = FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile);
    FileAttr {
        ino: INodeNo(ino),
        size: md.len(),
        blocks: md.blocks(),
        atime: ts(md.atime(), md.atime_nsec()),
        mtime: ts(md.mtime(), md.mtime_nsec()),
        ctime: ts(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind,
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Pt {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.lock().get(&ino.0).cloned().ok_or(Errno::ESTALE)
    }

    fn entry(&self, p: &Path) -> Result<FileAttr, Errno> {
        let md = std::fs::symlink_metadata(p).map_err(errno)?;
        let ino = md.ino() + 1; // keep 1 for the root
        self.paths.lock().insert(ino, p.to_owned());
        Ok(attr(&md, ino))
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn fh(&self, f: File) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(id, std::sync::Arc::new(f));
        id
    }

    fn file(&self, fh: FileHandle) -> Result<std::sync::Arc<File>, Errno> {
        self.files.lock().get(&fh.0).cloned().ok_or(Errno::EBADF)
    }
}

impl Filesystem for Pt {
    fn init(&mut self, _r: &Request, c: &mut KernelConfig) -> std::io::Result<()> {
        let _ = c.set_max_write(1 << 20);
        let _ = c.set_max_readahead(1 << 20);
        let _ = c.add_capabilities(fuser::InitFlags::FUSE_OVER_IO_URING);
        // The kernel-side levers envelopefs mounts with, so that the
        // comparison is of the daemons, not of the kernel's caching. Aside:
        // READDIRPLUS (no readdirplus here), KILLPRIV_V2 (without xattrs the
        // kernel asks for security.capability once, then never again) and
        // writeback caching: this example names nodes by inode number
        // without holding the inodes, and an inode number reused while the
        // kernel still caches the old inode (dirty times keep it) breaks it.
        let _ = c.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }
    fn lookup(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name).and_then(|p| self.entry(&p)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(Errno::ENOENT) => reply.negative(&TTL),
            Err(e) => reply.error(e),
        }
    }
    fn getattr(&self, _r: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self
            .path(ino)
            .and_then(|p| std::fs::symlink_metadata(&p).map_err(errno));
        match r {
            Ok(md) => reply.attr(&TTL, &attr(&md, ino.0)),
            Err(e) => reply.error(e),
        }
    }
    fn setattr(
        &self,
        _r: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _c: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _cr: Option<SystemTime>,
        _ch: Option<SystemTime>,
        _b: Option<SystemTime>,
        _f: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = (|| {
            let p = self.path(ino)?;
            if let Some(m) = mode {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&p, uid, gid).map_err(errno)?;
            }
            if let Some(s) = size {
                OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_len(s))
                    .map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let t = |x: Option<TimeOrNow>| match x {
                    None => None,
                    Some(TimeOrNow::Now) => Some(SystemTime::now()),
                    Some(TimeOrNow::SpecificTime(t)) => Some(t),
                };
                let f = File::open(&p).map_err(errno)?;
                let mut times = std::fs::FileTimes::new();
                if let Some(a) = t(atime) {
                    times = times.set_accessed(a);
                }
                if let Some(m) = t(mtime) {
                    times = times.set_modified(m);
                }
                f.set_times(times).map_err(errno)?;
            }
            std::fs::symlink_metadata(&p).map_err(errno)
        })();
        match r {
            Ok(md) => reply.attr(&TTL, &attr(&md, ino.0)),
            Err(e) => reply.error(e),
        }
    }
    fn mkdir(
        &self,
        _r: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _u: u32,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, name).and_then(|p| {
            std::fs::create_dir(&p).map_err(errno)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(errno)?;
            self.entry(&p)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
    fn unlink(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|p| std::fs::remove_file(p).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
    fn rmdir(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|p| std::fs::remove_dir(p).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
    fn rename(
        &self,
        _r: &Request,
        p: INodeNo,
        n: &OsStr,
        np: INodeNo,
        nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.child(p, n).and_then(|a| {
            self.child(np, nn)
                .and_then(|b| std::fs::rename(a, b).map_err(errno))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
    fn symlink(
        &self,
        _r: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, name).and_then(|p| {
            std::os::unix::fs::symlink(target, &p).map_err(errno)?;
            self.entry(&p)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
    fn readlink(&self, _r: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .path(ino)
            .and_then(|p| std::fs::read_link(p).map_err(errno))
        {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }
    fn open(&self, _r: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self.path(ino).and_then(|p| {
            // Under writeback caching the kernel reads partial pages through
            // write-only handles too.
            let acc = flags.0 & libc::O_ACCMODE;
            OpenOptions::new()
                .read(true)
                .write(acc != libc::O_RDONLY)
                .custom_flags(flags.0 & libc::O_TRUNC)
                .open(p)
                .map_err(errno)
        });
        match r {
            Ok(f) => reply.opened(FileHandle(self.fh(f)), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }
    fn create(
        &self,
        _r: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        let r = self.child(parent, name).and_then(|p| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(mode)
                .open(&p)
                .map_err(errno)?;
            Ok((self.entry(&p)?, f))
        });
        match r {
            Ok((a, f)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(self.fh(f)),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
    fn read(
        &self,
        _r: &Request,
        _i: INodeNo,
        fh: FileHandle,
        off: u64,
        size: u32,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let mut n = 0;
            while n < buf.len() {
                match f.read_at(&mut buf[n..], off + n as u64).map_err(errno)? {
                    0 => break,
                    k => n += k,
                }
            }
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }
    fn write(
        &self,
        _r: &Request,
        _i: INodeNo,
        fh: FileHandle,
        off: u64,
        data: &[u8],
        _w: WriteFlags,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self
            .file(fh)
            .and_then(|f| f.write_all_at(data, off).map_err(errno))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }
    fn flush(&self, _r: &Request, _i: INodeNo, _fh: FileHandle, _l: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }
    fn release(
        &self,
        _r: &Request,
        _i: INodeNo,
        fh: FileHandle,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        _fl: bool,
        reply: ReplyEmpty,
    ) {
        self.files.lock().remove(&fh.0);
        reply.ok();
    }
    fn fsync(&self, _r: &Request, _i: INodeNo, fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        match self.file(fh).and_then(|f| f.sync_all().map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
    fn readdir(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let p = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let Ok(rd) = std::fs::read_dir(&p) else {
            return reply.error(Errno::EIO);
        };
        let mut ents: Vec<_> = rd.flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for (i, e) in ents.iter().enumerate().skip(offset as usize) {
            let Ok(md) = e.metadata() else { continue };
            let kind = FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile);
            if reply.add(INodeNo(md.ino() + 1), (i + 1) as u64, kind, e.file_name()) {
                break;
            }
        }
        reply.ok();
    }
    fn statfs(&self, _r: &Request, _i: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: passthrough BACKING MOUNTPOINT");
        std::process::exit(2);
    }
    let root = PathBuf::from(&args[1])
        .canonicalize()
        .expect("backing directory");
    let fs = Pt {
        paths: Mutex::new(HashMap::from([(1, root)])),
        files: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    };
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("passthrough".into()),
        MountOption::DefaultPermissions,
    ];
    cfg.n_threads = Some(4);
    cfg.clone_fd = true;
    cfg.io_uring_depth = std::env::var("PT_IO_URING_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // The same scheduling as envelopefs's queue threads (PT_IO_URING_YIELD=0: normal class).
    cfg.io_uring_yield = std::env::var("PT_IO_URING_YIELD").map_or(true, |v| v != "0");
    let session = match fuser::Session::new(fs, &args[2], &cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passthrough: {e}");
            std::process::exit(1);
        }
    };
    // The same 1 MiB readahead envelopefs sets (src/cli/mount.rs), once the
    // session answers the stat.
    let mp = args[2].clone();
    std::thread::spawn(move || {
        use std::os::unix::fs::MetadataExt;
        if let Ok(md) = std::fs::metadata(&mp) {
            let (maj, min) = (libc::major(md.dev()), libc::minor(md.dev()));
            let _ = std::fs::write(format!("/sys/class/bdi/{maj}:{min}/read_ahead_kb"), "1024");
        }
    });
    if let Err(e) = session.run() {
        eprintln!("passthrough: {e}");
        std::process::exit(1);
    }
}
