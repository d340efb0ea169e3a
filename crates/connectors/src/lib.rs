//! Device directories for the RA (`fleetca_ra::DeviceDirectory`): an HTTP JSON service (a
//! CMDB or asset API), a CSV or JSON file of devices, and a SQL query (SQLite or
//! PostgreSQL). Each maps an external record into a JSON object that custom rules see as
//! `device.<connector name>`.
//!
//! A configuration ([`ConnectorConfig`], one TOML table per connector) is parsed, then
//! [`ConnectorConfig::build`] validates it (files exist, URL templates, SQL statements) and
//! returns the `fleetca_ra::Connector` the RA uses. See `docs/connectors.md`.
//!
//! Lookup errors are `fleetca_ra::DirectoryError` texts for the operator (decision log,
//! server log); they name hosts, status codes and files but never credentials. Devices never
//! see them.

mod cache;
mod config;
mod duration;
mod error;
mod fields;
mod file;
mod http;
mod sql;

pub use config::{
    ConnectorConfig, DatabaseUrl, FileConfig, HttpConfig, OnErrorConfig, OnUnknownConfig, SqlConfig,
};
pub use duration::ConfigDuration;
pub use error::ConfigError;
pub use fields::{project as project_fields, Projected};
pub use file::{parse_csv, parse_json, FileDirectory};
pub use http::{record_at, HttpDirectory};
pub use sql::{PostgresDirectory, SqliteDirectory};
