//! Devices (list and one in depth), certificates and approval requests.

use askama::Template;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::ConsoleUser;
use super::charts::{self, LineageBar};
use super::format::{badge, when, When};
use super::render::{self, given, html, Chrome};
use super::State;
use crate::{
    ApprovalListQuery, AuditQuery, CertificateListQuery, DeviceListQuery, Permission,
    RuleResultView,
};

/// A path segment, percent-encoded (serials are the device's own text).
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The link to the next page: the filters as given and the cursor.
fn next_link(
    path: &str,
    filters: &[(&str, &Option<String>)],
    cursor: Option<String>,
) -> Option<String> {
    let cursor = cursor?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (name, value) in filters {
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    q.append_pair("cursor", &cursor);
    Some(format!("{path}?{}", q.finish()))
}

pub(crate) struct DeviceRow {
    pub(crate) serial: String,
    pub(crate) href: String,
    pub(crate) status: String,
    pub(crate) badge: &'static str,
    pub(crate) profile: String,
    pub(crate) model: String,
    pub(crate) batch: String,
    pub(crate) station: String,
    pub(crate) updated: When,
}

#[derive(Template)]
#[template(path = "console/devices.html")]
struct DevicesPage {
    chrome: Option<Chrome>,
    q: DevicesQuery,
    rows: Vec<DeviceRow>,
    next: Option<String>,
    paged: bool,
}

/// `GET /devices` query: the filters of the search form (empty fields mean "any").
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct DevicesQuery {
    serial_prefix: Option<String>,
    status: Option<String>,
    profile: Option<String>,
    model: Option<String>,
    batch: Option<String>,
    station: Option<String>,
    cursor: Option<String>,
}

impl DevicesQuery {
    fn text(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("")
    }
    fn serial_prefix(&self) -> &str {
        Self::text(&self.serial_prefix)
    }
    fn profile(&self) -> &str {
        Self::text(&self.profile)
    }
    fn model(&self) -> &str {
        Self::text(&self.model)
    }
    fn batch(&self) -> &str {
        Self::text(&self.batch)
    }
    fn station(&self) -> &str {
        Self::text(&self.station)
    }
    fn status_is(&self, s: &str) -> bool {
        self.status.as_deref() == Some(s)
    }
}

/// `GET /devices`: search by serial prefix and filters, a page at a time.
pub(crate) async fn devices(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<DevicesQuery>,
) -> Response {
    let q = DevicesQuery {
        serial_prefix: given(q.serial_prefix),
        status: given(q.status),
        profile: given(q.profile),
        model: given(q.model),
        batch: given(q.batch),
        station: given(q.station),
        cursor: given(q.cursor),
    };
    let page = crate::list_devices(
        console.api.store.as_ref(),
        user.actor(),
        DeviceListQuery {
            status: q.status.clone(),
            profile: q.profile.clone(),
            serial_prefix: q.serial_prefix.clone(),
            model: q.model.clone(),
            batch: q.batch.clone(),
            station: q.station.clone(),
            limit: None,
            cursor: q.cursor.clone(),
        },
    )
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return render::admin_error(e, Some(&user)),
    };
    let now = OffsetDateTime::now_utc();
    let next = next_link(
        "/devices",
        &[
            ("serial_prefix", &q.serial_prefix),
            ("status", &q.status),
            ("profile", &q.profile),
            ("model", &q.model),
            ("batch", &q.batch),
            ("station", &q.station),
        ],
        page.next_cursor,
    );
    let rows = page
        .items
        .into_iter()
        .map(|d| DeviceRow {
            href: format!("/devices/{}", segment(&d.serial_number)),
            badge: badge(&d.status),
            updated: when(&d.updated_at, now),
            serial: d.serial_number,
            status: d.status,
            profile: d.profile.unwrap_or_default(),
            model: d.model.unwrap_or_default(),
            batch: d.batch.unwrap_or_default(),
            station: d.station.unwrap_or_default(),
        })
        .collect();
    html(
        StatusCode::OK,
        &DevicesPage {
            chrome: user.chrome("devices"),
            paged: q.cursor.is_some(),
            q,
            rows,
            next,
        },
    )
}

pub(crate) struct CertificateRow {
    pub(crate) serial: String,
    pub(crate) device: String,
    pub(crate) device_href: String,
    pub(crate) kind: String,
    pub(crate) profile: String,
    pub(crate) not_before: When,
    pub(crate) not_after: When,
    pub(crate) status: String,
    pub(crate) badge: &'static str,
    pub(crate) revoked: Option<When>,
    pub(crate) revocation_reason: String,
    pub(crate) revocable: bool,
}

fn certificate_row(c: crate::CertificateView, now: OffsetDateTime) -> CertificateRow {
    CertificateRow {
        device_href: format!("/devices/{}", segment(&c.device)),
        not_before: when(&c.not_before, now),
        not_after: when(&c.not_after, now),
        badge: badge(&c.status),
        revoked: c.revoked_at.as_deref().map(|r| when(r, now)),
        revocation_reason: c.revocation_reason.unwrap_or_default(),
        revocable: c.status == "valid" || c.status == "on-hold",
        serial: c.serial,
        device: c.device,
        kind: c.kind,
        profile: c.profile,
        status: c.status,
    }
}

pub(crate) struct DecisionRow {
    pub(crate) id: i64,
    pub(crate) at: When,
    pub(crate) operation: String,
    pub(crate) profile: String,
    pub(crate) outcome: String,
    pub(crate) badge: &'static str,
    pub(crate) rule: String,
    pub(crate) reason: String,
    pub(crate) checks: Vec<RuleResultView>,
}

pub(crate) fn decision_row(d: crate::DecisionView, now: OffsetDateTime) -> DecisionRow {
    DecisionRow {
        id: d.id,
        at: when(&d.at, now),
        badge: badge(&d.outcome),
        operation: d.operation,
        profile: d.profile,
        outcome: d.outcome,
        rule: d.rule.unwrap_or_default(),
        reason: d.reason.unwrap_or_default(),
        checks: d.checks,
    }
}

pub(crate) struct AuditRow {
    pub(crate) id: i64,
    pub(crate) at: When,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) subject: String,
    pub(crate) outcome: String,
    pub(crate) badge: &'static str,
    pub(crate) detail: String,
}

pub(crate) fn audit_row(a: crate::AuditView, now: OffsetDateTime) -> AuditRow {
    AuditRow {
        id: a.id,
        at: when(&a.at, now),
        badge: badge(&a.outcome),
        actor: a.actor,
        action: a.action,
        subject: a.subject,
        outcome: a.outcome,
        detail: a.detail,
    }
}

pub(crate) struct AlertRow {
    pub(crate) kind: String,
    pub(crate) tier: String,
    pub(crate) device: String,
    pub(crate) device_href: String,
    pub(crate) opened: When,
    pub(crate) state: String,
    pub(crate) badge: &'static str,
    pub(crate) not_after: Option<When>,
    pub(crate) delivery: String,
}

pub(crate) fn alert_row(a: crate::AlertView, now: OffsetDateTime) -> AlertRow {
    AlertRow {
        device_href: format!("/devices/{}", segment(&a.device)),
        opened: when(&a.opened_at, now),
        badge: badge(&a.state),
        not_after: a.not_after.as_deref().map(|t| when(t, now)),
        delivery: a.delivery.unwrap_or_default(),
        kind: a.kind,
        tier: a.tier,
        device: a.device,
        state: a.state,
    }
}

#[derive(Template)]
#[template(path = "console/device.html")]
struct DevicePage {
    chrome: Option<Chrome>,
    serial: String,
    href: String,
    status: String,
    badge: &'static str,
    profile: String,
    model: String,
    batch: String,
    station: String,
    birth_issuer: String,
    created: When,
    updated: When,
    forced_until: Option<When>,
    lineage_svg: Option<String>,
    certificates: Vec<CertificateRow>,
    escalations: Vec<AlertRow>,
    decisions: Vec<DecisionRow>,
    /// `None` when the role may not read the audit trail.
    audit: Option<Vec<AuditRow>>,
    can_operate: bool,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    done: Option<String>,
}

/// The confirmation shown after an action (only known codes: the text is ours).
pub(crate) fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "suspend" => "Suspended: its valid certificates are on hold and it cannot enroll.",
        "resume" => "Resumed: its held certificates are valid again.",
        "decommission" => {
            "Decommissioned: its certificates are revoked; it can never enroll again."
        }
        "force-reenroll" => "It may now re-enroll outside its renewal window.",
        "revoke" => "Certificate revoked. CRLs and OCSP answer revoked from now on.",
        "approve" => "Approved: the device gets its certificate at its next poll.",
        "reject" => "Rejected: the device is told at its next poll.",
        "station" => "Station changed.",
        _ => return None,
    })
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `GET /devices/{serial}`: one device in depth.
pub(crate) async fn device(
    AxumState(console): State,
    user: ConsoleUser,
    Path(serial): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let store = console.api.store.as_ref();
    let detail = match crate::device_detail(store, user.actor(), &serial).await {
        Ok(d) => d,
        Err(e) => return render::admin_error(e, Some(&user)),
    };
    let can_audit = user.actor().role().allows(Permission::ReadAudit);
    let audit = if can_audit {
        match crate::audit_search(
            store,
            user.actor(),
            AuditQuery {
                subject: Some(serial.clone()),
                limit: Some(20),
                ..AuditQuery::default()
            },
        )
        .await
        {
            Ok(p) => Some(p.items),
            Err(e) => return render::admin_error(e, Some(&user)),
        }
    } else {
        None
    };
    let now = OffsetDateTime::now_utc();
    let mut operational = 0;
    let bars: Vec<LineageBar> = detail
        .certificates
        .iter()
        .filter_map(|c| {
            let birth = c.kind == "birth";
            let label = if birth {
                "birth".to_string()
            } else {
                operational += 1;
                if operational == 1 {
                    "operational".to_string()
                } else {
                    format!("renewal {}", operational - 1)
                }
            };
            Some(LineageBar {
                label,
                not_before: parse_time(&c.not_before)?,
                not_after: parse_time(&c.not_after)?,
                revoked_at: c.revoked_at.as_deref().and_then(parse_time),
                birth,
            })
        })
        .collect();
    let d = detail.device;
    let page = DevicePage {
        chrome: user.chrome("devices"),
        href: format!("/devices/{}", segment(&d.serial_number)),
        badge: badge(&d.status),
        created: when(&d.created_at, now),
        updated: when(&d.updated_at, now),
        forced_until: detail
            .reenroll_forced_until
            .as_deref()
            .map(|t| when(t, now)),
        lineage_svg: charts::lineage(&bars, now),
        certificates: detail
            .certificates
            .into_iter()
            .map(|c| certificate_row(c, now))
            .collect(),
        escalations: detail
            .open_escalations
            .into_iter()
            .map(|a| alert_row(a, now))
            .collect(),
        decisions: detail
            .decisions
            .into_iter()
            .map(|x| decision_row(x, now))
            .collect(),
        audit: audit.map(|a| a.into_iter().map(|x| audit_row(x, now)).collect()),
        can_operate: user.can_operate(),
        notice: notice(q.done.as_deref()),
        serial: d.serial_number,
        status: d.status,
        profile: d.profile.unwrap_or_default(),
        model: d.model.unwrap_or_default(),
        batch: d.batch.unwrap_or_default(),
        station: d.station.unwrap_or_default(),
        birth_issuer: d.birth_issuer.unwrap_or_default(),
    };
    html(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "console/certificates.html")]
struct CertificatesPage {
    chrome: Option<Chrome>,
    q: CertificatesQuery,
    rows: Vec<CertificateRow>,
    next: Option<String>,
    paged: bool,
    can_operate: bool,
    notice: Option<&'static str>,
}

/// `GET /certificates` query.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct CertificatesQuery {
    status: Option<String>,
    kind: Option<String>,
    profile: Option<String>,
    device: Option<String>,
    expiring_within: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

impl CertificatesQuery {
    fn profile(&self) -> &str {
        self.profile.as_deref().unwrap_or("")
    }
    fn device(&self) -> &str {
        self.device.as_deref().unwrap_or("")
    }
    fn expiring_within(&self) -> &str {
        self.expiring_within.as_deref().unwrap_or("")
    }
    fn status_is(&self, s: &str) -> bool {
        self.status.as_deref() == Some(s)
    }
    fn kind_is(&self, s: &str) -> bool {
        self.kind.as_deref() == Some(s)
    }
}

/// `GET /certificates`: filtered by status, kind, profile, device and "expiring within",
/// soonest expiry first.
pub(crate) async fn certificates(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<CertificatesQuery>,
) -> Response {
    let q = CertificatesQuery {
        status: given(q.status),
        kind: given(q.kind),
        profile: given(q.profile),
        device: given(q.device),
        expiring_within: given(q.expiring_within),
        cursor: given(q.cursor),
        done: q.done,
    };
    let page = crate::list_certificates(
        console.api.store.as_ref(),
        user.actor(),
        CertificateListQuery {
            status: q.status.clone(),
            kind: q.kind.clone(),
            issuer: None,
            profile: q.profile.clone(),
            device: q.device.clone(),
            expiring_within: q.expiring_within.clone(),
            limit: None,
            cursor: q.cursor.clone(),
        },
    )
    .await;
    let page = match page {
        Ok(p) => p,
        Err(e) => return render::admin_error(e, Some(&user)),
    };
    let now = OffsetDateTime::now_utc();
    let next = next_link(
        "/certificates",
        &[
            ("status", &q.status),
            ("kind", &q.kind),
            ("profile", &q.profile),
            ("device", &q.device),
            ("expiring_within", &q.expiring_within),
        ],
        page.next_cursor,
    );
    html(
        StatusCode::OK,
        &CertificatesPage {
            chrome: user.chrome("certificates"),
            rows: page
                .items
                .into_iter()
                .map(|c| certificate_row(c, now))
                .collect(),
            next,
            paged: q.cursor.is_some(),
            can_operate: user.can_operate(),
            notice: notice(q.done.as_deref()),
            q,
        },
    )
}

pub(crate) struct ApprovalCard {
    pub(crate) id: i64,
    pub(crate) device: String,
    pub(crate) device_href: String,
    pub(crate) profile: String,
    pub(crate) operation: String,
    pub(crate) client: String,
    pub(crate) reason: String,
    pub(crate) created: When,
    pub(crate) state: String,
    pub(crate) badge: &'static str,
    pub(crate) polls: u32,
    pub(crate) decided_by: String,
    pub(crate) decision_reason: String,
    /// The inventory record the RA saw (`None`: not in the inventory).
    pub(crate) inventory: Option<crate::DeviceView>,
    /// The decisions that sent it to approval, with every rule's result.
    pub(crate) decisions: Vec<DecisionRow>,
}

#[derive(Template)]
#[template(path = "console/approvals.html")]
struct ApprovalsPage {
    chrome: Option<Chrome>,
    state: String,
    cards: Vec<ApprovalCard>,
    next: Option<String>,
    can_operate: bool,
    csrf: String,
    notice: Option<&'static str>,
}

impl ApprovalsPage {
    fn state_is(&self, s: &str) -> bool {
        self.state == s
    }
}

/// `GET /approvals` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApprovalsQuery {
    state: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

/// `GET /approvals`: the requests waiting for an operator (or decided ones), each with
/// what the RA saw: the rule results and the inventory record.
pub(crate) async fn approvals(
    AxumState(console): State,
    user: ConsoleUser,
    Query(q): Query<ApprovalsQuery>,
) -> Response {
    let store = console.api.store.as_ref();
    let state = given(q.state).unwrap_or_else(|| "pending".into());
    let listed = crate::list_approvals(
        store,
        user.actor(),
        ApprovalListQuery {
            state: (state != "all").then(|| state.clone()),
            device: None,
            limit: Some(20),
            cursor: given(q.cursor),
        },
    )
    .await;
    let listed = match listed {
        Ok(p) => p,
        Err(e) => return render::admin_error(e, Some(&user)),
    };
    let now = OffsetDateTime::now_utc();
    let mut cards = Vec::with_capacity(listed.items.len());
    for a in listed.items {
        let detail = match crate::approval(store, user.actor(), a.id).await {
            Ok(d) => d,
            Err(e) => return render::admin_error(e, Some(&user)),
        };
        let inventory = match crate::device_detail(store, user.actor(), &a.device).await {
            Ok(d) => Some(d.device),
            Err(crate::AdminError::NotFound(_)) => None,
            Err(e) => return render::admin_error(e, Some(&user)),
        };
        cards.push(ApprovalCard {
            id: a.id,
            device_href: format!("/devices/{}", segment(&a.device)),
            created: when(&a.created_at, now),
            badge: badge(&a.state),
            decided_by: a.decided_by.unwrap_or_default(),
            decision_reason: a.decision_reason.unwrap_or_default(),
            decisions: detail
                .decisions
                .into_iter()
                .map(|d| decision_row(d, now))
                .collect(),
            inventory,
            device: a.device,
            profile: a.profile,
            operation: a.operation,
            client: a.client,
            reason: a.reason,
            state: a.state,
            polls: a.polls,
        });
    }
    let state_filter = Some(state.clone());
    html(
        StatusCode::OK,
        &ApprovalsPage {
            chrome: user.chrome("approvals"),
            next: next_link(
                "/approvals",
                &[("state", &state_filter)],
                listed.next_cursor,
            ),
            state,
            cards,
            can_operate: user.can_operate(),
            csrf: user.csrf(),
            notice: notice(q.done.as_deref()),
        },
    )
}
