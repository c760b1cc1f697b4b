//! The validation error of rotd-core's vocabulary: what input was rejected and why, never the input.

use thiserror::Error;

/// Why a piece of user input was rejected. Messages are lowercase, have no trailing period and never
/// contain secret material: a rejected value is described by its length, never echoed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what}: {reason}")]
pub struct ValidationError {
    /// The kind of thing that was invalid, e.g. "secret name".
    pub what: &'static str,
    /// What is wrong with it, phrased so an operator knows how to fix it.
    pub reason: String,
}

impl ValidationError {
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}
