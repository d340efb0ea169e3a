//! Every TOML example in docs/connectors.md parses; the file examples are built against
//! the CSV and JSON examples of the same page.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::BTreeMap;

use fleetca_connectors::ConnectorConfig;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    connectors: BTreeMap<String, ConnectorConfig>,
}

/// The fenced blocks of `language`.
fn blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    text.split(fence.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect()
}

#[tokio::test]
async fn examples_parse_and_file_examples_build() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/connectors.md"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("devices.csv"), blocks(&text, "csv")[0]).unwrap();
    std::fs::write(dir.path().join("shipped.json"), blocks(&text, "json")[0]).unwrap();

    let mut names = Vec::new();
    for block in blocks(&text, "toml") {
        let page: Page = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        for (name, config) in page.connectors {
            if let ConnectorConfig::File(_) = config {
                let c = config.build(&name, dir.path()).unwrap();
                assert!(c.directory.lookup("SN-0001").await.unwrap().is_some());
            }
            names.push(name);
        }
    }
    assert_eq!(names, ["cmdb", "factory", "shipping", "assets", "erp"]);
}
