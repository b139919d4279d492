//! Keys must not reach core files, swap, or debuggers by default: the daemon
//! is not dumpable (unless `--allow-core-dumps`), works in `/`, and keeps
//! the volume key and cached data keys in memory that is locked and excluded
//! from dumps. Checked on a running daemon: every copy of the keys found in
//! `/proc/PID/mem` lies in a mapping whose `VmFlags` include `lo` and `dd`.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use envelopefs::kms::local::LocalKeyService;
use envelopefs::volume::{CacheOptions, FileContent, Volume};

use crate::common::memscan::*;
use crate::common::*;

const CAP_IPC_LOCK: u32 = 14;

/// The volume key and the data key of `file` (a path in the mount), as the
/// library unwraps them from the same key store and passphrase.
fn keys_of(env: &Env, cipher: &Path, backing: &Path) -> ([u8; 32], [u8; 32]) {
    let ks = LocalKeyService::open(&env.path("ks"), "test passphrase").unwrap();
    let vol = Volume::open(cipher, &ks, CacheOptions::default()).unwrap();
    let f = fs::File::open(backing).unwrap();
    let (vk, dk) = FileContent::keys_for_memory_scan_test(&vol, f.as_fd()).unwrap();
    (*vk.expose(), *dk.expose())
}

/// Write and read files so that data keys are cached; returns the backing
/// path of one whose key is cached.
fn use_some_files(c: &Path, m: &Mount) -> PathBuf {
    for i in 0..8 {
        let data = pattern(i, 10_000);
        fs::write(m.p(&format!("f{i}")), &data).unwrap();
        assert_eq!(fs::read(m.p(&format!("f{i}"))).unwrap(), data);
    }
    backing_path(c, &m.p("f3"))
}

/// Where the daemon holds `key`: each copy's mapping, and the copies that
/// lie outside memory with all of `flags`.
fn check_copies(pid: u32, what: &str, key: &[u8], flags: &[&str]) {
    let maps = mappings(pid);
    let hits = copies_of(pid, &maps, key);
    assert!(
        !hits.is_empty(),
        "no copy of the {what} found: the scan is blind"
    );
    let bad: Vec<String> = hits
        .iter()
        .map(|a| (a, maps.iter().find(|m| (m.start..m.end).contains(a))))
        .filter(|(_, m)| !m.is_some_and(|m| flags.iter().all(|f| m.has(f))))
        .map(|(a, m)| match m {
            Some(m) => format!("{a:#x} in {} {} [{}]", m.perms, m.name, m.flags.join(" ")),
            None => format!("{a:#x} in no mapping"),
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} copies of the {what} lie outside memory with VmFlags {flags:?}:\n{}",
        bad.len(),
        hits.len(),
        bad.join("\n")
    );
}

#[test]
fn keys_live_only_in_locked_undumped_memory() {
    if !need_root("keys_live_only_in_locked_undumped_memory") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let backing = use_some_files(&c, &m);
        let (vk, dk) = keys_of(&env, &c, &backing);
        let pid = m.pid().unwrap();
        check_copies(pid, "volume key", &vk, &["lo", "dd"]);
        check_copies(pid, "data key", &dk, &["lo", "dd"]);
        m.unmount();
    });
}

#[test]
fn daemon_is_not_dumpable_and_works_in_root_dir() {
    if !need_root("daemon_is_not_dumpable_and_works_in_root_dir") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        // The oracle works: another root process that stays dumpable is open to it.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = read_memory_without_ptrace(sleeper.id());
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        r.expect("probe of a dumpable process");
        let m = env.mount(&c, "m", &[]);
        let pid = m.pid().unwrap();
        let e = read_memory_without_ptrace(pid).expect_err("the daemon is dumpable");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
            Path::new("/")
        );
        m.unmount();
        // The debug option leaves it dumpable.
        let m = env.mount(&c, "m", &["--allow-core-dumps"]);
        m.expect_log("--allow-core-dumps: the daemon stays dumpable");
        read_memory_without_ptrace(m.pid().unwrap()).expect("--allow-core-dumps");
        m.unmount();
    });
}

fn unlimited_cores() -> std::io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct (async-signal-safe).
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the core file a test provoked, even when it fails.
struct CoreFile(PathBuf);

impl Drop for CoreFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The core file a process with working directory `cwd` and ID `pid`
/// writes under a plain (not piped) `core_pattern`; None when cores go
/// elsewhere (a pipe to a crash service, an absolute pattern).
fn core_path(cwd: &Path, pid: u32) -> Option<PathBuf> {
    let pat = fs::read_to_string("/proc/sys/kernel/core_pattern").ok()?;
    let pat = pat.trim();
    if pat.starts_with('|') || pat.starts_with('/') || pat.contains('%') {
        return None;
    }
    let uses_pid = fs::read_to_string("/proc/sys/kernel/core_uses_pid")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    Some(cwd.join(if uses_pid {
        format!("{pat}.{pid}")
    } else {
        pat.to_owned()
    }))
}

#[test]
fn abort_writes_no_core_and_debug_core_holds_no_key() {
    if !need_root("abort_writes_no_core_and_debug_core_holds_no_key") {
        return;
    }
    bounded(240, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        // Default: SIGABRT with an unlimited core size dumps nothing.
        let mut m = env.mount_with_setup(&c, "m", &[], unlimited_cores);
        use_some_files(&c, &m);
        let pid = m.pid().unwrap();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        let _guard = core_path(&cwd, pid).filter(|p| !p.exists()).map(CoreFile);
        let st = m.signal_and_wait(libc::SIGABRT).expect("the daemon dies");
        assert_eq!(st.signal(), Some(libc::SIGABRT));
        assert!(!st.core_dumped(), "the daemon dumped core");
        // --allow-core-dumps: a core is written, and neither key is in it.
        let mut m = env.mount_with_setup(&c, "m", &["--allow-core-dumps"], unlimited_cores);
        m.expect_log("--allow-core-dumps: the daemon stays dumpable");
        let backing = use_some_files(&c, &m);
        let (vk, dk) = keys_of(&env, &c, &backing);
        let pid = m.pid().unwrap();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        let Some(core) = core_path(&cwd, pid).filter(|p| !p.exists()) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "core contents: core_pattern does not write to the working directory (CI=true: a missing prerequisite fails)"
            );
            skip(
                "core contents",
                "core_pattern does not write to the working directory",
            );
            return;
        };
        let core = CoreFile(core);
        let st = m.signal_and_wait(libc::SIGABRT).expect("the daemon dies");
        assert!(st.core_dumped(), "--allow-core-dumps: no core ({st})");
        let bytes = fs::read(&core.0).unwrap();
        assert!(bytes.len() > 100_000, "a real core");
        for (what, key) in [("volume key", vk), ("data key", dk)] {
            let n = bytes.windows(32).filter(|w| *w == key).count();
            assert_eq!(n, 0, "the core holds {n} copies of the {what}");
        }
    });
}

fn low_memlock_no_ipc_lock() -> std::io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: prctl and setrlimit with valid arguments (async-signal-safe).
    // Root ignores RLIMIT_MEMLOCK while it holds CAP_IPC_LOCK; dropping it
    // from the bounding set keeps it out of the daemon after exec.
    unsafe {
        if libc::prctl(
            libc::PR_CAPBSET_DROP,
            CAP_IPC_LOCK as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn low_memlock_limit_warns_once_and_mounts() {
    if !need_root("low_memlock_limit_warns_once_and_mounts") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount_with_setup(&c, "m", &[], low_memlock_no_ipc_lock);
        let backing = use_some_files(&c, &m);
        // Keys are still kept out of dumps, just not locked.
        let (vk, dk) = keys_of(&env, &c, &backing);
        let pid = m.pid().unwrap();
        check_copies(pid, "volume key", &vk, &["dd"]);
        check_copies(pid, "data key", &dk, &["dd"]);
        let log = m.unmount();
        let warnings = log.lines().filter(|l| l.contains("mlock")).count();
        assert_eq!(warnings, 1, "one warning about mlock: {log}");
    });
}
