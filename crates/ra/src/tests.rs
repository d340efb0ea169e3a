use std::sync::Arc;

use fleetca_pki::*;
use fleetca_store::{CertificateKind, CertificateLedger, NewCertificate, PolicyStore, SqliteStore};
use time::OffsetDateTime;

use crate::*;

struct World {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    policy: Policy,
    operational: Issuer,
    profile: CertificateProfile,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).unwrap();
    let now = OffsetDateTime::now_utc();
    let root_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let params = HierarchyParams::new("Test");
    let root_cert = CaCertificate::root(root_key.as_ref(), &params, now).unwrap();
    let root = Issuer::new("root", root_cert.der, root_key).unwrap();
    let op_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let op_cert =
        CaCertificate::issuing(&root, CaRole::Operational, op_key.as_ref(), &params, now).unwrap();
    let operational = Issuer::new("operational", op_cert.der, op_key).unwrap();
    let policy = Policy::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    );
    World {
        _dir: dir,
        store,
        policy,
        operational,
        profile: CertificateProfile::default_operational(),
    }
}

fn csr(key: &SoftwareKey, subject: &[(&str, &str)], sans: Vec<SanType>) -> CertificateRequest {
    let mut dn = rcgen::DistinguishedName::new();
    for (ty, value) in subject {
        let t = match *ty {
            "CN" => rcgen::DnType::CommonName,
            "serialNumber" => rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            "O" => rcgen::DnType::OrganizationName,
            _ => unreachable!(),
        };
        dn.push(t, *value);
    }
    CertificateRequest::from_der(&key.certificate_request(dn, sans, &[]).unwrap()).unwrap()
}

impl World {
    async fn operational_cert(&self, serial: &str, key: &SoftwareKey) -> CertificateInfo {
        let prepared = self
            .operational
            .prepare(
                &self.profile,
                &IssuanceOrder {
                    device_serial: serial.into(),
                    spki_der: key.public_key_der(),
                },
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        let issued = self.operational.issue(prepared).unwrap();
        self.store
            .record_issuance(NewCertificate {
                serial: issued.serial.to_hex(),
                device_serial: serial.into(),
                issuer: "operational".into(),
                profile: "operational".into(),
                kind: CertificateKind::Operational,
                not_before: issued.not_before,
                not_after: issued.not_after,
                spki_sha256: issued.spki_sha256.clone(),
                der: issued.der.clone(),
                replaces: None,
                authenticated_by: None,
                limits: Default::default(),
                binding: Default::default(),
                issued_at: OffsetDateTime::now_utc(),
                birth: None,
                decision: None,
                cmp_transaction: None,
            })
            .await
            .unwrap();
        CertificateInfo::from_der(&issued.der).unwrap()
    }

    /// A recorded operational certificate for `serial`, and the client it authenticates.
    async fn operational_client(
        &self,
        serial: &str,
        key: &SoftwareKey,
    ) -> (CertificateInfo, ClientIdentity) {
        let cert = self.operational_cert(serial, key).await;
        let client = ClientIdentity::OperationalCertificate {
            certificate: cert.clone(),
        };
        (cert, client)
    }

    async fn decide(
        &self,
        operation: Operation,
        client: &ClientIdentity,
        csr: &CertificateRequest,
    ) -> Decision {
        self.decide_by(&self.policy, operation, client, csr).await
    }

    /// `decide` under another policy (the world's store and profile).
    async fn decide_by(
        &self,
        policy: &Policy,
        operation: Operation,
        client: &ClientIdentity,
        csr: &CertificateRequest,
    ) -> Decision {
        policy
            .decide(&EnrollmentRequest {
                operation,
                label: None,
                profile: &self.profile,
                client,
                csr,
                channel_binding: &ChannelBinding::Unavailable,
                reissue: false,
                admitted: None,
            })
            .await
            .unwrap()
    }
}

fn denied_by(d: &Decision) -> (&'static str, String) {
    match &d.outcome {
        Outcome::Deny { rule, reason } => (rule, reason.clone()),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn account(pattern: Option<&str>) -> ClientIdentity {
    ClientIdentity::Account {
        name: "bootstrap".into(),
        label: None,
        serial_pattern: pattern.map(str::to_string),
        any_serial: pattern.is_none(),
        known_devices: false,
    }
}

/// An account that may enroll devices the inventory knows (`--allow-known-devices`).
fn known_account() -> ClientIdentity {
    ClientIdentity::Account {
        name: "bootstrap".into(),
        label: None,
        serial_pattern: None,
        any_serial: true,
        known_devices: true,
    }
}

#[tokio::test]
async fn an_account_enrolls_only_new_devices_and_needs_a_scope() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("serialNumber", "SN-1")], vec![]);
    w.operational_cert("SN-1", &key).await;
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &account(None), &c).await);
    assert_eq!(rule, "account-new-device");
    assert!(reason.contains("already in the inventory"), "{reason}");
    let d = w.decide(Operation::Enroll, &known_account(), &c).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    // Without a pattern and without --any-serial, an account enrolls nothing.
    let unscoped = ClientIdentity::Account {
        name: "bootstrap".into(),
        label: None,
        serial_pattern: None,
        any_serial: false,
        known_devices: false,
    };
    let c = csr(&key, &[("serialNumber", "SN-2")], vec![]);
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &unscoped, &c).await);
    assert_eq!(rule, "account-scope");
    assert!(reason.contains("--any-serial"), "{reason}");
}

#[tokio::test]
async fn an_account_enrolls_a_device_named_in_the_csr() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("CN", "SN-1"), ("serialNumber", "SN-1")], vec![]);
    let d = w
        .decide(Operation::Enroll, &account(Some("SN-[0-9]+")), &c)
        .await;
    assert_eq!(
        d.outcome,
        Outcome::Issue {
            device_serial: "SN-1".into(),
            replaces: None,
            authenticated_by: None,
            limits: Default::default(),
            binding: fleetca_store::DeviceBinding {
                new_device: true,
                profile: Some(fleetca_store::ProfileBinding {
                    profile: "operational".into(),
                    accepts: vec!["operational".into()],
                }),
                birth_issuer: None,
            },
            reissue: false,
            approval: None,
        }
    );
    assert!(d.checks.iter().all(|c| c.passed));
    assert!(d.checks.iter().any(|c| c.rule == "account-scope"));
}

#[tokio::test]
async fn account_pattern_and_missing_serial_are_denied() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("serialNumber", "XX-1")], vec![]);
    let (rule, reason) = denied_by(
        &w.decide(Operation::Enroll, &account(Some("SN-[0-9]+")), &c)
            .await,
    );
    assert_eq!(rule, "account-scope");
    assert!(reason.contains("does not match"), "{reason}");
    let c = csr(&key, &[("CN", "SN-1")], vec![]);
    let (rule, _) = denied_by(&w.decide(Operation::Enroll, &account(None), &c).await);
    assert_eq!(rule, "device-serial");
}

#[tokio::test]
async fn foreign_subjects_names_ca_requests_and_keys_are_denied() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("serialNumber", "SN-1"), ("CN", "SN-2")], vec![]);
    assert_eq!(
        denied_by(&w.decide(Operation::Enroll, &account(None), &c).await).0,
        "subject"
    );
    let c = csr(&key, &[("serialNumber", "SN-1"), ("O", "Evil")], vec![]);
    assert_eq!(
        denied_by(&w.decide(Operation::Enroll, &account(None), &c).await).0,
        "subject"
    );
    let c = csr(
        &key,
        &[("serialNumber", "SN-1")],
        vec![SanType::DnsName("bank.example".try_into().unwrap())],
    );
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &account(None), &c).await);
    assert_eq!(rule, "subject");
    assert!(reason.contains("DNS:bank.example"), "{reason}");

    let mut w = w;
    w.profile.allowed_keys = vec![KeyAlgorithm::P384];
    let c = csr(&key, &[("serialNumber", "SN-1")], vec![]);
    assert_eq!(
        denied_by(&w.decide(Operation::Enroll, &account(None), &c).await).0,
        "key-algorithm"
    );
}

#[tokio::test]
async fn reenroll_needs_the_same_identity_and_a_new_key() {
    let w = world();
    let old_key = KeyAlgorithm::P256.generate().unwrap();
    let (cert, client) = w.operational_client("SN-1", &old_key).await;
    let new_key = KeyAlgorithm::P256.generate().unwrap();

    let good = csr(
        &new_key,
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    let d = w.decide(Operation::Reenroll, &client, &good).await;
    assert_eq!(
        d.outcome,
        Outcome::Issue {
            device_serial: "SN-1".into(),
            replaces: Some(cert.serial.to_hex()),
            authenticated_by: Some(cert.serial.to_hex()),
            limits: Default::default(),
            binding: Default::default(),
            reissue: false,
            approval: None,
        }
    );

    let other = csr(
        &new_key,
        &[("CN", "SN-2"), ("serialNumber", "SN-1")],
        vec![],
    );
    let (rule, reason) = denied_by(&w.decide(Operation::Reenroll, &client, &other).await);
    assert_eq!(rule, "subject");
    assert!(reason.contains("4.2.2"), "{reason}");

    let same_key = csr(
        &old_key,
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    assert_eq!(
        denied_by(&w.decide(Operation::Reenroll, &client, &same_key).await).0,
        "new-key"
    );
}

#[tokio::test]
async fn a_birth_certificate_cannot_reenroll_and_an_operational_one_cannot_enroll() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let cert = w.operational_cert("SN-1", &key).await;
    let birth = ClientIdentity::BirthCertificate {
        issuer: "manufacturing".into(),
        issued_here: true,
        certificate: cert.clone(),
    };
    let c = csr(
        &KeyAlgorithm::P256.generate().unwrap(),
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    let (rule, reason) = denied_by(&w.decide(Operation::Reenroll, &birth, &c).await);
    assert_eq!(rule, "authentication");
    assert!(reason.contains("birth certificate"), "{reason}");
    let op = ClientIdentity::OperationalCertificate { certificate: cert };
    assert_eq!(
        denied_by(&w.decide(Operation::Enroll, &op, &c).await).0,
        "authentication"
    );
}

#[tokio::test]
async fn certificates_missing_from_the_inventory_are_refused() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    // Issued but never recorded: must not authenticate a renewal.
    let prepared = w
        .operational
        .prepare(
            &w.profile,
            &IssuanceOrder {
                device_serial: "SN-9".into(),
                spki_der: key.public_key_der(),
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let cert = CertificateInfo::from_der(&w.operational.issue(prepared).unwrap().der).unwrap();
    let client = ClientIdentity::OperationalCertificate { certificate: cert };
    let c = csr(
        &KeyAlgorithm::P256.generate().unwrap(),
        &[("CN", "SN-9"), ("serialNumber", "SN-9")],
        vec![],
    );
    let (rule, reason) = denied_by(&w.decide(Operation::Reenroll, &client, &c).await);
    assert_eq!(rule, "client-certificate-status");
    assert!(reason.contains("not in the inventory"), "{reason}");
}

#[tokio::test]
async fn channel_binding_is_checked_when_offered() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let exporter = [7u8; 32];
    let good = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, exporter);
    for (password, ok) in [(good.as_str(), true), ("wrong", false)] {
        let attr = rcgen::Attribute {
            oid: &[1, 2, 840, 113549, 1, 9, 7],
            values: {
                // SET { UTF8String password }
                let mut v = vec![0x31, password.len() as u8 + 2, 0x0c, password.len() as u8];
                v.extend_from_slice(password.as_bytes());
                v
            },
        };
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-1");
        let der = key.certificate_request(dn, vec![], &[attr]).unwrap();
        let c = CertificateRequest::from_der(&der).unwrap();
        assert_eq!(c.challenge_password(), Some(password));
        let client = account(None);
        let d = w
            .policy
            .decide(&EnrollmentRequest {
                operation: Operation::Enroll,
                label: None,
                profile: &w.profile,
                client: &client,
                csr: &c,
                channel_binding: &ChannelBinding::TlsExporter(exporter),
                reissue: false,
                admitted: None,
            })
            .await
            .unwrap();
        assert_eq!(matches!(d.outcome, Outcome::Issue { .. }), ok, "{d}");
    }
}

fn refusal(admission: Admission) -> Option<(&'static str, String)> {
    match admission {
        Admission::Admitted(_) => None,
        Admission::Refused { rule, reason } => Some((rule, reason)),
    }
}

/// `decide` reuses what admission read instead of reading it again; the credential it
/// names goes with the outcome, for the recording commit to re-check.
#[tokio::test]
async fn decide_reuses_the_standing_read_at_admission() {
    use fleetca_store::RevocationStore;
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let (cert, client) = w.operational_client("SN-A", &key).await;
    let Admission::Admitted(Some(admitted)) = w.policy.admit(&client).await.unwrap() else {
        panic!("a valid operational certificate is admitted with its standing");
    };
    // Revoked after admission: the snapshot still says valid, a fresh read does not.
    w.store
        .revoke(
            &cert.serial.to_hex(),
            "keyCompromise",
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let c = csr(
        &KeyAlgorithm::P256.generate().unwrap(),
        &[("CN", "SN-A"), ("serialNumber", "SN-A")],
        vec![],
    );
    let request = |admitted| EnrollmentRequest {
        operation: Operation::Reenroll,
        label: None,
        profile: &w.profile,
        client: &client,
        csr: &c,
        channel_binding: &ChannelBinding::Unavailable,
        reissue: false,
        admitted,
    };
    let d = w.policy.decide(&request(Some(&admitted))).await.unwrap();
    assert!(
        matches!(&d.outcome, Outcome::Issue { authenticated_by: Some(s), .. } if *s == cert.serial.to_hex()),
        "{d}"
    );
    let d = w.policy.decide(&request(None)).await.unwrap();
    assert_eq!(denied_by(&d).0, "client-certificate-status");
    // A snapshot of another client is not used.
    let other_key = KeyAlgorithm::P256.generate().unwrap();
    let other = ClientIdentity::OperationalCertificate {
        certificate: w.operational_cert("SN-B", &other_key).await,
    };
    let d = w
        .policy
        .decide(&EnrollmentRequest {
            client: &other,
            csr: &csr(
                &KeyAlgorithm::P256.generate().unwrap(),
                &[("CN", "SN-B"), ("serialNumber", "SN-B")],
                vec![],
            ),
            ..request(Some(&admitted))
        })
        .await
        .unwrap();
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
}

#[tokio::test]
async fn revoked_held_and_decommissioned_clients_are_not_admitted() {
    use fleetca_store::{LifecycleChange, RevocationStore};
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let (cert, client) = w.operational_client("SN-R", &key).await;
    assert!(refusal(w.policy.admit(&client).await.unwrap()).is_none());

    w.store
        .change_lifecycle("SN-R", LifecycleChange::Suspend, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let (rule, reason) = refusal(w.policy.admit(&client).await.unwrap()).unwrap();
    assert_eq!(rule, "device-status");
    assert!(reason.contains("suspended"), "{reason}");
    w.store
        .change_lifecycle("SN-R", LifecycleChange::Resume, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(refusal(w.policy.admit(&client).await.unwrap()).is_none());

    w.store
        .revoke(
            &cert.serial.to_hex(),
            "keyCompromise",
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let (rule, reason) = refusal(w.policy.admit(&client).await.unwrap()).unwrap();
    assert_eq!(rule, "client-certificate-status");
    assert!(reason.contains("revoked (keyCompromise)"), "{reason}");
    // decide() runs the same rule.
    let c = csr(
        &KeyAlgorithm::P256.generate().unwrap(),
        &[("CN", "SN-R"), ("serialNumber", "SN-R")],
        vec![],
    );
    assert_eq!(
        denied_by(&w.decide(Operation::Reenroll, &client, &c).await).0,
        "client-certificate-status"
    );
}

#[tokio::test]
async fn renewal_keeps_the_profile_unless_the_target_accepts_it() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let cert = w.operational_cert("SN-P", &key).await;
    let client = ClientIdentity::OperationalCertificate { certificate: cert };
    let c = csr(
        &KeyAlgorithm::P256.generate().unwrap(),
        &[("CN", "SN-P"), ("serialNumber", "SN-P")],
        vec![],
    );
    let mut long = CertificateProfile::default_operational();
    long.name = "long".into();
    let d = reenroll_into(&w, &long, &client, &c).await;
    let (rule, reason) = denied_by(&d);
    assert_eq!(rule, "renewal-profile");
    assert!(reason.contains("profile 'operational'"), "{reason}");
    long.renew_from = vec!["operational".into()];
    let d = reenroll_into(&w, &long, &client, &c).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
}

async fn reenroll_into(
    w: &World,
    profile: &CertificateProfile,
    client: &ClientIdentity,
    csr: &CertificateRequest,
) -> Decision {
    w.policy
        .decide(&EnrollmentRequest {
            operation: Operation::Reenroll,
            label: Some("long"),
            profile,
            client,
            csr,
            channel_binding: &ChannelBinding::Unavailable,
            reissue: false,
            admitted: None,
        })
        .await
        .unwrap()
}

fn custom(name: &str, expression: &str, message: &str) -> CustomRule {
    CustomRule {
        name: name.into(),
        expression: expression.into(),
        message: message.into(),
    }
}

#[tokio::test]
async fn a_device_at_its_active_certificate_limit_is_denied() {
    let mut w = world();
    w.profile.rules.max_active_certificates = Some(1);
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("CN", "SN-1"), ("serialNumber", "SN-1")], vec![]);
    let d = w.decide(Operation::Enroll, &known_account(), &c).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");

    let cert = w.operational_cert("SN-1", &key).await;
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &known_account(), &c).await);
    assert_eq!(rule, "max-active-certificates");
    assert!(reason.contains("at most 1"), "{reason}");

    // Renewal replaces the current certificate: it does not count against the limit.
    let client = ClientIdentity::OperationalCertificate { certificate: cert };
    let new_key = KeyAlgorithm::P256.generate().unwrap();
    let renew = csr(
        &new_key,
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    let d = w.decide(Operation::Reenroll, &client, &renew).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
}

#[tokio::test]
async fn reenrollment_waits_for_the_configured_share_of_the_lifetime() {
    let mut w = world();
    w.profile.rules.reenroll_after_permille = Some(660);
    let old_key = KeyAlgorithm::P256.generate().unwrap();
    let (cert, client) = w.operational_client("SN-1", &old_key).await;
    let new_key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(
        &new_key,
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    let (rule, reason) = denied_by(&w.decide(Operation::Reenroll, &client, &c).await);
    assert_eq!(rule, "reenroll-window");
    assert!(reason.contains("0.660"), "{reason}");

    // 70 days into a 90-day certificate: late enough.
    let later = Policy::new(
        Arc::new(w.store.clone()),
        Arc::new(w.store.clone()),
        Arc::new(ManualClock::new(cert.not_before + time::Duration::days(70))),
    );
    let d = later
        .decide(&EnrollmentRequest {
            operation: Operation::Reenroll,
            label: None,
            profile: &w.profile,
            client: &client,
            csr: &c,
            channel_binding: &ChannelBinding::Unavailable,
            reissue: false,
            admitted: None,
        })
        .await
        .unwrap();
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    assert!(d
        .checks
        .iter()
        .any(|c| c.rule == "reenroll-window" && c.passed));
}

#[tokio::test]
async fn cel_rules_pass_deny_with_their_message_and_fail_closed() {
    let mut w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("CN", "SN-1"), ("serialNumber", "SN-1")], vec![]);
    w.profile.rules.custom = vec![
        custom(
            "p256",
            "request.key_algorithm == 'p256' && request.subject.CN == device.serial",
            "P-256 only",
        ),
        custom(
            "context",
            "client.role == 'account' && device.status == null && now > 0 \
             && request.label == null && request.operation == 'simpleenroll' \
             && size(request.sans) == 0 && request.serial_number == 'SN-1'",
            "context",
        ),
    ];
    let d = w.decide(Operation::Enroll, &account(None), &c).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    assert_eq!(
        d.checks.iter().filter(|c| c.rule == "custom-rule").count(),
        2
    );

    w.profile.rules.custom = vec![custom(
        "p384-only",
        "request.key_algorithm == 'p384'",
        "this fleet uses P-384 keys",
    )];
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &account(None), &c).await);
    assert_eq!(rule, "custom-rule");
    assert_eq!(reason, "rule 'p384-only': this fleet uses P-384 keys");

    for (expression, needle) in [
        ("request.key_algorithm", "not a bool"),
        ("request.key_algorithm + 1 == 2", "could not be evaluated"),
        ("no_such_variable", "could not be evaluated"),
    ] {
        w.profile.rules.custom = vec![custom("typed", expression, "never shown")];
        let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &account(None), &c).await);
        assert_eq!(rule, "custom-rule");
        assert!(
            reason.contains("rule 'typed'") && reason.contains(needle),
            "{expression}: {reason}"
        );
    }
}

#[test]
fn bad_cel_does_not_compile() {
    assert!(compile_rule("request.key_algorithm == 'p256'", &[]).is_ok());
    let err = compile_rule("request.key_algorithm ==", &[]).unwrap_err();
    assert!(matches!(err, RaError::Expression(_)), "{err}");
}

/// Issue 15 item 6: a rule naming an undeclared variable compiled, then denied every
/// request of its profile. Now the names are checked at load, with their column.
#[test]
fn rules_refer_only_to_declared_names() {
    let cmdb = ["cmdb".to_string()];
    for ok in [
        "device.cmdb.shipped.status == 'shipped'",
        "has(device.cmdb.owner) && now > client.not_after - 86400",
        "request.sans.all(s, s.startsWith('URI:urn:dev:'))",
        "request.subject.exists(k, k == 'CN' && device.serial != '')",
        "type(request.key_size) == int && request.label in ['a', 'b']",
        "device.status != 'suspended' && [1, 2].map(x, x * 2).size() == 2",
    ] {
        let result = compile_rule(ok, &cmdb);
        assert!(result.is_ok(), "{ok}: {result:?}");
    }
    for (bad, needle) in [
        (
            "devce.shipped.status == 'shipped'",
            "unknown variable 'devce' at column 1",
        ),
        (
            "request.label == 'x' && devce.cmdb == null",
            "unknown variable 'devce' at column 25",
        ),
        (
            "device.cmbd.shipped == true",
            "'device' has no field 'cmbd'",
        ),
        (
            "request.key_algoritm == 'p256'",
            "'request' has no field 'key_algoritm'",
        ),
        ("client.roles == 'birth'", "'client' has no field 'roles'"),
        (
            "request.sans.all(s, t.startsWith('x'))",
            "unknown variable 't'",
        ),
    ] {
        let err = compile_rule(bad, &cmdb).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
    // A connector the profile does not consult is not there.
    let err = compile_rule("device.cmdb == null", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no field 'cmdb'"), "{err}");
}

#[tokio::test]
async fn serial_patterns_and_rate_limits_apply_per_device() {
    let mut w = world();
    w.profile.rules.serial_pattern = Some("SN-[0-9]+".into());
    w.profile.rules.rate_limit = Some(RateLimit {
        max: 2,
        per: time::Duration::hours(1),
    });
    let key = KeyAlgorithm::P256.generate().unwrap();
    let odd = csr(&key, &[("serialNumber", "XY-1")], vec![]);
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &account(None), &odd).await);
    assert_eq!(rule, "serial-pattern");
    assert!(
        reason.contains("XY-1") && reason.contains("SN-[0-9]+"),
        "{reason}"
    );
    // Anchored: a pattern matching only part of the serial does not pass.
    let partial = csr(&key, &[("serialNumber", "SN-1x")], vec![]);
    let (rule, _) = denied_by(&w.decide(Operation::Enroll, &account(None), &partial).await);
    assert_eq!(rule, "serial-pattern");

    let c = csr(&key, &[("serialNumber", "SN-1")], vec![]);
    w.operational_cert("SN-1", &key).await;
    let d = w.decide(Operation::Enroll, &known_account(), &c).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    w.operational_cert("SN-1", &key).await;
    let d = w.decide(Operation::Enroll, &known_account(), &c).await;
    let (rule, reason) = denied_by(&d);
    assert_eq!(rule, "rate-limit");
    assert!(reason.contains("2 per 1h"), "{reason}");
    assert_eq!(d.device_serial.as_deref(), Some("SN-1"));
    // Stages are recorded with every rule, in order.
    let stages: Vec<Stage> = d.checks.iter().map(|c| c.stage).collect();
    assert!(stages.windows(2).all(|p| p[0] <= p[1]), "{stages:?}");
    assert_eq!(d.checks[0].stage, Stage::Technical);
}

#[tokio::test]
async fn an_operator_can_force_reenrollment_before_the_window() {
    let mut w = world();
    w.profile.rules.reenroll_after_permille = Some(667);
    let key = KeyAlgorithm::P256.generate().unwrap();
    let cert = w.operational_cert("SN-1", &key).await;
    let client = ClientIdentity::OperationalCertificate { certificate: cert };
    let new_key = KeyAlgorithm::P256.generate().unwrap();
    let renew = csr(
        &new_key,
        &[("CN", "SN-1"), ("serialNumber", "SN-1")],
        vec![],
    );
    let (rule, _) = denied_by(&w.decide(Operation::Reenroll, &client, &renew).await);
    assert_eq!(rule, "reenroll-window");

    // An override in the past does nothing; a live one lets the device renew now.
    w.store
        .force_reenroll(
            "SN-1",
            OffsetDateTime::now_utc() - time::Duration::minutes(1),
        )
        .await
        .unwrap();
    let (rule, _) = denied_by(&w.decide(Operation::Reenroll, &client, &renew).await);
    assert_eq!(rule, "reenroll-window");
    w.store
        .force_reenroll("SN-1", OffsetDateTime::now_utc() + time::Duration::hours(1))
        .await
        .unwrap();
    let d = w.decide(Operation::Reenroll, &client, &renew).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    let window = d
        .checks
        .iter()
        .find(|c| c.rule == "reenroll-window")
        .unwrap();
    assert!(
        window.detail.contains("forced by an operator"),
        "{window:?}"
    );
}

/// A directory answering from a fixed table, or failing: the RA's side of the connector
/// contract (the real connectors are tested against real services in fleetca-connectors).
struct Table(Result<Vec<(&'static str, serde_json::Value)>, &'static str>);

#[async_trait::async_trait]
impl DeviceDirectory for Table {
    async fn lookup(&self, serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        match &self.0 {
            Err(e) => Err(DirectoryError((*e).into())),
            Ok(rows) => Ok(rows
                .iter()
                .find(|(s, _)| *s == serial)
                .and_then(|(_, v)| v.as_object().cloned())),
        }
    }
}

fn with_connector(w: &World, directory: Table, on_unknown: OnUnknown, on_error: OnError) -> Policy {
    let connector = Connector {
        name: "cmdb".into(),
        directory: Arc::new(directory),
        on_unknown,
        on_error,
    };
    w.policy
        .clone()
        .with_connectors([("cmdb".to_string(), connector)].into())
}

async fn decide_with(policy: &Policy, w: &World, c: &CertificateRequest) -> Decision {
    w.decide_by(policy, Operation::Enroll, &known_account(), c)
        .await
}

#[tokio::test]
async fn connectors_feed_the_inventory_rule_and_cel() {
    let mut w = world();
    w.profile.rules.connectors = vec!["cmdb".into()];
    w.profile.rules.custom = vec![custom(
        "cmdb-active",
        "device.cmdb != null && device.cmdb.status == 'active'",
        "the device must be active in the CMDB",
    )];
    let table = || {
        Table(Ok(vec![
            ("SN-1", serde_json::json!({"status": "active"})),
            ("SN-2", serde_json::json!({"status": "retired"})),
        ]))
    };
    let retry = OnError::Unavailable {
        retry_after: std::time::Duration::from_secs(42),
    };
    let key = KeyAlgorithm::P256.generate().unwrap();
    let sn = |s: &str| csr(&key, &[("serialNumber", s)], vec![]);

    let p = with_connector(&w, table(), OnUnknown::Deny, retry);
    let d = decide_with(&p, &w, &sn("SN-1")).await;
    assert!(matches!(d.outcome, Outcome::Issue { .. }), "{d}");
    let (rule, reason) = denied_by(&decide_with(&p, &w, &sn("SN-2")).await);
    assert_eq!(rule, "custom-rule");
    assert!(reason.contains("active in the CMDB"), "{reason}");
    let (rule, reason) = denied_by(&decide_with(&p, &w, &sn("SN-3")).await);
    assert_eq!(rule, "inventory");
    assert!(reason.contains("not in the inventory 'cmdb'"), "{reason}");

    // Unknown allowed: CEL sees null and decides.
    let p = with_connector(&w, table(), OnUnknown::Allow, retry);
    let (rule, _) = denied_by(&decide_with(&p, &w, &sn("SN-3")).await);
    assert_eq!(rule, "custom-rule");

    // A failing directory: unavailable (retry later), never issued, never a plain denial;
    // the stored detail says why, the outcome does not.
    let p = with_connector(&w, Table(Err("timed out after 2s")), OnUnknown::Deny, retry);
    let d = decide_with(&p, &w, &sn("SN-1")).await;
    assert_eq!(
        d.outcome,
        Outcome::Unavailable {
            rule: "inventory",
            retry_after: std::time::Duration::from_secs(42)
        }
    );
    let check = d.checks.last().unwrap();
    assert!(
        !check.passed && check.detail.contains("timed out"),
        "{check:?}"
    );
    let p = with_connector(&w, Table(Err("HTTP 500")), OnUnknown::Deny, OnError::Deny);
    let (rule, reason) = denied_by(&decide_with(&p, &w, &sn("SN-1")).await);
    assert_eq!(rule, "inventory");
    assert!(
        !reason.contains("500"),
        "internals stay out of the answer: {reason}"
    );
    let p = with_connector(&w, Table(Err("HTTP 500")), OnUnknown::Deny, OnError::Skip);
    let (rule, _) = denied_by(&decide_with(&p, &w, &sn("SN-1")).await);
    assert_eq!(rule, "custom-rule", "skipped: CEL sees null");
}

#[tokio::test]
async fn manual_approval_queues_then_issues_once() {
    let mut w = world();
    w.profile.rules.manual_approval = Some("request.serial_number.startsWith('NEW-')".into());
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("serialNumber", "NEW-1")], vec![]);
    let request = EnrollmentRequest {
        operation: Operation::Enroll,
        label: None,
        profile: &w.profile,
        client: &known_account(),
        csr: &c,
        channel_binding: &ChannelBinding::Unavailable,
        reissue: false,
        admitted: None,
    };
    let d = w.policy.decide(&request).await.unwrap();
    let Outcome::Pending { approval, .. } = d.outcome else {
        panic!("{d}")
    };
    w.policy
        .conclude(&request, &d, Conclusion::NotIssued)
        .await
        .unwrap();
    // Polling again: the same request, still pending; a dry run opens nothing.
    let again = w.policy.decide(&request).await.unwrap();
    assert!(matches!(again.outcome, Outcome::Pending { approval: a, .. } if a == approval));
    let dry = w.policy.clone().dry_run().decide(&request).await.unwrap();
    assert!(matches!(dry.outcome, Outcome::Pending { .. }));
    assert_eq!(w.store.approvals(None, 10).await.unwrap().len(), 1);

    w.store
        .decide_approval(approval, true, "alice", None, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let d = w.policy.decide(&request).await.unwrap();
    assert!(
        matches!(d.outcome, Outcome::Issue { approval: Some(a), .. } if a == approval),
        "{d}"
    );
    // A concurrent poll while it is being issued waits.
    let busy = w.policy.decide(&request).await.unwrap();
    assert!(matches!(busy.outcome, Outcome::Pending { .. }), "{busy}");
    let issued = w.operational_cert("NEW-1", &key).await;
    let serial = issued.serial.to_hex();
    w.policy
        .conclude(
            &request,
            &d,
            Conclusion::Issued {
                certificate_serial: &serial,
            },
        )
        .await
        .unwrap();
    let d = w.policy.decide(&request).await.unwrap();
    let Outcome::AlreadyIssued {
        device_serial,
        certificate_serial,
        der,
    } = d.outcome
    else {
        panic!("{d}")
    };
    assert_eq!(
        (device_serial.as_str(), certificate_serial.as_str()),
        ("NEW-1", serial.as_str())
    );
    assert_eq!(
        CertificateInfo::from_der(&der).unwrap().serial,
        issued.serial
    );
    let log = w.store.decisions(Some("NEW-1"), 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0].decision.certificate_serial.as_deref(),
        Some(serial.as_str())
    );
    assert_eq!(log[0].decision.approval_id, Some(approval));
    assert!(log[0].decision.checks.iter().any(|c| c.stage == "approval"));

    // Devices that do not match the expression need no approval; rejection is final.
    let other = csr(&key, &[("serialNumber", "SN-7")], vec![]);
    let d = w
        .policy
        .decide(&EnrollmentRequest {
            csr: &other,
            ..request
        })
        .await
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::Issue { approval: None, .. }),
        "{d}"
    );
    let key2 = KeyAlgorithm::P256.generate().unwrap();
    let c2 = csr(&key2, &[("serialNumber", "NEW-2")], vec![]);
    let second = EnrollmentRequest {
        csr: &c2,
        ..request
    };
    let Outcome::Pending { approval, .. } = w.policy.decide(&second).await.unwrap().outcome else {
        panic!()
    };
    w.store
        .decide_approval(
            approval,
            false,
            "bob",
            Some("unknown batch"),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let (rule, reason) = denied_by(&w.policy.decide(&second).await.unwrap());
    assert_eq!(rule, "manual-approval");
    assert!(reason.contains("unknown batch"), "{reason}");
}

#[tokio::test]
async fn a_one_time_secret_enrolls_only_its_own_device_once_and_never_renews() {
    let w = world();
    let key = KeyAlgorithm::P256.generate().unwrap();
    let secret = ClientIdentity::EnrollmentSecret {
        device_serial: "SN-7".into(),
        protocol: "cmp",
    };
    let own = csr(&key, &[("serialNumber", "SN-7")], vec![]);
    let d = w.decide(Operation::Enroll, &secret, &own).await;
    match &d.outcome {
        Outcome::Issue { device_serial, .. } => assert_eq!(device_serial, "SN-7"),
        other => panic!("expected an issue, got {other:?}"),
    }
    assert!(d.checks.iter().all(|c| c.passed), "{d}");
    // The serial comes from the secret, not the CSR: another subject is refused.
    let other = csr(&key, &[("serialNumber", "SN-8")], vec![]);
    let (rule, reason) = denied_by(&w.decide(Operation::Enroll, &secret, &other).await);
    assert_eq!(rule, "subject");
    assert!(reason.contains("SN-7"), "{reason}");
    let (rule, reason) = denied_by(&w.decide(Operation::Reenroll, &secret, &own).await);
    assert_eq!(rule, "authentication");
    assert!(reason.contains("first enrollment"), "{reason}");
    let (rule, _) = denied_by(&w.decide(Operation::Birth, &secret, &own).await);
    assert_eq!(rule, "authentication");
    assert_eq!(secret.actor(), "device:SN-7");
}

#[tokio::test]
async fn a_message_protected_request_needs_no_tls_binding() {
    let mut w = world();
    w.profile.require_channel_binding = true;
    let key = KeyAlgorithm::P256.generate().unwrap();
    let c = csr(&key, &[("serialNumber", "SN-1")], vec![]);
    let client = account(None);
    for (binding, ok) in [
        (ChannelBinding::Message, true),
        (ChannelBinding::Unavailable, false),
    ] {
        let d = w
            .policy
            .decide(&EnrollmentRequest {
                operation: Operation::Enroll,
                label: None,
                profile: &w.profile,
                client: &client,
                csr: &c,
                channel_binding: &binding,
                reissue: false,
                admitted: None,
            })
            .await
            .unwrap();
        assert_eq!(matches!(d.outcome, Outcome::Issue { .. }), ok, "{d}");
    }
}
