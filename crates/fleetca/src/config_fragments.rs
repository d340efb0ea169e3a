//! `conf.d/`: configuration fragments next to `fleetca.toml`, merged into it in lexical
//! order of their file names, so that an example from `examples/rules` is used by copying
//! it, unedited, into the directory.
//!
//! Merging is by TOML table: a fragment's keys join the tables of the same name; arrays of
//! tables (`[[profiles.NAME.rules]]`) are appended to; any other key set in two files is an
//! error that names both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use toml_edit::{DocumentMut, Item, Table};

/// The fragments directory, next to the configuration file.
pub const DIR: &str = "conf.d";

/// The fragments of the configuration file at `config`: the `*.toml` files in `conf.d/`
/// next to it, in lexical order of their names (none when the directory does not exist).
pub fn list(config: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = config.parent().unwrap_or(Path::new(".")).join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A configuration file's name for messages: `fleetca.toml`, `conf.d/10-rules.toml`.
pub fn display_name(config: &Path, file: &Path) -> String {
    let dir = config.parent().unwrap_or(Path::new("."));
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

/// `base` (named `base_name`) with every `(name, text)` fragment merged in, in order, as
/// TOML text. Each file's CEL expressions are compiled first, so that an error names the
/// file and the line in it (the merged text has lines of its own).
pub fn merge(
    base_name: &str,
    base: &str,
    fragments: &[(String, String)],
) -> anyhow::Result<String> {
    check_expressions(base_name, base)?;
    let mut doc: DocumentMut = base.parse().map_err(|e| anyhow!("{base_name}: {e}"))?;
    let mut origins: HashMap<String, String> = HashMap::new();
    // Fragment tables are written after fleetca.toml's, in merge order.
    let mut position = 1_000_000;
    for (name, text) in fragments {
        check_expressions(name, text)?;
        let fragment: DocumentMut = text.parse().map_err(|e| anyhow!("{name}: {e}"))?;
        let mut table = fragment.as_table().clone();
        for (_, item) in table.iter_mut() {
            renumber(item, &mut position);
        }
        let from = Source {
            name,
            base: base_name,
        };
        merge_table(doc.as_table_mut(), table, "", &from, &mut origins)?;
    }
    Ok(doc.to_string())
}

struct Source<'a> {
    name: &'a str,
    base: &'a str,
}

fn merge_table(
    into: &mut Table,
    from: Table,
    prefix: &str,
    source: &Source<'_>,
    origins: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    for (key, item) in from {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        match into.get_mut(&key) {
            None => {
                origins.insert(path, source.name.to_string());
                into.insert(&key, item);
            }
            Some(existing) => match (existing, item) {
                (Item::Table(a), Item::Table(b)) => merge_table(a, b, &path, source, origins)?,
                (Item::ArrayOfTables(a), Item::ArrayOfTables(b)) => {
                    for table in b {
                        a.push(table);
                    }
                }
                _ => bail!(
                    "{path} is set in both {} and {}: a setting may be in one file only \
                     (tables merge, [[arrays of tables]] are appended to)",
                    origin(&path, origins, source.base),
                    source.name
                ),
            },
        }
    }
    Ok(())
}

/// The file that set `path` or the table holding it.
fn origin<'a>(path: &str, origins: &'a HashMap<String, String>, base: &'a str) -> &'a str {
    let mut prefix = path;
    loop {
        if let Some(name) = origins.get(prefix) {
            return name;
        }
        match prefix.rsplit_once('.') {
            Some((parent, _)) => prefix = parent,
            None => return base,
        }
    }
}

/// Gives every table in `item` a document position from `next` on, so that the merged
/// text keeps the fragment's tables (and the elements of an array of tables) in order.
fn renumber(item: &mut Item, next: &mut usize) {
    let table = |t: &mut Table, next: &mut usize| {
        t.set_position(*next);
        *next += 1;
        for (_, item) in t.iter_mut() {
            renumber(item, next);
        }
    };
    match item {
        Item::Table(t) => table(t, next),
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                table(t, next);
            }
        }
        _ => {}
    }
}

#[derive(Deserialize, Default)]
struct Expressions {
    #[serde(default)]
    profiles: HashMap<String, ProfileExpressions>,
}

#[derive(Deserialize, Default)]
struct ProfileExpressions {
    #[serde(default)]
    rules: Vec<RuleExpression>,
    manual_approval: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
struct RuleExpression {
    #[serde(default)]
    name: String,
    expression: Option<toml::Spanned<String>>,
}

/// Parses the CEL expressions of one file; a syntax error names the file, the rule and the
/// line. (Everything else, the names an expression uses among them, is checked on the
/// merged configuration, where the profile's connectors are known.)
fn check_expressions(name: &str, text: &str) -> anyhow::Result<()> {
    let Ok(parsed) = toml::from_str::<Expressions>(text) else {
        // Shape errors are reported, with their key, by the full parse.
        return Ok(());
    };
    let line = |offset: usize| {
        text.get(..offset)
            .map_or(0, |before| before.matches('\n').count())
            + 1
    };
    for (profile, p) in &parsed.profiles {
        let expressions = p
            .rules
            .iter()
            .filter_map(|r| Some((format!("rule '{}'", r.name), r.expression.as_ref()?)))
            .chain(
                p.manual_approval
                    .as_ref()
                    .map(|e| ("manual_approval".to_string(), e)),
            );
        for (what, expression) in expressions {
            fleetca_ra::check_rule_syntax(expression.get_ref()).map_err(|e| {
                anyhow!(
                    "{name}: profile '{profile}': {what} (line {}): {e}",
                    line(expression.span().start)
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const BASE: &str = "[server]\nlisten = \"127.0.0.1:8443\"\n\n[profiles.operational]\nvalidity = \"90d\"\n\n[[profiles.operational.rules]]\nname = \"a\"\nexpression = 'true'\n";

    fn fragments(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn tables_merge_and_arrays_of_tables_are_appended_in_order() {
        let merged = merge(
            "fleetca.toml",
            BASE,
            &fragments(&[
                (
                    "conf.d/10.toml",
                    "[profiles.operational]\nreenroll_after = 0.5\n\n[[profiles.operational.rules]]\nname = \"b\"\nexpression = 'true'\n",
                ),
                (
                    "conf.d/20.toml",
                    "[[profiles.operational.rules]]\nname = \"c\"\nexpression = 'true'\n\n[connectors.x]\nkind = \"file\"\n",
                ),
            ]),
        )
        .unwrap();
        let t: toml::Table = merged.parse().unwrap();
        let p = t["profiles"]["operational"].as_table().unwrap();
        assert_eq!(p["validity"].as_str(), Some("90d"));
        assert_eq!(p["reenroll_after"].as_float(), Some(0.5));
        let names: Vec<&str> = p["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(t["connectors"]["x"]["kind"].as_str(), Some("file"));
    }

    #[test]
    fn a_key_set_twice_names_both_files() {
        let err = merge(
            "fleetca.toml",
            BASE,
            &fragments(&[(
                "conf.d/10.toml",
                "[profiles.operational]\nvalidity = \"1d\"\n",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "profiles.operational.validity is set in both fleetca.toml and conf.d/10.toml"
            ),
            "{err}"
        );
        let err = merge(
            "fleetca.toml",
            BASE,
            &fragments(&[
                ("conf.d/10.toml", "[connectors.x]\nkind = \"file\"\n"),
                ("conf.d/20.toml", "[connectors.x]\nkind = \"sql\"\n"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("connectors.x.kind is set in both conf.d/10.toml and conf.d/20.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_expression_in_a_fragment_names_the_file_and_its_line() {
        let err = merge(
            "fleetca.toml",
            BASE,
            &fragments(&[(
                "conf.d/10.toml",
                "# a comment\n[[profiles.operational.rules]]\nname = \"typo\"\nexpression = 'request.key_size ==== 1'\n",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("conf.d/10.toml: profile 'operational': rule 'typo' (line 4)"),
            "{err}"
        );
    }
}
