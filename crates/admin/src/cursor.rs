//! Opaque keyset cursors: base64url of a compact, versioned encoding of the last row's
//! key, bound to its listing and to the filters it was made with. A cursor of another
//! listing, of other filters, of another version or malformed is refused (HTTP 400), and
//! so is a key that no row could have (a device serial or certificate serial out of their
//! syntax); an otherwise edited key only moves the page (it is a position, not a
//! permission: the same rows are reachable with filters).

use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AdminError;

const VERSION: u8 = 1;
/// Longest cursor accepted (characters).
const MAX_LEN: usize = 512;

/// The listings that page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Devices = 1,
    Certificates = 2,
    Approvals = 3,
    Decisions = 4,
    Alerts = 5,
    Audit = 6,
    Expiring = 7,
}

/// The key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A text key (device serial).
    Text(String),
    /// A row id.
    Id(i64),
    /// A time (Unix nanoseconds) and a text tie-breaker (not_after, serial).
    TimeText(i128, String),
}

/// The first bytes of the SHA-256 of the filters' canonical text.
fn fingerprint(filters: &str) -> [u8; 4] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, filters.as_bytes());
    let mut out = [0u8; 4];
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

/// The cursor that continues `listing` (with `filters`) after `key`.
pub(crate) fn encode(listing: Listing, filters: &str, key: &Key) -> String {
    let mut bytes = vec![VERSION, listing as u8];
    bytes.extend_from_slice(&fingerprint(filters));
    match key {
        Key::Text(t) => {
            bytes.push(b'T');
            bytes.extend_from_slice(t.as_bytes());
        }
        Key::Id(id) => {
            bytes.push(b'I');
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        Key::TimeText(at, t) => {
            bytes.push(b'S');
            bytes.extend_from_slice(&at.to_be_bytes());
            bytes.extend_from_slice(t.as_bytes());
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn bad(why: &str) -> AdminError {
    AdminError::field("cursor", format!("invalid cursor: {why}"))
}

/// The key a cursor of `listing` (with `filters`) continues after.
pub(crate) fn decode(listing: Listing, filters: &str, cursor: &str) -> Result<Key, AdminError> {
    if cursor.len() > MAX_LEN {
        return Err(bad("too long"));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad("not base64url"))?;
    let (header, rest) = bytes.split_at_checked(7).ok_or_else(|| bad("too short"))?;
    let [version, list, f0, f1, f2, f3, tag] = header else {
        return Err(bad("too short"));
    };
    if *version != VERSION {
        return Err(bad("made by another version"));
    }
    if *list != listing as u8 {
        return Err(bad("it belongs to another listing"));
    }
    if [*f0, *f1, *f2, *f3] != fingerprint(filters) {
        return Err(bad(
            "it was made with other filters (repeat the filters of the first page)",
        ));
    }
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| bad("malformed key"))
    };
    let device_serial = |b: &[u8]| {
        let t = text(b)?;
        fleetca_pki::validate_device_serial(&t).map_err(|_| bad("malformed key"))?;
        Ok::<_, AdminError>(t)
    };
    let certificate_serial = |b: &[u8]| {
        let t = text(b)?;
        let hex = t.len() <= 40 && t.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if hex {
            Ok(t)
        } else {
            Err(bad("malformed key"))
        }
    };
    match tag {
        b'T' => Ok(Key::Text(device_serial(rest)?)),
        b'I' => {
            let id: [u8; 8] = rest.try_into().map_err(|_| bad("malformed key"))?;
            Ok(Key::Id(i64::from_be_bytes(id)))
        }
        b'S' => {
            let (at, t) = rest
                .split_at_checked(16)
                .ok_or_else(|| bad("malformed key"))?;
            let at: [u8; 16] = at.try_into().map_err(|_| bad("malformed key"))?;
            Ok(Key::TimeText(
                i128::from_be_bytes(at),
                certificate_serial(t)?,
            ))
        }
        _ => Err(bad("malformed key")),
    }
}

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 500;

/// The page size asked for, checked: 1..=500, default 50.
pub(crate) fn limit(asked: Option<u32>) -> Result<u32, AdminError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(AdminError::field(
            "limit",
            format!("limit {n} is out of range: 1 to {MAX_LIMIT}"),
        )),
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page from rows fetched with `limit + 1`: the extra row says there is a next page,
/// whose cursor is made from the key of the last row kept.
pub(crate) fn page<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    listing: Listing,
    filters: &str,
    key: impl Fn(&R) -> Key,
    view: impl Fn(R) -> Option<T>,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode(listing, filters, &key(r)))
    } else {
        None
    };
    Page {
        items: rows.into_iter().filter_map(view).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for key in [
            Key::Text("SN-0042".into()),
            Key::Id(-7),
            Key::Id(i64::MAX),
            Key::TimeText(1_800_000_000_123_456_789, "0a1b".into()),
        ] {
            let c = encode(Listing::Certificates, "status=valid", &key);
            assert_eq!(
                decode(Listing::Certificates, "status=valid", &c).unwrap(),
                key
            );
        }
    }

    #[test]
    fn cursors_of_other_listings_filters_versions_or_shapes_are_refused() {
        let c = encode(Listing::Devices, "", &Key::Text("SN-1".into()));
        let refused = |listing, filters: &str, cursor: &str, why: &str| {
            let err = decode(listing, filters, cursor).unwrap_err();
            assert!(
                matches!(&err, AdminError::InvalidField { field: "cursor", detail } if detail.contains(why)),
                "{cursor}: {err:?}"
            );
        };
        refused(Listing::Audit, "", &c, "another listing");
        refused(Listing::Devices, "status=active", &c, "other filters");
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&c)
            .unwrap();
        bytes[0] = 9;
        let other_version = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        refused(Listing::Devices, "", &other_version, "another version");
        refused(Listing::Devices, "", "not a cursor!", "base64url");
        refused(Listing::Devices, "", "AQE", "too short");
        refused(Listing::Devices, "", &"A".repeat(600), "too long");
        let id = encode(Listing::Audit, "", &Key::Id(5));
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&id)
            .unwrap();
        bytes.pop();
        let truncated = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        refused(Listing::Audit, "", &truncated, "malformed key");
        // Bytes appended to a key: no device serial or certificate serial looks like that.
        refused(Listing::Devices, "", &format!("{c}AAAA"), "malformed key");
        let s = encode(Listing::Expiring, "", &Key::TimeText(1, "0a1b".into()));
        refused(Listing::Expiring, "", &format!("{s}AAAA"), "malformed key");
    }

    #[test]
    fn limits_are_capped() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(500)).unwrap(), 500);
        assert!(limit(Some(501)).is_err());
        assert!(limit(Some(0)).is_err());
    }
}
