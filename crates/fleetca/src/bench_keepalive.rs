//! `fleetca bench enroll --keep-alive N`: the cost of a re-enrollment without the TLS
//! handshake. After an untimed `simpleenroll` of every device (as `--warm-up`), each
//! device opens one mutual-TLS connection with its operational certificate and sends N
//! `simplereenroll`s on it, one after the other (HTTP/1.1 keep-alive). Each is a complete
//! request through the pipeline: authentication (the connection's chain, verified once
//! per connection; revocation and standing read per request), the CSR's signature, every
//! rule, issuance, the durable record. The same renewal CSR is sent each time, so the
//! server issues N certificates for one new key: the profile's per-device limits
//! (`rate_limit`, active certificates) must allow it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::bench::{OpStats, RunStats, Shared, REQUEST_TIMEOUT};
use crate::est_client::with_client_certificate;

/// `concurrency` workers take devices from the shared queue; each device re-enrolls
/// `requests` times over one connection.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    concurrency: usize,
    requests: usize,
) -> anyhow::Result<RunStats> {
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let shared = Arc::clone(shared);
        workers.spawn(async move {
            let mut stats = RunStats::new();
            while let Some(device) = shared
                .devices
                .get(shared.next.fetch_add(1, Ordering::Relaxed))
            {
                let Some(certificate) = device.enrolled.get().cloned() else {
                    stats.skipped += 1;
                    continue;
                };
                let tls = with_client_certificate(
                    &shared.base_tls,
                    vec![certificate],
                    Arc::clone(&device.operational_key),
                );
                let outcome = tokio::time::timeout(
                    REQUEST_TIMEOUT * u32::try_from(requests).unwrap_or(u32::MAX),
                    session(
                        &shared,
                        &tls,
                        &device.reenroll_body,
                        requests,
                        &mut stats.reenroll,
                    ),
                )
                .await;
                if let Err(_) | Ok(Err(_)) = &outcome {
                    let message = match outcome {
                        Ok(Err(m)) => m,
                        _ => "timed out".to_string(),
                    };
                    stats.reenroll.failed += 1;
                    *stats.reenroll.errors.entry(message).or_default() += 1;
                }
            }
            stats
        });
    }
    let mut stats = RunStats::new();
    while let Some(joined) = workers.join_next().await {
        let worker = joined?;
        stats.enroll.merge(worker.enroll);
        stats.reenroll.merge(worker.reenroll);
        stats.skipped += worker.skipped;
    }
    Ok(stats)
}

/// One connection, `requests` re-enrollments on it; each success's latency is recorded,
/// a refusal is counted and the session goes on; a transport error ends it.
async fn session(
    shared: &Shared,
    tls: &Arc<rustls::ClientConfig>,
    csr: &Bytes,
    requests: usize,
    stats: &mut OpStats,
) -> Result<(), String> {
    let target = &shared.target;
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    for _ in 0..requests {
        let started = Instant::now();
        let mut request = hyper::Request::post(&target.reenroll_path)
            .header(CONTENT_TYPE, "application/pkcs10")
            .header("Content-Transfer-Encoding", "base64")
            .body(Full::new(csr.clone()))
            .map_err(|e| format!("request: {e}"))?;
        request
            .headers_mut()
            .insert(HOST, target.host_header.clone());
        sender
            .ready()
            .await
            .map_err(|e| format!("HTTP (connection closed by the server?): {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let keep = response
            .headers()
            .get(hyper::header::CONNECTION)
            .is_none_or(|v| v != HeaderValue::from_static("close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        if status == hyper::StatusCode::OK {
            stats
                .latencies_us
                .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        } else {
            let text = String::from_utf8_lossy(&body);
            let first = text.lines().next().unwrap_or("").trim();
            stats.failed += 1;
            *stats
                .errors
                .entry(format!("HTTP {}: {first}", status.as_u16()))
                .or_default() += 1;
        }
        if !keep {
            return Err("the server closed the connection".into());
        }
    }
    Ok(())
}
