//! A write-only mount's refusals of earlier sessions' entries, logged once
//! per backing entry: a user repeating a refused request (or `ls -l` in a
//! loop) must not fill the log.

use std::collections::HashSet;
use std::sync::Mutex;

/// How many entries are remembered before the memory starts over (a new
/// round logs each entry once more).
const REMEMBERED: usize = 4096;

static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Log `line` at WARN unless a refusal of `backing_path` was logged already.
pub(super) fn warn_once(backing_path: &str, line: std::fmt::Arguments<'_>) {
    let first = {
        let mut g = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
        let set = g.get_or_insert_with(HashSet::new);
        if set.len() >= REMEMBERED {
            set.clear();
        }
        set.insert(backing_path.to_owned())
    };
    if first {
        log::warn!("{line}");
    }
}
