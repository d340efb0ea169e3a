//! The floor under `fleetca bench enroll`: the work a request cannot skip, measured on the
//! same machine with the same client, so that the benchmark's figures can be read against
//! what the machine allows (issue 21, "back to the machine's limit").
//!
//! This is a measuring instrument, not a server to run: it answers `simpleenroll` and
//! `simplereenroll` with the same TLS configuration as `fleetca serve`
//! (`fleetca_est::server_config`, the data directory's server certificate), verifies the
//! client's chain once per connection (webpki, as fleetca's per-connection trust check),
//! the CSR's signature, builds and lints the certificate with the operational CA's
//! `Issuer` under the data directory's `[profiles.operational]`, signs it and answers
//! certs-only. What it leaves out is everything a production request also needs: the
//! registration authority (standing, limits, rules, the inventory reads), the durable
//! record of the certificate and its decision, the audit, revocation checks, metrics,
//! request limits. The difference between `fleetca serve` and this floor, under the same
//! `fleetca bench enroll`, is the cost of those guarantees.
//!
//! With `--durable FILE`, each issued certificate is also written to FILE by one writer
//! thread and `fdatasync`ed before it is returned, every write waiting being shared by one
//! write and one sync (group commit): the floor of "recorded durably before it is
//! returned" on this disk, without a database's pages and indexes. `FLOOR_GATHER_US=N` in
//! the environment lets the writer wait up to N µs for more writes (up to 16) before it
//! syncs: larger groups, fewer syncs, more latency.
//!
//! ```text
//! fleetca init --data-dir D
//! cargo run --release -p fleetca --example est_floor -- D 127.0.0.1:18800 [--durable FILE]
//! fleetca bench enroll --data-dir D --url https://127.0.0.1:18800/.well-known/est \
//!     --ca D/pki/root-ca.pem --concurrency 16 --server-pid PID [--keep-alive 10]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    issuer: fleetca_pki::Issuer,
    profile: fleetca_pki::CertificateProfile,
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    cacerts: Vec<CertificateDer<'static>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    journal: Option<std::sync::mpsc::Sender<Append>>,
}

/// A certificate to append, and where to say that it is on disk.
type Append = (Vec<u8>, tokio::sync::oneshot::Sender<std::io::Result<()>>);

/// The journal's size: written once with zeros, then overwritten in a ring, so that a
/// sync flushes data blocks only (no block allocation or size change to record), the
/// cheapest durable write a file offers; SQLite's WAL is reused the same way after a
/// checkpoint.
const JOURNAL_BYTES: u64 = 64 << 20;

/// The group-committing writer of `--durable`: takes every append waiting, writes them in
/// one `pwrite`, one `fdatasync`, then answers them all.
fn journal(path: PathBuf) -> anyhow::Result<std::sync::mpsc::Sender<Append>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for chunk in 0..(JOURNAL_BYTES >> 20) {
        file.write_all_at(&zeros, chunk << 20)?;
    }
    file.sync_all()?;
    let (send, receive) = std::sync::mpsc::channel::<Append>();
    let gather = std::time::Duration::from_micros(
        std::env::var("FLOOR_GATHER_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    std::thread::spawn(move || {
        let mut offset = 0u64;
        let mut buffer = Vec::new();
        while let Ok(first) = receive.recv() {
            let mut batch = vec![first];
            batch.extend(receive.try_iter());
            // FLOOR_GATHER_US: wait that long for more, up to 16 in all.
            let deadline = std::time::Instant::now() + gather;
            while batch.len() < 16 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match receive.recv_timeout(left) {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            buffer.clear();
            for (der, _) in &batch {
                buffer.extend_from_slice(der);
            }
            if offset + buffer.len() as u64 > JOURNAL_BYTES {
                offset = 0;
            }
            let synced = file
                .write_all_at(&buffer, offset)
                .and_then(|()| file.sync_data());
            offset += buffer.len() as u64;
            for (_, done) in batch {
                let _ = done.send(match &synced {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    });
    Ok(send)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().context("usage: est_floor DATA_DIR LISTEN")?);
    let listen: SocketAddr = args
        .next()
        .context("usage: est_floor DATA_DIR LISTEN")?
        .parse()?;
    let durable = match (args.next().as_deref(), args.next()) {
        (Some("--durable"), Some(file)) => Some(PathBuf::from(file)),
        (None, None) => None,
        _ => anyhow::bail!("usage: est_floor DATA_DIR LISTEN [--durable FILE]"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(data_dir, listen, durable))
}

async fn serve(
    data_dir: PathBuf,
    listen: SocketAddr,
    durable: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = fleetca::config::Config::load(&data_dir.join("fleetca.toml"))?;
    let keys = fleetca::keys::KeySource::new(&config)?;
    let signer = keys.signer("operational", &config.operational_key)?;
    let issuer = fleetca_pki::Issuer::new(
        "operational",
        pem_certificates(&config.operational_certificate)?
            .remove(0)
            .to_vec(),
        signer,
    )?;
    let mut anchors = Vec::new();
    let mut cacerts = pem_certificates(&config.root_certificate)?;
    for path in [
        &config.operational_certificate,
        &config.manufacturing_certificate,
    ] {
        for cert in pem_certificates(path)? {
            anchors.push(webpki::anchor_from_trusted_cert(&cert)?.to_owned());
            cacerts.push(cert);
        }
    }
    let chain = pem_certificates(&config.tls_certificate)?;
    let key = fleetca_pki::private_key_der(&std::fs::read(&config.tls_key)?)?;
    let tls = fleetca_est::server_config(chain, key, Vec::new(), &[])?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let floor = Arc::new(Floor {
        issuer,
        profile: config.profile("operational")?.clone(),
        anchors,
        cacerts,
        algorithms: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        journal: durable.map(journal).transpose()?,
    });
    let listener = TcpListener::bind(listen).await?;
    eprintln!("est_floor listening on {listen}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let floor = Arc::clone(&floor);
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let chain: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let trusted = floor.verify_chain(&chain);
            let service = hyper::service::service_fn(move |request| {
                let floor = Arc::clone(&floor);
                async move { Ok::<_, hyper::Error>(floor.answer(trusted, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

impl Floor {
    fn verify_chain(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some(leaf) = chain.first() else {
            return false;
        };
        let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
            return false;
        };
        ee.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            chain.get(1..).unwrap_or_default(),
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    }

    async fn answer(&self, trusted: bool, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.issue(trusted, request).await {
            Ok(message) => Response::builder()
                .header(
                    "content-type",
                    "application/pkcs7-mime; smime-type=certs-only",
                )
                .header("content-transfer-encoding", "base64")
                .body(Full::new(Bytes::from(fleetca_pki::base64_lines(&message))))
                .unwrap_or_default(),
            Err(e) => {
                let mut response = Response::new(Full::new(Bytes::from(format!("{e:#}\n"))));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            }
        }
    }

    async fn issue(&self, trusted: bool, request: Request<Incoming>) -> anyhow::Result<Vec<u8>> {
        if request.uri().path().ends_with("/cacerts") {
            // The benchmark's untimed pre-flight.
            let cacerts: Vec<&[u8]> = self.cacerts.iter().map(|c| c.as_ref()).collect();
            return Ok(fleetca_pki::certs_only(&cacerts)?);
        }
        anyhow::ensure!(trusted, "no trusted client certificate");
        let body = Limited::new(request.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("body: {e}"))?
            .to_bytes();
        let der = fleetca_est::decode_request_body(&body)?;
        let csr = fleetca_pki::CertificateRequest::from_der(&der)?;
        let order = fleetca_pki::IssuanceOrder {
            device_serial: csr.subject_serial_number().unwrap_or("floor").to_string(),
            spki_der: csr.spki_der().to_vec(),
        };
        let now = time::OffsetDateTime::now_utc();
        let prepared = self.issuer.prepare(&self.profile, &order, now)?;
        let issued = self.issuer.issue(prepared)?;
        if let Some(journal) = &self.journal {
            let (done, on_disk) = tokio::sync::oneshot::channel();
            journal
                .send((issued.der.clone(), done))
                .map_err(|_| anyhow::anyhow!("the journal's writer stopped"))?;
            on_disk.await??;
        }
        Ok(fleetca_pki::certs_only(&[issued.der.as_slice()])?)
    }
}

fn pem_certificates(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", path.display()))
}
