//! E-mail over STARTTLS to a real SMTP sink on loopback: delivered when the relay's
//! certificate is trusted (`ca_file`), refused when it is not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod receivers;

use std::path::Path;

use fleetca_monitor::{build_channel, RawMonitoring};
use fleetca_store::OutboxMessage;
use receivers::SmtpSink;
use time::OffsetDateTime;

fn mail_channel(dir: &Path, port: u16, ca_file: Option<&str>) -> Box<dyn fleetca_monitor::Channel> {
    let ca = ca_file
        .map(|f| format!("ca_file = \"{f}\""))
        .unwrap_or_default();
    let text = format!(
        r#"
        [[tiers]]
        name = "notice"
        before = "14d"
        channels = ["mail"]
        [channels.mail]
        type = "smtp"
        server = "127.0.0.1"
        port = {port}
        security = "starttls"
        {ca}
        from = "fleetca <fleetca@example.com>"
        to = ["ops@example.com"]
        timeout = "5s"
        "#
    );
    let raw: RawMonitoring = toml::from_str(&text).unwrap();
    let settings = raw.validate(dir).unwrap();
    build_channel("mail", &settings.channels["mail"]).unwrap()
}

fn message() -> OutboxMessage {
    OutboxMessage {
        id: 7,
        scan_id: 1,
        channel: "mail".into(),
        tier: "notice".into(),
        event: "firing".into(),
        payload: serde_json::json!({"subject": "2 devices", "body": "SN-1\nSN-2\n", "id": "7"})
            .to_string(),
        created_at: OffsetDateTime::now_utc(),
        attempts: 0,
    }
}

#[tokio::test]
async fn starttls_delivers_to_a_trusted_relay_and_refuses_an_untrusted_one() {
    let (sink, pem) = SmtpSink::start_starttls().await;
    let port = sink.addr.unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("relay-ca.pem"), &pem).unwrap();

    // The relay's self-signed certificate is not in the system roots: refused, nothing sent.
    let untrusted = mail_channel(dir.path(), port, None);
    let err = untrusted.send(&message()).await.unwrap_err().to_string();
    assert!(!err.is_empty());
    assert!(
        sink.received().is_empty(),
        "nothing may be sent without a verified TLS session"
    );

    let trusted = mail_channel(dir.path(), port, Some("relay-ca.pem"));
    trusted.send(&message()).await.unwrap();
    let mails = sink.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, vec!["<ops@example.com>".to_string()]);
    assert!(mails[0].1.contains("Subject: 2 devices"), "{}", mails[0].1);
}

#[test]
fn a_ca_file_that_is_not_pem_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let text = r#"
        [[tiers]]
        name = "notice"
        before = "14d"
        channels = ["mail"]
        [channels.mail]
        type = "smtp"
        server = "127.0.0.1"
        ca_file = "bad.pem"
        from = "fleetca@example.com"
        to = ["ops@example.com"]
        "#;
    let raw: RawMonitoring = toml::from_str(text).unwrap();
    let err = raw.validate(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is not a PEM certificate"), "{err}");
}
