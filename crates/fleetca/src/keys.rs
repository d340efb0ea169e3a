//! Where CA keys live: PKCS#8 files in the data directory, or a PKCS#11 token named in
//! `[pkcs11]`. Everything past this file sees only `Arc<dyn Signer>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fleetca_hsm::{Pin, Pkcs11Key, Token};
use fleetca_pki::{KeyAlgorithm, Signer, SoftwareKey};

use crate::config::Config;
use crate::files::{read_key, write_key};

/// Prefix of a key setting that names a token key: `pkcs11:<label>`.
pub const PKCS11_PREFIX: &str = "pkcs11:";

/// The token label `fleetca init` gives a CA's key (`operational-ca`).
pub fn ca_key_label(role: &str) -> String {
    format!("{role}-ca")
}

/// A key setting: a file, or a key in the configured PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A PKCS#8 PEM file (mode 0600).
    File(PathBuf),
    /// The private key with this CKA_LABEL in the `[pkcs11]` token.
    Pkcs11 {
        /// CKA_LABEL.
        label: String,
    },
}

impl KeyRef {
    /// `pkcs11:<label>`, or a path resolved against `base`.
    pub fn parse(setting: &Path, base: &Path) -> Self {
        match setting.to_str().and_then(|s| s.strip_prefix(PKCS11_PREFIX)) {
            Some(label) => Self::Pkcs11 {
                label: label.to_string(),
            },
            None if setting.is_absolute() => Self::File(setting.to_path_buf()),
            None => Self::File(base.join(setting)),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Pkcs11 { label } => write!(f, "{PKCS11_PREFIX}{label}"),
        }
    }
}

/// `[pkcs11]`: module, token label and the file holding the user PIN. The PIN itself is
/// read only when the token is opened, and never kept in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Settings {
    pub module: PathBuf,
    pub token: String,
    pub pin_file: PathBuf,
}

impl Pkcs11Settings {
    /// Loads the module, finds the token and logs in.
    pub fn open(&self) -> anyhow::Result<Token> {
        let pin = Pin::from_file(&self.pin_file)?;
        Ok(Token::open(&self.module, &self.token, pin)?)
    }
}

/// Opens the keys a configuration names. With `[pkcs11]`, the token is opened (and
/// logged into) once, when this is created: a bad module, token or PIN stops start-up.
#[derive(Clone, Debug)]
pub struct KeySource {
    token: Option<Token>,
}

impl KeySource {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let token = config
            .pkcs11
            .as_ref()
            .map(Pkcs11Settings::open)
            .transpose()?;
        Ok(Self { token })
    }

    /// A source for an already opened token (or none).
    pub fn with_token(token: Option<Token>) -> Self {
        Self { token }
    }

    /// Whether new keys (OCSP signers) go into a token.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The signer for a key setting. `what` names the key in errors.
    pub fn signer(&self, what: &str, key: &KeyRef) -> anyhow::Result<Arc<dyn Signer>> {
        match key {
            KeyRef::File(path) => {
                let key = SoftwareKey::from_key_file(&read_key(path)?)
                    .with_context(|| format!("{what} key {}", path.display()))?;
                Ok(Arc::new(key))
            }
            KeyRef::Pkcs11 { label } => {
                let token = self.token.as_ref().with_context(|| {
                    format!(
                        "{what} key {key} is in a PKCS#11 token, but [pkcs11] is not configured"
                    )
                })?;
                let key = Pkcs11Key::open(token, label).with_context(|| format!("{what} key"))?;
                Ok(Arc::new(key))
            }
        }
    }

    /// A new key for `what`: in the token when there is one (label `<prefix>-<random>`,
    /// written as `pkcs11:<label>` to `reference_file`), else a PKCS#8 file at that path.
    pub fn generate_replaceable(
        &self,
        prefix: &str,
        algorithm: KeyAlgorithm,
        reference_file: &Path,
    ) -> anyhow::Result<Arc<dyn Signer>> {
        match &self.token {
            None => {
                let key = algorithm.generate()?;
                write_key(reference_file, &key.to_pkcs8_pem(), false)?;
                Ok(Arc::new(key))
            }
            Some(token) => {
                let mut suffix = [0u8; 4];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
                let label = format!("{prefix}-{}", hex_lower(&suffix));
                let key = Pkcs11Key::generate(token, &label, algorithm)?;
                write_key(reference_file, &format!("{PKCS11_PREFIX}{label}\n"), false)?;
                Ok(Arc::new(key))
            }
        }
    }

    /// Reads a key file written by [`Self::generate_replaceable`]: PKCS#8, or a
    /// `pkcs11:<label>` line.
    pub fn replaceable(
        &self,
        what: &str,
        reference_file: &Path,
    ) -> anyhow::Result<Arc<dyn Signer>> {
        let bytes = read_key(reference_file)?;
        // A `pkcs11:` reference is text; a key file may be DER (not UTF-8).
        let reference = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().strip_prefix(PKCS11_PREFIX));
        match reference {
            Some(label) => self.signer(
                what,
                &KeyRef::Pkcs11 {
                    label: label.to_string(),
                },
            ),
            None => {
                let key = SoftwareKey::from_key_file(&bytes)
                    .with_context(|| format!("{what} key {}", reference_file.display()))?;
                Ok(Arc::new(key))
            }
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
