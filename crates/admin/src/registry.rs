//! Who may obtain certificates: factory stations, enrollment accounts, trusted
//! manufacturer CAs.

use fleetca_store::{ManufacturerRecord, NewAccount, OperatorChange, StationStatus};

use crate::{Actor, AdminError, AdminStore, Audited, Permission};

/// A station name: 1-64 letters, digits, '-', '_' or '.' (it is the credential's CN).
pub fn validate_station_name(name: &str) -> Result<(), AdminError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "station name '{name}' must be 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// An account name: 1-64 letters, digits and -_.@ (the HTTP Basic user name).
pub fn validate_account_name(name: &str) -> Result<(), AdminError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "account name '{name}' must be 1-64 characters of letters, digits and -_.@"
        )))
    }
}

pub(crate) fn validate_pattern(flag: &str, pattern: &str) -> Result<(), AdminError> {
    fleetca_ra::whole_serial_pattern(pattern)
        .map(|_| ())
        .map_err(|e| {
            AdminError::Invalid(format!(
                "{flag} '{pattern}' is not a valid regular expression: {e}"
            ))
        })
}

/// Suspends, resumes or removes (for good) a station.
pub async fn set_station_status<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    status: StationStatus,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let action = match status {
        StationStatus::Active => "station-resume",
        StationStatus::Suspended => "station-suspend",
        StationStatus::Removed => "station-remove",
        other => {
            return Err(AdminError::Invalid(format!(
                "a station cannot be set to {other}"
            )))
        }
    };
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action,
        subject: format!("station:{name}"),
        facts: String::new(),
        comment,
    };
    let change = OperatorChange::StationStatus {
        name: name.to_string(),
        status,
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// Sets a station's quota (most birth certificates in all; `None`: unlimited).
pub async fn set_station_quota<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    quota: Option<u64>,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "station-set-quota",
        subject: format!("station:{name}"),
        facts: format!(
            "quota {}",
            quota.map_or_else(|| "none".to_string(), |q| q.to_string())
        ),
        comment,
    };
    let change = OperatorChange::StationQuota {
        name: name.to_string(),
        quota,
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// Adds an enrollment account (the caller hashes its password; `scope` describes the
/// label and serials for the trail).
pub async fn add_account<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    account: NewAccount,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "account-add",
        subject: format!("account:{}", account.name),
        facts: format!(
            "label {}, serials {}, {}",
            account.label.as_deref().unwrap_or("(default)"),
            account.serial_pattern.as_deref().unwrap_or("any"),
            if account.known_devices {
                "known devices too"
            } else {
                "new devices only"
            }
        ),
        comment,
    };
    audited.permitted(store).await?;
    validate_account_name(&account.name)?;
    if let Some(p) = &account.serial_pattern {
        validate_pattern("--serial-pattern", p)?;
    } else if !account.any_serial {
        return Err(AdminError::Invalid(
            "an account needs --serial-pattern REGEX (the whole serial), or --any-serial".into(),
        ));
    }
    audited
        .apply(store, OperatorChange::AddAccount(account))
        .await?;
    Ok(())
}

/// Records (or replaces) an imported manufacturer CA's serial scope; `ca` describes the
/// certificate for the trail (subject and serial). The caller installs the CA file after.
pub async fn set_manufacturer<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    manufacturer: ManufacturerRecord,
    ca: &str,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "trust-add-manufacturer",
        subject: format!("manufacturer:{}", manufacturer.name),
        facts: format!(
            "{ca}, serials {}",
            manufacturer.serial_pattern.as_deref().unwrap_or("any")
        ),
        comment,
    };
    audited.permitted(store).await?;
    let name = &manufacturer.name;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid || name == "manufacturing" || name == "operational" {
        return Err(AdminError::Invalid(format!(
            "manufacturer CA name '{name}' must be letters, digits, '-' or '_' and not a built-in CA name"
        )));
    }
    if let Some(p) = &manufacturer.serial_pattern {
        validate_pattern("--serial-pattern", p)?;
    }
    audited
        .apply(store, OperatorChange::SetManufacturer(manufacturer))
        .await?;
    Ok(())
}

/// Enables or disables an enrollment account (a disabled account authenticates no EST
/// request).
pub async fn set_account_enabled<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    name: &str,
    enabled: bool,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: if enabled {
            "account-enable"
        } else {
            "account-disable"
        },
        subject: format!("account:{name}"),
        facts: String::new(),
        comment,
    };
    audited.permitted(store).await?;
    let change = OperatorChange::AccountEnabled {
        name: name.to_string(),
        enabled,
    };
    audited.apply(store, change).await?;
    Ok(())
}

/// An enrollment account as asked for over the API: the password in the clear (checked
/// against the password policy, then hashed with argon2id).
#[derive(Debug, Clone)]
pub struct AccountRequest {
    /// HTTP Basic user name.
    pub name: String,
    /// The password.
    pub password: String,
    /// EST label it is limited to (one of `known_labels`).
    pub label: Option<String>,
    /// Regular expression the whole serial must match.
    pub serial_pattern: Option<String>,
    /// Without a pattern: any serial.
    pub any_serial: bool,
    /// Also devices the inventory already knows.
    pub known_devices: bool,
}

/// Adds an enrollment account from a clear password; `known_labels` are the configured EST
/// labels.
pub async fn create_account<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    known_labels: &[String],
    request: AccountRequest,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    Audited {
        actor,
        needs: Permission::Administer,
        action: "account-add",
        subject: format!("account:{}", request.name),
        facts: String::new(),
        comment,
    }
    .permitted(store)
    .await?;
    validate_account_name(&request.name).map_err(|e| AdminError::field("name", e.to_string()))?;
    if let Some(l) = &request.label {
        if !known_labels.contains(l) {
            return Err(AdminError::field(
                "label",
                format!("label '{l}' is not configured under [est.labels]"),
            ));
        }
    }
    if let Some(p) = &request.serial_pattern {
        validate_pattern("serial pattern", p)
            .map_err(|e| AdminError::field("serial_pattern", e.to_string()))?;
    } else if !request.any_serial {
        return Err(AdminError::field(
            "serial_pattern",
            "an account needs serial_pattern (a regular expression for the whole serial), or any_serial: true",
        ));
    }
    let password_hash = crate::users::hash_password(&request.name, request.password).await?;
    let account = NewAccount {
        name: request.name,
        password_hash,
        label: request.label,
        serial_pattern: request.serial_pattern,
        any_serial: request.any_serial,
        known_devices: request.known_devices,
        created_at: time::OffsetDateTime::now_utc(),
    };
    add_account(store, actor, account, comment).await
}
