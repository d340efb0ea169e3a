//! Message templates: `{{name}}` placeholders, nothing else. For JSON bodies (webhooks)
//! text values are JSON-escaped (write them inside quotes) and list/number values are
//! inserted as JSON (write them bare), so a template always renders valid JSON.

use crate::MonitorError;

/// A value for a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Text: inserted as is in text templates, JSON-escaped (no quotes) in JSON ones.
    Text(String),
    /// Text rendering and JSON rendering (inserted raw in JSON templates).
    Structured { text: String, json: String },
}

/// How placeholders are substituted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Text,
    Json,
}

/// Every placeholder a template may use.
pub(crate) const NAMES: &[&str] = &[
    "event",
    "tier",
    "summary",
    "count",
    "open",
    "shown",
    "more",
    "devices",
    "scan_time",
    "id",
    "channel",
];

/// Checks that every placeholder is known.
pub(crate) fn check(template: &str) -> Result<(), MonitorError> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = rest.get(start + 2..).unwrap_or("");
        let end = after
            .find("}}")
            .ok_or_else(|| MonitorError::Template("unclosed '{{'".into()))?;
        let name = after.get(..end).unwrap_or("").trim();
        if !NAMES.contains(&name) {
            return Err(MonitorError::Template(format!(
                "unknown placeholder '{{{{{name}}}}}' (known: {})",
                NAMES.join(", ")
            )));
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    Ok(())
}

/// Renders `template` with `vars`; unknown placeholders render empty (templates are
/// checked at configuration time).
pub(crate) fn render(template: &str, vars: &[(&str, Value)], mode: Mode) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + 2..).unwrap_or("");
        let Some(end) = after.find("}}") else {
            out.push_str(rest.get(start..).unwrap_or(""));
            return out;
        };
        let name = after.get(..end).unwrap_or("").trim();
        if let Some((_, v)) = vars.iter().find(|(n, _)| *n == name) {
            match (v, mode) {
                (Value::Text(t), Mode::Text) | (Value::Structured { text: t, .. }, Mode::Text) => {
                    out.push_str(t)
                }
                (Value::Text(t), Mode::Json) => out.push_str(&json_escape(t)),
                (Value::Structured { json, .. }, Mode::Json) => out.push_str(json),
            }
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_rendering() {
        let vars = [
            ("tier", Value::Text("warn \"x\"".into())),
            (
                "devices",
                Value::Structured {
                    text: "- a\n- b".into(),
                    json: "[\"a\",\"b\"]".into(),
                },
            ),
        ];
        assert_eq!(
            render("T={{tier}} D={{ devices }}", &vars, Mode::Text),
            "T=warn \"x\" D=- a\n- b"
        );
        let json = render(r#"{"t":"{{tier}}","d":{{devices}}}"#, &vars, Mode::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["t"], "warn \"x\"");
        assert_eq!(v["d"][1], "b");
        assert!(check("{{tier}} {{nope}}").is_err());
        assert!(check("{{tier").is_err());
        assert!(check("plain {{ count }}").is_ok());
    }
}
