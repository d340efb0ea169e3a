//! Times and statuses as people read them: "in 12 days" with the exact UTC time on hover,
//! and a badge class per status.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// A time shown as a relative phrase, with the exact time for the hover title and the
/// `datetime` attribute.
#[derive(Debug, Clone)]
pub(crate) struct When {
    /// RFC 3339 (the `datetime` attribute).
    pub(crate) iso: String,
    /// `2026-12-06 08:52:50 UTC` (the hover title).
    pub(crate) exact: String,
    /// `3 days ago`, `in 5 hours`, `just now`.
    pub(crate) relative: String,
}

/// `text` (RFC 3339) relative to `now`; text that does not parse is shown as it is.
pub(crate) fn when(text: &str, now: OffsetDateTime) -> When {
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => when_at(t, now),
        Err(_) => When {
            iso: text.to_string(),
            exact: text.to_string(),
            relative: text.to_string(),
        },
    }
}

/// `t` relative to `now`.
pub(crate) fn when_at(t: OffsetDateTime, now: OffsetDateTime) -> When {
    let t = t.to_offset(time::UtcOffset::UTC);
    let exact = t
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    When {
        iso: crate::rfc3339(t),
        exact,
        relative: relative(t - now),
    }
}

/// A signed duration as "in 3 days" / "3 days ago".
fn relative(d: time::Duration) -> String {
    let secs = d.whole_seconds();
    let abs = secs.unsigned_abs();
    if abs < 60 {
        return "just now".into();
    }
    let (n, unit) = match abs {
        a if a < 3_600 => (a / 60, "minute"),
        a if a < 86_400 => (a / 3_600, "hour"),
        a if a < 86_400 * 60 => (a / 86_400, "day"),
        a if a < 86_400 * 730 => (a / (86_400 * 30), "month"),
        a => (a / (86_400 * 365), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if secs < 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

/// The badge class of a status word (`ok`, `warn`, `bad`, `quiet`).
pub(crate) fn badge(status: &str) -> &'static str {
    match status {
        "active" | "valid" | "issued" | "approved" | "granted" | "enabled" | "resolved" | "ok"
        | "delivered" => "ok",
        "pending" | "manufactured" | "on-hold" | "suspended" | "open" | "expiring" => "warn",
        "revoked" | "refused" | "rejected" | "decommissioned" | "failed" | "denied" => "bad",
        _ => "quiet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn relative_phrases() {
        let now = datetime!(2026-12-06 12:00 UTC);
        assert_eq!(when_at(now, now).relative, "just now");
        assert_eq!(
            when_at(datetime!(2026-12-09 12:00 UTC), now).relative,
            "in 3 days"
        );
        assert_eq!(
            when_at(datetime!(2026-12-06 11:00 UTC), now).relative,
            "1 hour ago"
        );
        assert_eq!(
            when_at(datetime!(2026-12-06 11:00 UTC), now).exact,
            "2026-12-06 11:00:00 UTC"
        );
        assert_eq!(when("garbage", now).relative, "garbage");
    }
}
