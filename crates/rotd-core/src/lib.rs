//! rotd-core owns rotd's domain vocabulary: secret names, version ids, stage labels, tags, secret types,
//! rotation policies and the [`Secret`] value type, each with the vendor's validation rules. It does no IO:
//! no files, no network, and no clock reads outside [`Clock`], the one time source of the workspace. Every other crate speaks
//! these types, so a value that exists here has already been validated.

mod backend;
mod clock;
mod error;
mod host;
mod net;
mod password;
mod rotation;
mod schedule;
mod secret;
mod vocab;

pub use backend::{
    Backend, BackendError, BackendResult, BoxFuture, Capabilities, CredentialSource, ErrorClass, Reconciled,
    Slot,
};
pub use clock::Clock;
pub use error::ValidationError;
pub use host::{authorized_keys_path, is_login_name};
pub use net::{IpNet, IpNetError, canonical_ip};
pub use password::{PasswordPolicy, generate_password};
pub use rotation::{RotationInterval, RotationPolicy, RotationSchedule};
pub use schedule::{
    CompiledSchedule, compile, jitter, next_start, recorded_rotation_time, spread_overdue, start_at,
};
pub use secret::Secret;
pub use vocab::{
    DataType, MAX_NAME_CHARS, MAX_STAGES_PER_SECRET, MAX_TAGS, MAX_VALUE_BYTES, MAX_VERSIONS_PER_SECRET,
    SecretName, SecretType, StageLabel, Tag, Tags, VersionId, ram_secret_name,
};
