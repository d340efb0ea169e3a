//! `fields`: expose only selected parts of a record, each under a name of the operator's
//! choosing, picked by a JSON pointer (RFC 6901).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use fleetca_ra::{DeviceDirectory, DirectoryError, DirectoryRecord};
use serde_json::Value;

/// A directory whose records are reduced to the configured fields. A pointer that finds
/// nothing in a record gives `null` for that field, so rules can test for it.
pub struct Projected {
    inner: Arc<dyn DeviceDirectory>,
    fields: BTreeMap<String, String>,
}

impl Projected {
    /// `fields` maps output names to JSON pointers (`""` is the whole record).
    pub fn new(inner: Arc<dyn DeviceDirectory>, fields: BTreeMap<String, String>) -> Self {
        Self { inner, fields }
    }

    /// The record as rules see it.
    pub fn project(&self, record: DirectoryRecord) -> DirectoryRecord {
        project(&self.fields, record)
    }
}

/// `record` reduced to `fields` (output name → JSON pointer; `""` is the whole record); a
/// pointer that finds nothing gives `null`.
pub fn project(fields: &BTreeMap<String, String>, record: DirectoryRecord) -> DirectoryRecord {
    let whole = Value::Object(record);
    fields
        .iter()
        .map(|(name, pointer)| {
            let value = whole.pointer(pointer).cloned().unwrap_or(Value::Null);
            (name.clone(), value)
        })
        .collect()
}

#[async_trait]
impl DeviceDirectory for Projected {
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        Ok(self
            .inner
            .lookup(device_serial)
            .await?
            .map(|record| self.project(record)))
    }
}
