//! Issue 14 item 5: quiet and exact on the wire. A client sending an IP address as SNI
//! (common in embedded TLS stacks) leaves no warning in the log; every EST response
//! kind, read as raw bytes over TLS, spells its header names as the RFCs do
//! (`WWW-Authenticate`, not hyper's title-cased `Www-Authenticate`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
mod raw_client;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use raw_client::*;

#[test]
fn an_ip_address_as_sni_leaves_no_warning_in_the_log() {
    require_tools!("openssl");
    let server = Server::start();
    let out = run(Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &server.addr,
            "-servername",
            "127.0.0.1",
        ])
        .arg("-CAfile")
        .arg(server.root())
        .stdin(Stdio::null()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    // And the connection is served: cacerts with the same SNI.
    let a = curl(
        &server,
        &[
            "--resolve",
            &format!(
                "127.0.0.1:{}:127.0.0.1",
                server.addr.rsplit(':').next().unwrap()
            ),
        ],
        &server.est("cacerts"),
    );
    assert_eq!(a.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = server.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// Header names as the RFCs spell them; a response header must be one of these, exactly.
const SPELLINGS: &[&str] = &[
    "WWW-Authenticate",
    "Content-Type",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Retry-After",
    "Allow",
    "Cache-Control",
    "Connection",
    "Date",
];

/// Sends `request` over a fresh TLS connection and returns (status line, header names, raw).
fn raw(server: &Server, client: Option<(&Path, &Path)>, request: &[u8]) -> (String, Vec<String>) {
    let tcp = tcp_from("127.0.0.1", &server.addr).unwrap();
    let mut tls = tls(tcp, &server.root(), client);
    let bytes = exchange(&mut tls, request);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let names: Vec<String> = lines
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    for name in &names {
        assert!(
            SPELLINGS.contains(&name.as_str()),
            "header name '{name}' is not spelled as the RFCs do ({status}):\n{head}"
        );
    }
    (status, names)
}

fn has(names: &[String], wanted: &[&str], status: &str) {
    for w in wanted {
        assert!(
            names.iter().any(|n| n == w),
            "{status}: no '{w}' in {names:?}"
        );
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn csr(server: &Server, serial: &str) -> Vec<u8> {
    let key = server.work(&format!("{serial}-new.key"));
    let out = server.work(&format!("{serial}-new.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &out);
    std::fs::read(out).unwrap()
}

#[test]
fn every_est_response_kind_spells_its_headers_as_the_rfcs_do() {
    require_tools!("openssl");
    let server = Server::start();
    let est = "/.well-known/est";

    let (s, n) = raw(&server, None, &get(&format!("{est}/cacerts")));
    assert!(s.starts_with("HTTP/1.1 200"), "{s}");
    has(
        &n,
        &[
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Length",
        ],
        &s,
    );

    let (s, n) = raw(&server, None, &get(&format!("{est}/csrattrs")));
    assert!(s.starts_with("HTTP/1.1 200"), "{s}");
    has(
        &n,
        &[
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Length",
        ],
        &s,
    );

    // No credentials: the challenge, exactly as RFC 7235 spells it.
    let body = csr(&server, "SN-W1");
    let (s, n) = raw(
        &server,
        None,
        &post(&format!("{est}/simpleenroll"), &body, ""),
    );
    assert!(s.starts_with("HTTP/1.1 401"), "{s}");
    has(
        &n,
        &["WWW-Authenticate", "Content-Type", "Content-Length"],
        &s,
    );

    // Wrong credentials: the same challenge.
    let (s, n) = raw(
        &server,
        None,
        &post(
            &format!("{est}/simpleenroll"),
            &body,
            "Authorization: Basic bm9ib2R5Om5vdGhpbmc=\r\n",
        ),
    );
    assert!(s.starts_with("HTTP/1.1 401"), "{s}");
    has(&n, &["WWW-Authenticate"], &s);

    // Issued, with the birth certificate.
    let (bk, bc) = birth(&server, "SN-W1");
    let client = Some((bc.as_path(), bk.as_path()));
    let (s, n) = raw(
        &server,
        client,
        &post(&format!("{est}/simpleenroll"), &body, ""),
    );
    assert!(s.starts_with("HTTP/1.1 200"), "{s}");
    has(
        &n,
        &[
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Length",
        ],
        &s,
    );

    // Refused: bad body, wrong method, unknown path, too large.
    let (s, n) = raw(
        &server,
        client,
        &post(&format!("{est}/simpleenroll"), b"%%%", ""),
    );
    assert!(s.starts_with("HTTP/1.1 400"), "{s}");
    has(&n, &["Content-Type", "Content-Length"], &s);
    let (s, n) = raw(&server, None, &get(&format!("{est}/simpleenroll")));
    assert!(s.starts_with("HTTP/1.1 405"), "{s}");
    has(&n, &["Allow"], &s);
    let (s, _) = raw(&server, None, &get(&format!("{est}/nothing-here")));
    assert!(s.starts_with("HTTP/1.1 404"), "{s}");
    let big = vec![b'A'; 100 * 1024];
    let (s, _) = raw(
        &server,
        client,
        &post(&format!("{est}/simpleenroll"), &big, ""),
    );
    assert!(s.starts_with("HTTP/1.1 413"), "{s}");

    // Pending manual approval: 202 with Retry-After.
    let pending = Server::start_with(|c| {
        *c = c.replace(
            "[profiles.operational]\n",
            "[profiles.operational]\nmanual_approval = \"true\"\n",
        );
    });
    let body = csr(&pending, "SN-W2");
    let (bk, bc) = birth(&pending, "SN-W2");
    let (s, n) = raw(
        &pending,
        Some((bc.as_path(), bk.as_path())),
        &post(&format!("{est}/simpleenroll"), &body, ""),
    );
    assert!(s.starts_with("HTTP/1.1 202"), "{s}");
    has(&n, &["Retry-After", "Content-Type"], &s);
}
