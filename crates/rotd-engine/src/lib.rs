//! rotd-engine owns rotation: the journaled state machine that takes a secret from a new `ACSPending`
//! value to a verified, promoted `ACSCurrent` (and retires the old credential when its backend needs
//! it), the failure policy around each attempt, the scheduler that decides when attempts run, and the
//! metrics that show all of it. It knows no HTTP, no configuration files and no concrete backend:
//! secrets come in as [`Managed`] values holding a `dyn Backend`.

pub mod decorators;
pub mod metrics;
pub mod policy;
pub mod rotation;
pub mod scheduler;

pub use decorators::Generator;
pub use metrics::Metrics;
pub use policy::{AttemptResult, FailurePolicy, attempt};
pub use rotation::{
    Grace, Managed, OpenRotation, Outcome, RotationError, StepLimits, abandon, current_account, current_slot,
    needs_first_value, open_rotation, rotate,
};
pub use scheduler::{Decision, Engine, EngineConfig, Hook, SecretEntry, View, decide};
