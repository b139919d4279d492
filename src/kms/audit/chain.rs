//! The audit log's hash chain: each event names the SHA-256 of the line
//! before it and its own place in the log, so an edited, removed or
//! reordered line breaks the chain; the head anchored in the sealed store
//! shows a tail cut off before the last store write.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `previousEventHash` of the first event.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The log's head: the hash of its last line and its number of lines.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditHead {
    pub last_hash: String,
    pub lines: u64,
}

pub fn line_hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The head of a log's text.
pub fn head_of(text: &[u8]) -> AuditHead {
    let mut h = AuditHead {
        last_hash: ZERO_HASH.into(),
        lines: 0,
    };
    for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        h.last_hash = line_hash(l);
        h.lines += 1;
    }
    h
}

/// What `--verify` found wrong, naming the first bad line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub line: u64,
    pub why: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

struct Linked {
    prev: Option<String>,
    seq: Option<u64>,
}

fn linked(line: &[u8]) -> Option<Linked> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    Some(Linked {
        prev: v["previousEventHash"].as_str().map(str::to_owned),
        seq: v["eventSequence"].as_u64(),
    })
}

/// Check the whole chain and, when given, the anchored head. Lines of an
/// older log, before the first chained one, carry no hash and are taken
/// as they are. Returns the number of lines.
pub fn verify(text: &[u8], anchor: Option<&AuditHead>) -> Result<u64, ChainBreak> {
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let brk = |line: usize, why: String| ChainBreak {
        line: line as u64,
        why,
    };
    let mut chained = false;
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        let Some(ev) = linked(l) else {
            return Err(brk(n, "not a JSON event (edited)".into()));
        };
        let Some(prev) = ev.prev else {
            if chained {
                return Err(brk(
                    n,
                    "no previousEventHash after chained lines (edited or forged)".into(),
                ));
            }
            continue;
        };
        chained = true;
        if let Some(seq) = ev.seq.filter(|s| *s != n as u64) {
            return Err(misplaced(&lines, n, seq));
        }
        let want = if n == 1 {
            ZERO_HASH.to_owned()
        } else {
            line_hash(lines[i - 1])
        };
        if prev != want {
            if n == 1 {
                return Err(brk(
                    1,
                    "the first line does not start the chain (lines removed before it)".into(),
                ));
            }
            return Err(brk(
                n - 1,
                format!("edited (line {n} does not chain to it), or line {n} is forged"),
            ));
        }
    }
    if let Some(a) = anchor {
        check_anchor(&lines, a, "the key store")?;
    }
    Ok(lines.len() as u64)
}

/// Check a (verified) chain against a head recorded by `source`.
pub fn check_head(text: &[u8], head: &AuditHead, source: &str) -> Result<(), ChainBreak> {
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    check_anchor(&lines, head, source)
}

/// A line whose recorded place is not where it stands: moved, or lines
/// before it removed.
fn misplaced(lines: &[&[u8]], n: usize, seq: u64) -> ChainBreak {
    let moved_here = lines[n..]
        .iter()
        .position(|l| linked(l).and_then(|e| e.seq) == Some(n as u64));
    let why = match moved_here {
        Some(j) => format!(
            "reordered: it is event {seq}, and event {n} stands at line {}",
            n + 1 + j
        ),
        None if seq > n as u64 => format!(
            "removed: {} line(s) missing before it (it is event {seq})",
            seq - n as u64
        ),
        None => format!("reordered or duplicated: it is event {seq}"),
    };
    ChainBreak {
        line: n as u64,
        why,
    }
}

fn check_anchor(lines: &[&[u8]], a: &AuditHead, source: &str) -> Result<(), ChainBreak> {
    let have = lines.len() as u64;
    if have < a.lines {
        return Err(ChainBreak {
            line: have + 1,
            why: format!(
                "cut off after line {have}: {source} records {} lines",
                a.lines
            ),
        });
    }
    if a.lines > 0 && line_hash(lines[(a.lines - 1) as usize]) != a.last_hash {
        return Err(ChainBreak {
            line: a.lines,
            why: format!("does not match the head recorded by {source} (edited)"),
        });
    }
    Ok(())
}
