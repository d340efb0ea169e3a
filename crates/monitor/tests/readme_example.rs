//! The README's "Monitoring" example configuration loads and validates as written, and the
//! ServiceNow-style body in its comment renders valid JSON too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use fleetca_monitor::{ChannelSettings, RawMonitoring};

fn example() -> String {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## Monitoring").expect("Monitoring section")..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let end = section[start..].find("```").unwrap();
    section[start..start + end].to_string()
}

fn validate(text: &str) -> fleetca_monitor::MonitorSettings {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for f in ["smtp-password", "webhook-hmac", "tickets-authorization"] {
        std::fs::write(dir.path().join("secrets").join(f), "x-secret\n").unwrap();
    }
    let value: toml::Table = toml::from_str(text).unwrap();
    let raw: RawMonitoring = value["monitoring"].clone().try_into().unwrap();
    raw.validate(dir.path()).unwrap()
}

#[test]
fn the_readme_monitoring_example_is_valid() {
    let text = example();
    let s = validate(&text);
    assert_eq!(s.tiers.len(), 3);
    assert_eq!(s.channels.len(), 3);
    assert_eq!(
        s.failing_renewals
            .as_ref()
            .map(|f| (f.threshold, f.tier.as_str())),
        Some((3, "warning"))
    );
    assert!(matches!(s.channels["ops-mail"], ChannelSettings::Smtp(_)));
    // The commented ServiceNow-style body, swapped in.
    let snow = text
        .lines()
        .find(|l| l.starts_with("# body = '''{\"short_description\""))
        .unwrap()
        .trim_start_matches("# ");
    let generic = text
        .lines()
        .find(|l| l.starts_with("body = '''{\"title\""))
        .unwrap();
    validate(&text.replace(generic, snow));
}
