//! Conformance tests of revocations and lifecycle changes that land while renewals of the
//! same device are being recorded (on PostgreSQL, inside a group commit), on every backend.

use crate::conformance::{at, certificate};
use crate::*;

const DEVICES: usize = 12;
const RENEWALS: usize = 6;

/// A renewal of `device`, authenticated by (and replacing) its certificate `current`.
fn renewal(device: &str, current: &str, n: usize) -> NewCertificate {
    let mut c = certificate(
        &format!("{current}-r{n}"),
        device,
        CertificateKind::Operational,
        900,
    );
    c.authenticated_by = Some(current.into());
    c.replaces = Some(current.into());
    c.issued_at = at(5);
    c
}

/// Renewals race a decommission (even devices) or the revocation of the certificate that
/// authenticates them (odd devices), all started at once. Each renewal is recorded or
/// refused as a whole; a decommissioned device is left with no live certificate, whichever
/// committed first; a refused renewal leaves no trace.
pub(crate) async fn revocations_racing_renewals_leave_no_live_certificate_behind<S>(store: S)
where
    S: CertificateLedger + InventoryReader + RevocationStore + Clone + 'static,
{
    for d in 0..DEVICES {
        store
            .record_issuance(certificate(
                &format!("c{d:02}"),
                &format!("SN-RACE-{d}"),
                CertificateKind::Operational,
                900,
            ))
            .await
            .unwrap();
    }
    let mut renewals = Vec::new();
    let mut changes = Vec::new();
    for n in 0..RENEWALS {
        for d in 0..DEVICES {
            let (device, current) = (format!("SN-RACE-{d}"), format!("c{d:02}"));
            let s = store.clone();
            let c = renewal(&device, &current, n);
            let serial = c.serial.clone();
            renewals.push(tokio::spawn(async move {
                (d, serial, s.record_issuance(c).await)
            }));
            // The change starts in the middle of its device's renewals.
            if n == RENEWALS / 2 {
                let s = store.clone();
                changes.push(tokio::spawn(async move {
                    if d % 2 == 0 {
                        let decommission = LifecycleChange::Decommission {
                            reason: "cessationOfOperation".into(),
                        };
                        s.change_lifecycle(&device, decommission, at(6))
                            .await
                            .map(|_| ())
                    } else {
                        s.revoke(&current, "keyCompromise", at(6)).await.map(|_| ())
                    }
                }));
            }
        }
    }
    for change in changes {
        change.await.unwrap().unwrap();
    }
    let mut recorded = vec![Vec::new(); DEVICES];
    for task in renewals {
        let (d, serial, result) = task.await.unwrap();
        let record = store.certificate(&serial).await.unwrap();
        match result {
            Ok(()) => {
                assert!(record.is_some(), "{serial} was recorded but is not there");
                recorded[d].push(serial);
            }
            Err(StoreError::Refused(reason)) => {
                assert!(
                    reason.contains("(changed while the request was decided)"),
                    "{serial}: {reason}"
                );
                assert!(record.is_none(), "refused {serial} left a certificate");
            }
            Err(other) => panic!("{serial}: neither recorded nor refused: {other:?}"),
        }
    }
    for (d, recorded) in recorded.iter().enumerate() {
        let device = format!("SN-RACE-{d}");
        let certificates = store
            .certificates(&CertificateQuery {
                device_serial: Some(device.clone()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(certificates.len(), recorded.len() + 1, "{device}");
        let current = format!("c{d:02}");
        let status = |serial: &str| {
            certificates
                .iter()
                .find(|c| c.serial == serial)
                .map(|c| c.status)
                .unwrap()
        };
        assert_eq!(status(&current), CertificateStatus::Revoked, "{device}");
        if d % 2 == 0 {
            assert_eq!(
                store.device(&device).await.unwrap().unwrap().status,
                DeviceStatus::Decommissioned
            );
            for c in &certificates {
                assert_eq!(
                    c.status,
                    CertificateStatus::Revoked,
                    "{} of {device}",
                    c.serial
                );
            }
        } else {
            // Recorded before the revocation committed: they stay valid.
            for serial in recorded {
                assert_eq!(status(serial), CertificateStatus::Valid, "{serial}");
            }
        }
    }
}
