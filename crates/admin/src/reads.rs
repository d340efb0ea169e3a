//! Reading the fleet: devices (with their lineage), certificates, approval requests and
//! decisions, in keyset pages. Each checks the caller's role first.

use fleetca_pki::CertificateSerial;
use fleetca_store::{
    AlertFilter, ApprovalFilter, ApprovalState, CertificateFilter, CertificateKind,
    CertificateQuery, CertificateStatus, DeviceQuery, DeviceStatus, Store,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::cursor::{self, Key, Listing, Page};
use crate::views::{AlertView, ApprovalView, CertificateView, DecisionView, DeviceView};
use crate::{rfc3339, Actor, AdminError, Permission};

/// Parses an optional filter value with `FromStr`, naming the field when it is wrong.
pub(crate) fn parse_opt<T: std::str::FromStr>(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, AdminError>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| AdminError::field(field, format!("{field}: {e}")))
        })
        .transpose()
}

/// A certificate serial as typed (hex, colons allowed), normalized.
pub(crate) fn certificate_serial(serial: &str) -> Result<String, AdminError> {
    CertificateSerial::from_hex(serial)
        .map(|s| s.to_hex())
        .ok_or_else(|| {
            AdminError::Invalid(format!(
                "'{serial}' is not a certificate serial (hex, up to 20 bytes)"
            ))
        })
}

fn not_found(what: String) -> AdminError {
    AdminError::NotFound(what)
}

/// `GET /devices` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// `manufactured`, `active`, `suspended` or `decommissioned`.
    pub status: Option<String>,
    /// Profile of the first operational enrollment.
    pub profile: Option<String>,
    /// Serials starting with this text.
    pub serial_prefix: Option<String>,
    /// Model recorded at provisioning.
    pub model: Option<String>,
    /// Batch recorded at provisioning.
    pub batch: Option<String>,
    /// Factory station.
    pub station: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Devices by serial number.
pub async fn list_devices(
    store: &dyn Store,
    actor: &Actor,
    q: DeviceListQuery,
) -> Result<Page<DeviceView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let mut query = DeviceQuery {
        status: parse_opt::<DeviceStatus>("status", q.status.as_deref())?,
        profile: q.profile,
        model: q.model,
        batch: q.batch,
        station: q.station,
        serial_prefix: q.serial_prefix,
        after: None,
        limit: limit + 1,
    };
    let filters = format!("{query:?}");
    if let Some(c) = &q.cursor {
        match cursor::decode(Listing::Devices, &filters, c)? {
            Key::Text(after) => query.after = Some(after),
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        }
    }
    let rows = store.devices(&query).await?;
    Ok(cursor::page(
        rows,
        limit,
        Listing::Devices,
        &filters,
        |d| Key::Text(d.serial_number.clone()),
        |d| Some(DeviceView::from(d)),
    ))
}

/// One device in depth.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceDetail {
    /// The device.
    pub device: DeviceView,
    /// Its certificates, oldest first: birth, first operational, each renewal.
    pub certificates: Vec<CertificateView>,
    /// Its open escalations.
    pub open_escalations: Vec<AlertView>,
    /// Its newest 20 decisions, newest first, with every rule's result.
    pub decisions: Vec<DecisionView>,
    /// Until when it may re-enroll outside its window (an operator's override).
    pub reenroll_forced_until: Option<String>,
}

/// `certificates` (sorted birth first, then by issue time) with every renewal after the
/// certificate it replaces: issue times are whole seconds, and a renewal in the same second
/// as its predecessor must not come first.
fn lineage_order(
    mut rest: Vec<fleetca_store::CertificateRecord>,
) -> Vec<fleetca_store::CertificateRecord> {
    let mut ordered = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let waiting = |serial: &String| rest.iter().any(|o| &o.serial == serial);
        let next = rest
            .iter()
            .position(|c| c.replaces.as_ref().is_none_or(|r| !waiting(r)))
            // A cycle of `replaces` cannot be recorded; should one appear, keep the order.
            .unwrap_or(0);
        ordered.push(rest.remove(next));
    }
    ordered
}

/// One device with its certificate lineage, open escalations and last decisions.
pub async fn device_detail(
    store: &dyn Store,
    actor: &Actor,
    serial: &str,
) -> Result<DeviceDetail, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let device = store
        .device_summary(serial)
        .await?
        .ok_or_else(|| not_found(format!("device '{serial}'")))?;
    let mut certificates = store
        .certificates(&CertificateQuery {
            device_serial: Some(serial.to_string()),
            ..CertificateQuery::default()
        })
        .await?;
    certificates.sort_by(|a, b| {
        let birth_first = |k: CertificateKind| k != CertificateKind::Birth;
        (birth_first(a.kind), a.issued_at, &a.serial).cmp(&(
            birth_first(b.kind),
            b.issued_at,
            &b.serial,
        ))
    });
    let certificates = lineage_order(certificates);
    let open_escalations = store
        .alert_page(&AlertFilter {
            open: Some(true),
            device_serial: Some(serial.to_string()),
            limit: 100,
            ..AlertFilter::default()
        })
        .await?;
    let decisions = store.decisions(Some(serial), 20).await?;
    let forced = store.reenroll_forced_until(serial).await?;
    Ok(DeviceDetail {
        device: device.into(),
        certificates: certificates.iter().map(CertificateView::from).collect(),
        open_escalations: open_escalations.into_iter().map(AlertView::from).collect(),
        decisions: decisions.into_iter().map(DecisionView::from).collect(),
        reenroll_forced_until: forced
            .filter(|t| *t > OffsetDateTime::now_utc())
            .map(rfc3339),
    })
}

/// `GET /certificates` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CertificateListQuery {
    /// `valid`, `revoked` or `on-hold`.
    pub status: Option<String>,
    /// `birth` or `operational`.
    pub kind: Option<String>,
    /// Issuing CA.
    pub issuer: Option<String>,
    /// Profile.
    pub profile: Option<String>,
    /// Device serial number.
    pub device: Option<String>,
    /// Only unexpired certificates expiring within this time (`30d`, `12h`).
    pub expiring_within: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Pages through `filter` (whose `after` and `limit` are set here).
pub(crate) async fn certificate_page(
    store: &dyn Store,
    mut filter: CertificateFilter,
    limit: u32,
    listing: Listing,
    cursor: Option<&str>,
) -> Result<(Vec<fleetca_store::CertificateRecord>, Option<String>), AdminError> {
    filter.limit = limit + 1;
    // The expiry window moves with the clock: the cursor binds its width, not its ends.
    let width = filter
        .not_after_from
        .zip(filter.not_after_before)
        .map(|(from, before)| before - from);
    let canonical = CertificateFilter {
        not_after_from: None,
        not_after_before: None,
        ..filter.clone()
    };
    let filters = format!("{canonical:?} {width:?}");
    if let Some(c) = cursor {
        match cursor::decode(listing, &filters, c)? {
            Key::TimeText(at, serial) => {
                let at = OffsetDateTime::from_unix_timestamp_nanos(at)
                    .map_err(|_| AdminError::field("cursor", "invalid cursor: malformed key"))?;
                filter.after = Some((at, serial));
            }
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        }
    }
    let rows = store.certificate_page(&filter).await?;
    let page = cursor::page(
        rows,
        limit,
        listing,
        &filters,
        |c| Key::TimeText(c.not_after.unix_timestamp_nanos(), c.serial.clone()),
        Some,
    );
    Ok((page.items, page.next_cursor))
}

/// Parses a duration like `30d`, naming the field when it is wrong.
pub(crate) fn duration(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<time::Duration>, AdminError> {
    Ok(parse_opt::<fleetca_pki::HumanDuration>(field, text)?.map(|d| d.to_time()))
}

/// Certificates by (not_after, serial), soonest expiry first.
pub async fn list_certificates(
    store: &dyn Store,
    actor: &Actor,
    q: CertificateListQuery,
) -> Result<Page<CertificateView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let within = duration("expiring_within", q.expiring_within.as_deref())?;
    let now = OffsetDateTime::now_utc();
    let filter = CertificateFilter {
        status: parse_opt::<CertificateStatus>("status", q.status.as_deref())?,
        kind: parse_opt::<CertificateKind>("kind", q.kind.as_deref())?,
        issuer: q.issuer,
        profile: q.profile,
        device_serial: q.device,
        not_after_from: within.map(|_| now),
        not_after_before: within.map(|w| now + w),
        ..CertificateFilter::default()
    };
    let (rows, next_cursor) = certificate_page(
        store,
        filter,
        limit,
        Listing::Certificates,
        q.cursor.as_deref(),
    )
    .await?;
    Ok(Page {
        items: rows.iter().map(CertificateView::from).collect(),
        next_cursor,
    })
}

/// One certificate: its view and its DER body.
pub async fn certificate(
    store: &dyn Store,
    actor: &Actor,
    serial: &str,
) -> Result<(CertificateView, Vec<u8>), AdminError> {
    actor.require(Permission::ReadFleet)?;
    let serial = certificate_serial(serial)?;
    let record = store
        .certificate(&serial)
        .await?
        .ok_or_else(|| not_found(format!("certificate {serial}")))?;
    Ok((CertificateView::from(&record), record.der))
}

/// `GET /approvals` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalListQuery {
    /// `pending`, `approved`, `rejected` or `issued`.
    pub state: Option<String>,
    /// Device serial number.
    pub device: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Approval requests, oldest first.
pub async fn list_approvals(
    store: &dyn Store,
    actor: &Actor,
    q: ApprovalListQuery,
) -> Result<Page<ApprovalView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(ApprovalState::parse(s).ok_or_else(|| {
            AdminError::field(
                "state",
                format!("state: unknown state '{s}' (pending, approved, rejected or issued)"),
            )
        })?),
    };
    let mut filter = ApprovalFilter {
        state,
        device_serial: q.device,
        after: None,
        limit: limit + 1,
    };
    let filters = format!("{filter:?}");
    if let Some(c) = &q.cursor {
        match cursor::decode(Listing::Approvals, &filters, c)? {
            Key::Id(id) => filter.after = Some(id),
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        }
    }
    let rows = store.approval_page(&filter).await?;
    Ok(cursor::page(
        rows,
        limit,
        Listing::Approvals,
        &filters,
        |a| Key::Id(a.id),
        |a| Some(ApprovalView::from(a)),
    ))
}

/// One approval request and the decisions that reference it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalDetail {
    /// The request.
    pub approval: ApprovalView,
    /// The decisions that opened or used it, newest first.
    pub decisions: Vec<DecisionView>,
}

/// One approval request.
pub async fn approval(
    store: &dyn Store,
    actor: &Actor,
    id: i64,
) -> Result<ApprovalDetail, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let approval = store
        .approval(id)
        .await?
        .ok_or_else(|| not_found(format!("approval request {id}")))?;
    let decisions = store
        .decision_page(Some(&approval.request.device_serial), None, 200)
        .await?
        .into_iter()
        .filter(|d| d.decision.approval_id == Some(id))
        .map(DecisionView::from)
        .collect();
    Ok(ApprovalDetail {
        approval: approval.into(),
        decisions,
    })
}

/// `GET /decisions` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecisionListQuery {
    /// Device serial number.
    pub device: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Decisions, newest first, with every rule's result.
pub async fn list_decisions(
    store: &dyn Store,
    actor: &Actor,
    q: DecisionListQuery,
) -> Result<Page<DecisionView>, AdminError> {
    actor.require(Permission::ReadFleet)?;
    let limit = cursor::limit(q.limit)?;
    let filters = format!("device={:?}", q.device);
    let before = match &q.cursor {
        None => None,
        Some(c) => match cursor::decode(Listing::Decisions, &filters, c)? {
            Key::Id(id) => Some(id),
            _ => return Err(AdminError::field("cursor", "invalid cursor: malformed key")),
        },
    };
    let rows = store
        .decision_page(q.device.as_deref(), before, limit + 1)
        .await?;
    Ok(cursor::page(
        rows,
        limit,
        Listing::Decisions,
        &filters,
        |d| Key::Id(d.id),
        |d| Some(DecisionView::from(d)),
    ))
}

#[cfg(test)]
mod lineage_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use fleetca_store::{CertificateKind, CertificateRecord, CertificateStatus};
    use time::OffsetDateTime;

    fn cert(serial: &str, kind: CertificateKind, replaces: Option<&str>) -> CertificateRecord {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        CertificateRecord {
            serial: serial.into(),
            device_serial: "SN-1".into(),
            issuer: "operational".into(),
            profile: "operational".into(),
            kind,
            not_before: at,
            not_after: at,
            spki_sha256: String::new(),
            der: Vec::new(),
            status: CertificateStatus::Valid,
            replaces: replaces.map(str::to_string),
            replaced_by: None,
            issued_at: at,
            revoked_at: None,
            revocation_reason: None,
        }
    }

    /// Issued in the same second, the renewal's random serial sorted it first.
    #[test]
    fn a_renewal_comes_after_the_certificate_it_replaces() {
        let sorted = vec![
            cert("01", CertificateKind::Birth, None),
            cert("0a", CertificateKind::Operational, Some("ff")),
            cert("0b", CertificateKind::Operational, Some("0a")),
            cert("ff", CertificateKind::Operational, None),
        ];
        let serials: Vec<String> = super::lineage_order(sorted)
            .into_iter()
            .map(|c| c.serial)
            .collect();
        assert_eq!(serials, ["01", "ff", "0a", "0b"]);
    }
}
