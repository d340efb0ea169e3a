//! `kind = "file"`: devices listed in a CSV file (header row) or a JSON array of objects.
//!
//! The file is read at start-up and re-read when it changes: at most every
//! `reload_interval`, a lookup compares the file's modification time and size with those
//! of the last read. A file that cannot be read or parsed makes every lookup fail (fail
//! closed) until it is fixed; the last good contents are not used, since they may list a
//! device that was removed on purpose.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use fleetca_ra::{DeviceDirectory, DirectoryError, DirectoryRecord};
use serde_json::Value;

use crate::config::{resolve, FileConfig};
use crate::error::ConfigError;

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// A file replaced by a rename is a new inode, even where mtimes are coarse.
    inode: u64,
}

type Devices = Arc<HashMap<String, DirectoryRecord>>;

struct State {
    /// The devices, or why the file is unusable (operator text).
    devices: Result<Devices, String>,
    stamp: Option<Stamp>,
    checked: Instant,
}

/// A directory backed by a CSV or JSON file.
pub struct FileDirectory {
    name: String,
    path: PathBuf,
    key: String,
    format: Format,
    reload_interval: Duration,
    state: RwLock<State>,
    /// Held by the one lookup that checks the file.
    reloading: tokio::sync::Mutex<()>,
}

impl fmt::Debug for FileDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDirectory")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("key", &self.key)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl FileDirectory {
    /// Validates `config` and reads the file now: a missing or broken file is a
    /// configuration error at start-up.
    pub fn from_config(name: &str, c: &FileConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        let path = resolve(base_dir, &c.path);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            _ => {
                return Err(ConfigError::invalid(
                    name,
                    "path",
                    format!("{}: name a .csv or .json file", path.display()),
                ))
            }
        };
        if c.key.is_empty() {
            return Err(ConfigError::invalid(name, "key", "is empty"));
        }
        let stamp = std::fs::metadata(&path)
            .map(|m| stamp_of(&m))
            .map_err(|source| ConfigError::Unreadable {
                connector: name.to_owned(),
                field: "path",
                path: path.clone(),
                source,
            })?;
        let devices = load(&path, &c.key, format)
            .map_err(|reason| ConfigError::invalid(name, "path", reason))?;
        Ok(Self {
            name: name.to_owned(),
            path,
            key: c.key.clone(),
            format,
            reload_interval: c.reload_interval.0,
            state: RwLock::new(State {
                devices: Ok(Arc::new(devices)),
                stamp: Some(stamp),
                checked: Instant::now(),
            }),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    fn due(&self) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.checked.elapsed() >= self.reload_interval
    }

    /// Re-reads the file if it changed (or was broken). Only one lookup does it; the
    /// others meanwhile answer from the current contents instead of waiting.
    async fn refresh(&self) {
        let Ok(_one_at_a_time) = self.reloading.try_lock() else {
            return;
        };
        if !self.due() {
            return; // another lookup has just checked
        }
        let (stamp, devices) = match tokio::fs::metadata(&self.path).await {
            Err(e) => (
                None,
                Some(Err(format!("cannot read {}: {e}", self.path.display()))),
            ),
            Ok(meta) => {
                let stamp = stamp_of(&meta);
                let unchanged = {
                    let state = self.state.read().unwrap_or_else(|p| p.into_inner());
                    state.stamp == Some(stamp) && state.devices.is_ok()
                };
                if unchanged {
                    (Some(stamp), None)
                } else {
                    let (path, key, format) = (self.path.clone(), self.key.clone(), self.format);
                    let loaded = tokio::task::spawn_blocking(move || load(&path, &key, format))
                        .await
                        .unwrap_or_else(|e| Err(format!("reading the file failed: {e}")));
                    (Some(stamp), Some(loaded.map(Arc::new)))
                }
            }
        };
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.checked = Instant::now();
        state.stamp = stamp;
        if let Some(devices) = devices {
            match &devices {
                Ok(d) => {
                    tracing::info!(connector = %self.name, devices = d.len(), "device file reloaded")
                }
                Err(e) => {
                    tracing::warn!(connector = %self.name, error = %e, "device file unusable; lookups fail until it is fixed")
                }
            }
            state.devices = devices;
        }
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    }
}

/// Reads and parses the whole file; the error is operator text naming the file.
fn load(
    path: &Path,
    key: &str,
    format: Format,
) -> Result<HashMap<String, DirectoryRecord>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = match format {
        Format::Csv => parse_csv(&bytes, key),
        Format::Json => parse_json(&bytes, key),
    };
    parsed.map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds `record` under `serial`, refusing duplicates (`place` says where it was found).
fn add(
    devices: &mut HashMap<String, (DirectoryRecord, String)>,
    serial: String,
    record: DirectoryRecord,
    place: String,
) -> Result<(), String> {
    if let Some((_, first)) = devices.get(&serial) {
        return Err(format!("duplicate key '{serial}' ({first} and {place})"));
    }
    devices.insert(serial, (record, place));
    Ok(())
}

/// The records of a CSV device file (a header row, one device a row), by the value of
/// column `key`. Every value is a string.
pub fn parse_csv(bytes: &[u8], key: &str) -> Result<HashMap<String, DirectoryRecord>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("header row: {e}"))?
        .clone();
    let mut seen = std::collections::HashSet::new();
    for h in &headers {
        if !seen.insert(h) {
            return Err(format!("column '{h}' appears twice in the header row"));
        }
    }
    if !headers.iter().any(|h| h == key) {
        return Err(format!("no column '{key}' in the header row"));
    }
    let mut devices = HashMap::new();
    for row in reader.records() {
        let row = row.map_err(|e| e.to_string())?;
        let line = row.position().map_or(0, |p| p.line());
        let mut record = DirectoryRecord::new();
        let mut serial = None;
        for (name, value) in headers.iter().zip(row.iter()) {
            if name == key {
                serial = Some(value.to_owned());
            }
            record.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        let serial = serial
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("line {line}: empty '{key}'"))?;
        add(&mut devices, serial, record, format!("line {line}"))?;
    }
    Ok(devices.into_iter().map(|(k, (r, _))| (k, r)).collect())
}

/// The records of a JSON device file (an array of objects), by the value of field `key`
/// (a string or a number).
pub fn parse_json(bytes: &[u8], key: &str) -> Result<HashMap<String, DirectoryRecord>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("not a JSON array of objects".into());
    };
    let mut devices = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(record) = item else {
            return Err(format!("element {index} is not an object"));
        };
        let serial = match record.get(key) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(format!("element {index} has no '{key}' string or number")),
        };
        add(&mut devices, serial, record, format!("element {index}"))?;
    }
    Ok(devices.into_iter().map(|(k, (r, _))| (k, r)).collect())
}

#[async_trait]
impl DeviceDirectory for FileDirectory {
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        if self.due() {
            self.refresh().await;
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        match &state.devices {
            Ok(devices) => Ok(devices.get(device_serial).cloned()),
            Err(e) => Err(DirectoryError(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn csv_values_are_strings_and_duplicates_are_named() {
        let d = parse_csv(
            b"serial,status,batch\nSN1,active,7\nSN2, decommissioned ,8\n",
            "serial",
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d["SN1"]["batch"], Value::String("7".into()));
        assert_eq!(d["SN2"]["status"], Value::String("decommissioned".into()));

        let e = parse_csv(b"serial,status\nSN1,a\nSN2,b\nSN1,c\n", "serial").unwrap_err();
        assert_eq!(e, "duplicate key 'SN1' (line 2 and line 4)");
        let e = parse_csv(b"id,status\nSN1,a\n", "serial").unwrap_err();
        assert_eq!(e, "no column 'serial' in the header row");
        let e = parse_csv(b"serial,status\nSN1,a,extra\n", "serial").unwrap_err();
        assert!(e.contains("2"), "{e}");
        let e = parse_csv(b"serial,status\n,a\n", "serial").unwrap_err();
        assert_eq!(e, "line 2: empty 'serial'");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let d = parse_json(
            br#"[{"serial":"SN1","status":"active","batch":7},{"serial":42}]"#,
            "serial",
        )
        .unwrap();
        assert_eq!(d["SN1"]["batch"], Value::from(7));
        assert!(d.contains_key("42"));
        let e = parse_json(br#"[{"serial":"A"},{"serial":"A"}]"#, "serial").unwrap_err();
        assert_eq!(e, "duplicate key 'A' (element 0 and element 1)");
        let e = parse_json(br#"{"serial":"A"}"#, "serial").unwrap_err();
        assert_eq!(e, "not a JSON array of objects");
        let e = parse_json(br#"[{"id":"A"}]"#, "serial").unwrap_err();
        assert_eq!(e, "element 0 has no 'serial' string or number");
    }
}
