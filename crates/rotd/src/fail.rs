//! Exit statuses. Invalid configuration exits 64 (EX_USAGE), rejected input 65 (EX_DATAERR), a missing
//! secret 66 (EX_NOINPUT); everything else 1.

use rotd_store::StoreError;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;

/// An error with a chosen exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Fail {
            code: EX_USAGE,
            message: message.into(),
        }
        .into()
    }

    pub fn data(message: impl Into<String>) -> anyhow::Error {
        Fail {
            code: EX_DATAERR,
            message: message.into(),
        }
        .into()
    }
}

/// Maps a store error to an exit status, keeping its message.
pub fn store(e: StoreError) -> anyhow::Error {
    let code = match &e {
        StoreError::SecretNotFound { .. }
        | StoreError::VersionNotFound { .. }
        | StoreError::StageNotFound { .. } => EX_NOINPUT,
        StoreError::AlreadyExists { .. }
        | StoreError::PendingDeletion { .. }
        | StoreError::NotPendingDeletion { .. }
        | StoreError::VersionConflict { .. }
        | StoreError::StageConflict { .. }
        | StoreError::Invalid(_)
        | StoreError::LimitExceeded(_)
        | StoreError::KeyNotFound { .. } => EX_DATAERR,
        StoreError::Decrypt { .. }
        | StoreError::Keyring(_)
        | StoreError::Corrupt(_)
        | StoreError::Database(_)
        | StoreError::Migrate(_) => 1,
    };
    Fail {
        code,
        message: e.to_string(),
    }
    .into()
}
