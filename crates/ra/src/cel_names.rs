//! Checks the names a CEL rule refers to against what the RA gives it, at load: a typo
//! (`devce.shipped.status`) is refused with its position instead of denying every
//! request later. The expression is parsed by the `cel` crate; this walks its syntax tree.

use std::collections::BTreeSet;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::Program;

use crate::RaError;

/// The variables of a rule and their fields (`device` has the profile's connectors too).
const REQUEST_FIELDS: &[&str] = &[
    "subject",
    "serial_number",
    "sans",
    "key_algorithm",
    "key_size",
    "label",
    "operation",
];
const CLIENT_FIELDS: &[&str] = &["role", "subject", "serial", "issuer", "not_after"];
const DEVICE_FIELDS: &[&str] = &["serial", "status"];
/// Type names CEL lets an expression mention (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// An undeclared name and where it starts in the expression (byte offset).
struct Unknown {
    text: String,
    offset: Option<u32>,
}

struct Walk<'a> {
    connectors: &'a [String],
    unknown: Vec<Unknown>,
}

impl Walk<'_> {
    fn fields_of(&self, variable: &str) -> Option<Vec<&str>> {
        match variable {
            "request" => Some(REQUEST_FIELDS.to_vec()),
            "client" => Some(CLIENT_FIELDS.to_vec()),
            "device" => Some(
                DEVICE_FIELDS
                    .iter()
                    .copied()
                    .chain(self.connectors.iter().map(String::as_str))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn visit(&mut self, e: &IdedExpr, bound: &mut Vec<String>, program: &Program) {
        let at = |id: u64| program.source_info().offset_for(id).map(|(start, _)| start);
        match &e.expr {
            Expr::Ident(name) => {
                let declared = matches!(name.as_str(), "request" | "client" | "device" | "now")
                    || TYPE_NAMES.contains(&name.as_str())
                    || name.starts_with('@')
                    || bound.iter().any(|b| b == name);
                if !declared {
                    self.unknown.push(Unknown {
                        text: format!("unknown variable '{name}'"),
                        offset: at(e.id),
                    });
                }
            }
            Expr::Select(select) => {
                // `variable.field`: the field must be one the RA fills in.
                if let Expr::Ident(root) = &select.operand.expr {
                    if !bound.iter().any(|b| b == root) {
                        if let Some(fields) = self.fields_of(root) {
                            if !fields.contains(&select.field.as_str()) {
                                let known = fields.join(", ");
                                self.unknown.push(Unknown {
                                    text: format!(
                                        "'{root}' has no field '{}' (it has: {known})",
                                        select.field
                                    ),
                                    offset: at(select.operand.id),
                                });
                            }
                        }
                    }
                }
                self.visit(&select.operand, bound, program);
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target, bound, program);
                }
                for arg in &call.args {
                    self.visit(arg, bound, program);
                }
            }
            Expr::Comprehension(c) => {
                self.visit(&c.iter_range, bound, program);
                self.visit(&c.accu_init, bound, program);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    bound.push(v.clone());
                }
                bound.push(c.accu_var.clone());
                self.visit(&c.loop_cond, bound, program);
                self.visit(&c.loop_step, bound, program);
                self.visit(&c.result, bound, program);
                bound.truncate(depth);
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.visit(element, bound, program);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.visit_entry(&entry.expr, bound, program);
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.visit_entry(&entry.expr, bound, program);
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn visit_entry(&mut self, entry: &EntryExpr, bound: &mut Vec<String>, program: &Program) {
        match entry {
            EntryExpr::StructField(f) => self.visit(&f.value, bound, program),
            EntryExpr::MapEntry(m) => {
                self.visit(&m.key, bound, program);
                self.visit(&m.value, bound, program);
            }
        }
    }
}

/// Line and column (1-based, in characters) of byte `offset` of `source`.
fn position(source: &str, offset: u32) -> (usize, usize) {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Refuses names in `program` (compiled from `source`) that the RA does not declare:
/// variables other than `request`, `client`, `device`, `now` (and comprehension
/// variables), and fields of those three it does not fill in (`device.<connector>` for
/// the profile's `connectors`). The error gives each name's column in the expression.
pub(crate) fn check_names(
    program: &Program,
    source: &str,
    connectors: &[String],
) -> Result<(), RaError> {
    let mut walk = Walk {
        connectors,
        unknown: Vec::new(),
    };
    walk.visit(program.expression(), &mut Vec::new(), program);
    if walk.unknown.is_empty() {
        return Ok(());
    }
    let multi_line = source.contains('\n');
    let mut seen = BTreeSet::new();
    let problems: Vec<String> = walk
        .unknown
        .into_iter()
        .filter(|u| seen.insert((u.text.clone(), u.offset)))
        .map(|u| match u.offset.map(|o| position(source, o)) {
            Some((line, column)) if multi_line => {
                format!(
                    "{} at line {line}, column {column} of the expression",
                    u.text
                )
            }
            Some((_, column)) => format!("{} at column {column} of the expression", u.text),
            None => u.text,
        })
        .collect();
    Err(RaError::Expression(format!(
        "{}; a rule sees request, client, device (serial, status and the profile's connectors) and now",
        problems.join("; ")
    )))
}
