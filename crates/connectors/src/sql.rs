//! `kind = "sql"`: the first row of a query, parameterised by the serial, is the record.
//!
//! Both backends only read. SQLite: the database is opened with `SQLITE_OPEN_READ_ONLY`
//! and `PRAGMA query_only`, one small connection per lookup on the blocking pool;
//! statements that would write are refused at start-up. PostgreSQL: every lookup runs in
//! a `READ ONLY` transaction with `statement_timeout` set to the connector's `timeout`, on
//! one of a few pooled connections; a broken connection is replaced on the next lookup.
//! PostgreSQL is reached without TLS (loopback or a Unix socket); `sslmode=require` is
//! refused rather than silently ignored.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fleetca_ra::{DeviceDirectory, DirectoryError, DirectoryRecord};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Number, Value};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;

use crate::duration::ConfigDuration;
use crate::error::ConfigError;

/// PostgreSQL connections kept per connector (and lookups in flight at once).
const PG_CONNECTIONS: usize = 4;

/// A directory backed by a SQLite database.
pub struct SqliteDirectory {
    name: String,
    path: PathBuf,
    query: String,
    timeout: Duration,
}

impl fmt::Debug for SqliteDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDirectory")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A read-only connection that waits up to `timeout` for a writer's lock.
fn sqlite_connect(path: &Path, timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(timeout)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The first row of `query` with `?1` = `serial`.
fn sqlite_first_row(
    conn: &Connection,
    query: &str,
    serial: &str,
) -> rusqlite::Result<Option<DirectoryRecord>> {
    let mut statement = conn.prepare(query)?;
    let names: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = statement.query([serial])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut record = DirectoryRecord::new();
    for (index, name) in names.into_iter().enumerate() {
        let value = match row.get_ref(index)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::from(i),
            ValueRef::Real(r) => Number::from_f64(r).map_or(Value::Null, Value::Number),
            ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::String(hex::encode(b)),
        };
        record.insert(name, value);
    }
    Ok(Some(record))
}

impl SqliteDirectory {
    /// Opens the database once to check that it exists and that `query` is one read-only
    /// statement with one parameter.
    pub fn open(
        name: &str,
        path: &Path,
        query: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        std::fs::metadata(path).map_err(|source| ConfigError::Unreadable {
            connector: name.to_owned(),
            field: "url",
            path: path.to_owned(),
            source,
        })?;
        let conn = sqlite_connect(path, timeout)
            .map_err(|e| ConfigError::invalid(name, "url", format!("{}: {e}", path.display())))?;
        let statement = conn
            .prepare(query)
            .map_err(|e| ConfigError::invalid(name, "query", e.to_string()))?;
        let parameters = statement.parameter_count();
        if parameters != 1 {
            return Err(ConfigError::invalid(
                name,
                "query",
                format!("needs exactly one parameter, ?1, for the serial (has {parameters})"),
            ));
        }
        if !statement.readonly() {
            return Err(ConfigError::invalid(
                name,
                "query",
                "would write to the database; a connector only reads",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            timeout,
        })
    }
}

#[async_trait]
impl DeviceDirectory for SqliteDirectory {
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        // The query's interrupt handle, or `cancelled` if the lookup timed out before the
        // query started.
        let interrupt: Arc<Mutex<Interrupt>> = Arc::default();
        let task = {
            let (path, query, serial) = (
                self.path.clone(),
                self.query.clone(),
                device_serial.to_owned(),
            );
            let (interrupt, timeout) = (Arc::clone(&interrupt), self.timeout);
            tokio::task::spawn_blocking(move || {
                let conn = sqlite_connect(&path, timeout)?;
                {
                    let mut slot = interrupt.lock().unwrap_or_else(|p| p.into_inner());
                    if slot.cancelled {
                        return Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERRUPT),
                            None,
                        ));
                    }
                    slot.handle = Some(conn.get_interrupt_handle());
                }
                sqlite_first_row(&conn, &query, &serial)
            })
        };
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(answer)) => {
                answer.map_err(|e| DirectoryError(format!("{}: {e}", self.path.display())))
            }
            Ok(Err(join)) => Err(DirectoryError(format!("query task failed: {join}"))),
            Err(_) => {
                let mut slot = interrupt.lock().unwrap_or_else(|p| p.into_inner());
                slot.cancelled = true;
                if let Some(handle) = slot.handle.take() {
                    handle.interrupt();
                }
                Err(DirectoryError(format!(
                    "timed out after {} waiting for {}",
                    ConfigDuration(self.timeout),
                    self.path.display()
                )))
            }
        }
    }
}

#[derive(Default)]
struct Interrupt {
    handle: Option<rusqlite::InterruptHandle>,
    cancelled: bool,
}

/// A directory backed by a PostgreSQL query.
pub struct PostgresDirectory {
    name: String,
    config: tokio_postgres::Config,
    /// `host:port/dbname`, what error texts name (never user or password).
    target: String,
    query: String,
    timeout: Duration,
    idle: Mutex<Vec<tokio_postgres::Client>>,
    permits: tokio::sync::Semaphore,
}

impl fmt::Debug for PostgresDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDirectory")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresDirectory {
    /// Parses `url` and checks `query`; connects only at the first lookup, so a database
    /// that is down at start-up fails lookups (closed) rather than the server.
    pub fn new(name: &str, url: &str, query: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| ConfigError::invalid(name, "url", format!("not a PostgreSQL URL: {e}")))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(ConfigError::invalid(
                name,
                "url",
                "sslmode=require: this connector speaks to PostgreSQL without TLS; \
                 use a Unix socket or a loopback address",
            ));
        }
        if !query.contains("$1") || query.contains("$2") {
            return Err(ConfigError::invalid(
                name,
                "query",
                "needs exactly one parameter, $1, for the serial",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            // So a DBA can tell fleetca's sessions apart in pg_stat_activity.
            config.application_name("fleetca");
        }
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(Self {
            name: name.to_owned(),
            config,
            target,
            query: query.to_owned(),
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(PG_CONNECTIONS),
        })
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, DirectoryError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            DirectoryError(format!(
                "cannot connect to {}: {}",
                self.target,
                pg_text(&e)
            ))
        })?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(connector = %name, error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    fn checkout(&self) -> Option<tokio_postgres::Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(client) = idle.pop() {
            if !client.is_closed() {
                return Some(client);
            }
        }
        None
    }

    fn checkin(&self, client: tokio_postgres::Client) {
        if !client.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < PG_CONNECTIONS {
                idle.push(client);
            }
        }
    }

    async fn lookup_pooled(&self, serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DirectoryError("connector is shutting down".into()))?;
        if let Some(mut client) = self.checkout() {
            match self.run(&mut client, serial).await {
                Ok(row) => {
                    self.checkin(client);
                    return self.record(Ok(row));
                }
                // The server went away since the last lookup: try once on a new connection.
                Err(e) if e.is_closed() || client.is_closed() => {}
                Err(e) => {
                    self.checkin(client);
                    return Err(self.failure(&e));
                }
            }
        }
        let mut client = self.connect().await?;
        let answer = self.run(&mut client, serial).await;
        self.checkin(client);
        self.record(answer)
    }

    fn record(
        &self,
        answer: Result<Option<tokio_postgres::Row>, tokio_postgres::Error>,
    ) -> Result<Option<DirectoryRecord>, DirectoryError> {
        match answer {
            Ok(None) => Ok(None),
            Ok(Some(row)) => pg_record(&row)
                .map(Some)
                .map_err(|e| DirectoryError(format!("{}: {e}", self.target))),
            Err(e) => Err(self.failure(&e)),
        }
    }

    fn failure(&self, e: &tokio_postgres::Error) -> DirectoryError {
        DirectoryError(format!("{}: {}", self.target, pg_text(e)))
    }

    async fn run(
        &self,
        client: &mut tokio_postgres::Client,
        serial: &str,
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let transaction = client.build_transaction().read_only(true).start().await?;
        // A number we format; SET takes no parameters.
        transaction
            .batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                self.timeout.as_millis().max(1)
            ))
            .await?;
        let statement = transaction
            .prepare_typed(&self.query, &[Type::TEXT])
            .await?;
        let portal = transaction.bind(&statement, &[&serial]).await?;
        let row = transaction
            .query_portal(&portal, 1)
            .await?
            .into_iter()
            .next();
        transaction.rollback().await?;
        Ok(row)
    }
}

/// The server's message (`ERROR: ...`), or the error with its causes: tokio-postgres
/// prints only "db error" on its own.
fn pg_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Column name to JSON value. Types without a mapping are an error naming the column.
fn pg_record(row: &tokio_postgres::Row) -> Result<DirectoryRecord, String> {
    let mut record = DirectoryRecord::new();
    for (index, column) in row.columns().iter().enumerate() {
        let unmapped = || {
            format!(
                "column '{0}' has type {1}, which the connector does not map; \
                 cast it in the query (e.g. {0}::text)",
                column.name(),
                column.type_()
            )
        };
        if !pg_mapped(column.type_()) {
            return Err(unmapped());
        }
        let value = pg_value(row, index, column.type_()).map_err(|e| pg_text(&e))?;
        record.insert(column.name().to_owned(), value.unwrap_or(Value::Null));
    }
    Ok(record)
}

fn pg_mapped(t: &Type) -> bool {
    use tokio_postgres::types::FromSql;
    matches!(
        *t,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::JSON
            | Type::JSONB
            | Type::BYTEA
    ) || <String as FromSql>::accepts(t)
}

/// One column's value (`None` for SQL NULL).
fn pg_value(
    row: &tokio_postgres::Row,
    index: usize,
    t: &Type,
) -> Result<Option<Value>, tokio_postgres::Error> {
    let float = |f: Option<f64>| f.and_then(Number::from_f64).map(Value::Number);
    Ok(match *t {
        Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(Value::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(Value::from),
        Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(Value::from),
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::from),
        Type::OID => row.try_get::<_, Option<u32>>(index)?.map(Value::from),
        Type::FLOAT4 => float(row.try_get::<_, Option<f32>>(index)?.map(f64::from)),
        Type::FLOAT8 => float(row.try_get::<_, Option<f64>>(index)?),
        Type::JSON | Type::JSONB => row.try_get::<_, Option<Value>>(index)?,
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(index)?
            .map(|b| Value::String(hex::encode(b))),
        // Text-like types (TEXT, VARCHAR, BPCHAR, NAME, CITEXT...), see `pg_mapped`.
        _ => row.try_get::<_, Option<String>>(index)?.map(Value::String),
    })
}

#[async_trait]
impl DeviceDirectory for PostgresDirectory {
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        match tokio::time::timeout(self.timeout, self.lookup_pooled(device_serial)).await {
            Ok(answer) => answer,
            // The dropped connection is not reused; the server ends the statement itself
            // (statement_timeout).
            Err(_) => Err(DirectoryError(format!(
                "timed out after {} waiting for {}",
                ConfigDuration(self.timeout),
                self.target
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sqlite_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let rw = Connection::open(&path).unwrap();
        rw.execute_batch("CREATE TABLE devices (serial TEXT PRIMARY KEY, status TEXT)")
            .unwrap();
        let conn = sqlite_connect(&path, Duration::from_secs(1)).unwrap();
        let e = sqlite_first_row(
            &conn,
            "INSERT INTO devices (serial, status) VALUES (?1, 'x') RETURNING serial",
            "SN1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("readonly") || e.contains("read-only") || e.contains("query_only"),
            "{e}"
        );
        let count: i64 = rw
            .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn postgres_urls_are_checked_without_connecting() {
        let q = "SELECT * FROM devices WHERE serial = $1";
        let d = PostgresDirectory::new(
            "inv",
            "postgres://fleetca:hunter2@127.0.0.1:5433/cmdb",
            q,
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(d.target, "127.0.0.1:5433/cmdb");
        assert!(!format!("{d:?}").contains("hunter2"));
        let e = PostgresDirectory::new(
            "inv",
            "postgres://127.0.0.1/cmdb?sslmode=require",
            q,
            Duration::from_secs(2),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslmode=require"), "{e}");
        let e = PostgresDirectory::new(
            "inv",
            "postgres://127.0.0.1/cmdb",
            "SELECT * FROM devices WHERE serial = ?1",
            Duration::from_secs(2),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("$1"), "{e}");
    }
}
