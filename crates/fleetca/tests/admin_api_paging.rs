//! Issue 16: keyset pagination. Listings walked with a small `limit` while another thread
//! enrolls devices over EST between the pages (serials that sort before and after the
//! cursor, so an OFFSET-style cursor would repeat or skip rows): the pages together hold
//! no row twice and every row that existed before the walk. Cursors that are malformed,
//! tampered with or from another listing, and limits over the cap, are 400 problems.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod admin_api;
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_api::*;
use base64::Engine;
use serde_json::Value;

/// (listing, query, the member that identifies a row)
const LISTINGS: [(&str, &str, &str); 4] = [
    ("devices", "/devices?status=active", "serial"),
    ("certificates", "/certificates?kind=operational", "serial"),
    ("decisions", "/decisions", "id"),
    ("audit", "/audit", "id"),
];

fn key(item: &Value, member: &str) -> String {
    let v = if member == "serial" && item.get("serial").is_none() {
        &item["serial_number"]
    } else {
        &item[member]
    };
    assert!(!v.is_null(), "no {member} in {item}");
    v.to_string()
}

/// `path` with one more query parameter.
fn and(path: &str, param: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{param}")
}

/// Every row of a listing, in one page of the maximum size (the tests stay far below it).
fn snapshot(api: &Api, bearer: &str, path: &str, member: &str) -> BTreeSet<String> {
    let r = api.get(bearer, &and(path, "limit=500"));
    assert!(r.json()["next_cursor"].is_null(), "{path}: more than 500");
    r.items().iter().map(|i| key(i, member)).collect()
}

#[test]
fn pages_under_concurrent_enrollments_repeat_nothing_and_skip_nothing() {
    require_tools!("openssl", "curl");
    let api = Arc::new(Api::start());
    let auditor = api.token("paging-auditor", "auditor");
    // Serials from the middle of the alphabet: the writer adds some before and some after.
    for i in 0..8 {
        Device::enroll(&api.server, &format!("SN-M{i:02}"));
    }

    // The writer enrolls one device each time it is asked, alternating sides of the order.
    let asked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, asked, done, stop) = (api.clone(), asked.clone(), done.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(240);
            let mut n = 0;
            while n < 24 && Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                if asked.load(Ordering::SeqCst) > n {
                    let serial = if n % 2 == 0 {
                        format!("SN-A{n:02}")
                    } else {
                        format!("SN-Z{n:02}")
                    };
                    Device::enroll(&api.server, &serial);
                    n += 1;
                    done.store(n, Ordering::SeqCst);
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };

    for (name, path, member) in LISTINGS {
        let before = snapshot(&api, &auditor, path, member);
        assert!(before.len() >= 8, "{name}: {before:?}");
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                Some(c) => and(path, &format!("limit=3&cursor={c}")),
                None => and(path, "limit=3"),
            };
            let r = api.get(&auditor, &url);
            let items = r.items();
            assert!(items.len() <= 3, "{name}: {} items", items.len());
            seen.extend(items.iter().map(|i| key(i, member)));
            pages += 1;
            assert!(pages < 200, "{name}: the walk does not end");
            // A row goes in between this page and the next, and is committed first.
            let want = asked.fetch_add(1, Ordering::SeqCst) + 1;
            let wait = Instant::now() + Duration::from_secs(60);
            while done.load(Ordering::SeqCst) < want.min(24) && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(10));
            }
            match r.json()["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{name}: a row on two pages: {seen:?}"
        );
        let skipped: Vec<_> = before.difference(&unique).collect();
        assert!(
            skipped.is_empty(),
            "{name}: rows that existed before the walk were skipped: {skipped:?}"
        );
        assert!(pages >= 3, "{name}: {pages} pages");
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst) >= 8, "the writer wrote");
}

#[test]
fn bad_cursors_and_limits_are_refused_with_400() {
    require_tools!("openssl", "curl");
    let api = Api::start();
    let viewer = api.token("cursor-viewer", "viewer");
    for i in 0..3 {
        Device::enroll(&api.server, &format!("SN-C{i}"));
    }
    let first = api.get(&viewer, "/devices?limit=1").expect(200).json();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // The cursor works where it came from.
    api.get(&viewer, &format!("/devices?limit=1&cursor={cursor}"))
        .expect(200);
    let cert_cursor = api.get(&viewer, "/certificates?limit=1").expect(200).json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();

    let truncated = &cursor[..cursor.len() / 2];
    // Tampered: each of the first bytes changed in turn (what a cursor says about its
    // listing and filters); the key bytes after them may name any position.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = b64.decode(&cursor).expect("a base64url cursor");
    let tampered: Vec<String> = (0..bytes.len().min(2))
        .map(|i| {
            let mut t = bytes.clone();
            t[i] ^= 0x5a;
            b64.encode(t)
        })
        .collect();
    // The same listing with other filters.
    let filtered = api
        .get(&viewer, "/devices?status=active&limit=1")
        .expect(200)
        .json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad = vec![
        ("garbage", "!!!not-base64!!!".to_string(), "/devices"),
        ("truncated", truncated.to_string(), "/devices"),
        ("empty-json", "e30".to_string(), "/devices"), // base64url of "{}"
        ("other filters", filtered, "/devices?status=suspended"),
        ("from /certificates", cert_cursor.clone(), "/devices"),
        ("from /devices", cursor.clone(), "/certificates"),
        ("from /devices", cursor.clone(), "/audit"),
        ("from /devices", cursor.clone(), "/approvals"),
    ];
    for t in &tampered {
        bad.push(("tampered", t.clone(), "/devices"));
    }
    let auditor = api.token("cursor-auditor", "auditor");
    for (what, c, listing) in bad {
        let sep = if listing.contains('?') { '&' } else { '?' };
        let url = format!("{listing}{sep}limit=1&cursor={}", urlencode(&c));
        let p = api.get(&auditor, &url).problem(400);
        assert!(
            p.to_string().to_lowercase().contains("cursor"),
            "{what} cursor on {listing}: {p}"
        );
    }

    for listing in [
        "/devices",
        "/certificates",
        "/approvals",
        "/decisions",
        "/alerts",
    ] {
        api.get(&viewer, &format!("{listing}?limit=500"))
            .expect(200);
        let p = api
            .get(&viewer, &format!("{listing}?limit=501"))
            .problem(400);
        assert!(p.to_string().contains("limit"), "{listing}: {p}");
        api.get(&viewer, &format!("{listing}?limit=-1"))
            .problem(400);
        api.get(&viewer, &format!("{listing}?limit=ten"))
            .problem(400);
    }
    api.get(&auditor, "/audit?limit=501").problem(400);
    api.get(&viewer, "/reports/expiring?limit=501").problem(400);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
