//! `fleetca bench crl` and `fleetca bench ocsp`: how fast status is published.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use fleetca_pki::{
    build_ocsp_request, ocsp_response_status, CaCertificate, CertificateSerial, HierarchyParams,
    Issuer, KeyAlgorithm, OcspStatus, RevocationReason, RevokedEntry,
};
use fleetca_store::CertificateQuery;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;

use crate::config::Config;
use crate::pki_setup::{config_path, load_cas};

/// Arguments of `fleetca bench crl`.
#[derive(clap::Args)]
pub struct CrlArgs {
    /// Revoked entries in the CRL.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Key algorithm of the (throwaway, in-memory) CA.
    #[arg(long, default_value = "p256", value_parser = crate::parse_key_algorithm)]
    key_algorithm: KeyAlgorithm,
    /// Builds to time (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Builds a CRL of `--entries` random entries with a throwaway CA and prints the times.
pub fn crl(args: CrlArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let key = Arc::new(args.key_algorithm.generate()?);
    let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("Bench"), now)?;
    let issuer = Issuer::new("bench", root.der, key)?;
    let reasons = [
        RevocationReason::KeyCompromise,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
    ];
    let entries: Vec<RevokedEntry> = (0..args.entries)
        .map(|i| RevokedEntry {
            serial: CertificateSerial::generate(),
            revoked_at: now,
            reason: reasons
                .get(i % reasons.len())
                .copied()
                .unwrap_or(RevocationReason::Unspecified),
        })
        .collect();
    let mut times = Vec::new();
    let mut size = 0;
    for round in 0..args.rounds.max(1) {
        let started = Instant::now();
        let der = issuer.crl(
            round as u64 + 1,
            now,
            now + time::Duration::days(7),
            &entries,
        )?;
        times.push(started.elapsed());
        size = der.len();
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!(
        "CRL of {} entries ({} key): {} bytes, built and signed in {:.1} ms (median of {}; min {:.1} ms, max {:.1} ms)",
        args.entries,
        args.key_algorithm,
        size,
        ms(median),
        times.len(),
        ms(times.first().copied().unwrap_or_default()),
        ms(times.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// Arguments of `fleetca bench ocsp`.
#[derive(clap::Args)]
pub struct OcspArgs {
    /// OCSP URL of a running server, e.g. http://127.0.0.1:8080/ocsp
    #[arg(long)]
    url: String,
    /// The server's data directory: the warm set is taken from its inventory.
    #[arg(long, env = "FLEETCA_DATA_DIR")]
    data_dir: PathBuf,
    /// How many of the inventory's operational certificates to ask about (the warm set).
    #[arg(long, default_value_t = 1000)]
    certificates: u32,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, default_value = "10s")]
    duration: fleetca_pki::HumanDuration,
    /// Use POST (default: GET, the cacheable form of RFC 6960 Appendix A).
    #[arg(long)]
    post: bool,
    /// Put a nonce in every request: no answer can be cached, each one is signed.
    #[arg(long)]
    nonce: bool,
}

/// Drives the OCSP responder with requests (no nonce) for a warm set of certificates.
pub async fn ocsp(args: OcspArgs) -> anyhow::Result<()> {
    let rest = args
        .url
        .strip_prefix("http://")
        .context("--url must be an http:// URL")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, "ocsp"));
    let path = format!("/{}", path.trim_end_matches('/'));
    let addr: std::net::SocketAddr = tokio::net::lookup_host(authority)
        .await?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))?;

    let config = Config::load(&config_path(&args.data_dir))?;
    let cas = load_cas(&config)?;
    let store = fleetca_store::open(&config.database)?;
    let records = store
        .certificates(&CertificateQuery {
            limit: Some(args.certificates.max(1) * 2),
            not_expired_at: Some(OffsetDateTime::now_utc()),
            ..CertificateQuery::default()
        })
        .await?;
    let mut requests = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.issuer == "operational")
        .take(args.certificates as usize)
    {
        let serial = CertificateSerial::from_hex(&r.serial).context("inventory serial")?;
        let nonce = args
            .nonce
            .then(|| CertificateSerial::generate().as_bytes().to_vec());
        let der = build_ocsp_request(cas.operational.certificate_der(), &serial, nonce.as_deref())?;
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        requests.push((Bytes::from(der), format!("{path}/{encoded}")));
    }
    if requests.is_empty() {
        bail!("the inventory has no unexpired operational certificate to ask about; run `fleetca bench enroll` first");
    }
    let requests = Arc::new(requests);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency.max(1) {
        let (requests, done, failed, stop) = (
            Arc::clone(&requests),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&stop),
        );
        let authority = authority.to_string();
        let (post, path) = (args.post, path.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            'connect: while !stop.load(Ordering::Relaxed) {
                let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
                else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let Some((der, get_path)) = requests.get(i % requests.len()) else {
                        break 'connect;
                    };
                    i += 1;
                    let builder = hyper::Request::builder().header(
                        HOST,
                        HeaderValue::from_str(&authority)
                            .unwrap_or(HeaderValue::from_static("localhost")),
                    );
                    let request = if post {
                        builder
                            .method("POST")
                            .uri(path.as_str())
                            .header(CONTENT_TYPE, "application/ocsp-request")
                            .body(Full::new(der.clone()))
                    } else {
                        builder
                            .method("GET")
                            .uri(get_path.as_str())
                            .body(Full::new(Bytes::new()))
                    };
                    let Ok(request) = request else { break 'connect };
                    let t = Instant::now();
                    let ok = match sender.send_request(request).await {
                        Ok(resp) => match resp.into_body().collect().await {
                            Ok(body) => matches!(
                                ocsp_response_status(&body.to_bytes()),
                                Ok(OcspStatus::Good | OcspStatus::Revoked { .. })
                            ),
                            Err(_) => false,
                        },
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue 'connect;
                        }
                    };
                    latencies.push(t.elapsed());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        });
    }
    tokio::time::sleep(args.duration.0).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let ok = done.load(Ordering::Relaxed);
    println!(
        "OCSP {}{} {}: {} certificates, {} connections, {:.1} s",
        if args.post { "POST" } else { "GET" },
        if args.nonce {
            " with nonces (signed per request)"
        } else {
            ""
        },
        args.url,
        requests.len(),
        args.concurrency,
        elapsed.as_secs_f64()
    );
    println!(
        "responses: {ok} ok ({:.0}/s), {} failed",
        ok as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
    if failed.load(Ordering::Relaxed) > 0 {
        bail!("some OCSP requests failed");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
