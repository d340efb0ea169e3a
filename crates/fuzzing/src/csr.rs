//! `csr`: PKCS#10 requests built from the fuzzer's bytes and signed with the fixed device
//! key, so that the signature verifies and the subject, the challengePassword and the
//! extension request reach what fleetca runs on a CSR in enrollment: the parser's
//! accessors, the RA's rules (`Policy::decide`, as `fleetca policy test` runs it: dry run,
//! nothing written) and the CA's `prepare` (build and lint the certificate).
//!
//! The fuzzer's bytes are read with `arbitrary::Unstructured` as choices: how many RDNs,
//! which attribute types and string tags, which extensions and general names, and their
//! contents (device-like values or raw bytes). The request is then DER-encoded and signed.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use fleetca_pki::{
    rcgen, spki_sha256, CertificateProfile, CertificateRequest, CustomRule, IssuanceOrder,
    SoftwareKey,
};
use fleetca_ra::{
    ChannelBinding, ClientIdentity, EnrollmentRequest, Operation, Outcome, Policy,
    RegistrationAuthority,
};
use fleetca_store::{CertificateKind, CertificateLedger, NewCertificate, SqliteStore};

use crate::der_writer::{bit_string, oid, sequence, set, tlv};
use crate::fixed::{self, Pki, DEVICE_SERIAL};

/// Subject attribute types: CN, serialNumber, O, OU, C, emailAddress, UID.
const NAME_TYPES: &[&[u8]] = &[
    &[0x55, 0x04, 0x03],
    &[0x55, 0x04, 0x05],
    &[0x55, 0x04, 0x0a],
    &[0x55, 0x04, 0x0b],
    &[0x55, 0x04, 0x06],
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
    &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
];
/// UTF8String, PrintableString, IA5String, TeletexString, BMPString, UniversalString,
/// OCTET STRING.
const STRING_TAGS: &[u8] = &[0x0c, 0x13, 0x16, 0x14, 0x1e, 0x1c, 0x04];
const CHALLENGE_PASSWORD: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07];
const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// id-kp-serverAuth, id-kp-clientAuth, anyExtendedKeyUsage.
const KEY_PURPOSES: &[&[u8]] = &[
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02],
    &[0x55, 0x1d, 0x25, 0x00],
];
/// ecdsa-with-SHA256.
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

type Choice<T> = arbitrary::Result<T>;

fn text(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => DEVICE_SERIAL.as_bytes().to_vec(),
        1 => b"FUZZ-0002".to_vec(),
        2 => b"fuzz.example".to_vec(),
        3 => format!("urn:dev:serial:{DEVICE_SERIAL}").into_bytes(),
        _ => {
            let n = u.int_in_range(0usize..=48)?;
            u.bytes(n)?.to_vec()
        }
    })
}

fn raw(u: &mut Unstructured<'_>, max: usize) -> Choice<Vec<u8>> {
    let n = u.int_in_range(0usize..=max)?;
    Ok(u.bytes(n)?.to_vec())
}

fn string(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    let tag = *u.choose(STRING_TAGS)?;
    Ok(tlv(tag, &text(u)?))
}

fn any_oid(u: &mut Unstructured<'_>, known: &[&[u8]]) -> Choice<Vec<u8>> {
    if u.ratio(1u8, 8)? {
        Ok(oid(&raw(u, 10)?))
    } else {
        Ok(oid(u.choose(known)?))
    }
}

fn name(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    if u.ratio(1u8, 10)? {
        return Ok(tlv(0x30, &raw(u, 64)?));
    }
    let mut rdns = Vec::new();
    for _ in 0..u.int_in_range(0u8..=5)? {
        let mut values = Vec::new();
        for _ in 0..u.int_in_range(1u8..=2)? {
            values.push(sequence(&[any_oid(u, NAME_TYPES)?, string(u)?]));
        }
        rdns.push(set(&values));
    }
    Ok(sequence(&rdns))
}

fn general_name(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    Ok(match u.int_in_range(0u8..=6)? {
        0 => tlv(0x82, &text(u)?),
        1 => tlv(0x81, &text(u)?),
        2 => tlv(0x86, &text(u)?),
        3 => {
            let n = *u.choose(&[4usize, 16, 0, 5, 8, 32])?;
            tlv(0x87, u.bytes(n)?)
        }
        4 => tlv(
            0xa0,
            &[
                any_oid(u, &[&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x04]])?,
                tlv(0xa0, &string(u)?),
            ]
            .concat(),
        ),
        5 => tlv(0xa4, &name(u)?),
        _ => tlv(u.arbitrary::<u8>()?, &raw(u, 32)?),
    })
}

fn extension(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    let kind = u.int_in_range(0u8..=4)?;
    let (id, value) = match kind {
        0 => {
            let mut names = Vec::new();
            for _ in 0..u.int_in_range(0u8..=4)? {
                names.push(general_name(u)?);
            }
            (oid(SUBJECT_ALT_NAME), sequence(&names))
        }
        1 => (oid(KEY_USAGE), bit_string(&raw(u, 2)?)),
        2 => {
            let mut purposes = Vec::new();
            for _ in 0..u.int_in_range(0u8..=3)? {
                purposes.push(any_oid(u, KEY_PURPOSES)?);
            }
            (oid(EXTENDED_KEY_USAGE), sequence(&purposes))
        }
        3 => {
            let mut fields = Vec::new();
            if u.arbitrary()? {
                fields.push(tlv(0x01, &[0xff]));
            }
            if u.arbitrary()? {
                fields.push(tlv(0x02, &[u.arbitrary::<u8>()? & 0x7f]));
            }
            (oid(BASIC_CONSTRAINTS), sequence(&fields))
        }
        _ => (
            any_oid(u, &[SUBJECT_ALT_NAME, KEY_USAGE, EXTENDED_KEY_USAGE])?,
            raw(u, 64)?,
        ),
    };
    let mut parts = vec![id];
    if u.ratio(1u8, 4)? {
        parts.push(tlv(0x01, &[*u.choose(&[0xffu8, 0x00])?]));
    }
    parts.push(tlv(0x04, &value));
    Ok(sequence(&parts))
}

fn attribute(u: &mut Unstructured<'_>) -> Choice<Vec<u8>> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => {
            let mut values = vec![string(u)?];
            if u.ratio(1u8, 8)? {
                values.push(string(u)?);
            }
            sequence(&[oid(CHALLENGE_PASSWORD), set(&values)])
        }
        1 => {
            let mut extensions = Vec::new();
            for _ in 0..u.int_in_range(0u8..=4)? {
                extensions.push(extension(u)?);
            }
            sequence(&[oid(EXTENSION_REQUEST), set(&[sequence(&extensions)])])
        }
        _ => sequence(&[
            any_oid(u, &[CHALLENGE_PASSWORD, EXTENSION_REQUEST])?,
            set(&[tlv(u.arbitrary::<u8>()?, &raw(u, 32)?)]),
        ]),
    })
}

/// A DER PKCS#10 request from the fuzzer's choices, signed by `key` (P-256).
fn request(u: &mut Unstructured<'_>, key: &SoftwareKey) -> Choice<Option<Vec<u8>>> {
    let version = if u.ratio(1u8, 32)? {
        tlv(0x02, &[u.arbitrary::<u8>()?])
    } else {
        tlv(0x02, &[0])
    };
    let subject = name(u)?;
    let mut attributes = Vec::new();
    for _ in 0..u.int_in_range(0u8..=4)? {
        attributes.push(attribute(u)?);
    }
    let info = sequence(&[
        version,
        subject,
        key.public_key_der(),
        tlv(0xa0, &attributes.concat()),
    ]);
    let Ok(signature) = rcgen::SigningKey::sign(key, &info) else {
        return Ok(None);
    };
    Ok(Some(sequence(&[
        info,
        sequence(&[oid(ECDSA_WITH_SHA256)]),
        bit_string(&signature),
    ])))
}

/// What enrollment runs a CSR against: the RA's policy on an empty SQLite inventory (dry
/// run: nothing is written), profiles, and the fixed CAs.
struct World {
    pki: &'static Pki,
    /// A second key for requests (a renewal needs a new key).
    next_key: SoftwareKey,
    policy: Policy,
    runtime: tokio::runtime::Runtime,
    operational: CertificateProfile,
    bound: CertificateProfile,
    birth: CertificateProfile,
    _dir: tempfile::TempDir,
}

fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let pki = fixed::pki()?;
            let dir = tempfile::tempdir().ok()?;
            let store = SqliteStore::open(&dir.path().join("fleetca.db")).ok()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // The fixed device certificate is in the inventory, so that renewals with it
            // reach the identity rules (same subject and names as the current certificate).
            runtime
                .block_on(store.record_issuance(recorded_device_certificate(pki)))
                .ok()?;
            let policy = Policy::new(
                std::sync::Arc::new(store.clone()),
                std::sync::Arc::new(store),
                std::sync::Arc::new(fleetca_pki::SystemClock),
            )
            .dry_run();
            let mut bound = CertificateProfile::default_operational();
            bound.name = "bound".into();
            bound.require_channel_binding = true;
            bound.rules.serial_pattern = Some("FUZZ-[0-9]{4}".into());
            bound.rules.custom.push(CustomRule {
                name: "ec-keys-only".into(),
                expression: r#"request.key_algorithm in ["p256", "p384"] && request.key_size >= 256"#.into(),
                message: "EC keys only".into(),
            });
            Some(World {
                pki,
                next_key: fixed::p256_key("fleetca fuzz device next")?,
                policy,
                runtime,
                operational: CertificateProfile::default_operational(),
                bound,
                birth: CertificateProfile::default_birth(),
                _dir: dir,
            })
        })
        .as_ref()
}

/// The inventory record of the fixed device certificate.
fn recorded_device_certificate(pki: &Pki) -> NewCertificate {
    let info = &pki.device_info;
    NewCertificate {
        serial: info.serial.to_hex(),
        device_serial: DEVICE_SERIAL.into(),
        issuer: "operational".into(),
        profile: "operational".into(),
        kind: CertificateKind::Operational,
        not_before: info.not_before,
        not_after: info.not_after,
        spki_sha256: spki_sha256(&info.spki_der),
        der: pki.device_certificate.clone(),
        replaces: None,
        authenticated_by: None,
        limits: Default::default(),
        binding: Default::default(),
        issued_at: pki.made,
        birth: None,
        decision: None,
        cmp_transaction: None,
    }
}

/// The target: a signed CSR from the fuzzer's choices, then [`process`].
pub fn run(data: &[u8]) {
    let Some(world) = world() else {
        return;
    };
    let mut u = Unstructured::new(data);
    let Ok(mode) = u.arbitrary::<u8>() else {
        return;
    };
    let key = if mode & 32 == 0 {
        &world.pki.device_key
    } else {
        &world.next_key
    };
    if let Ok(Some(der)) = request(&mut u, key) {
        let _ = process(world, mode, &der);
    }
}

/// Everything enrollment does with a CSR's bytes, as the client `mode` selects (account,
/// administrator birth, renewal with the fixed device certificate; with or without a
/// tls-exporter channel binding; under the default or a stricter profile). Returns the
/// RA's decision, if the request got that far.
fn process(world: &World, mode: u8, der: &[u8]) -> Option<fleetca_ra::Decision> {
    let csr = CertificateRequest::from_der(der).ok()?;
    let _ = (
        csr.subject_display(),
        csr.subject_serial_number(),
        csr.challenge_password(),
        csr.requested_extensions(),
        csr.key_kind(),
        csr.signature_algorithm(),
    );
    let device_serial = csr
        .subject_serial_number()
        .unwrap_or(DEVICE_SERIAL)
        .to_string();
    // Bits of `mode`: 0-1 the client, 2 channel binding, 3 the stricter profile, 4 a
    // re-issue, 5 the second key (in `run`), 6 an account limited to new devices.
    let (operation, client, profile) = match mode & 3 {
        0 | 3 => (
            Operation::Enroll,
            ClientIdentity::Account {
                name: "fuzz".into(),
                label: None,
                serial_pattern: None,
                any_serial: true,
                known_devices: mode & 64 == 0,
            },
            if mode & 8 == 0 {
                &world.operational
            } else {
                &world.bound
            },
        ),
        1 => (
            Operation::Birth,
            ClientIdentity::Administrator { device_serial },
            &world.birth,
        ),
        _ => (
            Operation::Reenroll,
            ClientIdentity::OperationalCertificate {
                certificate: world.pki.device_info.clone(),
            },
            if mode & 8 == 0 {
                &world.operational
            } else {
                &world.bound
            },
        ),
    };
    let binding = if mode & 4 == 0 {
        ChannelBinding::Unavailable
    } else {
        ChannelBinding::TlsExporter([7; 32])
    };
    let request = EnrollmentRequest {
        operation,
        label: None,
        profile,
        client: &client,
        csr: &csr,
        channel_binding: &binding,
        reissue: mode & 16 != 0,
        admitted: None,
    };
    let decision = world.runtime.block_on(world.policy.decide(&request)).ok()?;
    let _ = decision.to_string();
    // What the CA does next with an issuance: build and lint the certificate.
    let issuer = match profile.issuer.as_str() {
        "manufacturing" => &world.pki.manufacturing,
        _ => &world.pki.operational,
    };
    if let Outcome::Issue { device_serial, .. } = &decision.outcome {
        let order = IssuanceOrder {
            device_serial: device_serial.clone(),
            spki_der: csr.spki_der().to_vec(),
        };
        let _ = issuer.prepare(profile, &order, time::OffsetDateTime::now_utc());
    }
    Some(decision)
}

/// Seeds: the fuzzer's choice bytes are not a DER format, so seeds are byte patterns that
/// lead to subjects, attributes and extensions of every kind.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![Vec::new(), vec![0; 64], vec![1; 128], vec![0xff; 256]];
    // The first byte is the mode (see `process`): every client kind, binding, profile, key.
    let modes = [
        0u8, 1, 2, 4, 5, 6, 8, 10, 16, 17, 34, 38, 42, 46, 64, 68, 72,
    ];
    seeds.extend(modes.iter().map(|&m| {
        std::iter::once(m)
            .chain((1..200u16).map(|i| (i as u8).wrapping_mul(37).wrapping_add(m)))
            .collect()
    }));
    seeds
}

/// Signed CSRs of the device key as rcgen (the agent's CSR builder) writes them: for the
/// `est_body` seeds.
pub fn example_requests() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), DEVICE_SERIAL);
    subject.push(rcgen::DnType::CommonName, DEVICE_SERIAL);
    let sans: Vec<rcgen::SanType> = rcgen::string::Ia5String::try_from("fuzz-0001.devices.example")
        .map(rcgen::SanType::DnsName)
        .into_iter()
        .collect();
    [
        pki.device_key.certificate_request(subject, sans, &[]),
        pki.device_key
            .certificate_request(rcgen::DistinguishedName::new(), Vec::new(), &[]),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of the target: the requests it builds pass the signature check.
    #[test]
    fn built_requests_verify() {
        let pki = fixed::pki_or_reason().unwrap_or_else(|e| unreachable!("{e}"));
        let mut verified = 0;
        for seed in seeds() {
            let mut u = Unstructured::new(&seed);
            let _mode = u.arbitrary::<u8>();
            if let Ok(Some(der)) = request(&mut u, &pki.device_key) {
                if CertificateRequest::from_der(&der).is_ok() {
                    verified += 1;
                }
            }
        }
        assert!(verified >= 4, "only {verified} seeds gave a verifying CSR");
    }

    /// A renewal with the current certificate's subject and a new key reaches issuance:
    /// the target's inventory and keys let the RA's identity rules run to the end.
    #[test]
    fn a_renewal_with_the_same_subject_is_issued() {
        let world = world().unwrap_or_else(|| unreachable!("no fuzz world"));
        let mut subject = rcgen::DistinguishedName::new();
        for a in &world.pki.device_info.subject {
            let arcs: Vec<u64> = a.oid.split('.').filter_map(|n| n.parse().ok()).collect();
            let value = if a.oid == "2.5.4.5" {
                rcgen::DnValue::PrintableString(
                    a.value
                        .as_str()
                        .try_into()
                        .unwrap_or_else(|_| unreachable!()),
                )
            } else {
                rcgen::DnValue::Utf8String(a.value.clone())
            };
            subject.push(rcgen::DnType::from_oid(&arcs), value);
        }
        let der = world
            .next_key
            .certificate_request(subject, Vec::new(), &[])
            .unwrap_or_default();
        let decision = process(world, 2 | 32, &der);
        let outcome = decision.as_ref().map(|d| d.to_string()).unwrap_or_default();
        assert!(
            matches!(decision.map(|d| d.outcome), Some(Outcome::Issue { .. })),
            "renewal not issued: {outcome}"
        );
        // The same subject from an account that may not enroll known devices is refused.
        assert!(!matches!(
            process(world, 64, &der).map(|d| d.outcome),
            Some(Outcome::Issue { .. })
        ));
    }
}
