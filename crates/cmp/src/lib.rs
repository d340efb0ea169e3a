//! CMP, the Lightweight CMP Profile (RFC 9483), over HTTP (RFC 6712) at
//! `/.well-known/cmp` and `/.well-known/cmp/p/<label>` on the EST listener: a second front
//! end on the same enrollment pipeline (`fleetca-enroll`), RA, CA, inventory and audit.
//!
//! Messages are decoded and encoded with RustCrypto `cmpv2`/`crmf`. One file per operation:
//! [`enroll`] (`ir`, `cr`, `p10cr`, `kur`), [`confirm`] (`certConf`/`pkiConf`, overdue
//! confirmations), [`revoke`] (`rr`), [`general`] (`genm`/`genp`); [`protection`] verifies
//! and makes message protection; [`secret`] derives the one-time shared secrets.

mod authenticate;
pub mod client;
pub mod confirm;
pub mod enroll;
mod error;
mod front_end;
pub mod general;
mod mac;
mod message;
mod poll;
mod protection;
mod recent;
pub mod revoke;
pub mod secret;

pub use confirm::revoke_overdue;
pub use error::CmpError;
pub use front_end::{CmpBackend, CmpFrontEnd, CmpSettings, CMP_CONTENT_TYPE};
pub use protection::ProtectionCredential;
pub use secret::{new_reference, secret_sha256, SecretKey};

/// Reads a request body as the front end does before it looks anything up (for the fuzz
/// targets): the PKIMessage and the bytes its protection covers, the header checks, the
/// protection (a signature verified with the first of extraCerts; a PasswordBasedMac
/// computed with `mac_secret`), and each CRMF or PKCS#10 request with its proof of
/// possession. Never panics; every error is the client's.
pub fn parse_request(body: &[u8], mac_secret: &[u8]) -> Result<(), CmpError> {
    let received = message::parse(body)?;
    message::check_header(&received.message.header)?;
    match protection::protection_of(&received.message)? {
        protection::Protection::Signature { algorithm, chain } => {
            if let Some(signer) = chain.first() {
                protection::verify_signature(
                    &received.message,
                    &received.protected_part,
                    algorithm,
                    signer,
                )?;
            }
        }
        protection::Protection::Mac { parameters, .. } => {
            protection::verify_mac(
                &received.message,
                &received.protected_part,
                &parameters,
                mac_secret,
            )?;
        }
    }
    match &received.message.body {
        message::Body::Cmp(body) => match enroll::requests_of(body.as_ref())? {
            Some(request) => request.csr.map(|_| ()),
            None => Ok(()),
        },
        message::Body::PollReq(_) | message::Body::Error(_) => Ok(()),
    }
}
