//! A private mount namespace for mounts by users other than root (through
//! the setuid fusermount3): /dev/fuse and /etc/fuse.conf are replaced by a
//! device node of the mode the test needs and a fuse.conf it writes
//! (distributions give /dev/fuse mode 0666, a bare devtmpfs 0600, and
//! nothing here changes the machine's own); its FUSE mounts are detached
//! when it is dropped, even when the test fails.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::bounded;
use super::users::TestUser;

/// A private mount namespace (held by a `sleep`) in which /dev/fuse is a
/// node of a given mode and /etc/fuse.conf a given text.
pub struct FuseNs {
    holder: Child,
}

impl FuseNs {
    pub fn new(dir: PathBuf, dev_mode: u32, fuse_conf: &str) -> FuseNs {
        fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let script = format!(
            "mount -t tmpfs -o mode=755 tmpfs '{d}' && mknod -m {dev_mode:o} '{d}/fuse' c 10 229 \
             && printf '%s' \"$1\" > '{d}/fuse.conf' && chmod 644 '{d}/fuse.conf' \
             && mount --bind '{d}/fuse' /dev/fuse && mount --bind '{d}/fuse.conf' /etc/fuse.conf \
             && echo ready && exec sleep 600"
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .args(["sh", fuse_conf])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The script prints "ready" or exits (closing the pipe): bounded.
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        let ns = FuseNs { holder };
        assert_eq!(line.trim(), "ready", "the test's mount namespace failed");
        ns
    }

    pub fn mountinfo(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.holder.id())).unwrap_or_default()
    }

    /// `prog args` in the namespace, as `user` (or as root) without
    /// supplementary groups, with `env` only.
    pub fn cmd(&self, user: Option<&TestUser>, env: &[(&str, String)], prog: &Path) -> Command {
        self.command(user, "--clear-groups", env, prog)
    }

    /// As [`FuseNs::cmd`], with the user's supplementary groups from the
    /// user database (a group the test made them a member of).
    pub fn cmd_in_groups(&self, user: &TestUser, env: &[(&str, String)], prog: &Path) -> Command {
        self.command(Some(user), "--init-groups", env, prog)
    }

    fn command(
        &self,
        user: Option<&TestUser>,
        groups: &str,
        env: &[(&str, String)],
        prog: &Path,
    ) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg("--");
        if let Some(u) = user {
            c.arg("setpriv")
                .args(["--reuid", &u.uid.to_string()])
                .args(["--regid", &u.gid.to_string()])
                .args([groups, "--"]);
        }
        // The tools run with root's PATH; the program with `env` only.
        c.args(["env", "-i"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(prog)
            .current_dir("/")
            .stdin(Stdio::null());
        c
    }
}

impl Drop for FuseNs {
    fn drop(&mut self) {
        // The namespace's FUSE mounts, detached so their daemons exit.
        for m in fuse_mounts(&self.mountinfo()) {
            let _ = self
                .cmd(None, &[], Path::new("umount"))
                .args(["-l", "--"])
                .arg(&m.point)
                .status();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// One FUSE mount of a mountinfo text.
pub struct FuseMount {
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

pub fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// findmnt's raw output: `\xHH` escapes.
pub fn unhex(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'\\' && b[i + 1] == b'x' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn fuse_mounts(mountinfo: &str) -> Vec<FuseMount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = f.get(sep + 1)?.to_string();
            (fstype == "fuse" || fstype.starts_with("fuse.")).then(|| FuseMount {
                point: PathBuf::from(unescape(f[4])),
                fstype,
                source: unescape(f.get(sep + 2).unwrap_or(&"")),
                super_opts: f.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

pub fn mount_at<'a>(mounts: &'a [FuseMount], point: &Path) -> Option<&'a FuseMount> {
    mounts.iter().find(|m| m.point == point)
}

/// `cmd`'s output, within `secs` seconds.
pub fn output_within(secs: u64, mut cmd: Command) -> Output {
    bounded(secs, move || cmd.output().unwrap())
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The setuid-root fusermount3 a user's mount needs, if the machine has one.
pub fn setuid_fusermount3() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    [
        "/usr/bin/fusermount3",
        "/bin/fusermount3",
        "/usr/sbin/fusermount3",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0))
}
