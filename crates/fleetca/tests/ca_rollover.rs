//! `fleetca ca rollover` and `fleetca ca list` on real data directories: the next
//! generation of an issuing CA (key file or PKCS#11 token key, certificate signed by the
//! root and checked with `openssl verify`), its states, its audit event, and every bad
//! request refused with nothing created.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::softhsm::{init_in_token, SoftHsm};
use common::*;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fleetca(data: &Path, env: &[(String, PathBuf)], args: &[&str]) -> Output {
    run(Command::new(fleetca_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .envs(env.iter().map(|(k, v)| (k, v))))
}

/// `ca list --format json`: (ca, generation, state) of every generation.
fn generations(data: &Path, env: &[(String, PathBuf)]) -> Vec<(String, u64, String)> {
    let out = fleetca(data, env, &["ca", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["ca"].as_str().unwrap().to_string(),
                r["generation"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn g(ca: &str, n: u64, state: &str) -> (String, u64, String) {
    (ca.to_string(), n, state.to_string())
}

/// The files in the data directory's `pki/`, sorted.
fn pki_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn verify(root: &Path, cert: &Path) -> String {
    text(&openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]))
}

#[test]
fn rollover_makes_the_next_generation_signed_by_the_root() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    assert_eq!(
        generations(&data, &[]),
        [
            g("root", 1, "active"),
            g("registration", 1, "active"),
            g("manufacturing", 1, "active"),
            g("operational", 1, "active"),
        ]
    );

    let out = fleetca(
        &data,
        &[],
        &[
            "ca",
            "rollover",
            "operational",
            "--activate-at",
            "1h",
            "--comment",
            "yearly rollover",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("operational CA generation 2 created"),
        "{said}"
    );
    assert!(said.contains("root key"), "{said}");
    let cert = data.join("pki/operational-ca-g2.pem");
    let key = data.join("pki/operational-ca-g2.key");
    assert!(key.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    if have("openssl") {
        let v = verify(&data.join("pki/root-ca.pem"), &cert);
        assert!(v.contains(": OK"), "{v}");
        let subject = text(&openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-in",
            cert.to_str().unwrap(),
        ]));
        assert!(
            subject.contains("Test Fleet Operational CA G2"),
            "{subject}"
        );
    }
    assert_eq!(
        generations(&data, &[]),
        [
            g("root", 1, "active"),
            g("registration", 1, "active"),
            g("manufacturing", 1, "active"),
            g("operational", 1, "active"),
            g("operational", 2, "pending"),
        ]
    );
    let out = fleetca(&data, &[], &["ca", "list"]);
    let table = text(&out);
    assert!(table.contains("pki/operational-ca-g2.key"), "{table}");

    // The audit trail names the rollover with its facts and the comment.
    let out = fleetca(&data, &[], &["audit", "list", "--format", "json"]);
    let trail = text(&out);
    assert!(trail.contains("ca-rollover"), "{trail}");
    assert!(trail.contains("ca:operational"), "{trail}");
    assert!(trail.contains("generation 2"), "{trail}");
    assert!(trail.contains("yearly rollover"), "{trail}");

    // Activated at once: generation 1 retires, 2 issues.
    let out = fleetca(&data, &[], &["ca", "rollover", "manufacturing"]);
    assert!(out.status.success(), "{}", text(&out));
    let states = generations(&data, &[]);
    assert!(
        states.contains(&g("manufacturing", 1, "retiring")),
        "{states:?}"
    );
    assert!(
        states.contains(&g("manufacturing", 2, "active")),
        "{states:?}"
    );
    // ...and the next rollover of that CA may follow straight away.
    let out = fleetca(
        &data,
        &[],
        &["ca", "rollover", "manufacturing", "--validity", "30d"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let states = generations(&data, &[]);
    assert!(
        states.contains(&g("manufacturing", 2, "retiring")),
        "{states:?}"
    );
    assert!(
        states.contains(&g("manufacturing", 3, "active")),
        "{states:?}"
    );

    // The CLI's own issuance signs with the active generation too.
    if have("openssl") {
        let key = dir.path().join("b.key");
        let csr = dir.path().join("b.csr");
        let cert = dir.path().join("b.pem");
        new_key(&key);
        openssl(&[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            "/CN=SN-G3/serialNumber=SN-G3",
            "-out",
            csr.to_str().unwrap(),
        ]);
        let out = fleetca(
            &data,
            &[],
            &[
                "device",
                "birth",
                "--serial",
                "SN-G3",
                "--csr",
                csr.to_str().unwrap(),
                "--out",
                cert.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let issuer = text(&openssl(&[
            "x509",
            "-noout",
            "-issuer",
            "-in",
            cert.to_str().unwrap(),
        ]));
        assert!(issuer.contains("Manufacturing CA G3"), "{issuer}");
    }
}

#[test]
fn bad_rollovers_are_refused_and_create_nothing() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let before = pki_files(&data);
    let listed = generations(&data, &[]);

    let refused = |args: &[&str], expect: &str| {
        let out = fleetca(&data, &[], args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let said = text(&out);
        assert!(said.contains(expect), "{args:?}: {said}");
        assert!(said.contains("nothing was created"), "{args:?}: {said}");
        assert_eq!(pki_files(&data), before, "{args:?} left files behind");
    };
    refused(&["ca", "rollover", "billing"], "unknown CA 'billing'");
    refused(
        &[
            "ca",
            "rollover",
            "operational",
            "--activate-at",
            "2020-01-01T00:00:00Z",
        ],
        "is in the past",
    );
    refused(
        &["ca", "rollover", "operational", "--activate-at", "tomorrow"],
        "neither an RFC 3339 time",
    );
    // The root key is needed for this step only; without it nothing is made.
    let root_key = data.join("pki/root-ca.key");
    let offline = dir.path().join("root-ca.key.offline");
    std::fs::rename(&root_key, &offline).unwrap();
    let without_root: Vec<String> = before
        .iter()
        .filter(|f| *f != "root-ca.key")
        .cloned()
        .collect();
    let out = fleetca(&data, &[], &["ca", "rollover", "operational"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("needs the root CA key"), "{said}");
    assert!(said.contains("move it offline again"), "{said}");
    assert_eq!(pki_files(&data), without_root);
    assert_eq!(generations(&data, &[]), listed);
    std::fs::rename(&offline, &root_key).unwrap();

    // A failure after the key was made (a stray file where the certificate goes)
    // removes the key file again.
    let stray = data.join("pki/operational-ca-g2.pem");
    std::fs::write(&stray, "stray").unwrap();
    let out = fleetca(&data, &[], &["ca", "rollover", "operational"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nothing was created"), "{}", text(&out));
    assert!(!data.join("pki/operational-ca-g2.key").exists());
    assert_eq!(generations(&data, &[]), listed);
    std::fs::remove_file(&stray).unwrap();

    // One pending rollover at a time.
    let out = fleetca(
        &data,
        &[],
        &["ca", "rollover", "operational", "--activate-at", "2h"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let after_first = pki_files(&data);
    let out = fleetca(&data, &[], &["ca", "rollover", "operational"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("operational CA generation 2 is pending"),
        "{said}"
    );
    assert_eq!(pki_files(&data), after_first);
    assert_eq!(
        generations(&data, &[])
            .iter()
            .filter(|(ca, _, _)| ca == "operational")
            .count(),
        2
    );
}

#[test]
fn a_token_key_rolls_over_to_a_new_token_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::new(dir.path()) else {
        return;
    };
    let out = init_in_token(dir.path(), &hsm);
    assert!(out.status.success(), "{}", text(&out));
    let data = dir.path().join("data");
    let env = hsm.env();
    let before = pki_files(&data);
    let out = fleetca(&data, &env, &["ca", "rollover", "operational"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("key pkcs11:operational-ca-g2"),
        "{}",
        text(&out)
    );
    // The key is in the token: only the certificate is a new file.
    let mut expected = before.clone();
    expected.push("operational-ca-g2.pem".into());
    expected.sort();
    assert_eq!(pki_files(&data), expected);
    let listed = text(&fleetca(&data, &env, &["ca", "list", "--format", "csv"]));
    assert!(listed.contains("pkcs11:operational-ca-g2"), "{listed}");
    if have("openssl") {
        let v = verify(
            &data.join("pki/root-ca.pem"),
            &data.join("pki/operational-ca-g2.pem"),
        );
        assert!(v.contains(": OK"), "{v}");
    }
    let states = generations(&data, &env);
    assert!(
        states.contains(&g("operational", 2, "active")),
        "{states:?}"
    );

    // A rollover that fails after making its key (a stray file where the certificate
    // goes) removes the token key again: once the file is gone the same rollover
    // succeeds, which it could not if label operational-ca-g3 were still taken.
    let stray = data.join("pki/operational-ca-g3.pem");
    std::fs::write(&stray, "stray").unwrap();
    let out = fleetca(&data, &env, &["ca", "rollover", "operational"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nothing was created"), "{}", text(&out));
    assert_eq!(generations(&data, &env), states);
    std::fs::remove_file(&stray).unwrap();
    let out = fleetca(&data, &env, &["ca", "rollover", "operational"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(generations(&data, &env).contains(&g("operational", 3, "active")));
}

#[test]
fn a_root_rollover_makes_links_and_recertifies_every_issuing_ca() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    // Refused while an issuing CA has a pending generation; nothing made.
    let out = fleetca(
        &data,
        &[],
        &["ca", "rollover", "operational", "--activate-at", "1h"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let before = pki_files(&data);
    let out = fleetca(&data, &[], &["ca", "rollover", "root"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("operational CA generation 2 is pending")
            && said.contains("nothing was created"),
        "{said}"
    );
    assert_eq!(pki_files(&data), before);

    // On a fresh directory: without the old root key, nothing is made.
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    let before = pki_files(&data);
    let listed = generations(&data, &[]);
    let offline = dir.path().join("root.offline");
    std::fs::rename(data.join("pki/root-ca.key"), &offline).unwrap();
    let out = fleetca(&data, &[], &["ca", "rollover", "root"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs the root CA key"),
        "{}",
        text(&out)
    );
    std::fs::rename(&offline, data.join("pki/root-ca.key")).unwrap();
    assert_eq!(pki_files(&data), before);
    assert_eq!(generations(&data, &[]), listed);

    let out = fleetca(
        &data,
        &[],
        &["ca", "rollover", "root", "--activate-at", "1h"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        generations(&data, &[]),
        [
            g("root", 1, "active"),
            g("root", 2, "pending"),
            g("registration", 1, "active"),
            g("registration", 2, "pending"),
            g("manufacturing", 1, "active"),
            g("manufacturing", 2, "pending"),
            g("operational", 1, "active"),
            g("operational", 2, "pending"),
        ]
    );
    if have("openssl") {
        let pki = data.join("pki");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        // The issuing CAs chain to the new root.
        for ca in ["registration", "manufacturing", "operational"] {
            let v = verify(
                &pki.join("root-ca-g2.pem"),
                &pki.join(format!("{ca}-ca-g2.pem")),
            );
            assert!(v.contains(": OK"), "{ca}: {v}");
        }
        // NewWithOld verifies under the old root, OldWithNew under the new one.
        let links = std::fs::read_to_string(pki.join("root-ca-g2-link.pem")).unwrap();
        let mut parts = links.split_inclusive("-----END CERTIFICATE-----\n");
        let (new_with_old, old_with_new) = (parts.next().unwrap(), parts.next().unwrap());
        let nwo = dir.path().join("nwo.pem");
        let own = dir.path().join("own.pem");
        std::fs::write(&nwo, new_with_old).unwrap();
        std::fs::write(&own, old_with_new).unwrap();
        assert!(verify(&pki.join("root-ca.pem"), &nwo).contains(": OK"));
        assert!(verify(&pki.join("root-ca-g2.pem"), &own).contains(": OK"));
        let subject = text(&openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-in",
            &s(&nwo),
        ]));
        assert!(
            subject.contains("subject=O = Test Fleet, CN = Test Fleet Root CA G2")
                && subject.contains("issuer=O = Test Fleet, CN = Test Fleet Root CA\n"),
            "{subject}"
        );
    }
    let trail = text(&fleetca(&data, &[], &["audit", "list", "--format", "json"]));
    assert!(trail.contains("ca:root"), "{trail}");
}

#[test]
fn a_root_rollover_in_the_token_makes_every_new_key_in_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::new(dir.path()) else {
        return;
    };
    let out = init_in_token(dir.path(), &hsm);
    assert!(out.status.success(), "{}", text(&out));
    let data = dir.path().join("data");
    let env = hsm.env();
    let out = fleetca(&data, &env, &["ca", "rollover", "root"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&fleetca(&data, &env, &["ca", "list", "--format", "csv"]));
    for label in [
        "root-ca-g2",
        "registration-ca-g2",
        "manufacturing-ca-g2",
        "operational-ca-g2",
    ] {
        assert!(
            listed.contains(&format!("pkcs11:{label}")),
            "{label}: {listed}"
        );
    }
    // No key file was written.
    assert!(!pki_files(&data).iter().any(|f| f.ends_with("-g2.key")));
    // A server on this directory issues from the new generation (read from the database).
    let server = Server::spawn_with_env(dir, env);
    let a = curl(&server, &[], &server.est("cacerts"));
    assert_eq!(a.status, 200);
    let bundle = server.work("cacerts.pem");
    certs_only_to_pem(&a.body, &bundle);
    let pem = std::fs::read_to_string(&bundle).unwrap();
    assert!(pem.contains("Operational CA G2"), "{pem}");
    assert!(pem.contains("Root CA G2"), "{pem}");
}

/// An issuing CA generation whose end is near enough that the certificates it issues will
/// soon be cut short escalates through the monitoring tiers (`ca-expiry`), and the
/// escalation resolves once a rollover puts a longer-lived generation in charge.
#[test]
fn a_ca_nearing_its_end_escalates_until_it_is_rolled_over() {
    let dir = Server::prepare(|_| {});
    let data = dir.path().join("data");
    // 100 days of CA for a 90-day profile: 10 days before certificates are cut short,
    // inside the default 14-day notice tier.
    let out = fleetca(
        &data,
        &[],
        &["ca", "rollover", "operational", "--validity", "100d"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = fleetca(&data, &[], &["monitor", "run-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let alerts = text(&fleetca(&data, &[], &["alerts", "list"]));
    assert!(
        alerts.contains("ca-expiry") && alerts.contains("ca:operational-2"),
        "{alerts}"
    );
    assert!(alerts.contains("notice"), "{alerts}");
    // The generations with twenty years ahead raise nothing.
    assert!(!alerts.contains("ca:manufacturing"), "{alerts}");

    let out = fleetca(&data, &[], &["ca", "rollover", "operational"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fleetca(&data, &[], &["monitor", "run-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let open = text(&fleetca(&data, &[], &["alerts", "list"]));
    assert!(!open.contains("ca:operational"), "{open}");
    let all = text(&fleetca(&data, &[], &["alerts", "list", "--all"]));
    assert!(all.contains("rolled over"), "{all}");
}

/// A CA never rolled over (generation 1, from the files `init` wrote) is watched too: a
/// profile whose validity reaches past what is left of the CA escalates it at once.
#[test]
fn a_first_generation_ca_is_watched_before_any_rollover() {
    let dir = Server::prepare(|config| {
        *config = config.replacen("validity = \"90d\"", "validity = \"7330d\"", 1);
    });
    let data = dir.path().join("data");
    let out = fleetca(&data, &[], &["monitor", "run-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let alerts = text(&fleetca(&data, &[], &["alerts", "list"]));
    assert!(
        alerts.contains("ca-expiry") && alerts.contains("ca:operational-1"),
        "{alerts}"
    );
    assert!(!alerts.contains("ca:root"), "{alerts}");
}
