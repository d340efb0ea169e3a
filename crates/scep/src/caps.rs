//! GetCACaps and GetCACert (RFC 8894 sections 3.5.2 and 4.2).

use bytes::Bytes;
use fleetca_est::FrontEndContext;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::{binary_response, text_response, ScepFrontEnd};

/// What fleetca's SCEP server can do for every label.
pub(crate) const CAPABILITIES: &str =
    "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard\nRenewal\n";

/// What a label whose profile allows legacy algorithms adds (RFC 8894 section 3.5.2):
/// 3DES content encryption and SHA-1. Single DES has no capability keyword: it is what a
/// client falls back to without one, and such a label accepts it too.
pub(crate) const LEGACY_CAPABILITIES: &str = "DES3\nSHA-1\n";

/// GetCACaps for a label: only what is true of its profile.
pub(crate) fn ca_caps(legacy: bool) -> Response<Full<Bytes>> {
    let mut caps = CAPABILITIES.to_string();
    if legacy {
        caps.push_str(LEGACY_CAPABILITIES);
    }
    text_response(StatusCode::OK, caps)
}

impl ScepFrontEnd {
    /// The RA certificate and the label's CA chain as a certs-only PKCS#7
    /// (`application/x-x509-ca-ra-cert`).
    pub(crate) fn ca_cert(
        &self,
        label: Option<&str>,
        context: &FrontEndContext,
    ) -> Response<Full<Bytes>> {
        let credential = self.credential();
        let chain = context
            .cacerts(label)
            .map(fleetca_pki::parse_certs_only)
            .transpose();
        let message = chain.map_err(|e| e.to_string()).and_then(|chain| {
            let mut all: Vec<&[u8]> = vec![credential.certificate_der()];
            all.extend(chain.iter().flatten().map(Vec::as_slice));
            fleetca_pki::certs_only(&all).map_err(|e| e.to_string())
        });
        match message {
            Ok(der) => binary_response("application/x-x509-ca-ra-cert", der),
            Err(e) => {
                tracing::error!(error = %e, "SCEP GetCACert could not be built");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the CA certificates could not be encoded\n".into(),
                )
            }
        }
    }
}
