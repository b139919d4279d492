//! Pagination of the List operations as AWS's take it: `Limit` (each
//! operation its own range and default) and `Marker`, the `NextMarker` of
//! the page before; a page says whether more follow (`Truncated`).
//!
//! Items are listed in a fixed order of a position string; a marker is
//! the operation's name, the key whose list it is (empty for a list of all
//! keys or aliases) and the next item's position, base64url. A marker
//! stays good when items come or go between pages (the next page starts
//! at the first item at or after it); one of another operation or another
//! key's list, or not ours at all, is an InvalidMarkerException.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use super::{KeyRecord, LocalKeyService};
use crate::kms::KmsError;

/// What the caller asks of a List operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageRequest<'a> {
    pub limit: Option<u32>,
    pub marker: Option<&'a str>,
}

/// One page of a List operation.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; None on the last page.
    pub next_marker: Option<String>,
}

/// One rotation of a key's material (ListKeyRotations).
#[derive(Debug, Clone)]
pub struct Rotation {
    pub key_id: String,
    pub key_material_id: String,
    /// The material the key encrypts under now.
    pub current: bool,
    pub rotation_date: u64,
    /// AUTOMATIC or ON_DEMAND.
    pub rotation_type: String,
}

/// A List operation's name, limit range (1..=max) and default limit.
pub(super) struct Listing {
    pub(super) op: &'static str,
    pub(super) max: u32,
    pub(super) default: u32,
}

const LIST_KEYS: Listing = Listing {
    op: "ListKeys",
    max: 1000,
    default: 100,
};
const LIST_ALIASES: Listing = Listing {
    op: "ListAliases",
    max: 100,
    default: 50,
};
const LIST_KEY_ROTATIONS: Listing = Listing {
    op: "ListKeyRotations",
    max: 1000,
    default: 100,
};
const LIST_RESOURCE_TAGS: Listing = Listing {
    op: "ListResourceTags",
    max: 50,
    default: 50,
};

fn marker_of(op: &str, scope: &str, position: &str) -> String {
    B64URL.encode(format!("{op}\n{scope}\n{position}"))
}

/// The position a marker of `op` over the list of `scope` points at.
fn position_of(op: &str, scope: &str, marker: &str) -> Result<String, KmsError> {
    let bad = || {
        let of = if scope.is_empty() { "" } else { " of this key" };
        KmsError::InvalidMarker(format!("{marker:?} is not a marker of {op}{of}"))
    };
    let raw = B64URL.decode(marker).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (marker_op, rest) = text.split_once('\n').ok_or_else(bad)?;
    let (marker_scope, position) = rest.split_once('\n').ok_or_else(bad)?;
    if marker_op != op || marker_scope != scope {
        return Err(bad());
    }
    Ok(position.to_owned())
}

/// One page of `items` (each with its position) of the list of `scope`
/// (a key ID, or empty), as `l` pages them.
pub(super) fn page<T>(
    l: &Listing,
    scope: &str,
    mut items: Vec<(String, T)>,
    req: PageRequest,
) -> Result<Page<T>, KmsError> {
    let limit = req.limit.unwrap_or(l.default);
    if !(1..=l.max).contains(&limit) {
        return Err(KmsError::Validation(format!(
            "Limit of {} must be between 1 and {}, not {limit}",
            l.op, l.max
        )));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match req.marker {
        Some(m) => {
            let from = position_of(l.op, scope, m)?;
            items.partition_point(|(p, _)| *p < from)
        }
        None => 0,
    };
    let end = items.len().min(start + limit as usize);
    let next_marker = items.get(end).map(|(p, _)| marker_of(l.op, scope, p));
    let items = items.drain(start.min(end)..end).map(|(_, t)| t).collect();
    Ok(Page { items, next_marker })
}

/// Creation time, then ID: positions that sort as the items were made.
pub(super) fn dated(time: u64, id: &str) -> String {
    format!("{time:020}/{id}")
}

impl LocalKeyService {
    /// ListKeys: the keys in the order they were made.
    pub fn list_keys_page(&self, req: PageRequest) -> Result<Page<KeyRecord>, KmsError> {
        let keys = self.list_keys();
        let items = keys
            .into_iter()
            .map(|r| (dated(r.creation_date, &r.key_id), r))
            .collect();
        page(&LIST_KEYS, "", items, req)
    }

    /// ListAliases: (alias, key ID) by alias name, only the aliases of
    /// `key` when one is named.
    pub fn list_aliases_page(
        &self,
        key: Option<&str>,
        req: PageRequest,
    ) -> Result<Page<(String, String)>, KmsError> {
        let only = key.map(|k| self.key_id_of(k)).transpose()?;
        let items = self
            .list_aliases()
            .into_iter()
            .filter(|(_, k)| only.as_ref().is_none_or(|o| o == k))
            .map(|(a, k)| (a.clone(), (a, k)))
            .collect();
        page(
            &LIST_ALIASES,
            only.as_deref().unwrap_or_default(),
            items,
            req,
        )
    }

    /// ListKeyRotations (a key ID or key ARN): the key's rotations in the
    /// order they were made (the key's materials are only ever added, and
    /// dates are whole seconds). As AWS, refused on an asymmetric key
    /// (rotation is for symmetric encryption keys).
    pub fn list_key_rotations_page(
        &self,
        key: &str,
        req: PageRequest,
    ) -> Result<Page<Rotation>, KmsError> {
        let r = {
            let d = self.data.lock();
            let id = self.mgmt_id(&d, key)?;
            d.keys.iter().find(|r| r.key_id == id).cloned()
        }
        .ok_or_else(|| KmsError::NotFound(format!("Key '{key}' does not exist")))?;
        self.refuse_asymmetric_rotation(&r)?;
        let items = r
            .materials
            .iter()
            .enumerate()
            .filter(|(_, m)| m.rotation_type == "AUTOMATIC" || m.rotation_type == "ON_DEMAND")
            .map(|(made, m)| {
                let rot = Rotation {
                    key_id: r.key_id.clone(),
                    key_material_id: m.id.clone(),
                    current: m.id == r.current_material,
                    rotation_date: m.created,
                    rotation_type: m.rotation_type.clone(),
                };
                (format!("{made:010}"), rot)
            })
            .collect();
        page(&LIST_KEY_ROTATIONS, &r.key_id, items, req)
    }

    /// ListResourceTags: (tag key, tag value) by tag key, in any key state.
    pub fn list_resource_tags_page(
        &self,
        key: &str,
        req: PageRequest,
    ) -> Result<Page<(String, String)>, KmsError> {
        let (id, tags) = {
            let d = self.data.lock();
            let id = self.mgmt_id(&d, key)?;
            let tags = d
                .keys
                .iter()
                .find(|r| r.key_id == id)
                .map(|r| r.tags.clone())
                .unwrap_or_default();
            (id, tags)
        };
        let items = tags.into_iter().map(|(k, v)| (k.clone(), (k, v))).collect();
        page(&LIST_RESOURCE_TAGS, &id, items, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("{i:03}"), i)).collect()
    }

    fn req(limit: Option<u32>, marker: Option<&str>) -> PageRequest<'_> {
        PageRequest { limit, marker }
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        for n in [0, 1, 2, 9, 10, 11, 100, 101] {
            for limit in [1, 3, 10, 100] {
                let mut seen = Vec::new();
                let mut marker: Option<String> = None;
                loop {
                    let p = page(
                        &LIST_KEYS,
                        "",
                        numbers(n),
                        req(Some(limit), marker.as_deref()),
                    )
                    .unwrap();
                    assert!(p.items.len() <= limit as usize);
                    seen.extend(p.items);
                    match p.next_marker {
                        Some(m) => marker = Some(m),
                        None => break,
                    }
                }
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n} limit={limit}");
            }
        }
    }

    #[test]
    fn limits_markers_and_defaults_are_checked_as_aws_checks_them() {
        let all = page(&LIST_ALIASES, "", numbers(120), req(None, None)).unwrap();
        assert_eq!(all.items.len(), 50, "ListAliases defaults to 50");
        let all = page(&LIST_RESOURCE_TAGS, "", numbers(60), req(None, None)).unwrap();
        assert_eq!(all.items.len(), 50);
        for (l, bad) in [
            (&LIST_KEYS, 1001),
            (&LIST_ALIASES, 101),
            (&LIST_RESOURCE_TAGS, 51),
        ] {
            for limit in [0, bad] {
                let e = page(l, "", numbers(3), req(Some(limit), None)).unwrap_err();
                assert!(
                    matches!(e, KmsError::Validation(_)),
                    "{} {limit}: {e}",
                    l.op
                );
            }
            assert!(page(l, "", numbers(3), req(Some(bad - 1), None)).is_ok());
        }
        // A marker of another operation, or none of ours.
        let p = page(&LIST_KEYS, "", numbers(5), req(Some(2), None)).unwrap();
        let m = p.next_marker.unwrap();
        let e = page(&LIST_ALIASES, "", numbers(5), req(Some(2), Some(&m))).unwrap_err();
        assert_eq!(e.name(), "InvalidMarkerException");
        // A marker of one key's list, on another key's or the whole list.
        let k1 = page(&LIST_RESOURCE_TAGS, "k1", numbers(5), req(Some(2), None)).unwrap();
        let k1 = k1.next_marker.unwrap();
        for scope in ["k2", ""] {
            let e = page(&LIST_RESOURCE_TAGS, scope, numbers(5), req(None, Some(&k1)));
            assert_eq!(e.unwrap_err().name(), "InvalidMarkerException", "{scope}");
        }
        let e = page(&LIST_RESOURCE_TAGS, "k1", numbers(5), req(None, Some(&m)));
        assert_eq!(e.unwrap_err().name(), "InvalidMarkerException");
        for junk in ["", "!!", "bm90IG91cnM", "TGlzdEtleXM"] {
            let e = page(&LIST_KEYS, "", numbers(5), req(None, Some(junk))).unwrap_err();
            assert_eq!(e.name(), "InvalidMarkerException", "{junk:?}");
        }
        // The next item gone: the page starts at the one after it.
        let mut fewer = numbers(5);
        fewer.remove(2);
        let p = page(&LIST_KEYS, "", fewer, req(Some(2), Some(&m))).unwrap();
        assert_eq!(p.items, vec![3, 4]);
        assert!(p.next_marker.is_none());
    }
}
