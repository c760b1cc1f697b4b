//! rotd-engine owns rotation: the journaled state machine that takes a secret from a new `ACSPending`
//! value to a verified, promoted `ACSCurrent` (and retires the old credential when its backend needs
//! it), the failure policy around each attempt, and the scheduler that decides when attempts run.
//! It knows no HTTP, no configuration files and no concrete backend: secrets come in as [`Managed`]
//! values holding a `dyn Backend`.

pub mod policy;
pub mod rotation;

pub use policy::{AttemptResult, FailurePolicy, attempt};
pub use rotation::{Managed, OpenRotation, Outcome, RotationError, StepLimits, current_slot, open_rotation, rotate};
