//! The people and programs that use the admin API: operator users (argon2id password
//! hashes), API tokens and login sessions (SHA-256 hashes of high-entropy secrets). Only
//! hashes are stored; the secrets are shown once, when created.
//!
//! Creating, revoking, disabling and removing them are [`crate::OperatorChange`]s, applied
//! with their audit event. Roles are stored by name; what a role may do is the admin
//! crate's business.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// An API token to record.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Its name (unique, also after revocation: names are never reused).
    pub name: String,
    /// Role name (`viewer`, `operator`, `auditor`, `admin`).
    pub role: String,
    /// SHA-256 of the secret, lower-case hex. Never the secret.
    pub secret_sha256: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// End of validity (`None`: until revoked).
    pub expires_at: Option<OffsetDateTime>,
    /// Who created it (the actor, `cli:root`, `user:alice`).
    pub created_by: String,
}

/// A recorded API token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token as recorded.
    pub token: NewToken,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// When it last authenticated a request (updated at most about once a minute).
    pub last_used_at: Option<OffsetDateTime>,
}

/// An operator user to record.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login name (unique; a removed user's name is free again).
    pub name: String,
    /// Role name.
    pub role: String,
    /// Argon2id PHC string. Never the password.
    pub password_hash: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A recorded operator user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user as recorded (with the current role and password hash).
    pub user: NewUser,
    /// Whether the user may log in.
    pub enabled: bool,
    /// Last successful login.
    pub last_login_at: Option<OffsetDateTime>,
}

/// A login session to record (the console's cookie, or a user's bearer token for the API).
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// SHA-256 of the session secret, lower-case hex.
    pub secret_sha256: String,
    /// The user it belongs to.
    pub user: String,
    /// When it was created (the login).
    pub created_at: OffsetDateTime,
    /// It ends at this time whatever the activity.
    pub expires_at: OffsetDateTime,
}

/// A recorded session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session as recorded.
    pub session: NewSession,
    /// Last request made with it (idle timeout is measured from here).
    pub last_seen_at: OffsetDateTime,
}

macro_rules! redacted_debug {
    ($ty:ty, $($field:ident).+ => [$($shown:ident),*]) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let inner = &self.$($field).+;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &inner.$shown))*
                    .finish_non_exhaustive()
            }
        }
    };
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
redacted_debug!(TokenRecord, token => [name, role, expires_at]);
redacted_debug!(UserRecord, user => [name, role]);
redacted_debug!(SessionRecord, session => [user, expires_at]);

/// Reads and bookkeeping of users, tokens and sessions. Their creation and removal are
/// [`crate::OperatorChange`]s (audited); what is here changes no permission.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The token whose secret hashes to `secret_sha256` (revoked and expired ones too: the
    /// caller refuses them, and says why).
    async fn token_by_secret(&self, secret_sha256: &str)
        -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Notes that a token authenticated a request at `at`.
    async fn touch_token(&self, name: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    /// One user.
    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// The session whose secret hashes to `secret_sha256`.
    async fn session_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Notes activity on a session at `at`.
    async fn touch_session(
        &self,
        secret_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Deletes sessions that expired or were idle since before `idle_before`; returns how
    /// many.
    async fn purge_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
}
