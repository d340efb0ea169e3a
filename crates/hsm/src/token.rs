//! A logged-in PKCS#11 token: the module (loaded once per process), the slot holding the
//! token with a given label, and a pool of logged-in sessions.
//!
//! cryptoki's `Session` is `Send` but not `Sync`, so a session serves one thread at a time.
//! Signing checks a session out of the pool, signs, and puts it back: the pool's mutex is
//! held only to pop or push a handle, never during a token call, so signatures from many
//! worker threads run in parallel on as many sessions as there are concurrent signers.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::error::{HsmError, Pkcs11Failure, TokenRef};

/// Idle sessions kept per token; more concurrent signers open more, and the surplus is
/// closed when they are returned.
const MAX_IDLE_SESSIONS: usize = 64;

/// A user PIN. `Debug` never prints it, and it is never logged or put in an error.
#[derive(Clone)]
pub struct Pin(AuthPin);

impl Pin {
    /// A PIN from its text.
    pub fn new(pin: impl Into<String>) -> Self {
        Self(AuthPin::from(pin.into()))
    }

    /// Reads the PIN from the first line of a file that only its owner can read.
    pub fn from_file(path: &Path) -> Result<Self, HsmError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| HsmError::PinFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "readable by group or others (mode {mode:o}); run: chmod 600 {}",
                path.display()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let pin = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        if pin.is_empty() {
            return Err(err(
                "the first line is empty; it must hold the user PIN".into()
            ));
        }
        Ok(Self::new(pin))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(***)")
    }
}

/// Loaded modules, by path. A module is initialised once per process: a second
/// `C_Initialize` would fail with CKR_CRYPTOKI_ALREADY_INITIALIZED, and finalising it
/// under another user of the same module would break that user.
fn module(path: &Path) -> Result<Pkcs11, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = lock(MODULES.get_or_init(Default::default));
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    if !path.is_file() {
        return Err(HsmError::ModuleLoad {
            module: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(path).map_err(|e| HsmError::ModuleLoad {
        module: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(HsmError::Module {
                module: path.to_path_buf(),
                failure: Box::new(Pkcs11Failure::from_cryptoki(&e)),
            })
        }
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A poisoned lock only means another thread panicked while holding it; the data (a
/// list of sessions or handles) is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token found by label and logged into. Cheap to clone.
#[derive(Clone)]
pub struct Token {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    ctx: Pkcs11,
    slot: Slot,
    reference: TokenRef,
    pin: Pin,
    idle: Mutex<Vec<Session>>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &self.inner.reference.to_string())
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Loads `module`, finds the token labelled `label` and logs in with `pin` (a wrong
    /// PIN fails here, not at the first signature).
    pub fn open(module: &Path, label: &str, pin: Pin) -> Result<Self, HsmError> {
        let ctx = self::module(module)?;
        let mut reference = TokenRef {
            module: module.to_path_buf(),
            slot: None,
            token: label.to_string(),
        };
        let module_err = |e: CkError| HsmError::Module {
            module: module.to_path_buf(),
            failure: Box::new(Pkcs11Failure::from_cryptoki(&e)),
        };
        let slots = ctx.get_slots_with_token().map_err(module_err)?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(module_err)?;
            let name = info.label().trim_end().to_string();
            // SoftHSM (and some HSMs) always offer an empty, uninitialised token.
            if !info.token_initialized() {
                continue;
            }
            if name == label && found.is_none() {
                found = Some(slot);
            }
            present.push(name);
        }
        let Some(slot) = found else {
            return Err(HsmError::TokenNotFound {
                token: reference,
                present,
            });
        };
        reference.slot = Some(slot.id());
        let token = Self {
            inner: Arc::new(TokenInner {
                ctx,
                slot,
                reference,
                pin,
                idle: Mutex::new(Vec::new()),
            }),
        };
        let session = token.open_session()?;
        token.give_back(session);
        Ok(token)
    }

    /// Module, slot and label, for messages.
    pub fn reference(&self) -> &TokenRef {
        &self.inner.reference
    }

    pub(crate) fn error(&self, key: Option<&str>, e: &CkError) -> HsmError {
        HsmError::Token {
            token: self.inner.reference.clone(),
            key: key.map(str::to_string),
            failure: Box::new(Pkcs11Failure::from_cryptoki(e)),
        }
    }

    /// A new read-write session, logged in as the user. Login state is per application,
    /// so a second session finds the user logged in already.
    fn open_session(&self) -> Result<Session, HsmError> {
        let session = self
            .inner
            .ctx
            .open_rw_session(self.inner.slot)
            .map_err(|e| self.error(None, &e))?;
        match session.login(UserType::User, Some(&self.inner.pin.0)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(self.error(None, &e)),
        }
    }

    fn give_back(&self, session: Session) {
        let mut idle = lock(&self.inner.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    /// Logs the application out of the token, as a token reset or an HSM fail-over would
    /// (tests of the re-login path).
    #[cfg(test)]
    pub(crate) fn logout_for_test(&self) -> Result<(), HsmError> {
        self.with_session(None, |s| s.logout())
    }

    /// Closes every idle session: the next operation opens a new one and logs in again.
    /// Some modules answer a lost login with CKR_KEY_HANDLE_INVALID (the private key is
    /// invisible to a public session), not CKR_USER_NOT_LOGGED_IN.
    pub(crate) fn reset_sessions(&self) {
        lock(&self.inner.idle).clear();
    }

    /// Runs `op` on a logged-in session. When the session turns out to be gone (closed,
    /// logged out, token re-inserted) every pooled session is dropped and `op` runs once
    /// more on a new one.
    pub(crate) fn with_session<T>(
        &self,
        key: Option<&str>,
        op: impl Fn(&Session) -> Result<T, CkError>,
    ) -> Result<T, HsmError> {
        let mut retried = false;
        loop {
            let pooled = lock(&self.inner.idle).pop();
            let session = match pooled {
                Some(s) => s,
                None => self.open_session()?,
            };
            match op(&session) {
                Ok(v) => {
                    self.give_back(session);
                    return Ok(v);
                }
                Err(e) => {
                    let failure = Pkcs11Failure::from_cryptoki(&e);
                    if failure.session_lost() {
                        drop(session);
                        lock(&self.inner.idle).clear();
                        if !retried {
                            retried = true;
                            tracing::warn!(token = %self.inner.reference, %failure, "PKCS#11 session lost; opening a new one");
                            continue;
                        }
                    } else {
                        self.give_back(session);
                    }
                    return Err(self.error(key, &e));
                }
            }
        }
    }
}
