//! The configuration of `fleetca serve` as a library: what the binary reads from
//! `fleetca.toml` (and `conf.d/`), parsed and validated without starting anything. The
//! binary (`main.rs`) is the only user besides the fuzz targets (`crates/fuzzing`), which
//! feed untrusted configuration text through [`config::Config::parse`]; nothing else of the
//! binary lives here.

pub mod config;
pub mod config_admin;
pub mod config_cmp;
pub mod config_fragments;
pub mod config_scep;
pub mod files;
pub mod keys;
