//! The backend trait: what rotd needs from anything whose credentials it rotates.
//!
//! A backend knows one kind of target (a MySQL server, a Redis node, an SSH host, a cloud RAM user, a
//! user command) and nothing of the store, the journal or the schedule: the engine drives it through
//! the journaled protocol of DESIGN.md §3 and decides when each method runs. Every method must be
//! idempotent, because after a crash the engine repeats the step it had not yet journaled as done.
//! Capabilities are data ([`Capabilities`]), never an "unsupported" error found at run time.
//!
//! # The contract, beyond idempotence
//!
//! - **Where a credential comes from** ([`CredentialSource`]): the engine generates a password and the
//!   backend composes the value (`Generated`), or the backend mints it at the target (`Minted`: a cloud
//!   AccessKey). For minted credentials the engine journals the intent before `mint`, passes the rotation
//!   id, and — when a crash may have left a credential minted but not stored — calls `reconcile` with every
//!   credential the store knows first, so the backend removes (or adopts) what the store does not know: an
//!   orphan is never leaked (a RAM user holds at most two AccessKeys).
//! - **Several nodes** (a Redis primary and its replicas, several SSH hosts behind one secret): `apply` and
//!   `verify` cover *every* node of the target and succeed only when all of them accept the credential.
//!   Partial progress is the backend's to resume: a repeated `apply` after a failure on node 3 of 5 must
//!   skip (or harmlessly redo) nodes 1–2.
//! - **Retirement**: a backend with `retire_steps > 0` revokes an old credential in that many steps (RAM:
//!   deactivate, then delete; SSH: remove the old key), each after its grace period, each journaled by the
//!   engine and repeated after a crash, so each step must be idempotent.
//! - **Overlap**: with `overlap`, old and new credential both work after `apply`, so even a single account
//!   never has a moment without a working `ACSCurrent`; the engine then quarantines a failing rotation
//!   as usual instead of retrying it until it finishes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::Secret;

/// A boxed future, so backends can be used as trait objects and wrapped by decorators.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Static facts about a backend that the engine plans with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Two accounts (`user`, `user_clone`) alternate: each rotation resets the one holding
    /// `ACSPrevious`, so the credential applications hold stays valid for a whole interval.
    pub dual_accounts: bool,
    /// Old and new credential are valid at the same time after `apply` (Redis multi-password, a second
    /// AccessKey, a second authorized key); the old one goes away only in `retire`.
    pub overlap: bool,
    /// Where a new credential comes from.
    pub source: CredentialSource,
    /// How many `retire` steps revoke an old credential after promotion (0: nothing to revoke).
    pub retire_steps: u8,
    /// The backend can create its accounts from scratch (`create_accounts`).
    pub creates_accounts: bool,
}

impl Capabilities {
    /// The backend, not the engine, produces new credentials.
    pub fn mints(&self) -> bool {
        self.source == CredentialSource::Minted
    }

    /// Old credentials must be revoked after promotion.
    pub fn retires(&self) -> bool {
        self.retire_steps > 0
    }
}

/// Where a new credential comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// The engine generates a password; the backend composes the value (`compose`).
    #[default]
    Generated,
    /// The backend creates the credential at the target and returns it (`mint`).
    Minted,
}

/// What `reconcile` found at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reconciled {
    /// Credentials that existed at the target, unknown to the store, and were removed.
    pub removed: u32,
}

/// Which of a resource's accounts a step concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The only account of a single-account resource.
    Single,
    /// `user` of a dual-account resource.
    Primary,
    /// `user_clone` of a dual-account resource.
    Clone,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Single => "single",
            Slot::Primary => "primary",
            Slot::Clone => "clone",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "single" => Some(Slot::Single),
            "primary" => Some(Slot::Primary),
            "clone" => Some(Slot::Clone),
            _ => None,
        }
    }

    /// The other account of a dual pair.
    pub fn other(self) -> Slot {
        match self {
            Slot::Single => Slot::Single,
            Slot::Primary => Slot::Clone,
            Slot::Clone => Slot::Primary,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A timeout, a refused connection, a server restarting: retry with backoff.
    Retryable,
    /// Bad admin credentials, missing privileges, an invalid target: retrying the same way will fail.
    Permanent,
}

/// A backend failure. The message must never contain secret material; backends build it from
/// their own context (operation, host, account) and the server's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend} {operation}: {message}")]
pub struct BackendError {
    pub backend: String,
    pub operation: &'static str,
    pub class: ErrorClass,
    pub message: String,
    /// The node of a several-node target that failed (`host:port`), so status and metrics can say which
    /// node holds a rotation back. Already part of `message`.
    pub node: Option<String>,
    /// The target failed to prove it is the one configured (an SSH host key other than the pinned one):
    /// nothing was sent to it. The engine exports it as `rotd_target_identity_mismatch`.
    pub identity_mismatch: bool,
}

impl BackendError {
    pub fn retryable(
        backend: impl Into<String>,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            backend: backend.into(),
            operation,
            class: ErrorClass::Retryable,
            message: message.into(),
            node: None,
            identity_mismatch: false,
        }
    }

    pub fn permanent(
        backend: impl Into<String>,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            backend: backend.into(),
            operation,
            class: ErrorClass::Permanent,
            message: message.into(),
            node: None,
            identity_mismatch: false,
        }
    }

    /// Names the node of a several-node target this failure happened on.
    pub fn on_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Marks a failure as the target's identity not matching the pin.
    pub fn identity_mismatch(mut self) -> Self {
        self.identity_mismatch = true;
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// What rotd needs from a rotation target. See the module docs for the contract.
pub trait Backend: Send + Sync {
    /// A short, bounded label for logs and metrics ("exec", "mysql", "redis"…).
    fn kind(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// The resource this backend talks to ("mysql 10.0.0.5:3306"), when it has one: the engine lets
    /// only a few calls at a time into one target, so a hung host cannot take every concurrency slot
    /// of its backend kind from the healthy ones. `None`: no per-target limit.
    fn target(&self) -> Option<String> {
        None
    }

    /// Checks the admin connection and privileges without changing anything.
    fn check(&self) -> BoxFuture<'_, BackendResult<()>>;

    /// Observations for `rotd plan`, without changing anything: how each node keeps a change, which nodes
    /// were discovered, a node whose accounts differ from the others'. Each line is shown as is; none
    /// may hold secret material. Called after a successful `check`.
    fn inspect(&self) -> BoxFuture<'_, BackendResult<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Builds the secret value for `slot` from a freshly generated password, in the vendor's format
    /// (`{"AccountName","AccountPassword"}` for databases). Pure: it must not touch the target.
    fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret>;

    /// [`compose`](Self::compose) for the version id the value will be stored under, which the engine
    /// knows when it composes; a backend that labels what it puts at the target (an SSH key's comment
    /// names the secret and version) overrides this. Pure, like `compose`.
    fn compose_version(&self, slot: Slot, password: &Secret, _version_id: &str) -> BackendResult<Secret> {
        self.compose(slot, password)
    }

    /// For backends that mint credentials: creates the new credential at the target and returns its
    /// value. The engine journals the intent (with `rotation_id`) first and stores the result as
    /// `ACSPending` at once; a backend may tag the credential with the rotation id where the target allows.
    fn mint<'a>(&'a self, _rotation_id: &'a str, _slot: Slot) -> BoxFuture<'a, BackendResult<Secret>> {
        Box::pin(async move {
            Err(BackendError::permanent(
                self.kind(),
                "mint",
                "this backend does not mint credentials",
            ))
        })
    }

    /// Which account a stored value of this secret belongs to, read from the value itself (a database
    /// value's `AccountName`). `None` when the value names no account of this backend; single-account
    /// backends may always answer `None`. The engine derives the dual slot that holds `ACSCurrent` from
    /// this, so an operator's rollback or put can never make a rotation reset the live account. Pure.
    fn slot_of(&self, _value: &Secret) -> Option<Slot> {
        None
    }

    /// Makes the target accept `new` for `slot`. Must succeed, doing nothing, if it already does.
    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>>;

    /// Logs in with `secret` exactly as a client would. `Err` means the credential does not work.
    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>>;

    /// For backends that mint credentials, before minting after a crash: lists the credentials that
    /// exist at the target for `slot` and removes those not in `known` (every value the store holds), so
    /// a credential minted but never stored is not leaked. Must never remove a known credential.
    fn reconcile<'a>(
        &'a self,
        _slot: Slot,
        _known: &'a [Secret],
    ) -> BoxFuture<'a, BackendResult<Reconciled>> {
        Box::pin(async { Ok(Reconciled::default()) })
    }

    /// Step `step` (1-based, up to `retire_steps`) of revoking an old credential, after its grace
    /// period. Idempotent: a step already done, or a credential already gone, succeeds.
    fn retire<'a>(&'a self, _slot: Slot, _old: &'a Secret, _step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Creates the resource's accounts (backends with `creates_accounts`); returns one value per slot.
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(async move {
            Err(BackendError::permanent(
                self.kind(),
                "create accounts",
                "this backend does not create accounts",
            ))
        })
    }
}
