//! The master-key (CMK) keyring: named keys, each with numbered versions of 256-bit material.
//!
//! The keyring is serialized as JSON. This module parses and produces the bytes; the binary decides where
//! they live (a 0600 file or `$CREDENTIALS_DIRECTORY`) and enforces file permissions. New data keys are
//! always wrapped by a key's newest version; older versions stay to unwrap what they wrapped until
//! `rotd key rewrap` moves everything forward.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::StoreError;

const FORMAT: &str = "rotd-keyring-v1";
/// The CMK used when a secret names none.
pub const DEFAULT_CMK: &str = "default";

/// One version of a CMK. The material never leaves this crate.
pub(crate) struct CmkVersion {
    pub(crate) version: u32,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) material: Zeroizing<[u8; 32]>,
}

/// All CMKs rotd can use, by id, with their versions in ascending order.
pub struct Keyring {
    keys: BTreeMap<String, Vec<CmkVersion>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary: BTreeMap<&str, Vec<u32>> = self
            .keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(|c| c.version).collect()))
            .collect();
        f.debug_struct("Keyring").field("keys", &summary).finish()
    }
}

/// What `rotd key list` shows about one CMK version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CmkInfo {
    pub id: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub newest: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: String,
    version: u32,
    created_at: DateTime<Utc>,
    /// Base64 of the 32-byte key material.
    material: String,
}

fn fresh_material() -> Zeroizing<[u8; 32]> {
    let mut m = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(m.as_mut()).expect("the system random number generator failed");
    m
}

fn keyring_err(reason: impl Into<String>) -> StoreError {
    StoreError::Keyring(reason.into())
}

impl Keyring {
    /// A new keyring holding one fresh key, `default`, at version 1.
    pub fn generate(now: DateTime<Utc>) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(
            DEFAULT_CMK.to_owned(),
            vec![CmkVersion {
                version: 1,
                created_at: now,
                material: fresh_material(),
            }],
        );
        Self { keys }
    }

    /// Parses keyring bytes. Errors describe the problem without echoing any material.
    pub fn parse(bytes: &[u8]) -> Result<Self, StoreError> {
        let file: FileFormat = serde_json::from_slice(bytes).map_err(|e| {
            keyring_err(format!(
                "not a valid keyring file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if file.format != FORMAT {
            return Err(keyring_err(format!(
                "unknown keyring format {:?}; expected {FORMAT}",
                file.format
            )));
        }
        let mut keys: BTreeMap<String, Vec<CmkVersion>> = BTreeMap::new();
        for k in file.keys {
            let raw = Zeroizing::new(B64.decode(k.material.as_bytes()).map_err(|_| {
                keyring_err(format!(
                    "key {} version {}: material is not base64",
                    k.id, k.version
                ))
            })?);
            let material: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
                keyring_err(format!(
                    "key {} version {}: material must be 32 bytes, found {}",
                    k.id,
                    k.version,
                    raw.len()
                ))
            })?;
            let versions = keys.entry(k.id.clone()).or_default();
            if versions.iter().any(|v| v.version == k.version) {
                return Err(keyring_err(format!(
                    "key {} version {} appears twice",
                    k.id, k.version
                )));
            }
            versions.push(CmkVersion {
                version: k.version,
                created_at: k.created_at,
                material: Zeroizing::new(material),
            });
        }
        if keys.is_empty() {
            return Err(keyring_err("the keyring holds no keys"));
        }
        for versions in keys.values_mut() {
            versions.sort_by_key(|v| v.version);
        }
        Ok(Self { keys })
    }

    /// Serializes the keyring. The returned text holds key material: write it only to a 0600 file.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys = self
            .keys
            .iter()
            .flat_map(|(id, versions)| {
                versions.iter().map(move |v| FileKey {
                    id: id.clone(),
                    version: v.version,
                    created_at: v.created_at,
                    material: B64.encode(v.material.as_ref()),
                })
            })
            .collect();
        let mut file = FileFormat {
            format: FORMAT.to_owned(),
            keys,
        };
        let out = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("keyring serializes"));
        for k in &mut file.keys {
            zeroize::Zeroize::zeroize(&mut k.material);
        }
        out
    }

    /// Adds a new version to `id` (creating the key if it does not exist) and returns its number.
    pub fn rotate(&mut self, id: &str, now: DateTime<Utc>) -> u32 {
        let versions = self.keys.entry(id.to_owned()).or_default();
        let version = versions.last().map_or(1, |v| v.version + 1);
        versions.push(CmkVersion {
            version,
            created_at: now,
            material: fresh_material(),
        });
        version
    }

    /// The newest version of each CMK (ids and numbers only, no material).
    pub fn newest_versions(&self) -> std::collections::BTreeMap<String, u32> {
        self.keys
            .iter()
            .filter_map(|(id, versions)| versions.last().map(|v| (id.clone(), v.version)))
            .collect()
    }

    /// Whether this keyring holds the given version of a CMK.
    pub fn has_version(&self, id: &str, version: u32) -> bool {
        self.version(id, version).is_ok()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    pub fn list(&self) -> Vec<CmkInfo> {
        self.keys
            .iter()
            .flat_map(|(id, versions)| {
                let newest = versions.last().map(|v| v.version);
                versions.iter().map(move |v| CmkInfo {
                    id: id.clone(),
                    version: v.version,
                    created_at: v.created_at,
                    newest: Some(v.version) == newest,
                })
            })
            .collect()
    }

    pub(crate) fn newest(&self, id: &str) -> Result<&CmkVersion, StoreError> {
        self.keys
            .get(id)
            .and_then(|v| v.last())
            .ok_or_else(|| StoreError::KeyNotFound {
                cmk_id: id.to_owned(),
                version: None,
            })
    }

    pub(crate) fn version(&self, id: &str, version: u32) -> Result<&CmkVersion, StoreError> {
        self.keys
            .get(id)
            .and_then(|vs| vs.iter().find(|v| v.version == version))
            .ok_or_else(|| StoreError::KeyNotFound {
                cmk_id: id.to_owned(),
                version: Some(version),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rotates() {
        let now = rotd_core::Clock::system().now();
        let mut k = Keyring::generate(now);
        assert_eq!(k.rotate(DEFAULT_CMK, now), 2);
        assert_eq!(k.rotate("other", now), 1);
        let bytes = k.to_bytes();
        let back = Keyring::parse(&bytes).unwrap();
        assert_eq!(back.list(), k.list());
        assert_eq!(back.newest(DEFAULT_CMK).unwrap().version, 2);
        assert_eq!(
            back.version(DEFAULT_CMK, 1).unwrap().material.as_ref(),
            k.version(DEFAULT_CMK, 1).unwrap().material.as_ref()
        );
    }

    #[test]
    fn debug_shows_no_material() {
        let k = Keyring::generate(rotd_core::Clock::system().now());
        let material = B64.encode(k.newest(DEFAULT_CMK).unwrap().material.as_ref());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&material));
        assert!(dbg.contains("default"));
    }

    #[test]
    fn rejects_malformed_files() {
        for (bad, want) in [
            (&b"{"[..], "not a valid keyring file"),
            (br#"{"format":"x","keys":[]}"#, "unknown keyring format"),
            (br#"{"format":"rotd-keyring-v1","keys":[]}"#, "holds no keys"),
            (br#"{"format":"rotd-keyring-v1","keys":[{"id":"a","version":1,"created_at":"2026-01-01T00:00:00Z","material":"AAAA"}]}"#, "must be 32 bytes"),
            (br#"{"format":"rotd-keyring-v1","keys":[{"id":"a","version":1,"created_at":"2026-01-01T00:00:00Z","material":"!!"}]}"#, "not base64"),
        ] {
            let e = Keyring::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
