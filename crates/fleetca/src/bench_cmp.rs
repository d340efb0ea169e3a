//! `fleetca bench enroll --cmp`: after the timed `simplereenroll`s, every device renews
//! once more with CMP `kur` (RFC 9483 section 4.1.3) at `/.well-known/cmp`, signed with the
//! certificate `simplereenroll` just gave it, for a new key prepared beforehand; one new
//! TLS connection per request (server authentication only: CMP authenticates the message),
//! implicit confirmation asked, so one round trip per renewal as for EST. Timed apart, with
//! the server's CPU per renewal, and compared with `simplereenroll` of the same run.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fleetca_pki::{KeyAlgorithm, SoftwareKey};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::ProtocolVersion;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::{quantile, timed, OpStats, Shared};
use crate::process_cpu::{cpu_ticks, micros_per};

/// What a device needs for its `kur`.
pub(super) struct KurMaterial {
    /// The key `simplereenroll` certified (signs the kur).
    pub renewal_key: SoftwareKey,
    /// The key the kur asks a certificate for.
    pub kur_key: SoftwareKey,
    /// The certificate `simplereenroll` returned.
    pub renewed: std::sync::OnceLock<Vec<u8>>,
}

impl KurMaterial {
    pub(super) fn new(renewal_key: SoftwareKey) -> anyhow::Result<Self> {
        Ok(Self {
            renewal_key,
            kur_key: KeyAlgorithm::P256.generate()?,
            renewed: std::sync::OnceLock::new(),
        })
    }
}

/// Runs the timed kur pass and prints its report next to `simplereenroll`'s server CPU per
/// renewal (`est_server_us`); returns the number of failed kurs.
pub(super) async fn run(
    shared: &Arc<Shared>,
    concurrency: usize,
    server_stat: Option<&str>,
    ticks: u64,
    est_server_us: Option<f64>,
    est_per_second: f64,
) -> anyhow::Result<u64> {
    shared.next.store(0, Ordering::Relaxed);
    let server_before = server_stat.map(cpu_ticks).transpose()?;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker(Arc::clone(shared)));
    }
    let mut stats = OpStats::new("cmp kur");
    while let Some(done) = workers.join_next().await {
        stats.merge(done?);
    }
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let server_us = match (server_stat, server_before) {
        (Some(path), Some(before)) => {
            micros_per(cpu_ticks(path)?.saturating_sub(before), ticks, stats.ok())
        }
        _ => None,
    };
    let mut sorted = stats.latencies_us.clone();
    sorted.sort_unstable();
    let ms = |p: f64| {
        quantile(&sorted, p).map_or_else(|| "-".to_string(), |us| format!("{:.2}", us as f64 / 1e3))
    };
    println!(
        "cmp kur: {} ok, {} failed, {:.3} s, {:.1} renewals/s (new TLS connection per request, implicit confirmation)",
        stats.ok(),
        stats.failed,
        wall,
        stats.ok() as f64 / wall
    );
    println!(
        "{:<15} {:>8} {:>8} {:>8} {:>8}",
        "cmp kur",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(1.0)
    );
    if let Some(us) = server_us {
        println!("server CPU: {us:.0} µs per cmp kur");
    }
    if let (Some(cmp), Some(est)) = (server_us, est_server_us) {
        println!(
            "cmp kur / simplereenroll: {:.2}x server CPU per renewal, {:.2}x throughput",
            cmp / est.max(1e-9),
            (stats.ok() as f64 / wall) / est_per_second.max(1e-9)
        );
    }
    let mut errors: Vec<_> = stats.errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1));
    for (message, count) in errors.into_iter().take(5) {
        println!("  {count:>7} x cmp kur: {message}");
    }
    Ok(stats.failed)
}

async fn worker(shared: Arc<Shared>) -> OpStats {
    let mut stats = OpStats::new("cmp kur");
    while let Some(device) = shared
        .devices
        .get(shared.next.fetch_add(1, Ordering::Relaxed))
    {
        let Some(current) = device.kur.renewed.get() else {
            continue;
        };
        timed(&mut stats, async {
            let request = fleetca_cmp::client::key_update_request(
                current,
                &device.kur.renewal_key,
                &device.kur.kur_key,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| format!("building kur: {e}"))?;
            let (answer, version) = exchange(&shared, Bytes::from(request)).await?;
            fleetca_cmp::client::issued_certificate(&answer)?;
            Ok(((), version))
        })
        .await;
    }
    stats
}

/// POSTs a PKIMessage over a new TCP + TLS connection; returns the 200 body.
async fn exchange(shared: &Shared, body: Bytes) -> Result<(Bytes, ProtocolVersion), String> {
    let target = &shared.target;
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = TlsConnector::from(Arc::clone(&shared.base_tls))
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .unwrap_or(ProtocolVersion::TLSv1_3);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let mut request = hyper::Request::post("/.well-known/cmp")
        .header(CONTENT_TYPE, fleetca_cmp::CMP_CONTENT_TYPE)
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(HOST, target.host_header.clone());
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    Ok((body, version))
}
