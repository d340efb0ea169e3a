//! `fleetca bench enroll`: drives a running EST server with simulated devices.
//!
//! Untimed preparation mints every device's birth certificate with the manufacturing CA of
//! the data directory, recorded in the inventory exactly as `fleetca device birth` records
//! it, and precomputes every key, CSR and TLS client configuration. The timed phase then
//! spends client CPU only on TCP, TLS and HTTP: each device does `simpleenroll`
//! (authenticated by its birth certificate) and `simplereenroll` (authenticated by the
//! operational certificate it just got, with a new key), one new mutual-TLS connection per
//! request.
//!
//! With `--warm-up`, every device's `simpleenroll` runs before the timer starts and the
//! timed phase is the `simplereenroll`s alone: each timed request then finds whatever the
//! server learnt about its device during the warm-up (an inventory connector's cache, for
//! one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use fleetca_ca::CertificateAuthority;
use fleetca_pki::{
    rcgen, validate_device_serial, CertificateProfile, IssuanceOrder, KeyAlgorithm, NameAttribute,
    SoftwareKey, SystemClock,
};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, ProtocolVersion};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

#[path = "bench_cmp.rs"]
mod cmp;

use crate::config::Config;
use crate::est_client::{certificates, with_client_certificate};
use crate::pki_setup::{config_path, load_cas};
use crate::process_cpu::{clock_ticks_per_second, cpu_ticks, micros_per};

/// Devices prepared concurrently at a time (their birth certificates group-commit together).
const PREPARE_CHUNK: usize = 512;
/// Longest one request (connect, handshake, exchange) may take before it counts as failed.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Distinct error messages shown in the report.
const SHOWN_ERRORS: usize = 5;

/// Arguments of `fleetca bench enroll`.
#[derive(clap::Args)]
pub struct EnrollArgs {
    /// EST base URL, e.g. https://127.0.0.1:8443/.well-known/est
    #[arg(long)]
    url: String,
    /// Trust anchor for the server certificate (PEM), normally DATA_DIR/pki/root-ca.pem.
    #[arg(long)]
    ca: PathBuf,
    /// The server's data directory. The bench mints each device's birth certificate with
    /// its manufacturing CA and records it in its inventory, exactly as `fleetca device
    /// birth` does, so the server accepts the devices. The bench devices stay there.
    #[arg(long, env = "FLEETCA_DATA_DIR")]
    data_dir: PathBuf,
    /// Number of simulated devices (each makes two requests).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// PID of the server: its CPU time over the timed phase is reported per enrollment.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Prefix of the device serial numbers (default: "bench-" and 8 random hex digits, so
    /// that runs never collide).
    #[arg(long)]
    serial_prefix: Option<String>,
    /// Offer only TLS 1.2 (default: TLS 1.3 and 1.2, rustls negotiates 1.3).
    #[arg(long)]
    tls12: bool,
    /// Run every device's simpleenroll before the timer starts (untimed, reported
    /// apart); time only the simplereenrolls. With an inventory connector whose cache
    /// outlasts the warm-up, every timed lookup is then a cache hit.
    #[arg(long)]
    warm_up: bool,
    /// Re-enroll each device this many times over one keep-alive connection (after an
    /// untimed simpleenroll of every device, as --warm-up): the request without the TLS
    /// handshake. The profile's per-device limits must allow that many certificates.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_alive: Option<u32>,
    /// Offer only this TLS key-exchange group (X25519MLKEM768, X25519, secp256r1,
    /// secp384r1), as a device stack would; default: rustls's list (X25519 first, the
    /// hybrid last).
    #[arg(long)]
    kx_group: Option<String>,
    /// After the timed simplereenrolls (implies --warm-up), renew every device once more
    /// with CMP kur at /.well-known/cmp (the server needs `[cmp] enabled`), timed apart and
    /// compared with simplereenroll of the same run.
    #[arg(long)]
    cmp: bool,
    /// SCEP plain-HTTP URL (the server's `[scep] http_listen`, e.g.
    /// http://127.0.0.1:8081/scep): after the EST run, time SCEP RenewalReqs of
    /// `--scep-devices` more devices in the same run (see `bench_scep`).
    #[arg(long)]
    scep: Option<String>,
    /// Devices of the SCEP phase (each needs two RSA-2048 keys, made before the timer).
    #[arg(long, default_value_t = 500)]
    scep_devices: usize,
}

/// Where the requests go.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) host_header: HeaderValue,
    cacerts_path: String,
    enroll_path: String,
    pub(crate) reenroll_path: String,
}

/// One simulated device, everything precomputed.
pub(crate) struct Device {
    /// TLS client configuration presenting the birth certificate.
    birth_tls: Arc<ClientConfig>,
    /// Base64 CSR for simpleenroll, signed by the operational key.
    enroll_body: Bytes,
    /// The operational key, loaded for TLS client authentication during re-enrollment.
    pub(crate) operational_key: Arc<dyn SigningKey>,
    /// Base64 CSR for simplereenroll, signed by a new (renewal) key.
    pub(crate) reenroll_body: Bytes,
    /// The operational certificate from an untimed (`--warm-up`) simpleenroll.
    pub(crate) enrolled: OnceLock<Vec<u8>>,
    /// The renewal key and what `--cmp` needs.
    kur: cmp::KurMaterial,
}

/// Which requests a pass over the devices makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// simpleenroll then simplereenroll (the default timed phase).
    Both,
    /// simpleenroll only, keeping the certificate (`--warm-up`).
    EnrollOnly,
    /// simplereenroll with the kept certificate (the timed phase after a warm-up).
    ReenrollOnly,
}

/// Outcomes of one operation.
#[derive(Default)]
pub(crate) struct OpStats {
    name: &'static str,
    /// Latency of each successful request, in microseconds.
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) failed: u64,
    pub(crate) errors: HashMap<String, u64>,
}

impl OpStats {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    fn ok(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub(crate) fn merge(&mut self, other: OpStats) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
        for (message, count) in other.errors {
            *self.errors.entry(message).or_default() += count;
        }
    }
}

/// What the workers observed.
pub(crate) struct RunStats {
    pub(crate) enroll: OpStats,
    pub(crate) reenroll: OpStats,
    /// Re-enrollments not attempted because the device's enrollment failed.
    pub(crate) skipped: u64,
}

impl RunStats {
    pub(crate) fn new() -> Self {
        Self {
            enroll: OpStats::new("simpleenroll"),
            reenroll: OpStats::new("simplereenroll"),
            skipped: 0,
        }
    }
}

/// State shared by the workers of the timed phase.
pub(crate) struct Shared {
    pub(crate) devices: Vec<Device>,
    pub(crate) next: AtomicUsize,
    pub(crate) target: Target,
    pub(crate) base_tls: Arc<ClientConfig>,
}

/// `fleetca bench enroll`.
pub async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.concurrency == 0 {
        bail!("--devices and --concurrency must be at least 1");
    }
    let target = target(&args.url).await?;
    if let Some(pid) = args.server_pid {
        cpu_ticks(&format!("/proc/{pid}/stat")).context("--server-pid")?;
    }
    let prefix = match &args.serial_prefix {
        Some(p) => p.clone(),
        None => format!("bench-{:08x}", rand::random::<u32>()),
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(name) = &args.kx_group {
        let group = fleetca_est::key_exchange_group(name).with_context(|| {
            format!(
                "--kx-group {name}: not one of {}",
                fleetca_est::KEY_EXCHANGE_GROUPS.join(", ")
            )
        })?;
        provider.kx_groups = vec![group];
    }
    let provider = Arc::new(provider);
    let base_tls = Arc::new(base_client_config(&provider, &args.ca, args.tls12)?);
    let minting = minting(&args.data_dir, &provider, &base_tls)?;
    let version = preflight(&target, &base_tls, &minting.root_der).await?;
    let group = negotiated_group(&target, &base_tls).await?;
    let offered = if args.tls12 { "1.2" } else { "1.3 and 1.2" };
    println!(
        "target: {} (TLS {offered} offered, {version:?} negotiated, key exchange {group})",
        args.url
    );

    let started = Instant::now();
    let devices = prepare(minting, &prefix, args.devices).await?;
    println!(
        "prepare: {} devices ({prefix}*): birth certificates issued and recorded, 4 keys and 2 CSRs each, in {:.2} s (untimed)",
        devices.len(),
        started.elapsed().as_secs_f64()
    );

    let shared = Arc::new(Shared {
        devices,
        next: AtomicUsize::new(0),
        target,
        base_tls,
    });
    let timed_pass = if args.warm_up || args.keep_alive.is_some() || args.cmp {
        warm_up(&shared, args.concurrency).await?;
        shared.next.store(0, Ordering::Relaxed);
        Pass::ReenrollOnly
    } else {
        Pass::Both
    };
    let ticks = clock_ticks_per_second();
    let client_before = cpu_ticks("/proc/self/stat")?;
    let server_stat = args.server_pid.map(|pid| format!("/proc/{pid}/stat"));
    let server_before = server_stat.as_deref().map(cpu_ticks).transpose()?;
    let started = Instant::now();
    let stats = match args.keep_alive {
        Some(n) => crate::bench_keepalive::run(&shared, args.concurrency, n as usize).await?,
        None => run(&shared, args.concurrency, timed_pass).await?,
    };
    let wall = started.elapsed();
    let client_cpu = cpu_ticks("/proc/self/stat")?.saturating_sub(client_before);
    let server_cpu = match (server_stat.as_deref(), server_before) {
        (Some(path), Some(before)) => Some(cpu_ticks(path)?.saturating_sub(before)),
        _ => None,
    };

    let ok = stats.enroll.ok() + stats.reenroll.ok();
    let per = |ticks_used: u64| micros_per(ticks_used, ticks, ok);
    let cpu_us = [per(client_cpu), server_cpu.and_then(per)];
    report(&args, &stats, wall, cpu_us);
    let mut failed = stats.enroll.failed + stats.reenroll.failed + stats.skipped;
    if args.cmp {
        let est_per_second = stats.reenroll.ok() as f64 / wall.as_secs_f64().max(1e-9);
        failed += cmp::run(
            &shared,
            args.concurrency,
            server_stat.as_deref(),
            ticks,
            cpu_us[1],
            est_per_second,
        )
        .await?;
    }
    if failed > 0 {
        bail!("{failed} request(s) failed or were skipped");
    }
    if let Some(url) = &args.scep {
        let est = crate::bench_scep::EstFigures {
            reenroll_rate: stats.reenroll.ok() as f64 / wall.as_secs_f64().max(1e-9),
        };
        crate::bench_scep::renewals(
            url,
            &args.data_dir,
            args.scep_devices,
            args.concurrency,
            args.server_pid,
            &est,
        )
        .await?;
    }
    Ok(())
}

/// Parses the EST base URL and resolves its host once.
async fn target(url: &str) -> anyhow::Result<Target> {
    let t = crate::est_client::resolve(url).await?;
    Ok(Target {
        cacerts_path: t.path("cacerts"),
        enroll_path: t.path("simpleenroll"),
        reenroll_path: t.path("simplereenroll"),
        addr: t.addr,
        server_name: t.server_name,
        host_header: t.host_header,
    })
}

/// The client configuration every device shares: trust anchor, versions, no session
/// resumption (every request is a full handshake). Devices add their client certificate.
fn base_client_config(
    provider: &Arc<CryptoProvider>,
    ca: &Path,
    tls12_only: bool,
) -> anyhow::Result<ClientConfig> {
    let mut config = crate::est_client::client_config(provider, ca, tls12_only)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// What every device preparation needs.
struct Minting {
    root_der: Vec<u8>,
    ca: CertificateAuthority,
    birth: CertificateProfile,
    operational: CertificateProfile,
    provider: Arc<CryptoProvider>,
    base_tls: Arc<ClientConfig>,
}

/// Loads the manufacturing CA, profiles and inventory of the server's data directory.
fn minting(
    data_dir: &Path,
    provider: &Arc<CryptoProvider>,
    base_tls: &Arc<ClientConfig>,
) -> anyhow::Result<Arc<Minting>> {
    let path = config_path(data_dir);
    if !path.exists() {
        bail!(
            "{} does not exist: --data-dir must be the server's data directory",
            path.display()
        );
    }
    let config = Config::load(&path)?;
    let store = fleetca_store::open(&config.database)?;
    let cas = load_cas(&config)?;
    Ok(Arc::new(Minting {
        root_der: cas.root_der,
        ca: CertificateAuthority::new([cas.manufacturing], store, Arc::new(SystemClock)),
        birth: config.profile("birth")?.clone(),
        operational: config.profile(&config.est_profile)?.clone(),
        provider: Arc::clone(provider),
        base_tls: Arc::clone(base_tls),
    }))
}

/// Before minting anything: the server answers `cacerts` over TLS with the trust anchor
/// of `--data-dir`, so the birth certificates about to be recorded are ones it will accept.
async fn preflight(
    target: &Target,
    tls: &Arc<ClientConfig>,
    root_der: &[u8],
) -> anyhow::Result<ProtocolVersion> {
    let (body, version) = exchange(target, tls, &target.cacerts_path, None)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("GET {} (pre-flight)", target.cacerts_path))?;
    let certificates = certificates(&body)
        .map_err(anyhow::Error::msg)
        .context("pre-flight cacerts")?;
    if !certificates.iter().any(|c| c.as_slice() == root_der) {
        bail!("the server's cacerts lack the root CA of --data-dir: not this server's directory?");
    }
    Ok(version)
}

/// The key-exchange group the server agrees to with `tls` (one handshake, untimed).
async fn negotiated_group(target: &Target, tls: &Arc<ClientConfig>) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(target.addr).await.context("connect")?;
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(target.server_name.clone(), tcp)
        .await
        .context("TLS handshake (key-exchange probe)")?;
    Ok(stream
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map_or_else(|| "unknown".to_string(), |g| format!("{:?}", g.name())))
}

/// Untimed: mints birth certificates (recorded in the inventory) and precomputes keys,
/// CSRs and TLS configurations, preparing up to [`PREPARE_CHUNK`] devices at once.
async fn prepare(minting: Arc<Minting>, prefix: &str, count: usize) -> anyhow::Result<Vec<Device>> {
    let serials: Vec<String> = (0..count).map(|i| format!("{prefix}{i:06}")).collect();
    for serial in &serials {
        validate_device_serial(serial)
            .map_err(anyhow::Error::msg)
            .context("--serial-prefix")?;
    }
    let mut devices = Vec::with_capacity(count);
    for chunk in serials.chunks(PREPARE_CHUNK) {
        let mut tasks = JoinSet::new();
        for serial in chunk {
            tasks.spawn(prepare_device(Arc::clone(&minting), serial.clone()));
        }
        while let Some(joined) = tasks.join_next().await {
            devices.push(joined.context("a preparation task failed")??);
        }
    }
    Ok(devices)
}

/// One device: birth key and certificate, operational and renewal keys and their CSRs.
async fn prepare_device(minting: Arc<Minting>, serial: String) -> anyhow::Result<Device> {
    let birth_key = KeyAlgorithm::P256.generate()?;
    let birth = minting
        .ca
        .issue(
            &minting.birth,
            IssuanceOrder {
                device_serial: serial.clone(),
                spki_der: birth_key.public_key_der(),
            },
            None,
        )
        .await
        .with_context(|| format!("birth certificate for {serial}"))?;
    let subject = minting.operational.subject_for(&serial);
    let operational_key = KeyAlgorithm::P256.generate()?;
    let renewal_key = KeyAlgorithm::P256.generate()?;
    Ok(Device {
        birth_tls: with_client_certificate(
            &minting.base_tls,
            vec![birth.der],
            tls_key(&minting.provider, &birth_key)?,
        ),
        enroll_body: csr_body(&operational_key, &subject)?,
        operational_key: tls_key(&minting.provider, &operational_key)?,
        reenroll_body: csr_body(&renewal_key, &subject)?,
        enrolled: OnceLock::new(),
        kur: cmp::KurMaterial::new(renewal_key)?,
    })
}

/// The base64 DER CSR for `subject`, signed by `key`.
fn csr_body(key: &SoftwareKey, subject: &[NameAttribute]) -> anyhow::Result<Bytes> {
    let mut name = rcgen::DistinguishedName::new();
    for attr in subject {
        let arcs = attr
            .oid
            .split('.')
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("subject attribute OID '{}'", attr.oid))?;
        name.push(rcgen::DnType::from_oid(&arcs), attr.value.as_str());
    }
    let der = key.certificate_request(name, Vec::new(), &[])?;
    Ok(Bytes::from(fleetca_pki::base64_lines(&der)))
}

/// `key` loaded by the TLS provider for client authentication.
fn tls_key(provider: &CryptoProvider, key: &SoftwareKey) -> anyhow::Result<Arc<dyn SigningKey>> {
    let der = PrivateKeyDer::from_pem_slice(key.to_pkcs8_pem().as_bytes())
        .context("internal: generated key is not PKCS#8 PEM")?;
    Ok(provider.key_provider.load_private_key(der)?)
}

/// Untimed (`--warm-up`): every device's simpleenroll, at the same concurrency.
async fn warm_up(shared: &Arc<Shared>, concurrency: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let stats = run(shared, concurrency, Pass::EnrollOnly).await?;
    let enroll = &stats.enroll;
    println!(
        "warm-up: {} simpleenroll ok, {} failed, in {:.2} s (untimed)",
        enroll.ok(),
        enroll.failed,
        started.elapsed().as_secs_f64()
    );
    if enroll.failed > 0 {
        let mut errors: Vec<_> = enroll.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (message, count) in errors.into_iter().take(SHOWN_ERRORS) {
            println!("  {count:>7} x simpleenroll: {message}");
        }
        bail!("{} warm-up simpleenroll(s) failed", enroll.failed);
    }
    Ok(())
}

/// `concurrency` workers take devices from the shared queue until it is empty.
async fn run(shared: &Arc<Shared>, concurrency: usize, pass: Pass) -> anyhow::Result<RunStats> {
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker(Arc::clone(shared), pass));
    }
    let mut stats = RunStats::new();
    while let Some(joined) = workers.join_next().await {
        let worker = joined.context("a bench worker failed")?;
        stats.enroll.merge(worker.enroll);
        stats.reenroll.merge(worker.reenroll);
        stats.skipped += worker.skipped;
    }
    Ok(stats)
}

/// One worker: enrolls and/or re-enrolls (as `pass` says) device after device.
async fn worker(shared: Arc<Shared>, pass: Pass) -> RunStats {
    let mut stats = RunStats::new();
    while let Some(device) = shared
        .devices
        .get(shared.next.fetch_add(1, Ordering::Relaxed))
    {
        let enrolled = if pass == Pass::ReenrollOnly {
            device.enrolled.get().cloned()
        } else {
            timed(&mut stats.enroll, async {
                let (body, version) = exchange(
                    &shared.target,
                    &device.birth_tls,
                    &shared.target.enroll_path,
                    Some(device.enroll_body.clone()),
                )
                .await?;
                let certificate = certificates(&body)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| "response holds no certificate".to_string())?;
                Ok((certificate, version))
            })
            .await
        };
        let Some(certificate) = enrolled else {
            stats.skipped += 1;
            continue;
        };
        if pass == Pass::EnrollOnly {
            // Each device is taken by one worker only, so the cell is empty.
            let _ = device.enrolled.set(certificate);
            continue;
        }
        let tls = with_client_certificate(
            &shared.base_tls,
            vec![certificate],
            Arc::clone(&device.operational_key),
        );
        let renewed = timed(&mut stats.reenroll, async {
            exchange(
                &shared.target,
                &tls,
                &shared.target.reenroll_path,
                Some(device.reenroll_body.clone()),
            )
            .await
        })
        .await;
        // Kept (after the timer) for a following `--cmp` pass.
        if let Some(certificate) = renewed
            .and_then(|body| certificates(&body).ok())
            .and_then(|c| c.into_iter().next())
        {
            let _ = device.kur.renewed.set(certificate);
        }
    }
    stats
}

/// Runs one request under [`REQUEST_TIMEOUT`] and records its latency or error.
async fn timed<T>(
    stats: &mut OpStats,
    request: impl std::future::Future<Output = Result<(T, ProtocolVersion), String>>,
) -> Option<T> {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {} s", REQUEST_TIMEOUT.as_secs())),
    };
    match outcome {
        Ok((value, _)) => {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.latencies_us.push(micros);
            Some(value)
        }
        Err(message) => {
            stats.failed += 1;
            *stats.errors.entry(message).or_default() += 1;
            None
        }
    }
}

/// Over a new TCP + TLS connection, POSTs a CSR (or GETs without one); returns the 200
/// body and the TLS version.
async fn exchange(
    target: &Target,
    tls: &Arc<ClientConfig>,
    path: &str,
    csr: Option<Bytes>,
) -> Result<(Bytes, ProtocolVersion), String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = TlsConnector::from(Arc::clone(tls))
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
    let request = match csr {
        Some(body) => hyper::Request::post(path)
            .header(CONTENT_TYPE, "application/pkcs10")
            .header("Content-Transfer-Encoding", "base64")
            .body(Full::new(body)),
        None => hyper::Request::get(path).body(Full::new(Bytes::new())),
    };
    let mut request = request.map_err(|e| format!("request: {e}"))?;
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
        let text = String::from_utf8_lossy(&body);
        let first = text.lines().next().unwrap_or("").trim();
        return Err(format!("HTTP {}: {first}", status.as_u16()));
    }
    Ok((body, version))
}

/// The `p` quantile (0 < p ≤ 1) of sorted values, nearest rank.
pub(crate) fn quantile(sorted: &[u64], p: f64) -> Option<u64> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
}

/// Prints the report.
fn report(args: &EnrollArgs, stats: &RunStats, wall: Duration, cpu_us: [Option<f64>; 2]) {
    let secs = wall.as_secs_f64().max(1e-9);
    let (enroll, reenroll) = (&stats.enroll, &stats.reenroll);
    let (ok, failed) = (enroll.ok() + reenroll.ok(), enroll.failed + reenroll.failed);
    println!(
        "requests: {ok} ok, {failed} failed (simpleenroll {} ok / {} failed, simplereenroll {} ok / {} failed, {} skipped after a failed simpleenroll)",
        enroll.ok(), enroll.failed, reenroll.ok(), reenroll.failed, stats.skipped
    );
    if let Some(n) = args.keep_alive {
        println!(
            "timed: simplereenroll only, {n} per keep-alive connection (each device's simpleenroll ran in the warm-up)"
        );
    } else if args.warm_up {
        println!("timed: simplereenroll only (each device's simpleenroll ran in the warm-up)");
    }
    println!("wall time: {secs:.3} s, concurrency {}", args.concurrency);
    println!(
        "throughput: {:.1} enrollments/s (simpleenroll {:.1}/s, simplereenroll {:.1}/s)",
        ok as f64 / secs,
        enroll.ok() as f64 / secs,
        reenroll.ok() as f64 / secs
    );
    println!(
        "latency ms      {:>8} {:>8} {:>8} {:>8}",
        "p50", "p90", "p99", "max"
    );
    for op in [enroll, reenroll] {
        let mut sorted = op.latencies_us.clone();
        sorted.sort_unstable();
        let ms = |p: f64| {
            quantile(&sorted, p)
                .map_or_else(|| "-".to_string(), |us| format!("{:.2}", us as f64 / 1e3))
        };
        let (p50, p90, p99, max) = (ms(0.50), ms(0.90), ms(0.99), ms(1.0));
        println!("{:<15} {p50:>8} {p90:>8} {p99:>8} {max:>8}", op.name);
    }
    let [client, server] = cpu_us.map(|v| v.map_or_else(|| "-".into(), |us| format!("{us:.0}")));
    println!("client CPU: {client} µs per enrollment");
    if let Some(pid) = args.server_pid {
        println!("server CPU: {server} µs per enrollment (pid {pid})");
    }
    let mut errors: Vec<(String, u64)> = [enroll, reenroll]
        .iter()
        .flat_map(|op| {
            op.errors
                .iter()
                .map(|(m, n)| (format!("{}: {m}", op.name), *n))
        })
        .collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("errors: {}", if errors.is_empty() { "none" } else { "" });
    for (message, count) in errors.into_iter().take(SHOWN_ERRORS) {
        println!("  {count:>7} x {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.5), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn cpu_times_are_read_past_a_command_name_with_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        std::fs::write(
            &path,
            "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3\n",
        )
        .unwrap();
        assert_eq!(cpu_ticks(path.to_str().unwrap()).unwrap(), 300);
        assert!(cpu_ticks("/proc/self/stat").is_ok());
    }

    #[test]
    fn responses_that_are_not_certs_only_are_errors() {
        assert!(certificates(b"not base64 !").is_err());
        assert!(certificates(b"AAAA\n").is_err());
    }
}
