//! Issue 13 item 1: a cached OCSP answer must carry the requester's own CertID. One request
//! with a SHA-256 CertID must not make SHA-1 clients (OpenSSL's default) get "No Status
//! found" for a revoked certificate, nor the other way round, over POST or GET.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Hash {
    Sha1,
    Sha256,
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Post,
    Get,
}

/// An operational certificate of a fresh device, revoked; returns its PEM path.
fn revoked_certificate(server: &Server, serial: &str) -> PathBuf {
    let (bk, bc) = birth(server, serial);
    let subj = format!("/CN={serial}/serialNumber={serial}");
    let (_, cert) = enroll(server, "simpleenroll", (&bc, &bk), &subj, serial);
    let out = run(Command::new(fleetca_bin())
        .args([
            "cert",
            "revoke",
            &serial_of(&cert),
            "--reason",
            "keyCompromise",
            "--yes",
        ])
        .arg("--data-dir")
        .arg(server.data()));
    assert!(out.status.success(), "{out:?}");
    cert
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The digest option goes before `-cert`: openssl applies it to the CertIDs that follow.
fn digest_args(hash: Hash) -> Vec<&'static str> {
    match hash {
        Hash::Sha1 => vec![],
        Hash::Sha256 => vec!["-sha256"],
    }
}

/// Asks about `cert` without a nonce (the cacheable case) with a CertID hashed with
/// `hash`, over `transport`; returns what `openssl ocsp` makes of the answer, which it
/// matches against its own CertID.
fn ask(server: &Server, cert: &Path, hash: Hash, transport: Transport, n: usize) -> String {
    let issuer = server.pki("operational-ca.pem");
    let url = format!("http://{}/ocsp", server.status_addr);
    let mut base: Vec<String> = vec!["ocsp".into(), "-issuer".into(), p(&issuer).into()];
    base.extend(digest_args(hash).into_iter().map(String::from));
    base.extend([
        "-cert".into(),
        p(cert).into(),
        "-CAfile".into(),
        p(&server.root()).into(),
        "-no_nonce".into(),
    ]);
    match transport {
        Transport::Post => text(&run(Command::new("openssl")
            .args(&base)
            .args(["-url", &url]))),
        Transport::Get => {
            // `openssl ocsp` only POSTs: write its request, GET it as RFC 6960 A.1 says
            // (base64, then percent-encoded), and let openssl read the answer.
            let req = server.work(&format!("req-{n}.der"));
            let resp = server.work(&format!("resp-{n}.der"));
            let mut write = base.clone();
            write.extend(["-reqout".into(), p(&req).into()]);
            // With -reqout and no -url openssl writes the request and stops.
            run_ok(Command::new("openssl").args(&write));
            let b64 = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                std::fs::read(&req).unwrap(),
            );
            let encoded = b64
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D");
            let out = run(Command::new("curl")
                .args(["-sS", "--max-time", "30", "-D", "-", "-o", p(&resp)])
                .arg(format!("{url}/{encoded}")));
            let headers = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                headers.contains("Cache-Control: public, max-age="),
                "a GET answer keyed on the exact request is shareable by URL: {headers}"
            );
            let mut read = base.clone();
            read.extend(["-respin".into(), p(&resp).into()]);
            text(&run(Command::new("openssl").args(&read)))
        }
    }
}

fn assert_revoked(answer: &str, what: &str) {
    assert!(
        answer.contains("Response verify OK") && answer.contains(": revoked"),
        "{what}: expected a verified 'revoked' for the requester's own CertID:\n{answer}"
    );
    assert!(!answer.contains("No Status found"), "{what}:\n{answer}");
}

#[test]
fn every_cached_answer_carries_the_requesters_own_cert_id() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let cases = [
        (Transport::Post, [Hash::Sha256, Hash::Sha1]),
        (Transport::Post, [Hash::Sha1, Hash::Sha256]),
        (Transport::Get, [Hash::Sha256, Hash::Sha1]),
        (Transport::Get, [Hash::Sha1, Hash::Sha256]),
    ];
    let certs: Vec<PathBuf> = (0..cases.len())
        .map(|i| revoked_certificate(&server, &format!("SN-CID-{i}")))
        .collect();
    // The revocations reach the responder within a second; wait with a nonce (never
    // cached) so that no answer is cached before the cases run.
    let deadline = Instant::now() + Duration::from_secs(15);
    for cert in &certs {
        loop {
            let out = text(&run(Command::new("openssl")
                .arg("ocsp")
                .arg("-issuer")
                .arg(server.pki("operational-ca.pem"))
                .arg("-cert")
                .arg(cert)
                .arg("-CAfile")
                .arg(server.root())
                .arg("-url")
                .arg(format!("http://{}/ocsp", server.status_addr))));
            if out.contains(": revoked") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "revocation never published: {out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut n = 0;
    for ((transport, order), cert) in cases.iter().zip(&certs) {
        // Each hash twice: the second request of each is served from the cache.
        for hash in order.iter().chain(order.iter()) {
            n += 1;
            let answer = ask(&server, cert, *hash, *transport, n);
            assert_revoked(&answer, &format!("{transport:?} {hash:?} after {order:?}"));
        }
        // And across transports: GET and POST share the cache.
        let other = match transport {
            Transport::Post => Transport::Get,
            Transport::Get => Transport::Post,
        };
        for hash in order.iter().rev() {
            n += 1;
            let answer = ask(&server, cert, *hash, other, n);
            assert_revoked(&answer, &format!("{other:?} {hash:?} after {transport:?}"));
        }
    }
    assert!(server.alive());
}
