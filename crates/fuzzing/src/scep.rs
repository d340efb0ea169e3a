//! `scep_message`: a SCEP pkiMessage (the body of `POST /scep?operation=PKIOperation`)
//! read as the server reads it before the store and the RA: CMS SignedData and the SCEP
//! attributes, the signature with the signer's certificate from the message, the
//! algorithms (with and without legacy SHA-1), then the pkcsPKIEnvelope opened with a
//! fixed RA credential and, for PKCSReq and RenewalReq, the CSR inside parsed.

use std::sync::OnceLock;

use fleetca_scep::client::{pki_message, RequestSigner};
use fleetca_scep::{MessageType, RaCredential};

/// The fixed RA key (RSA-2048): it protects nothing, it exists so that the seeds (made in
/// another process) are encrypted to the key the target opens them with.
const RA_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDOmd90unRQb6Q5\n3oClvdgJKu08rbY3T3WPcpPCREkYU6BoSWHLkFVhTjJQRRCzzJis0yULXZfaJks8\nGPVF9XQ2E6Y5J3UwzfcGKR88wyAoqzfMc1v2P3IcV8GNu95Sqkrxf4XzWWc+afHO\n6gBWgp1pk9NDPZjcn8VWhLHoPAkccxfUTKT0SRKsmdIIVGJUjQ3G3Fedkz29FWtc\n0AGhMkit67m9wInu1ilwQpUZ+/T3P8Mu2WmbxtbiKZ43GwGh/oLUZzUTcjr0OHcc\nk7DL4zRGECY43Cxomd94Pq1qwZllTXep+ZstDQnvdtiGsN8LVPqGEjiD+JNuPU+U\n6QP7trUpAgMBAAECggEAAn/EfvQ5b3amQSfynO6itBuvknYUd+9PX/yWEnnCe5eZ\nX2GR3AVDLyHjxGpNdStSpnaIYm6PpW0kqFWx89ZwAS50KolSZtR6+jlZniHLHArU\nKjY0BNLIJdUe64C8A/p43Rp6i5LHh67+5I6akfFTB6Go4s2WMYcCO1VwFHvTbWNm\ncyKS/M0mJ5m4r6S9hZi2HARHqb5uxfIaPZ4XZqqHwzxhYTPcfZIXz7wVZHcK4Tvz\nPMlwp+tKtAIYwh02klUnkTBonNiJ69JfdvT/FIV6q0q4abIuHAfN0STe3Qi2Ya2L\nfit5dLd14gro1iclSgWgwd2EUb9yNyDgv1lIkbTdbQKBgQDvfa6u8d3N3TYR6U0+\noet0/hIMIE8zJ9rydoZ0bk8fNaCqQ+YO4/UfJZ8GGKvhQfz8jrUbbUqUn6+npiZ/\ngoieITEjgZEW6BUTgzG05mOSNxoCvLDhmn2RJOpncPau1XqIMoYRG4mz2z7iNGYX\nTOqA5qEyAOp/KBwRWpohsRMNrQKBgQDc18eo3sWz0ParlAgis3GoDLijJ/t1RMdz\nQg17MXTTKZ1J5h4SRlnu+qrx4ryMt1WDyLFIAr7nVvdVhO9xZYsT0SujNU/mK9n+\nA1CyBXL6NejpyfbhI+AhIfENQJHdwsoUnVM0wQzzldwg7XbMNeztjjzk15N1sWRf\nAyiQHCi87QKBgQDjtaOnEa+ssr1bcHGSsNA4z+6G+x1y7V0/lrSm9c9jRFE8Mw0G\ncXa6o8G9QS4EIwMRe/r1VghIokCY7eDC8nFFsReQw/wZRJftkptrfneEKcIgghrI\nl2T24ZvCuOTEPZSg9TEGCSH4EemLmPjNBMQfxanU6owMVS3Czluo1z3fjQKBgQDc\nytcRHHhoiLi1XfCsUN+G9gD7DhQ3cCZAM3+q9Q0puOdKZMkX2EI9zVtvLhL4VKso\ncFPd/PDD9YyecaO6qZzcmTmZmMljA+CUNthMw2nqgk90vbkX6nhAZ+DKMQ4kuoSz\nC3+OtJuwRNmqCf/FtvxDnPuAh48kEdCZtVyuh5irGQKBgQCZ+JjTdqsr808kz9SN\nsPL/XCZjsFShdRXEyDsSA9pHAMtp5pNOZu6cR7YJo+pQhuagkRAn0GwjRIOVNP2x\nf9XLXUpnE+2Lrp+Cl3Txh9hVS7PmCGB8uP/AsSw6tG2dPQTD5Mi0iDAl6Hw9swS4\ntU/sLN1KTrQrbIOYbZRt7Q8BjQ==\n-----END PRIVATE KEY-----";

/// The fixed RA certificate (DER), its key (PKCS#8 DER) and the credential of both.
type FixedRa = (Vec<u8>, Vec<u8>, RaCredential);

/// The fixed RA certificate and credential: self-signed with fixed serial and dates, so
/// the same in every run.
fn ra() -> Option<&'static FixedRa> {
    static RA: OnceLock<Option<FixedRa>> = OnceLock::new();
    RA.get_or_init(|| {
        use fleetca_pki::rcgen;
        let key = fleetca_pki::SoftwareKey::from_pkcs8_pem(RA_KEY).ok()?;
        let pkcs8 = key.pkcs8_der();
        let pair = rcgen::KeyPair::try_from(pkcs8.as_slice()).ok()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Fuzz SCEP RA");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x5c, 0xe9]));
        params.not_before = time::macros::datetime!(2026-01-01 0:00 UTC);
        params.not_after = time::macros::datetime!(2046-01-01 0:00 UTC);
        let cert = params.self_signed(&pair).ok()?.der().to_vec();
        let credential = RaCredential::new(&cert, &pkcs8).ok()?;
        Some((cert, pkcs8, credential))
    })
    .as_ref()
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((_, _, credential)) = ra() else {
        return;
    };
    for legacy in [false, true] {
        if let Ok((kind, content)) = fleetca_scep::open_request(data, credential, legacy) {
            if matches!(kind, MessageType::PkcsReq | MessageType::RenewalReq) {
                let _ = fleetca_pki::CertificateRequest::from_der(&content);
            }
        }
    }
}

/// Requests of every type from the fixed device, signed with its key and encrypted to the
/// fixed RA certificate; cut and altered copies.
pub fn seeds() -> Vec<Vec<u8>> {
    let (Some((ra_cert, _, _)), Some(pki)) = (ra(), crate::fixed::pki()) else {
        return Vec::new();
    };
    let mut subject = fleetca_pki::rcgen::DistinguishedName::new();
    subject.push(
        fleetca_pki::rcgen::DnType::CommonName,
        crate::fixed::DEVICE_SERIAL,
    );
    let Ok(csr) = pki.device_key.certificate_request(subject, Vec::new(), &[]) else {
        return Vec::new();
    };
    let key = pki.device_key.pkcs8_der();
    let signer = RequestSigner {
        certificate_der: &pki.device_certificate,
        key_pkcs8: &key,
    };
    let id = fleetca_scep::client::transaction_id(&pki.device_key.public_key_der());
    let mut seeds = Vec::new();
    for (kind, content) in [
        (MessageType::PkcsReq, csr.clone()),
        (MessageType::RenewalReq, csr.clone()),
        (MessageType::CertPoll, vec![0x30, 0x00]),
        (MessageType::GetCert, vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        (MessageType::GetCrl, Vec::new()),
    ] {
        if let Ok(message) = pki_message(kind, &id, b"0123456789abcdef", &content, signer, ra_cert)
        {
            let mut altered = message.clone();
            if let Some(b) = altered.get_mut(message.len() / 2) {
                *b ^= 0x80;
            }
            seeds.extend(message.get(..message.len() / 2).map(<[u8]>::to_vec));
            seeds.push(altered);
            seeds.push(message);
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach past the envelope: whole messages open with the fixed RA key and
    /// their PKCSReq holds a CSR.
    #[test]
    fn whole_seeds_open_with_the_fixed_ra_key() {
        let (_, _, credential) = ra().unwrap();
        let opened: Vec<(MessageType, Vec<u8>)> = seeds()
            .iter()
            .filter_map(|s| fleetca_scep::open_request(s, credential, false).ok())
            .collect();
        assert_eq!(opened.len(), 5, "one whole message per type");
        let (kind, csr) = &opened[0];
        assert_eq!(*kind, MessageType::PkcsReq);
        fleetca_pki::CertificateRequest::from_der(csr).unwrap();
    }
}
