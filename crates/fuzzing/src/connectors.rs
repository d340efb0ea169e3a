//! `connectors`: what the device directories read from outside: CSV and JSON device files
//! (file connector) and the JSON answer of an HTTP directory with its record pointer, each
//! record then reduced to the configured fields by JSON pointers.
//!
//! Input: a selector byte (0: CSV file, 1: JSON file, 2: HTTP answer), then the bytes; for
//! the HTTP answer the first line is the record pointer (empty: the whole answer).

use std::collections::BTreeMap;

use fleetca_connectors::{parse_csv, parse_json, project_fields, record_at};

use crate::{selector, with_selector};

fn fields() -> BTreeMap<String, String> {
    [
        ("whole", ""),
        ("model", "/model"),
        ("site", "/location/site"),
        ("first_tag", "/tags/0"),
        ("escaped", "/a~1b/c~0d"),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p.to_string()))
    .collect()
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((kind, bytes)) = selector(data) else {
        return;
    };
    let fields = fields();
    match kind % 3 {
        0 | 1 => {
            let parsed = if kind % 3 == 0 {
                parse_csv(bytes, "serial")
            } else {
                parse_json(bytes, "serial")
            };
            for (_, record) in parsed.into_iter().flatten() {
                let projected = project_fields(&fields, record);
                assert_eq!(projected.len(), fields.len(), "one value per field");
            }
        }
        _ => {
            let (pointer, body) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (
                    bytes.get(..i).unwrap_or_default(),
                    bytes.get(i + 1..).unwrap_or_default(),
                ),
                None => (&[][..], bytes),
            };
            let pointer = String::from_utf8_lossy(pointer);
            let pointer = (!pointer.is_empty()).then_some(pointer.as_ref());
            if let Ok(record) = record_at(body, pointer) {
                let _ = project_fields(&fields, record);
            }
        }
    }
}

/// Device files and answers as the connector tests write them.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        with_selector(0, b"serial,model,status\nFUZZ-0001,m1,active\n\"FUZZ-0002\",\"m,2\",retired\n"),
        with_selector(0, b"serial\n\n"),
        with_selector(0, b"model,serial\nx,FUZZ-1\nx,FUZZ-1\n"),
        with_selector(
            1,
            br#"[{"serial":"FUZZ-0001","model":"m1","location":{"site":"plant 1"},"tags":["a"]},{"serial":2,"a/b":{"c~d":true}}]"#,
        ),
        with_selector(1, br#"{"serial":"not an array"}"#),
        with_selector(2, br#"{"model":"m1","status":"active","tags":[1,2]}"#),
        with_selector(2, b"/device\n{\"device\":{\"model\":\"m1\",\"location\":{\"site\":\"x\"}}}"),
        with_selector(2, b"/devices/0\n{\"devices\":[{\"model\":\"m\"}]}"),
        with_selector(2, b"/missing\n[]"),
    ]
}
