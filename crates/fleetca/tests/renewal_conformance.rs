//! Re-enrollment requests built the ways real EST clients build them (issue 14): with
//! openssl and with rcgen, copying the current certificate's extensions, in the enrollment
//! template's attribute order, with PrintableString or UTF8String, with and without
//! subjectAltName, over TLS 1.2 with `Connection: close` and no `Expect` handling, base64
//! with and without line breaks. Each renews; each request for more than the profile grants
//! is refused and the 403 names the rule.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use fleetca_pki::rcgen::{self, DistinguishedName, DnType, DnValue};

const SERIAL: &str = "SN-RENEW-1";
const SAN: &str = "URI:urn:dev:serial:SN-RENEW-1";

fn server() -> Server {
    Server::start_with(|c| {
        *c = c
            .replacen(
                "subject_alt_names = []",
                "subject_alt_names = [\"URI:urn:dev:serial:{serial}\"]",
                1,
            )
            // One device renews here once per client tool, minutes apart: more than the
            // per-device limits `init` writes allow. The point here is the clients.
            .replacen("max_active_certificates = 3\n", "", 1)
            .replacen("rate_limit = { max = 10, per = \"1d\" }\n", "", 1);
    })
}

/// The device's current operational key and certificate.
struct Device {
    key: PathBuf,
    cert: PathBuf,
    n: usize,
}

impl Device {
    fn enrolled(server: &Server) -> Self {
        let (bk, bc) = birth(server, SERIAL);
        // The enrollment template lists serialNumber first; the certificate comes back in
        // the profile's order.
        let (key, cert) = enroll(
            server,
            "simpleenroll",
            (&bc, &bk),
            &format!("/serialNumber={SERIAL}/CN={SERIAL}"),
            "op0",
        );
        let subject =
            openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-subject"]).stdout;
        assert_eq!(
            String::from_utf8(subject).unwrap().trim(),
            format!("subject=CN = {SERIAL}, serialNumber = {SERIAL}")
        );
        Self { key, cert, n: 0 }
    }

    fn new_key(&mut self, server: &Server) -> PathBuf {
        self.n += 1;
        let key = server.work(&format!("renew{}.key", self.n));
        new_key(&key);
        key
    }

    /// POSTs `body` to simplereenroll with the current certificate; on 200 the issued
    /// certificate (for `key`) becomes the current one.
    fn renew(&mut self, server: &Server, key: &Path, body: &str, extra: &[&str]) -> Answer {
        let file = server.work(&format!("renew{}.b64", self.n));
        std::fs::write(&file, body).unwrap();
        let a = post_csr(
            server,
            "simplereenroll",
            Some((&self.cert, &self.key)),
            &file,
            extra,
        );
        if a.status == 200 {
            let cert = server.work(&format!("renew{}.pem", self.n));
            certs_only_to_pem(&a.body, &cert);
            self.cert = cert;
            self.key = key.to_path_buf();
        }
        a
    }
}

fn openssl_csr(key: &Path, subj: &str, addext: &[&str]) -> Vec<u8> {
    let mut args = vec![
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        subj,
        "-outform",
        "DER",
    ];
    for e in addext {
        args.extend(["-addext", e]);
    }
    openssl(&args).stdout
}

fn rcgen_csr(
    key: &Path,
    dn: DistinguishedName,
    params: impl FnOnce(&mut rcgen::CertificateParams),
) -> Vec<u8> {
    let kp = rcgen::KeyPair::from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = dn;
    params(&mut p);
    p.serialize_request(&kp).unwrap().der().to_vec()
}

fn one_line(der: &[u8]) -> String {
    base64_lines(der).replace('\n', "")
}

fn assert_renewed(a: &Answer, case: &str) {
    assert_eq!(a.status, 200, "{case}: {}", a.text());
}

#[test]
fn renewal_requests_as_real_clients_build_them_renew() {
    require_tools!("openssl", "curl");
    let server = server();
    let mut device = Device::enrolled(&server);

    // 1. openssl x509 -x509toreq -copy_extensions copyall: the current certificate's
    //    subject, subjectAltName and every extension (AKI, SKI, CRLDP, AIA, keyUsage, EKU,
    //    basicConstraints CA:FALSE), signed by the new key.
    let key = device.new_key(&server);
    // (OpenSSL 3.0 writes text and PEM with -x509toreq whatever -outform says.)
    let copied = server.work("copy.pem");
    openssl(&[
        "x509",
        "-x509toreq",
        "-in",
        device.cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-copy_extensions",
        "copyall",
        "-out",
        copied.to_str().unwrap(),
    ]);
    let der = openssl(&["req", "-in", copied.to_str().unwrap(), "-outform", "DER"]).stdout;
    let text = openssl(&["req", "-in", copied.to_str().unwrap(), "-noout", "-text"]).stdout;
    let text = String::from_utf8(text).unwrap();
    // (OpenSSL leaves out the key identifiers; case 1b copies them.)
    for ext in ["Key Usage", "Basic Constraints", "Subject Alternative Name"] {
        assert!(text.contains(ext), "the copied CSR lacks {ext}: {text}");
    }
    let a = device.renew(&server, &key, &base64_lines(&der), &[]);
    assert_renewed(&a, "copy-all-extensions");
    // 1b. As EST client libraries do it: every extension of the current certificate
    //     copied byte for byte, key identifiers included (rcgen).
    let key = device.new_key(&server);
    let current = std::fs::read(&device.cert).unwrap();
    let current = x509_parser::pem::parse_x509_pem(&current).unwrap().1;
    let current = current.parse_x509().unwrap();
    let mut copied = Vec::new();
    for ext in current.extensions() {
        let arcs: Vec<u64> = ext.oid.iter().unwrap().collect();
        let mut c = rcgen::CustomExtension::from_oid_content(&arcs, ext.value.to_vec());
        c.set_criticality(ext.critical);
        copied.push(c);
    }
    for oid in [
        "2.5.29.35",
        "2.5.29.14",
        "2.5.29.31",
        "1.3.6.1.5.5.7.1.1",
        "2.5.29.37",
    ] {
        assert!(
            current
                .extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == oid),
            "the current certificate lacks {oid}"
        );
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, SERIAL);
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), SERIAL);
    let der = rcgen_csr(&key, dn, |p| p.custom_extensions = copied);
    assert_renewed(
        &device.renew(&server, &key, &base64_lines(&der), &[]),
        "every extension copied",
    );

    // The decision names what was ignored.
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["decision", "list", "--verbose", "--data-dir"])
            .arg(server.data()),
    );
    let decisions = String::from_utf8(out.stdout).unwrap();
    assert!(
        decisions.contains("requested extensions ignored")
            && decisions.contains("cRLDistributionPoints")
            && decisions.contains("authorityKeyIdentifier"),
        "{decisions}"
    );

    // 2. The enrollment template's attribute order, no subjectAltName (openssl).
    let key = device.new_key(&server);
    let der = openssl_csr(&key, &format!("/serialNumber={SERIAL}/CN={SERIAL}"), &[]);
    assert_renewed(
        &device.renew(&server, &key, &base64_lines(&der), &[]),
        "template order",
    );

    // 3. With subjectAltName and the usual client template extensions (openssl).
    let key = device.new_key(&server);
    let der = openssl_csr(
        &key,
        &format!("/CN={SERIAL}/serialNumber={SERIAL}"),
        &[
            &format!("subjectAltName={SAN}"),
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=clientAuth",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    assert_renewed(
        &device.renew(&server, &key, &base64_lines(&der), &[]),
        "openssl with SAN",
    );

    // 4. PrintableString CN and UTF8String serialNumber (the profile's are the other way
    //    round), with subjectAltName (rcgen).
    let key = device.new_key(&server);
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        DnValue::PrintableString(SERIAL.try_into().unwrap()),
    );
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::Utf8String(SERIAL.into()),
    );
    let der = rcgen_csr(&key, dn, |p| {
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "urn:dev:serial:SN-RENEW-1".try_into().unwrap(),
        )];
    });
    assert_renewed(
        &device.renew(&server, &key, &base64_lines(&der), &[]),
        "string types",
    );

    // 5. Reverse order, UTF8String everywhere, keyUsage digitalSignature, no SAN (rcgen),
    //    base64 without line breaks.
    let key = device.new_key(&server);
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::Utf8String(SERIAL.into()),
    );
    dn.push(DnType::CommonName, DnValue::Utf8String(SERIAL.into()));
    let der = rcgen_csr(&key, dn, |p| {
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    });
    assert_renewed(
        &device.renew(&server, &key, &one_line(&der), &[]),
        "one-line base64",
    );

    // 6. TLS 1.2, Connection: close, no Expect handling.
    let key = device.new_key(&server);
    let der = openssl_csr(&key, &format!("/serialNumber={SERIAL}/CN={SERIAL}"), &[]);
    let a = device.renew(
        &server,
        &key,
        &base64_lines(&der),
        &[
            "--tls-max",
            "1.2",
            "-H",
            "Connection: close",
            "-H",
            "Expect:",
        ],
    );
    assert_renewed(&a, "TLS 1.2, Connection: close");

    // The last certificate still has the profile's subject order and name.
    let subject = openssl(&[
        "x509",
        "-in",
        device.cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName",
    ])
    .stdout;
    let subject = String::from_utf8(subject).unwrap();
    assert!(
        subject.contains(&format!("subject=CN = {SERIAL}, serialNumber = {SERIAL}")),
        "{subject}"
    );
    assert!(
        subject.contains("URI:urn:dev:serial:SN-RENEW-1"),
        "{subject}"
    );
}

#[test]
fn renewal_requests_for_more_than_the_profile_grants_are_refused_with_the_rule() {
    require_tools!("openssl", "curl");
    let server = server();
    let mut device = Device::enrolled(&server);
    let subj = format!("/CN={SERIAL}/serialNumber={SERIAL}");
    let cases: Vec<(&str, String, Vec<String>, &str, &str)> = vec![
        (
            "CA:TRUE",
            subj.clone(),
            vec!["basicConstraints=critical,CA:TRUE".into()],
            "no-ca-request",
            "CA:TRUE",
        ),
        (
            "keyCertSign",
            subj.clone(),
            vec!["keyUsage=critical,digitalSignature,keyCertSign".into()],
            "no-extra-extensions",
            "keyCertSign",
        ),
        (
            "serverAuth",
            subj.clone(),
            vec!["extendedKeyUsage=clientAuth,serverAuth".into()],
            "no-extra-extensions",
            "serverAuth",
        ),
        (
            "unknown critical",
            subj.clone(),
            vec!["1.2.3.4=critical,ASN1:NULL".into()],
            "no-extra-extensions",
            "1.2.3.4",
        ),
        (
            "another CN",
            format!("/CN=SN-OTHER/serialNumber={SERIAL}"),
            vec![],
            "subject",
            "CN=SN-OTHER",
        ),
        (
            "an extra attribute",
            format!("{subj}/O=Evil"),
            vec![],
            "subject",
            "O=Evil",
        ),
        (
            "a missing attribute",
            format!("/serialNumber={SERIAL}"),
            vec![],
            "subject",
            "CN=SN-RENEW-1",
        ),
        (
            "a foreign name",
            subj.clone(),
            vec!["subjectAltName=URI:urn:dev:serial:SN-OTHER".into()],
            "subject",
            "SN-OTHER",
        ),
    ];
    for (case, subj, addext, rule, needle) in cases {
        let key = device.new_key(&server);
        let addext: Vec<&str> = addext.iter().map(String::as_str).collect();
        let der = openssl_csr(&key, &subj, &addext);
        let a = device.renew(&server, &key, &base64_lines(&der), &[]);
        assert_eq!(a.status, 403, "{case}: {}", a.text());
        assert!(
            a.text().contains(&format!("'{rule}'")) && a.text().contains(needle),
            "{case}: {}",
            a.text()
        );
    }
}

#[test]
fn a_station_request_with_a_key_usage_template_is_issued() {
    require_tools!("openssl", "curl");
    let server = Server::start();
    let out_dir = server.add_station("line-1");
    let key = server.work("st.key");
    new_key(&key);
    let der = openssl_csr(
        &key,
        "/serialNumber=SN-ST-1",
        &[
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=clientAuth",
        ],
    );
    let csr = server.work("st.b64");
    std::fs::write(&csr, base64_lines(&der)).unwrap();
    let a = post_csr(
        &server,
        "birth/simpleenroll",
        Some((&out_dir.join("line-1.pem"), &out_dir.join("line-1.key"))),
        &csr,
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text());
}
