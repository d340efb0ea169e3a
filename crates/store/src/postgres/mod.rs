//! PostgreSQL backend: `tokio-postgres` behind a `deadpool-postgres` pool, statements
//! prepared once per connection (`prepare_cached`), for any number of fleetca nodes on one
//! database.
//!
//! Concurrency is the database's job, never an in-process lock: a birth issuance locks
//! the device row (its upsert) and then the station row (`FOR UPDATE`) in the transaction
//! that records the certificate, so quotas and the one-live-birth-certificate rule hold
//! across nodes; audit appenders serialise on a transaction-level advisory lock; CRL
//! numbers and leases are single-statement upserts (row locks). Every write commits with
//! the server's `synchronous_commit` before the call returns.

mod cmp;
mod factory;
mod fleet;
mod generations;
mod group;
mod identity;
mod monitoring;
mod operator;
mod pages;
mod policy;
mod revocation;
mod rows;
mod scep;
mod schema;
mod tls;
mod views;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::model::*;
use crate::{AccountStore, CertificateLedger, InventoryReader, StoreError};
use rows::{
    account_from_row, certificate_from_row, device_from_row, standing_from_row, unix,
    CERTIFICATE_COLUMNS,
};

/// The PostgreSQL inventory. Cheap to clone (one pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: String,
    group: std::sync::Arc<group::GroupCommit>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// `user@host:port/database` of a connection URL: what messages and logs may show (never
/// the password).
pub fn describe_url(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(c) => describe(&c),
        Err(_) => "an unparsable postgres:// URL".into(),
    }
}

fn describe(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = c
                .get_ports()
                .get(i)
                .or_else(|| c.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = c.get_dbname().unwrap_or("");
    format!("postgres://{user}{hosts}/{db}")
}

impl PostgresStore {
    /// Connects, applies migrations (under an advisory lock) and returns the store.
    /// Errors name `user@host:port/database`, never the password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (mut config, target) = parse(url)?;
        let tls = tls::connector(&mut config, &target, None)?;
        migrate(&config, &target, &tls).await?;
        Self::with_pool(config, target, crate::PostgresUrl::DEFAULT_POOL_SIZE, tls)
    }

    /// [`PostgresStore::connect`] for callers outside (or inside) an async runtime: the
    /// migration runs on a thread of its own; pooled connections are made later, on the
    /// runtime that uses the store.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_url(&crate::PostgresUrl::parse(url)?)
    }

    /// [`PostgresStore::open`] with the URL's pool size and TLS settings.
    pub fn open_url(url: &crate::PostgresUrl) -> Result<Self, StoreError> {
        let (mut config, target) = parse(url.expose())?;
        let tls = tls::connector(&mut config, &target, url.tls_roots())?;
        let (c, t, m) = (config.clone(), target.clone(), tls.clone());
        std::thread::spawn(move || -> Result<(), StoreError> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Open {
                    path: t.clone(),
                    reason: e.to_string(),
                })?
                .block_on(migrate(&c, &t, &m))
        })
        .join()
        .map_err(|_| StoreError::Open {
            path: target.clone(),
            reason: "the migration thread panicked".into(),
        })??;
        Self::with_pool(config, target, url.pool_size(), tls)
    }

    fn with_pool(
        config: tokio_postgres::Config,
        target: String,
        pool_size: usize,
        tls: tls::Connector,
    ) -> Result<Self, StoreError> {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            tls::Connector::Plain => Manager::from_config(config, NoTls, recycling),
            tls::Connector::Rustls(tls) => Manager::from_config(config, tls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Open {
                path: target.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            pool,
            target,
            group: Default::default(),
        })
    }

    /// `user@host:port/database` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => match StoreError::from(e) {
                StoreError::Database(text) => {
                    StoreError::Database(format!("{}: {text}", self.target))
                }
                other => other,
            },
            other => StoreError::Database(format!("{}: no connection: {other}", self.target)),
        })
    }
}

/// Connects once and applies the migrations.
async fn migrate(
    config: &tokio_postgres::Config,
    target: &str,
    tls: &tls::Connector,
) -> Result<(), StoreError> {
    let open_err = |e: StoreError| StoreError::Open {
        path: target.to_string(),
        reason: match e {
            StoreError::Database(text) => text,
            other => other.to_string(),
        },
    };
    let (mut client, conn) = tls.connect(config).await.map_err(|e| open_err(e.into()))?;
    let migrated = schema::migrate(&mut client).await;
    drop(client);
    let _ = conn.await;
    migrated.map_err(open_err)
}

fn parse(url: &str) -> Result<(tokio_postgres::Config, String), StoreError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Open {
        path: "the postgres:// URL".into(),
        // The parser's message quotes no value.
        reason: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("fleetca");
    }
    let target = describe(&config);
    Ok((config, target))
}

/// Creates the device or updates it, locking its row; affects no row (and issues nothing)
/// if the device is suspended or decommissioned.
/// The device is bound to the profile of its first operational certificate (`$4`) and the
/// CA of its first birth certificate (`$5`).
const UPSERT_DEVICE: &str = "INSERT INTO devices (serial_number, status, created_at, updated_at,
       profile, birth_issuer)
     VALUES ($1, $2, $3, $3, $4, $5)
     ON CONFLICT (serial_number) DO UPDATE SET
       status = CASE WHEN devices.status = 'manufactured' THEN excluded.status
                     ELSE devices.status END,
       updated_at = excluded.updated_at,
       profile = COALESCE(devices.profile, excluded.profile),
       birth_issuer = COALESCE(devices.birth_issuer, excluded.birth_issuer)
     WHERE devices.status NOT IN ('suspended', 'decommissioned')
     RETURNING (xmax = 0), profile, birth_issuer";

/// Locks the authenticating certificate's row if it is still valid (a concurrent revocation
/// or hold either waits for this commit or is seen by it).
const LOCK_VALID_CERTIFICATE: &str =
    "SELECT 1 FROM certificates WHERE serial = $1 AND status = 'valid' FOR SHARE";

/// A device's valid unexpired operational certificates besides the renewed one ($3, or
/// NULL), and its certificates issued since `$4` (`i64::MAX`: none counted); read by
/// [`limit_counts_of`].
const LIMIT_COUNTS_SQL: &str = "SELECT
       (SELECT COUNT(*) FROM certificates WHERE device_serial = $1 AND kind = 'operational'
          AND status = 'valid' AND not_after > $2 AND serial IS DISTINCT FROM $3),
       (SELECT COUNT(*) FROM certificates WHERE device_serial = $1 AND issued_at >= $4)";

/// The row of [`LIMIT_COUNTS_SQL`].
fn limit_counts_of(row: &tokio_postgres::Row) -> Result<LimitCounts, StoreError> {
    let count = |i| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.try_get::<_, i64>(i)?).unwrap_or(u32::MAX))
    };
    Ok(LimitCounts {
        active_operational: count(0)?,
        issued_since: count(1)?,
    })
}

/// What a refused recording found: the device's and the authenticating certificate's status.
const REFUSAL_SQL: &str = "SELECT (SELECT status FROM devices WHERE serial_number = $1),
       (SELECT status FROM certificates WHERE serial = $2)";

const INSERT_CERTIFICATE: &str = "INSERT INTO certificates (serial, device_serial, issuer,
       profile, kind, not_before, not_after, spki_sha256, der, status, replaces, issued_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'valid', $10, $11)";

/// The device upsert of an issuance, as the first CTE (`d`) of one statement: as
/// [`UPSERT_DEVICE`], no row for a suspended or decommissioned device. Only issuances
/// without a binding to check take this path (renewals); an operational certificate
/// binds a device not bound yet to its profile (`$4`, kind `$5`).
macro_rules! device_cte {
    () => {
        "WITH d AS (
       INSERT INTO devices (serial_number, status, created_at, updated_at, profile)
       VALUES ($2, $12, $11, $11, CASE WHEN $5 = 'operational' THEN $4 END)
       ON CONFLICT (serial_number) DO UPDATE SET
         status = CASE WHEN devices.status = 'manufactured' THEN excluded.status
                       ELSE devices.status END,
         updated_at = excluded.updated_at,
         profile = COALESCE(devices.profile, excluded.profile)
       WHERE devices.status NOT IN ('suspended', 'decommissioned')
       RETURNING 1)"
    };
}

/// The certificate insert, after [`device_cte`] (parameters `$1`-`$11`), if the device row
/// was written and the authenticating certificate `$13` (if any) is still valid, its row
/// locked as by [`LOCK_VALID_CERTIFICATE`].
macro_rules! insert_certificate_after_device {
    () => {
        "INSERT INTO certificates (serial, device_serial, issuer, profile, kind, not_before,
         not_after, spki_sha256, der, status, replaces, issued_at)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'valid', $10, $11 FROM d
       WHERE $13::TEXT IS NULL OR EXISTS (SELECT 1 FROM certificates a
         WHERE a.serial = $13 AND a.status = 'valid' FOR SHARE)"
    };
}

/// The device upsert and the certificate insert as one statement (one round trip, atomic):
/// what an operational issuance needs.
const RECORD_OPERATIONAL: &str = concat!(device_cte!(), "\n", insert_certificate_after_device!());

/// [`RECORD_OPERATIONAL`] and the RA decision that led to it (`$14`-`$23`), in one
/// statement: one round trip and one commit per enrollment (the hot path of every renewal).
const RECORD_OPERATIONAL_DECIDED: &str = concat!(
    device_cte!(),
    ",\n     c AS (",
    insert_certificate_after_device!(),
    " RETURNING serial)
     INSERT INTO decisions (at, device_serial, client, operation, label, profile, outcome,
       rule, reason, checks, certificate_serial)
     SELECT $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, c.serial FROM c"
);

/// An issuance to record and its statement parameters, owned: `$1`-`$11` the certificate,
/// `$12` the device's status, `$13` the authenticating certificate, `$14`-`$23` the
/// decision (one-statement recordings only).
pub(super) struct Recording {
    c: NewCertificate,
    now: i64,
    not_before: i64,
    not_after: i64,
    kind: &'static str,
    status: &'static str,
    /// The decision's time, outcome and rule results (JSON), if it goes with it in the one
    /// statement.
    decision: Option<(i64, &'static str, String)>,
}

impl Recording {
    fn new(mut c: NewCertificate) -> Result<Self, StoreError> {
        if let Some(d) = c.decision.as_mut() {
            d.certificate_serial = Some(c.serial.clone());
        }
        let device_status = match c.kind {
            CertificateKind::Birth => DeviceStatus::Manufactured,
            CertificateKind::Operational => DeviceStatus::Active,
        };
        let decision = match &c.decision {
            Some(d) if Self::fits_group(&c) => Some((
                unix(d.at),
                d.outcome.as_str(),
                serde_json::to_string(&d.checks)
                    .map_err(|e| StoreError::Database(format!("decision checks: {e}")))?,
            )),
            _ => None,
        };
        Ok(Self {
            now: unix(c.issued_at),
            not_before: unix(c.not_before),
            not_after: unix(c.not_after),
            kind: c.kind.as_str(),
            status: device_status.as_str(),
            decision,
            c,
        })
    }

    /// One statement records it: no birth to charge, no limit to count, no approval to
    /// complete.
    fn is_one_statement(&self) -> bool {
        Self::fits_one_statement(&self.c)
    }

    fn fits_one_statement(c: &NewCertificate) -> bool {
        Self::fits_group(c) && c.limits.is_none() && c.binding.is_none()
    }

    /// The group commit records it: an operational certificate with no birth to charge, no
    /// approval to complete and no CMP transaction (limits and bindings are checked by
    /// the group's second phase, see `group.rs`).
    fn is_grouped(&self) -> bool {
        Self::fits_group(&self.c)
    }

    fn fits_group(c: &NewCertificate) -> bool {
        c.birth.is_none()
            && c.kind == CertificateKind::Operational
            && c.decision.as_ref().is_none_or(|d| d.approval_id.is_none())
            && c.cmp_transaction.is_none()
    }

    /// Whether the decision goes with it ([`RECORD_OPERATIONAL_DECIDED`], or the group's
    /// checked statement).
    fn decided(&self) -> bool {
        self.decision.is_some()
    }

    fn certificate_params(&self) -> [&(dyn ToSql + Sync); 11] {
        let c = &self.c;
        [
            &c.serial,
            &c.device_serial,
            &c.issuer,
            &c.profile,
            &self.kind,
            &self.not_before,
            &self.not_after,
            &c.spki_sha256,
            &c.der,
            &c.replaces,
            &self.now,
        ]
    }

    /// The parameters of [`RECORD_OPERATIONAL`] or [`RECORD_OPERATIONAL_DECIDED`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(23);
        params.extend(self.certificate_params());
        params.push(&self.status);
        params.push(&self.c.authenticated_by);
        if let (Some(d), Some((at, outcome, checks))) = (&self.c.decision, &self.decision) {
            params.extend::<[&(dyn ToSql + Sync); 10]>([
                at,
                &d.device_serial,
                &d.client,
                &d.operation,
                &d.label,
                &d.profile,
                outcome,
                &d.rule,
                &d.reason,
                checks,
            ]);
        }
        params
    }
}

#[async_trait]
impl CertificateLedger for PostgresStore {
    async fn record_issuance(&self, c: NewCertificate) -> Result<(), StoreError> {
        let record = Recording::new(c)?;
        if record.is_grouped() {
            // The hot paths: committed with whatever else is being recorded.
            return self.record_grouped(record).await;
        }
        self.record_in_transaction(&record).await
    }
}

impl PostgresStore {
    /// An issuance in a transaction of its own (births, approvals, CMP transactions, and
    /// any grouped issuance whose batch failed): the reference for what the group commit
    /// checks.
    async fn record_in_transaction(&self, record: &Recording) -> Result<(), StoreError> {
        let (c, now, status) = (&record.c, record.now, record.status);
        let binding = c.effective_binding();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The upsert locks the device row: issuances of one device serialise here. It
        // returns whether it created the device and the binding the device has now (a
        // concurrent first issuance's, if that committed first).
        let profile = (c.kind == CertificateKind::Operational).then_some(&c.profile);
        let stmt = tx.prepare_cached(UPSERT_DEVICE).await?;
        let upserted = tx
            .query_opt(
                &stmt,
                &[
                    &c.device_serial,
                    &status,
                    &now,
                    &profile,
                    &binding.birth_issuer,
                ],
            )
            .await?;
        let mut standing = upserted.is_some();
        if let Some(row) = &upserted {
            let created: bool = row.try_get(0)?;
            let bound: Option<String> = row.try_get(1)?;
            let born: Option<String> = row.try_get(2)?;
            let found = (!created).then_some((bound.as_deref(), born.as_deref()));
            if let Some(reason) = binding_refusal(&c.device_serial, &binding, found) {
                return Err(StoreError::Refused(reason));
            }
        }
        if let (true, Some(serial)) = (standing, &c.authenticated_by) {
            let stmt = tx.prepare_cached(LOCK_VALID_CERTIFICATE).await?;
            standing = tx.query_opt(&stmt, &[serial]).await?.is_some();
        }
        if !standing {
            drop(tx);
            return Err(refusal(&client, c).await);
        }
        // Device limits, counted after the device row is locked (a new snapshot: every
        // other issuance of the device that held the lock is committed and seen).
        if !c.limits.is_none() {
            let stmt = tx.prepare_cached(LIMIT_COUNTS_SQL).await?;
            let since = c
                .limits
                .issued_since
                .map_or(i64::MAX, |(_, since)| unix(since));
            let row = tx
                .query_one(&stmt, &[&c.device_serial, &now, &c.replaces, &since])
                .await?;
            let counts = limit_counts_of(&row)?;
            if let Some(reason) = limit_refusal(
                &c.device_serial,
                &c.limits,
                counts.active_operational,
                counts.issued_since,
            ) {
                return Err(StoreError::Refused(reason));
            }
        }
        if let Some(birth) = &c.birth {
            factory::charge_birth(&tx, &c.device_serial, birth, now).await?;
        }
        if let Some(t) = &c.cmp_transaction {
            if !cmp::insert_transaction(&tx, t).await? {
                return Err(StoreError::Limit {
                    rule: "cmp-transaction-id".into(),
                    reason: "CMP transactionID in use (a replayed or reused transaction)".into(),
                });
            }
        }
        let stmt = tx.prepare_cached(INSERT_CERTIFICATE).await?;
        tx.execute(&stmt, &record.certificate_params()).await?;
        // The decision that led here, and the approval it fulfils, in the same commit.
        if let Some(d) = &c.decision {
            if let Some(id) = d.approval_id {
                policy::complete_approval(&tx, id, &c.serial, now).await?;
            }
            policy::insert_decision(&tx, d).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Why a recording wrote nothing: the error to return, read after the refused statement.
async fn refusal(client: &deadpool_postgres::Client, c: &NewCertificate) -> StoreError {
    let found = async {
        let stmt = client.prepare_cached(REFUSAL_SQL).await?;
        let row = client
            .query_one(&stmt, &[&c.device_serial, &c.authenticated_by])
            .await?;
        Ok::<_, StoreError>((
            row.try_get::<_, Option<String>>(0)?,
            row.try_get::<_, Option<String>>(1)?,
        ))
    };
    let (device, certificate) = match found.await {
        Ok(found) => found,
        Err(e) => return e,
    };
    let reason = issuance_refusal(
        &c.device_serial,
        device.as_deref(),
        c.authenticated_by
            .as_deref()
            .map(|serial| (serial, certificate.as_deref())),
    );
    StoreError::Refused(reason.unwrap_or_else(|| {
        format!(
            "device {} or its client certificate changed while the request was decided; retry",
            c.device_serial
        )
    }))
}

/// Whether an operational certificate of the device was revoked for keyCompromise with no
/// operational certificate issued since (the `birth-reenrollment` rule).
const KEY_COMPROMISE_PENDING_SQL: &str = "SELECT EXISTS(SELECT 1 FROM certificates r
   WHERE r.device_serial = $1 AND r.kind = 'operational' AND r.status = 'revoked'
     AND r.revocation_reason = 'keyCompromise'
     AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_serial = r.device_serial
       AND n.kind = 'operational' AND n.issued_at > r.revoked_at))";

const ACTIVE_OPERATIONAL_SQL: &str = "SELECT COUNT(*) FROM certificates WHERE device_serial = $1
   AND kind = 'operational' AND status = 'valid' AND not_after > $2";

const STANDING_SQL: &str = "SELECT c.serial, c.device_serial, c.issuer, c.status, c.not_after,
       c.revoked_at, c.revocation_reason, c.profile
     FROM certificates c WHERE c.serial = $1";

/// A device's status and a certificate's standing, each NULL when absent.
const STANDING_BOTH_SQL: &str = "SELECT d.status, c.serial, c.device_serial, c.issuer, c.status,
       c.not_after, c.revoked_at, c.revocation_reason, c.profile, d.profile, d.birth_issuer
     FROM (SELECT 1) AS one
     LEFT JOIN devices d ON d.serial_number = $1
     LEFT JOIN certificates c ON c.serial = $2";

#[async_trait]
impl InventoryReader for PostgresStore {
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE c.serial = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&serial.to_ascii_lowercase()])
            .await?
            .map(|r| certificate_from_row(&r))
            .transpose()
    }

    async fn certificates(
        &self,
        query: &CertificateQuery,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        use tokio_postgres::types::ToSql;
        let mut sql = format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates c WHERE TRUE");
        let status = query.status.map(|s| s.as_str().to_string());
        let before = query.expiring_before.map(unix);
        let not_expired = query.not_expired_at.map(unix);
        let limit = i64::from(query.limit.unwrap_or(1000));
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(device) = &query.device_serial {
            args.push(device);
            sql.push_str(&format!(" AND c.device_serial = ${}", args.len()));
        }
        if let Some(status) = &status {
            args.push(status);
            sql.push_str(&format!(" AND c.status = ${}", args.len()));
        }
        if let Some(before) = &before {
            args.push(before);
            sql.push_str(&format!(" AND c.not_after < ${}", args.len()));
        }
        if let Some(at) = &not_expired {
            args.push(at);
            sql.push_str(&format!(" AND c.not_after >= ${}", args.len()));
        }
        args.push(&limit);
        sql.push_str(&format!(
            " ORDER BY c.not_after, c.serial LIMIT ${}",
            args.len()
        ));
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &args)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect()
    }

    async fn standing(
        &self,
        device_serial: &str,
        certificate_serial: Option<&str>,
    ) -> Result<Standing, StoreError> {
        // One round trip for both (every EST request asks this, twice).
        let client = self.client().await?;
        let stmt = client.prepare_cached(STANDING_BOTH_SQL).await?;
        let certificate_serial = certificate_serial.map(str::to_ascii_lowercase);
        let row = client
            .query_one(&stmt, &[&device_serial, &certificate_serial])
            .await?;
        let device = row
            .try_get::<_, Option<String>>(0)?
            .map(rows::parsed)
            .transpose()?;
        let certificate = match row.try_get::<_, Option<String>>(1)? {
            Some(_) => Some(standing_from_row(&row, 1)?),
            None => None,
        };
        Ok(Standing {
            device,
            device_profile: row.try_get(9)?,
            birth_issuer: row.try_get(10)?,
            certificate,
        })
    }

    async fn certificate_standing(
        &self,
        serial: &str,
    ) -> Result<Option<CertificateStanding>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(STANDING_SQL).await?;
        client
            .query_opt(&stmt, &[&serial.to_ascii_lowercase()])
            .await?
            .map(|r| standing_from_row(&r, 0))
            .transpose()
    }

    async fn station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        let client = self.client().await?;
        factory::station(&client, name).await
    }

    async fn has_live_birth_certificate(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        factory::has_live_birth(&client, device_serial, unix(at)).await
    }

    async fn active_operational_certificates(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(ACTIVE_OPERATIONAL_SQL).await?;
        let n: i64 = client
            .query_one(&stmt, &[&device_serial, &unix(at)])
            .await?
            .try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn limit_counts(
        &self,
        device_serial: &str,
        at: time::OffsetDateTime,
        issued_since: Option<time::OffsetDateTime>,
    ) -> Result<LimitCounts, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIMIT_COUNTS_SQL).await?;
        let since = issued_since.map_or(i64::MAX, unix);
        let row = client
            .query_one(
                &stmt,
                &[&device_serial, &unix(at), &Option::<&str>::None, &since],
            )
            .await?;
        limit_counts_of(&row)
    }

    async fn key_compromise_pending(&self, device_serial: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(KEY_COMPROMISE_PENDING_SQL).await?;
        Ok(client
            .query_one(&stmt, &[&device_serial])
            .await?
            .try_get(0)?)
    }

    async fn manufacturer(&self, name: &str) -> Result<Option<ManufacturerRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT name, serial_pattern, added_at FROM manufacturers WHERE name = $1",
            )
            .await?;
        client
            .query_opt(&stmt, &[&name])
            .await?
            .map(|r| {
                Ok(ManufacturerRecord {
                    name: r.try_get(0)?,
                    serial_pattern: r.try_get(1)?,
                    added_at: rows::time_at(r.try_get(2)?)?,
                })
            })
            .transpose()
    }

    async fn device(&self, serial_number: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT serial_number, status, created_at, updated_at
                 FROM devices WHERE serial_number = $1",
            )
            .await?;
        client
            .query_opt(&stmt, &[&serial_number])
            .await?
            .map(|r| device_from_row(&r))
            .transpose()
    }
}

/// Adds an enrollment account (in the caller's transaction, if given one).
pub(super) async fn add_account_in(
    c: &impl deadpool_postgres::GenericClient,
    a: &NewAccount,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO accounts (name, password_hash, label, serial_pattern, created_at,
                   any_serial, known_devices)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &a.name,
            &a.password_hash,
            &a.label,
            &a.serial_pattern,
            &unix(a.created_at),
            &a.any_serial,
            &a.known_devices,
        ],
    )
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("account '{}'", a.name)),
        other => other,
    })?;
    Ok(())
}

/// Enables or disables an enrollment account inside the caller's transaction.
pub(super) async fn set_account_enabled_in(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT enabled FROM accounts WHERE name = $1 FOR UPDATE")
        .await?;
    let was: bool = match tx.query_opt(&stmt, &[&name]).await? {
        Some(row) => row.try_get(0)?,
        None => return Err(StoreError::NotFound(format!("account '{name}'"))),
    };
    if was == enabled {
        return Err(StoreError::Refused(format!(
            "account '{name}' is already {}",
            if enabled { "enabled" } else { "disabled" }
        )));
    }
    let stmt = tx
        .prepare_cached("UPDATE accounts SET enabled = $2 WHERE name = $1")
        .await?;
    tx.execute(&stmt, &[&name, &enabled]).await?;
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn add_account(&self, a: NewAccount) -> Result<(), StoreError> {
        let client = self.client().await?;
        add_account_in(&client, &a).await
    }

    async fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT name, password_hash, label, serial_pattern, enabled, created_at,
                   any_serial, known_devices
                 FROM accounts WHERE name = $1",
            )
            .await?;
        client
            .query_opt(&stmt, &[&name])
            .await?
            .map(|r| account_from_row(&r))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
