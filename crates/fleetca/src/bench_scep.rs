//! `fleetca bench enroll --scep URL`: after the EST run, in the same run against the same
//! server, SCEP `RenewalReq`s. Untimed preparation: per device an RSA-2048 key (SCEP
//! replies are encrypted to the requester with RSA key transport), a one-time challenge
//! created in the data directory, a `PKCSReq` for a first certificate, a new RSA-2048 key
//! and its `RenewalReq` signed with that certificate, built in advance. The timed phase
//! is the `RenewalReq`s alone: one new plain-HTTP connection per request (as EST opens
//! one TLS connection per request), the CertRep's pkiStatus checked (its decryption, a
//! client's RSA operation, is not timed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use fleetca_admin::Actor;
use fleetca_pki::{rcgen, CertificateInfo, KeyAlgorithm, SoftwareKey};
use fleetca_scep::client::{self, RequestSigner};
use fleetca_scep::MessageType;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::pki_setup::config_path;
use crate::process_cpu::{clock_ticks_per_second, cpu_ticks, micros_per};

/// What the EST run measured, to print the ratio next to it.
pub struct EstFigures {
    /// simplereenroll per second in the EST timed phase.
    pub reenroll_rate: f64,
}

struct Endpoint {
    addr: std::net::SocketAddr,
    host: HeaderValue,
    path: String,
}

fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let rest = url.strip_prefix("http://").context(
        "--scep must be a plain-HTTP URL (http://HOST:PORT/scep), the [scep] http_listen",
    )?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .with_context(|| format!("--scep host '{authority}'"))?
        .next()
        .with_context(|| format!("--scep host '{authority}' has no address"))?;
    Ok(Endpoint {
        addr,
        host: HeaderValue::from_str(authority)?,
        path: format!("/{path}"),
    })
}

/// One HTTP/1.1 request on a new connection; the 200 body.
async fn http(endpoint: &Endpoint, query: &str, body: Option<Bytes>) -> Result<Bytes, String> {
    let tcp = TcpStream::connect(endpoint.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let uri = format!("{}?{query}", endpoint.path);
    let request = match body {
        Some(b) => hyper::Request::post(uri)
            .header(CONTENT_TYPE, "application/x-pki-message")
            .body(Full::new(b)),
        None => hyper::Request::get(uri).body(Full::new(Bytes::new())),
    };
    let mut request = request.map_err(|e| format!("request: {e}"))?;
    request.headers_mut().insert(HOST, endpoint.host.clone());
    request
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
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
    Ok(body)
}

/// A self-signed certificate for `key` (the PKCSReq signer), DER.
fn self_signed(key: &SoftwareKey, serial: &str) -> anyhow::Result<Vec<u8>> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, serial);
    Ok(params.self_signed(key)?.der().to_vec())
}

/// A CSR for `serial` (CN and serialNumber), with a challengePassword if given, DER.
fn csr(key: &SoftwareKey, serial: &str, challenge: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, serial);
    name.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
    let attributes: Vec<rcgen::Attribute> = challenge
        .map(|c| {
            // SET { PrintableString c } (the challenge is 40 hex digits: short form lengths).
            let mut value = vec![0x13, u8::try_from(c.len()).unwrap_or(0)];
            value.extend_from_slice(c.as_bytes());
            let mut set = vec![0x31, u8::try_from(value.len()).unwrap_or(0)];
            set.extend(value);
            rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 7],
                values: set,
            }
        })
        .into_iter()
        .collect();
    Ok(key.certificate_request(name, Vec::new(), &attributes)?)
}

/// One device's RenewalReq, built before the timer.
struct Renewal {
    message: Bytes,
}

/// Enrolls a device by PKCSReq (untimed) and builds its RenewalReq.
async fn prepare_device(
    endpoint: Arc<Endpoint>,
    ra_cert: Arc<Vec<u8>>,
    serial: String,
    challenge: String,
) -> anyhow::Result<Renewal> {
    let (first_key, renewal_key) = tokio::task::spawn_blocking(|| {
        Ok::<_, anyhow::Error>((
            KeyAlgorithm::Rsa2048.generate()?,
            KeyAlgorithm::Rsa2048.generate()?,
        ))
    })
    .await??;
    let first_pkcs8 = first_key.pkcs8_der();
    let signer_cert = self_signed(&first_key, &serial)?;
    let request = client::pki_message(
        MessageType::PkcsReq,
        &client::transaction_id(&first_key.public_key_der()),
        &client::nonce(),
        &csr(&first_key, &serial, Some(&challenge))?,
        RequestSigner {
            certificate_der: &signer_cert,
            key_pkcs8: &first_pkcs8,
        },
        &ra_cert,
    )?;
    let reply = http(
        &endpoint,
        "operation=PKIOperation",
        Some(Bytes::from(request)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let reply = client::read_reply(
        &reply,
        RequestSigner {
            certificate_der: &signer_cert,
            key_pkcs8: &first_pkcs8,
        },
    )?;
    let Some(certificate) = reply.certificates.into_iter().next() else {
        bail!(
            "PKCSReq for {serial}: pkiStatus {} failInfo {:?}",
            reply.status,
            reply.fail_info
        );
    };
    let renewal = client::pki_message(
        MessageType::RenewalReq,
        &client::transaction_id(&renewal_key.public_key_der()),
        &client::nonce(),
        &csr(&renewal_key, &serial, None)?,
        RequestSigner {
            certificate_der: &certificate,
            key_pkcs8: &first_pkcs8,
        },
        &ra_cert,
    )?;
    Ok(Renewal {
        message: Bytes::from(renewal),
    })
}

/// Prepares `count` devices, times their RenewalReqs at `concurrency`, prints the figures.
pub async fn renewals(
    url: &str,
    data_dir: &std::path::Path,
    count: usize,
    concurrency: usize,
    server_pid: Option<u32>,
    est: &EstFigures,
) -> anyhow::Result<()> {
    let endpoint = Arc::new(endpoint(url)?);
    let cacert = http(&endpoint, "operation=GetCACert", None)
        .await
        .map_err(anyhow::Error::msg)
        .context("SCEP GetCACert")?;
    let ra_cert = fleetca_pki::parse_certs_only(&cacert)?
        .into_iter()
        .find(|c| CertificateInfo::from_der(c).is_ok_and(|i| !i.is_ca))
        .context("GetCACert holds no RA certificate")?;
    let ra_cert = Arc::new(ra_cert);
    let config = Config::load(&config_path(data_dir))?;
    let store = fleetca_store::open(&config.database)?;
    let prefix = format!("scep-bench-{:08x}", rand::random::<u32>());
    let started = Instant::now();
    let mut renewals = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
        let mut tasks = JoinSet::new();
        for i in chunk {
            let serial = format!("{prefix}{i:06}");
            let challenge = fleetca_admin::create_scep_challenge(
                store.as_ref(),
                &Actor::cli(),
                &serial,
                time::Duration::hours(1),
            )
            .await?;
            tasks.spawn(prepare_device(
                Arc::clone(&endpoint),
                Arc::clone(&ra_cert),
                serial,
                challenge.secret.expose().to_string(),
            ));
        }
        while let Some(joined) = tasks.join_next().await {
            renewals.push(joined.context("a preparation task failed")??);
        }
    }
    println!(
        "scep prepare: {} devices ({prefix}*): challenge, 2 RSA-2048 keys, PKCSReq enrolled, RenewalReq built, in {:.2} s (untimed)",
        renewals.len(),
        started.elapsed().as_secs_f64()
    );

    let renewals = Arc::new(renewals);
    let next = Arc::new(AtomicUsize::new(0));
    let ticks = clock_ticks_per_second();
    let server_stat = server_pid.map(|pid| format!("/proc/{pid}/stat"));
    let server_before = server_stat.as_deref().map(cpu_ticks).transpose()?;
    let client_before = cpu_ticks("/proc/self/stat")?;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (renewals, next, endpoint) = (
            Arc::clone(&renewals),
            Arc::clone(&next),
            Arc::clone(&endpoint),
        );
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            while let Some(r) = renewals.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t = Instant::now();
                let outcome = tokio::time::timeout(
                    Duration::from_secs(60),
                    http(&endpoint, "operation=PKIOperation", Some(r.message.clone())),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
                .and_then(|body| client::reply_status(&body).map_err(|e| e.to_string()));
                match outcome {
                    Ok((status, _)) if status == "0" => {
                        latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
                    }
                    Ok((status, fail)) => {
                        errors.push(format!("pkiStatus {status} failInfo {fail:?}"))
                    }
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (l, e) = joined.context("a bench worker failed")?;
        latencies.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed();
    let client_cpu = cpu_ticks("/proc/self/stat")?.saturating_sub(client_before);
    let server_cpu = match (server_stat.as_deref(), server_before) {
        (Some(path), Some(before)) => Some(cpu_ticks(path)?.saturating_sub(before)),
        _ => None,
    };
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    let rate = ok as f64 / wall.as_secs_f64().max(1e-9);
    let q = |p: f64| {
        crate::bench::quantile(&latencies, p).map_or_else(
            || "-".to_string(),
            |us| format!("{:.1} ms", us as f64 / 1000.0),
        )
    };
    println!(
        "scep RenewalReq: {ok} ok, {} failed in {:.2} s: {rate:.1} renewals/s; latency p50 {} p90 {} p99 {}",
        errors.len(),
        wall.as_secs_f64(),
        q(0.5),
        q(0.9),
        q(0.99)
    );
    let per = |t: u64| micros_per(t, ticks, ok);
    if let Some(us) = server_cpu.and_then(per) {
        println!("scep cpu: server {us:.0} us per renewal");
    }
    if let Some(us) = per(client_cpu) {
        println!("scep cpu: client {us:.0} us per renewal");
    }
    if est.reenroll_rate > 0.0 {
        println!(
            "scep RenewalReq / EST simplereenroll (same run): {:.2}",
            rate / est.reenroll_rate
        );
    }
    if let Some(first) = errors.first() {
        bail!("{} SCEP renewal(s) failed, e.g. {first}", errors.len());
    }
    Ok(())
}
