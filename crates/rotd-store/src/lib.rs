//! rotd-store owns everything rotd keeps: secrets and their metadata, encrypted versions, stage labels,
//! the append-only rotation journal and API access keys. It is the only crate that sees CMK material or
//! plaintext at rest: values enter as [`Secret`]s, are sealed with a per-version data key
//! ([`envelope`]), and leave only through explicit reads.
//!
//! The embedded engine is SQLite (WAL, `synchronous=FULL`, write transactions taken with
//! `BEGIN IMMEDIATE` and group-committed: the transactions that queue while one commits share the next
//! commit's sync, and each returns only once it is durable, `writer.rs`). The public surface is the [`Store`] handle; the SQL behind it is plain runtime
//! `query()` text so that a PostgreSQL engine can be added behind the same handle.

mod control;
mod envelope;
mod error;
mod journal;
mod keyring;
mod model;
mod sqlite;
mod stages;
mod writer;

pub use control::{Heartbeat, KeyringReload, RotationRequest, RotationState};
pub use error::StoreError;
pub use journal::{Failure, Planned, RequestKind, RequestOutcome, RetirePlan, Step, StepKind};
pub use keyring::{CmkInfo, DEFAULT_CMK, Keyring};
pub use model::{
    AccessKeyInfo, DeleteMode, Expect, JournalEntry, JournalRecord, NewSecret, NewVersion, PutOutcome,
    SecretMeta, SecretUpdate, Selector, StageMove, VersionInfo, VersionValue,
};
pub use sqlite::{CmkUsage, Store};

pub use rotd_core::Secret;
