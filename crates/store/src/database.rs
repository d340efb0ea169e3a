//! Which backend a configuration names, and opening it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{PostgresStore, SqliteStore, Store, StoreError};

/// A `postgres://` (or `postgresql://`) connection URL, and how many connections a node
/// keeps to it. `Debug` and `Display` show `user@host:port/database` only: the URL may
/// carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    pool_size: usize,
    /// With TLS: the CA certificates the server's certificate must chain to.
    tls_roots: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl PostgresUrl {
    /// Connections per node unless configured: enough to keep a database busy, few enough
    /// that several nodes do not swamp it with backends (on the 2-core benchmark machine
    /// 8 connections gave 1,556-1,622 enrollments/s, 4 gave 1,548-1,558 and 32 gave
    /// 1,521-1,545; see docs/benchmarks.md).
    pub const DEFAULT_POOL_SIZE: usize = 8;

    /// Checks that `url` is a connection URL the driver accepts (without connecting).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Open {
            path: "the postgres:// URL".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            url: url.to_string(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            tls_roots: None,
        })
    }

    /// Connects over TLS only (whatever the URL's `sslmode`, unless it says `disable`,
    /// which opening refuses), verifying the server's certificate and name against the CA
    /// certificates in `pem`.
    pub fn with_tls_roots(mut self, pem: &[u8]) -> Result<Self, StoreError> {
        use rustls_pki_types::pem::PemObject;
        let roots = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Open {
                path: self.to_string(),
                reason: format!("the TLS CA file is not PEM certificates: {e}"),
            })?;
        if roots.is_empty() {
            return Err(StoreError::Open {
                path: self.to_string(),
                reason: "the TLS CA file holds no PEM certificate".into(),
            });
        }
        self.tls_roots = Some(roots);
        Ok(self)
    }

    /// The CA certificates of a TLS connection, if the connection uses TLS.
    pub fn tls_roots(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        self.tls_roots.as_deref()
    }

    /// Another URL with these settings (pool size, TLS).
    pub fn with_url(&self, url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            url: Self::parse(url)?.url,
            pool_size: self.pool_size,
            tls_roots: self.tls_roots.clone(),
        })
    }

    /// With at most `pool_size` connections (at least 1) per node.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }

    /// Connections per node.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The URL itself, password included: for the driver only, never for messages.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::postgres::describe_url(&self.url))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// Where the inventory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by any number of nodes.
    Postgres(PostgresUrl),
}

impl Database {
    /// A `postgres://`/`postgresql://` URL selects PostgreSQL; anything else is an SQLite
    /// path, resolved against `base` when relative.
    pub fn parse(value: &str, base: &Path) -> Result<Self, StoreError> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return PostgresUrl::parse(value).map(Self::Postgres);
        }
        let path = Path::new(value);
        Ok(Self::Sqlite(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }))
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Opens the configured backend (creating an SQLite file, migrating either schema). Works
/// inside or outside an async runtime.
pub fn open(database: &Database) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match database {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        Database::Postgres(url) => Arc::new(PostgresStore::open_url(url)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_postgres_and_never_show_their_password() {
        let db = Database::parse(
            "postgres://fleetca:s3cret@db.example.com:6432/inventory",
            Path::new("/data"),
        )
        .unwrap();
        let Database::Postgres(url) = &db else {
            panic!("{db:?}")
        };
        assert_eq!(
            url.to_string(),
            "postgres://fleetca@db.example.com:6432/inventory"
        );
        assert!(!format!("{db:?} {db}").contains("s3cret"));
        assert_eq!(
            Database::parse("fleetca.db", Path::new("/data")).unwrap(),
            Database::Sqlite(PathBuf::from("/data/fleetca.db"))
        );
        let err = Database::parse("postgres://h:notaport/db", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("URL"), "{err}");
    }

    #[test]
    fn an_unreachable_server_is_named_without_credentials() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let db = Database::parse(
            &format!("postgres://fleetca:s3cret@127.0.0.1:{port}/inventory"),
            Path::new("/"),
        )
        .unwrap();
        let err = open(&db).unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
