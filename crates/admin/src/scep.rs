//! SCEP one-time challenge passwords (issue 20): an operator creates one for a device
//! serial; the device puts it in its PKCSReq's CSR. Shown once, stored as its SHA-256,
//! consumed by the first request that uses it.

use fleetca_store::{NewScepChallenge, OperatorChange};
use time::{Duration, OffsetDateTime};

use crate::secret::Secret;
use crate::{rfc3339, Actor, AdminError, AdminStore, Audited, Permission};

/// Longest lifetime of a challenge.
pub const MAX_CHALLENGE_LIFETIME: Duration = Duration::days(30);

/// A challenge just created: its secret is shown this once.
#[derive(Debug, Clone)]
pub struct CreatedScepChallenge {
    /// The device it authenticates.
    pub device_serial: String,
    /// The challenge password (40 hex digits: a PrintableString every SCEP client sends).
    pub secret: Secret,
    /// End of validity.
    pub expires_at: OffsetDateTime,
}

/// Creates a one-time SCEP challenge password for `device_serial`, valid for `expires_in`.
pub async fn create_scep_challenge<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device_serial: &str,
    expires_in: Duration,
) -> Result<CreatedScepChallenge, AdminError> {
    let now = OffsetDateTime::now_utc();
    let expires_at = now + expires_in;
    let audited = Audited {
        actor,
        needs: Permission::Operate,
        action: "scep-challenge-create",
        subject: format!("device:{device_serial}"),
        facts: format!("expires {}", rfc3339(expires_at)),
        comment: None,
    };
    audited.permitted(store).await?;
    let valid_serial = !device_serial.is_empty()
        && device_serial.len() <= 64
        && device_serial
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !valid_serial {
        return Err(AdminError::field(
            "serial",
            format!(
                "device serial '{}' must be 1-64 letters, digits, '-', '_', '.' or ':'",
                fleetca_pki::escape_controls(device_serial)
            ),
        ));
    }
    if expires_in <= Duration::ZERO || expires_in > MAX_CHALLENGE_LIFETIME {
        return Err(AdminError::field(
            "expires_in",
            "a challenge's lifetime must be positive and at most 30 days",
        ));
    }
    let secret = Secret::generate_hex(20)?;
    let challenge = NewScepChallenge {
        secret_sha256: secret.sha256(),
        device_serial: device_serial.to_string(),
        created_at: now,
        expires_at,
        created_by: actor.to_string(),
    };
    audited
        .apply(store, OperatorChange::CreateScepChallenge(challenge))
        .await?;
    Ok(CreatedScepChallenge {
        device_serial: device_serial.to_string(),
        secret,
        expires_at,
    })
}
