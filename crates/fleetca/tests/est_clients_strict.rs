//! fleetca's EST clients against a strict peer that decodes like OpenSSL's base64 BIO in
//! line mode (see `common::strict_est`): the agent and `factory provision` send base64
//! wrapped at 64 columns with `Content-Transfer-Encoding: base64` (issue 14 item 7).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::strict_est::{self_check, StrictEst};
use common::*;
use fleetca_agent::{Agent, Config};
use fleetca_pki::SystemClock;

#[test]
fn the_strict_peer_refuses_one_line_base64_and_decodes_wrapped_base64() {
    require_tools!("openssl");
    let key = fleetca_pki::KeyAlgorithm::P256.generate().unwrap();
    let mut dn = fleetca_pki::rcgen::DistinguishedName::new();
    dn.push(fleetca_pki::rcgen::DnType::CommonName, "SN-PEER");
    let der = key.certificate_request(dn, vec![], &[]).unwrap();
    let (one_line, wrapped) = self_check(&der);
    assert!(one_line.unwrap_err().contains("without line breaks"));
    assert!(wrapped.unwrap().contains("SN-PEER"));
}

#[test]
fn the_agent_sends_wrapped_base64_that_a_line_mode_decoder_reads() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let peer = StrictEst::start(&server);
    let (birth_key, birth_cert) = birth(&server, "SN-STRICT-A");
    let state = server.work("agent-state");
    let text = format!(
        "[server]\nurl = \"{url}\"\ntrust_anchor = \"{root}\"\ntimeout = \"10s\"\n\n[identity]\nbirth_key = \"{bk}\"\nbirth_certificate = \"{bc}\"\nkey = \"{k}\"\ncertificate = \"{c}\"\n",
        url = peer.url(),
        root = server.root().display(),
        bk = birth_key.display(),
        bc = birth_cert.display(),
        k = state.join("device.key").display(),
        c = state.join("device.pem").display(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The peer answers 202 (Retry-After: 60); the agent would wait and poll: a few seconds
    // are enough for its first request.
    rt.block_on(async {
        let mut agent = Agent::new(Config::parse(&text).unwrap(), Arc::new(SystemClock)).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), agent.once()).await;
    });
    let received = peer.received();
    assert!(!received.is_empty(), "the agent sent nothing");
    for r in &received {
        assert!(r.path.ends_with("/simpleenroll"), "{r:?}");
        assert_eq!(r.transfer_encoding.as_deref(), Some("base64"));
        assert!(r.outcome.as_ref().unwrap().contains("SN-STRICT-A"), "{r:?}");
    }
}

#[test]
fn factory_provision_sends_wrapped_base64_that_a_line_mode_decoder_reads() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let peer = StrictEst::start(&server);
    let out_dir = server.add_station("line-1");
    // The peer answers 202, which provisioning reports as not done: only the request matters.
    let _ = run(Command::new(fleetca_bin())
        .args(["factory", "provision", "--server"])
        .arg(format!("https://{}", peer.addr))
        .arg("--ca")
        .arg(server.root())
        .arg("--station-cert")
        .arg(out_dir.join("line-1.pem"))
        .arg("--station-key")
        .arg(out_dir.join("line-1.key"))
        .args(["--serial", "SN-STRICT-F", "--out"])
        .arg(server.work("bundles")));
    let received = peer.received();
    assert!(!received.is_empty(), "provision sent nothing");
    for r in &received {
        assert!(r.path.ends_with("/birth/simpleenroll"), "{r:?}");
        assert_eq!(r.transfer_encoding.as_deref(), Some("base64"));
        assert!(r.outcome.as_ref().unwrap().contains("SN-STRICT-F"), "{r:?}");
    }
}
