//! Durations in configuration files and on command lines (server, agent, monitor): `30s`,
//! `10m`, `12h`, `90d`. At most 100 years, so that adding one to a time cannot overflow.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A non-negative whole-second duration written with one unit suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// As a `time` duration.
    pub fn to_time(self) -> time::Duration {
        time::Duration::try_from(self.0).unwrap_or(time::Duration::MAX)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration '{s}' needs a unit: s, m, h or d (e.g. 90d)"))?;
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("duration '{s}' must start with a whole number"))?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(format!(
                    "duration '{s}': unknown unit '{other}' (use s, m, h or d)"
                ))
            }
        };
        let total = n
            .checked_mul(seconds)
            .filter(|t| *t <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("duration '{s}' is too long"))?;
        Ok(Self(std::time::Duration::from_secs(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => f.write_str("0s"),
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\", \"12h\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_display_round_trips() {
        for (text, secs) in [("30s", 30), ("10m", 600), ("12h", 43_200), ("7d", 604_800)] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.0.as_secs(), secs);
            assert_eq!(d.to_string(), text);
        }
        assert_eq!("120m".parse::<HumanDuration>().unwrap().to_string(), "2h");
        assert_eq!("0s".parse::<HumanDuration>().unwrap().to_string(), "0s");
        for bad in [
            "",
            "7",
            "d",
            "7 days",
            "1.5d",
            "10y",
            "-1d",
            "99999999999d",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
