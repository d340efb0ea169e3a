//! The console's state changes: each form carries the session's CSRF token (checked first:
//! without it nothing runs, 403) and calls one operation of this crate, which checks the
//! role and writes the audit event, exactly as the API does. Device actions and
//! revocations are two steps: a confirmation page (GET), then the form it holds (POST).

use askama::Template;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fleetca_pki::RevocationReason;
use fleetca_store::StationStatus;
use serde::Deserialize;

use super::auth::ConsoleUser;
use super::fleet_pages::segment;
use super::render::{self, given, html, Chrome, FormBody};
use super::State;
use crate::{AdminError, CertificateView};

/// The revocation reasons an operator picks from (RFC 5280 names).
const REASONS: [&str; 6] = [
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
];

/// A device action: its path word, its button text and what it does.
struct DeviceAction {
    word: &'static str,
    title: &'static str,
    explains: &'static str,
    danger: bool,
}

const DEVICE_ACTIONS: [DeviceAction; 4] = [
    DeviceAction {
        word: "suspend",
        title: "Suspend",
        explains: "Its valid certificates are put on hold (CRL and OCSP say so) and it cannot enroll or renew until resumed.",
        danger: false,
    },
    DeviceAction {
        word: "resume",
        title: "Resume",
        explains: "Its held certificates become valid again and it may enroll and renew.",
        danger: false,
    },
    DeviceAction {
        word: "force-reenroll",
        title: "Force re-enroll",
        explains: "It may re-enroll at its next check, outside its renewal window, for the time given.",
        danger: false,
    },
    DeviceAction {
        word: "decommission",
        title: "Decommission",
        explains: "Every certificate of the device is revoked and it can never enroll again. This cannot be undone.",
        danger: true,
    },
];

fn find_action(word: &str) -> Option<&'static DeviceAction> {
    DEVICE_ACTIONS.iter().find(|a| a.word == word)
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    chrome: Option<Chrome>,
    title: String,
    subject: String,
    back: String,
    explains: &'static str,
    action: String,
    csrf: String,
    danger: bool,
    /// Decommission and revoke: the reason to pick.
    reasons: Vec<&'static str>,
    default_reason: &'static str,
    /// Force re-enroll: the window.
    window: bool,
}

impl ConfirmPage {
    fn is_default(&self, reason: &str) -> bool {
        reason == self.default_reason
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmQuery {
    action: String,
}

fn refused_role(user: &ConsoleUser, what: &str) -> Response {
    render::error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "Your role ({}) may not {what}; the operator or admin role may.",
            user.actor().role().as_str()
        ),
        Some(user),
    )
}

/// `GET /devices/{serial}/confirm?action=...`: what the action will do, and its form.
pub(crate) async fn confirm_device_action(
    user: ConsoleUser,
    Path(serial): Path<String>,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    let Some(action) = find_action(&q.action) else {
        return render::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such device action.",
            Some(&user),
        );
    };
    if !user.can_operate() {
        return refused_role(&user, "change devices");
    }
    let href = format!("/devices/{}", segment(&serial));
    html(
        StatusCode::OK,
        &ConfirmPage {
            chrome: user.chrome("devices"),
            title: format!("{} device", action.title),
            subject: serial,
            action: format!("{href}/{}", action.word),
            back: href,
            explains: action.explains,
            csrf: user.csrf(),
            danger: action.danger,
            reasons: if action.word == "decommission" {
                REASONS.to_vec()
            } else {
                Vec::new()
            },
            default_reason: "cessationOfOperation",
            window: action.word == "force-reenroll",
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    csrf: Option<String>,
    comment: Option<String>,
    reason: Option<String>,
    window: Option<String>,
    confirm: Option<String>,
}

fn reason(text: Option<&str>, default: RevocationReason) -> Result<RevocationReason, AdminError> {
    crate::reads::parse_opt::<RevocationReason>("reason", text).map(|r| r.unwrap_or(default))
}

/// `POST /devices/{serial}/{action}`.
pub(crate) async fn device_action_post(
    console: &super::Console,
    user: &ConsoleUser,
    serial: &str,
    action: &str,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let store = console.api.store.as_ref();
    let actor = user.actor();
    let comment = given(form.comment);
    let comment = comment.as_deref();
    match action {
        "suspend" => {
            crate::suspend(store, actor, serial, comment).await?;
        }
        "resume" => {
            crate::resume(store, actor, serial, comment).await?;
        }
        "decommission" => {
            let reason = reason(
                given(form.reason).as_deref(),
                RevocationReason::CessationOfOperation,
            )?;
            crate::decommission(store, actor, serial, reason, comment).await?;
        }
        "force-reenroll" => {
            let window = crate::reads::duration("window", given(form.window).as_deref())?
                .unwrap_or(time::Duration::days(7));
            crate::force_reenroll(store, actor, serial, window, comment).await?;
        }
        _ => return Err(AdminError::NotFound(format!("device action '{action}'"))),
    }
    Ok(Redirect::to(&format!("/devices/{}?done={action}", segment(serial))).into_response())
}

/// `POST /devices/{serial}/{action}`: suspend, resume, decommission, force re-enroll.
pub(crate) async fn device_action(
    AxumState(console): State,
    user: ConsoleUser,
    Path((serial, action)): Path<(String, String)>,
    FormBody(form): FormBody<ActionForm>,
) -> Response {
    if !user.csrf_ok(form.csrf.as_deref()) {
        return render::csrf_refused(&user);
    }
    device_action_post(&console, &user, &serial, &action, form)
        .await
        .unwrap_or_else(|e| render::admin_error(e, Some(&user)))
}

/// `GET /certificates/{serial}/revoke`: the reason to pick, and the form.
pub(crate) async fn confirm_revoke(user: ConsoleUser, Path(serial): Path<String>) -> Response {
    if !user.can_operate() {
        return refused_role(&user, "revoke certificates");
    }
    html(
        StatusCode::OK,
        &ConfirmPage {
            chrome: user.chrome("certificates"),
            title: "Revoke certificate".into(),
            action: format!("/certificates/{}/revoke", segment(&serial)),
            back: "/certificates".into(),
            subject: serial,
            explains: "The certificate is revoked for good: the CRL lists it and OCSP answers revoked from now on. A key compromise also needs the box below ticked.",
            csrf: user.csrf(),
            danger: true,
            reasons: REASONS.to_vec(),
            default_reason: "unspecified",
            window: false,
        },
    )
}

/// `POST /certificates/{serial}/revoke`.
pub(crate) async fn revoke(
    AxumState(console): State,
    user: ConsoleUser,
    Path(serial): Path<String>,
    FormBody(form): FormBody<ActionForm>,
) -> Response {
    if !user.csrf_ok(form.csrf.as_deref()) {
        return render::csrf_refused(&user);
    }
    let result = async {
        let reason = reason(given(form.reason).as_deref(), RevocationReason::Unspecified)?;
        let comment = given(form.comment);
        crate::revoke_certificate_confirmed(
            console.api.store.as_ref(),
            user.actor(),
            &serial,
            reason,
            comment.as_deref(),
            form.confirm.is_some(),
        )
        .await
    }
    .await;
    match result {
        Ok(record) => {
            let view = CertificateView::from(&record);
            Redirect::to(&format!("/devices/{}?done=revoke", segment(&view.device))).into_response()
        }
        Err(e) => render::admin_error(e, Some(&user)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    csrf: Option<String>,
    comment: Option<String>,
    reason: Option<String>,
}

/// `POST /approvals/{id}/approve` and `POST /approvals/{id}/reject` (a reason needed).
pub(crate) async fn decide(
    AxumState(console): State,
    user: ConsoleUser,
    Path((id, decision)): Path<(String, String)>,
    FormBody(form): FormBody<DecideForm>,
) -> Response {
    if !user.csrf_ok(form.csrf.as_deref()) {
        return render::csrf_refused(&user);
    }
    let Ok(id) = id.parse::<i64>() else {
        return render::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "Approval requests are numbered.",
            Some(&user),
        );
    };
    let (approve, text) = match decision.as_str() {
        "approve" => (true, given(form.comment)),
        "reject" => (false, given(form.reason)),
        _ => {
            return render::error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "A request is approved or rejected.",
                Some(&user),
            )
        }
    };
    match crate::decide_request(
        console.api.store.as_ref(),
        user.actor(),
        id,
        approve,
        text.as_deref(),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/approvals?done={decision}")).into_response(),
        Err(e) => render::admin_error(e, Some(&user)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: Option<String>,
}

/// `POST /stations/{name}/suspend` and `.../resume` (admin).
pub(crate) async fn station_change(
    AxumState(console): State,
    user: ConsoleUser,
    Path((name, change)): Path<(String, String)>,
    FormBody(form): FormBody<CsrfOnly>,
) -> Response {
    if !user.csrf_ok(form.csrf.as_deref()) {
        return render::csrf_refused(&user);
    }
    let status = match change.as_str() {
        "suspend" => StationStatus::Suspended,
        "resume" => StationStatus::Active,
        _ => {
            return render::error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "A station is suspended or resumed.",
                Some(&user),
            )
        }
    };
    match crate::set_station_status(
        console.api.store.as_ref(),
        user.actor(),
        &name,
        status,
        None,
    )
    .await
    {
        Ok(()) => Redirect::to("/stations?done=station").into_response(),
        Err(e) => render::admin_error(e, Some(&user)),
    }
}
