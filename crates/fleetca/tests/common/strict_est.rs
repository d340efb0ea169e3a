//! A strict EST peer for client tests: it decodes request bodies the way the reference C
//! EST server does (OpenSSL's base64 BIO in line mode, here `openssl base64 -d`), refuses a
//! body without line breaks or without `Content-Transfer-Encoding: base64`, and answers
//! like that server ("400 Unable to parse the PKCS10 CSR"). A body it can decode gets 202
//! with `Retry-After`: the test only needs to know the request was understood. It serves
//! TLS with the fleetca server's certificate (trusted by the clients under test) and
//! answers `cacerts` with the real server's body.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{curl, Server};

/// What the peer made of one POST.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// `Content-Transfer-Encoding` as sent.
    pub transfer_encoding: Option<String>,
    /// `Ok(subject of the decoded CSR)` or `Err(why it was refused)`.
    pub outcome: Result<String, String>,
}

pub struct StrictEst {
    pub addr: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl StrictEst {
    /// Starts the peer with `server`'s TLS identity and `cacerts` body.
    pub fn start(server: &Server) -> Self {
        let cacerts = curl(server, &[], &server.est("cacerts")).body;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(server.pki("server.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(server.pki("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let work = tempfile::tempdir().unwrap();
        std::thread::spawn(move || {
            let work = work;
            // Bounded: a test sends a handful of requests.
            for stream in listener.incoming().take(64) {
                let Ok(tcp) = stream else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // One request per connection (the answer says Connection: close).
                if let Some((head, body)) = read_request(&mut tls) {
                    let answer = answer(&head, &body, &cacerts, work.path(), &log);
                    let _ = tls.write_all(&answer);
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        Self { addr, received }
    }

    pub fn url(&self) -> String {
        format!("https://{}/.well-known/est", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 65536 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn answer(
    head: &str,
    body: &[u8],
    cacerts: &[u8],
    work: &std::path::Path,
    log: &Mutex<Vec<Received>>,
) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if request_line.starts_with("GET ") && path.ends_with("/cacerts") {
        return response(
            "200 OK",
            "application/pkcs7-mime; smime-type=certs-only",
            cacerts,
            "Content-Transfer-Encoding: base64\r\n",
        );
    }
    let transfer_encoding = header(head, "content-transfer-encoding");
    let outcome = decode_line_mode(body, transfer_encoding.as_deref(), work);
    log.lock().unwrap().push(Received {
        path,
        transfer_encoding,
        outcome: outcome.clone(),
    });
    match outcome {
        Ok(_) => response(
            "202 Accepted",
            "text/plain",
            b"accepted\n",
            "Retry-After: 60\r\n",
        ),
        Err(_) => response(
            "400 Bad Request",
            "text/plain",
            b"Unable to parse the PKCS10 CSR\n",
            "",
        ),
    }
}

/// What the reference server's OpenSSL BIO accepts: base64 in lines, declared as such.
fn decode_line_mode(
    body: &[u8],
    transfer_encoding: Option<&str>,
    work: &std::path::Path,
) -> Result<String, String> {
    if !transfer_encoding.is_some_and(|t| t.eq_ignore_ascii_case("base64")) {
        return Err(format!(
            "Content-Transfer-Encoding is {transfer_encoding:?}, not base64"
        ));
    }
    let text = String::from_utf8_lossy(body);
    if !text.trim_end().contains('\n') && text.trim_end().len() > 76 {
        return Err("base64 body without line breaks".into());
    }
    if let Some(long) = text.lines().find(|l| l.trim_end().len() > 76) {
        return Err(format!(
            "base64 line of {} characters (RFC 2045: 76 at most)",
            long.len()
        ));
    }
    let b64 = work.join("body.b64");
    let der = work.join("body.der");
    std::fs::write(&b64, body).unwrap();
    let decoded = std::process::Command::new("openssl")
        .args(["base64", "-d", "-in"])
        .arg(&b64)
        .arg("-out")
        .arg(&der)
        .output()
        .unwrap();
    if !decoded.status.success() || std::fs::metadata(&der).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err("openssl base64 -d decoded nothing".into());
    }
    let req = std::process::Command::new("openssl")
        .args(["req", "-inform", "DER", "-noout", "-subject", "-in"])
        .arg(&der)
        .output()
        .unwrap();
    if !req.status.success() {
        return Err(format!(
            "not a PKCS#10 CSR: {}",
            String::from_utf8_lossy(&req.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&req.stdout).trim().to_string())
}

fn response(status: &str, content_type: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Self-check of the peer: a one-line body is refused, the same body wrapped is decoded.
pub fn self_check(der: &[u8]) -> (Result<String, String>, Result<String, String>) {
    use base64::Engine;
    let work = tempfile::tempdir().unwrap();
    let one_line = base64::engine::general_purpose::STANDARD.encode(der);
    let wrapped = super::base64_lines(der);
    (
        decode_line_mode(one_line.as_bytes(), Some("base64"), work.path()),
        decode_line_mode(wrapped.as_bytes(), Some("base64"), work.path()),
    )
}
