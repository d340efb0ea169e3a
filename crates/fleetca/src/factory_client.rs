//! `fleetca factory provision`: the station tool on the production line. For each device:
//! make the key (or have the server make it), build the CSR, obtain the birth certificate
//! with the station credential, and write a device bundle. Batches run over a few
//! keep-alive connections and can be rerun: devices whose bundle is complete are skipped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use fleetca_pki::{pem_certificate, rcgen, KeyAlgorithm, SoftwareKey};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;

use crate::est_client::{
    certificates, client_config, resolve, with_client_certificate, Connection, EstTarget,
};
use crate::files::{read_certificates, write_atomic, write_key};

/// Arguments of `fleetca factory provision`.
#[derive(clap::Args)]
pub struct ProvisionArgs {
    /// The fleetca server, e.g. https://ca.example.net:8443
    #[arg(long)]
    server: String,
    /// EST label of birth enrollment.
    #[arg(long, default_value = "birth")]
    label: String,
    /// Trust anchor for the server (the fleet root, PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The station's credential (PEM chain) and key.
    #[arg(long)]
    station_cert: PathBuf,
    #[arg(long)]
    station_key: PathBuf,
    /// One device serial number.
    #[arg(long, conflicts_with = "serials", required_unless_present = "serials")]
    serial: Option<String>,
    /// A file of device serial numbers, one per line (blank lines and # comments ignored).
    #[arg(long)]
    serials: Option<PathBuf>,
    /// Ask the server to generate each device key (EST serverkeygen).
    #[arg(long)]
    server_keygen: bool,
    /// Device key algorithm when generated here.
    #[arg(long, default_value = "p256", value_parser = crate::parse_key_algorithm)]
    key_algorithm: KeyAlgorithm,
    /// Device model and production batch, recorded in the inventory.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    batch: Option<String>,
    /// Directory of device bundles (one subdirectory per serial).
    #[arg(long)]
    out: PathBuf,
    /// Keep-alive connections used in parallel for a batch.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// One line per device on stderr (instead of the progress bar).
    #[arg(long, short)]
    verbose: bool,
    /// The summary at the end: text on stderr, or one JSON object on stdout (counts,
    /// throughput, and each failure with its status, rule and whether a retry may help).
    #[arg(long, value_enum, default_value = "text")]
    format: SummaryFormat,
    /// Do not write bundles (throughput measurement only).
    #[arg(long, hide = true)]
    dry_run: bool,
}

/// How `factory provision` reports its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// Why one device was not provisioned.
#[derive(Debug, Clone)]
struct Failure {
    serial: String,
    /// The server's HTTP status, if it answered.
    status: Option<u16>,
    /// The rule that refused it (403).
    rule: Option<String>,
    message: String,
}

impl Failure {
    fn from_error(serial: &str, e: &anyhow::Error) -> Self {
        Self {
            serial: serial.to_string(),
            status: None,
            rule: None,
            message: format!("{e:#}"),
        }
    }

    /// Whether running the command again may succeed without changing anything: the
    /// network or the server failed (no answer, 5xx, 429), or the request waits for an
    /// approval (202). A refusal (403 names its rule) or a bad request needs a fix first.
    fn worth_retry(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 202 || s == 408 || s == 429 || s >= 500,
        }
    }

    fn line(&self) -> String {
        let advice = if self.worth_retry() {
            "worth a retry: rerun the same command"
        } else {
            "not worth a retry: fix the cause first"
        };
        format!("{}: {} ({advice})", self.serial, self.message)
    }
}

struct Station {
    target: EstTarget,
    tls: Arc<rustls::ClientConfig>,
    path: String,
    keygen_path: String,
    chain_pem: String,
    root_pem: String,
    args: ProvisionArgs,
}

/// Runs the tool; fails if any device failed.
pub async fn provision(args: ProvisionArgs) -> anyhow::Result<()> {
    let serials = match (&args.serial, &args.serials) {
        (Some(s), _) => vec![s.clone()],
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        (None, None) => bail!("give --serial or --serials"),
    };
    for s in &serials {
        fleetca_pki::validate_device_serial(s).map_err(|e| anyhow::anyhow!("serial '{s}': {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let base = client_config(&provider, &args.ca, false)?;
    let chain: Vec<Vec<u8>> = read_certificates(&args.station_cert)?
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    let key = station_signing_key(&provider, &args.station_key)?;
    let tls = with_client_certificate(&base, chain, key);
    let target = resolve(&format!(
        "{}/.well-known/est",
        args.server.trim_end_matches('/')
    ))
    .await?;
    let label = args.label.trim_matches('/').to_string();

    // The chain devices will need: the birth label's CA chain, fetched once.
    let mut conn = Connection::open(&target, &tls).await?;
    let (status, _, body) = conn
        .send(&target.path(&format!("{label}/cacerts")), None)
        .await?;
    if status != 200 {
        bail!(
            "GET cacerts answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let chain = certificates(&body).map_err(anyhow::Error::msg)?;
    let chain_pem: String = chain.iter().map(|c| pem_certificate(c)).collect();
    // The device's trust anchor: the self-signed certificate of that chain, on its own.
    let root_pem = chain
        .iter()
        .find(|c| {
            x509_parser::parse_x509_certificate(c)
                .is_ok_and(|(_, x)| x.subject().as_raw() == x.issuer().as_raw())
        })
        .map(|c| pem_certificate(c))
        .context("the server's CA chain (cacerts) has no root certificate")?;

    let station = Arc::new(Station {
        path: target.path(&format!("{label}/simpleenroll")),
        keygen_path: target.path(&format!("{label}/serverkeygen")),
        target,
        tls,
        chain_pem,
        root_pem,
        args,
    });
    let total = serials.len();
    let verbose = station.args.verbose;
    let format = station.args.format;
    // A bar on a terminal (indicatif hides it otherwise); lines instead with --verbose.
    let bar = if verbose {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} devices, {per_sec}, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let queue = Arc::new(Mutex::new(serials.into_iter().rev().collect::<Vec<_>>()));
    let done = Arc::new(AtomicUsize::new(0));
    let skipped = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<Failure>::new()));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..station.args.concurrency.clamp(1, 64) {
        let (station, queue, done, skipped, failures, bar) = (
            Arc::clone(&station),
            Arc::clone(&queue),
            Arc::clone(&done),
            Arc::clone(&skipped),
            Arc::clone(&failures),
            bar.clone(),
        );
        workers.spawn(async move {
            let mut conn: Option<Connection> = None;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(serial) = next else { break };
                let line =
                    if !station.args.dry_run && bundle_complete(&station.args.out.join(&serial)) {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        format!("{serial}: skipped, its bundle is complete")
                    } else {
                        match provision_one(&station, &mut conn, &serial).await {
                            Ok(certificate) => {
                                done.fetch_add(1, Ordering::Relaxed);
                                format!("{serial}: provisioned, birth certificate {certificate}")
                            }
                            Err(failure) => {
                                conn = None;
                                let line = failure.line();
                                if let Ok(mut f) = failures.lock() {
                                    f.push(failure);
                                }
                                line
                            }
                        }
                    };
                bar.inc(1);
                if verbose {
                    eprintln!("{line}");
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let (done, skipped) = (
        done.load(Ordering::Relaxed),
        skipped.load(Ordering::Relaxed),
    );
    let mut failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    failures.sort_by(|a, b| a.serial.cmp(&b.serial));
    let retry = failures.iter().filter(|f| f.worth_retry()).count();
    let rate = done as f64 / elapsed.max(1e-9);
    match format {
        SummaryFormat::Text => {
            eprintln!(
                "provisioned {done} device(s), skipped {skipped} already done, {} failed ({retry} worth a retry), in {elapsed:.2} s ({rate:.0} devices/s)",
                failures.len(),
            );
            if !verbose {
                for f in failures.iter().take(20) {
                    eprintln!("  {}", f.line());
                }
                if failures.len() > 20 {
                    eprintln!(
                        "  ... and {} more (--verbose lists every device)",
                        failures.len() - 20
                    );
                }
            }
        }
        SummaryFormat::Json => {
            let summary = serde_json::json!({
                "devices": total,
                "provisioned": done,
                "skipped": skipped,
                "failed": failures.len(),
                "worth_retry": retry,
                "seconds": (elapsed * 1000.0).round() / 1000.0,
                "devices_per_second": rate.round(),
                "failures": failures.iter().map(|f| serde_json::json!({
                    "serial": f.serial,
                    "status": f.status,
                    "rule": f.rule,
                    "error": f.message,
                    "worth_retry": f.worth_retry(),
                })).collect::<Vec<_>>(),
            });
            outln!("{}", serde_json::to_string_pretty(&summary)?);
        }
    }
    if !failures.is_empty() {
        if retry == failures.len() {
            bail!(
                "{} device(s) failed; rerun the same command to retry them",
                failures.len()
            );
        }
        bail!(
            "{} device(s) failed, {} refused: fix what their errors name first (rerunning skips the devices done)",
            failures.len(),
            failures.len() - retry
        );
    }
    Ok(())
}

fn station_signing_key(
    provider: &CryptoProvider,
    path: &Path,
) -> anyhow::Result<Arc<dyn rustls::sign::SigningKey>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the key {}", path.display()))?;
    // PKCS#8, SEC1 or PKCS#1, PEM or DER: normalised to PKCS#8.
    let key = SoftwareKey::from_key_file(&bytes)
        .with_context(|| format!("{} is not a usable station key", path.display()))?;
    let der = PrivateKeyDer::Pkcs8(key.pkcs8_der().into());
    provider
        .key_provider
        .load_private_key(der)
        .with_context(|| format!("{} is not a usable station key", path.display()))
}

/// A bundle is complete when its key and certificate exist and belong together.
fn bundle_complete(dir: &Path) -> bool {
    let (Ok(key), Ok(cert)) = (
        std::fs::read_to_string(dir.join("birth.key")),
        read_certificates(&dir.join("birth.pem")),
    ) else {
        return false;
    };
    let (Ok(key), Some(cert)) = (SoftwareKey::from_key_file(key.as_bytes()), cert.first()) else {
        return false;
    };
    fleetca_pki::CertificateInfo::from_der(cert).is_ok_and(|c| c.spki_der == key.public_key_der())
}

/// Provisions one device; returns its birth certificate's serial.
async fn provision_one(
    station: &Station,
    conn: &mut Option<Connection>,
    serial: &str,
) -> Result<String, Failure> {
    let (status, answer) = match request_birth(station, conn, serial).await {
        Ok(Ok(certificate)) => return Ok(certificate),
        Ok(Err(answer)) => answer,
        Err(e) => return Err(Failure::from_error(serial, &e)),
    };
    let text = String::from_utf8_lossy(&answer);
    let first = text.lines().next().unwrap_or("").trim();
    // A 403 names its rule: "refused by rule 'station-quota': ...".
    let rule = first
        .strip_prefix("refused by rule '")
        .and_then(|r| r.split_once('\''))
        .map(|(rule, _)| rule.to_string());
    Err(Failure {
        serial: serial.to_string(),
        status: Some(status),
        rule,
        message: format!("HTTP {status}: {first}"),
    })
}

/// The birth request and the bundle: the certificate's serial, or the server's answer
/// (status, body) if it was not 200.
async fn request_birth(
    station: &Station,
    conn: &mut Option<Connection>,
    serial: &str,
) -> anyhow::Result<Result<String, (u16, Bytes)>> {
    let args = &station.args;
    // The CSR names the device; with serverkeygen its key is only a request signature.
    let csr_key = args.key_algorithm.generate()?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
    let csr = csr_key.certificate_request(dn, vec![], &[])?;
    let body = Bytes::from(fleetca_pki::base64_lines(&csr));
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(m) = &args.model {
        headers.push((fleetca_est::MODEL_HEADER, m.clone()));
    }
    if let Some(b) = &args.batch {
        headers.push((fleetca_est::BATCH_HEADER, b.clone()));
    }
    let path = if args.server_keygen {
        &station.keygen_path
    } else {
        &station.path
    };
    let mut attempt = 0;
    let (status, response_headers, answer) = loop {
        if conn.is_none() {
            *conn = Some(Connection::open(&station.target, &station.tls).await?);
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.send(path, Some((body.clone(), &headers))).await {
            Ok(r) => break r,
            // A keep-alive connection the server closed: reconnect once.
            Err(e) if attempt == 0 => {
                attempt += 1;
                *conn = None;
                tracing::debug!(error = %e, "reconnecting");
            }
            Err(e) => return Err(e),
        }
    };
    if status != 200 {
        return Ok(Err((status, answer)));
    }
    let (key_pem, cert_der) = if args.server_keygen {
        let content_type = response_headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (pkcs8, certs) = fleetca_agent::serverkeygen_parts(content_type, &answer)?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n",
            fleetca_pki::base64_lines(&pkcs8)
        );
        (
            pem,
            certs
                .into_iter()
                .next()
                .context("no certificate in the answer")?,
        )
    } else {
        let certs = certificates(&answer).map_err(anyhow::Error::msg)?;
        (
            csr_key.to_pkcs8_pem(),
            certs
                .into_iter()
                .next()
                .context("no certificate in the answer")?,
        )
    };
    let certificate = fleetca_pki::CertificateInfo::from_der(&cert_der)?
        .serial
        .to_hex();
    if args.dry_run {
        return Ok(Ok(certificate));
    }
    let dir = args.out.join(serial);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_key(&dir.join("birth.key"), &key_pem, false)?;
    write_atomic(
        &dir.join("chain.pem"),
        station.chain_pem.as_bytes(),
        0o644,
        false,
    )?;
    write_atomic(
        &dir.join("root-ca.pem"),
        station.root_pem.as_bytes(),
        0o644,
        false,
    )?;
    write_atomic(
        &dir.join("agent.toml"),
        agent_config(&args.server).as_bytes(),
        0o644,
        false,
    )?;
    // Last: the certificate marks the bundle complete (see bundle_complete).
    write_atomic(
        &dir.join("birth.pem"),
        pem_certificate(&cert_der).as_bytes(),
        0o644,
        false,
    )?;
    Ok(Ok(certificate))
}

/// A `fleetca-agent` configuration for the bundle, with the files installed as the device
/// bundle's README in the docs says (birth.key and birth.pem to /etc/fleetca-agent,
/// root-ca.pem to /var/lib/fleetca-agent).
fn agent_config(server: &str) -> String {
    format!(
        r#"# fleetca-agent configuration written by `fleetca factory provision`.
# Install birth.key (mode 0600) and birth.pem -> /etc/fleetca-agent/, and root-ca.pem (the
# fleet root on its own; the agent keeps it up to date) -> /var/lib/fleetca-agent/.
# chain.pem is the birth CA chain as the server sends it, root first. See
# examples/fleetca-agent.toml for every setting.
[server]
url = "{}/.well-known/est"
trust_anchor = "/var/lib/fleetca-agent/root-ca.pem"

[identity]
birth_key = "/etc/fleetca-agent/birth.key"
birth_certificate = "/etc/fleetca-agent/birth.pem"
key = "/var/lib/fleetca-agent/device.key"
certificate = "/var/lib/fleetca-agent/device.pem"
"#,
        server.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::Failure;

    fn failure(status: Option<u16>) -> Failure {
        Failure {
            serial: "SN-1".into(),
            status,
            rule: None,
            message: String::new(),
        }
    }

    #[test]
    fn refusals_are_not_worth_a_retry_outages_are() {
        for status in [400, 401, 403, 404, 413] {
            assert!(!failure(Some(status)).worth_retry(), "{status}");
        }
        for status in [None, Some(202), Some(429), Some(500), Some(503)] {
            assert!(failure(status).worth_retry(), "{status:?}");
        }
    }
}
