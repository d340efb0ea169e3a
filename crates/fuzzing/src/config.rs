//! `config`: the three configuration parsers, raw TOML to validated settings: `fleetca
//! serve`'s `fleetca.toml` ([`fleetca::config::Config::parse`]), the device agent's
//! ([`fleetca_agent::Config::parse`]) and the `[monitoring]` section
//! ([`fleetca_monitor::RawMonitoring::validate`], also reached through the first).
//!
//! Input: a selector byte (0: server, 1: agent, 2: monitoring), then the TOML text.
//! Relative paths resolve against a directory that does not exist, so no file named in a
//! configuration is found; the parsers' file reading is not what this target explores.

use std::path::Path;

use crate::{selector, with_selector};

/// Where relative paths of a fuzzed configuration point: nowhere.
const BASE: &str = "/nonexistent/fleetca-fuzz";

/// The target.
pub fn run(data: &[u8]) {
    let Some((kind, bytes)) = selector(data) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(config) = fleetca::config::Config::parse(text, Path::new(BASE)) {
                let _ = config.notes();
            }
        }
        1 => {
            let _ = fleetca_agent::Config::parse(text);
        }
        _ => {
            if let Ok(raw) = toml::from_str::<fleetca_monitor::RawMonitoring>(text) {
                let _ = raw.validate(Path::new(BASE));
            }
        }
    }
}

/// The `[monitoring]` section of a server configuration, as a section of its own.
fn monitoring_section(server: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in server.lines() {
        let table = line.trim_start().starts_with('[');
        if table {
            inside = line.contains("[monitoring");
            if line.trim() == "[monitoring]" {
                continue;
            }
        }
        if inside {
            out.push_str(&line.replace("[monitoring.", "["));
            out.push('\n');
        }
    }
    out
}

/// The configuration `fleetca init` writes, with each example rule of `examples/rules`
/// merged in as `conf.d/` would; the agent's example file; the monitoring section with
/// relative tiers and channels.
pub fn seeds() -> Vec<Vec<u8>> {
    let server = fleetca::config::default_config_text(
        "Fuzz",
        &["est.example".to_string(), "127.0.0.1".to_string()],
        "127.0.0.1:8443",
        "127.0.0.1:8080",
    );
    let mut seeds = vec![with_selector(0, server.as_bytes())];
    let rules = [
        include_str!("../../../examples/rules/cmdb-active.toml"),
        include_str!("../../../examples/rules/ec-keys-only.toml"),
        include_str!("../../../examples/rules/manual-approval.toml"),
        include_str!("../../../examples/rules/reenroll-last-third.toml"),
        include_str!("../../../examples/rules/serial-matches-birth.toml"),
    ];
    for rule in rules {
        let texts = [("rule.toml".to_string(), rule.to_string())];
        if let Ok(merged) = fleetca::config_fragments::merge("fleetca.toml", &server, &texts) {
            seeds.push(with_selector(0, merged.as_bytes()));
        }
    }
    seeds.push(with_selector(
        1,
        include_str!("../../../examples/fleetca-agent.toml").as_bytes(),
    ));
    seeds.push(with_selector(2, monitoring_section(&server).as_bytes()));
    seeds.push(with_selector(
        2,
        br#"enabled = true
scan_interval = "1m"
[[tiers]]
name = "notice"
before = "25%"
channels = ["ops"]
[[tiers]]
name = "critical"
before = "1h"
channels = ["hook"]
renotify = "1d"
[channels.ops]
kind = "smtp"
host = "127.0.0.1"
from = "fleetca@example.com"
to = ["ops@example.com"]
[channels.hook]
kind = "webhook"
url = "https://127.0.0.1:9/hook"
"#,
    ));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are valid configurations (else the target would start at a parse error).
    #[test]
    fn the_generated_server_and_agent_seeds_parse() {
        let seeds = seeds();
        let server = seeds.first().and_then(|s| selector(s)).map(|(_, t)| t);
        let server = std::str::from_utf8(server.unwrap_or_default()).unwrap_or_default();
        if let Err(e) = fleetca::config::Config::parse(server, Path::new(BASE)) {
            unreachable!("the default configuration does not parse: {e:#}");
        }
        let agent = include_str!("../../../examples/fleetca-agent.toml");
        if let Err(e) = fleetca_agent::Config::parse(agent) {
            unreachable!("the example agent configuration does not parse: {e}");
        }
    }
}
