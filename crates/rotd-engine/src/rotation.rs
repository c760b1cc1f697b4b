//! One rotation, as the journaled state machine of DESIGN.md §3.
//!
//! ```text
//!   pending ──► applied ──► verified ──► promoted ──► (retired, after the grace period)
//!      └──────────┴───────────┴──► abandoned (ACSCurrent moved meanwhile, or an operator ended it)
//! ```
//!
//! Which account a dual rotation resets comes from the *value* that holds `ACSCurrent` (the backend
//! names its account, [`rotd_core::Backend::slot_of`]), never from history alone, so an operator's
//! rollback or put cannot make a rotation reset the live account. The `pending` entry records the
//! `ACSCurrent` version the rotation started from; the target is touched only while `ACSCurrent` is still
//! there, and promotion is a compare-and-set against exactly it. When someone else moved `ACSCurrent`
//! meanwhile, the rotation is abandoned (journaled; its value stays as an unlabelled version) and planned
//! afresh from the new `ACSCurrent`, so nothing another writer stored is silently overwritten.
//!
//! Each step is written to the store's append-only journal after it completes and before the next one
//! starts, so after a crash [`rotate`] finds the open rotation and rolls it forward with the *same*
//! pending value. The new value is stored as `ACSPending` before the target is touched; `ACSCurrent`
//! moves only after verification, in one compare-and-set transaction with `ACSPrevious` and the removal
//! of `ACSPending`. A failure journals a `failed` entry and leaves the rotation open for the next attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotd_core::{
    Backend, BackendError, DataType, ErrorClass, PasswordPolicy, SecretName, SecretType, Slot, StageLabel,
    VersionId,
};
use rotd_store::{
    Expect, JournalEntry, JournalRecord, NewVersion, Planned as PlannedStep, RetirePlan, Selector, StageMove,
    Step, StepKind, Store, StoreError,
};
use tracing::{Instrument, info, warn};

/// The journal's step names as stored ([`StepKind::as_str`]), for errors and tests. The journal itself is
/// typed: [`rotd_store::Step`].
pub mod step {
    pub const MINTING: &str = "minting";
    pub const PENDING: &str = "pending";
    pub const APPLIED: &str = "applied";
    pub const VERIFIED: &str = "verified";
    pub const PROMOTED: &str = "promoted";
    pub const RETIRED: &str = "retired";
    pub const ABANDONED: &str = "abandoned";
    /// The store's marker for a new incarnation of a secret name (written by `create_secret`).
    pub const CREATED: &str = "created";
    pub const FAILED: &str = "failed";
    pub const QUARANTINED: &str = "quarantined";
}

/// A secret the engine rotates, with its backend.
#[derive(Clone)]
pub struct Managed {
    pub name: SecretName,
    pub kind: SecretType,
    pub backend: Arc<dyn Backend>,
    /// How new passwords are generated (ignored by backends that mint credentials).
    pub password: PasswordPolicy,
    /// When an old credential is revoked (backends that retire).
    pub grace: Grace,
}

/// When the steps of revoking an old credential fall due: step 1 `first` after the promotion, each
/// further step `between_steps` after the one before it (RAM: deactivate after the secret's `grace`,
/// delete `ram.delete_after` later).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grace {
    pub first: Duration,
    pub between_steps: Duration,
}

impl Grace {
    /// No wait at all: every step as soon as the one before it is done.
    pub const NONE: Grace = Grace {
        first: Duration::ZERO,
        between_steps: Duration::ZERO,
    };
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

/// Limits for one attempt.
#[derive(Debug, Clone)]
pub struct StepLimits {
    /// A backend call that takes longer is abandoned as a retryable failure.
    pub step_timeout: Duration,
    /// Test hook for crash tests: after reaching this boundary the rotation stops and waits forever,
    /// so a test can kill the process exactly there. Boundaries: `pending`, `stored`, `applied`,
    /// `verified`, `promoted-store`, `promoted`. Never set in production.
    pub failpoint: Option<String>,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(60),
            failpoint: None,
        }
    }
}

/// Parks the rotation forever at a named boundary when the failpoint is set (crash tests only).
async fn failpoint(limits: &StepLimits, boundary: &str) {
    if limits.failpoint.as_deref() == Some(boundary) {
        warn!(boundary, "Failpoint reached; parking this rotation.");
        std::future::pending::<()>().await;
    }
}

/// Why an attempt failed, with the step it failed in. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{step}: {source}")]
    Backend {
        step: &'static str,
        source: BackendError,
    },
    #[error("{step}: {source}")]
    Store { step: &'static str, source: StoreError },
    #[error("{step}: {message}")]
    Invalid { step: &'static str, message: String },
}

impl RotationError {
    /// The node of a several-node target the failure happened on, if the backend named one.
    pub fn node(&self) -> Option<&str> {
        match self {
            RotationError::Backend { source, .. } => source.node.as_deref(),
            _ => None,
        }
    }

    /// Whether the target failed to prove its identity (a host key other than the pinned one).
    pub fn identity_mismatch(&self) -> bool {
        matches!(self, RotationError::Backend { source, .. } if source.identity_mismatch)
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            RotationError::Backend { source, .. } => source.class,
            RotationError::Store { source, .. } if source.is_retryable() => ErrorClass::Retryable,
            RotationError::Store { .. } | RotationError::Invalid { .. } => ErrorClass::Permanent,
        }
    }

    pub fn step(&self) -> &'static str {
        match self {
            RotationError::Backend { step, .. }
            | RotationError::Store { step, .. }
            | RotationError::Invalid { step, .. } => step,
        }
    }
}

/// What a completed rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub rotation_id: String,
    pub version_id: VersionId,
    pub slot: Slot,
    /// True when this call resumed a rotation an earlier process had started.
    pub resumed: bool,
    /// True when the requested version already existed, so nothing was rotated (RotateSecret idempotency).
    pub already_done: bool,
}

/// An open (unfinished) rotation reconstructed from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRotation {
    pub rotation_id: String,
    pub version_id: VersionId,
    pub slot: Slot,
    /// The last step that completed.
    pub step: StepKind,
    /// What `ACSCurrent` pointed at when the rotation was planned (recorded in `pending`): promotion
    /// expects exactly this. `None` only for rotations journaled by an older rotd, which did not record it.
    pub started_from: Option<Expect>,
}

/// A promoted rotation whose old credential still has to be retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRetire {
    pub rotation_id: String,
    pub old_version: VersionId,
    pub old_slot: Slot,
    /// The retire step to run next (1-based).
    pub step: u8,
    pub due: DateTime<Utc>,
}

fn store_err(step: &'static str) -> impl Fn(StoreError) -> RotationError {
    move |source| RotationError::Store { step, source }
}

/// The open rotation in a journal, if the newest rotation has not been promoted.
pub fn open_rotation(journal: &[JournalEntry]) -> Option<OpenRotation> {
    let last = journal.iter().rev().find(|e| e.kind().is_progress())?;
    if matches!(
        last.kind(),
        StepKind::Promoted | StepKind::Retired | StepKind::Abandoned | StepKind::Created
    ) {
        return None;
    }
    let rotation_id = last.rotation_id.clone();
    // The pending (or minting) entry of this rotation carries its version, slot and starting point.
    let (pending, planned) = journal.iter().find_map(|e| match &e.step {
        Step::Pending(p) | Step::Minting(p) if e.rotation_id == rotation_id => Some((e, p)),
        _ => None,
    })?;
    Some(OpenRotation {
        rotation_id,
        version_id: VersionId::parse(pending.version_id.clone()?).ok()?,
        slot: planned.slot,
        step: last.kind(),
        started_from: planned.started_from.as_ref().map(|c| expect_of(c.as_ref())),
    })
}

/// The next retire step owed by the newest promoted rotation, if its old credential is not yet fully
/// revoked: step 1 is due at the time the promotion recorded (promotion + `grace.first`), each further
/// one `grace.between_steps` after the step before it. `steps` is the backend's `retire_steps`.
pub fn pending_retire(journal: &[JournalEntry], steps: u8, grace: Grace) -> Option<PendingRetire> {
    let (promoted, plan) = journal.iter().rev().find_map(|e| match &e.step {
        Step::Promoted { retire, .. } => Some((e, retire.as_ref())),
        _ => None,
    })?;
    let plan = plan?;
    let last_done = journal
        .iter()
        .filter(|e| e.rotation_id == promoted.rotation_id)
        .filter_map(|e| match e.step {
            Step::Retired { step, .. } => Some((step, e.at)),
            _ => None,
        })
        .max_by_key(|(step, _)| *step);
    let done = last_done.map_or(0, |(step, _)| step);
    if done >= steps.max(1) {
        return None;
    }
    let due = match last_done {
        None => DateTime::from_timestamp(plan.at, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
        Some((_, at)) => at
            .checked_add_signed(
                chrono::Duration::from_std(grace.between_steps).unwrap_or(chrono::Duration::MAX),
            )
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    };
    Some(PendingRetire {
        rotation_id: promoted.rotation_id.clone(),
        old_version: plan.version.clone(),
        old_slot: plan.slot,
        step: done + 1,
        due,
    })
}

fn expect_of(current: Option<&VersionId>) -> Expect {
    current.cloned().map_or(Expect::Absent, Expect::At)
}

/// The `ACSCurrent` a rotation starts from, as the journal records it.
fn recorded(e: &Expect) -> Option<VersionId> {
    match e {
        Expect::At(v) => Some(v.clone()),
        Expect::Absent | Expect::Any => None,
    }
}

/// Whether a slot exists in a single (`Single`) or dual (`Primary`, `Clone`) configuration.
fn slot_fits(slot: Slot, dual: bool) -> bool {
    (slot == Slot::Single) != dual
}

fn matches_expect(e: &Expect, current: Option<&VersionId>) -> bool {
    match e {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::At(v) => current == Some(v),
    }
}

/// The slot the journal says holds `ACSCurrent`: the slot of the last promoted rotation, or `Primary` for
/// accounts that were imported or created and never rotated. Only a fallback for values that name no
/// account: [`current_account`] reads the slot from the value itself.
pub fn current_slot(journal: &[JournalEntry], dual: bool) -> Slot {
    if !dual {
        return Slot::Single;
    }
    journal
        .iter()
        .rev()
        .find(|e| e.kind() == StepKind::Promoted)
        .and_then(|e| e.step.slot())
        .unwrap_or(Slot::Primary)
}

/// The version holding `ACSCurrent` and the slot of the account it names. For dual accounts the slot
/// comes from the value (the backend parses it); the journal decides only when the value names neither
/// account (or there is no `ACSCurrent` yet).
pub async fn current_account(
    store: &Store,
    m: &Managed,
    journal: &[JournalEntry],
) -> Result<(Slot, Option<VersionId>), RotationError> {
    let name = m.name.as_str();
    if !m.backend.capabilities().dual_accounts {
        let stages = store.stages(name).await.map_err(store_err("read stages"))?;
        return Ok((Slot::Single, stages.get(&StageLabel::current()).cloned()));
    }
    // One read: the version holding ACSCurrent and its value, from one snapshot.
    let (current, from_value) = match store.get_value(name, &Selector::current()).await {
        Ok(v) => (
            Some(v.info.version_id),
            m.backend.slot_of(&v.value).filter(|s| *s != Slot::Single),
        ),
        Err(StoreError::StageNotFound { .. }) => (None, None),
        Err(e) => return Err(store_err("read ACSCurrent")(e)),
    };
    let slot = match from_value {
        Some(slot) => slot,
        None => {
            let slot = current_slot(journal, true);
            if current.is_some() {
                warn!(slot = %slot, "ACSCurrent's value names neither account; taking its slot from the journal.");
            }
            slot
        }
    };
    Ok((slot, current))
}

/// Whether a secret still lacks the value(s) it must have from the start: no `ACSCurrent` (accounts rotd
/// creates, or an import without a known password), or for dual accounts no `ACSPrevious` (the second
/// account not created yet, or its password unknown). Such a secret is rotated at once, not at its
/// first scheduled time, so an application deployed right after the secret is declared can read it.
pub async fn needs_first_value(store: &Store, m: &Managed) -> Result<bool, StoreError> {
    let stages = store.stages(m.name.as_str()).await?;
    let dual = m.backend.capabilities().dual_accounts;
    Ok(!stages.contains_key(&StageLabel::current())
        || (dual && !stages.contains_key(&StageLabel::previous())))
}

/// Ends an open rotation without promoting it: `ACSPending` is removed (its value stays as an
/// unlabelled version) and an `abandoned` step is journaled, so the next rotation plans afresh.
pub async fn abandon(
    store: &Store,
    name: &SecretName,
    open: &OpenRotation,
    reason: &str,
) -> Result<(), StoreError> {
    let stages = store.stages(name.as_str()).await?;
    if stages.get(&StageLabel::pending()) == Some(&open.version_id) {
        let mv = [StageMove {
            stage: StageLabel::pending(),
            expect: Expect::At(open.version_id.clone()),
            to: None,
        }];
        match store.move_stages(name.as_str(), &mv).await {
            Ok(_) | Err(StoreError::StageConflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    store
        .journal_append(&JournalRecord {
            secret_name: name.clone(),
            rotation_id: open.rotation_id.clone(),
            step: Step::Abandoned {
                slot: open.slot,
                after: open.step,
                reason: reason.to_owned(),
            },
            version_id: Some(open.version_id.clone()),
        })
        .await?;
    Ok(())
}

async fn journal(
    store: &Store,
    m: &Managed,
    rotation_id: &str,
    step: Step,
    version: Option<&VersionId>,
) -> Result<(), StoreError> {
    store
        .journal_append(&JournalRecord {
            secret_name: m.name.clone(),
            rotation_id: rotation_id.to_owned(),
            step,
            version_id: version.cloned(),
        })
        .await
        .map(|_| ())
}

async fn with_timeout<T>(
    limits: &StepLimits,
    m: &Managed,
    step: &'static str,
    fut: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, RotationError> {
    match tokio::time::timeout(limits.step_timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RotationError::Backend { step, source }),
        Err(_) => Err(RotationError::Backend {
            step,
            source: BackendError::retryable(
                m.backend.kind(),
                step,
                format!("timed out after {}s", limits.step_timeout.as_secs()),
            ),
        }),
    }
}

/// A new rotation id, also used as the new version's id: 32 random hex digits.
pub fn new_rotation_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Runs (or resumes) one rotation of `m` to promotion.
///
/// With `requested` (the vendor's RotateSecret `VersionId`), an existing version of that id means the
/// rotation already happened and nothing is done; otherwise the new version gets that id. When
/// `ACSCurrent` moves under a rotation (an operator's rollback, a put), the rotation is abandoned and
/// planned again from the new `ACSCurrent`, a bounded number of times.
pub async fn rotate(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    requested: Option<VersionId>,
) -> Result<Outcome, RotationError> {
    let mut requested = requested;
    for _ in 0..4 {
        match rotate_once(store, m, limits, requested.clone()).await? {
            // A request for a new version found another rotation open: that one is finished first, then
            // the requested one runs, so the version the caller named really exists afterwards.
            Planned::Done(o) if o.resumed && requested.as_ref().is_some_and(|v| *v != o.version_id) => {
                info!(finished = %o.version_id, "Finished the open rotation; now the requested one.");
            }
            Planned::Done(outcome) => return Ok(outcome),
            Planned::Replan(abandoned) => {
                if requested.as_ref() == Some(&abandoned) {
                    requested = None;
                }
            }
        }
    }
    Err(RotationError::Invalid {
        step: step::PROMOTED,
        message: "ACSCurrent kept changing while rotating; will try again later".to_owned(),
    })
}

enum Planned {
    Done(Outcome),
    /// `ACSCurrent` moved; the rotation (this version) was abandoned and must be planned again.
    Replan(VersionId),
}

async fn rotate_once(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    requested: Option<VersionId>,
) -> Result<Planned, RotationError> {
    let j = store
        .journal_tail(m.name.as_str())
        .await
        .map_err(store_err("read journal"))?;
    let caps = m.backend.capabilities();

    // A request for a version that already exists, with nothing open, is a retry of a rotation that
    // finished (the CLI's idempotent retry, a request replayed after a crash past promotion): it changes
    // nothing, not even a retire step owed to the previous credential, which keeps its grace.
    if let Some(v) = &requested
        && open_rotation(&j).is_none()
    {
        match store
            .get_value(m.name.as_str(), &Selector::Version(v.clone()))
            .await
        {
            Ok(_) => {
                let (current_slot, _) = current_account(store, m, &j).await?;
                return Ok(Planned::Done(Outcome {
                    rotation_id: String::new(),
                    version_id: v.clone(),
                    slot: current_slot,
                    resumed: false,
                    already_done: true,
                }));
            }
            Err(StoreError::VersionNotFound { .. }) => {}
            Err(e) => return Err(store_err("check version")(e)),
        }
    }

    // A retire that is still owed must happen before a new credential takes a slot (a RAM user holds at
    // most two AccessKeys). A rotation started now runs every remaining step early rather than wait.
    let mut j = j;
    if caps.retires() && open_rotation(&j).is_none() {
        for _ in 0..caps.retire_steps {
            let Some(r) = pending_retire(&j, caps.retire_steps, m.grace) else {
                break;
            };
            retire(store, m, limits, &r).await?;
            j = store
                .journal_tail(m.name.as_str())
                .await
                .map_err(store_err("read journal"))?;
        }
    }

    let (open, resumed) = match open_rotation(&j) {
        Some(open) => {
            info!(rotation_id = %open.rotation_id, step = %open.step, "Resuming an unfinished rotation.");
            (open, true)
        }
        None => {
            let (current_slot, current) = current_account(store, m, &j).await?;
            let rotation_id = new_rotation_id();
            let version_id = match requested {
                Some(v) => v,
                None => VersionId::parse(rotation_id.clone()).map_err(|e| RotationError::Invalid {
                    step: "pending",
                    message: e.to_string(),
                })?,
            };
            let slot = if caps.dual_accounts {
                current_slot.other()
            } else {
                Slot::Single
            };
            let started = expect_of(current.as_ref());
            let planned = PlannedStep {
                slot,
                started_from: Some(current.clone()),
            };
            let (first, kind) = if caps.mints() {
                (Step::Minting(planned), StepKind::Minting)
            } else {
                (Step::Pending(planned), StepKind::Pending)
            };
            journal(store, m, &rotation_id, first, Some(&version_id))
                .await
                .map_err(store_err(kind.as_str()))?;
            (
                OpenRotation {
                    rotation_id,
                    version_id,
                    slot,
                    step: kind,
                    started_from: Some(started),
                },
                false,
            )
        }
    };
    let span = tracing::info_span!("rotation", rotation_id = %open.rotation_id);
    carry_out(store, m, limits, open, resumed).instrument(span).await
}

/// The steps of an open rotation from `pending` on, inside its `rotation` span, so every line they
/// log (the backend's too) names the rotation id.
async fn carry_out(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    open: OpenRotation,
    resumed: bool,
) -> Result<Planned, RotationError> {
    let caps = m.backend.capabilities();
    if !resumed {
        failpoint(limits, "pending").await;
    }

    let value = pending_value(store, m, limits, &open, resumed).await?;
    failpoint(limits, "stored").await;
    // The configuration may have changed shape since the rotation was planned (single ↔ dual). A
    // rotation that has not touched the target is planned again; one past `applied` continues on the
    // account its value names (a single account became the dual pair's primary), since that account
    // already has the new password.
    let mut open = open;
    if !slot_fits(open.slot, caps.dual_accounts) {
        let untouched = matches!(open.step, StepKind::Minting | StepKind::Pending);
        match m
            .backend
            .slot_of(&value)
            .filter(|s| slot_fits(*s, caps.dual_accounts))
        {
            Some(slot) if !untouched => {
                warn!(from = %open.slot, to = %slot, "The accounts changed shape during the rotation; finishing it on the account its value names.");
                open.slot = slot;
            }
            _ if untouched => {
                warn!(slot = %open.slot, "The accounts changed shape before the target was changed; planning the rotation again.");
                abandon(
                    store,
                    &m.name,
                    &open,
                    "the accounts changed between single and dual",
                )
                .await
                .map_err(store_err(step::ABANDONED))?;
                return Ok(Planned::Replan(open.version_id.clone()));
            }
            _ => {
                return Err(RotationError::Invalid {
                    step: step::APPLIED,
                    message: format!(
                        "the open rotation targets the {} account, which this configuration no longer has; \
                         end it with `rotd rotation abandon {}`",
                        open.slot, m.name
                    ),
                });
            }
        }
    }
    let rid = open.rotation_id.as_str();
    let vid = &open.version_id;
    let slot = open.slot;

    let untouched = matches!(open.step, StepKind::Minting | StepKind::Pending);
    if untouched {
        // The target is touched only while ACSCurrent is what the plan was made from: for dual accounts
        // the slot to reset was derived from it.
        if let Some(expect) = &open.started_from {
            let stages = store
                .stages(m.name.as_str())
                .await
                .map_err(store_err(step::APPLIED))?;
            if !matches_expect(expect, stages.get(&StageLabel::current())) {
                warn!("ACSCurrent moved before the target was changed; planning the rotation again.");
                abandon(store, &m.name, &open, "ACSCurrent moved before apply")
                    .await
                    .map_err(store_err(step::ABANDONED))?;
                return Ok(Planned::Replan(open.version_id.clone()));
            }
        }
    }
    // A resumed rotation past `applied` applies again (idempotent): a verify that failed because the
    // target lost or never took the new credential is repaired rather than retried forever.
    if untouched || (resumed && open.step == StepKind::Applied) {
        with_timeout(limits, m, step::APPLIED, m.backend.apply(open.slot, &value)).await?;
        if untouched {
            journal(store, m, rid, Step::Applied { slot }, Some(vid))
                .await
                .map_err(store_err(step::APPLIED))?;
            failpoint(limits, "applied").await;
        }
    }
    if open.step != StepKind::Verified {
        with_timeout(limits, m, step::VERIFIED, m.backend.verify(open.slot, &value)).await?;
        journal(store, m, rid, Step::Verified { slot }, Some(vid))
            .await
            .map_err(store_err(step::VERIFIED))?;
        failpoint(limits, "verified").await;
    }
    if !promote(store, m, limits, &open).await? {
        return Ok(Planned::Replan(open.version_id));
    }
    failpoint(limits, "promoted").await;
    Ok(Planned::Done(Outcome {
        rotation_id: open.rotation_id,
        version_id: open.version_id,
        slot: open.slot,
        resumed,
        already_done: false,
    }))
}

/// The value of an open rotation: the stored `ACSPending` version, or (when the process died between
/// journaling `pending` and storing it, so the target was never touched) a newly made one. A rotation
/// planned by this call (`resumed` false) has just named a version that does not exist yet (a
/// requested id was checked before planning), so it is not looked for.
async fn pending_value(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    open: &OpenRotation,
    resumed: bool,
) -> Result<rotd_core::Secret, RotationError> {
    if resumed {
        match store
            .get_value(m.name.as_str(), &Selector::Version(open.version_id.clone()))
            .await
        {
            Ok(v) => return Ok(v.value),
            Err(StoreError::VersionNotFound { .. }) => {}
            Err(e) => return Err(store_err(step::PENDING)(e)),
        }
    }
    if !matches!(open.step, StepKind::Pending | StepKind::Minting) {
        return Err(RotationError::Invalid {
            step: step::PENDING,
            message: format!(
                "the journal says {} but version {} is missing from the store",
                open.step, open.version_id
            ),
        });
    }
    let value = if m.backend.capabilities().mints() {
        // A crash between a mint and the store write below leaves a credential at the target that no
        // version holds: the backend removes what the store does not know before minting again.
        let known = known_values(store, m).await?;
        let found = with_timeout(limits, m, step::MINTING, m.backend.reconcile(open.slot, &known)).await?;
        if found.removed > 0 {
            warn!(
                removed = found.removed,
                "Removed credentials at the target that the store did not know (left by an interrupted mint)."
            );
        }
        with_timeout(
            limits,
            m,
            step::MINTING,
            m.backend.mint(&open.rotation_id, open.slot),
        )
        .await?
    } else {
        let password = rotd_core::generate_password(&m.password).map_err(|e| RotationError::Invalid {
            step: step::PENDING,
            message: e.to_string(),
        })?;
        m.backend
            .compose_version(open.slot, &password, open.version_id.as_str())
            .map_err(|source| RotationError::Backend {
                step: step::PENDING,
                source,
            })?
    };
    let new = NewVersion {
        version_id: open.version_id.clone(),
        data_type: DataType::Text,
        value: value.clone(),
    };
    store
        .put_value(m.name.as_str(), new, Some(vec![StageLabel::pending()]))
        .await
        .map_err(store_err(step::PENDING))?;
    if open.step == StepKind::Minting {
        let planned = PlannedStep {
            slot: open.slot,
            started_from: open.started_from.as_ref().map(recorded),
        };
        journal(
            store,
            m,
            &open.rotation_id,
            Step::Pending(planned),
            Some(&open.version_id),
        )
        .await
        .map_err(store_err(step::PENDING))?;
    }
    Ok(value)
}

/// Every value the store holds for this secret (at most the retention limit), for `reconcile`.
async fn known_values(store: &Store, m: &Managed) -> Result<Vec<rotd_core::Secret>, RotationError> {
    let versions = store
        .list_versions(m.name.as_str())
        .await
        .map_err(store_err(step::MINTING))?;
    let mut known = Vec::with_capacity(versions.len());
    for v in versions {
        match store
            .get_value(m.name.as_str(), &Selector::Version(v.version_id.clone()))
            .await
        {
            Ok(value) => known.push(value.value),
            Err(StoreError::VersionNotFound { .. }) => {}
            Err(e) => return Err(store_err(step::MINTING)(e)),
        }
    }
    Ok(known)
}

/// Promotes a verified rotation: one compare-and-set stage move against the `ACSCurrent` the rotation
/// started from. Returns false (after abandoning the rotation) when someone else moved `ACSCurrent`
/// meanwhile, so the caller plans again instead of overwriting their change.
async fn promote(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    open: &OpenRotation,
) -> Result<bool, RotationError> {
    let name = m.name.as_str();
    let stages = store.stages(name).await.map_err(store_err(step::PROMOTED))?;
    let current = stages.get(&StageLabel::current()).cloned();
    let already = current.as_ref() == Some(&open.version_id);
    let caps = m.backend.capabilities();
    // Rotations journaled by an older rotd did not record where they started; they expect what is there.
    let expected = open
        .started_from
        .clone()
        .unwrap_or_else(|| expect_of(current.as_ref()));
    // The version that held ACSCurrent is what the old credential was.
    let old = match &expected {
        Expect::At(v) => Some(v.clone()),
        Expect::Absent | Expect::Any => None,
    };
    let mut retire_plan = None;
    if !already {
        if !matches_expect(&expected, current.as_ref()) {
            return replan(store, m, open, "ACSCurrent moved during the rotation").await;
        }
        let mut moves = vec![StageMove {
            stage: StageLabel::current(),
            expect: expected.clone(),
            to: Some(open.version_id.clone()),
        }];
        if let Some(cur) = &old {
            moves.push(StageMove {
                stage: StageLabel::previous(),
                expect: Expect::Any,
                to: Some(cur.clone()),
            });
        }
        if stages.get(&StageLabel::pending()) == Some(&open.version_id) {
            moves.push(StageMove {
                stage: StageLabel::pending(),
                expect: Expect::At(open.version_id.clone()),
                to: None,
            });
        }
        match store.move_stages(name, &moves).await {
            Ok(_) => {}
            Err(StoreError::StageConflict { .. }) => {
                return replan(store, m, open, "ACSCurrent moved while promoting").await;
            }
            Err(e) => return Err(store_err(step::PROMOTED)(e)),
        }
        failpoint(limits, "promoted-store").await;
    } else if stages.get(&StageLabel::pending()) == Some(&open.version_id) {
        // Promoted by a process that died before cleaning up ACSPending (cannot happen with the single
        // transaction above, but a manual stage move could leave it).
        let mv = [StageMove {
            stage: StageLabel::pending(),
            expect: Expect::At(open.version_id.clone()),
            to: None,
        }];
        store
            .move_stages(name, &mv)
            .await
            .map_err(store_err(step::PROMOTED))?;
    }
    // What `retire` needs, also when a crash left the stage move done but this entry unwritten: the
    // old version is the one the rotation started from, not whatever ACSPrevious says now.
    if caps.retires()
        && let Some(cur) = old.filter(|c| *c != open.version_id)
    {
        let grace = chrono::Duration::from_std(m.grace.first).unwrap_or(chrono::Duration::MAX);
        let at = store
            .clock()
            .now()
            .checked_add_signed(grace)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let old_slot = if caps.dual_accounts {
            open.slot.other()
        } else {
            Slot::Single
        };
        retire_plan = Some(RetirePlan {
            version: cur,
            slot: old_slot,
            at: at.timestamp(),
        });
    }
    journal(
        store,
        m,
        &open.rotation_id,
        Step::Promoted {
            slot: open.slot,
            retire: retire_plan,
        },
        Some(&open.version_id),
    )
    .await
    .map_err(store_err(step::PROMOTED))?;
    Ok(true)
}

async fn replan(
    store: &Store,
    m: &Managed,
    open: &OpenRotation,
    reason: &str,
) -> Result<bool, RotationError> {
    warn!(
        reason,
        "Someone else changed ACSCurrent; abandoning this rotation and planning it again."
    );
    abandon(store, &m.name, open, reason)
        .await
        .map_err(store_err(step::ABANDONED))?;
    Ok(false)
}

/// Revokes the old credential of a promoted rotation and journals it.
pub async fn retire(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    r: &PendingRetire,
) -> Result<(), RotationError> {
    let span = tracing::info_span!("rotation", rotation_id = %r.rotation_id);
    retire_step(store, m, limits, r).instrument(span).await
}

async fn retire_step(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    r: &PendingRetire,
) -> Result<(), RotationError> {
    let old = match store
        .get_value(m.name.as_str(), &Selector::Version(r.old_version.clone()))
        .await
    {
        Ok(v) => Some(v.value),
        Err(StoreError::VersionNotFound { .. }) => None,
        Err(e) => return Err(store_err(step::RETIRED)(e)),
    };
    match old {
        Some(old) => {
            with_timeout(
                limits,
                m,
                step::RETIRED,
                m.backend.retire(r.old_slot, &old, r.step),
            )
            .await?
        }
        None => {
            warn!(version = %r.old_version, "The version to retire is gone; nothing to revoke.")
        }
    }
    journal(
        store,
        m,
        &r.rotation_id,
        Step::Retired {
            slot: r.old_slot,
            step: r.step,
        },
        Some(&r.old_version),
    )
    .await
    .map_err(store_err(step::RETIRED))
}
