//! Administration commands that work directly on the data directory.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use fleetca_admin::Actor;
use fleetca_ca::CertificateAuthority;
use fleetca_pki::{
    pem_certificate, CertificateInfo, CertificateRequest, CertificateSerial, Clock, IssuanceOrder,
    RevocationReason, SystemClock,
};
use fleetca_ra::{
    ChannelBinding, ClientIdentity, Conclusion, EnrollmentRequest, Operation, Outcome, Policy,
    RegistrationAuthority,
};
use fleetca_store::{
    AuditEvent, BirthContext, CertificateQuery, InventoryReader, ManufacturerRecord, NewAccount,
    PolicyStore, Store,
};
use time::OffsetDateTime;

use crate::config::Config;
use crate::files::write_atomic;
use crate::output::{summary, Format, Listing};
use crate::pki_setup::config_path;
use fleetca_pki::HumanDuration;

/// The configuration and inventory of a data directory, or a clear error if it has none.
pub(crate) fn load(data_dir: &Path) -> anyhow::Result<(Config, Arc<dyn Store>)> {
    let path = config_path(data_dir);
    if !path.exists() {
        return Err(crate::pki_setup::missing_data_dir(data_dir));
    }
    let config = Config::load(&path)?;
    let store = fleetca_store::open(&config.database)?;
    Ok((config, store))
}

/// A runtime for one administration command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Which devices an account may enroll (`account add`).
pub struct AccountScope {
    /// Regular expression the whole serial must match.
    pub serial_pattern: Option<String>,
    /// Without a pattern: any serial.
    pub any_serial: bool,
    /// Also devices the inventory already knows.
    pub known_devices: bool,
}

/// `fleetca account add`.
pub fn account_add(
    data_dir: &Path,
    name: &str,
    label: Option<String>,
    scope: AccountScope,
    password_stdin: bool,
    comment: Option<&str>,
) -> anyhow::Result<()> {
    let AccountScope {
        serial_pattern,
        any_serial,
        known_devices,
    } = scope;
    let (config, store) = load(data_dir)?;
    if let Some(l) = &label {
        if !config.est_labels.contains_key(l) {
            bail!(
                "label '{l}' is not configured under [est.labels] in {}",
                config_path(data_dir).display()
            );
        }
    }
    fleetca_admin::validate_account_name(name)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if let Some(why) = fleetca_admin::password_weakness(&p, name) {
            bail!("the password read from stdin is too weak: {why}. Use at least 12 characters with three of lower-case, upper-case, digits and other characters (or a passphrase of 20 or more), or leave out --password-stdin to have one generated");
        }
        (p, false)
    } else {
        let mut bytes = [0u8; 18];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        (
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes),
            true,
        )
    };
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
        .to_string();
    let account = NewAccount {
        name: name.to_string(),
        password_hash: hash,
        label,
        serial_pattern,
        any_serial,
        known_devices,
        created_at: OffsetDateTime::now_utc(),
    };
    runtime()?.block_on(fleetca_admin::add_account(
        store.as_ref(),
        &Actor::cli(),
        account,
        comment,
    ))?;
    if generated {
        outln!("{password}");
        eprintln!("fleetca: account '{name}' added; the password above is shown once.");
    } else {
        eprintln!("fleetca: account '{name}' added.");
    }
    Ok(())
}

pub(crate) fn read_csr(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        use rustls_pki_types::pem::PemObject;
        let csr = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(&bytes)
            .with_context(|| format!("{} is not a PEM certificate request", path.display()))?;
        Ok(csr.as_ref().to_vec())
    } else {
        Ok(bytes)
    }
}

/// `fleetca device birth`: the same RA rules and CA path as EST, with the administrator
/// as the authenticated party.
pub fn device_birth(
    data_dir: &Path,
    serial: &str,
    csr_path: &Path,
    out: Option<&Path>,
    reissue: bool,
) -> anyhow::Result<()> {
    let (config, store) = load(data_dir)?;
    let profile = config.profile("birth")?.clone();
    let csr = CertificateRequest::from_der(&read_csr(csr_path)?)
        .with_context(|| format!("CSR {}", csr_path.display()))?;
    let keys = crate::keys::KeySource::new(&config)?;
    let manufacturing =
        crate::ca_cmd::issuing_issuer(&config, &keys, store.as_ref(), "manufacturing")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ca = CertificateAuthority::new(
        [manufacturing],
        Arc::clone(&store) as Arc<dyn fleetca_store::CertificateLedger>,
        Arc::clone(&clock),
    );
    let ra = Policy::new(
        Arc::clone(&store) as Arc<dyn InventoryReader>,
        Arc::clone(&store) as Arc<dyn PolicyStore>,
        clock,
    );
    let client = ClientIdentity::Administrator {
        device_serial: serial.to_string(),
    };
    let issued = runtime()?.block_on(async {
        let request = EnrollmentRequest {
            operation: Operation::Birth,
            label: None,
            profile: &profile,
            client: &client,
            csr: &csr,
            channel_binding: &ChannelBinding::Unavailable,
            reissue,
            admitted: None,
        };
        let decision = ra.decide(&request).await?;
        let outcome = match &decision.outcome {
            Outcome::Issue {
                device_serial,
                reissue,
                ..
            } => Ok((device_serial.clone(), *reissue)),
            Outcome::Deny { rule, reason } => Err(format!("refused by rule '{rule}': {reason}")),
            Outcome::Unavailable { rule, .. } => Err(format!(
                "rule '{rule}' cannot be evaluated now (an inventory did not answer); retry later"
            )),
            Outcome::Pending { approval, .. } => Err(format!(
                "the birth profile sends this request for approval: approve request {approval} with `fleetca request approve {approval}`, then run this again"
            )),
            Outcome::AlreadyIssued {
                certificate_serial, ..
            } => Err(format!(
                "this approved request was issued as certificate {certificate_serial}"
            )),
        };
        let conclusion = match &outcome {
            Ok(_) => None,
            Err(_) => Some(Conclusion::NotIssued),
        };
        if let Some(c) = conclusion {
            ra.conclude(&request, &decision, c).await?;
        }
        let audit = |outcome: &str, detail: String| AuditEvent {
            at: OffsetDateTime::now_utc(),
            actor: Actor::cli().to_string(),
            action: "birth".into(),
            subject: serial.to_string(),
            outcome: outcome.into(),
            detail,
        };
        let (device_serial, reissue) = match outcome {
            Ok(o) => o,
            Err(reason) => {
                store.append(audit("refused", reason.clone())).await?;
                bail!("{reason}");
            }
        };
        let issued = ca
            .issue_birth(
                &profile,
                IssuanceOrder {
                    device_serial,
                    spki_der: csr.spki_der().to_vec(),
                },
                BirthContext {
                    reissue,
                    ..BirthContext::default()
                },
            )
            .await?;
        let serial_hex = issued.serial.to_string();
        ra.conclude(
            &request,
            &decision,
            Conclusion::Issued {
                certificate_serial: &serial_hex,
            },
        )
        .await?;
        store
            .append(audit("granted", format!("certificate {}", issued.serial)))
            .await?;
        Ok(issued)
    })?;
    let pem = pem_certificate(&issued.der);
    match out {
        Some(path) => {
            write_atomic(path, pem.as_bytes(), 0o644, false)?;
            eprintln!(
                "fleetca: birth certificate {} for {serial} written to {} (valid until {})",
                issued.serial,
                path.display(),
                date(issued.not_after)
            );
        }
        None => out!("{pem}"),
    }
    Ok(())
}

/// What `fleetca cert list` filters on.
pub struct CertFilter {
    /// Only this device's certificates.
    pub device: Option<String>,
    /// Only unexpired certificates expiring within this time.
    pub expiring_within: Option<HumanDuration>,
    /// At most this many rows.
    pub limit: u32,
}

/// `fleetca cert list`.
pub fn cert_list(data_dir: &Path, filter: CertFilter, format: Format) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let now = OffsetDateTime::now_utc();
    let query = CertificateQuery {
        device_serial: filter.device,
        expiring_before: filter.expiring_within.map(|d| now + d.to_time()),
        not_expired_at: filter.expiring_within.map(|_| now),
        status: None,
        limit: Some(filter.limit.saturating_add(1)),
    };
    let mut rows = runtime()?.block_on(store.certificates(&query))?;
    let cut = rows.len() > filter.limit as usize;
    rows.truncate(filter.limit as usize);
    let mut list = Listing::new(&[
        "serial",
        "device",
        "kind",
        "status",
        "profile",
        "not_after",
        "expired",
        "renewed_by",
    ]);
    for c in &rows {
        list.push(vec![
            c.serial.clone().into(),
            c.device_serial.clone().into(),
            c.kind.as_str().into(),
            c.status.as_str().into(),
            c.profile.clone().into(),
            rfc3339(c.not_after).into(),
            (c.not_after <= now).into(),
            c.replaced_by.clone().into(),
        ]);
    }
    list.print(format)?;
    summary(
        rows.len(),
        "certificate(s)",
        cut,
        "raise --limit, or narrow with --device or --expiring-within",
    );
    Ok(())
}

/// A time as lists print it: RFC 3339, UTC, whole seconds.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

pub(crate) fn date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&f).unwrap_or_else(|_| t.to_string())
}

/// `fleetca cert show`.
pub fn cert_show(data_dir: &Path, serial: &str) -> anyhow::Result<()> {
    let parsed = CertificateSerial::from_hex(serial)
        .with_context(|| format!("'{serial}' is not a certificate serial (hex, up to 20 bytes)"))?;
    let (_, store) = load(data_dir)?;
    let Some(c) = runtime()?.block_on(store.certificate(&parsed.to_hex()))? else {
        bail!(
            "no certificate with serial {} in the inventory",
            parsed.to_hex()
        );
    };
    let info = CertificateInfo::from_der(&c.der)?;
    outln!("serial:       {}", c.serial);
    outln!("device:       {}", c.device_serial);
    outln!("kind:         {}", c.kind);
    outln!("status:       {}", c.status);
    outln!("profile:      {}", c.profile);
    outln!("issuer CA:    {} ({})", c.issuer, info.issuer_display());
    outln!("subject:      {}", info.subject_display());
    if !info.subject_alt_names.is_empty() {
        outln!("names:        {}", info.subject_alt_names.join(", "));
    }
    outln!("not before:   {}", date(c.not_before));
    outln!("not after:    {}", date(c.not_after));
    outln!("issued at:    {}", date(c.issued_at));
    outln!("key sha256:   {}", c.spki_sha256);
    outln!("renews:       {}", c.replaces.as_deref().unwrap_or("-"));
    outln!("renewed by:   {}", c.replaced_by.as_deref().unwrap_or("-"));
    out!("{}", pem_certificate(&c.der));
    Ok(())
}

/// `fleetca trust add-manufacturer`.
pub fn trust_add_manufacturer(
    data_dir: &Path,
    name: &str,
    certificate: &Path,
    serial_pattern: Option<&str>,
    comment: Option<&str>,
) -> anyhow::Result<()> {
    let (config, store) = load(data_dir)?;
    let der = crate::files::read_certificate(certificate)?;
    let info =
        CertificateInfo::from_der(&der).with_context(|| certificate.display().to_string())?;
    if !info.is_ca {
        bail!(
            "{} is not a CA certificate (basicConstraints CA:TRUE is missing)",
            certificate.display()
        );
    }
    // The scope first: a CA file never goes live with a scope other than the one asked for.
    runtime()?.block_on(fleetca_admin::set_manufacturer(
        store.as_ref(),
        &Actor::cli(),
        ManufacturerRecord {
            name: name.to_string(),
            serial_pattern: serial_pattern.map(str::to_string),
            added_at: OffsetDateTime::now_utc(),
        },
        &format!("{} ({})", info.subject_display(), info.serial),
        comment,
    ))?;
    // The trust anchors for birth certificates: never writable by group or others.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
        .create(&config.manufacturer_cas)?;
    crate::files::refuse_writable_by_others(
        &config.manufacturer_cas,
        "the manufacturer CA directory",
    )?;
    let dest = config.manufacturer_cas.join(format!("{name}.pem"));
    write_atomic(&dest, pem_certificate(&der).as_bytes(), 0o644, true)?;
    eprintln!(
        "fleetca: manufacturer CA '{name}' ({}, serials {}) imported to {}; restart the server to use it",
        info.subject_display(),
        serial_pattern.unwrap_or("any"),
        dest.display()
    );
    Ok(())
}

/// Asks on the terminal before an irreversible change, unless `--yes` was given; without
/// a terminal (scripts, pipes) refuses and says to add `--yes`.
pub(crate) fn confirm(what: &str, yes: bool) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what} cannot be undone and there is no terminal to confirm it on; add --yes to do it from a script");
    }
    eprint!("fleetca: {what} cannot be undone. Type 'yes' to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

/// `fleetca cert revoke`.
pub fn cert_revoke(
    data_dir: &Path,
    serial: &str,
    reason: RevocationReason,
    comment: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let rt = runtime()?;
    // Ask only about a certificate that exists: a typo fails the same way with or without --yes.
    let known = match CertificateSerial::from_hex(serial) {
        Some(s) if fleetca_admin::revocation_needs_confirmation(reason) => {
            rt.block_on(store.certificate(&s.to_hex()))?
        }
        _ => None,
    };
    if let Some(c) = known {
        confirm(
            &format!(
                "revoking certificate {} of device {} for {reason} (it must then enroll anew, after `device force-reenroll`)",
                c.serial, c.device_serial
            ),
            yes,
        )?;
    }
    let record = rt.block_on(fleetca_admin::revoke_certificate(
        store.as_ref(),
        &Actor::cli(),
        serial,
        reason,
        comment,
    ))?;
    let what = if reason == RevocationReason::CertificateHold {
        "put on hold"
    } else {
        "revoked"
    };
    eprintln!(
        "fleetca: certificate {} of device {} {what} ({reason}); CRL and OCSP publish it within seconds",
        record.serial, record.device_serial
    );
    Ok(())
}

/// What `fleetca device decommission|suspend|resume` does.
pub enum DeviceChange {
    /// Revoke every live certificate, for good.
    Decommission(RevocationReason),
    /// Hold every valid certificate.
    Suspend,
    /// Release held certificates.
    Resume,
}

/// `fleetca device decommission|suspend|resume`.
pub fn device_lifecycle(
    data_dir: &Path,
    device: &str,
    change: DeviceChange,
    comment: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let actor = Actor::cli();
    let rt = runtime()?;
    let (serials, label) = match change {
        DeviceChange::Decommission(reason) => {
            // Ask only about a device that exists: a typo fails the same way with or without --yes.
            if rt.block_on(store.device(device))?.is_some() {
                confirm(
                &format!("decommissioning device {device} (every live certificate revoked, no enrollment ever again)"),
                yes,
            )?;
            }
            let s = rt.block_on(fleetca_admin::decommission(
                store.as_ref(),
                &actor,
                device,
                reason,
                comment,
            ))?;
            (s, "decommissioned; revoked")
        }
        DeviceChange::Suspend => (
            rt.block_on(fleetca_admin::suspend(
                store.as_ref(),
                &actor,
                device,
                comment,
            ))?,
            "suspended; put on hold",
        ),
        DeviceChange::Resume => (
            rt.block_on(fleetca_admin::resume(
                store.as_ref(),
                &actor,
                device,
                comment,
            ))?,
            "resumed; released",
        ),
    };
    for s in &serials {
        outln!("{s}");
    }
    eprintln!(
        "fleetca: device {device} {label} {} certificate(s)",
        serials.len()
    );
    Ok(())
}

/// One page of a history listing: at most `limit` rows with an id below `before`.
pub struct Page {
    /// Only ids below this (the next, older page); `None`: the newest.
    pub before: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// `fleetca audit list`: the newest `limit` events (below `--before`), oldest first.
pub fn audit_list(
    data_dir: &Path,
    actor: Option<&str>,
    page: Page,
    format: Format,
) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    let limit = page.limit;
    let mut events =
        runtime()?.block_on(store.audit_page(actor, page.before, limit.saturating_add(1)))?;
    let cut = events.len() > limit as usize;
    events.truncate(limit as usize);
    let mut list = Listing::new(&[
        "id", "at", "actor", "action", "subject", "outcome", "detail",
    ]);
    for r in events.iter().rev() {
        let e = &r.event;
        list.push(vec![
            r.id.into(),
            rfc3339(e.at).into(),
            e.actor.clone().into(),
            e.action.clone().into(),
            e.subject.clone().into(),
            e.outcome.clone().into(),
            e.detail.clone().into(),
        ]);
    }
    list.print(format)?;
    let more = events.last().map_or_else(String::new, |oldest| {
        format!("older ones: the same command with --before {}", oldest.id)
    });
    summary(events.len(), "event(s)", cut, &more);
    Ok(())
}

/// `fleetca audit verify`.
pub fn audit_verify(data_dir: &Path) -> anyhow::Result<()> {
    let (_, store) = load(data_dir)?;
    match runtime()?.block_on(store.verify_audit_chain())? {
        Ok(n) => {
            outln!("audit chain intact: {n} event(s)");
            Ok(())
        }
        Err(id) => bail!("audit chain broken at event {id}: it was altered or removed"),
    }
}
