//! Two `fleetca serve` processes on one PostgreSQL database (a throwaway cluster, see the
//! `fleetca-testpg` crate, or `FLEETCA_TEST_DATABASE_URL`), as behind a load balancer:
//! station quotas hold across nodes, enrollments through either node are all recorded
//! with distinct serials, one node at a time runs the expiry scan and builds CRLs, and
//! the survivor takes over when the holder is killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use fleetca_store::{CertificateQuery, InventoryReader, PostgresStore, StationStore};

/// Two nodes sharing one new database, with the same PKI (the data directory copied, as
/// an operator copies it to each node), and the store the test inspects them through.
struct Cluster {
    a: Server,
    b: Server,
    store: PostgresStore,
    rt: tokio::runtime::Runtime,
    /// The database, plain (for the test's own queries).
    url: String,
}

fn cluster(edit_config: impl Fn(&mut String)) -> Cluster {
    cluster_with(false, edit_config)
}

/// Two nodes on one database; with `tls`, they connect over TLS only
/// (`sslmode=require`, `ca_file`) as `application_name` `fleetca-node`.
fn cluster_with(tls: bool, edit_config: impl Fn(&mut String)) -> Cluster {
    let url = fleetca_testpg::database_url().unwrap_or_else(|e| panic!("{e}"));
    let node_url = if tls {
        format!("{url}?sslmode=require&application_name=fleetca-node")
    } else {
        url.clone()
    };
    let dir_a = Server::prepare(|config| {
        let sqlite = "path = \"fleetca.db\"";
        assert!(config.contains(sqlite));
        let mut database = format!("url = \"{node_url}\"");
        if tls {
            database.push_str("\nca_file = \"pki/postgres-ca.pem\"");
        }
        *config = config.replace(sqlite, &database);
        edit_config(config);
    });
    if tls {
        let ca = fleetca_testpg::tls_ca_pem().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir_a.path().join("data/pki/postgres-ca.pem"), ca).unwrap();
    }
    let dir_b = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(dir_a.path().join("data"))
            .arg(dir_b.path().join("data")),
    );
    let a = Server::spawn(dir_a);
    let b = Server::spawn(dir_b);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(PostgresStore::connect(&url)).unwrap();
    Cluster {
        a,
        b,
        store,
        rt,
        url,
    }
}

fn fleetca(data: &Path, args: &[&str]) -> std::process::Output {
    run_ok(
        Command::new(fleetca_bin())
            .args(args)
            .arg("--data-dir")
            .arg(data),
    )
}

/// A birth-label request with a station credential, through curl, to one node.
fn station_post(node: &Server, work: &Server, cred: &(PathBuf, PathBuf), serial: &str) -> Answer {
    let key = work.work(&format!("{serial}-csr.key"));
    new_key(&key);
    let csr = work.work(&format!("{serial}.b64"));
    new_csr_b64(&key, &format!("/serialNumber={serial}"), &csr);
    post_csr(
        node,
        "birth/simpleenroll",
        Some((&cred.0, &cred.1)),
        &csr,
        &[],
    )
}

#[test]
fn a_station_quota_holds_under_concurrent_births_through_both_nodes() {
    require_tools!("openssl", "curl");
    let c = cluster(|_| {});
    let stations = c.a.work("stations");
    fleetca(
        &c.a.data(),
        &[
            "factory",
            "add-station",
            "line-1",
            "--serial-pattern",
            "^SN-1[0-9]{3}$",
            "--serial-range",
            "SN-1000..SN-1999",
            "--quota",
            "5",
            "--out",
            stations.to_str().unwrap(),
        ],
    );
    let cred = (stations.join("line-1.pem"), stations.join("line-1.key"));
    // 16 devices, every other one through node B, all at once.
    let answers: Vec<(String, Answer)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (c, cred) = (&c, &cred);
                s.spawn(move || {
                    let serial = format!("SN-{}", 1000 + i);
                    let node = if i % 2 == 0 { &c.a } else { &c.b };
                    let answer = station_post(node, &c.a, cred, &serial);
                    (serial, answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let granted: Vec<&String> = answers
        .iter()
        .filter(|(_, a)| a.status == 200)
        .map(|(s, _)| s)
        .collect();
    for (serial, a) in &answers {
        assert!(
            a.status == 200 || (a.status == 403 && a.text().contains("quota of 5")),
            "{serial}: {} {}",
            a.status,
            a.text()
        );
    }
    assert_eq!(granted.len(), 5, "{answers:?}");
    // Exactly those five birth certificates are in the inventory, and the station's
    // counter agrees.
    let recorded =
        c.rt.block_on(c.store.certificates(&CertificateQuery::default()))
            .unwrap();
    let mut devices: Vec<&str> = recorded
        .iter()
        .filter(|r| r.profile == "birth")
        .map(|r| r.device_serial.as_str())
        .collect();
    devices.sort_unstable();
    let mut expected: Vec<&str> = granted.iter().map(|s| s.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(devices, expected);
    let stations = c.rt.block_on(c.store.stations()).unwrap();
    assert_eq!(stations.len(), 1);
    assert_eq!(stations[0].issued, 5);
}

#[test]
fn enrollments_through_both_nodes_are_all_recorded_with_distinct_serials() {
    require_tools!("openssl", "curl");
    // The nodes reach the database over TLS, as they would a managed service.
    let c = cluster_with(true, |_| {});
    let births: Vec<(String, PathBuf, PathBuf)> = (0..12)
        .map(|i| {
            let serial = format!("SN-{i:04}");
            let (key, cert) = birth(&c.a, &serial);
            (serial, key, cert)
        })
        .collect();
    let issued: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = births
            .iter()
            .enumerate()
            .map(|(i, (serial, key, cert))| {
                let c = &c;
                s.spawn(move || {
                    let node = if i % 2 == 0 { &c.a } else { &c.b };
                    let subj = format!("/CN={serial}/serialNumber={serial}");
                    let (op_key, op_cert) = enroll(
                        node,
                        "simpleenroll",
                        (cert, key),
                        &subj,
                        &format!("{serial}-op"),
                    );
                    // The renewal through the other node.
                    let other = if i % 2 == 0 { &c.b } else { &c.a };
                    let (_, renewed) = enroll(
                        other,
                        "simplereenroll",
                        (&op_cert, &op_key),
                        &subj,
                        &format!("{serial}-renewed"),
                    );
                    [op_cert, renewed]
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let serials: Vec<String> = issued.iter().map(|p| serial_of(p)).collect();
    let distinct: HashSet<&String> = serials.iter().collect();
    assert_eq!(distinct.len(), 24, "no serial twice");
    for serial in &serials {
        let record =
            c.rt.block_on(c.store.certificate(serial))
                .unwrap()
                .unwrap_or_else(|| panic!("{serial} was returned but is not in the inventory"));
        assert_eq!(record.profile, "operational");
    }
    // 12 births and 24 operational certificates: nothing more, nothing lost.
    let all =
        c.rt.block_on(c.store.certificates(&CertificateQuery::default()))
            .unwrap();
    assert_eq!(all.len(), 36);
    // Every connection the nodes hold is TLS.
    let (plain, tls): (i64, i64) = c.rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&c.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'fleetca-node'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    assert_eq!(plain, 0, "a node connected without TLS");
    assert!(tls >= 2, "{tls} TLS connections from two nodes");
}

/// Waits until `node`'s log contains `needle`, at most `within`.
fn wait_for_log(node: &Server, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if node.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

const SCAN_TAKEN: &str = "expiry scan lease taken";
const CRL_TAKEN: &str = "CRL publication lease taken";

#[test]
fn the_survivor_takes_over_the_expiry_scan_and_crls_when_the_holder_is_killed() {
    require_tools!("openssl", "curl");
    // A 1 s scan interval: the lease lasts 3 s, so a dead holder is replaced within 4 s.
    let c = cluster(|config| {
        let from = "scan_interval = \"15m\"";
        assert!(config.contains(from));
        *config = config.replace(from, "scan_interval = \"1s\"");
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (holder, other) = loop {
        assert!(Instant::now() < deadline, "no node took the scan lease");
        match (
            c.a.log().contains(SCAN_TAKEN),
            c.b.log().contains(SCAN_TAKEN),
        ) {
            (true, false) => break (&c.a, &c.b),
            (false, true) => break (&c.b, &c.a),
            (true, true) => panic!("both nodes hold the scan lease"),
            (false, false) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // Several scan intervals later, still only one node scans; the other serves the CRL
    // recorded by whichever node builds them.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!other.log().contains(SCAN_TAKEN), "{}", other.log());
    let crl_builders = [&c.a, &c.b]
        .iter()
        .filter(|n| n.log().contains(CRL_TAKEN))
        .count();
    assert_eq!(crl_builders, 1);
    let etag = |node: &Server| -> String {
        let a = curl(
            node,
            &[],
            &format!("http://{}/crl/operational.crl", node.status_addr),
        );
        assert_eq!(a.status, 200, "{}", a.text());
        a.headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("etag: ")
                    .or_else(|| l.strip_prefix("ETag: "))
            })
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(etag(&c.a), etag(&c.b), "both nodes serve the same CRL");

    holder.kill();
    // Lease (3 s) + one scan interval, with room for a loaded machine.
    assert!(
        wait_for_log(other, SCAN_TAKEN, Duration::from_secs(15)),
        "the survivor did not take the scan over: {}",
        other.log()
    );
    // ...and scans.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = other.log();
        let since = log.find(SCAN_TAKEN).unwrap_or(0) + SCAN_TAKEN.len();
        if log
            .get(since..)
            .is_some_and(|rest| rest.contains("expiry scan"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor did not scan: {log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The CRL lease (15 s) too: the survivor builds the CRLs now.
    assert!(
        wait_for_log(other, CRL_TAKEN, Duration::from_secs(30)),
        "the survivor did not take the CRLs over: {}",
        other.log()
    );
    assert!(other.alive());
}

/// Manual approval with several nodes: the device asks node A (202), the operator approves
/// through A's data directory, the device polls node B and gets its certificate, and
/// polling A again returns the same one.
#[test]
fn a_request_approved_through_node_a_is_honoured_when_the_device_polls_node_b() {
    require_tools!("openssl", "curl");
    let c = cluster(|config| {
        let from = "[profiles.operational]\n";
        assert!(config.contains(from));
        *config = config.replacen(
            from,
            "[profiles.operational]\nmanual_approval = \"true\"\n",
            1,
        );
    });
    let serial = "SN-APPROVE";
    let (birth_key, birth_cert) = birth(&c.a, serial);
    let key = c.a.work("approve.key");
    let csr = c.a.work("approve.csr.b64");
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
    let poll = |node: &Server| {
        post_csr(
            node,
            "simpleenroll",
            Some((birth_cert.as_path(), birth_key.as_path())),
            &csr,
            &[],
        )
    };
    let a = poll(&c.a);
    assert_eq!(a.status, 202, "{}", a.text());
    // The same request through B is the same queued request, not a second one.
    assert_eq!(poll(&c.b).status, 202);
    let list =
        String::from_utf8_lossy(&fleetca(&c.a.data(), &["request", "list"]).stdout).into_owned();
    let lines: Vec<&str> = list.lines().filter(|l| l.contains(serial)).collect();
    assert_eq!(lines.len(), 1, "{list}");
    assert!(lines[0].contains("polls 2"), "{list}");
    let id = lines[0].split_whitespace().next().unwrap().to_string();
    fleetca(&c.a.data(), &["request", "approve", &id]);

    let on_b = poll(&c.b);
    assert_eq!(on_b.status, 200, "{}", on_b.text());
    let from_b = c.a.work("from-b.pem");
    certs_only_to_pem(&on_b.body, &from_b);
    let on_a = poll(&c.a);
    assert_eq!(on_a.status, 200, "{}", on_a.text());
    let from_a = c.a.work("from-a.pem");
    certs_only_to_pem(&on_a.body, &from_a);
    assert_eq!(serial_of(&from_a), serial_of(&from_b), "issued once");
    let operational =
        c.rt.block_on(c.store.certificates(&CertificateQuery {
            device_serial: Some(serial.into()),
            ..Default::default()
        }))
        .unwrap()
        .into_iter()
        .filter(|r| r.profile == "operational")
        .count();
    assert_eq!(operational, 1);
}

/// An unreachable database is named (host and port) in the error, never with its password.
#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Server::prepare(|config| {
        *config = config.replace(
            "path = \"fleetca.db\"",
            &format!("url = \"postgres://fleetca:s3cret@127.0.0.1:{port}/fleet\""),
        );
    });
    let out = run(Command::new(fleetca_bin())
        .args(["serve", "--check-config", "--data-dir"])
        .arg(dir.path().join("data")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("postgres://fleetca@127.0.0.1:{port}/fleet")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// Issue 16: every node serves the admin API from the shared database, nothing in one
/// node's memory: a token made on one node's data directory, a session opened through
/// node A, its logout through node B and a token revoked through node B are honoured by
/// the other node at once.
#[test]
fn the_admin_api_of_either_node_honours_tokens_and_sessions_made_through_the_other() {
    require_tools!("openssl", "curl");
    let c = cluster(|config| config.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n"));
    for node in [&c.a, &c.b] {
        assert!(!node.admin_addr.is_empty(), "{}", node.log());
    }
    let api = |node: &Server, bearer: &str, method: &str, path: &str, body: Option<&str>| {
        let auth = format!("Authorization: Bearer {bearer}");
        let mut args = vec!["-X", method, "-H", auth.as_str()];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        curl(
            node,
            &args,
            &format!("https://{}/api/v1{path}", node.admin_addr),
        )
    };
    let secret_in = |text: &[u8]| {
        let text = String::from_utf8_lossy(text).into_owned();
        let re = regex::Regex::new(r"fc[as]_[A-Za-z0-9_-]{43}").unwrap();
        re.find(&text).unwrap().as_str().to_string()
    };
    let admin = secret_in(
        &fleetca(
            &c.a.data(),
            &["admin", "token", "create", "nodes-admin", "--role", "admin"],
        )
        .stdout,
    );
    for node in [&c.a, &c.b] {
        let me = api(node, &admin, "GET", "/me", None);
        assert_eq!(me.status, 200, "{}", me.text());
        assert!(me.text().contains("token:nodes-admin"), "{}", me.text());
    }

    // A user made through B logs in through A; the session works on B; logout through B
    // ends it on A.
    let made = api(
        &c.b,
        &admin,
        "POST",
        "/users",
        Some(r#"{"name": "nina", "role": "viewer", "password": "Nodes-Share-Password-9"}"#),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let login = curl(
        &c.a,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"name": "nina", "password": "Nodes-Share-Password-9"}"#,
        ],
        &format!("https://{}/api/v1/login", c.a.admin_addr),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let session: serde_json::Value = serde_json::from_slice(&login.body).unwrap();
    let session = session["token"].as_str().unwrap().to_string();
    assert_eq!(api(&c.b, &session, "GET", "/devices", None).status, 200);
    assert_eq!(api(&c.b, &session, "POST", "/logout", None).status, 204);
    assert_eq!(api(&c.a, &session, "GET", "/devices", None).status, 401);

    // A token revoked through B is refused by A.
    let made = api(
        &c.a,
        &admin,
        "POST",
        "/tokens",
        Some(r#"{"name": "nodes-short", "role": "viewer"}"#),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let short = secret_in(&made.body);
    assert_eq!(api(&c.b, &short, "GET", "/me", None).status, 200);
    let revoked = api(&c.b, &admin, "DELETE", "/tokens/nodes-short", None);
    assert!(matches!(revoked.status, 200 | 204), "{}", revoked.text());
    assert_eq!(api(&c.a, &short, "GET", "/me", None).status, 401);
    let verify = api(&c.a, &admin, "GET", "/audit/verify", None);
    assert!(verify.text().contains("\"ok\":true"), "{}", verify.text());
}

/// Issue 18: the CA generations live in the shared database. A rollover made on one node
/// (its new key file copied to the other, as the README says) is taken over by both nodes
/// at its activation time without a restart: both serve the new generation in /cacerts
/// and issue with it, and a certificate of the old generation renews through either.
#[test]
fn both_nodes_switch_to_a_new_ca_generation_at_its_activation_time() {
    require_tools!("openssl", "curl");
    let c = cluster(|_| {});
    let serial = "SN-GEN-1";
    let subj = format!("/CN={serial}/serialNumber={serial}");
    let (bk, bc) = birth(&c.a, serial);
    let (k1, c1) = enroll(&c.a, "simpleenroll", (&bc, &bk), &subj, "gen-1");
    let out = fleetca(
        &c.a.data(),
        &["ca", "rollover", "operational", "--activate-at", "4s"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        c.a.pki("operational-ca-g2.key"),
        c.b.pki("operational-ca-g2.key"),
    )
    .unwrap();
    for node in [&c.a, &c.b] {
        let bundle = node.work("cacerts.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = curl(node, &[], &node.est("cacerts"));
            assert_eq!(a.status, 200);
            certs_only_to_pem(&a.body, &bundle);
            if std::fs::read_to_string(&bundle)
                .unwrap()
                .contains("Operational CA G2")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never switched:\n{}",
                node.addr,
                node.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // The generation-1 certificate renews through node b onto generation 2.
    let (_, c2) = enroll(&c.b, "simplereenroll", (&c1, &k1), &subj, "gen-2");
    let issuer = String::from_utf8(
        openssl(&["x509", "-noout", "-issuer", "-in", c2.to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert!(issuer.contains("Operational CA G2"), "{issuer}");
}
