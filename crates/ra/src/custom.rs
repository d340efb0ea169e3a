//! Operator-configured rules ([`fleetca_pki::ProfileRules`]), evaluated after every built-in
//! rule, in this order (all in the eligibility stage but the last):
//!
//! | rule | checks |
//! |---|---|
//! | `max-active-certificates` | the device has fewer valid, unexpired operational certificates than the profile allows (the one a re-enrollment replaces does not count) |
//! | `reenroll-window` | simplereenroll comes after the configured share of the current certificate's lifetime, unless an operator forced re-enrollment (`fleetca device force-reenroll`) |
//! | `rate-limit` | the device was issued fewer than `max` certificates within the sliding window |
//! | `inventory` | each connector the profile names knows the device (or, as configured, may not); a connector that cannot answer makes the request `unavailable` (EST 503 + Retry-After) unless configured otherwise |
//! | `custom-rule` | each CEL expression evaluates to `true`; the reason names the rule |
//! | `manual-approval` | (approval stage) when the profile's `manual_approval` expression is `true`, an operator approved this request |
//!
//! CEL expressions see this context (absent values are `null`):
//!
//! - `request`: `subject` (map, short attribute name to value: `CN`, `serialNumber`, `O`, ...),
//!   `serial_number`, `sans` (list of `DNS:...`, `URI:...`), `key_algorithm` (`p256`, `p384`,
//!   `ed25519`, `rsa2048`, ...), `key_size` (bits; the curve size for EC), `label`,
//!   `operation` (`simpleenroll`, `simplereenroll`, `birth`);
//! - `client`: `role` (`birth`, `operational`, `account`, `station`, `administrator`),
//!   `subject` (map), `serial` (hex), `issuer` (issuer DN), `not_after` (unix seconds);
//! - `device`: `serial`, `status` (`manufactured`, `active`, ... or `null` for a new device),
//!   and one entry per connector the profile names: `device.<connector>` is the record the
//!   connector returned (a map), or `null` when the device is unknown to it;
//! - `now`: unix seconds.
//!
//! A rule that does not evaluate to a bool, or fails to evaluate, denies (fail closed). A
//! `manual_approval` expression that fails to evaluate sends the request for approval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use cel::{Context, Program, Value};
use fleetca_pki::{CustomRule, NameAttribute, PublicKeyKind};
use fleetca_store::{
    ApprovalState, DeviceLimits, DeviceStatus, InventoryReader, LimitCounts, NewApproval,
    PolicyStore, StoreError,
};
use time::OffsetDateTime;

use crate::rules::Run;
use crate::{
    ClientIdentity, Connector, Decision, DirectoryRecord, EnrollmentRequest, OnError, OnUnknown,
    Operation, Outcome, RaError,
};

/// The profile's per-device limits that apply to this request: checked here, and enforced
/// again by the commit that records the certificate (see `DeviceLimits`).
pub(crate) fn device_limits(req: &EnrollmentRequest<'_>, now: OffsetDateTime) -> DeviceLimits {
    let rules = &req.profile.rules;
    DeviceLimits {
        max_active: rules
            .max_active_certificates
            .filter(|_| matches!(req.operation, Operation::Enroll | Operation::Reenroll)),
        issued_since: rules.rate_limit.map(|limit| (limit.max, now - limit.per)),
    }
}

/// The key size in bits (the curve size for EC keys).
fn key_size(kind: PublicKeyKind) -> u32 {
    match kind {
        PublicKeyKind::EcP256 | PublicKeyKind::Ed25519 => 256,
        PublicKeyKind::EcP384 => 384,
        PublicKeyKind::Rsa { bits } => u32::try_from(bits).unwrap_or(u32::MAX),
    }
}

/// Checks that `expression` is a valid CEL expression that refers only to what a rule
/// sees (`request`, `client`, `device` with its `serial`, `status` and one field per name
/// in `connectors`, and `now`); the error says why not and where.
pub fn compile_rule(expression: &str, connectors: &[String]) -> Result<(), RaError> {
    let program = compile(expression)?;
    crate::cel_names::check_names(&program, expression, connectors)
}

/// Checks only that `expression` is valid CEL syntax. The names it refers to depend on the
/// whole configuration (the profile's connectors): [`compile_rule`] checks them.
pub fn check_rule_syntax(expression: &str) -> Result<(), RaError> {
    compile(expression).map(|_| ())
}

fn compile(expression: &str) -> Result<Program, RaError> {
    // The parser is third-party code fed operator text: a panic in it is an error here.
    std::panic::catch_unwind(|| Program::compile(expression))
        .map_err(|_| RaError::Expression("the CEL parser failed on this expression".into()))?
        .map_err(|e| RaError::Expression(e.to_string()))
}

/// Compiled CEL programs and serial patterns, by their text, and the environment the
/// programs run in. Only expressions and patterns from the configuration are ever compiled,
/// so the maps are as large as the configuration.
pub(crate) struct Programs {
    compiled: Mutex<HashMap<String, Arc<Program>>>,
    patterns: Mutex<HashMap<String, Arc<regex::Regex>>>,
    /// The CEL standard library (functions, macros, types), built once: `Context::default()`
    /// builds it anew, which cost more than the rest of a request's rule evaluation.
    env: Arc<cel::Env>,
}

impl Default for Programs {
    fn default() -> Self {
        Self {
            compiled: Mutex::default(),
            patterns: Mutex::default(),
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

impl Programs {
    fn program(&self, expression: &str) -> Result<Arc<Program>, RaError> {
        let mut map = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = map.get(expression) {
            return Ok(Arc::clone(p));
        }
        let program = Arc::new(compile(expression)?);
        map.insert(expression.to_string(), Arc::clone(&program));
        Ok(program)
    }

    /// `pattern` anchored at both ends (the whole serial must match).
    pub(crate) fn whole_match(&self, pattern: &str) -> Result<Arc<regex::Regex>, regex::Error> {
        let mut map = self.patterns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(re) = map.get(pattern) {
            return Ok(Arc::clone(re));
        }
        let re = Arc::new(crate::serial_scope::whole_serial_pattern(pattern)?);
        map.insert(pattern.to_string(), Arc::clone(&re));
        Ok(re)
    }
}

/// What the built-in rules established, for the configured ones.
pub(crate) struct Facts<'a> {
    pub device_serial: &'a str,
    pub device_status: Option<DeviceStatus>,
    pub now: OffsetDateTime,
}

/// What the configured rules read and write besides the request.
pub(crate) struct Env<'a> {
    pub inventory: &'a dyn InventoryReader,
    pub records: &'a dyn PolicyStore,
    pub programs: &'a Programs,
    pub connectors: &'a HashMap<String, Connector>,
    /// `fleetca policy test`: read, never write (no approval request is opened or claimed).
    pub dry_run: bool,
}

/// How the configured rules ended.
pub(crate) enum Flow {
    /// Denied, deferred or unavailable: this is the decision.
    Done(Box<Decision>),
    /// Every rule passed; issue (fulfilling this claimed approval request, if any).
    Issue { approval: Option<i64> },
}

/// How long a device waits before polling a pending approval again, by default.
pub(crate) const APPROVAL_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long one poll may hold an approved request while it is issued.
const APPROVAL_CLAIM: time::Duration = time::Duration::minutes(1);

/// Evaluates the profile's rules in order (eligibility, then approval), recording each in
/// `run` and stopping at the first that does not pass.
pub(crate) async fn evaluate(
    req: &EnrollmentRequest<'_>,
    facts: &Facts<'_>,
    env: &Env<'_>,
    run: &mut Run,
) -> Result<Flow, RaError> {
    let rules = &req.profile.rules;
    let device = facts.device_serial;
    let current = match req.client {
        ClientIdentity::OperationalCertificate { certificate } => Some(certificate),
        _ => None,
    };
    macro_rules! check {
        ($name:literal, $result:expr) => {
            if let Some(denied) = run.record($name, $result) {
                return Ok(Flow::Done(Box::new(denied)));
            }
        };
    }

    let limits = device_limits(req, facts.now);
    // Both limits' counts in one read of the device's certificates.
    let counts = if limits.is_none() {
        LimitCounts::default()
    } else {
        env.inventory
            .limit_counts(
                device,
                facts.now,
                limits.issued_since.map(|(_, since)| since),
            )
            .await?
    };
    if let Some(limit) = limits.max_active {
        let active = counts.active_operational;
        let replaced = u32::from(req.operation == Operation::Reenroll && current.is_some());
        let counted = active.saturating_sub(replaced);
        check!(
            "max-active-certificates",
            if counted >= limit {
                Err(format!(
                "device {device} already has {counted} active operational certificate(s); profile '{}' allows at most {limit}",
                req.profile.name
            ))
            } else {
                Ok(format!("{counted} of at most {limit} active certificates"))
            }
        );
    }

    if let (Some(permille), Operation::Reenroll, Some(cert)) =
        (rules.reenroll_after_permille, req.operation, current)
    {
        let lifetime = (cert.not_after - cert.not_before).whole_seconds();
        let from = cert.not_before
            + time::Duration::seconds(lifetime.saturating_mul(i64::from(permille)) / 1000);
        let result = if facts.now >= from {
            Ok(format!("re-enrollment window opened at {}", rfc3339(from)))
        } else {
            match env.records.reenroll_forced_until(device).await? {
                Some(until) if facts.now < until => Ok(format!(
                    "before the window ({}), forced by an operator until {}",
                    rfc3339(from),
                    rfc3339(until)
                )),
                _ => Err(format!(
                    "re-enrollment is allowed from {} ({}.{:03} of the current certificate's lifetime, profile '{}')",
                    rfc3339(from),
                    permille / 1000,
                    permille % 1000,
                    req.profile.name
                )),
            }
        };
        check!("reenroll-window", result);
    }

    if let (Some(limit), Some((_, since))) = (rules.rate_limit, limits.issued_since) {
        let issued = counts.issued_since;
        check!(
            "rate-limit",
            if issued >= limit.max {
                Err(format!(
                "device {device} was issued {issued} certificate(s) since {}; profile '{}' allows {} per {}",
                rfc3339(since),
                req.profile.name,
                limit.max,
                span(limit.per)
            ))
            } else {
                Ok(format!(
                    "{issued} of {} certificates per {}",
                    limit.max,
                    span(limit.per)
                ))
            }
        );
    }

    // Inventories: each named directory, in order; what they return is `device.<name>`.
    let mut records: Vec<(&str, Option<DirectoryRecord>)> = Vec::new();
    for name in &rules.connectors {
        let connector = env.connectors.get(name).ok_or_else(|| {
            RaError::Configuration(format!(
                "profile '{}' names connector '{name}', which is not configured",
                req.profile.name
            ))
        })?;
        match connector.directory.lookup(device).await {
            Ok(Some(record)) => {
                run.record("inventory", Ok(format!("device {device} is in '{name}'")));
                records.push((name, Some(record)));
            }
            Ok(None) => match connector.on_unknown {
                OnUnknown::Deny => {
                    return Ok(Flow::Done(Box::new(run.deny(
                        "inventory",
                        format!("device {device} is not in the inventory '{name}'"),
                    ))))
                }
                OnUnknown::Allow => {
                    run.record(
                        "inventory",
                        Ok(format!("device {device} is not in '{name}' (allowed)")),
                    );
                    records.push((name, None));
                }
            },
            Err(e) => {
                tracing::warn!(connector = %name, device, error = %e, "inventory lookup failed");
                match connector.on_error {
                    OnError::Unavailable { retry_after } => {
                        run.fail("inventory", format!("'{name}' could not answer: {e}"));
                        return Ok(Flow::Done(Box::new(run.finish(Outcome::Unavailable {
                            rule: "inventory",
                            retry_after,
                        }))));
                    }
                    OnError::Deny => {
                        run.fail("inventory", format!("'{name}' could not answer: {e}"));
                        return Ok(Flow::Done(Box::new(run.finish(Outcome::Deny {
                            rule: "inventory",
                            reason: format!(
                                "the inventory '{name}' could not confirm device {device}"
                            ),
                        }))));
                    }
                    OnError::Skip => {
                        run.record(
                            "inventory",
                            Ok(format!(
                                "'{name}' could not answer ({e}); skipped as configured"
                            )),
                        );
                        records.push((name, None));
                    }
                }
            }
        }
    }

    if rules.custom.is_empty() && rules.manual_approval.is_none() {
        return Ok(Flow::Issue { approval: None });
    }
    let context = context(req, facts, &records, &env.programs.env);
    for rule in &rules.custom {
        check!("custom-rule", run_rule(rule, env.programs, &context));
    }

    let Some(expression) = &rules.manual_approval else {
        return Ok(Flow::Issue { approval: None });
    };
    let needed = match approval_needed(expression, env.programs, &context) {
        Ok(false) => {
            run.record("manual-approval", Ok("no approval needed".into()));
            return Ok(Flow::Issue { approval: None });
        }
        Ok(true) => "the profile's manual_approval expression is true".to_string(),
        // Fail closed: a person decides what the expression could not.
        Err(e) => format!("manual_approval could not be evaluated ({e}); a person decides"),
    };
    let retry_after = rules
        .approval_retry_after
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(APPROVAL_RETRY_AFTER);
    approval(req, facts, env, run, needed, retry_after).await
}

/// The approval stage of a request that needs one.
async fn approval(
    req: &EnrollmentRequest<'_>,
    facts: &Facts<'_>,
    env: &Env<'_>,
    run: &mut Run,
    needed: String,
    retry_after: Duration,
) -> Result<Flow, RaError> {
    let device = facts.device_serial;
    let key = request_key(req, device);
    let existing = env.records.approval_by_key(&key).await?;
    let pending = |run: &mut Run, id: i64, detail: String, retry_after: Duration| {
        run.fail("manual-approval", detail);
        Flow::Done(Box::new(run.finish(Outcome::Pending {
            device_serial: device.to_string(),
            approval: id,
            retry_after,
        })))
    };
    match existing {
        Some(a) if a.state == ApprovalState::Issued => {
            let serial = a.certificate_serial.unwrap_or_default();
            let Some(issued) = env.inventory.certificate(&serial).await? else {
                return Err(RaError::Inventory(StoreError::NotFound(format!(
                    "certificate {serial} of approval request {}",
                    a.id
                ))));
            };
            run.record(
                "manual-approval",
                Ok(format!(
                    "request {} was approved and issued as {serial}",
                    a.id
                )),
            );
            Ok(Flow::Done(Box::new(run.finish(Outcome::AlreadyIssued {
                device_serial: device.to_string(),
                certificate_serial: serial,
                der: issued.der,
            }))))
        }
        Some(a) if a.state == ApprovalState::Rejected => {
            let why = a
                .decision_reason
                .map_or_else(String::new, |r| format!(": {r}"));
            Ok(Flow::Done(Box::new(run.deny(
                "manual-approval",
                format!("request {} was rejected by an operator{why}", a.id),
            ))))
        }
        Some(a) if a.state == ApprovalState::Approved => {
            let by = a.decided_by.unwrap_or_default();
            if env.dry_run {
                run.record(
                    "manual-approval",
                    Ok(format!("request {} approved by {by}", a.id)),
                );
                return Ok(Flow::Issue { approval: None });
            }
            let until = facts.now + APPROVAL_CLAIM;
            if env.records.claim_approval(a.id, facts.now, until).await? {
                run.record(
                    "manual-approval",
                    Ok(format!("request {} approved by {by}", a.id)),
                );
                Ok(Flow::Issue {
                    approval: Some(a.id),
                })
            } else {
                // Another poll of the same request is issuing it right now.
                Ok(pending(
                    run,
                    a.id,
                    format!("request {} approved; being issued by another poll", a.id),
                    Duration::from_secs(5),
                ))
            }
        }
        _ if env.dry_run => Ok(pending(
            run,
            0,
            format!("{needed}: the request would wait for approval"),
            retry_after,
        )),
        _ => {
            let opened = env
                .records
                .open_approval(NewApproval {
                    request_key: key,
                    device_serial: device.to_string(),
                    label: req.label.map(str::to_string),
                    profile: req.profile.name.clone(),
                    operation: req.operation.name().to_string(),
                    client: req.client.describe(),
                    reason: needed.clone(),
                    created_at: facts.now,
                })
                .await?;
            Ok(pending(
                run,
                opened.id,
                format!("{needed}: waiting for an operator (request {})", opened.id),
                retry_after,
            ))
        }
    }
}

/// What makes a poll "the same request": profile, device, operation and the CSR's key.
pub(crate) fn request_key(req: &EnrollmentRequest<'_>, device: &str) -> String {
    let spki = fleetca_pki::spki_sha256(req.csr.spki_der());
    let text = format!(
        "{}\n{device}\n{}\n{spki}",
        req.profile.name,
        req.operation.name()
    );
    fleetca_pki::spki_sha256(text.as_bytes())
}

fn approval_needed(
    expression: &str,
    programs: &Programs,
    context: &Context<'_, '_>,
) -> Result<bool, String> {
    let program = programs.program(expression).map_err(|e| e.to_string())?;
    let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(context)))
        .map_err(|_| "evaluation failed".to_string())?;
    match value {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("a {}, not a bool", other.type_of())),
        Err(e) => Err(e.to_string()),
    }
}

fn span(d: time::Duration) -> String {
    let s = d.whole_seconds();
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn run_rule(
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

fn context(
    req: &EnrollmentRequest<'_>,
    facts: &Facts<'_>,
    records: &[(&str, Option<DirectoryRecord>)],
    env: &Arc<cel::Env>,
) -> Context<'static, 'static> {
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
        ("key_size", i64::from(key_size(csr.key_kind())).into()),
        ("label", req.label.map(str::to_string).into()),
        ("operation", req.operation.name().into()),
    ]);
    let certificate = match req.client {
        ClientIdentity::BirthCertificate { certificate, .. }
        | ClientIdentity::OperationalCertificate { certificate }
        | ClientIdentity::Station { certificate, .. } => Some(certificate),
        ClientIdentity::Administrator { .. }
        | ClientIdentity::Account { .. }
        | ClientIdentity::EnrollmentSecret { .. } => None,
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
    let mut device: HashMap<String, Value> = HashMap::from([
        ("serial".to_string(), facts.device_serial.into()),
        (
            "status".to_string(),
            facts.device_status.map(|s| s.to_string()).into(),
        ),
    ]);
    for (name, record) in records {
        let value = match record {
            // A record is a JSON object; serialising it to CEL cannot fail, but if it
            // did, the rule sees null and fails closed.
            Some(r) => cel::to_value(r).unwrap_or(Value::Null),
            None => Value::Null,
        };
        device.insert((*name).to_string(), value);
    }
    let mut context = Context::with_env(Arc::clone(env));
    context.add_variable_from_value("request", request);
    context.add_variable_from_value("client", client);
    context.add_variable_from_value("device", device);
    context.add_variable_from_value("now", facts.now.unix_timestamp());
    context
}
