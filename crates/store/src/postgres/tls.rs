//! TLS to PostgreSQL: rustls with the aws-lc-rs provider (as everywhere in fleetca),
//! through `tokio-postgres-rustls`.
//!
//! With CA certificates configured every connection is TLS (`sslmode=require` whatever the
//! URL says, never a plaintext fallback) and the server's certificate must chain to them
//! and name the URL's host. Without, connections are plain TCP, and a URL asking for
//! `sslmode=require` is refused rather than silently downgraded.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How connections are made.
#[derive(Clone)]
pub(super) enum Connector {
    /// Plain TCP.
    Plain,
    /// TLS, verified against the configured CAs.
    Rustls(MakeRustlsConnect),
}

/// The connector for `roots` (TLS if any), with `config`'s SSL mode set to match.
pub(super) fn connector(
    config: &mut Config,
    target: &str,
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<Connector, StoreError> {
    let refuse = |reason: String| StoreError::Open {
        path: target.to_string(),
        reason,
    };
    match (roots, config.get_ssl_mode()) {
        (None, SslMode::Require) => Err(refuse(
            "the URL asks for sslmode=require, but no CA certificate is configured to verify \
             the server: set [database] ca_file"
                .into(),
        )),
        (None, _) => {
            config.ssl_mode(SslMode::Disable);
            Ok(Connector::Plain)
        }
        (Some(_), SslMode::Disable) => Err(refuse(
            "the URL says sslmode=disable but [database] ca_file asks for TLS; remove one".into(),
        )),
        (Some(roots), _) => {
            config.ssl_mode(SslMode::Require);
            let mut store = rustls::RootCertStore::empty();
            for root in roots {
                store
                    .add(root.clone())
                    .map_err(|e| refuse(format!("TLS CA certificate: {e}")))?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| refuse(format!("TLS configuration: {e}")))?
                .with_root_certificates(store)
                .with_no_client_auth();
            Ok(Connector::Rustls(MakeRustlsConnect::new(tls)))
        }
    }
}

impl Connector {
    /// One connection outside the pool (migrations), its driver spawned.
    pub(super) async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        Ok(match self {
            Self::Plain => {
                let (client, connection) = config.connect(NoTls).await?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
            Self::Rustls(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
        })
    }
}
