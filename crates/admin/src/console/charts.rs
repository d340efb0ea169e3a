//! Charts drawn on the server as SVG by plotters: the expiry timeline, the renewal
//! activity and a device's certificate lineage. Each returns the SVG text, or `None` when
//! plotters fails (the page then shows the table next to the chart alone).

use plotters::prelude::*;
use time::{Date, Duration, OffsetDateTime};

use crate::{ExpiringDay, RequestDay};

/// Weeks of the expiry timeline.
pub(crate) const WEEKS: usize = 52;

/// Calm colours, one per profile (cycled).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x3b, 0x6e, 0xa8),
    RGBColor(0x6a, 0xa8, 0x7a),
    RGBColor(0xc9, 0x8b, 0x3a),
    RGBColor(0x8a, 0x6b, 0xb0),
    RGBColor(0x4f, 0x9d, 0xa6),
    RGBColor(0xb0, 0x5f, 0x6d),
];
const GREEN: RGBColor = RGBColor(0x4c, 0x9a, 0x6a);
const RED: RGBColor = RGBColor(0xc0, 0x4b, 0x4b);
const AMBER: RGBColor = RGBColor(0xd9, 0xa4, 0x41);
const INK: RGBColor = RGBColor(0x33, 0x3a, 0x44);
const BAND: RGBColor = RGBColor(0xf3, 0xd9, 0xa0);

/// Certificates expiring per week and profile, from the per-day counts of the fleet
/// statistics.
#[derive(Debug, Clone)]
pub(crate) struct ExpiryWeeks {
    /// The first day of week 0 (today, UTC).
    pub(crate) start: Date,
    /// Profiles, in the order of `counts`.
    pub(crate) profiles: Vec<String>,
    /// `counts[p][w]`: certificates of profile `p` expiring in week `w`.
    pub(crate) counts: Vec<[u64; WEEKS]>,
}

impl ExpiryWeeks {
    /// Buckets per-day counts (days from `start` on) into weeks; days past the 52nd week
    /// are left out.
    pub(crate) fn from_days(start: Date, days: &[ExpiringDay]) -> Self {
        let mut out = Self {
            start,
            profiles: Vec::new(),
            counts: Vec::new(),
        };
        let format = time::macros::format_description!("[year]-[month]-[day]");
        for d in days {
            let Ok(day) = Date::parse(&d.day, format) else {
                continue;
            };
            let offset = (day - start).whole_days();
            let Ok(week) = usize::try_from(offset / 7) else {
                continue;
            };
            if offset < 0 || week >= WEEKS {
                continue;
            }
            let p = match out.profiles.iter().position(|p| *p == d.profile) {
                Some(p) => p,
                None => {
                    out.profiles.push(d.profile.clone());
                    out.counts.push([0; WEEKS]);
                    out.profiles.len() - 1
                }
            };
            if let Some(slot) = out.counts.get_mut(p).and_then(|c| c.get_mut(week)) {
                *slot += d.count;
            }
        }
        // Profiles by name: the same colour and column for a profile on every visit.
        let mut pairs: Vec<(String, [u64; WEEKS])> =
            out.profiles.drain(..).zip(out.counts.drain(..)).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        (out.profiles, out.counts) = pairs.into_iter().unzip();
        out
    }

    /// The total of week `w`.
    pub(crate) fn week_total(&self, w: usize) -> u64 {
        self.counts.iter().filter_map(|c| c.get(w)).sum()
    }

    /// The first day of week `w`.
    pub(crate) fn week_start(&self, w: usize) -> Date {
        self.start + Duration::weeks(w as i64)
    }
}

fn short_date(d: Date) -> String {
    format!("{} {}", &month_abbrev(d.month()), d.day())
}

fn month_abbrev(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

/// A round upper bound for a count axis: about five whole-number steps of 1, 2, 2.5 or 5
/// times a power of ten, with some room above the highest bar.
fn axis_top(max: u64) -> f64 {
    let target = max.max(1) as f64 * 1.1;
    let raw_step = target / 5.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|s| s * magnitude)
        .find(|s| *s >= raw_step)
        .unwrap_or(magnitude * 10.0)
        .max(1.0);
    (target / step).ceil() * step
}

/// The expiry timeline: weekly stacked bars per profile; the renewal window (certificates
/// that should already be renewing) as a shaded band from today.
pub(crate) fn expiry_timeline(
    weeks: &ExpiryWeeks,
    renewal_window: Option<Duration>,
) -> Option<String> {
    let mut svg = String::new();
    let result: Result<(), String> = (|| {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let max = (0..WEEKS).map(|w| weeks.week_total(w)).max().unwrap_or(0);
        let top = axis_top(max);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..WEEKS as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        if let Some(window) = renewal_window {
            let end = (window.whole_days() as f64 / 7.0).min(WEEKS as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, 0.0), (end, top)],
                    BAND.mix(0.45).filled(),
                )))
                .map_err(|e| e.to_string())?
                .label(format!("renewal window ({} days)", window.whole_days()))
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAND.filled()));
        }
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(13)
            .x_label_formatter(&|w| short_date(weeks.week_start(w.round().max(0.0) as usize)))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("certificates / week")
            .axis_style(INK.mix(0.6))
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut base = [0u64; WEEKS];
        for (i, (profile, counts)) in weeks.profiles.iter().zip(&weeks.counts).enumerate() {
            let color = PALETTE.get(i % PALETTE.len()).copied().unwrap_or(INK);
            let bars: Vec<_> = counts
                .iter()
                .zip(base.iter_mut())
                .enumerate()
                .filter(|(_, (c, _))| **c > 0)
                .map(|(w, (c, b))| {
                    let lo = *b as f64;
                    *b += *c;
                    Rectangle::new(
                        [(w as f64 + 0.12, lo), (w as f64 + 0.88, *b as f64)],
                        color.filled(),
                    )
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(profile.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(0xdd, 0xdd, 0xdd))
            .label_font(("sans-serif", 12).into_font().color(&INK))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    })();
    finish(svg, result, "expiry timeline")
}

/// Renewal activity: issued, refused and pending requests per day, stacked, for the
/// days of `days` (oldest first, ending today).
pub(crate) fn activity(days: &[RequestDay], first: Date, n_days: u32) -> Option<String> {
    let mut svg = String::new();
    let result: Result<(), String> = (|| {
        let root = SVGBackend::with_string(&mut svg, (960, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let max = days
            .iter()
            .map(|d| d.issued + d.refused + d.pending)
            .max()
            .unwrap_or(0);
        let top = axis_top(max);
        let n = f64::from(n_days);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..n, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(10)
            .x_label_formatter(&|d| short_date(first + Duration::days(d.round() as i64)))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("requests / day")
            .axis_style(INK.mix(0.6))
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .draw()
            .map_err(|e| e.to_string())?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let placed: Vec<(f64, &RequestDay)> = days
            .iter()
            .filter_map(|d| {
                let day = Date::parse(&d.day, format).ok()?;
                Some(((day - first).whole_days() as f64, d))
            })
            .filter(|(x, _)| *x >= 0.0 && *x < n)
            .collect();
        type Part = fn(&RequestDay) -> (u64, u64);
        let parts: [(&str, RGBColor, Part); 3] = [
            ("issued", GREEN, |d| (0, d.issued)),
            ("refused", RED, |d| (d.issued, d.refused)),
            ("pending", AMBER, |d| (d.issued + d.refused, d.pending)),
        ];
        for (name, color, part) in parts {
            let bars: Vec<_> = placed
                .iter()
                .filter_map(|(x, d)| {
                    let (lo, n) = part(d);
                    (n > 0).then(|| {
                        Rectangle::new(
                            [(x + 0.15, lo as f64), (x + 0.85, (lo + n) as f64)],
                            color.filled(),
                        )
                    })
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(0xdd, 0xdd, 0xdd))
            .label_font(("sans-serif", 12).into_font().color(&INK))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    })();
    finish(svg, result, "renewal activity")
}

/// One bar of a device's lineage.
#[derive(Debug, Clone)]
pub(crate) struct LineageBar {
    pub(crate) label: String,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) revoked_at: Option<OffsetDateTime>,
    pub(crate) birth: bool,
}

/// A device's certificates as validity bars on a time axis (oldest on top), revocations
/// marked in red, today as a line.
pub(crate) fn lineage(bars: &[LineageBar], now: OffsetDateTime) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let mut svg = String::new();
    let day = |t: OffsetDateTime| t.unix_timestamp() as f64 / 86_400.0;
    let result: Result<(), String> = (|| {
        let height = 60 + 34 * bars.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // The axis spans the operational certificates and today; a birth certificate's
        // decades-long validity is cut at the edge.
        let operational: Vec<&LineageBar> = bars.iter().filter(|b| !b.birth).collect();
        let mut lo = operational
            .iter()
            .map(|b| day(b.not_before))
            .fold(day(now) - 7.0, f64::min);
        let mut hi = operational
            .iter()
            .map(|b| day(b.not_after))
            .fold(day(now) + 7.0, f64::max);
        if operational.is_empty() {
            lo = day(now) - 30.0;
            hi = day(now) + 30.0;
        }
        let pad = (hi - lo) * 0.03;
        let (lo, hi) = (lo - pad, hi + pad);
        let rows = bars.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(130)
            .build_cartesian_2d(lo..hi, 0f64..rows)
            .map_err(|e| e.to_string())?;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(8)
            .x_label_formatter(&|d| {
                OffsetDateTime::from_unix_timestamp((d * 86_400.0) as i64)
                    .map(|t| format!("{} {}", short_date(t.date()), t.year()))
                    .unwrap_or_default()
            })
            .y_labels(bars.len().max(1) * 2 + 1)
            .y_label_formatter(&|y| {
                let i = rows - y - 0.5;
                if (i - i.round()).abs() > 0.01 || i < 0.0 {
                    return String::new();
                }
                labels.get(i.round() as usize).cloned().unwrap_or_default()
            })
            .axis_style(INK.mix(0.6))
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, b) in bars.iter().enumerate() {
            let y = rows - i as f64;
            let start = day(b.not_before).max(lo);
            let end = day(b.revoked_at.unwrap_or(b.not_after).min(b.not_after)).min(hi);
            let color = if b.revoked_at.is_some() {
                RED
            } else if b.birth {
                PALETTE[3]
            } else {
                PALETTE[0]
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, y - 0.78), (end.max(start), y - 0.22)],
                    color.mix(0.85).filled(),
                )))
                .map_err(|e| e.to_string())?;
            if b.revoked_at.is_some() {
                let rest = day(b.not_after).min(hi);
                if rest > end {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(end, y - 0.7), (rest, y - 0.3)],
                            RED.mix(0.25).filled(),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(day(now), 0.0), (day(now), rows)],
                INK.stroke_width(2),
            )))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    })();
    finish(svg, result, "lineage")
}

fn finish(svg: String, result: Result<(), String>, what: &str) -> Option<String> {
    match result {
        Ok(()) => Some(svg),
        Err(e) => {
            tracing::warn!(chart = what, error = %e, "console: chart not drawn");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn day(day: &str, profile: &str, count: u64) -> ExpiringDay {
        ExpiringDay {
            day: day.into(),
            profile: profile.into(),
            count,
        }
    }

    #[test]
    fn days_are_bucketed_by_week_and_profile() {
        let start = date!(2026 - 12 - 06);
        let w = ExpiryWeeks::from_days(
            start,
            &[
                day("2026-12-06", "b", 4),
                day("2026-12-06", "a", 2),
                day("2026-12-12", "a", 1),
                day("2027-12-10", "a", 9),
                day("garbage", "a", 9),
            ],
        );
        assert_eq!(w.profiles, ["a", "b"]);
        assert_eq!(w.week_total(0), 7);
        assert_eq!(w.counts[1][0], 4);
        assert_eq!(w.week_total(1), 0);
        assert_eq!((0..WEEKS).map(|i| w.week_total(i)).sum::<u64>(), 7);
        let svg = expiry_timeline(&w, Some(Duration::days(30))).expect("chart");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("renewal window (30 days)"));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn axis_top_is_round_and_above_the_max() {
        assert_eq!(axis_top(0), 2.0);
        assert_eq!(axis_top(4), 5.0);
        assert_eq!(axis_top(87), 100.0);
        assert_eq!(axis_top(560_928), 800_000.0);
    }
}
