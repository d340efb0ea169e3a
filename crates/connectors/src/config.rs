//! Connector configuration: parsed with serde (`deny_unknown_fields`), then validated and
//! turned into a `fleetca_ra::Connector` by [`ConnectorConfig::build`].
//!
//! ```toml
//! [connectors.cmdb]
//! kind = "http"
//! url = "https://cmdb.example.com/api/devices/{serial}"
//! bearer_token_file = "cmdb.token"
//! on_unknown = "deny"
//! on_error = "unavailable"
//! retry_after = "60s"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetca_ra::{Connector, DeviceDirectory, OnError, OnUnknown};
use serde::Deserialize;

use crate::duration::ConfigDuration;
use crate::error::ConfigError;
use crate::fields::Projected;
use crate::file::FileDirectory;
use crate::http::HttpDirectory;
use crate::sql::{PostgresDirectory, SqliteDirectory};

/// One connector, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ConnectorConfig {
    /// An HTTP JSON service (CMDB, asset API).
    Http(HttpConfig),
    /// A CSV or JSON file of devices.
    File(FileConfig),
    /// A SQL query against SQLite or PostgreSQL.
    Sql(SqlConfig),
}

/// `on_unknown`: what a device the directory does not know means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknownConfig {
    /// The request is denied (the default).
    #[default]
    Deny,
    /// The request goes on; rules see `device.<name> == null`.
    Allow,
}

/// `on_error`: what a failed lookup means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnErrorConfig {
    /// The device is told to retry later (`503` + `Retry-After`) (the default).
    #[default]
    Unavailable,
    /// The request is denied (`403`).
    Deny,
    /// The lookup is ignored: as if the device were unknown to this directory, whatever
    /// `on_unknown` says (rules see `null`). Only for directories that merely enrich.
    Skip,
}

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `http://` or `https://` URL with `{serial}`, replaced by the percent-encoded serial.
    pub url: String,
    /// A file holding the bearer token (read at start; surrounding whitespace ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `client_key`.
    pub client_certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of `client_certificate`.
    pub client_key: Option<PathBuf>,
    /// PEM certificate(s) trusted for the server in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Time for one request, connection and body included.
    #[serde(default = "d2s")]
    pub timeout: ConfigDuration,
    /// Extra attempts after a timeout, a connection failure or a 5xx (never after a 4xx).
    #[serde(default = "two")]
    pub retries: u32,
    /// How long records and "unknown" answers are kept; `0s` disables the cache.
    #[serde(default = "d60s")]
    pub cache_ttl: ConfigDuration,
    /// The most answers kept.
    #[serde(default = "ten_thousand")]
    pub cache_max_entries: usize,
    /// JSON pointer to the device object inside the response (e.g. `/data`); absent: the
    /// whole response.
    pub record: Option<String>,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_unknown: OnUnknownConfig,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_error: OnErrorConfig,
    /// `Retry-After` for `on_error = "unavailable"`.
    #[serde(default = "d60s")]
    pub retry_after: ConfigDuration,
    /// Output field name to JSON pointer into the record; absent: the whole record.
    pub fields: Option<BTreeMap<String, String>>,
}

/// `kind = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A `.csv` file with a header row, or a `.json` array of objects.
    pub path: PathBuf,
    /// The column (CSV) or field (JSON) holding the serial.
    #[serde(default = "serial")]
    pub key: String,
    /// How often, at most, a lookup checks whether the file changed (`0s`: every lookup).
    #[serde(default = "d1s")]
    pub reload_interval: ConfigDuration,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_unknown: OnUnknownConfig,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_error: OnErrorConfig,
    /// `Retry-After` for `on_error = "unavailable"`.
    #[serde(default = "d60s")]
    pub retry_after: ConfigDuration,
    /// Output field name to JSON pointer into the record; absent: the whole record.
    pub fields: Option<BTreeMap<String, String>>,
}

/// `kind = "sql"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `sqlite:///absolute/path.db`, `sqlite:relative.db` or `postgres://...`.
    pub url: DatabaseUrl,
    /// One statement with one parameter bound to the serial: `?1` for SQLite, `$1` for
    /// PostgreSQL. The first row is the record.
    pub query: String,
    /// Time for one lookup (PostgreSQL: also the `statement_timeout`).
    #[serde(default = "d2s")]
    pub timeout: ConfigDuration,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_unknown: OnUnknownConfig,
    /// See [`ConnectorConfig`] common keys.
    #[serde(default)]
    pub on_error: OnErrorConfig,
    /// `Retry-After` for `on_error = "unavailable"`.
    #[serde(default = "d60s")]
    pub retry_after: ConfigDuration,
    /// Output field name to JSON pointer into the record; absent: the whole record.
    pub fields: Option<BTreeMap<String, String>>,
}

/// A database URL. `Debug` does not print it: a PostgreSQL URL may hold a password.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or_default();
        write!(f, "DatabaseUrl({scheme}:<redacted>)")
    }
}

fn d1s() -> ConfigDuration {
    ConfigDuration::secs(1)
}
fn d2s() -> ConfigDuration {
    ConfigDuration::secs(2)
}
fn d60s() -> ConfigDuration {
    ConfigDuration::secs(60)
}
fn two() -> u32 {
    2
}
fn ten_thousand() -> usize {
    10_000
}
fn serial() -> String {
    "serial".into()
}

/// The keys every kind has.
struct Common<'a> {
    on_unknown: OnUnknownConfig,
    on_error: OnErrorConfig,
    retry_after: ConfigDuration,
    fields: Option<&'a BTreeMap<String, String>>,
}

impl ConnectorConfig {
    fn common(&self) -> Common<'_> {
        match self {
            Self::Http(c) => Common {
                on_unknown: c.on_unknown,
                on_error: c.on_error,
                retry_after: c.retry_after,
                fields: c.fields.as_ref(),
            },
            Self::File(c) => Common {
                on_unknown: c.on_unknown,
                on_error: c.on_error,
                retry_after: c.retry_after,
                fields: c.fields.as_ref(),
            },
            Self::Sql(c) => Common {
                on_unknown: c.on_unknown,
                on_error: c.on_error,
                retry_after: c.retry_after,
                fields: c.fields.as_ref(),
            },
        }
    }

    /// Validates the configuration of connector `name` and builds it. Relative paths are
    /// resolved against `base_dir` (the configuration file's directory); files are read now
    /// (token, certificates, the device file, the SQLite database), so a broken
    /// configuration is reported at start-up, not at the first enrollment.
    pub fn build(&self, name: &str, base_dir: &Path) -> Result<Connector, ConfigError> {
        let common = self.common();
        if common.retry_after.0.is_zero() {
            return Err(ConfigError::invalid(
                name,
                "retry_after",
                "must be more than 0s",
            ));
        }
        let directory: Arc<dyn DeviceDirectory> = match self {
            Self::Http(c) => Arc::new(HttpDirectory::from_config(name, c, base_dir)?),
            Self::File(c) => Arc::new(FileDirectory::from_config(name, c, base_dir)?),
            Self::Sql(c) => sql_directory(name, c, base_dir)?,
        };
        let directory: Arc<dyn DeviceDirectory> = match common.fields {
            None => directory,
            Some(fields) => {
                if fields.is_empty() {
                    return Err(ConfigError::invalid(
                        name,
                        "fields",
                        "is empty (leave it out to expose the whole record)",
                    ));
                }
                for (field, pointer) in fields {
                    if !pointer.is_empty() && !pointer.starts_with('/') {
                        return Err(ConfigError::invalid(
                            name,
                            "fields",
                            format!(
                                "{field} = \"{pointer}\" is not a JSON pointer (write \"/{pointer}\")"
                            ),
                        ));
                    }
                }
                Arc::new(Projected::new(directory, fields.clone()))
            }
        };
        Ok(Connector {
            name: name.to_owned(),
            directory,
            on_unknown: match common.on_unknown {
                OnUnknownConfig::Deny => OnUnknown::Deny,
                OnUnknownConfig::Allow => OnUnknown::Allow,
            },
            on_error: match common.on_error {
                OnErrorConfig::Unavailable => OnError::Unavailable {
                    retry_after: common.retry_after.0,
                },
                OnErrorConfig::Deny => OnError::Deny,
                OnErrorConfig::Skip => OnError::Skip,
            },
        })
    }
}

fn sql_directory(
    name: &str,
    c: &SqlConfig,
    base_dir: &Path,
) -> Result<Arc<dyn DeviceDirectory>, ConfigError> {
    if c.timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            name,
            "timeout",
            "must be more than 0s",
        ));
    }
    let url = c.url.0.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(ConfigError::invalid(
                name,
                "url",
                "sqlite: URL without a path",
            ));
        }
        let path = resolve(base_dir, Path::new(path));
        Ok(Arc::new(SqliteDirectory::open(
            name,
            &path,
            &c.query,
            c.timeout.0,
        )?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresDirectory::new(
            name,
            url,
            &c.query,
            c.timeout.0,
        )?))
    } else {
        Err(ConfigError::invalid(
            name,
            "url",
            "must start with sqlite: or postgres://",
        ))
    }
}

/// `path` if absolute, else relative to `base_dir`.
pub(crate) fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

/// Reads a file named by configuration key `field`.
pub(crate) fn read_file(
    name: &str,
    field: &'static str,
    base_dir: &Path,
    path: &Path,
) -> Result<Vec<u8>, ConfigError> {
    let path = resolve(base_dir, path);
    std::fs::read(&path).map_err(|source| ConfigError::Unreadable {
        connector: name.to_owned(),
        field,
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn kinds_parse_with_defaults_and_unknown_keys_are_refused() {
        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "http"
            url = "http://127.0.0.1/devices/{serial}"
            "#,
        )
        .unwrap();
        let ConnectorConfig::Http(h) = c else {
            panic!("not http")
        };
        assert_eq!(h.timeout.0.as_secs(), 2);
        assert_eq!(h.retries, 2);
        assert_eq!(h.cache_ttl.0.as_secs(), 60);
        assert_eq!(h.on_unknown, OnUnknownConfig::Deny);
        assert_eq!(h.on_error, OnErrorConfig::Unavailable);
        assert_eq!(h.retry_after.0.as_secs(), 60);

        let err = toml::from_str::<ConnectorConfig>(
            r#"
            kind = "http"
            url = "http://127.0.0.1/devices/{serial}"
            tiemout = "2s"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tiemout"), "{err}");

        let err = toml::from_str::<ConnectorConfig>("kind = \"ldap\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ldap"), "{err}");

        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "file"
            path = "devices.csv"
            on_unknown = "allow"
            on_error = "skip"
            "#,
        )
        .unwrap();
        let ConnectorConfig::File(f) = c else {
            panic!("not file")
        };
        assert_eq!(f.key, "serial");
        assert_eq!(f.reload_interval.0.as_secs(), 1);
    }

    #[test]
    fn database_url_debug_hides_password() {
        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "sql"
            url = "postgres://fleetca:hunter2@127.0.0.1/cmdb"
            query = "SELECT * FROM devices WHERE serial = $1"
            "#,
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres:<redacted>"), "{debug}");
    }

    #[test]
    fn build_names_connector_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "http"
            url = "http://127.0.0.1/devices/"
            "#,
        )
        .unwrap();
        let err = c.build("cmdb", dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("connector 'cmdb': url: "), "{err}");
        assert!(err.contains("{serial}"), "{err}");

        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "http"
            url = "http://127.0.0.1/devices/{serial}"
            bearer_token_file = "missing.token"
            "#,
        )
        .unwrap();
        let err = c.build("cmdb", dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("connector 'cmdb': bearer_token_file: cannot read "),
            "{err}"
        );
        assert!(err.contains("missing.token"), "{err}");

        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "http"
            url = "http://127.0.0.1/devices/{serial}"
            fields = { status = "status" }
            "#,
        )
        .unwrap();
        let err = c.build("cmdb", dir.path()).unwrap_err().to_string();
        assert!(err.contains("fields: status = \"status\""), "{err}");

        let c: ConnectorConfig = toml::from_str(
            r#"
            kind = "sql"
            url = "mysql://db/cmdb"
            query = "SELECT 1"
            "#,
        )
        .unwrap();
        let err = c.build("inv", dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("connector 'inv': url: "), "{err}");
    }
}
