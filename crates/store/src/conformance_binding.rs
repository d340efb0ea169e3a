//! Conformance tests of device bindings (issue 13): what the recording commit checks and
//! records about a device's identity, on every backend.

use crate::conformance::{at, certificate};
use crate::*;

fn enrollment(serial: &str, device: &str, binding: DeviceBinding) -> NewCertificate {
    let mut c = certificate(serial, device, CertificateKind::Operational, 900);
    c.profile = "short".into();
    c.binding = binding;
    c
}

fn refused(result: Result<(), StoreError>, needle: &str) {
    match result {
        Err(StoreError::Refused(reason)) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected a refusal naming '{needle}', got {other:?}"),
    }
}

/// A new-device-only issuance is refused once the device is known; of several at once for
/// a new device, one is recorded.
pub(crate) async fn new_device_issuances_record_one_device_once<S>(store: S)
where
    S: CertificateLedger + InventoryReader + Clone + 'static,
{
    let only_new = DeviceBinding {
        new_device: true,
        ..Default::default()
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            let c = enrollment(&format!("a{i}"), "SN-NEW", only_new.clone());
            tokio::spawn(async move { s.record_issuance(c).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Refused(r)) => assert!(r.contains("already in the inventory"), "{r}"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    refused(
        store
            .record_issuance(enrollment("b1", "SN-NEW", only_new))
            .await,
        "already in the inventory",
    );
    // Without the restriction the known device is issued (other rules permitting).
    store
        .record_issuance(enrollment("b2", "SN-NEW", DeviceBinding::default()))
        .await
        .unwrap();
}

/// The first operational certificate binds the device to its profile; a later one under
/// a profile that does not accept it is refused. The birth certificate's issuer is
/// recorded and another issuer is refused. Standing reports both.
pub(crate) async fn devices_are_bound_to_profile_and_birth_issuer<S>(store: S)
where
    S: CertificateLedger + InventoryReader,
{
    let mut birth = certificate("b1", "SN-1", CertificateKind::Birth, 9000);
    birth.issuer = "manufacturing".into();
    store.record_issuance(birth).await.unwrap();
    let s = store.standing("SN-1", None).await.unwrap();
    assert_eq!(s.birth_issuer.as_deref(), Some("manufacturing"));
    assert_eq!(s.device_profile, None);

    let bind = |profile: &str, accepts: &[&str], issuer: &str| DeviceBinding {
        profile: Some(ProfileBinding {
            profile: profile.into(),
            accepts: accepts.iter().map(|p| p.to_string()).collect(),
        }),
        birth_issuer: Some(issuer.into()),
        ..Default::default()
    };
    // Another CA's birth certificate for the device: refused.
    refused(
        store
            .record_issuance(enrollment(
                "o0",
                "SN-1",
                bind("short", &["short"], "vendor"),
            ))
            .await,
        "born under CA 'manufacturing'",
    );
    store
        .record_issuance(enrollment(
            "o1",
            "SN-1",
            bind("short", &["short"], "manufacturing"),
        ))
        .await
        .unwrap();
    let s = store.standing("SN-1", None).await.unwrap();
    assert_eq!(s.device_profile.as_deref(), Some("short"));
    let mut long = enrollment("o2", "SN-1", bind("long", &["long"], "manufacturing"));
    long.profile = "long".into();
    refused(
        store.record_issuance(long.clone()).await,
        "bound to profile 'short'",
    );
    long.binding = bind("long", &["long", "short"], "manufacturing");
    store.record_issuance(long).await.unwrap();
    // The binding stays that of the first enrollment.
    let s = store.standing("SN-1", None).await.unwrap();
    assert_eq!(s.device_profile.as_deref(), Some("short"));

    // A birth certificate from another CA for the device is refused too.
    let mut other = certificate("b2", "SN-1", CertificateKind::Birth, 9000);
    other.issuer = "vendor".into();
    refused(store.record_issuance(other).await, "born under CA");
}

/// A keyCompromise revocation stays pending until an operational certificate is issued
/// after it; other reasons do not count.
pub(crate) async fn key_compromise_is_pending_until_a_new_issuance<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore,
{
    store
        .record_issuance(certificate("c1", "SN-K", CertificateKind::Operational, 900))
        .await
        .unwrap();
    assert!(!store.key_compromise_pending("SN-K").await.unwrap());
    store.revoke("c1", "superseded", at(5)).await.unwrap();
    assert!(!store.key_compromise_pending("SN-K").await.unwrap());
    let mut c2 = certificate("c2", "SN-K", CertificateKind::Operational, 900);
    c2.issued_at = at(10);
    store.record_issuance(c2).await.unwrap();
    store.revoke("c2", "keyCompromise", at(20)).await.unwrap();
    assert!(store.key_compromise_pending("SN-K").await.unwrap());
    assert!(!store.key_compromise_pending("SN-OTHER").await.unwrap());
    let mut c3 = certificate("c3", "SN-K", CertificateKind::Operational, 900);
    c3.issued_at = at(30);
    store.record_issuance(c3).await.unwrap();
    assert!(!store.key_compromise_pending("SN-K").await.unwrap());
}

/// Manufacturer scopes are recorded and replaced by name.
pub(crate) async fn manufacturer_scopes_round_trip<S>(store: S)
where
    S: InventoryReader + StationStore,
{
    assert_eq!(store.manufacturer("acme").await.unwrap(), None);
    let m = ManufacturerRecord {
        name: "acme".into(),
        serial_pattern: Some("AC-[0-9]+".into()),
        added_at: at(1),
    };
    store.set_manufacturer(m.clone()).await.unwrap();
    assert_eq!(store.manufacturer("acme").await.unwrap(), Some(m));
    let unscoped = ManufacturerRecord {
        name: "acme".into(),
        serial_pattern: None,
        added_at: at(2),
    };
    store.set_manufacturer(unscoped.clone()).await.unwrap();
    assert_eq!(store.manufacturer("acme").await.unwrap(), Some(unscoped));
}
