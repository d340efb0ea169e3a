//! `fleetca bench fleet`: N device agents, each its own renewal [`Machine`] and
//! [`EstClient`] from the `fleetca-agent` library, in one process, against a running
//! server with short-lived certificates, for a fixed wall-clock duration.
//!
//! Like `fleetca bench enroll`, it needs the server's data directory to mint the devices'
//! birth certificates (recorded in the inventory as `fleetca device birth` records them).
//! Then every device behaves as the agent does: `simpleenroll` with its birth certificate,
//! sleep until its renewal point (2/3 of the lifetime, with jitter), `simplereenroll` with a
//! new key, back off on failures. Identities stay in memory (the agent's file swap is
//! tested on its own). It reports renewals/s, failures, the renewal margin (time left on
//! the old certificate when its successor arrived) and whether any device ever held an
//! expired certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use fleetca_agent::{
    accept_issued, new_request, validity, Credential, Decision, Endpoint, EnrollAnswer, EstClient,
    HumanDuration, Machine, NewRequest, Operation, Outcome, RenewalPolicy, TlsIdentity, View,
};
use fleetca_ca::CertificateAuthority;
use fleetca_pki::{
    validate_device_serial, CertificateInfo, CertificateProfile, Clock, IssuanceOrder,
    KeyAlgorithm, SystemClock,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::pki_setup::{config_path, load_cas};
use crate::process_cpu::{clock_ticks_per_second, cpu_ticks, micros_per};

/// Devices whose birth certificates are minted concurrently.
const PREPARE_CHUNK: usize = 512;
/// Distinct failure messages shown.
const SHOWN_ERRORS: usize = 5;

/// Arguments of `fleetca bench fleet`.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// EST base URL, e.g. https://127.0.0.1:8443/.well-known/est
    #[arg(long)]
    url: String,
    /// Trust anchor (PEM), normally DATA_DIR/pki/root-ca.pem.
    #[arg(long)]
    ca: PathBuf,
    /// The server's data directory: birth certificates are minted with its manufacturing
    /// CA and recorded in its inventory (as `fleetca device birth` does).
    #[arg(long, env = "FLEETCA_DATA_DIR")]
    data_dir: PathBuf,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Expected operational certificate lifetime: must equal the validity of the server's
    /// EST profile (set `validity = "60s"` and `backdate = "0s"` under
    /// [profiles.operational] in DATA_DIR/fleetca.toml and restart the server).
    #[arg(long, default_value = "60s")]
    lifetime: HumanDuration,
    /// How long the fleet runs.
    #[arg(long, default_value = "10m")]
    duration: HumanDuration,
    /// First contacts are spread over this long (default: a quarter of the lifetime).
    #[arg(long)]
    ramp: Option<HumanDuration>,
    /// Most requests in flight at once (a device waits for a slot; the wait counts
    /// against its renewal margin).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Renewal jitter, as the agent's `renewal.jitter`.
    #[arg(long, default_value_t = 0.1)]
    jitter: f64,
    /// PID of the server: its CPU time is reported per renewal.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Prefix of the device serials (default "fleet-" and 8 random hex digits).
    #[arg(long)]
    serial_prefix: Option<String>,
    /// A renewal storm: every device starts with an operational certificate (minted and
    /// recorded untimed through the data directory, like the birth certificates) whose
    /// renewal point is the same instant for all; each device renews once and stops. The
    /// report gives the time from that instant to the last renewal. With `--jitter 0`
    /// every device is due at that instant; with the agent's jitter they spread ahead of
    /// it. The lifetime must leave room: a third of it must outlast the storm. As in
    /// `bench enroll`, each device's renewal key, CSR and TLS credential are made before
    /// the storm (untimed): a real device makes them on its own processor, not the server's.
    #[arg(long)]
    storm: bool,
    /// Verify the server's certificate chain on every handshake. By default the simulated
    /// devices share one verification of each distinct chain per minute (each device
    /// would verify it on its own processor; the server's handshake signature is still
    /// verified on every handshake), so that the simulator, on the server's cores, spends
    /// less of them on what is not the server's work.
    #[arg(long)]
    verify_chain_each_handshake: bool,
}

/// One device's birth identity.
struct Birth {
    key_pem: String,
    chain: Vec<Vec<u8>>,
    info: CertificateInfo,
}

/// What the fleet observed, shared by the device tasks.
#[derive(Default)]
struct Counters {
    enrollments: AtomicU64,
    renewals: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
}

/// What one device observed.
#[derive(Default)]
struct DeviceReport {
    /// Time left on the replaced certificate when each successor arrived, in ms.
    margins_ms: Vec<i64>,
    /// Times the device found its certificate expired (before renewing, or at the end).
    expired: u64,
    /// Longest time it held an expired certificate, in ms.
    expired_ms: i64,
    errors: HashMap<String, u64>,
    /// Whether the device held a valid certificate when the run ended.
    valid_at_end: bool,
    /// When its first renewal arrived (storm mode).
    renewed_at: Option<OffsetDateTime>,
}

/// `fleetca bench fleet`.
pub async fn fleet(args: FleetArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.max_in_flight == 0 {
        bail!("--devices and --max-in-flight must be at least 1");
    }
    let lifetime = args.lifetime.to_time();
    let path = config_path(&args.data_dir);
    if !path.exists() {
        bail!(
            "{} does not exist: --data-dir must be the server's data directory",
            path.display()
        );
    }
    let config = Config::load(&path)?;
    let operational = config.profile(&config.est_profile)?.clone();
    if operational.validity != lifetime {
        bail!(
            "profile '{}' issues {}-second certificates, not {} (--lifetime): set validity = \"{}\" and backdate = \"0s\" under [profiles.{}] in {} and restart the server",
            operational.name,
            operational.validity.whole_seconds(),
            lifetime.whole_seconds(),
            args.lifetime,
            operational.name,
            path.display()
        );
    }
    let anchors = crate::files::read_certificates(&args.ca)?
        .into_iter()
        .map(|c| c.to_vec())
        .collect::<Vec<_>>();
    let endpoint = Endpoint::parse(&args.url, None).map_err(anyhow::Error::msg)?;
    let mut client = EstClient::new(endpoint, &anchors, std::time::Duration::from_secs(30))?;
    if !args.verify_chain_each_handshake {
        client = client.sharing_server_verification()?;
    }
    client
        .cacerts()
        .await
        .context("pre-flight cacerts: is the server running at --url?")?;

    let prefix = match &args.serial_prefix {
        Some(p) => p.clone(),
        None => format!("fleet-{:08x}", rand::random::<u32>()),
    };
    let started = Instant::now();
    let births = mint_births(&config, &prefix, args.devices).await?;
    println!(
        "prepare: {} birth certificates ({prefix}*) issued and recorded in {:.1} s (untimed)",
        births.len(),
        started.elapsed().as_secs_f64()
    );
    let storm = if args.storm {
        let started = Instant::now();
        let storm = mint_storm(&config, &operational, &births, &client).await?;
        println!(
            "prepare: {} operational certificates issued and recorded in {:.1} s (untimed), all due at {} (in {:.1} s)",
            storm.certificates.len(),
            started.elapsed().as_secs_f64(),
            storm.due,
            (storm.due - SystemClock.now()).as_seconds_f64()
        );
        Some(storm)
    } else {
        None
    };

    let quarter: time::Duration = lifetime / 4;
    let policy = RenewalPolicy {
        jitter: args.jitter,
        check_interval: lifetime,
        retry_initial: time::Duration::seconds(1),
        retry_max: quarter.max(time::Duration::seconds(2)),
        denied_retry: lifetime,
        ..RenewalPolicy::default()
    };
    let ramp = match &storm {
        Some(_) => time::Duration::ZERO,
        None => args.ramp.map_or(quarter, HumanDuration::to_time),
    };
    let duration = args.duration.to_time();
    println!(
        "fleet: {} devices, {}s certificates, renewal at 2/3 with jitter {}, first contacts over {}s, {} max in flight, running {}",
        args.devices,
        lifetime.whole_seconds(),
        args.jitter,
        ramp.whole_seconds(),
        args.max_in_flight,
        args.duration
    );

    let counters = Arc::new(Counters::default());
    let slots = Arc::new(Semaphore::new(args.max_in_flight));
    let ticks = clock_ticks_per_second();
    let client_before = cpu_ticks("/proc/self/stat")?;
    let server_stat = args.server_pid.map(|pid| format!("/proc/{pid}/stat"));
    let server_before = server_stat.as_deref().map(cpu_ticks).transpose()?;
    let start = SystemClock.now();
    let deadline = start + duration;
    let wall = Instant::now();
    let mut tasks = JoinSet::new();
    let due = storm.as_ref().map(|s| s.due);
    let mut operational_certificates = storm
        .map(|s| s.certificates)
        .unwrap_or_default()
        .into_iter();
    for (i, birth) in births.into_iter().enumerate() {
        let offset: time::Duration = ramp * (i as f64 / args.devices as f64);
        tasks.spawn(device(
            birth,
            operational_certificates.next(),
            client.clone(),
            Machine::new(policy.clone(), rand::random()),
            Arc::clone(&counters),
            Arc::clone(&slots),
            start + offset,
            deadline,
        ));
    }
    let progress = tokio::spawn(progress(Arc::clone(&counters), wall, args.devices));
    let mut reports = Vec::with_capacity(args.devices);
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined.context("a device task failed")?);
    }
    progress.abort();
    let elapsed = wall.elapsed().as_secs_f64();
    let client_cpu = cpu_ticks("/proc/self/stat")?.saturating_sub(client_before);
    let server_cpu = match (server_stat.as_deref(), server_before) {
        (Some(path), Some(before)) => Some(cpu_ticks(path)?.saturating_sub(before)),
        _ => None,
    };
    let summary = summarize(&reports);
    if let Some(due) = due {
        let renewed: Vec<OffsetDateTime> = reports.iter().filter_map(|r| r.renewed_at).collect();
        let last = renewed.iter().max().copied();
        let first = renewed.iter().min().copied();
        println!(
            "storm: {} of {} devices renewed; first {}, last {} after the renewal point",
            renewed.len(),
            args.devices,
            first.map_or_else(
                || "-".into(),
                |t| format!("{:.1} s", (t - due).as_seconds_f64())
            ),
            last.map_or_else(
                || "-".into(),
                |t| format!("{:.1} s", (t - due).as_seconds_f64())
            ),
        );
    }
    let renewals = counters.renewals.load(Ordering::Relaxed);
    let enrollments = counters.enrollments.load(Ordering::Relaxed);
    let requests = renewals + enrollments;
    println!("wall time: {elapsed:.1} s");
    println!(
        "enrollments: {enrollments} (first contacts and fall-backs), renewals: {renewals}, {:.1} renewals/s",
        renewals as f64 / elapsed.max(1e-9)
    );
    println!(
        "failed attempts: {} (retried with back-off)",
        counters.failures.load(Ordering::Relaxed)
    );
    match (summary.worst_margin_ms, summary.median_margin_ms) {
        (Some(worst), Some(median)) => println!(
            "renewal margin (time left on the old certificate): worst {:.1} s, median {:.1} s, of a {} s lifetime",
            worst as f64 / 1e3,
            median as f64 / 1e3,
            lifetime.whole_seconds()
        ),
        _ => println!("renewal margin: no renewal happened"),
    }
    println!(
        "expired certificates: {} device(s) ever held one ({} occurrence(s), longest {:.1} s); {} of {} devices valid at the end",
        summary.devices_expired,
        summary.expired,
        summary.longest_expired_ms as f64 / 1e3,
        summary.valid_at_end,
        args.devices
    );
    let per = |t: u64| micros_per(t, ticks, requests);
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |us| format!("{us:.0}"));
    println!("client CPU: {} µs per request", show(per(client_cpu)));
    if let Some(shared) = client.shared_verification() {
        println!(
            "server chain: verified {} time(s), shared by the simulated devices (at most once per {} s per chain)",
            shared.verifications(),
            fleetca_agent::REMEMBER_FOR
        );
    }
    if let Some(pid) = args.server_pid {
        println!(
            "server CPU: {} µs per request (pid {pid})",
            show(server_cpu.and_then(per))
        );
    }
    println!(
        "errors: {}",
        if summary.errors.is_empty() {
            "none"
        } else {
            ""
        }
    );
    for (message, count) in summary.errors.iter().take(SHOWN_ERRORS) {
        println!("  {count:>7} x {message}");
    }
    if summary.devices_expired > 0 || summary.valid_at_end < args.devices {
        bail!(
            "{} device(s) held an expired certificate",
            summary.devices_expired
        );
    }
    Ok(())
}

/// Prints a progress line every 30 seconds.
async fn progress(counters: Arc<Counters>, wall: Instant, devices: usize) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        println!(
            "  {:>5.0} s: {} devices, {} enrollments, {} renewals, {} failed attempts, {} in flight",
            wall.elapsed().as_secs_f64(),
            devices,
            counters.enrollments.load(Ordering::Relaxed),
            counters.renewals.load(Ordering::Relaxed),
            counters.failures.load(Ordering::Relaxed),
            counters.in_flight.load(Ordering::Relaxed),
        );
    }
}

/// Sleeps until `at` by the system clock.
async fn sleep_until(at: OffsetDateTime) {
    let left = at - SystemClock.now();
    if left > time::Duration::ZERO {
        tokio::time::sleep(std::time::Duration::try_from(left).unwrap_or_default()).await;
    }
}

/// One device: the agent's loop with an in-memory identity. With an operational
/// certificate to start from (storm mode), it stops after its first renewal.
#[allow(clippy::too_many_arguments)]
async fn device(
    birth: Birth,
    operational: Option<Operational>,
    client: EstClient,
    mut machine: Machine,
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
    first_contact: OffsetDateTime,
    deadline: OffsetDateTime,
) -> DeviceReport {
    let mut report = DeviceReport::default();
    let serial = birth.info.device_serial().unwrap_or_default().to_string();
    let birth_validity = validity(&birth.info);
    let storm = operational.is_some();
    let (mut current, mut prepared) = match operational {
        Some(o) => (Some((o.key_pem, vec![o.der], o.info)), Some(o.renewal)),
        None => (None, None),
    };
    sleep_until(first_contact).await;
    // Bounded: every iteration either sleeps until a later instant or sends a request
    // (itself bounded by the client timeout); the loop ends at the deadline.
    while SystemClock.now() < deadline {
        let now = SystemClock.now();
        let view = View {
            operational: current.as_ref().map(|c| validity(&c.2)),
            birth: Some(birth_validity),
        };
        if let Some(cert) = view.operational.filter(|c| now >= c.not_after) {
            report.expired += 1;
            report.expired_ms = report
                .expired_ms
                .max((now - cert.not_after).whole_milliseconds() as i64);
        }
        let (operation, _) = match machine.decide(now, &view) {
            Decision::Wait { until, .. } => {
                sleep_until(until.min(deadline)).await;
                continue;
            }
            Decision::Request { operation, repeat } => (operation, repeat),
        };
        let outcome = attempt(
            &client,
            &birth,
            current.as_ref(),
            operation,
            prepared.take().filter(|_| operation == Operation::Reenroll),
            &serial,
            &slots,
            &counters,
        )
        .await;
        let done = SystemClock.now();
        let outcome = match outcome {
            Ok((key_pem, chain, info)) => {
                if let Some(old) = view.operational {
                    let margin = (old.not_after - done).whole_milliseconds() as i64;
                    report.margins_ms.push(margin);
                    if margin < 0 {
                        report.expired += 1;
                        report.expired_ms = report.expired_ms.max(-margin);
                    }
                }
                match (operation, view.operational.is_some()) {
                    (Operation::Reenroll, _) | (Operation::Enroll, true) => {
                        counters.renewals.fetch_add(1, Ordering::Relaxed)
                    }
                    (Operation::Enroll, false) => {
                        counters.enrollments.fetch_add(1, Ordering::Relaxed)
                    }
                };
                let v = validity(&info);
                current = Some((key_pem, chain, info));
                if storm {
                    report.renewed_at = Some(done);
                    break;
                }
                Outcome::Issued(v)
            }
            Err(outcome) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                *report
                    .errors
                    .entry(format!("{}: {}", operation.path(), outcome.describe()))
                    .or_default() += 1;
                outcome
            }
        };
        machine.record(done, operation, outcome, &view);
    }
    let end = SystemClock.now();
    report.valid_at_end = current
        .as_ref()
        .is_some_and(|c| validity(&c.2).contains(end));
    if let Some(c) = current.as_ref().filter(|c| end >= c.2.not_after) {
        report.expired += 1;
        report.expired_ms = report
            .expired_ms
            .max((end - c.2.not_after).whole_milliseconds() as i64);
    }
    report
}

/// One request: a new key and CSR (or the ones `prepared` for it), the right credential,
/// the answer checked.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    client: &EstClient,
    birth: &Birth,
    current: Option<&(String, Vec<Vec<u8>>, CertificateInfo)>,
    operation: Operation,
    prepared: Option<Prepared>,
    serial: &str,
    slots: &Semaphore,
    counters: &Counters,
) -> Result<(String, Vec<Vec<u8>>, CertificateInfo), Outcome> {
    let unavailable = |reason: String| Outcome::Unavailable {
        reason,
        retry_after: None,
    };
    let (request, identity) = match prepared {
        Some(p) => (p.request, p.identity),
        None => (
            new_request(
                KeyAlgorithm::P256,
                operation,
                &birth.info,
                current.map(|c| &c.2),
            )
            .map_err(|e| unavailable(e.to_string()))?,
            match (operation, current) {
                (Operation::Reenroll, Some((key, chain, _))) => Credential::new(key, chain),
                _ => Credential::new(&birth.key_pem, &birth.chain),
            }
            .and_then(|c| client.tls_identity(&c))
            .map_err(|e| unavailable(e.to_string()))?,
        ),
    };
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let answer = client
        .enroll_as(&identity, operation, &request.csr_der)
        .await;
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    match answer {
        Ok(EnrollAnswer::Issued(certs)) => {
            let (info, chain) = accept_issued(certs, &request.key, serial)
                .map_err(|e| unavailable(e.to_string()))?;
            Ok((request.key.to_pkcs8_pem(), chain, info))
        }
        Ok(EnrollAnswer::Pending(wait)) => Err(Outcome::Pending {
            retry_after: time::Duration::try_from(wait).unwrap_or(time::Duration::MAX),
        }),
        Ok(EnrollAnswer::Refused {
            status,
            message,
            retry_after,
        }) => Err(Outcome::from_status(
            status,
            &message,
            retry_after.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
        )),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// The fleet's figures.
struct Summary {
    worst_margin_ms: Option<i64>,
    median_margin_ms: Option<i64>,
    devices_expired: usize,
    expired: u64,
    longest_expired_ms: i64,
    valid_at_end: usize,
    errors: Vec<(String, u64)>,
}

fn summarize(reports: &[DeviceReport]) -> Summary {
    let mut margins: Vec<i64> = reports
        .iter()
        .flat_map(|r| r.margins_ms.iter().copied())
        .collect();
    margins.sort_unstable();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for r in reports {
        for (m, n) in &r.errors {
            *errors.entry(m.clone()).or_default() += n;
        }
    }
    let mut errors: Vec<(String, u64)> = errors.into_iter().collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Summary {
        worst_margin_ms: margins.first().copied(),
        median_margin_ms: margins.get(margins.len() / 2).copied(),
        devices_expired: reports.iter().filter(|r| r.expired > 0).count(),
        expired: reports.iter().map(|r| r.expired).sum(),
        longest_expired_ms: reports.iter().map(|r| r.expired_ms).max().unwrap_or(0),
        valid_at_end: reports.iter().filter(|r| r.valid_at_end).count(),
        errors,
    }
}

/// Mints and records a birth certificate for each device, [`PREPARE_CHUNK`] at a time.
async fn mint_births(config: &Config, prefix: &str, count: usize) -> anyhow::Result<Vec<Birth>> {
    let store = fleetca_store::open(&config.database)?;
    let cas = load_cas(config)?;
    let ca = Arc::new(CertificateAuthority::new(
        [cas.manufacturing],
        store,
        Arc::new(SystemClock),
    ));
    let profile = Arc::new(config.profile("birth")?.clone());
    let serials: Vec<String> = (0..count).map(|i| format!("{prefix}{i:06}")).collect();
    for serial in &serials {
        validate_device_serial(serial)
            .map_err(anyhow::Error::msg)
            .context("--serial-prefix")?;
    }
    let mut births = Vec::with_capacity(count);
    for chunk in serials.chunks(PREPARE_CHUNK) {
        let mut tasks = JoinSet::new();
        for serial in chunk {
            tasks.spawn(mint_birth(
                Arc::clone(&ca),
                Arc::clone(&profile),
                serial.clone(),
            ));
        }
        while let Some(joined) = tasks.join_next().await {
            births.push(joined.context("a preparation task failed")??);
        }
    }
    Ok(births)
}

async fn mint_birth(
    ca: Arc<CertificateAuthority>,
    profile: Arc<CertificateProfile>,
    serial: String,
) -> anyhow::Result<Birth> {
    let key = KeyAlgorithm::P256.generate()?;
    let issued = ca
        .issue(
            &profile,
            IssuanceOrder {
                device_serial: serial.clone(),
                spki_der: key.public_key_der(),
            },
            None,
        )
        .await
        .with_context(|| format!("birth certificate for {serial}"))?;
    let info = CertificateInfo::from_der(&issued.der)?;
    Ok(Birth {
        key_pem: key.to_pkcs8_pem(),
        chain: vec![issued.der],
        info,
    })
}

/// A device's operational certificate minted for a storm, and its renewal made ready.
struct Operational {
    key_pem: String,
    der: Vec<u8>,
    info: CertificateInfo,
    renewal: Prepared,
}

/// A request made before it is sent: the new key and CSR, and the TLS identity (the
/// credential that authenticates it, loaded).
struct Prepared {
    request: NewRequest,
    identity: TlsIdentity,
}

/// The operational certificates of a storm, all with the same validity.
struct Storm {
    certificates: Vec<Operational>,
    /// Their common renewal point (two thirds of the lifetime, the agent's default).
    due: OffsetDateTime,
}

/// Mints and records an operational certificate for each device, issued at one instant
/// chosen so that two thirds of the lifetime end shortly after the minting: at that point
/// every device is due at once.
async fn mint_storm(
    config: &Config,
    profile: &CertificateProfile,
    births: &[Birth],
    client: &EstClient,
) -> anyhow::Result<Storm> {
    let lifetime = profile.validity;
    // Time to mint and make each renewal ready: 600 a second (about half what two cores
    // do), plus 10 s.
    let lead = time::Duration::seconds(10 + (births.len() / 600) as i64);
    let least: time::Duration = lead * 3;
    if least > lifetime {
        bail!(
            "--storm: a {}-second lifetime leaves too little time to mint {} certificates before they are due; use a lifetime of at least {} s",
            lifetime.whole_seconds(),
            births.len(),
            least.whole_seconds()
        );
    }
    let due = SystemClock.now() + lead;
    let issued_at = due - lifetime * 2 / 3 + profile.backdate;
    let store = fleetca_store::open(&config.database)?;
    let cas = load_cas(config)?;
    let ca = Arc::new(CertificateAuthority::new(
        [cas.operational],
        store,
        Arc::new(fleetca_pki::ManualClock::new(issued_at)),
    ));
    let profile = Arc::new(profile.clone());
    // In the births' order: device i gets certificates[i].
    let mut certificates: Vec<Option<Operational>> =
        std::iter::repeat_with(|| None).take(births.len()).collect();
    for (c, chunk) in births.chunks(PREPARE_CHUNK).enumerate() {
        let mut tasks = JoinSet::new();
        for (j, birth) in chunk.iter().enumerate() {
            let index = c * PREPARE_CHUNK + j;
            let (ca, profile, client) = (Arc::clone(&ca), Arc::clone(&profile), client.clone());
            let serial = birth.info.device_serial().unwrap_or_default().to_string();
            let birth_info = birth.info.clone();
            tasks.spawn(async move {
                let key = KeyAlgorithm::P256.generate()?;
                let issued = ca
                    .issue(
                        &profile,
                        IssuanceOrder {
                            device_serial: serial.clone(),
                            spki_der: key.public_key_der(),
                        },
                        None,
                    )
                    .await
                    .with_context(|| format!("operational certificate for {serial}"))?;
                let info = CertificateInfo::from_der(&issued.der)?;
                let key_pem = key.to_pkcs8_pem();
                let renewal = Prepared {
                    request: new_request(
                        KeyAlgorithm::P256,
                        Operation::Reenroll,
                        &birth_info,
                        Some(&info),
                    )?,
                    identity: client.tls_identity(&Credential::new(
                        &key_pem,
                        std::slice::from_ref(&issued.der),
                    )?)?,
                };
                anyhow::Ok((
                    index,
                    Operational {
                        key_pem,
                        der: issued.der,
                        info,
                        renewal,
                    },
                ))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (index, minted) = joined.context("a preparation task failed")??;
            if let Some(slot) = certificates.get_mut(index) {
                *slot = Some(minted);
            }
        }
    }
    let certificates: Vec<Operational> = certificates.into_iter().flatten().collect();
    if SystemClock.now() >= due {
        bail!("--storm: minting took longer than planned; the certificates were due before the fleet started");
    }
    Ok(Storm { certificates, due })
}

/// utime + stime of a process in clock ticks, from `/proc/PID/stat` (fields 14 and 15,
/// counted after the command name, which may contain spaces and parentheses).
/// Checks the report's arithmetic on a hand-made fleet.
#[cfg(test)]
mod tests {
    use fleetca_agent::Validity;

    use super::*;

    #[test]
    fn the_summary_finds_the_worst_margin_and_expired_devices() {
        let ok = DeviceReport {
            margins_ms: vec![20_000, 18_500],
            valid_at_end: true,
            ..DeviceReport::default()
        };
        let late = DeviceReport {
            margins_ms: vec![-1_200],
            expired: 1,
            expired_ms: 1_200,
            valid_at_end: true,
            errors: HashMap::from([("simplereenroll: unavailable: HTTP 503".to_string(), 2)]),
            renewed_at: None,
        };
        let s = summarize(&[ok, late]);
        assert_eq!(s.worst_margin_ms, Some(-1_200));
        assert_eq!(s.median_margin_ms, Some(18_500));
        assert_eq!(
            (s.devices_expired, s.expired, s.longest_expired_ms),
            (1, 1, 1_200)
        );
        assert_eq!(s.valid_at_end, 2);
        assert_eq!(s.errors.len(), 1);
    }

    #[test]
    fn a_validity_type_is_shared_with_the_agent() {
        let v = Validity {
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(60),
        };
        assert_eq!(v.lifetime(), time::Duration::seconds(60));
    }
}
