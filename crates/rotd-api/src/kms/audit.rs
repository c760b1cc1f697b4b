//! The audit log: one JSON line per KMS API request, appended and fsync'd before the response leaves.
//! A record says who (access key, source address), what (action, the secret or secrets it operated on,
//! version), the outcome (vendor code) and the request id; it never holds a value. Secret names are the
//! resolved names the action used, never a raw parameter. If a record cannot be written the request is refused
//! with `InternalFailure`: an unaudited read of a secret must not happen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub access_key_id: Option<&'a str>,
    /// The client address: the TCP peer (`ip:port`), or the address a trusted proxy forwarded for.
    pub source: String,
    /// The trusted proxy a forwarded request came through; absent for direct requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub action: Option<&'a str>,
    /// The secret the action operated on, resolved (an ARN is recorded as the name it names); `None`
    /// when it operates on none, or on a list (then see `secret_names`).
    pub secret_name: Option<&'a str>,
    /// Every secret a BatchGetSecretValue reads, in request order; the field is absent for other
    /// actions, so their lines keep the earlier shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_names: Option<&'a [String]>,
    pub version_id: Option<&'a str>,
    /// `Success` or the vendor error code.
    pub result: &'a str,
}

/// An append-only, fsync-per-record audit file. Writers are serialized by the mutex so lines never
/// interleave.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl AuditLog {
    /// Opens (creating 0600 if needed) the audit file for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&self, record: &AuditRecord<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        f.write_all(&line)?;
        f.sync_data()
    }
}
