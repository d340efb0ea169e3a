//! `agent_response`: what the device agent does with a server's answer to
//! `simpleenroll`/`simplereenroll`/`cacerts`: the status, the `Retry-After` header and the
//! body become an answer ([`fleetca_agent::enroll_answer`], the function `EstClient` uses),
//! an issued certificate is accepted or refused for the new key
//! ([`fleetca_agent::accept_issued`]), offered CA certificates go through the trust
//! roll-over ([`fleetca_agent::trust`]), error bodies and waits go through the renewal
//! state machine.
//!
//! Input: `[status selector][header length n][n bytes of Retry-After][body]`.

use fleetca_agent::trust::{fingerprint, merged, pinned, rollover};
use fleetca_agent::{
    accept_issued, chain_pem, enroll_answer, retry_after, schedule, validity, EnrollAnswer,
    Machine, Operation, Outcome, RenewalPolicy, View,
};
use hyper::header::HeaderValue;
use time::OffsetDateTime;

use crate::fixed::{self, Pki, DEVICE_SERIAL};

/// The statuses a selector byte below their count picks; above it, `100 + selector`.
const STATUSES: &[u16] = &[200, 202, 400, 401, 403, 404, 408, 409, 429, 500, 503];

fn status(selector: u8) -> u16 {
    STATUSES
        .get(usize::from(selector))
        .copied()
        .unwrap_or(100 + u16::from(selector))
}

/// Splits an input into (status, Retry-After bytes, body).
fn split(data: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (&n, rest) = rest.split_first()?;
    let (header, body) = rest.split_at_checked(usize::from(n)).unwrap_or((rest, &[]));
    Some((status(selector), header, body))
}

/// The input for `status`, `retry_after` and `body`.
fn join(selector: u8, retry_after: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = vec![selector, u8::try_from(retry_after.len()).unwrap_or(u8::MAX)];
    v.extend_from_slice(retry_after);
    v.extend_from_slice(body);
    v
}

/// The target.
pub fn run(data: &[u8]) {
    let Some(pki) = fixed::pki() else {
        return;
    };
    let Some((status, header, body)) = split(data) else {
        return;
    };
    let wait = HeaderValue::from_bytes(header)
        .ok()
        .and_then(|v| retry_after(&v));
    let now = OffsetDateTime::now_utc();
    let outcome = match enroll_answer(status, wait, body) {
        Ok(EnrollAnswer::Issued(certificates)) => {
            trust(pki, &certificates, now);
            match accept_issued(certificates, &pki.device_key, DEVICE_SERIAL) {
                Ok((info, chain)) => {
                    assert!(
                        chain.first().is_some_and(|c| c.as_slice() != [0u8; 0])
                            && info.spki_der == pki.device_key.public_key_der(),
                        "an accepted chain starts with the certificate for the new key"
                    );
                    let _ = chain_pem(&chain);
                    let v = validity(&info);
                    let _ = schedule(&RenewalPolicy::default(), &v);
                    Outcome::Issued(v)
                }
                Err(e) => Outcome::Unavailable {
                    reason: e.to_string(),
                    retry_after: None,
                },
            }
        }
        Ok(EnrollAnswer::Pending(wait)) => Outcome::Pending {
            retry_after: time::Duration::try_from(wait).unwrap_or(time::Duration::MAX),
        },
        Ok(EnrollAnswer::Refused {
            status,
            message,
            retry_after,
        }) => Outcome::from_status(
            status,
            &message,
            retry_after.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
        ),
        Err(e) => Outcome::Unavailable {
            reason: e.to_string(),
            retry_after: None,
        },
    };
    let _ = outcome.describe();
    // The renewal state machine takes the outcome and decides when to ask again.
    let view = View {
        operational: Some(validity(&pki.device_info)),
        birth: None,
    };
    let mut machine = Machine::new(RenewalPolicy::default(), 1);
    machine.record(now, Operation::Reenroll, outcome, &view);
    let _ = machine.decide(now, &view);
}

/// The trust anchors' side of a certs-only body: pinned bootstrap and roll-over from the
/// fixed root.
fn trust(pki: &Pki, offered: &[Vec<u8>], now: OffsetDateTime) {
    let current = vec![pki.root.certificate_der().to_vec()];
    let _ = pinned(offered, &fingerprint(pki.root.certificate_der()));
    let added = rollover(&current, offered, now);
    assert!(
        added
            .iter()
            .all(|a| offered.contains(a) && !current.contains(a)),
        "roll-over adds only offered, new anchors"
    );
    let all = merged(&current, &added, now);
    assert!(all.len() <= current.len() + added.len());
}

/// Answers of every kind: an issued chain for the device key, a roll-over `cacerts`
/// (the next root and its link certificate signed by the current root), a chain for
/// another key, 202 with seconds and with a date, refusals with bodies.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    let b64 = |certs: &[&[u8]]| {
        fleetca_pki::certs_only(certs)
            .map(|der| fleetca_pki::base64_lines(&der).into_bytes())
            .unwrap_or_default()
    };
    let issued = b64(&[&pki.device_certificate, pki.operational.certificate_der()]);
    let mut seeds = vec![
        join(0, b"", &issued),
        join(0, b"", &b64(&[pki.operational.certificate_der()])),
        join(1, b"120", b""),
        join(1, b"Sun, 06 Nov 1994 08:49:37 GMT", b""),
        join(1, b"Fri, 31 Dec 9999 23:59:59 GMT", b""),
        join(
            4,
            b"",
            b"denied: rule serial_pattern: FUZZ-0001 does not match\n",
        ),
        join(10, b"30", b"store unavailable\n"),
        join(3, b"", b"authentication required"),
        join(12, b"", b"\xff\xfe not text"),
    ];
    if let Some(link) = link_certificate(pki) {
        seeds.push(join(
            0,
            b"",
            &b64(&[
                pki.next_root.certificate_der(),
                &link,
                pki.root.certificate_der(),
            ]),
        ));
    }
    seeds
}

/// The roll-over proof: the next root's subject and key, signed by the current root.
fn link_certificate(pki: &Pki) -> Option<Vec<u8>> {
    use fleetca_pki::rcgen;
    let next = fleetca_pki::CertificateInfo::from_der(pki.next_root.certificate_der()).ok()?;
    let mut params = rcgen::CertificateParams::default();
    // The default holds a CN, which a push would replace in place (first).
    params.distinguished_name = rcgen::DistinguishedName::new();
    for attribute in &next.subject {
        let arcs: Vec<u64> = attribute
            .oid
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        params
            .distinguished_name
            .push(rcgen::DnType::from_oid(&arcs), attribute.value.clone());
    }
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x4c, 0x49, 0x4e, 0x4b]));
    params.not_before = pki.made - time::Duration::hours(1);
    params.not_after = pki.made + time::Duration::days(3650);
    let root_key = fixed::p256_key("fleetca fuzz root")?;
    let next_key = fixed::p256_key("fleetca fuzz next root")?;
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&pki.root.certificate_der().into(), root_key).ok()?;
    let cert = params.signed_by(&next_key, &issuer).ok()?;
    Some(cert.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The roll-over seed reaches what it exists for: the next root is accepted.
    #[test]
    fn the_rollover_seed_adds_the_next_root() {
        let pki = fixed::pki_or_reason().unwrap_or_else(|e| unreachable!("{e}"));
        let link = link_certificate(pki).unwrap_or_default();
        let offered = vec![
            pki.next_root.certificate_der().to_vec(),
            link,
            pki.root.certificate_der().to_vec(),
        ];
        let added = rollover(
            &[pki.root.certificate_der().to_vec()],
            &offered,
            OffsetDateTime::now_utc(),
        );
        assert_eq!(added, vec![pki.next_root.certificate_der().to_vec()]);
    }

    #[test]
    fn the_issued_seed_is_accepted_for_the_device_key() {
        let pki = fixed::pki_or_reason().unwrap_or_else(|e| unreachable!("{e}"));
        let seed = seeds().into_iter().next().unwrap_or_default();
        let (status, _, body) = split(&seed).unwrap_or((0, &[], &[]));
        assert_eq!(status, 200);
        let Ok(EnrollAnswer::Issued(certs)) = enroll_answer(status, None, body) else {
            unreachable!("the issued seed is not an issued answer");
        };
        assert!(accept_issued(certs, &pki.device_key, DEVICE_SERIAL).is_ok());
    }
}
