//! The built-in rules, in evaluation order. Each returns `Ok(detail)` or `Err(reason)`.
//!
//! | stage | rule | checks |
//! |---|---|---|
//! | technical | `key-algorithm` | the CSR key is in the profile's allow-list |
//! | technical | `no-ca-request` | the CSR does not ask for basicConstraints CA:TRUE |
//! | technical | `no-extra-extensions` | the CSR asks for no key usage, extended key usage or critical extension the profile does not issue; copied extensions the CA decides are ignored and named |
//! | authentication | `authentication` | the credential may be used for this operation |
//! | identity | `device-serial` | a device serial is known, well-formed, and makes valid names in the profile's subjectAltName templates |
//! | identity | `serial-pattern` | the device serial matches the profile's `serial_pattern` |
//! | identity | `account-scope` | an account's label and serial pattern allow this device |
//! | identity | `subject` | the CSR subject and subjectAltName fit the identity |
//! | identity | `new-key` | re-enrollment uses a new key (unless the profile allows reuse) |
//! | identity | `channel-binding` | a challengePassword equals the TLS 1.3 tls-exporter value |
//! | eligibility | `device-status` | the device is not suspended or decommissioned |
//! | eligibility | `client-certificate-status` | the authenticating certificate is in the inventory and valid |
//! | eligibility | `renewal-profile` | re-enrollment stays in the current certificate's profile (or one that renews from it) |
//! | identity, eligibility | `manufacturer-scope`, `account-new-device`, `birth-issuer`, `device-profile`, `birth-reenrollment` | what binds a device to its identity (see `binding.rs`) |
//!
//! Then the profile's configured rules (see `custom.rs`): limits, inventories, CEL rules and
//! manual approval.

use base64::Engine;
use fleetca_pki::{validate_device_serial, CertificateInfo, NameAttribute};
use fleetca_store::{CertificateStanding, CertificateStatus, DeviceStatus, InventoryReader};
use time::OffsetDateTime;

use crate::decision::Stage;
use crate::{
    Admission, Admitted, ChannelBinding, CheckResult, ClientIdentity, Decision, EnrollmentRequest,
    Operation, Outcome, RaError,
};

pub(crate) struct Run {
    checks: Vec<CheckResult>,
    device_serial: Option<String>,
}

impl Run {
    pub(crate) fn record(
        &mut self,
        rule: &'static str,
        result: Result<String, String>,
    ) -> Option<Decision> {
        match result {
            Ok(detail) => {
                self.checks.push(CheckResult {
                    stage: Stage::of(rule),
                    rule,
                    passed: true,
                    detail,
                });
                None
            }
            Err(reason) => Some(self.deny(rule, reason)),
        }
    }

    /// Records a failed rule and denies with its reason.
    pub(crate) fn deny(&mut self, rule: &'static str, reason: String) -> Decision {
        self.fail(rule, reason.clone());
        self.finish(Outcome::Deny { rule, reason })
    }

    /// Records a failed rule (the caller decides what follows).
    pub(crate) fn fail(&mut self, rule: &'static str, detail: String) {
        self.checks.push(CheckResult {
            stage: Stage::of(rule),
            rule,
            passed: false,
            detail,
        });
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) -> Decision {
        Decision {
            outcome,
            checks: std::mem::take(&mut self.checks),
            device_serial: self.device_serial.clone(),
        }
    }
}

macro_rules! rule {
    ($run:ident, $name:literal, $result:expr) => {
        if let Some(denied) = $run.record($name, $result) {
            return Ok(denied);
        }
    };
}

pub(crate) async fn evaluate(
    req: &EnrollmentRequest<'_>,
    env: &crate::custom::Env<'_>,
    now: OffsetDateTime,
) -> Result<Decision, RaError> {
    let inventory = env.inventory;
    let mut run = Run {
        checks: Vec::new(),
        device_serial: None,
    };
    let csr = req.csr;
    let profile = req.profile;

    // Technical.
    rule!(run, "key-algorithm", {
        let kind = csr.key_kind();
        if profile.allows_key(kind) {
            Ok(format!("{kind} key allowed"))
        } else {
            let allowed: Vec<&str> = profile.allowed_keys.iter().map(|k| k.name()).collect();
            Err(format!(
                "{kind} keys are not allowed by profile '{}' (allowed: {})",
                profile.name,
                allowed.join(", ")
            ))
        }
    });
    rule!(run, "no-ca-request", {
        if csr.requested_extensions().ca {
            Err(format!(
                "the CSR asks for basicConstraints CA:TRUE; profile '{}' issues end-entity certificates only",
                profile.name
            ))
        } else {
            Ok("no CA request".into())
        }
    });
    rule!(
        run,
        "no-extra-extensions",
        crate::extensions::within_profile(csr.requested_extensions(), profile)
    );

    // Authentication: which credential may do what. A birth certificate authenticates only
    // the first enrollment; renewal needs the current operational certificate.
    rule!(run, "authentication", match (req.operation, req.client) {
        (
            Operation::Enroll,
            ClientIdentity::BirthCertificate { .. }
            | ClientIdentity::Account { .. }
            | ClientIdentity::EnrollmentSecret { .. },
        ) => Ok(req.client.describe()),
        (Operation::Reenroll, ClientIdentity::EnrollmentSecret { .. }) => Err(
            "a one-time enrollment secret authenticates only the first enrollment; renew with the current operational certificate".into(),
        ),
        (Operation::Enroll, ClientIdentity::OperationalCertificate { .. }) => Err(
            "an operational certificate renews with simplereenroll, not simpleenroll".into(),
        ),
        (Operation::Reenroll, ClientIdentity::OperationalCertificate { .. }) => {
            Ok(req.client.describe())
        }
        (Operation::Reenroll, ClientIdentity::BirthCertificate { .. }) => Err(
            "a birth certificate authenticates only simpleenroll; re-enroll with the current operational certificate".into(),
        ),
        (Operation::Reenroll, ClientIdentity::Account { .. } | ClientIdentity::Administrator { .. }) => Err(
            "simplereenroll requires the current operational certificate as TLS client certificate".into(),
        ),
        (Operation::Birth, ClientIdentity::Administrator { .. } | ClientIdentity::Station { .. }) => {
            Ok(req.client.describe())
        }
        (Operation::Enroll | Operation::Reenroll, ClientIdentity::Station { .. }) => Err(
            "a station credential can do nothing but birth enrollment".into(),
        ),
        (Operation::Birth, _) => Err(
            "birth certificates are issued only to the administrator or a factory station".into(),
        ),
        (Operation::Enroll, ClientIdentity::Administrator { .. }) => Err(
            "the administrator issues birth certificates; devices enroll themselves".into(),
        ),
    });

    // Identity.
    let device_serial = match req.client {
        ClientIdentity::BirthCertificate { certificate, .. }
        | ClientIdentity::OperationalCertificate { certificate } => certificate
            .device_serial()
            .map(str::to_string)
            .ok_or_else(|| "the client certificate's subject has no serialNumber".to_string()),
        ClientIdentity::Administrator { device_serial }
        | ClientIdentity::EnrollmentSecret { device_serial, .. } => Ok(device_serial.clone()),
        ClientIdentity::Station { .. } => csr
            .subject_serial_number()
            .map(str::to_string)
            .ok_or_else(|| {
                "a birth enrollment must name the device in the CSR subject serialNumber"
                    .to_string()
            }),
        ClientIdentity::Account { .. } => csr
            .subject_serial_number()
            .map(str::to_string)
            .ok_or_else(|| {
                "an account enrollment must name the device in the CSR subject serialNumber"
                    .to_string()
            }),
    };
    let device_serial = match device_serial
        .and_then(|s| validate_device_serial(&s).map(|()| s))
        .and_then(|s| crate::subject::names_are_valid(profile, &s).map(|()| s))
    {
        Ok(s) => {
            run.record("device-serial", Ok(format!("device {s}")));
            run.device_serial = Some(s.clone());
            s
        }
        Err(reason) => return Ok(run.deny("device-serial", reason)),
    };

    if let Some(pattern) = &profile.rules.serial_pattern {
        rule!(
            run,
            "serial-pattern",
            serial_pattern(env.programs, pattern, &device_serial, &profile.name)
        );
    }

    if let ClientIdentity::Account {
        name,
        label,
        serial_pattern,
        any_serial,
        ..
    } = req.client
    {
        rule!(
            run,
            "account-scope",
            account_scope(
                name,
                label.as_deref(),
                serial_pattern.as_deref(),
                *any_serial,
                req.label,
                &device_serial
            )
        );
    }

    if let Some(result) =
        crate::binding::manufacturer_scope(req.client, &device_serial, inventory).await?
    {
        rule!(run, "manufacturer-scope", result);
    }

    let current = match req.client {
        ClientIdentity::OperationalCertificate { certificate } => Some(certificate),
        _ => None,
    };
    rule!(
        run,
        "subject",
        match current {
            Some(cert) => same_identity(
                csr.subject(),
                &csr.requested_extensions().subject_alt_names,
                cert
            ),
            None => fits_profile(req, &device_serial),
        }
    );

    if let Some(cert) = current {
        rule!(run, "new-key", {
            if profile.allow_key_reuse || cert.spki_der != csr.spki_der() {
                Ok("new key".into())
            } else {
                Err(format!(
                    "re-enrollment must use a new key (profile '{}' does not allow key reuse)",
                    profile.name
                ))
            }
        });
    }

    if let ClientIdentity::Station { name, certificate } = req.client {
        let station = inventory.station(name).await?;
        rule!(
            run,
            "station-scope",
            crate::station::scope(name, certificate, station.as_ref(), &device_serial)
        );
        rule!(
            run,
            "station-quota",
            crate::station::quota(name, station.as_ref())
        );
    }

    rule!(run, "channel-binding", channel_binding(req));

    // Birth: one live birth certificate per device, unless re-issue is allowed and asked for.
    let mut reissue = false;
    if req.operation == Operation::Birth {
        let live = inventory
            .has_live_birth_certificate(&device_serial, now)
            .await?;
        let allowed = match req.client {
            ClientIdentity::Administrator { .. } => true,
            ClientIdentity::Station { name, .. } => inventory
                .station(name)
                .await?
                .is_some_and(|s| s.allow_reissue),
            _ => false,
        };
        rule!(run, "birth-duplicate", match (live, req.reissue, allowed) {
            (false, _, _) => Ok(format!("device {device_serial} has no live birth certificate")),
            (true, true, true) => {
                reissue = true;
                Ok(format!("re-issue of the birth certificate of {device_serial}, as asked and allowed"))
            }
            (true, false, _) => Err(format!(
                "device {device_serial} already has a live birth certificate; re-issue must be asked for explicitly"
            )),
            (true, true, false) => Err(format!(
                "device {device_serial} already has a live birth certificate and {} may not re-issue",
                req.client.describe()
            )),
        });
    }

    // Eligibility: one inventory read for the device and the authenticating certificate,
    // or none if admission read them.
    let recorded = recorded_certificate(req.client);
    let client_serial = recorded.map(|(c, _)| c.serial.to_hex());
    let read;
    let standing = match req
        .admitted
        .and_then(|a| a.of(&device_serial, client_serial.as_deref()))
    {
        Some(admitted) => admitted,
        None => {
            read = inventory
                .standing(&device_serial, client_serial.as_deref())
                .await?;
            &read
        }
    };
    rule!(
        run,
        "device-status",
        device_status(&device_serial, standing.device)
    );
    let mut replaces = None;
    // The commit re-checks the credential if the inventory knows it.
    let authenticated_by = standing.certificate.as_ref().map(|r| r.serial.clone());
    if let Some((cert, issued_here)) = recorded {
        let record = standing.certificate.as_ref();
        rule!(
            run,
            "client-certificate-status",
            certificate_status(cert, issued_here, &device_serial, record, now)
        );
        if req.operation == Operation::Reenroll {
            replaces = record.map(|r| r.serial.clone());
            if let Some(r) = record {
                rule!(
                    run,
                    "renewal-profile",
                    renewal_profile(&r.profile, req.profile)
                );
            }
        }
    }
    let bound =
        match crate::binding::check(req, env, standing, &device_serial, now, &mut run).await? {
            Ok(bound) => bound,
            Err(denied) => return Ok(*denied),
        };

    let facts = crate::custom::Facts {
        device_serial: &device_serial,
        device_status: standing.device,
        now,
    };
    let approval = match crate::custom::evaluate(req, &facts, env, &mut run).await? {
        crate::custom::Flow::Done(decision) => return Ok(*decision),
        crate::custom::Flow::Issue { approval } => approval,
    };
    Ok(run.finish(Outcome::Issue {
        device_serial,
        replaces,
        authenticated_by,
        limits: bound.limits(crate::custom::device_limits(req, now)),
        binding: bound.binding,
        reissue,
        approval,
    }))
}

/// The authenticating certificate, if it is one, and whether it must be in the inventory
/// (issued by this fleetca rather than an imported manufacturer CA).
fn recorded_certificate(client: &ClientIdentity) -> Option<(&CertificateInfo, bool)> {
    match client {
        ClientIdentity::BirthCertificate {
            certificate,
            issued_here,
            ..
        } => Some((certificate, *issued_here)),
        ClientIdentity::OperationalCertificate { certificate } => Some((certificate, true)),
        ClientIdentity::Account { .. }
        | ClientIdentity::Administrator { .. }
        | ClientIdentity::Station { .. }
        | ClientIdentity::EnrollmentSecret { .. } => None,
    }
}

fn device_status(device_serial: &str, status: Option<DeviceStatus>) -> Result<String, String> {
    match status {
        Some(DeviceStatus::Decommissioned) => {
            Err(format!("device {device_serial} is decommissioned"))
        }
        Some(DeviceStatus::Suspended) => Err(format!("device {device_serial} is suspended")),
        Some(status) => Ok(format!("device {device_serial} is {status}")),
        None => Ok(format!("device {device_serial} is new to the inventory")),
    }
}

fn certificate_status(
    cert: &CertificateInfo,
    issued_here: bool,
    device_serial: &str,
    record: Option<&CertificateStanding>,
    now: OffsetDateTime,
) -> Result<String, String> {
    match record {
        None if issued_here => Err(format!(
            "client certificate {} is not in the inventory",
            cert.serial
        )),
        None => Ok("certificate from an imported manufacturer CA".into()),
        Some(r) if r.device_serial != device_serial => Err(format!(
            "client certificate {} belongs to device {}, not {device_serial}",
            cert.serial, r.device_serial
        )),
        Some(r) if r.status == CertificateStatus::Revoked => Err(format!(
            "client certificate {} is revoked ({})",
            cert.serial,
            r.revocation_reason.as_deref().unwrap_or("unspecified")
        )),
        Some(r) if r.status == CertificateStatus::OnHold => Err(format!(
            "client certificate {} is on hold (device suspended)",
            cert.serial
        )),
        Some(r) if r.not_after <= now => Err(format!(
            "client certificate {} expired at {}",
            cert.serial, r.not_after
        )),
        Some(_) => Ok(format!("client certificate {} is valid", cert.serial)),
    }
}

/// Re-enrollment keeps the profile of the current certificate unless the target profile
/// lists it in `renew_from`: a device cannot pick a longer-lived or broader profile by
/// renewing under another label.
fn renewal_profile(
    current: &str,
    target: &fleetca_pki::CertificateProfile,
) -> Result<String, String> {
    if current == target.name || target.renew_from.iter().any(|p| p == current) {
        Ok(format!(
            "renewal from profile '{current}' into '{}'",
            target.name
        ))
    } else {
        Err(format!(
            "the current certificate was issued under profile '{current}'; re-enroll under its label (profile '{}' does not accept renewals from it)",
            target.name
        ))
    }
}

/// The standing checks alone, for a certificate-authenticated client, before anything else
/// of its request is read (see [`crate::RegistrationAuthority::admit`]).
pub(crate) async fn admit(
    client: &ClientIdentity,
    inventory: &dyn InventoryReader,
    now: OffsetDateTime,
) -> Result<Admission, RaError> {
    if let ClientIdentity::Station { name, certificate } = client {
        let station = inventory.station(name).await?;
        return Ok(
            match crate::station::admit(name, certificate, station.as_ref()) {
                Ok(_) => Admission::Admitted(None),
                Err(reason) => Admission::Refused {
                    rule: "station-scope",
                    reason,
                },
            },
        );
    }
    let Some((cert, issued_here)) = recorded_certificate(client) else {
        return Ok(Admission::Admitted(None));
    };
    let Some(device_serial) = cert.device_serial() else {
        // The device-serial rule reports it with the request.
        return Ok(Admission::Admitted(None));
    };
    let certificate_serial = cert.serial.to_hex();
    let standing = inventory
        .standing(device_serial, Some(&certificate_serial))
        .await?;
    if let Err(reason) = device_status(device_serial, standing.device) {
        return Ok(Admission::Refused {
            rule: "device-status",
            reason,
        });
    }
    if let Err(reason) = certificate_status(
        cert,
        issued_here,
        device_serial,
        standing.certificate.as_ref(),
        now,
    ) {
        return Ok(Admission::Refused {
            rule: "client-certificate-status",
            reason,
        });
    }
    Ok(Admission::Admitted(Some(Admitted::new(
        device_serial.to_string(),
        certificate_serial,
        standing,
    ))))
}

fn account_scope(
    name: &str,
    account_label: Option<&str>,
    serial_pattern: Option<&str>,
    any_serial: bool,
    request_label: Option<&str>,
    device_serial: &str,
) -> Result<String, String> {
    if account_label != request_label {
        let shown =
            |l: Option<&str>| l.map_or("the default label".to_string(), |l| format!("label '{l}'"));
        return Err(format!(
            "account '{name}' may enroll only under {}, not {}",
            shown(account_label),
            shown(request_label)
        ));
    }
    if serial_pattern.is_none() && !any_serial {
        return Err(format!(
            "account '{name}' has no serial pattern and was not added with --any-serial: it enrolls no device"
        ));
    }
    if let Some(pattern) = serial_pattern {
        let re = crate::serial_scope::whole_serial_pattern(pattern)
            .map_err(|e| format!("account '{name}' has an invalid serial pattern: {e}"))?;
        if !re.is_match(device_serial) {
            return Err(format!(
                "device serial {device_serial} does not match account '{name}' pattern {pattern} (the whole serial)"
            ));
        }
    }
    Ok(format!("account '{name}' may enroll {device_serial}"))
}

/// First enrollment: every subject attribute the CSR names must be one the profile issues,
/// with the same value; every requested subjectAltName must be one the profile issues. An
/// empty CSR subject is fine: the profile decides.
fn fits_profile(req: &EnrollmentRequest<'_>, device_serial: &str) -> Result<String, String> {
    let issued = req.profile.subject_for(device_serial);
    for attr in req.csr.subject() {
        let matching = issued.iter().find(|a| a.oid == attr.oid);
        match matching {
            Some(a) if a.value == attr.value => {}
            Some(a) => {
                return Err(format!(
                    "CSR subject {attr} does not match the identity ({} {}={})",
                    req.client.describe(),
                    a.short_name(),
                    a.value
                ))
            }
            None => {
                return Err(format!(
                    "CSR subject attribute {attr} is not issued by profile '{}'",
                    req.profile.name
                ))
            }
        }
    }
    let allowed = req.profile.subject_alt_names_for(device_serial);
    if let Some(foreign) = req
        .csr
        .requested_extensions()
        .subject_alt_names
        .iter()
        .find(|n| !allowed.contains(n))
    {
        return Err(format!(
            "CSR requests subjectAltName {foreign}, which is not this device's name"
        ));
    }
    Ok("CSR subject fits the profile".into())
}

/// Re-enrollment (RFC 7030 §4.2.2): the subject has the current certificate's attributes
/// (in any order and string type) and every requested subjectAltName is one of its names.
fn same_identity(
    subject: &[NameAttribute],
    sans: &[String],
    current: &fleetca_pki::CertificateInfo,
) -> Result<String, String> {
    crate::subject::same_subject(subject, &current.subject)?;
    // The profile issues the certificate's names whatever the CSR lists: a CSR may omit
    // subjectAltName (clients built from an enrollment template do), but may not name
    // anything the current certificate does not.
    if let Some(foreign) = sans.iter().find(|n| !current.subject_alt_names.contains(n)) {
        return Err(format!(
            "CSR subjectAltName {foreign} is not among the current certificate's [{}]",
            current.subject_alt_names.join(", ")
        ));
    }
    Ok(
        if sans.is_empty() && !current.subject_alt_names.is_empty() {
            "same subject attributes as the current certificate; no subjectAltName requested (the profile's are issued)".into()
        } else {
            "same subject attributes and subjectAltName as the current certificate".into()
        },
    )
}

fn channel_binding(req: &EnrollmentRequest<'_>) -> Result<String, String> {
    let password = req.csr.challenge_password();
    match (req.channel_binding, password) {
        (ChannelBinding::TlsExporter(value), Some(p)) => {
            let expected = base64::engine::general_purpose::STANDARD.encode(value);
            if p == expected {
                Ok("challengePassword matches the tls-exporter value".into())
            } else {
                Err("challengePassword does not match this TLS session's tls-exporter value (RFC 9266)".into())
            }
        }
        (ChannelBinding::TlsExporter(_), None) if req.profile.require_channel_binding => {
            Err("profile requires the tls-exporter value in the CSR challengePassword".into())
        }
        (ChannelBinding::Unavailable, _) if req.profile.require_channel_binding => {
            Err("profile requires channel binding, which needs TLS 1.3 (tls-exporter)".into())
        }
        (ChannelBinding::Message, _) => {
            Ok("the request is protected by its own signed or MAC-protected message".into())
        }
        (ChannelBinding::Unavailable, Some(_)) => Ok(
            "challengePassword present but TLS 1.2 offers no verifiable binding; not used".into(),
        ),
        (_, None) => Ok("no channel binding requested".into()),
    }
}

fn serial_pattern(
    programs: &crate::custom::Programs,
    pattern: &str,
    device_serial: &str,
    profile: &str,
) -> Result<String, String> {
    // Validated when the configuration loads; a pattern that still fails denies.
    let re = programs
        .whole_match(pattern)
        .map_err(|e| format!("profile '{profile}' has an invalid serial_pattern: {e}"))?;
    if re.is_match(device_serial) {
        Ok(format!("{device_serial} matches {pattern}"))
    } else {
        Err(format!(
            "device serial {device_serial} does not match the pattern {pattern} of profile '{profile}'"
        ))
    }
}
