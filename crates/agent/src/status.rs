//! The status file the agent keeps (last attempt, next check, renewal point) and the JSON
//! report of `fleetca-agent status`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::identity::{write_atomically, Identity};
use crate::machine::Schedule;
use crate::AgentError;

/// What the agent records after each step, for `status` and for a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusRecord {
    /// The device serial.
    pub device: String,
    /// The last request: when it ended (RFC 3339).
    pub last_attempt_at: Option<String>,
    /// The last request: `simpleenroll` or `simplereenroll`.
    pub last_operation: Option<String>,
    /// The last request: whether it produced a certificate.
    pub last_ok: Option<bool>,
    /// The last request: how it ended.
    pub last_result: Option<String>,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Consecutive refusals (the refusal back-off grows with them).
    #[serde(default)]
    pub consecutive_denials: u32,
    /// When the agent looks again (RFC 3339).
    pub next_check: Option<String>,
    /// Why it waits until then (`not-due`, `backoff`, `pending`, `denied`, `stuck`).
    pub waiting_for: Option<String>,
    /// The certificate serial the renewal point belongs to (hex).
    pub renewal_point_serial: Option<String>,
    /// The renewal point, jitter included (RFC 3339).
    pub renewal_point: Option<String>,
    /// Whether the last post-renewal hook failed.
    pub hook_failed: bool,
}

impl StatusRecord {
    /// Reads the file; a missing or unreadable one is an empty record.
    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
        }
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| AgentError::Config(format!("status: {e}")))?;
        write_atomically(path, &json, 0o644)
    }
}

/// RFC 3339 text of `t`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The `status` report: the certificate on disk, its expiry and renewal point, and the
/// last attempt from the status file.
pub fn report(
    operational: Option<&Identity>,
    birth: Option<&Identity>,
    record: &StatusRecord,
    schedule: Option<Schedule>,
    now: OffsetDateTime,
) -> serde_json::Value {
    let state = match operational {
        None => "no-certificate",
        Some(id) if now >= id.info.not_after => "expired",
        Some(id) if now < id.info.not_before => "not-yet-valid",
        Some(_) => "valid",
    };
    let certificate = operational.map(|id| {
        let serial = id.info.serial.to_string();
        // The point `run`/`once` computed for this certificate (jitter included), else the
        // nominal one of the same schedule; both never earlier than the schedule allows.
        let recorded = match (&record.renewal_point_serial, &record.renewal_point) {
            (Some(s), Some(at)) if *s == serial => OffsetDateTime::parse(at, &Rfc3339).ok(),
            _ => None,
        };
        let point = match (recorded, schedule) {
            (Some(at), Some(plan)) => Some(at.max(plan.earliest)),
            (Some(at), None) => Some(at),
            (None, plan) => plan.map(|p| p.nominal),
        };
        serde_json::json!({
            "serial": serial,
            "subject": id.info.subject_display(),
            "issuer": id.info.issuer_display(),
            "not_before": rfc3339(id.info.not_before),
            "not_after": rfc3339(id.info.not_after),
            "expires_in_seconds": (id.info.not_after - now).whole_seconds(),
            "renewal_point": point.map(rfc3339),
            "renewal_due": point.map(|p| now >= p),
            "renewal_before_clamped": schedule.map(|p| p.clamped),
        })
    });
    serde_json::json!({
        "device": birth.and_then(|b| b.info.device_serial().map(str::to_string)),
        "state": state,
        "certificate": certificate,
        "birth_certificate_not_after": birth.map(|b| rfc3339(b.info.not_after)),
        "last_attempt": record.last_attempt_at.as_ref().map(|at| serde_json::json!({
            "at": at,
            "operation": record.last_operation,
            "ok": record.last_ok,
            "result": record.last_result,
        })),
        "consecutive_failures": record.consecutive_failures,
        "next_check": record.next_check,
        "waiting_for": record.waiting_for,
        "hook_failed": record.hook_failed,
    })
}
