//! The mount(8) form of the command line. `mount.fuse3` runs
//! `envelopefs SOURCE MOUNTPOINT -o OPTIONS` (and a `mount.envelopefs`
//! symlink would be run as `mount.envelopefs SOURCE MOUNTPOINT [-sfnv] -o
//! OPTIONS`); `envelopefs mount CIPHER MNT -o a,b=c` is the same form spelled
//! out. Before clap sees the arguments, this turns them into the ordinary
//! `envelopefs mount CIPHER MNT --a --b c`.
//!
//! Options map generically (`name` to `--name`, `name=value` to `--name
//! value`, underscores to dashes) onto the flags of `mount` and the global
//! flags, with a few aliases (`ro`, `passfile=`, `allow_dev`, `allow_suid`);
//! the options mount(8) and mount.fuse3 pass for every filesystem are
//! ignored. An unknown option is a usage error naming it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use clap::CommandFactory;

use super::{Cli, Failure};

/// Options every mount(8) line may carry that mean nothing here: mount(8)'s
/// own (`defaults`, `auto`, `user`, `nofail`, `_netdev`, ...), atime and
/// sync variants the kernel sets per mount for FUSE anyway, and the defaults
/// envelopefs always has (`nodev`, `nosuid`, `default_permissions`).
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "exec",
    "atime",
    "relatime",
    "strictatime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "async",
    "loud",
    "silent",
    "nodev",
    "nosuid",
    "default_permissions",
];

/// Ignored options that carry a value (`comment=...`), or a prefix (`x-*`).
const IGNORED_VALUED: &[&str] = &["comment", "fsname", "subtype"];

fn usage(msg: String) -> Failure {
    Failure::Usage(msg)
}

/// The long flags of `mount` and the global flags: (name, takes a value).
fn mount_flags() -> Vec<(String, bool)> {
    let cli = Cli::command();
    let mut flags: Vec<(String, bool)> = Vec::new();
    let mount: Vec<clap::Arg> = cli
        .get_subcommands()
        .find(|c| c.get_name() == "mount")
        .map(|c| c.get_arguments().cloned().collect())
        .unwrap_or_default();
    for a in cli.get_arguments().chain(mount.iter()) {
        if let Some(l) = a.get_long() {
            if l != "help" && l != "version" {
                flags.push((l.to_owned(), a.get_action().takes_values()));
            }
        }
    }
    flags
}

/// Names that select a subcommand (with `help`).
fn subcommand_names() -> Vec<String> {
    let cli = Cli::command();
    let mut names: Vec<String> = vec!["help".into()];
    for c in cli.get_subcommands() {
        names.push(c.get_name().to_owned());
        names.extend(c.get_all_aliases().map(str::to_owned));
    }
    names
}

/// The arguments clap is to parse: the mount(8) form rewritten into the
/// ordinary one; any other command line unchanged.
pub(super) fn rewrite(args: Vec<OsString>) -> Result<Vec<OsString>, Failure> {
    let flags = mount_flags();
    let takes_value = |long: &str| flags.iter().any(|(n, v)| n == long && *v);
    // The first argument that is not an option (or an option's value).
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        let valued = match a.strip_prefix("--") {
            Some(l) => !l.contains('=') && takes_value(l),
            None => matches!(a, "-o" | "-t" | "-N"),
        };
        i += if valued { 2 } else { 1 };
    }
    let Some(first) = args.get(i) else {
        return Ok(args);
    };
    let helper = if subcommand_names().iter().any(|n| first == n.as_str()) {
        if first != "mount" {
            return Ok(args);
        }
        false
    } else if first != "--" && Path::new(first).exists() {
        true
    } else {
        return Ok(args);
    };
    let mut out: Vec<OsString> = args[..i].to_vec();
    out.push("mount".into());
    let tail = if helper { &args[i..] } else { &args[i + 1..] };
    let mut opts: Vec<OsString> = Vec::new();
    let mut rest: Vec<OsString> = Vec::new();
    let mut it = tail.iter();
    while let Some(a) = it.next() {
        let s = a.as_bytes();
        match s {
            b"--" => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
            }
            b"-o" => opts.push(
                it.next()
                    .cloned()
                    .ok_or_else(|| usage("-o needs a list of options".into()))?,
            ),
            b"-t" => check_type(it.next().ok_or_else(|| usage("-t needs a type".into()))?)?,
            _ if s.starts_with(b"-o") => opts.push(OsStr::from_bytes(&s[2..]).to_owned()),
            _ if s.starts_with(b"-t") => check_type(OsStr::from_bytes(&s[2..]))?,
            // mount(8)'s -f (fake), -n (no mtab), -s (sloppy), -v (verbose).
            _ if s.len() > 1 && s[0] == b'-' && s[1..].iter().all(|c| b"fnsv".contains(c)) => {}
            _ => {
                rest.push(a.clone());
                let long = a.to_str().and_then(|l| l.strip_prefix("--"));
                if long.is_some_and(|l| !l.contains('=') && takes_value(l)) {
                    rest.extend(it.next().cloned());
                }
            }
        }
    }
    out.extend(rest);
    // One list: a later `-o nodev` overrides an earlier `-o dev`.
    let joined = OsString::from_vec(
        opts.iter()
            .map(|o| o.as_bytes())
            .collect::<Vec<_>>()
            .join(&b','),
    );
    out.extend(map_options(&joined, helper, &flags)?);
    Ok(out)
}

/// `-t fuse.envelopefs` (or `fuse./path/to/envelopefs`, or `envelopefs`).
fn check_type(t: &OsStr) -> Result<(), Failure> {
    let b = t.as_bytes();
    let name = b.strip_prefix(b"fuse.").unwrap_or(b);
    let base = name.rsplit(|c| *c == b'/').next().unwrap_or(name);
    if base.starts_with(b"envelopefs") {
        Ok(())
    } else {
        Err(usage(format!(
            "-t {}: this is envelopefs (type fuse.envelopefs)",
            t.to_string_lossy()
        )))
    }
}

/// One `-o` list as long flags. In the helper form `dev` and `suid` are
/// ignored: mount.fuse3 adds them to every line that does not say `nodev`
/// and `nosuid`, so honouring them would make every fstab mount trust
/// device nodes and setuid bits planted in the cipher directory. An fstab
/// line that means it says `allow_dev` / `allow_suid`.
fn map_options(
    list: &OsStr,
    helper: bool,
    flags: &[(String, bool)],
) -> Result<Vec<OsString>, Failure> {
    let mut out: Vec<OsString> = Vec::new();
    let (mut dev, mut suid, mut nodev, mut nosuid) = (false, false, false, false);
    for item in list.as_bytes().split(|c| *c == b',') {
        let (name, value) = match item.iter().position(|c| *c == b'=') {
            Some(p) => (&item[..p], Some(&item[p + 1..])),
            None => (item, None),
        };
        let name = std::str::from_utf8(name).map_err(|_| {
            usage(format!(
                "unknown mount option {}",
                String::from_utf8_lossy(name)
            ))
        })?;
        match name {
            "" => continue,
            "nodev" => nodev = true,
            "nosuid" => nosuid = true,
            "dev" => dev |= !helper,
            "suid" => suid |= !helper,
            "allow_dev" => dev = true,
            "allow_suid" => suid = true,
            _ if IGNORED.contains(&name) => {}
            _ if name.starts_with("x-") || IGNORED_VALUED.contains(&name) => {}
            _ => {
                let long = match name {
                    "ro" => "read-only".to_owned(),
                    "passfile" => "passphrase-file".to_owned(),
                    n => n.replace('_', "-"),
                };
                let Some((_, valued)) = flags.iter().find(|(n, _)| *n == long) else {
                    return Err(usage(format!("unknown mount option {name}")));
                };
                match (valued, value) {
                    (true, Some(v)) => {
                        out.push(format!("--{long}").into());
                        out.push(OsString::from_vec(v.to_vec()));
                    }
                    (true, None) => {
                        return Err(usage(format!(
                            "mount option {name} needs a value ({name}=...)"
                        )))
                    }
                    (false, None) => out.push(format!("--{long}").into()),
                    (false, Some(_)) => {
                        return Err(usage(format!("mount option {name} takes no value")))
                    }
                }
            }
        }
        if value.is_some()
            && matches!(
                name,
                "nodev" | "nosuid" | "dev" | "suid" | "allow_dev" | "allow_suid"
            )
        {
            return Err(usage(format!("mount option {name} takes no value")));
        }
    }
    if dev && !nodev {
        out.push("--dev".into());
    }
    if suid && !nosuid {
        out.push("--suid".into());
    }
    Ok(out)
}

/// A duration as `--idle` takes it: `90s`, `10m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(p) => s.split_at(p),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s}: a duration is a number with s, m or h (90s, 10m, 1h)"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("{s}: a duration is a number with s, m or h (90s, 10m, 1h)"))?;
    if secs == 0 {
        return Err("the idle time must be at least 1 s".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// The kernel flags `-o noexec` / `-o noatime` ask for.
pub(super) fn kernel_flags(a: &super::mount::MountArgs) -> Vec<fuser::MountOption> {
    let mut v = Vec::new();
    if a.noexec {
        v.push(fuser::MountOption::NoExec);
    }
    if a.noatime {
        v.push(fuser::MountOption::NoAtime);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Result<Vec<String>, String> {
        let v = args.iter().map(OsString::from).collect();
        rewrite(v)
            .map(|o| o.into_iter().map(|s| s.into_string().unwrap()).collect())
            .map_err(|f| f.to_string())
    }

    #[test]
    fn helper_form_becomes_mount() {
        let d = std::env::temp_dir();
        let d = d.to_str().unwrap();
        assert_eq!(
            rw(&[
                "envelopefs",
                d,
                "/mnt",
                "-o",
                "rw,passfile=/p,allow_other,dev,suid"
            ])
            .unwrap(),
            [
                "envelopefs",
                "mount",
                d,
                "/mnt",
                "--passphrase-file",
                "/p",
                "--allow-other"
            ]
        );
    }

    #[test]
    fn direct_form_maps_dev_and_options() {
        assert_eq!(
            rw(&[
                "e",
                "mount",
                "c",
                "m",
                "-o",
                "ro,dev",
                "-oidle=90s,key_cache_size=5",
                "-v"
            ])
            .unwrap(),
            [
                "e",
                "mount",
                "c",
                "m",
                "--read-only",
                "--idle",
                "90s",
                "--key-cache-size",
                "5",
                "--dev"
            ]
        );
        assert_eq!(
            rw(&["e", "mount", "c", "m", "-o", "dev,nodev"]).unwrap(),
            ["e", "mount", "c", "m"]
        );
    }

    #[test]
    fn refusals_name_the_option() {
        assert_eq!(
            rw(&["e", "mount", "c", "m", "-o", "bogus_opt"]).unwrap_err(),
            "unknown mount option bogus_opt"
        );
        assert_eq!(
            rw(&["e", "mount", "c", "m", "-o", "passfile"]).unwrap_err(),
            "mount option passfile needs a value (passfile=...)"
        );
        assert_eq!(
            rw(&["e", "mount", "c", "m", "-o", "ro=1"]).unwrap_err(),
            "mount option ro takes no value"
        );
    }

    #[test]
    fn other_commands_pass_through() {
        assert_eq!(
            rw(&["e", "--keystore", "mount", "info", "x"]).unwrap(),
            ["e", "--keystore", "mount", "info", "x"]
        );
        assert_eq!(rw(&["e", "no-such-thing"]).unwrap(), ["e", "no-such-thing"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }
}
