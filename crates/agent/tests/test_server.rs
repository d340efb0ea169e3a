//! The agent against a small EST server of the test's own (real TLS, real HTTP), for the
//! answers the fleetca server does not produce yet: `202 Accepted` with `Retry-After` (the
//! approval queue is another issue), a trust anchor bootstrapped from `/cacerts` pinned by
//! fingerprint, and a CA roll-over announced in `/cacerts`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use fleetca_agent::trust::{fingerprint, format_fingerprint, load_anchors};
use fleetca_agent::{Agent, Config, OnceResult};
use fleetca_pki::{certs_only, rcgen, KeyAlgorithm, SoftwareKey, SystemClock};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

struct Ca {
    key: SoftwareKey,
    params: rcgen::CertificateParams,
    der: Vec<u8>,
}

fn ca(cn: &str) -> Ca {
    let key = KeyAlgorithm::P256.generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { key, params, der }
}

/// An end-entity certificate for `key` signed by `ca`.
fn leaf(
    ca: &Ca,
    key: &SoftwareKey,
    subject: rcgen::DistinguishedName,
    sans: Vec<String>,
) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(sans).unwrap();
    params.distinguished_name = subject;
    params.not_before = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(1);
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    params.signed_by(key, &issuer).unwrap().der().to_vec()
}

/// What the test server answers.
struct Script {
    /// Answer 202 (Retry-After: 1) to this many enrollment requests before issuing.
    pending: usize,
    /// The certificates `cacerts` returns.
    cacerts: Vec<Vec<u8>>,
}

/// Requests the server saw: (path, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn answer(
    req: Request<hyper::body::Incoming>,
    ca: Arc<Ca>,
    script: Arc<Mutex<Script>>,
    seen: Seen,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    seen.lock().unwrap().push((path.clone(), body.clone()));
    let b64 = |der: Vec<u8>| Bytes::from(base64::engine::general_purpose::STANDARD.encode(der));
    let mut script = script.lock().unwrap();
    let response = if path.ends_with("/cacerts") {
        let refs: Vec<&[u8]> = script.cacerts.iter().map(Vec::as_slice).collect();
        Response::new(Full::new(b64(certs_only(&refs).unwrap())))
    } else if script.pending > 0 {
        script.pending -= 1;
        let mut r = Response::new(Full::new(Bytes::from_static(b"awaiting approval\n")));
        *r.status_mut() = StatusCode::ACCEPTED;
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        r
    } else {
        let text: String = String::from_utf8(body)
            .unwrap()
            .split_whitespace()
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der.into()).unwrap();
        let mut csr = csr;
        csr.params.not_before = OffsetDateTime::now_utc() - time::Duration::minutes(1);
        csr.params.not_after = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        let cert = csr.signed_by(&issuer).unwrap().der().to_vec();
        Response::new(Full::new(b64(certs_only(&[&cert]).unwrap())))
    };
    Ok(response)
}

/// Serves HTTPS on 127.0.0.1 with a certificate for 127.0.0.1 from `ca`, for the life of
/// the test process's runtime.
async fn serve(ca: Arc<Ca>, script: Arc<Mutex<Script>>, seen: Seen) -> String {
    let server_key = KeyAlgorithm::P256.generate().unwrap();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, "test EST server");
    let cert = leaf(&ca, &server_key, name, vec!["127.0.0.1".into()]);
    let key_der = PrivatePkcs8KeyDer::from(pem_to_der(&server_key.to_pkcs8_pem()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert)],
        PrivateKeyDer::Pkcs8(key_der),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded by the test: the runtime (and this task) ends with it.
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, ca, script, seen) = (
                acceptor.clone(),
                Arc::clone(&ca),
                Arc::clone(&script),
                Arc::clone(&seen),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    answer(req, Arc::clone(&ca), Arc::clone(&script), Arc::clone(&seen))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr.to_string()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A device with a birth certificate from `ca`, and its agent configuration.
fn device(dir: &std::path::Path, ca: &Ca, addr: &str, trust: &str) -> String {
    let key = KeyAlgorithm::P256.generate().unwrap();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, "dev-1");
    name.push(rcgen::DnType::from_oid(&[2, 5, 4, 5]), "dev-1");
    let cert = leaf(ca, &key, name, Vec::new());
    std::fs::write(dir.join("birth.key"), key.to_pkcs8_pem()).unwrap();
    std::fs::write(dir.join("birth.pem"), fleetca_pki::pem_certificate(&cert)).unwrap();
    format!(
        r#"[server]
url = "https://{addr}/.well-known/est"
trust_anchor = "{anchor}"
{trust}
timeout = "10s"

[identity]
birth_key = "{dir}/birth.key"
birth_certificate = "{dir}/birth.pem"
key = "{dir}/device.key"
certificate = "{dir}/device.pem"
"#,
        anchor = dir.join("anchors.pem").display(),
        dir = dir.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_202_is_retried_after_retry_after_with_the_same_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(ca("Test Root"));
    let script = Arc::new(Mutex::new(Script {
        pending: 2,
        cacerts: vec![ca.der.clone()],
    }));
    let seen: Seen = Arc::default();
    let addr = serve(Arc::clone(&ca), script, Arc::clone(&seen)).await;
    std::fs::write(
        dir.path().join("anchors.pem"),
        fleetca_pki::pem_certificate(&ca.der),
    )
    .unwrap();
    let config = Config::parse(&device(dir.path(), &ca, &addr, "")).unwrap();
    let mut agent = Agent::new(config, Arc::new(SystemClock)).unwrap();
    let started = Instant::now();
    assert_eq!(agent.once().await.unwrap(), OnceResult::Renewed);
    // Two 202s, each answered "Retry-After: 1": the agent waited as told.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let seen = seen.lock().unwrap();
    let posts: Vec<&(String, Vec<u8>)> = seen
        .iter()
        .filter(|(p, _)| p.ends_with("/simpleenroll"))
        .collect();
    assert_eq!(
        posts.len(),
        3,
        "{:?}",
        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    assert!(
        posts.iter().all(|(_, body)| *body == posts[0].1),
        "the same CSR each time"
    );
    // And the key on disk is the one that CSR was made with.
    let id = fleetca_agent::IdentityStore::new(
        dir.path().join("device.key"),
        dir.path().join("device.pem"),
    )
    .load()
    .unwrap()
    .unwrap();
    assert_eq!(id.info.device_serial(), Some("dev-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anchor_is_bootstrapped_from_cacerts_only_with_the_pinned_fingerprint() {
    let ca = Arc::new(ca("Test Root"));
    let script = Arc::new(Mutex::new(Script {
        pending: 0,
        cacerts: vec![ca.der.clone()],
    }));
    let addr = serve(Arc::clone(&ca), script, Seen::default()).await;

    // A wrong pin: refused, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let wrong = format_fingerprint(&fingerprint(b"something else"));
    let text = device(
        dir.path(),
        &ca,
        &addr,
        &format!("bootstrap_fingerprint = \"{wrong}\""),
    );
    let mut agent = Agent::new(Config::parse(&text).unwrap(), Arc::new(SystemClock)).unwrap();
    let err = agent.once().await.unwrap_err();
    assert!(err.to_string().contains("pinned fingerprint"), "{err}");
    assert!(!dir.path().join("anchors.pem").exists());

    // The right pin: the anchor is saved and the device enrolls over verified TLS.
    let pin = format_fingerprint(&fingerprint(&ca.der));
    let text = device(
        dir.path(),
        &ca,
        &addr,
        &format!("bootstrap_fingerprint = \"{pin}\""),
    );
    let mut agent = Agent::new(Config::parse(&text).unwrap(), Arc::new(SystemClock)).unwrap();
    assert_eq!(agent.once().await.unwrap(), OnceResult::Renewed);
    let anchors = load_anchors(&dir.path().join("anchors.pem"))
        .unwrap()
        .unwrap();
    assert_eq!(anchors, vec![ca.der.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rollover_in_cacerts_is_accepted_only_with_a_link_from_the_current_anchor() {
    let (old, new, rogue) = (Arc::new(ca("Root G1")), ca("Root G2"), ca("Rogue"));
    let link = {
        let issuer = rcgen::Issuer::from_params(&old.params, &old.key);
        new.params
            .signed_by(&new.key, &issuer)
            .unwrap()
            .der()
            .to_vec()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("anchors.pem"),
        fleetca_pki::pem_certificate(&old.der),
    )
    .unwrap();

    // A rogue root without a link: ignored.
    let script = Arc::new(Mutex::new(Script {
        pending: 0,
        cacerts: vec![old.der.clone(), rogue.der.clone()],
    }));
    let addr = serve(Arc::clone(&old), Arc::clone(&script), Seen::default()).await;
    let config = Config::parse(&device(dir.path(), &old, &addr, "")).unwrap();
    let mut agent = Agent::new(config, Arc::new(SystemClock)).unwrap();
    agent.ensure_anchors().await.unwrap();
    assert_eq!(agent.refresh_anchors().await.unwrap(), 0);

    // The new root with its link certificate: added, the old one kept.
    script.lock().unwrap().cacerts = vec![old.der.clone(), new.der.clone(), link];
    assert_eq!(agent.refresh_anchors().await.unwrap(), 1);
    let anchors = load_anchors(&dir.path().join("anchors.pem"))
        .unwrap()
        .unwrap();
    assert_eq!(anchors, vec![old.der.clone(), new.der.clone()]);
    assert_eq!(agent.refresh_anchors().await.unwrap(), 0);
}
