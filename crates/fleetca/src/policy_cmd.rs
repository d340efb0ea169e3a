//! Operator commands around the RA: the approval queue (`fleetca request ...`), the decision
//! log (`fleetca decision list`), re-enrollment overrides (`fleetca device force-reenroll`)
//! and offline policy evaluation (`fleetca policy test`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use fleetca_pki::{CertificateInfo, CertificateRequest, SystemClock};
use fleetca_ra::{
    ChannelBinding, ClientIdentity, EnrollmentRequest, Operation, Outcome, Policy,
    RegistrationAuthority,
};
use fleetca_store::{ApprovalRecord, ApprovalState};

use crate::admin::{date, load, rfc3339, runtime, Page};
use crate::config::Config;
use crate::output::{summary, Format, Listing};

fn print_approval(a: &ApprovalRecord) -> anyhow::Result<()> {
    let r = &a.request;
    outln!(
        "{:>6}  {}  {:<9}  {:<16}  {:<14}  {:<12}  polls {:<4}  {}",
        a.id,
        date(r.created_at),
        a.state,
        r.device_serial,
        r.operation,
        r.label.as_deref().unwrap_or("-"),
        a.polls,
        match (
            a.state,
            &a.decided_by,
            &a.decision_reason,
            &a.certificate_serial
        ) {
            (ApprovalState::Issued, _, _, Some(serial)) => format!("certificate {serial}"),
            (_, Some(by), Some(reason), _) => format!("by {by}: {reason}"),
            (_, Some(by), None, _) => format!("by {by}"),
            _ => r.reason.clone(),
        }
    );
    Ok(())
}

/// `fleetca request list`.
pub fn request_list(data_dir: &Path, all: bool, limit: u32) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let state = (!all).then_some(ApprovalState::Pending);
    let requests = runtime()?.block_on(store.approvals(state, limit))?;
    outln!(
        "{:>6}  {:<19}  {:<9}  {:<16}  {:<14}  {:<12}  {:<10}  WHY",
        "ID",
        "CREATED",
        "STATE",
        "DEVICE",
        "OPERATION",
        "LABEL",
        "POLLS"
    );
    for a in &requests {
        print_approval(a)?;
    }
    eprintln!(
        "{} {}request(s)",
        requests.len(),
        if all { "" } else { "pending " }
    );
    Ok(())
}

/// `fleetca request approve ID` / `fleetca request reject ID --reason ...`.
pub fn request_decide(
    data_dir: &Path,
    id: i64,
    approve: bool,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let decided = runtime()?.block_on(fleetca_admin::decide_request(
        store.as_ref(),
        &fleetca_admin::Actor::cli(),
        id,
        approve,
        reason,
    ))?;
    print_approval(&decided)?;
    eprintln!(
        "fleetca: request {id} {}; the device gets {} when it polls again",
        decided.state,
        if approve {
            "its certificate"
        } else {
            "403 Forbidden"
        }
    );
    Ok(())
}

/// `fleetca decision list`: the newest `limit` decisions (below `--before`), oldest first.
pub fn decision_list(
    data_dir: &Path,
    device: Option<&str>,
    page: Page,
    verbose: bool,
    format: Format,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let limit = page.limit;
    let mut decisions =
        runtime()?.block_on(store.decision_page(device, page.before, limit.saturating_add(1)))?;
    let cut = decisions.len() > limit as usize;
    decisions.truncate(limit as usize);
    let more = decisions.last().map_or_else(String::new, |oldest| {
        format!("older ones: the same command with --before {}", oldest.id)
    });
    let more = more.as_str();
    if format != Format::Table {
        let mut list = Listing::new(&[
            "id",
            "at",
            "outcome",
            "device",
            "operation",
            "label",
            "profile",
            "rule",
            "reason",
            "certificate",
            "checks",
        ]);
        for r in decisions.iter().rev() {
            let d = &r.decision;
            let checks: Vec<serde_json::Value> = d
                .checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "stage": c.stage, "rule": c.rule, "passed": c.passed, "detail": c.detail
                    })
                })
                .collect();
            list.push(vec![
                r.id.into(),
                rfc3339(d.at).into(),
                d.outcome.as_str().into(),
                d.device_serial.clone().into(),
                d.operation.clone().into(),
                d.label.clone().into(),
                d.profile.clone().into(),
                d.rule.clone().into(),
                d.reason.clone().into(),
                d.certificate_serial.clone().into(),
                if format == Format::Json {
                    checks.into()
                } else {
                    // CSV: one cell, every rule as stage/rule=pass|FAIL.
                    d.checks
                        .iter()
                        .map(|c| {
                            format!(
                                "{}/{}={}",
                                c.stage,
                                c.rule,
                                if c.passed { "pass" } else { "FAIL" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                        .into()
                },
            ]);
        }
        list.print(format)?;
        summary(decisions.len(), "decision(s)", cut, more);
        return Ok(());
    }
    outln!(
        "{:>7}  {:<19}  {:<11}  {:<16}  {:<14}  {:<12}  RESULT",
        "ID",
        "AT",
        "OUTCOME",
        "DEVICE",
        "OPERATION",
        "LABEL"
    );
    for r in decisions.iter().rev() {
        let d = &r.decision;
        // Reasons and details can quote request text: never raw to the terminal.
        let shown = |s: &str| fleetca_pki::escape_controls(s).into_owned();
        outln!(
            "{:>7}  {}  {:<11}  {:<16}  {:<14}  {:<12}  {}",
            r.id,
            date(d.at),
            d.outcome.as_str(),
            shown(d.device_serial.as_deref().unwrap_or("-")),
            d.operation,
            shown(d.label.as_deref().unwrap_or("-")),
            shown(&match (&d.rule, &d.reason, &d.certificate_serial) {
                (_, _, Some(serial)) => format!("certificate {serial}"),
                (Some(rule), Some(reason), _) => format!("{rule}: {reason}"),
                (Some(rule), None, _) => rule.clone(),
                _ => String::new(),
            })
        );
        if verbose {
            for c in &d.checks {
                outln!(
                    "           {:<14}  {:<26}  {:<4}  {}",
                    c.stage,
                    c.rule,
                    if c.passed { "pass" } else { "FAIL" },
                    shown(&c.detail)
                );
            }
        }
    }
    summary(decisions.len(), "decision(s)", cut, more);
    for line in refusal_notes(&decisions) {
        eprintln!("{line}");
    }
    Ok(())
}

/// For each device whose latest listed decision is a refusal: when it was refused, by
/// which rule, and when its agent asks again (the agent's refusal back-off), so an
/// operator who fixed the cause knows what to expect. Newest first, at most 20.
fn refusal_notes(decisions: &[fleetca_store::DecisionRecord]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut notes = Vec::new();
    // `decisions` is newest first.
    for r in decisions {
        let d = &r.decision;
        let Some(device) = d.device_serial.as_deref() else {
            continue;
        };
        if !seen.insert(device) {
            continue;
        }
        if d.outcome.as_str() == "denied" && notes.len() < 20 {
            notes.push(format!(
                "{}: last refused {} by rule {}",
                fleetca_pki::escape_controls(device),
                date(d.at),
                d.rule.as_deref().unwrap_or("-")
            ));
        }
    }
    if !notes.is_empty() {
        notes.push("fleetca-agent asks again after its refusal back-off (renewal.denied_initial, 5 min by default, doubled per refusal in a row up to denied_retry, 6 h); `fleetca-agent once --now` on the device asks at once".into());
    }
    notes
}

/// `fleetca device force-reenroll SERIAL --for DURATION`.
pub fn force_reenroll(
    data_dir: &Path,
    serial: &str,
    window: time::Duration,
    comment: Option<&str>,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let until = runtime()?.block_on(fleetca_admin::force_reenroll(
        store.as_ref(),
        &fleetca_admin::Actor::cli(),
        serial,
        window,
        comment,
    ))?;
    eprintln!(
        "fleetca: {serial} may re-enroll before its profile's window until {} UTC",
        date(until)
    );
    Ok(())
}

/// Who `fleetca policy test` evaluates as.
pub struct TestClient<'a> {
    /// A client certificate (PEM or DER): birth or operational, told by its issuer.
    pub certificate: Option<&'a Path>,
    /// An enrollment account.
    pub account: Option<&'a str>,
}

/// `fleetca policy test`: the rules of a label, evaluated offline, as a table.
/// Returns whether the request would be issued.
pub fn policy_test(
    data_dir: &Path,
    label: Option<&str>,
    csr_path: &Path,
    client: TestClient<'_>,
) -> anyhow::Result<bool> {
    let (config, store) = load(data_dir)?;
    let profile_name = match label {
        Some(l) => config
            .est_labels
            .get(l)
            .with_context(|| format!("no EST label '{l}' in the configuration"))?,
        None => &config.est_profile,
    };
    let profile = config.profile(profile_name)?.clone();
    let csr = CertificateRequest::from_der(&crate::admin::read_csr(csr_path)?)
        .with_context(|| format!("CSR {}", csr_path.display()))?;
    let (identity, operation) = identity(&config, &profile, &csr, &client, &store)?;
    let policy = Policy::new(
        Arc::clone(&store) as Arc<dyn fleetca_store::InventoryReader>,
        Arc::clone(&store) as Arc<dyn fleetca_store::PolicyStore>,
        Arc::new(SystemClock),
    )
    .with_connectors(config.connectors()?)
    .dry_run();
    let decision = runtime()?.block_on(policy.decide(&EnrollmentRequest {
        operation,
        label,
        profile: &profile,
        client: &identity,
        csr: &csr,
        channel_binding: &ChannelBinding::Unavailable,
        reissue: false,
        admitted: None,
    }))?;
    outln!(
        "{} under profile '{}' as {}",
        operation.name(),
        profile.name,
        identity.describe()
    );
    outln!("{:<14}  {:<26}  {:<4}  detail", "stage", "rule", "");
    for c in &decision.checks {
        outln!(
            "{:<14}  {:<26}  {:<4}  {}",
            c.stage,
            c.rule,
            if c.passed { "pass" } else { "FAIL" },
            c.detail
        );
    }
    let issued = matches!(decision.outcome, Outcome::Issue { .. });
    outln!("outcome: {decision}");
    Ok(issued)
}

fn identity(
    config: &Config,
    profile: &fleetca_pki::CertificateProfile,
    csr: &CertificateRequest,
    client: &TestClient<'_>,
    store: &Arc<dyn fleetca_store::Store>,
) -> anyhow::Result<(ClientIdentity, Operation)> {
    let birth_profile = profile.issuer == "manufacturing";
    match (client.certificate, client.account) {
        (Some(_), Some(_)) => bail!("give --client-cert or --account, not both"),
        (Some(path), None) => {
            let der = crate::files::read_certificate(path)?;
            let info = CertificateInfo::from_der(&der)
                .map_err(|e| anyhow::anyhow!("client certificate {}: {e}", path.display()))?;
            let operational = crate::files::read_certificate(&config.operational_certificate)?;
            let manufacturing = crate::files::read_certificate(&config.manufacturing_certificate)?;
            if signed_by(&der, &operational)? {
                Ok((
                    ClientIdentity::OperationalCertificate { certificate: info },
                    Operation::Reenroll,
                ))
            } else if signed_by(&der, &manufacturing)? {
                Ok((
                    ClientIdentity::BirthCertificate {
                        issuer: "manufacturing".into(),
                        issued_here: true,
                        certificate: info,
                    },
                    Operation::Enroll,
                ))
            } else {
                for (name, ca) in crate::pki_setup::load_manufacturer_cas(&config.manufacturer_cas)?
                {
                    if signed_by(&der, &ca)? {
                        return Ok((
                            ClientIdentity::BirthCertificate {
                                issuer: name,
                                issued_here: false,
                                certificate: info,
                            },
                            Operation::Enroll,
                        ));
                    }
                }
                bail!(
                    "client certificate {} was issued by none of this fleetca's CAs or trusted manufacturer CAs",
                    path.display()
                )
            }
        }
        (None, Some(name)) => {
            let account = runtime()?
                .block_on(store.account(name))?
                .with_context(|| format!("no enrollment account '{name}'"))?;
            Ok((
                ClientIdentity::Account {
                    name: account.name,
                    label: account.label,
                    serial_pattern: account.serial_pattern,
                    any_serial: account.any_serial,
                    known_devices: account.known_devices,
                },
                Operation::Enroll,
            ))
        }
        (None, None) if birth_profile => {
            let device_serial = csr
                .subject_serial_number()
                .context("the CSR subject names no serialNumber")?
                .to_string();
            Ok((
                ClientIdentity::Administrator { device_serial },
                Operation::Birth,
            ))
        }
        (None, None) => bail!(
            "say who asks: --client-cert FILE (a birth or operational certificate) or --account NAME"
        ),
    }
}

fn signed_by(der: &[u8], ca_der: &[u8]) -> anyhow::Result<bool> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).context("client certificate")?;
    let (_, ca) = X509Certificate::from_der(ca_der).context("CA certificate")?;
    Ok(cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok())
}
