//! The pipeline against a real SQLite store, a real RA policy and a real CA.

use std::sync::Arc;

use fleetca_ca::CertificateAuthority;
use fleetca_pki::*;
use fleetca_ra::{ChannelBinding, ClientIdentity, Operation, Policy};
use fleetca_store::{CertificateQuery, InventoryReader, SqliteStore};
use time::OffsetDateTime;

use crate::{admit, enroll, EnrollError, Enrolled, EnrollmentInput, RequestOptions};

struct World {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    ca: CertificateAuthority,
    ra: Policy,
    profile: CertificateProfile,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).unwrap();
    let now = OffsetDateTime::now_utc();
    let params = HierarchyParams::new("Test");
    let root_key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let root_cert = CaCertificate::root(root_key.as_ref(), &params, now).unwrap();
    let root = Issuer::new("root", root_cert.der, root_key).unwrap();
    let key = Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let cert =
        CaCertificate::issuing(&root, CaRole::Operational, key.as_ref(), &params, now).unwrap();
    let operational = Issuer::new("operational", cert.der, key).unwrap();
    let ca = CertificateAuthority::new(
        [operational],
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    );
    let ra = Policy::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    );
    World {
        _dir: dir,
        store,
        ca,
        ra,
        profile: CertificateProfile::default_operational(),
    }
}

fn csr(key: &SoftwareKey, cn: &str, serial: &str) -> CertificateRequest {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
    CertificateRequest::from_der(&key.certificate_request(dn, vec![], &[]).unwrap()).unwrap()
}

impl World {
    /// A device holding a recorded operational certificate, as the client it authenticates.
    async fn device(&self, serial: &str) -> ClientIdentity {
        let key = KeyAlgorithm::P256.generate().unwrap();
        let issued = self
            .ca
            .issue(
                &self.profile,
                IssuanceOrder {
                    device_serial: serial.into(),
                    spki_der: key.public_key_der(),
                },
                None,
            )
            .await
            .unwrap();
        ClientIdentity::OperationalCertificate {
            certificate: CertificateInfo::from_der(&issued.der).unwrap(),
        }
    }

    async fn reenroll(
        &self,
        client: &ClientIdentity,
        csr: &CertificateRequest,
        options: RequestOptions,
    ) -> Result<Enrolled, EnrollError> {
        let admitted = admit(&self.ra, client).await?;
        enroll(
            &self.ra,
            &self.ca,
            EnrollmentInput {
                client,
                admitted: admitted.as_ref(),
                operation: Operation::Reenroll,
                label: None,
                profile: &self.profile,
                csr,
                channel_binding: &ChannelBinding::Unavailable,
                options,
                cmp_transaction: None,
            },
        )
        .await
    }
}

#[tokio::test]
async fn an_issued_certificate_is_in_the_inventory_when_returned() {
    let w = world();
    let client = w.device("SN-1").await;
    let key = KeyAlgorithm::P256.generate().unwrap();
    let enrolled = w
        .reenroll(
            &client,
            &csr(&key, "SN-1", "SN-1"),
            RequestOptions::default(),
        )
        .await
        .unwrap();
    let Enrolled::Issued {
        certificate,
        certificate_serial,
        device_serial,
        generated_key,
        resent,
        reissue,
    } = enrolled
    else {
        panic!("not issued: {enrolled:?}");
    };
    assert_eq!(device_serial, "SN-1");
    assert!(generated_key.is_none() && !resent && !reissue);
    let info = CertificateInfo::from_der(&certificate).unwrap();
    let record = w
        .store
        .certificate(&info.serial.to_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.der, certificate);
    assert_eq!(record.serial, certificate_serial);
}

#[tokio::test]
async fn a_denied_request_names_the_rule_and_issues_nothing() {
    let w = world();
    let client = w.device("SN-1").await;
    let key = KeyAlgorithm::P256.generate().unwrap();
    let refused = w
        .reenroll(
            &client,
            &csr(&key, "SN-2", "SN-1"),
            RequestOptions::default(),
        )
        .await
        .unwrap_err();
    let EnrollError::Refused { rule, reason } = refused else {
        panic!("not refused: {refused:?}");
    };
    assert_eq!(rule, "subject");
    assert!(reason.contains("4.2.2"), "{reason}");
    let query = CertificateQuery {
        device_serial: Some("SN-1".into()),
        ..CertificateQuery::default()
    };
    // Only the certificate the device already had.
    assert_eq!(w.store.certificates(&query).await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_keygen_certifies_the_key_it_returns() {
    let w = world();
    let client = w.device("SN-1").await;
    let key = KeyAlgorithm::P256.generate().unwrap();
    let options = RequestOptions {
        server_keygen: true,
        ..RequestOptions::default()
    };
    let enrolled = w
        .reenroll(&client, &csr(&key, "SN-1", "SN-1"), options)
        .await
        .unwrap();
    let Enrolled::Issued {
        certificate,
        generated_key: Some(generated),
        ..
    } = enrolled
    else {
        panic!("no generated key: {enrolled:?}");
    };
    let info = CertificateInfo::from_der(&certificate).unwrap();
    assert_eq!(info.spki_der, generated.public_key_der());
    assert_ne!(generated.public_key_der(), key.public_key_der());
}
