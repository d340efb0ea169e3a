//! Stable-toolchain stand-ins for the fuzz targets in `fuzz/`: valid messages mutated at
//! random (bit flips, byte replacement, truncation, extension) must be parsed or refused,
//! never panic. The generator is deterministic so a failure reproduces.

use crate::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        match self.next() % 4 {
            0 => {
                for _ in 0..=(self.next() % 4) {
                    let i = (self.next() as usize) % out.len().max(1);
                    if let Some(b) = out.get_mut(i) {
                        *b ^= 1 << (self.next() % 8);
                    }
                }
            }
            1 => {
                let i = (self.next() as usize) % out.len().max(1);
                if let Some(b) = out.get_mut(i) {
                    *b = self.next() as u8;
                }
            }
            2 => out.truncate((self.next() as usize) % (out.len() + 1)),
            _ => {
                let i = (self.next() as usize) % (out.len() + 1);
                out.insert(i, self.next() as u8);
            }
        }
        out
    }
}

fn samples() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let key = KeyAlgorithm::P256.generate().unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-1");
    let csr = key
        .certificate_request(dn, vec![SanType::URI("urn:x".try_into().unwrap())], &[])
        .unwrap();
    let root = CaCertificate::root(
        &key,
        &HierarchyParams::new("Fuzz"),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let cms = certs_only(&[&root.der]).unwrap();
    (csr, root.der, cms)
}

#[test]
fn mutated_csrs_certificates_and_cms_never_panic() {
    let (csr, cert, cms) = samples();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut refused = 0;
    for _ in 0..3000 {
        if CertificateRequest::from_der(&rng.mutate(&csr)).is_err() {
            refused += 1;
        }
        let _ = CertificateInfo::from_der(&rng.mutate(&cert));
        let _ = parse_certs_only(&rng.mutate(&cms));
    }
    // Most mutations break the signature or the encoding: the check is not vacuous.
    assert!(
        refused > 2500,
        "only {refused} of 3000 mutated CSRs were refused"
    );
}

#[test]
fn mutated_certificates_fail_lint_or_pass_it_without_panicking() {
    let (_, cert, _) = samples();
    let mut rng = XorShift(7);
    let expect = LintExpectations {
        end_entity: false,
        issuer_subject: vec![],
        issuer_key_id: vec![],
        issuer_not_after: None,
    };
    for _ in 0..2000 {
        let _ = lint_certificate(&rng.mutate(&cert), &expect);
    }
}

#[test]
fn mutated_ocsp_requests_never_panic() {
    let now = time::OffsetDateTime::now_utc();
    let key = std::sync::Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let root = CaCertificate::root(key.as_ref(), &HierarchyParams::new("Fuzz"), now).unwrap();
    let ca = Issuer::new("root", root.der.clone(), key).unwrap();
    let rkey = std::sync::Arc::new(KeyAlgorithm::P256.generate().unwrap());
    let rcert =
        ocsp_responder_certificate(&ca, &rkey.public_key_der(), time::Duration::days(30), now)
            .unwrap();
    let responders = [std::sync::Arc::new(
        OcspResponder::new("root", ca.certificate_der(), &rcert, rkey).unwrap(),
    )];
    let request = build_ocsp_request(
        ca.certificate_der(),
        &CertificateSerial::generate(),
        Some(b"nonce"),
    )
    .unwrap();
    assert!(parse_ocsp_request(&request, &responders).is_ok());
    let mut rng = XorShift(99);
    let mut refused = 0;
    for _ in 0..3000 {
        if parse_ocsp_request(&rng.mutate(&request), &responders).is_err() {
            refused += 1;
        }
    }
    assert!(
        refused > 1000,
        "only {refused} of 3000 mutated requests were refused"
    );
}
