//! The fleet view: devices with what was recorded about them, filtered and paged.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::DeviceStatus;
use crate::StoreError;

/// A device as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Serial number (the identity).
    pub serial_number: String,
    /// Lifecycle state.
    pub status: DeviceStatus,
    /// The profile of its first operational enrollment, if any.
    pub profile: Option<String>,
    /// The CA its birth certificate came from (`manufacturing` or an imported CA's name).
    pub birth_issuer: Option<String>,
    /// The factory station that obtained its birth certificate, if one did.
    pub station: Option<String>,
    /// Model recorded at provisioning.
    pub model: Option<String>,
    /// Batch recorded at provisioning.
    pub batch: Option<String>,
    /// First seen.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Which devices to list: every filter given must match. Ordered by serial number;
/// `after` continues a listing after that serial (keyset paging, stable under inserts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only devices in this state.
    pub status: Option<DeviceStatus>,
    /// Only devices of this profile.
    pub profile: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this batch.
    pub batch: Option<String>,
    /// Only devices provisioned by this station.
    pub station: Option<String>,
    /// Only serials starting with this text.
    pub serial_prefix: Option<String>,
    /// Only serials after this one.
    pub after: Option<String>,
    /// At most this many rows.
    pub limit: u32,
}

/// Reads the fleet.
#[async_trait]
pub trait FleetView: Send + Sync {
    /// Devices matching `query`, by serial number.
    async fn devices(&self, query: &DeviceQuery) -> Result<Vec<DeviceSummary>, StoreError>;
    /// One device's summary.
    async fn device_summary(&self, serial: &str) -> Result<Option<DeviceSummary>, StoreError>;
}

/// The columns a [`DeviceSummary`] is read from, in order.
pub(crate) const SUMMARY_COLUMNS: &str =
    "serial_number, status, profile, birth_issuer, station, model, batch, created_at, updated_at";

/// Backend-generic tests of [`FleetView`]; every backend runs them unchanged.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::conformance::certificate;
    use crate::*;

    pub(crate) async fn devices_are_listed_by_filter_and_paged_by_serial<S>(store: S)
    where
        S: FleetView + CertificateLedger + RevocationStore + StationStore,
    {
        for name in ["line-1", "line-2"] {
            store
                .add_station(NewStation {
                    name: name.into(),
                    serial_pattern: ".*".into(),
                    range_from: None,
                    range_to: None,
                    quota: None,
                    valid_days: 30,
                    allow_reissue: false,
                    credential_serial: format!("{name}-cred"),
                    created_at: crate::conformance::at(0),
                })
                .await
                .unwrap();
        }
        for (i, (serial, station, model, batch)) in [
            ("SN-100", Some("line-1"), Some("m1"), Some("b1")),
            ("SN-101", Some("line-1"), Some("m2"), Some("b1")),
            ("SN-200", Some("line-2"), Some("m1"), Some("b2")),
            ("XY-1", None, None, None),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = certificate(&format!("{i:02x}"), serial, CertificateKind::Birth, 1000);
            c.birth = Some(BirthContext {
                station: station.map(str::to_string),
                model: model.map(str::to_string),
                batch: batch.map(str::to_string),
                ..BirthContext::default()
            });
            store.record_issuance(c).await.unwrap();
        }
        store
            .record_issuance(certificate(
                "10",
                "SN-101",
                CertificateKind::Operational,
                900,
            ))
            .await
            .unwrap();
        store
            .change_lifecycle(
                "SN-200",
                LifecycleChange::Suspend,
                crate::conformance::at(5),
            )
            .await
            .unwrap();
        let serials = |rows: Vec<DeviceSummary>| -> Vec<String> {
            rows.into_iter().map(|d| d.serial_number).collect()
        };
        let q = |f: &dyn Fn(&mut DeviceQuery)| {
            let mut q = DeviceQuery {
                limit: 100,
                ..DeviceQuery::default()
            };
            f(&mut q);
            q
        };
        let all = store.devices(&q(&|_| {})).await.unwrap();
        assert_eq!(serials(all.clone()), ["SN-100", "SN-101", "SN-200", "XY-1"]);
        let sn101 = all.iter().find(|d| d.serial_number == "SN-101").unwrap();
        assert_eq!(sn101.status, DeviceStatus::Active);
        assert_eq!(sn101.station.as_deref(), Some("line-1"));
        assert_eq!(sn101.model.as_deref(), Some("m2"));
        assert_eq!(sn101.batch.as_deref(), Some("b1"));
        assert_eq!(sn101.birth_issuer.as_deref(), Some("operational"));
        for (query, expected) in [
            (
                q(&|q| q.status = Some(DeviceStatus::Suspended)),
                vec!["SN-200"],
            ),
            (
                q(&|q| q.model = Some("m1".into())),
                vec!["SN-100", "SN-200"],
            ),
            (
                q(&|q| q.batch = Some("b1".into())),
                vec!["SN-100", "SN-101"],
            ),
            (q(&|q| q.station = Some("line-2".into())), vec!["SN-200"]),
            (
                q(&|q| q.serial_prefix = Some("SN-1".into())),
                vec!["SN-100", "SN-101"],
            ),
            // A prefix is text, not a pattern.
            (q(&|q| q.serial_prefix = Some("SN-%".into())), vec![]),
            (
                q(&|q| {
                    q.station = Some("line-1".into());
                    q.model = Some("m1".into());
                }),
                vec!["SN-100"],
            ),
            (
                q(&|q| {
                    q.after = Some("SN-101".into());
                    q.limit = 1;
                }),
                vec!["SN-200"],
            ),
        ] {
            assert_eq!(
                serials(store.devices(&query).await.unwrap()),
                expected,
                "{query:?}"
            );
        }
        assert_eq!(
            store
                .device_summary("SN-200")
                .await
                .unwrap()
                .unwrap()
                .status,
            DeviceStatus::Suspended
        );
        assert!(store.device_summary("SN-999").await.unwrap().is_none());
    }
}
