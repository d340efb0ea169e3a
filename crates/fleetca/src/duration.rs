//! Durations in configuration and on the command line: `30s`, `10m`, `12h`, `90d`.

use std::fmt;

/// A non-negative duration written with one unit suffix.
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
            .ok_or_else(|| format!("duration '{s}' is too large"))?;
        Ok(Self(std::time::Duration::from_secs(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s >= size && s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(
            "90d".parse::<HumanDuration>().unwrap().0.as_secs(),
            90 * 86_400
        );
        assert_eq!("10s".parse::<HumanDuration>().unwrap().to_string(), "10s");
        assert_eq!("120m".parse::<HumanDuration>().unwrap().to_string(), "2h");
        for bad in ["", "10", "d", "1.5d", "10y", "-1d", "99999999999999999999d"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
