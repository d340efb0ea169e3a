//! One-time CMP shared secrets (RFC 9483 section 4.1.5): an operator creates one for a
//! device's first enrollment with a MAC-protected `ir`. The caller derives the secret (the
//! CMP front end's key, see `fleetca_cmp::SecretKey`); only its SHA-256 is recorded, with
//! the reference, the device, the expiry and the creator, and the creation is audited.

use fleetca_store::{NewCmpSecret, OperatorChange};
use time::{Duration, OffsetDateTime};

use crate::{rfc3339, Actor, AdminError, AdminStore, Audited, Permission};

/// A created secret: shown once.
#[derive(Debug)]
pub struct CreatedCmpSecret {
    /// The reference (the client's senderKID, `openssl cmp -ref`).
    pub reference: String,
    /// The secret (`openssl cmp -secret pass:...`).
    pub secret: String,
    /// The device.
    pub device_serial: String,
    /// End of validity.
    pub expires_at: OffsetDateTime,
}

/// Creates a one-time secret for `device_serial`, valid for `expires_in`.
/// `derive(reference)` gives the secret of a reference for this device.
pub async fn create_cmp_secret<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    device_serial: &str,
    expires_in: Duration,
    reference: String,
    derive: &(dyn Fn(&str) -> String + Sync),
) -> Result<CreatedCmpSecret, AdminError> {
    let now = OffsetDateTime::now_utc();
    let expires_at = now + expires_in;
    let audited = Audited {
        actor,
        needs: Permission::Operate,
        action: "cmp-secret-create",
        subject: format!("device:{device_serial}"),
        facts: format!("reference {reference}, expires {}", rfc3339(expires_at)),
        comment: None,
    };
    audited.permitted(store).await?;
    fleetca_pki::validate_device_serial(device_serial)
        .map_err(|e| AdminError::field("serial", e))?;
    if expires_in <= Duration::ZERO || expires_in > Duration::days(90) {
        return Err(AdminError::field(
            "expires",
            "a CMP secret's lifetime must be between 1s and 90d",
        ));
    }
    let secret = derive(&reference);
    let record = NewCmpSecret {
        reference: reference.clone(),
        device_serial: device_serial.to_string(),
        secret_sha256: hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            secret.as_bytes(),
        )),
        created_at: now,
        expires_at,
        created_by: actor.to_string(),
    };
    audited
        .apply(store, OperatorChange::CreateCmpSecret(record))
        .await?;
    Ok(CreatedCmpSecret {
        reference,
        secret,
        device_serial: device_serial.to_string(),
        expires_at,
    })
}
