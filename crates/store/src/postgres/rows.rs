//! Row decoding for PostgreSQL: every column read with `try_get` (a type mismatch is an
//! error, never a panic), timestamps as unix seconds like the SQLite backend.

use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::model::*;
use crate::StoreError;

pub(crate) use crate::sqlite::rows::{time_at, unix};

pub(crate) const CERTIFICATE_COLUMNS: &str = "c.serial, c.device_serial, c.issuer, c.profile, \
    c.kind, c.not_before, c.not_after, c.spki_sha256, c.der, c.status, c.replaces, c.issued_at, \
    (SELECT s.serial FROM certificates s WHERE s.replaces = c.serial LIMIT 1), \
    c.revoked_at, c.revocation_reason";

/// Parameters for `query_raw` (streaming) calls.
pub(crate) fn params<'a>(
    s: &'a [&'a (dyn ToSql + Sync)],
) -> impl ExactSizeIterator<Item = &'a dyn ToSql> + 'a {
    s.iter().map(|s| *s as _)
}

pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

pub(crate) fn opt_time(t: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    t.map(time_at).transpose()
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn certificate_from_row(r: &Row) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        serial: r.try_get(0)?,
        device_serial: r.try_get(1)?,
        issuer: r.try_get(2)?,
        profile: r.try_get(3)?,
        kind: parsed(r.try_get(4)?)?,
        not_before: time_at(r.try_get(5)?)?,
        not_after: time_at(r.try_get(6)?)?,
        spki_sha256: r.try_get(7)?,
        der: r.try_get(8)?,
        status: parsed(r.try_get(9)?)?,
        replaces: r.try_get(10)?,
        replaced_by: r.try_get(12)?,
        issued_at: time_at(r.try_get(11)?)?,
        revoked_at: opt_time(r.try_get(13)?)?,
        revocation_reason: r.try_get(14)?,
    })
}

pub(crate) fn device_from_row(r: &Row) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        serial_number: r.try_get(0)?,
        status: parsed(r.try_get(1)?)?,
        created_at: time_at(r.try_get(2)?)?,
        updated_at: time_at(r.try_get(3)?)?,
    })
}

pub(crate) fn account_from_row(r: &Row) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        name: r.try_get(0)?,
        password_hash: r.try_get(1)?,
        label: r.try_get(2)?,
        serial_pattern: r.try_get(3)?,
        enabled: r.try_get(4)?,
        created_at: time_at(r.try_get(5)?)?,
        any_serial: r.try_get(6)?,
        known_devices: r.try_get(7)?,
    })
}

/// A certificate's standing from eight columns starting at `at` (serial, device, issuer,
/// status, not_after, revoked_at, reason, profile).
pub(crate) fn standing_from_row(r: &Row, at: usize) -> Result<CertificateStanding, StoreError> {
    Ok(CertificateStanding {
        serial: r.try_get(at)?,
        device_serial: r.try_get(at + 1)?,
        issuer: r.try_get(at + 2)?,
        status: parsed(r.try_get(at + 3)?)?,
        not_after: time_at(r.try_get(at + 4)?)?,
        revoked_at: opt_time(r.try_get(at + 5)?)?,
        revocation_reason: r.try_get(at + 6)?,
        profile: r.try_get(at + 7)?,
    })
}
