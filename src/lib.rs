//! envelopefs: a transparent encrypted FUSE filesystem with AWS-KMS-style
//! envelope encryption (master key -> volume key -> per-file data key).

// Unit tests build fixtures with std's file creation; the program may not
// (clippy.toml: files are created through sys.rs).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
// Only sys holds `unsafe` (and, by clippy.toml, the raw libc calls): every
// other module is safe Rust over its wrappers. `forbid` on each module, not
// `deny` on the crate: an `#[allow(unsafe_code)]` inside one is an error.
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod cli;
#[forbid(unsafe_code)]
pub mod crypto;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod fault;
#[forbid(unsafe_code)]
pub mod fs;
#[forbid(unsafe_code)]
pub mod kms;
#[forbid(unsafe_code)]
pub mod snapshot;
#[allow(unsafe_code)]
pub mod sys;
#[forbid(unsafe_code)]
pub mod volume;

#[cfg(test)]
mod unsafe_gate {
    /// Every module declared here but sys is `forbid(unsafe_code)`: a new
    /// module without it would fall back to the crate's `deny`, which an
    /// `#[allow(unsafe_code)]` inside it overrides.
    #[test]
    fn every_module_but_sys_forbids_unsafe_code() {
        let lib = include_str!("lib.rs");
        let lines: Vec<&str> = lib.lines().map(str::trim).collect();
        let mut modules = 0;
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            modules += 1;
            let attr = if name == "sys" {
                "#[allow(unsafe_code)]"
            } else {
                "#[forbid(unsafe_code)]"
            };
            assert!(
                i > 0 && lines[i - 1] == attr,
                "module {name} in src/lib.rs is not preceded by {attr}"
            );
        }
        assert!(modules >= 9, "{modules} modules found in src/lib.rs");
    }
}
