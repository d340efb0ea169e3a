//! Errors of the `hsm` crate. Every token failure names the module, the slot and token,
//! the key label where there is one, and the PKCS#11 return code (`CKR_PIN_INCORRECT`).
//! No variant ever carries the PIN.

use std::fmt;
use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

/// Which token an error is about: module path, slot (once found) and token label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    /// Path of the PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Slot id, once the token was found.
    pub slot: Option<u64>,
    /// Token label.
    pub token: String,
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PKCS#11 module {}", self.module.display())?;
        if let Some(slot) = self.slot {
            write!(f, ", slot {slot}")?;
        }
        write!(f, ", token '{}'", self.token)
    }
}

/// A PKCS#11 failure: the function that failed and its return code, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Failure {
    /// The PKCS#11 function (`C_Login`, `C_Sign`, ...), or what the wrapper was doing.
    pub function: String,
    /// The return code name (`CKR_PIN_INCORRECT`), or the wrapper's own error.
    pub code: String,
    /// The return code, when the module returned one.
    pub rv: Option<RvError>,
}

impl Pkcs11Failure {
    pub(crate) fn from_cryptoki(e: &CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => Self {
                function: format!("C_{function:?}"),
                code: rv_name(*rv),
                rv: Some(*rv),
            },
            other => Self {
                function: "cryptoki".into(),
                code: other.to_string(),
                rv: None,
            },
        }
    }

    /// Whether the session should be dropped and the operation retried on a new one.
    pub(crate) fn session_lost(&self) -> bool {
        matches!(
            self.rv,
            Some(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent
            )
        )
    }

    /// Whether the cached key handle is stale (find the key again).
    pub(crate) fn handle_lost(&self) -> bool {
        matches!(
            self.rv,
            Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
        )
    }

    fn hint(&self) -> &'static str {
        match self.rv {
            Some(RvError::PinIncorrect) => " (the PIN in the PIN file is wrong)",
            Some(RvError::PinLocked) => {
                " (the user PIN is locked; the security officer must reset it)"
            }
            Some(RvError::PinExpired) => " (the user PIN has expired; set a new one)",
            Some(RvError::UserPinNotInitialized) => {
                " (the token has no user PIN; initialise it, e.g. softhsm2-util --init-token)"
            }
            Some(RvError::TokenWriteProtected) => " (the token is write-protected)",
            Some(RvError::MechanismInvalid) => {
                " (the token does not offer this mechanism for the key algorithm)"
            }
            Some(RvError::CurveNotSupported) => " (the token does not support this curve)",
            Some(RvError::DeviceMemory) => " (the token is full)",
            _ => "",
        }
    }
}

impl fmt::Display for Pkcs11Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}{}", self.function, self.code, self.hint())
    }
}

/// The standard name of a PKCS#11 return code: `RvError::PinIncorrect` is
/// `CKR_PIN_INCORRECT`. cryptoki's variant names are the CKR_ names in CamelCase.
pub fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED (0x{code:08X})"),
        RvError::UnknownErrorCode(code) => format!("unknown return code 0x{code:08X}"),
        other => {
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// Errors of the `hsm` crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module (shared library) could not be loaded.
    #[error("cannot load PKCS#11 module {}: {reason} (check --pkcs11-module / pkcs11.module; SoftHSM2 is /usr/lib/softhsm/libsofthsm2.so)", module.display())]
    ModuleLoad {
        /// The path given.
        module: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// The module was loaded but a call outside any token failed (C_Initialize, C_GetSlotList).
    #[error("PKCS#11 module {}: {failure}", module.display())]
    Module {
        /// The path given.
        module: PathBuf,
        /// What failed.
        failure: Box<Pkcs11Failure>,
    },
    /// No slot holds a token with this label.
    #[error("{token}: no such token (tokens present: {})", if present.is_empty() { "none".to_string() } else { present.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ") })]
    TokenNotFound {
        /// Module and the label looked for.
        token: TokenRef,
        /// Labels of the tokens the module does have.
        present: Vec<String>,
    },
    /// A token operation failed.
    #[error("{token}{}: {failure}", key.as_ref().map(|k| format!(", key '{k}'")).unwrap_or_default())]
    Token {
        /// Which token.
        token: TokenRef,
        /// The key label, when the operation was about a key.
        key: Option<String>,
        /// What failed.
        failure: Box<Pkcs11Failure>,
    },
    /// No private key with this label on the token.
    #[error("{token}: no private key labelled '{key}' (create the CA keys with `fleetca init --pkcs11-module ...`)")]
    KeyNotFound {
        /// Which token.
        token: TokenRef,
        /// The label looked for.
        key: String,
    },
    /// Generation refused: a key with this label exists already.
    #[error("{token}: a key labelled '{key}' already exists; refusing to create another")]
    KeyExists {
        /// Which token.
        token: TokenRef,
        /// The label.
        key: String,
    },
    /// A key is there but is not usable as a CA key (wrong type, missing attribute,
    /// extractable, public key does not match).
    #[error("{token}, key '{key}': {reason}")]
    UnusableKey {
        /// Which token.
        token: TokenRef,
        /// The label.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The key algorithm has no PKCS#11 implementation here.
    #[error("{algorithm} keys are not supported in a PKCS#11 token by fleetca")]
    UnsupportedAlgorithm {
        /// The algorithm name.
        algorithm: String,
    },
    /// The PIN file could not be used.
    #[error("PIN file {}: {reason}", path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_have_their_standard_names() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(rv_name(RvError::UserNotLoggedIn), "CKR_USER_NOT_LOGGED_IN");
        assert_eq!(rv_name(RvError::TokenNotPresent), "CKR_TOKEN_NOT_PRESENT");
        assert_eq!(
            rv_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED (0x80000001)"
        );
    }
}
