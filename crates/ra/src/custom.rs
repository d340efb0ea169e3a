//! Operator-configured rules ([`fleetca_pki::ProfileRules`]), evaluated after every built-in
//! rule, in this order:
//!
//! | rule | checks |
//! |---|---|
//! | `max-active-certificates` | the device has fewer valid, unexpired operational certificates than the profile allows (the one a re-enrollment replaces does not count) |
//! | `reenroll-window` | simplereenroll comes after the configured share of the current certificate's lifetime |
//! | `custom-rule` | each CEL expression evaluates to `true`; the reason names the rule |
//!
//! CEL rules see this context (absent values are `null`):
//!
//! - `request`: `subject` (map, short attribute name to value: `CN`, `serialNumber`, `O`, ...),
//!   `serial_number`, `sans` (list of `DNS:...`, `URI:...`), `key_algorithm` (`p256`, `p384`,
//!   `ed25519`, `rsa2048`, ...), `label`, `operation` (`simpleenroll`, `simplereenroll`, `birth`);
//! - `client`: `role` (`birth`, `operational`, `account`, `station`, `administrator`),
//!   `subject` (map), `serial` (hex), `issuer` (issuer DN), `not_after` (unix seconds);
//! - `device`: `serial`, `status` (`manufactured`, `active`, ... or `null` for a new device);
//! - `now`: unix seconds.
//!
//! A rule that does not evaluate to a bool, or fails to evaluate, denies (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cel::{Context, Program, Value};
use fleetca_pki::{CustomRule, NameAttribute};
use fleetca_store::{DeviceStatus, InventoryReader};
use time::OffsetDateTime;

use crate::{ClientIdentity, EnrollmentRequest, Operation, RaError};

/// Checks that `expression` is a valid CEL expression; the error says why not.
pub fn compile_rule(expression: &str) -> Result<(), RaError> {
    compile(expression).map(drop)
}

fn compile(expression: &str) -> Result<Program, RaError> {
    // The parser is third-party code fed operator text: a panic in it is an error here.
    std::panic::catch_unwind(|| Program::compile(expression))
        .map_err(|_| RaError::Expression("the CEL parser failed on this expression".into()))?
        .map_err(|e| RaError::Expression(e.to_string()))
}

/// Compiled CEL programs, by expression text. Only expressions from the configuration are
/// ever compiled, so the map is as large as the configuration's rule list.
#[derive(Default)]
pub(crate) struct Programs(Mutex<HashMap<String, Arc<Program>>>);

impl Programs {
    fn program(&self, expression: &str) -> Result<Arc<Program>, RaError> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = map.get(expression) {
            return Ok(Arc::clone(p));
        }
        let program = Arc::new(compile(expression)?);
        map.insert(expression.to_string(), Arc::clone(&program));
        Ok(program)
    }
}

/// What the built-in rules established, for the configured ones.
pub(crate) struct Facts<'a> {
    pub device_serial: &'a str,
    pub device_status: Option<DeviceStatus>,
    pub now: OffsetDateTime,
}

/// Evaluates the profile's rules in order, stopping at the first failure.
pub(crate) async fn evaluate(
    req: &EnrollmentRequest<'_>,
    facts: &Facts<'_>,
    inventory: &dyn InventoryReader,
    programs: &Programs,
) -> Result<Vec<(&'static str, Result<String, String>)>, RaError> {
    let rules = &req.profile.rules;
    let mut results = Vec::new();
    let current = match req.client {
        ClientIdentity::OperationalCertificate { certificate } => Some(certificate),
        _ => None,
    };
    if let (Some(limit), Operation::Enroll | Operation::Reenroll) =
        (rules.max_active_certificates, req.operation)
    {
        let active = inventory
            .active_operational_certificates(facts.device_serial, facts.now)
            .await?;
        let replaced = u32::from(req.operation == Operation::Reenroll && current.is_some());
        let counted = active.saturating_sub(replaced);
        let result = if counted >= limit {
            Err(format!(
                "device {} already has {counted} active operational certificate(s); profile '{}' allows at most {limit}",
                facts.device_serial, req.profile.name
            ))
        } else {
            Ok(format!("{counted} of at most {limit} active certificates"))
        };
        let failed = result.is_err();
        results.push(("max-active-certificates", result));
        if failed {
            return Ok(results);
        }
    }
    if let (Some(permille), Operation::Reenroll, Some(cert)) =
        (rules.reenroll_after_permille, req.operation, current)
    {
        let lifetime = (cert.not_after - cert.not_before).whole_seconds();
        let from = cert.not_before
            + time::Duration::seconds(lifetime.saturating_mul(i64::from(permille)) / 1000);
        let result = if facts.now < from {
            Err(format!(
                "re-enrollment is allowed from {} ({}.{:03} of the current certificate's lifetime, profile '{}')",
                rfc3339(from),
                permille / 1000,
                permille % 1000,
                req.profile.name
            ))
        } else {
            Ok(format!("re-enrollment window opened at {}", rfc3339(from)))
        };
        let failed = result.is_err();
        results.push(("reenroll-window", result));
        if failed {
            return Ok(results);
        }
    }
    if rules.custom.is_empty() {
        return Ok(results);
    }
    let context = context(req, facts);
    for rule in &rules.custom {
        let result = run(rule, programs, &context);
        let failed = result.is_err();
        results.push(("custom-rule", result));
        if failed {
            break;
        }
    }
    Ok(results)
}

fn run(
    rule: &CustomRule,
    programs: &Programs,
    context: &Context<'_, '_>,
) -> Result<String, String> {
    let name = &rule.name;
    let program = programs
        .program(&rule.expression)
        .map_err(|e| format!("rule '{name}' does not compile ({e}); denied"))?;
    let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(context)))
        .map_err(|_| format!("rule '{name}' failed to evaluate; denied"))?;
    match value {
        Ok(Value::Bool(true)) => Ok(format!("rule '{name}' passed")),
        Ok(Value::Bool(false)) => Err(format!("rule '{name}': {}", rule.message)),
        Ok(other) => Err(format!(
            "rule '{name}' evaluated to a {}, not a bool; denied",
            other.type_of()
        )),
        Err(e) => Err(format!(
            "rule '{name}' could not be evaluated ({e}); denied"
        )),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn names(attrs: &[NameAttribute]) -> Value {
    let map: HashMap<String, Value> = attrs
        .iter()
        .map(|a| (a.short_name().to_string(), Value::from(a.value.as_str())))
        .collect();
    map.into()
}

fn context(req: &EnrollmentRequest<'_>, facts: &Facts<'_>) -> Context<'static, 'static> {
    let csr = req.csr;
    let request: HashMap<&str, Value> = HashMap::from([
        ("subject", names(csr.subject())),
        (
            "serial_number",
            csr.subject_serial_number().map(str::to_string).into(),
        ),
        (
            "sans",
            csr.requested_extensions().subject_alt_names.clone().into(),
        ),
        ("key_algorithm", csr.key_kind().to_string().into()),
        ("label", req.label.map(str::to_string).into()),
        ("operation", req.operation.name().into()),
    ]);
    let certificate = match req.client {
        ClientIdentity::BirthCertificate { certificate, .. }
        | ClientIdentity::OperationalCertificate { certificate }
        | ClientIdentity::Station { certificate, .. } => Some(certificate),
        ClientIdentity::Administrator { .. } | ClientIdentity::Account { .. } => None,
    };
    let client: HashMap<&str, Value> = HashMap::from([
        ("role", req.client.role().into()),
        (
            "subject",
            certificate.map_or_else(|| names(&[]), |c| names(&c.subject)),
        ),
        ("serial", certificate.map(|c| c.serial.to_hex()).into()),
        ("issuer", certificate.map(|c| c.issuer_display()).into()),
        (
            "not_after",
            certificate.map(|c| c.not_after.unix_timestamp()).into(),
        ),
    ]);
    let device: HashMap<&str, Value> = HashMap::from([
        ("serial", facts.device_serial.into()),
        ("status", facts.device_status.map(|s| s.to_string()).into()),
    ]);
    let mut context = Context::default();
    context.add_variable_from_value("request", request);
    context.add_variable_from_value("client", client);
    context.add_variable_from_value("device", device);
    context.add_variable_from_value("now", facts.now.unix_timestamp());
    context
}
