//! Digests: one message per tier, channel and event per scan, listing the affected
//! devices (counts and the first N), rendered into the channel's templates when queued.

use fleetca_store::EscalationKind;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::ChannelSettings;
use crate::template::{self, Mode, Value};

/// One device in a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    /// What the escalation is about.
    pub kind: EscalationKind,
    /// Device serial number.
    pub device_serial: String,
    /// Certificate serial (empty for birth-only and failing renewals).
    pub certificate_serial: String,
    /// Certificate expiry (expiry), when the device was recorded (birth-only), the last
    /// refusal (failing renewals; when the escalation was opened, once resolved).
    pub at: OffsetDateTime,
    /// The refusals (failing renewals, firing digests).
    pub refusals: Option<Refusals>,
    /// Resolution (resolved digests).
    pub resolution: Option<String>,
}

/// The refused requests of a failing device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// How many were counted.
    pub count: u64,
    /// The operation of the last one (`simplereenroll`, ...).
    pub action: String,
    /// Why the last one was refused.
    pub error: String,
}

/// Error texts in digests are cut to this many characters.
const MAX_ERROR_CHARS: usize = 200;

fn shortened(text: &str) -> String {
    let one_line = text.replace(['\r', '\n'], " ");
    match one_line.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}...", one_line.get(..cut).unwrap_or_default()),
        None => one_line,
    }
}

/// The event of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// Devices entered (or are re-notified in) the tier.
    Firing,
    /// Devices left the tier's escalation (renewed, decommissioned, ...).
    Resolved,
}

impl Event {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// Orders digest entries most urgent first: earliest time, then device and certificate.
#[derive(Debug)]
struct Ranked(DigestEntry);

impl Ranked {
    fn rank(&self) -> (OffsetDateTime, &str, &str) {
        (self.0.at, &self.0.device_serial, &self.0.certificate_serial)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The entries of one digest as a scan finds them: their count and the `keep` most
/// urgent, in memory bounded by `keep` however many devices a scan finds.
#[derive(Debug)]
pub(crate) struct Shortlist {
    count: usize,
    keep: usize,
    /// A max-heap: its top is the least urgent entry kept, the first to give way.
    heap: std::collections::BinaryHeap<Ranked>,
}

impl Shortlist {
    /// Firing and resolved lists keeping `keep` entries each.
    pub(crate) fn pair(keep: usize) -> (Self, Self) {
        let new = || Self {
            count: 0,
            keep,
            heap: std::collections::BinaryHeap::new(),
        };
        (new(), new())
    }

    /// Counts `entry` and keeps it if it is among the `keep` most urgent so far.
    pub(crate) fn push(&mut self, entry: DigestEntry) {
        self.count += 1;
        let entry = Ranked(entry);
        if self.heap.len() < self.keep {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|least| entry < *least) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    /// The kept entries, most urgent first, and the count of all pushed.
    pub(crate) fn into_sorted(self) -> (Vec<DigestEntry>, usize) {
        let entries = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect();
        (entries, self.count)
    }
}

/// A digest before rendering.
#[derive(Debug, Clone)]
pub(crate) struct Digest<'a> {
    pub event: Event,
    pub tier: &'a str,
    /// The most urgent entries (at most `max_devices`), most urgent first.
    pub entries: &'a [DigestEntry],
    /// How many entries there are in all.
    pub count: usize,
    /// Open escalations in the tier after the scan.
    pub open: u64,
    pub scan_time: OffsetDateTime,
    pub max_devices: usize,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn remaining(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = at - now;
    let secs = d.whole_seconds();
    let abs = secs.unsigned_abs();
    let text = if abs >= 86_400 {
        format!("{}d {}h", abs / 86_400, (abs % 86_400) / 3600)
    } else if abs >= 3600 {
        format!("{}h {}m", abs / 3600, (abs % 3600) / 60)
    } else {
        format!("{}m", abs / 60)
    };
    if secs >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

impl DigestEntry {
    fn line(&self, now: OffsetDateTime) -> String {
        let what = match self.kind {
            EscalationKind::BirthOnly => format!(
                "{}  still on its birth certificate, recorded {} ({})",
                self.device_serial,
                rfc3339(self.at),
                remaining(self.at, now)
            ),
            EscalationKind::FailingRenewals => match &self.refusals {
                Some(r) => format!(
                    "{}  {} refused {} requests, the last {} ({}): {}",
                    self.device_serial,
                    r.count,
                    r.action,
                    rfc3339(self.at),
                    remaining(self.at, now),
                    shortened(&r.error)
                ),
                None => format!(
                    "{}  requests kept being refused (reported {})",
                    self.device_serial,
                    rfc3339(self.at)
                ),
            },
            _ => format!(
                "{}  certificate {} expires {} ({})",
                self.device_serial,
                self.certificate_serial,
                rfc3339(self.at),
                remaining(self.at, now)
            ),
        };
        match &self.resolution {
            Some(r) => format!("- {what}: {r}"),
            None => format!("- {what}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "device": self.device_serial,
            "kind": self.kind.as_str(),
        });
        if let Some(map) = v.as_object_mut() {
            match self.kind {
                EscalationKind::BirthOnly => {
                    map.insert("recorded_at".into(), rfc3339(self.at).into());
                }
                EscalationKind::FailingRenewals => match &self.refusals {
                    Some(r) => {
                        map.insert("refusals".into(), r.count.into());
                        map.insert("last_refused_at".into(), rfc3339(self.at).into());
                        map.insert("last_action".into(), r.action.clone().into());
                        map.insert("last_error".into(), shortened(&r.error).into());
                    }
                    None => {
                        map.insert("reported_at".into(), rfc3339(self.at).into());
                    }
                },
                _ => {
                    map.insert("certificate".into(), self.certificate_serial.clone().into());
                    map.insert("not_after".into(), rfc3339(self.at).into());
                }
            }
            if let Some(r) = &self.resolution {
                map.insert("resolution".into(), r.clone().into());
            }
        }
        v
    }
}

impl Digest<'_> {
    /// A stable key receivers can deduplicate on.
    pub(crate) fn id(&self, channel: &str) -> String {
        format!(
            "fleetca-{}-{}-{}-{}",
            self.scan_time.unix_timestamp(),
            self.tier,
            self.event.as_str(),
            channel
        )
    }

    fn vars(&self, channel: &str) -> Vec<(&'static str, Value)> {
        let count = self.count.max(self.entries.len());
        let shown = self
            .entries
            .get(..self.entries.len().min(self.max_devices))
            .unwrap_or(self.entries);
        let more = count - shown.len();
        let mut lines: Vec<String> = shown.iter().map(|e| e.line(self.scan_time)).collect();
        if more > 0 {
            lines.push(format!("... and {more} more"));
        }
        let json = serde_json::Value::Array(shown.iter().map(DigestEntry::json).collect());
        let (noun, verb) = if count == 1 {
            ("device", "needs")
        } else {
            ("devices", "need")
        };
        let summary = match self.event {
            Event::Firing => format!("{count} {noun} {verb} attention at tier {}", self.tier),
            Event::Resolved => format!("{count} {noun} resolved from tier {}", self.tier),
        };
        let num = |n: usize| Value::Structured {
            text: n.to_string(),
            json: n.to_string(),
        };
        vec![
            ("event", Value::Text(self.event.as_str().into())),
            ("tier", Value::Text(self.tier.into())),
            ("summary", Value::Text(summary)),
            ("count", num(count)),
            (
                "open",
                num(usize::try_from(self.open).unwrap_or(usize::MAX)),
            ),
            ("shown", num(shown.len())),
            ("more", num(more)),
            (
                "devices",
                Value::Structured {
                    text: lines.join("\n"),
                    json: json.to_string(),
                },
            ),
            ("scan_time", Value::Text(rfc3339(self.scan_time))),
            ("id", Value::Text(self.id(channel))),
            ("channel", Value::Text(channel.into())),
        ]
    }

    /// The outbox payload for `channel`: what will be sent, rendered now.
    pub(crate) fn payload(&self, name: &str, channel: &ChannelSettings) -> String {
        let vars = self.vars(name);
        let v = match channel {
            ChannelSettings::Smtp(s) => serde_json::json!({
                "id": self.id(name),
                "subject": template::render(&s.subject, &vars, Mode::Text),
                "body": template::render(&s.body, &vars, Mode::Text),
            }),
            ChannelSettings::Webhook(w) => serde_json::json!({
                "id": self.id(name),
                "body": template::render(&w.body, &vars, Mode::Json),
            }),
        };
        v.to_string()
    }
}

/// Renders a webhook body template with sample data and checks it is JSON.
pub(crate) fn sample_json(body: &str) -> Result<(), String> {
    let entries = [DigestEntry {
        kind: EscalationKind::Expiry,
        device_serial: "SN-\"1\"".into(),
        certificate_serial: "0a".into(),
        at: OffsetDateTime::UNIX_EPOCH,
        refusals: None,
        resolution: Some("renewed".into()),
    }];
    let d = Digest {
        event: Event::Firing,
        tier: "notice",
        entries: &entries,
        count: entries.len(),
        open: 1,
        scan_time: OffsetDateTime::UNIX_EPOCH,
        max_devices: 10,
    };
    let rendered = template::render(body, &d.vars("sample"), Mode::Json);
    serde_json::from_str::<serde_json::Value>(&rendered)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn summary(count: usize) -> String {
        let entries: Vec<DigestEntry> = (0..count)
            .map(|i| DigestEntry {
                kind: EscalationKind::Expiry,
                device_serial: format!("SN-{i}"),
                certificate_serial: "0a".into(),
                at: OffsetDateTime::UNIX_EPOCH,
                refusals: None,
                resolution: None,
            })
            .collect();
        let d = Digest {
            event: Event::Firing,
            tier: "notice",
            entries: &entries,
            count,
            open: 1,
            scan_time: OffsetDateTime::UNIX_EPOCH,
            max_devices: 10,
        };
        d.vars("mail")
            .into_iter()
            .find(|(name, _)| *name == "summary")
            .map(|(_, v)| match v {
                Value::Text(t) => t,
                Value::Structured { text, .. } => text,
            })
            .unwrap()
    }

    /// A shortlist keeps the most urgent entries in order and counts them all.
    #[test]
    fn a_shortlist_keeps_the_most_urgent_and_counts_all() {
        let (mut list, _) = Shortlist::pair(3);
        for i in [5i64, 1, 9, 3, 7, 2, 8] {
            list.push(DigestEntry {
                kind: EscalationKind::Expiry,
                device_serial: format!("SN-{i}"),
                certificate_serial: "0a".into(),
                at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i),
                refusals: None,
                resolution: None,
            });
        }
        let (entries, count) = list.into_sorted();
        assert_eq!(count, 7);
        let serials: Vec<&str> = entries.iter().map(|e| e.device_serial.as_str()).collect();
        assert_eq!(serials, ["SN-1", "SN-2", "SN-3"]);
        let d = Digest {
            event: Event::Firing,
            tier: "notice",
            entries: &entries,
            count,
            open: 7,
            scan_time: OffsetDateTime::UNIX_EPOCH,
            max_devices: 3,
        };
        let vars = d.vars("mail");
        let text = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| match v {
                    Value::Text(t) => t.clone(),
                    Value::Structured { text, .. } => text.clone(),
                })
                .unwrap()
        };
        assert_eq!(text("count"), "7");
        assert_eq!(text("more"), "4");
        assert!(
            text("devices").ends_with("... and 4 more"),
            "{}",
            text("devices")
        );
    }

    /// Issue 15 item 9: "1 devices need attention" read wrong.
    #[test]
    fn the_summary_agrees_in_number() {
        assert_eq!(summary(1), "1 device needs attention at tier notice");
        assert_eq!(summary(2), "2 devices need attention at tier notice");
    }
}
