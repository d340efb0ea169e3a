//! The HTTP connector over HTTPS to a CMDB that requires a client certificate (mutual
//! TLS). The PKI is generated here: one CA issues the server's and the client's
//! certificates; the connector trusts the CA through `ca_file`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod cmdb;

use std::path::Path;
use std::sync::Arc;

use cmdb::Cmdb;
use fleetca_connectors::ConnectorConfig;
use fleetca_ra::Connector;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

struct Pki {
    ca_pem: String,
    server_config: rustls::ServerConfig,
}

/// Writes ca.pem, client.pem, client.key (and other-client.* from another CA) into `dir`.
fn pki(dir: &Path) -> Pki {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let new_ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |sans: Vec<String>, purpose, issuer: &CertifiedIssuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert, key)
    };
    let ca = new_ca("cmdb test CA");
    let (server, server_key) = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &ca);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

    let other = new_ca("someone else's CA");
    let (stranger, stranger_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &other);
    std::fs::write(dir.join("other-client.pem"), stranger.pem()).unwrap();
    std::fs::write(dir.join("other-client.key"), stranger_key.serialize_pem()).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![
                server.der().clone(),
                CertificateDer::from(ca.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_config,
    }
}

fn build(dir: &Path, url: &str, extra: &str) -> Connector {
    let text = format!("kind = \"http\"\nurl = \"{url}\"\nretries = 0\n{extra}\n");
    let config: ConnectorConfig = toml::from_str(&text).unwrap();
    config.build("cmdb", dir).unwrap()
}

#[tokio::test]
async fn mutual_tls_with_the_configured_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let cmdb = Cmdb::start_tls(Some("t0ken"), pki.server_config).await;
    std::fs::write(dir.path().join("cmdb.token"), "t0ken").unwrap();
    let url = cmdb.url("https", "devices");

    let c = build(
        dir.path(),
        &url,
        r#"ca_file = "ca.pem"
           client_certificate = "client.pem"
           client_key = "client.key"
           bearer_token_file = "cmdb.token""#,
    );
    let r = c.directory.lookup("SN-ACTIVE").await.unwrap().unwrap();
    assert_eq!(r["status"], json!("active"));
    assert_eq!(c.directory.lookup("SN-NOBODY").await.unwrap(), None);

    // No client certificate: the server refuses the handshake.
    let c = build(
        dir.path(),
        &url,
        "ca_file = \"ca.pem\"\nbearer_token_file = \"cmdb.token\"",
    );
    let e = c
        .directory
        .lookup("SN-ACTIVE")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "request to {} failed: received fatal alert: CertificateRequired",
            cmdb.addr
        )
    );

    // A client certificate from a CA the server does not trust.
    let c = build(
        dir.path(),
        &url,
        r#"ca_file = "ca.pem"
           client_certificate = "other-client.pem"
           client_key = "other-client.key""#,
    );
    let e = c
        .directory
        .lookup("SN-ACTIVE")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "request to {} failed: received fatal alert: UnknownCA",
            cmdb.addr
        )
    );

    // Without ca_file the server's certificate is not trusted.
    let c = build(
        dir.path(),
        &url,
        "client_certificate = \"client.pem\"\nclient_key = \"client.key\"",
    );
    let e = c
        .directory
        .lookup("SN-ACTIVE")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot connect to {}: ", cmdb.addr)),
        "{e}"
    );
    // Only the first connector reached the handler.
    assert_eq!(cmdb.hits("SN-ACTIVE"), 1);
}

#[test]
fn client_certificate_files_are_checked_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let _ = pki(dir.path());
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
    let err = |extra: &str, url: &str| {
        let text = format!("kind = \"http\"\nurl = \"{url}\"\n{extra}\n");
        let config: ConnectorConfig = toml::from_str(&text).unwrap();
        config.build("cmdb", dir.path()).unwrap_err().to_string()
    };
    let https = "https://127.0.0.1:1/d/{serial}";
    assert_eq!(
        err(
            "client_certificate = \"client.pem\"\nclient_key = \"client.key\"",
            "http://127.0.0.1:1/d/{serial}"
        ),
        "connector 'cmdb': client_certificate: mutual TLS needs an https:// url"
    );
    assert!(err(
        "client_certificate = \"client.pem\"\nclient_key = \"missing.key\"",
        https
    )
    .starts_with("connector 'cmdb': client_key: cannot read "));
    let e = err("ca_file = \"garbage.pem\"", https);
    assert_eq!(e, "connector 'cmdb': ca_file: holds no PEM certificate");
    let e = err(
        "client_certificate = \"garbage.pem\"\nclient_key = \"garbage.pem\"",
        https,
    );
    assert!(
        e.starts_with("connector 'cmdb': client_certificate: certificate and key not usable"),
        "{e}"
    );
}
