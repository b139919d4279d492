//! `--limit` and `--marker` of the list commands, as the AWS CLI treats
//! them: without either it asks for every page and prints the whole list
//! (the result key alone); with either it prints the one page the service
//! gave, with `Truncated` and, when more follow, `NextMarker`.

use clap::Args;
use serde_json::{json, Value};

use crate::kms::local::{Page, PageRequest};
use crate::kms::KmsError;

#[derive(Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// At most this many items (AWS's Limit; each operation has its own
    /// range and default). With --limit or --marker, one page is printed,
    /// with Truncated and NextMarker.
    #[arg(long)]
    pub(super) limit: Option<u32>,
    /// The NextMarker of the page before: the page after it.
    #[arg(long)]
    pub(super) marker: Option<String>,
}

impl PageArgs {
    pub fn new(limit: Option<u32>, marker: Option<String>) -> Self {
        PageArgs { limit, marker }
    }
}

/// The result of a list command: `{result_key: [...]}` of every page, or
/// one page with `Truncated` and `NextMarker`.
pub fn listed<T>(
    p: &PageArgs,
    result_key: &str,
    fetch: impl Fn(PageRequest) -> Result<Page<T>, KmsError>,
    item: impl Fn(&T) -> Value,
) -> Result<Value, KmsError> {
    if p.limit.is_some() || p.marker.is_some() {
        let page = fetch(PageRequest {
            limit: p.limit,
            marker: p.marker.as_deref(),
        })?;
        let items: Vec<Value> = page.items.iter().map(&item).collect();
        let mut v = json!({ result_key: items, "Truncated": page.next_marker.is_some() });
        if let Some(m) = page.next_marker {
            v["NextMarker"] = json!(m);
        }
        return Ok(v);
    }
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = fetch(PageRequest {
            limit: None,
            marker: marker.as_deref(),
        })?;
        all.extend(page.items.iter().map(&item));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(json!({ result_key: all }))
}
