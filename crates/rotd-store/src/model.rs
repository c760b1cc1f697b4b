//! The store's data types: what goes in and what comes out.

use chrono::{DateTime, Utc};
use rotd_core::{DataType, RotationPolicy, Secret, SecretName, SecretType, StageLabel, Tags, VersionId};
use serde::Serialize;

/// A secret to create.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub name: SecretName,
    pub kind: SecretType,
    pub description: String,
    pub tags: Tags,
    /// The CMK that wraps this secret's data keys.
    pub cmk_id: String,
    /// The vendor's ExtendedConfig as JSON text (managed types).
    pub extended_config: Option<String>,
    pub rotation: Option<RotationPolicy>,
    /// The resource policy document; `None` is the default policy.
    pub policy: Option<String>,
    /// The TOML file that declares this secret, if any.
    pub managed_by: Option<String>,
}

/// A value to store as a new version.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub version_id: VersionId,
    pub data_type: DataType,
    pub value: Secret,
}

/// Changes to a secret's metadata; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SecretUpdate {
    pub description: Option<String>,
    pub tags: Option<Tags>,
    pub extended_config: Option<Option<String>>,
    pub rotation: Option<Option<RotationPolicy>>,
    pub policy: Option<Option<String>>,
    pub managed_by: Option<Option<String>>,
    pub next_rotation_at: Option<Option<DateTime<Utc>>>,
    pub last_rotation_at: Option<Option<DateTime<Utc>>>,
}

/// A secret's metadata, without any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: SecretName,
    pub kind: SecretType,
    pub description: String,
    pub tags: Tags,
    pub cmk_id: String,
    pub extended_config: Option<String>,
    pub rotation: Option<RotationPolicy>,
    pub policy: Option<String>,
    pub managed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub planned_delete_at: Option<DateTime<Utc>>,
    pub last_rotation_at: Option<DateTime<Utc>>,
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// One version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version_id: VersionId,
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_display")]
    pub data_type: DataType,
    pub stages: Vec<StageLabel>,
}

fn ser_display<S: serde::Serializer>(v: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// A decrypted version.
#[derive(Debug, Clone)]
pub struct VersionValue {
    pub info: VersionInfo,
    pub value: Secret,
}

/// Which version to read.
#[derive(Debug, Clone)]
pub enum Selector {
    Stage(StageLabel),
    Version(VersionId),
    /// Both given: they must name the same version.
    Both(VersionId, StageLabel),
}

impl Selector {
    pub fn current() -> Self {
        Selector::Stage(StageLabel::current())
    }
}

/// What `put_value` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub version_id: VersionId,
    /// The version's stages after the call.
    pub stages: Vec<StageLabel>,
    /// False when the version already existed with the same value (an idempotent repeat).
    pub created: bool,
}

/// What a stage must point at for a move to go ahead (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any,
    Absent,
    At(VersionId),
}

/// Move a stage label to a version, or remove it (`to: None`), if it currently matches `expect`.
#[derive(Debug, Clone)]
pub struct StageMove {
    pub stage: StageLabel,
    pub expect: Expect,
    pub to: Option<VersionId>,
}

/// How to delete a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// Schedule deletion after 7–30 days; the secret can be restored until then.
    Recovery { days: u32 },
    /// Delete now, with every version.
    Force,
}

/// A journal entry to append.
#[derive(Debug, Clone)]
pub struct JournalRecord {
    pub secret_name: SecretName,
    pub rotation_id: String,
    pub step: crate::Step,
    pub version_id: Option<VersionId>,
}

/// A stored journal entry, decoded (see [`crate::Step`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub id: i64,
    pub secret_name: String,
    pub rotation_id: String,
    pub step: crate::Step,
    pub version_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl JournalEntry {
    pub fn kind(&self) -> crate::StepKind {
        self.step.kind()
    }
}

/// JSON output (`rotd -o json rotation history`): the stored form, with the step's name and detail.
impl Serialize for JournalEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("JournalEntry", 7)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("secret_name", &self.secret_name)?;
        s.serialize_field("rotation_id", &self.rotation_id)?;
        s.serialize_field("step", self.step.kind().as_str())?;
        s.serialize_field("version_id", &self.version_id)?;
        s.serialize_field("at", &self.at)?;
        s.serialize_field("detail", &self.step.detail())?;
        s.end()
    }
}

/// An API access key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKeyInfo {
    pub id: String,
    pub description: String,
    pub policy: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}
