//! The fleet on the command line: `fleetca device list` and `fleetca device show`.

use std::path::Path;

use anyhow::bail;
use fleetca_store::{CertificateKind, CertificateQuery, DeviceQuery, DeviceSummary};
use serde_json::{json, Value};

use crate::admin::{load, rfc3339, runtime};
use crate::output::{summary, Format, Listing};

/// `fleetca device list`: devices by serial, filtered, one page at a time.
pub fn list(data_dir: &Path, mut query: DeviceQuery, format: Format) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let limit = query.limit;
    query.limit = limit.saturating_add(1);
    let mut devices = runtime()?.block_on(store.devices(&query))?;
    let cut = devices.len() > limit as usize;
    devices.truncate(limit as usize);
    let mut table = Listing::new(&[
        "serial",
        "status",
        "profile",
        "birth_issuer",
        "station",
        "model",
        "batch",
        "first_seen",
    ]);
    for d in &devices {
        table.push(vec![
            d.serial_number.clone().into(),
            d.status.as_str().into(),
            d.profile.clone().into(),
            d.birth_issuer.clone().into(),
            d.station.clone().into(),
            d.model.clone().into(),
            d.batch.clone().into(),
            rfc3339(d.created_at).into(),
        ]);
    }
    table.print(format)?;
    let more = match devices.last() {
        Some(last) => format!(
            "the next page: the same command with --after {}",
            last.serial_number
        ),
        None => String::new(),
    };
    summary(devices.len(), "device(s)", cut, &more);
    Ok(())
}

fn device_json(d: &DeviceSummary) -> Value {
    json!({
        "serial": d.serial_number,
        "status": d.status.as_str(),
        "profile": d.profile,
        "birth_issuer": d.birth_issuer,
        "station": d.station,
        "model": d.model,
        "batch": d.batch,
        "first_seen": rfc3339(d.created_at),
        "last_change": rfc3339(d.updated_at),
    })
}

/// How many of the newest decisions `device show` includes.
const SHOWN_DECISIONS: u32 = 5;

/// `fleetca device show SN`: the device, its certificate lineage (birth, operational,
/// renewals), its newest decisions and its open escalations.
pub fn show(data_dir: &Path, serial: &str, format: Format) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let rt = runtime()?;
    let Some(device) = rt.block_on(store.device_summary(serial))? else {
        bail!("no device {serial} in the inventory (`fleetca device list --serial-prefix` finds serials)");
    };
    let mut certificates = rt.block_on(store.certificates(&CertificateQuery {
        device_serial: Some(serial.to_string()),
        limit: Some(10_000),
        ..CertificateQuery::default()
    }))?;
    // Lineage order: birth certificates first, then operational ones as issued; within the
    // same second, a renewal after the certificate it renews (its depth in the chain).
    let replaces: std::collections::HashMap<String, Option<String>> = certificates
        .iter()
        .map(|c| (c.serial.clone(), c.replaces.clone()))
        .collect();
    let depth = |serial: &str| {
        let mut depth = 0usize;
        let mut at = replaces.get(serial).cloned().flatten();
        // Bounded by the number of certificates, whatever the stored links say.
        while let Some(previous) = at.filter(|_| depth < replaces.len()) {
            depth += 1;
            at = replaces.get(&previous).cloned().flatten();
        }
        depth
    };
    certificates.sort_by_cached_key(|c| {
        (
            c.kind != CertificateKind::Birth,
            c.issued_at,
            depth(&c.serial),
        )
    });
    let decisions = rt.block_on(store.decisions(Some(serial), SHOWN_DECISIONS))?;
    let escalations: Vec<_> = rt
        .block_on(store.open_escalations())?
        .into_iter()
        .filter(|e| e.device_serial == serial)
        .collect();

    let role = |c: &fleetca_store::CertificateRecord| match (c.kind, &c.replaces) {
        (CertificateKind::Birth, _) => "birth",
        (_, Some(_)) => "renewal",
        _ => "operational",
    };
    if format != Format::Table {
        let value = json!({
            "device": device_json(&device),
            "certificates": certificates.iter().map(|c| json!({
                "role": role(c),
                "serial": c.serial,
                "kind": c.kind.as_str(),
                "status": c.status.as_str(),
                "issuer": c.issuer,
                "profile": c.profile,
                "not_before": rfc3339(c.not_before),
                "not_after": rfc3339(c.not_after),
                "renews": c.replaces,
                "renewed_by": c.replaced_by,
                "revocation_reason": c.revocation_reason,
            })).collect::<Vec<_>>(),
            "decisions": decisions.iter().map(|r| json!({
                "id": r.id,
                "at": rfc3339(r.decision.at),
                "operation": r.decision.operation,
                "outcome": r.decision.outcome.as_str(),
                "rule": r.decision.rule,
                "reason": r.decision.reason,
                "certificate": r.decision.certificate_serial,
            })).collect::<Vec<_>>(),
            "open_escalations": escalations.iter().map(|e| json!({
                "kind": e.kind.as_str(),
                "tier": e.tier,
                "certificate": Some(&e.certificate_serial).filter(|s| !s.is_empty()),
                "not_after": e.not_after.map(rfc3339),
                "opened_at": rfc3339(e.opened_at),
                "notified_at": e.notified_at.map(rfc3339),
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    outln!("device:       {}", device.serial_number);
    outln!("status:       {}", device.status);
    outln!("profile:      {}", dash(&device.profile));
    outln!("birth issuer: {}", dash(&device.birth_issuer));
    outln!("station:      {}", dash(&device.station));
    outln!("model:        {}", dash(&device.model));
    outln!("batch:        {}", dash(&device.batch));
    outln!("first seen:   {}", rfc3339(device.created_at));
    outln!("last change:  {}", rfc3339(device.updated_at));
    outln!();
    outln!("certificates (birth -> operational -> renewals):");
    let mut list = Listing::new(&["role", "serial", "status", "issuer", "not_after", "renews"]);
    for c in &certificates {
        list.push(vec![
            role(c).into(),
            c.serial.clone().into(),
            c.status.as_str().into(),
            c.issuer.clone().into(),
            rfc3339(c.not_after).into(),
            c.replaces.clone().into(),
        ]);
    }
    list.print(Format::Table)?;
    outln!();
    outln!("last {SHOWN_DECISIONS} decisions (`fleetca decision list --device {serial} --verbose` for every rule):");
    let mut list = Listing::new(&["id", "at", "operation", "outcome", "why"]);
    for r in decisions.iter().rev() {
        let d = &r.decision;
        let why = match (&d.certificate_serial, &d.rule, &d.reason) {
            (Some(s), _, _) => format!("certificate {s}"),
            (None, Some(rule), Some(reason)) => format!("{rule}: {reason}"),
            (None, Some(rule), None) => rule.clone(),
            _ => String::new(),
        };
        list.push(vec![
            r.id.into(),
            rfc3339(d.at).into(),
            d.operation.clone().into(),
            d.outcome.as_str().into(),
            why.into(),
        ]);
    }
    list.print(Format::Table)?;
    outln!();
    if escalations.is_empty() {
        outln!("open escalations: none");
    } else {
        outln!("open escalations:");
        let mut list = Listing::new(&["kind", "tier", "not_after", "opened_at", "notified_at"]);
        for e in &escalations {
            list.push(vec![
                e.kind.as_str().into(),
                e.tier.clone().into(),
                e.not_after.map(rfc3339).into(),
                rfc3339(e.opened_at).into(),
                e.notified_at.map(rfc3339).into(),
            ]);
        }
        list.print(Format::Table)?;
    }
    Ok(())
}
