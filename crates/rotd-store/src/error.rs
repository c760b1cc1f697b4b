//! [`StoreError`]: everything the store can refuse or fail at, classified retryable or not.

use rotd_core::ValidationError;
use thiserror::Error;

/// Everything the store can refuse or fail at. No variant carries secret material: values are never
/// formatted into errors, and database errors are those of statements that bind secrets, never inline them.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("secret {name} not found")]
    SecretNotFound { name: String },
    #[error("secret {name} has no version {version}")]
    VersionNotFound { name: String, version: String },
    #[error("secret {name} has no version labelled {stage}")]
    StageNotFound { name: String, stage: String },
    #[error("secret {name} already exists")]
    AlreadyExists { name: String },
    #[error("secret {name} is scheduled for deletion; restore it before changing it")]
    PendingDeletion { name: String },
    #[error("secret {name} is not scheduled for deletion")]
    NotPendingDeletion { name: String },
    #[error("secret {name} already has a version {version} with a different value")]
    VersionConflict { name: String, version: String },
    #[error("stage {stage} of secret {name} changed concurrently (expected {expected}, found {actual})")]
    StageConflict {
        name: String,
        stage: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("cannot decrypt {what}: {reason}")]
    Decrypt { what: String, reason: String },
    #[error("{}", key_not_found(.cmk_id, .version))]
    KeyNotFound { cmk_id: String, version: Option<u32> },
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn key_not_found(id: &str, version: &Option<u32>) -> String {
    match version {
        Some(v) => format!("CMK {id} version {v} is not in the keyring"),
        None => format!("CMK {id} is not in the keyring"),
    }
}

impl StoreError {
    /// Whether trying the same operation again later may succeed (a busy or unreachable database).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::Io(_)
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || e.as_database_error().is_some_and(|d| {
                    // SQLITE_BUSY (5) and SQLITE_LOCKED (6): another writer holds the lock.
                    matches!(d.code().as_deref(), Some("5") | Some("6") | Some("517"))
                })
            }
            StoreError::StageConflict { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn secret_not_found(name: &str) -> Self {
        StoreError::SecretNotFound {
            name: name.to_owned(),
        }
    }
}
