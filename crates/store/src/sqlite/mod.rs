//! SQLite backend: WAL mode, `synchronous=FULL`, one group-committing writer thread and a
//! small pool of read connections used from blocking tasks.

mod checkpoint;
mod cmp;
pub(crate) mod factory;
mod fleet;
mod generations;
mod identity;
mod monitoring;
mod operator;
mod pages;
mod policy;
mod revocation;
pub(crate) mod rows;
mod scep;
mod schema;
mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::model::*;
use crate::{AccountStore, CertificateLedger, InventoryReader, StoreError};
use rows::{account_from_row, certificate_from_row, device_from_row, unix, CERTIFICATE_COLUMNS};
use writer::Writer;

/// The embedded inventory.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// Checkpoints the WAL off the write path while the store lives.
    _checkpointer: checkpoint::Checkpointer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

const READ_POOL: usize = 8;

/// Creates the database file readable by the owner only (0600) if it does not exist yet.
/// SQLite gives its `-wal` and `-shm` files the mode of the database file, so they are
/// 0600 too. An existing file keeps its mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        create_private(path).map_err(|e| open_err(&e))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(&e))?;
        configure(&conn).map_err(|e| open_err(&e))?;
        schema::migrate(&mut conn).map_err(|e| open_err(&e))?;
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)
            .map_err(|e| open_err(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Writer::spawn(conn)?,
                readers: Mutex::new(Vec::new()),
                _checkpointer: checkpoint::Checkpointer::spawn(path)?,
            }),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a point read (an indexed lookup of one row, microseconds) on the calling
    /// thread. A hop to the blocking pool would cost more than the read; WAL readers never
    /// wait for the writer.
    fn read_now<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        read_pooled(&self.inner, f)
    }

    /// Runs a read of unbounded size (listings) on the blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || read_pooled(&inner, f))
            .await
            .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }
}

fn read_pooled<R>(
    inner: &Inner,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let pooled = inner
        .readers
        .lock()
        .map_err(|_| StoreError::Database("reader pool lock poisoned".into()))?
        .pop();
    let conn = match pooled {
        Some(c) => c,
        None => open_reader(&inner.path)?,
    };
    let result = f(&conn);
    if let Ok(mut pool) = inner.readers.lock() {
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
    }
    result
}

/// Copies the database at `source` to a new file `dest` with SQLite's online backup API:
/// one consistent snapshot (a single read transaction, so a server may keep writing), a
/// self-contained file (no WAL beside it).
pub fn snapshot(source: &Path, dest: &Path) -> Result<(), StoreError> {
    let src = open_reader(source)?;
    let mut dst = Connection::open(dest)?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        // -1: every page in one step, inside one read transaction of the source.
        match backup.step(-1)? {
            rusqlite::backup::StepResult::Done => {}
            other => {
                return Err(StoreError::Database(format!(
                    "the snapshot of {} did not complete ({other:?})",
                    source.display()
                )))
            }
        }
    }
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    // WAL: readers never block the writer. FULL: a commit is on disk when COMMIT returns,
    // which is what "recorded before returned" needs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

#[async_trait]
impl CertificateLedger for SqliteStore {
    async fn record_issuance(&self, c: NewCertificate) -> Result<(), StoreError> {
        let decision = c
            .decision
            .as_ref()
            .map(|d| policy::encoded_checks(d).map(|checks| (d.clone(), checks)))
            .transpose()?;
        self.inner
            .writer
            .write(move |conn| {
                let device_status = match c.kind {
                    CertificateKind::Birth => DeviceStatus::Manufactured,
                    CertificateKind::Operational => DeviceStatus::Active,
                };
                let now = unix(c.issued_at);
                // The RA decided on what it read earlier; the single writer decides here
                // whether the device and the authenticating certificate still stand.
                let binding = c.effective_binding();
                let recorded_status = guard_issuance(conn, &c, &binding)?;
                enforce_limits(conn, &c, now)?;
                if let Some(t) = &c.cmp_transaction {
                    cmp::insert_transaction(conn, t)?;
                }
                // A device is created by its first certificate; an operational certificate
                // moves a manufactured device to active.
                // It is bound to the profile of its first operational certificate and to
                // the CA of its first birth certificate.
                conn.prepare_cached(
                    "INSERT INTO devices (serial_number, status, created_at, updated_at,
                       profile, birth_issuer)
                     VALUES (?1, ?2, ?3, ?3, ?4, ?5)
                     ON CONFLICT(serial_number) DO UPDATE SET
                       updated_at = excluded.updated_at,
                       profile = COALESCE(devices.profile, excluded.profile),
                       birth_issuer = COALESCE(devices.birth_issuer, excluded.birth_issuer)",
                )?
                .execute(params![
                    c.device_serial,
                    device_status.as_str(),
                    now,
                    (c.kind == CertificateKind::Operational).then_some(&c.profile),
                    binding.birth_issuer
                ])?;
                // The status in a statement of its own, only when it changes: a renewal
                // then leaves devices_by_status and the device count triggers alone.
                if recorded_status.as_deref() == Some(DeviceStatus::Manufactured.as_str())
                    && device_status != DeviceStatus::Manufactured
                {
                    conn.prepare_cached("UPDATE devices SET status = ?2 WHERE serial_number = ?1")?
                        .execute(params![c.device_serial, device_status.as_str()])?;
                }
                if let Some(birth) = &c.birth {
                    factory::charge_birth(conn, &c.device_serial, birth, now)?;
                }
                conn.prepare_cached(
                    "INSERT INTO certificates (serial, device_serial, issuer, profile, kind,
                       not_before, not_after, spki_sha256, der, status, replaces, issued_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'valid', ?10, ?11)",
                )?
                .execute(params![
                    c.serial,
                    c.device_serial,
                    c.issuer,
                    c.profile,
                    c.kind.as_str(),
                    unix(c.not_before),
                    unix(c.not_after),
                    c.spki_sha256,
                    c.der,
                    c.replaces,
                    now,
                ])?;
                if let Some((mut d, checks)) = decision {
                    d.certificate_serial = Some(c.serial.clone());
                    if let Some(id) = d.approval_id {
                        policy::complete_approval(conn, id, &c.serial, now)?;
                    }
                    policy::insert_decision(conn, &d, &checks)?;
                }
                Ok(())
            })
            .await
    }
}

/// Refuses an issuance whose device is suspended or decommissioned, whose authenticating
/// certificate is no longer valid, or which its device's recorded binding does not allow,
/// as the writer's transaction sees them (one read of the device row). Returns the
/// device's recorded status (`None` for a new device).
fn guard_issuance(
    conn: &Connection,
    c: &NewCertificate,
    binding: &DeviceBinding,
) -> Result<Option<String>, StoreError> {
    let device: Option<(String, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT status, profile, birth_issuer FROM devices WHERE serial_number = ?1",
        )?
        .query_row([&c.device_serial], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let certificate = match c.authenticated_by.as_deref() {
        Some(serial) => Some((
            serial,
            conn.prepare_cached("SELECT status FROM certificates WHERE serial = ?1")?
                .query_row([serial], |r| r.get::<_, String>(0))
                .optional()?,
        )),
        None => None,
    };
    let refusal = issuance_refusal(
        &c.device_serial,
        device.as_ref().map(|(status, _, _)| status.as_str()),
        certificate.as_ref().map(|(s, st)| (*s, st.as_deref())),
    )
    .or_else(|| {
        if binding.is_none() {
            return None;
        }
        binding_refusal(
            &c.device_serial,
            binding,
            device
                .as_ref()
                .map(|(_, p, b)| (p.as_deref(), b.as_deref())),
        )
    });
    match refusal {
        Some(reason) => Err(StoreError::Refused(reason)),
        None => Ok(device.map(|(status, _, _)| status)),
    }
}

/// Refuses an issuance over its device limits, counted in the writer's transaction (so
/// every earlier issuance of the device, in this batch or before, is seen).
fn enforce_limits(conn: &Connection, c: &NewCertificate, now: i64) -> Result<(), StoreError> {
    let limits = &c.limits;
    if limits.is_none() {
        return Ok(());
    }
    let since = limits.issued_since.map(|(_, since)| unix(since));
    let counts = query_limit_counts(conn, &c.device_serial, now, c.replaces.as_deref(), since)?;
    let active = if limits.max_active.is_some() {
        counts.active_operational
    } else {
        0
    };
    match limit_refusal(&c.device_serial, limits, active, counts.issued_since) {
        Some(reason) => Err(StoreError::Refused(reason)),
        None => Ok(()),
    }
}

/// Runs [`LIMIT_COUNTS_SQL`]; counts saturate into the limits' type.
fn query_limit_counts(
    conn: &Connection,
    device_serial: &str,
    now: i64,
    renewed: Option<&str>,
    issued_since: Option<i64>,
) -> Result<LimitCounts, StoreError> {
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    let (active, issued) = conn
        .prepare_cached(LIMIT_COUNTS_SQL)?
        .query_row(params![device_serial, now, renewed, issued_since], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
    Ok(LimitCounts {
        active_operational: count(active),
        issued_since: count(issued),
    })
}

/// Both per-device limit counts from `certificates_by_device_kind` alone: ?1 the device,
/// ?2 now; valid unexpired operational certificates other than ?3 (the one being renewed,
/// or NULL: one point lookup), and certificates issued at or after ?4 (NULL: none
/// counted).
const LIMIT_COUNTS_SQL: &str = "SELECT
     COALESCE(SUM(kind = 'operational' AND status = 'valid' AND not_after > ?2), 0)
       - EXISTS(SELECT 1 FROM certificates WHERE serial = ?3 AND device_serial = ?1
                  AND kind = 'operational' AND status = 'valid' AND not_after > ?2),
     COALESCE(SUM(issued_at >= ?4), 0)
   FROM certificates WHERE device_serial = ?1";

/// Valid, unexpired operational certificates of one device (the `max_active_certificates` rule).
const ACTIVE_OPERATIONAL_SQL: &str = "SELECT COUNT(*) FROM certificates WHERE device_serial = ?1
   AND kind = 'operational' AND status = 'valid' AND +not_after > ?2";

/// Whether an operational certificate of the device was revoked for keyCompromise with no
/// operational certificate issued since (the `birth-reenrollment` rule).
const KEY_COMPROMISE_PENDING_SQL: &str = "SELECT EXISTS(SELECT 1 FROM certificates r
   WHERE r.device_serial = ?1 AND r.kind = 'operational' AND r.status = 'revoked'
     AND r.revocation_reason = 'keyCompromise'
     AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_serial = r.device_serial
       AND n.kind = 'operational' AND n.issued_at > r.revoked_at))";

#[async_trait]
impl InventoryReader for SqliteStore {
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let serial = serial.to_ascii_lowercase();
        self.read_now(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE c.serial = ?1"
            ))?
            .query_row([serial], certificate_from_row)
            .optional()?
            .transpose()
        })
    }

    async fn certificates(
        &self,
        query: &CertificateQuery,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let q = query.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(device) = q.device_serial {
                args.push(device.into());
                sql.push_str(&format!(" AND c.device_serial = ?{}", args.len()));
            }
            if let Some(status) = q.status {
                args.push(status.as_str().to_string().into());
                sql.push_str(&format!(" AND c.status = ?{}", args.len()));
            }
            if let Some(before) = q.expiring_before {
                args.push(unix(before).into());
                sql.push_str(&format!(" AND c.not_after < ?{}", args.len()));
            }
            if let Some(at) = q.not_expired_at {
                args.push(unix(at).into());
                sql.push_str(&format!(" AND c.not_after >= ?{}", args.len()));
            }
            args.push(i64::from(q.limit.unwrap_or(1000)).into());
            sql.push_str(&format!(
                " ORDER BY c.not_after, c.serial LIMIT ?{}",
                args.len()
            ));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), certificate_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn standing(
        &self,
        device_serial: &str,
        certificate_serial: Option<&str>,
    ) -> Result<Standing, StoreError> {
        self.standing_now(device_serial, certificate_serial)
    }

    async fn certificate_standing(
        &self,
        serial: &str,
    ) -> Result<Option<CertificateStanding>, StoreError> {
        self.read_now(|conn| certificate_standing(conn, serial))
    }

    async fn station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        self.read_now(|conn| factory::station(conn, name))
    }

    async fn has_live_birth_certificate(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.read_now(|conn| factory::has_live_birth(conn, device_serial, unix(at)))
    }

    async fn active_operational_certificates(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let at = unix(at);
        self.read_now(|conn| {
            // On certificates_by_device_kind; the unary + keeps the planner off the expiry
            // index (see factory::has_live_birth).
            let n: i64 = conn
                .prepare_cached(ACTIVE_OPERATIONAL_SQL)?
                .query_row(params![device_serial, at], |r| r.get(0))?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    async fn limit_counts(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
        issued_since: Option<time::OffsetDateTime>,
    ) -> Result<LimitCounts, StoreError> {
        let (at, since) = (unix(at), issued_since.map(unix));
        self.read_now(|conn| query_limit_counts(conn, device_serial, at, None, since))
    }

    async fn key_compromise_pending(&self, device_serial: &str) -> Result<bool, StoreError> {
        self.read_now(|conn| {
            Ok(conn
                .prepare_cached(KEY_COMPROMISE_PENDING_SQL)?
                .query_row([device_serial], |r| r.get(0))?)
        })
    }

    async fn manufacturer(&self, name: &str) -> Result<Option<ManufacturerRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(
                "SELECT name, serial_pattern, added_at FROM manufacturers WHERE name = ?1",
            )?
            .query_row([name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()?
            .map(|(name, serial_pattern, added_at)| {
                Ok(ManufacturerRecord {
                    name,
                    serial_pattern,
                    added_at: rows::time_at(added_at)?,
                })
            })
            .transpose()
        })
    }

    async fn device(&self, serial_number: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(
                "SELECT serial_number, status, created_at, updated_at
                 FROM devices WHERE serial_number = ?1",
            )?
            .query_row([serial_number], device_from_row)
            .optional()?
            .transpose()
        })
    }
}

fn certificate_standing(
    conn: &Connection,
    serial: &str,
) -> Result<Option<CertificateStanding>, StoreError> {
    conn.prepare_cached(
        "SELECT serial, device_serial, issuer, status, not_after, revoked_at, revocation_reason,
                profile
         FROM certificates WHERE serial = ?1",
    )?
    .query_row([serial.to_ascii_lowercase()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })
    .optional()?
    .map(
        |(
            serial,
            device_serial,
            issuer,
            status,
            not_after,
            revoked_at,
            revocation_reason,
            profile,
        )| {
            Ok(CertificateStanding {
                serial,
                device_serial,
                issuer,
                profile,
                status: status.parse().map_err(StoreError::Corrupt)?,
                not_after: rows::time_at(not_after)?,
                revoked_at: revoked_at.map(rows::time_at).transpose()?,
                revocation_reason,
            })
        },
    )
    .transpose()
}

impl SqliteStore {
    fn standing_now(
        &self,
        device_serial: &str,
        certificate_serial: Option<&str>,
    ) -> Result<Standing, StoreError> {
        self.read_now(|conn| {
            let row: Option<(String, Option<String>, Option<String>)> = conn
                .prepare_cached(
                    "SELECT status, profile, birth_issuer FROM devices WHERE serial_number = ?1",
                )?
                .query_row([device_serial], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let (device, device_profile, birth_issuer) = match row {
                Some((status, profile, issuer)) => (
                    Some(status.parse().map_err(StoreError::Corrupt)?),
                    profile,
                    issuer,
                ),
                None => (None, None, None),
            };
            let certificate = match certificate_serial {
                None => None,
                Some(serial) => certificate_standing(conn, serial)?,
            };
            Ok(Standing {
                device,
                device_profile,
                birth_issuer,
                certificate,
            })
        })
    }
}

/// Adds an enrollment account inside the caller's transaction.
pub(crate) fn add_account_in(conn: &Connection, a: &NewAccount) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO accounts (name, password_hash, label, serial_pattern, created_at,
                       any_serial, known_devices)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.name,
            a.password_hash,
            a.label,
            a.serial_pattern,
            unix(a.created_at),
            a.any_serial,
            a.known_devices
        ],
    )
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("account '{}'", a.name)),
        other => other,
    })?;
    Ok(())
}

/// Enables or disables an enrollment account inside the caller's transaction.
pub(crate) fn set_account_enabled_in(
    conn: &Connection,
    name: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    let was: bool = conn
        .prepare_cached("SELECT enabled FROM accounts WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("account '{name}'")))?;
    if was == enabled {
        return Err(StoreError::Refused(format!(
            "account '{name}' is already {}",
            if enabled { "enabled" } else { "disabled" }
        )));
    }
    conn.prepare_cached("UPDATE accounts SET enabled = ?2 WHERE name = ?1")?
        .execute(params![name, enabled])?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn add_account(&self, a: NewAccount) -> Result<(), StoreError> {
        self.inner
            .writer
            .write(move |conn| add_account_in(conn, &a))
            .await
    }

    async fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.read_now(|conn| {
            conn.prepare_cached(
                "SELECT name, password_hash, label, serial_pattern, enabled, created_at,
                   any_serial, known_devices
                 FROM accounts WHERE name = ?1",
            )?
            .query_row([name], account_from_row)
            .optional()?
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests;
