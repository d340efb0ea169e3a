//! `fleetca serve`: wires the store, RA, CA and EST front end together and runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use fleetca_ca::CertificateAuthority;
use fleetca_est::{ClientTrust, ConnectionLimits, EstService, LabelProfile, Limits};
use fleetca_pki::{certs_only, csr_attributes, CertificateProfile, Clock, SystemClock};
use fleetca_ra::Policy;
use fleetca_store::SqliteStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::config::Config;
use crate::files::read_certificates;
use crate::pki_setup::{
    load_cas, load_manufacturer_cas, renew_server_certificate_if_due, LoadedCas,
};

/// Everything `serve` needs, built and checked (also what `--check-config` checks).
pub struct Prepared {
    config: Config,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<EstService>,
}

fn label_profile(profile: &CertificateProfile, cas: &LoadedCas) -> anyhow::Result<LabelProfile> {
    let issuer = if profile.issuer == "manufacturing" {
        &cas.manufacturing
    } else {
        &cas.operational
    };
    Ok(LabelProfile {
        profile: Arc::new(profile.clone()),
        cacerts: certs_only(&[issuer.certificate_der(), &cas.root_der])?,
        csrattrs: csr_attributes(profile)?,
    })
}

/// Loads keys, certificates and the database and assembles the service.
pub fn prepare(config: Config) -> anyhow::Result<Prepared> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cas = load_cas(&config)?;
    renew_server_certificate_if_due(&config, &cas.operational, clock.now())?;
    let chain = read_certificates(&config.tls_certificate)?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key)
        .with_context(|| format!("server key {}", config.tls_key.display()))?;
    let manufacturers = load_manufacturer_cas(&config.manufacturer_cas)?;
    let tls = fleetca_est::server_config(chain, key, subject_hints(&cas, &manufacturers))?;
    let trust = ClientTrust::new(
        cas.operational.certificate_der(),
        cas.manufacturing.certificate_der(),
        &manufacturers,
    )
    .map_err(anyhow::Error::msg)?;

    let default_label = label_profile(config.profile(&config.est_profile)?, &cas)?;
    let mut labels = HashMap::new();
    for (label, profile) in &config.est_labels {
        labels.insert(
            label.clone(),
            label_profile(config.profile(profile)?, &cas)?,
        );
    }

    let store = SqliteStore::open(&config.database)?;
    let ca = CertificateAuthority::new(
        [cas.manufacturing, cas.operational],
        Arc::new(store.clone()),
        Arc::clone(&clock),
    );
    let ra = Policy::new(Arc::new(store.clone()), Arc::clone(&clock));
    let service = EstService::new(
        default_label,
        labels,
        Arc::new(ra),
        Arc::new(ca),
        trust,
        Arc::new(store),
        clock,
        Limits {
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
        },
    );
    Ok(Prepared {
        config,
        tls: Arc::new(tls),
        service: Arc::new(service),
    })
}

/// DER subjects of the CAs whose certificates clients should present.
fn subject_hints(cas: &LoadedCas, manufacturers: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    let ours = [cas.operational.info(), cas.manufacturing.info()]
        .into_iter()
        .map(|i| i.subject_der.clone());
    let theirs = manufacturers
        .iter()
        .filter_map(|(_, der)| fleetca_pki::CertificateInfo::from_der(der).ok())
        .map(|i| i.subject_der);
    ours.chain(theirs).collect()
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(
    prepared: Prepared,
    listen_override: Option<SocketAddr>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let addr = listen_override.unwrap_or(prepared.config.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("fleetca: EST listening on https://{local}/.well-known/est/");
    println!(
        "fleetca: trust anchor {}",
        prepared.config.root_certificate.display()
    );
    tracing::info!(%local, data_dir = %data_dir.display(), "fleetca serving");
    let limits = ConnectionLimits {
        handshake_timeout: prepared.config.handshake_timeout,
        header_timeout: prepared.config.header_timeout,
        max_connection_lifetime: prepared.config.max_connection_lifetime,
        max_connections: prepared.config.max_connections,
    };
    fleetca_est::serve(
        listener,
        prepared.tls,
        prepared.service,
        limits,
        shutdown_signal(),
    )
    .await?;
    tracing::info!("fleetca stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
