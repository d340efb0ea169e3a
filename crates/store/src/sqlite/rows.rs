use rusqlite::Row;
use time::OffsetDateTime;

use crate::model::*;
use crate::StoreError;

pub(crate) const CERTIFICATE_COLUMNS: &str = "c.serial, c.device_serial, c.issuer, c.profile, \
    c.kind, c.not_before, c.not_after, c.spki_sha256, c.der, c.status, c.replaces, c.issued_at, \
    (SELECT s.serial FROM certificates s WHERE s.replaces = c.serial LIMIT 1), \
    c.revoked_at, c.revocation_reason";

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn time_at(secs: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {secs}: {e}")))
}

pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// Row → record. The outer `rusqlite::Result` is for column access, the inner one for
/// decoding values this crate wrote (a mismatch means corruption, not a client error).
pub(crate) fn certificate_from_row(
    r: &Row<'_>,
) -> rusqlite::Result<Result<CertificateRecord, StoreError>> {
    let kind: String = r.get(4)?;
    let not_before: i64 = r.get(5)?;
    let not_after: i64 = r.get(6)?;
    let status: String = r.get(9)?;
    let issued_at: i64 = r.get(11)?;
    let serial: String = r.get(0)?;
    let device_serial: String = r.get(1)?;
    let issuer: String = r.get(2)?;
    let profile: String = r.get(3)?;
    let spki_sha256: String = r.get(7)?;
    let der: Vec<u8> = r.get(8)?;
    let replaces: Option<String> = r.get(10)?;
    let replaced_by: Option<String> = r.get(12)?;
    let revoked_at: Option<i64> = r.get(13)?;
    let revocation_reason: Option<String> = r.get(14)?;
    Ok((|| {
        Ok(CertificateRecord {
            serial,
            device_serial,
            issuer,
            profile,
            kind: parsed(kind)?,
            not_before: time_at(not_before)?,
            not_after: time_at(not_after)?,
            spki_sha256,
            der,
            status: parsed(status)?,
            replaces,
            replaced_by,
            issued_at: time_at(issued_at)?,
            revoked_at: revoked_at.map(time_at).transpose()?,
            revocation_reason,
        })
    })())
}

pub(crate) fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Result<DeviceRecord, StoreError>> {
    let serial_number: String = r.get(0)?;
    let status: String = r.get(1)?;
    let created_at: i64 = r.get(2)?;
    let updated_at: i64 = r.get(3)?;
    Ok((|| {
        Ok(DeviceRecord {
            serial_number,
            status: parsed(status)?,
            created_at: time_at(created_at)?,
            updated_at: time_at(updated_at)?,
        })
    })())
}

pub(crate) fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AccountRecord, StoreError>> {
    let name: String = r.get(0)?;
    let password_hash: String = r.get(1)?;
    let label: Option<String> = r.get(2)?;
    let serial_pattern: Option<String> = r.get(3)?;
    let enabled: bool = r.get(4)?;
    let created_at: i64 = r.get(5)?;
    let any_serial: bool = r.get(6)?;
    let known_devices: bool = r.get(7)?;
    Ok(time_at(created_at).map(|created_at| AccountRecord {
        name,
        password_hash,
        label,
        serial_pattern,
        any_serial,
        known_devices,
        enabled,
        created_at,
    }))
}
