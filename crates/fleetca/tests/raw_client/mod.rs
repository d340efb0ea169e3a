//! A raw client for network-level tests: TCP from a chosen loopback source address
//! (127.0.0.x models distinct clients) and TLS with rustls, reading the raw bytes the
//! server sends, no HTTP library in between.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A TCP connection to `server` ("host:port") from `source` (e.g. "127.0.0.2").
pub fn tcp_from(source: &str, server: &str) -> std::io::Result<TcpStream> {
    let server: SocketAddr = server.parse().expect("server address");
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("source address"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))?
    })?;
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    Ok(std)
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// TLS to the server (trusting `root`, optionally with a client certificate), over `tcp`.
pub fn tls(tcp: TcpStream, root: &Path, client: Option<(&Path, &Path)>) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `request` and reads until the server closes (or 20 s pass); the raw bytes.
pub fn exchange(stream: &mut Tls, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// The resident set size of process `pid`, in KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Whether the server closed `tcp` (EOF or reset) within `within`, having sent nothing.
pub fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    tcp.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}
