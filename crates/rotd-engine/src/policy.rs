//! The failure policy around one attempt: exponential backoff with jitter, a bounded number of attempts,
//! then quarantine (until `rotd rotation resume` or the next rotation window).
//!
//! Two kinds of rotation are never quarantined, because stopping them would leave applications without a
//! working credential for a whole interval: a secret that has no value yet (its accounts are being
//! created, [`rotation::needs_first_value`]), and a single-account rotation past `applied` (the server
//! already has the new password while `ACSCurrent` still holds the old one). They keep retrying with the
//! capped backoff, visible as consecutive failures in metrics and `rotd status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rotd_core::{ErrorClass, VersionId};
use rotd_store::{Failure, JournalRecord, Step, StepKind, Store};
use tracing::{error, info, warn};

use crate::rotation::{self, Managed, Outcome, RotationError, StepLimits};

/// How failures are retried.
#[derive(Debug, Clone)]
pub struct FailurePolicy {
    /// Attempts in a row (retryable failures) before the secret is quarantined.
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

impl FailurePolicy {
    /// The wait after the `failures`-th consecutive failure: base · 2^(failures−1), capped, with ±20 %
    /// jitter so that many secrets failing together do not retry together.
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        // Capped at a day whatever the configuration says, so the jitter below cannot overflow.
        let capped = exp.min(self.backoff_max).min(Duration::from_secs(86_400));
        capped.mul_f64((0.8 + 0.4 * jitter.clamp(0.0, 1.0)).max(0.0))
    }
}

/// What happened to one attempt, for the scheduler and metrics.
#[derive(Debug)]
pub enum AttemptResult {
    Done(Outcome),
    /// Failed; will be retried at `retry_at`.
    Retry {
        error: RotationError,
        retry_at: DateTime<Utc>,
    },
    /// Failed and quarantined (permanent error or too many attempts); `until` is the next window, if any.
    Quarantined {
        error: RotationError,
        until: Option<DateTime<Utc>>,
    },
}

/// Runs one attempt with the failure policy applied and recorded in the store.
pub async fn attempt(
    store: &Store,
    m: &Managed,
    limits: &StepLimits,
    policy: &FailurePolicy,
    requested: Option<VersionId>,
    next_window: Option<DateTime<Utc>>,
) -> AttemptResult {
    let name = m.name.as_str();
    let first_value = rotation::needs_first_value(store, m).await.unwrap_or(false);
    match rotation::rotate(store, m, limits, requested).await {
        Ok(outcome) => {
            let now = store.clock().now();
            if let Err(e) = store.record_success(name, now).await {
                warn!(error = %e, "Could not record the rotation's success.");
            }
            if !outcome.already_done {
                info!(rotation_id = %outcome.rotation_id, version = %outcome.version_id, slot = %outcome.slot, resumed = outcome.resumed, "Rotation promoted.");
            }
            AttemptResult::Done(outcome)
        }
        Err(error) => {
            let state = store.rotation_state(name).await.unwrap_or_default();
            let failures = state.consecutive_failures + 1;
            let permanent = error.class() == ErrorClass::Permanent;
            let open = store
                .journal_tail(name)
                .await
                .ok()
                .and_then(|j| rotation::open_rotation(&j));
            let past_applied = open
                .as_ref()
                .is_some_and(|o| matches!(o.step, StepKind::Applied | StepKind::Verified));
            let caps = m.backend.capabilities();
            // With overlap the old credential still works past `applied`, so ACSCurrent is not dead.
            let must_finish = first_value || (past_applied && !caps.dual_accounts && !caps.overlap);
            let quarantine = !must_finish && (permanent || failures >= policy.max_attempts);
            let backoff = chrono::Duration::from_std(policy.backoff(failures, rand::random::<f64>()))
                .unwrap_or(chrono::Duration::hours(1));
            let retry_at = store
                .clock()
                .now()
                .checked_add_signed(backoff)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let next = if quarantine { next_window } else { Some(retry_at) };
            let rotation_id = open.as_ref().map(|o| o.rotation_id.clone());
            let message = error.to_string();
            let failure = Failure {
                failed_step: error.step().to_owned(),
                permanent,
                attempt: failures,
                error: message.clone(),
            };
            let rec = JournalRecord {
                secret_name: m.name.clone(),
                rotation_id: open.as_ref().map_or_else(String::new, |o| o.rotation_id.clone()),
                step: if quarantine {
                    Step::Quarantined(failure)
                } else {
                    Step::Failed(failure)
                },
                version_id: open.map(|o| o.version_id),
            };
            if let Err(e) = store.journal_append(&rec).await {
                warn!(error = %e, "Could not journal a failed attempt.");
            }
            if let Err(e) = store.record_failure(name, &message, next, quarantine).await {
                warn!(error = %e, "Could not record a failed attempt.");
            }
            if quarantine {
                // One clear line per quarantine; retries before it log at WARN once each.
                error!(rotation_id = rotation_id.as_deref(), error = %message, attempts = failures, permanent, "Rotation quarantined; run `rotd rotation resume` after fixing the cause.");
                AttemptResult::Quarantined {
                    error,
                    until: next_window,
                }
            } else {
                warn!(rotation_id = rotation_id.as_deref(), error = %message, attempt = failures, must_finish, retry_at = %retry_at.format("%Y-%m-%dT%H:%M:%SZ"), "Rotation failed; will retry.");
                AttemptResult::Retry { error, retry_at }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = FailurePolicy::default();
        assert_eq!(p.backoff(1, 0.5), Duration::from_secs(30));
        assert_eq!(p.backoff(2, 0.5), Duration::from_secs(60));
        assert_eq!(p.backoff(3, 0.5), Duration::from_secs(120));
        assert_eq!(p.backoff(30, 0.5), Duration::from_secs(3600));
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(24));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(36));
    }
}
