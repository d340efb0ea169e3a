//! CA keys in a PKCS#11 token (an HSM; SoftHSM2 in tests).
//!
//! [`Token::open`] loads the module, finds the token by label and logs in;
//! [`Pkcs11Key::generate`] creates a non-extractable key pair inside it and
//! [`Pkcs11Key::open`] finds one by label. A [`Pkcs11Key`] implements fleetca's
//! [`fleetca_pki::Signer`], so issuers, CRLs and OCSP responders sign with it exactly as
//! with a key file. Errors name the module, slot, token, key label and the PKCS#11 return
//! code; the PIN is never logged or shown.

mod error;
mod key;
mod token;

pub use error::{rv_name, HsmError, Pkcs11Failure, TokenRef};
pub use key::{KeyProtection, Pkcs11Key};
pub use token::{Pin, Token};

#[cfg(test)]
mod tests;
