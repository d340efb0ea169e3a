//! Durations in connector configuration: `500ms`, `2s`, `5m`, `1h`, `0s`.

use std::fmt;
use std::time::Duration;

/// A non-negative duration written as a whole number with one unit: `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub(crate) const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl std::str::FromStr for ConfigDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration '{s}' needs a unit: ms, s, m or h (e.g. 2s)"))?;
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("duration '{s}' must start with a whole number"))?;
        let millis_per_unit = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            other => {
                return Err(format!(
                    "duration '{s}': unknown unit '{other}' (use ms, s, m or h)"
                ))
            }
        };
        let total = n
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("duration '{s}' is too large"))?;
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        for (unit, size) in [("h", 3600), ("m", 60)] {
            if s >= size && s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = |s: &str| s.parse::<ConfigDuration>().unwrap();
        assert_eq!(d("500ms").0, Duration::from_millis(500));
        assert_eq!(d("2s").0, Duration::from_secs(2));
        assert_eq!(d("0s").0, Duration::ZERO);
        assert_eq!(d("2m").to_string(), "2m");
        assert_eq!(d("120m").to_string(), "2h");
        assert_eq!(d("1500ms").to_string(), "1500ms");
        assert_eq!(d("90s").to_string(), "90s");
        for bad in ["", "10", "s", "1.5s", "10d", "-1s", "99999999999999999999h"] {
            assert!(bad.parse::<ConfigDuration>().is_err(), "{bad}");
        }
    }
}
