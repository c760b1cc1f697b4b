//! The rotation state machine against the fake backend and a real SQLite store: every step's crash and
//! resume, dual alternation, failure policy and quarantine, and the ACSCurrent invariant.

use std::sync::Arc;
use std::time::Duration;

use rotd_core::{DataType, PasswordPolicy, SecretName, SecretType, Slot, StageLabel, Tags, VersionId};
use rotd_engine::rotation::{self, step};
use rotd_engine::{AttemptResult, FailurePolicy, Managed, StepLimits, attempt, rotate};
use rotd_store::{JournalRecord, NewSecret, NewVersion, Selector, Store};
use rotd_testkit::fake_backend::{FakeBackend, Op, account_value};

struct World {
    store: Store,
    fake: FakeBackend,
    m: Managed,
    _dir: tempfile::TempDir,
}

const NAME: &str = "db/app";

async fn world(fake: FakeBackend) -> World {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(&dir.path().join("rotd.db"), rotd_testkit::store_suite::keyring())
        .await
        .expect("store");
    let dual = fake.capabilities_dual();
    let primary = if dual { Slot::Primary } else { Slot::Single };
    fake.set_password(primary, "imported-pw");
    if dual {
        fake.set_password(Slot::Clone, "clone-initial-pw");
    }
    let new = NewSecret {
        name: SecretName::parse(NAME).expect("name"),
        kind: SecretType::Rds,
        description: String::new(),
        tags: Tags::default(),
        cmk_id: "default".into(),
        extended_config: None,
        rotation: None,
        policy: None,
        managed_by: None,
    };
    let initial = NewVersion {
        version_id: VersionId::parse("v0").expect("id"),
        data_type: DataType::Text,
        value: account_value(fake.account(primary), "imported-pw"),
    };
    store.create_secret(new, Some(initial)).await.expect("create");
    let m = Managed {
        name: SecretName::parse(NAME).expect("name"),
        kind: SecretType::Rds,
        backend: Arc::new(fake.clone()),
        password: PasswordPolicy::default(),
        grace: rotd_engine::Grace::NONE,
    };
    World {
        store,
        fake,
        m,
        _dir: dir,
    }
}

trait DualExt {
    fn capabilities_dual(&self) -> bool;
}
impl DualExt for FakeBackend {
    fn capabilities_dual(&self) -> bool {
        rotd_core::Backend::capabilities(self).dual_accounts
    }
}

fn limits() -> StepLimits {
    StepLimits {
        step_timeout: Duration::from_secs(5),
        failpoint: None,
    }
}

impl World {
    async fn value(&self, stage: &str) -> Option<rotd_core::Secret> {
        self.store
            .get_value(NAME, &Selector::Stage(StageLabel::parse(stage).expect("stage")))
            .await
            .ok()
            .map(|v| v.value)
    }
    async fn version_at(&self, stage: &str) -> Option<String> {
        self.store
            .stages(NAME)
            .await
            .expect("stages")
            .get(&StageLabel::parse(stage).expect("stage"))
            .map(ToString::to_string)
    }
    async fn steps(&self) -> Vec<String> {
        self.store
            .journal(NAME)
            .await
            .expect("journal")
            .into_iter()
            .map(|e| e.kind().as_str().to_owned())
            .filter(|s| s != step::CREATED)
            .collect()
    }
    async fn current_works(&self) -> bool {
        match self.value("ACSCurrent").await {
            Some(v) => self.fake.accepts(&v),
            None => false,
        }
    }
}

#[tokio::test]
async fn single_rotation_promotes_a_verified_value() {
    let w = world(FakeBackend::single()).await;
    let old = w.value("ACSCurrent").await.expect("current");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert_eq!(out.slot, Slot::Single);
    assert!(!out.resumed);
    assert_eq!(
        w.version_at("ACSCurrent").await.as_deref(),
        Some(out.version_id.as_str())
    );
    assert_eq!(w.version_at("ACSPrevious").await.as_deref(), Some("v0"));
    assert_eq!(w.version_at("ACSPending").await, None);
    assert!(w.current_works().await);
    assert!(
        !w.fake.accepts(&old),
        "single account: the old password stops working"
    );
    assert_eq!(
        w.steps().await,
        [step::PENDING, step::APPLIED, step::VERIFIED, step::PROMOTED]
    );
}

#[tokio::test]
async fn dual_rotations_alternate_and_never_break_current_or_previous() {
    let w = world(FakeBackend::dual()).await;
    let mut expected = Slot::Clone;
    for i in 0..20 {
        let out = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
        assert_eq!(out.slot, expected, "rotation {i}");
        expected = expected.other();
        assert!(w.current_works().await, "rotation {i}: ACSCurrent logs in");
        let prev = w.value("ACSPrevious").await.expect("previous");
        assert!(
            w.fake.accepts(&prev),
            "rotation {i}: ACSPrevious (the other account) still logs in"
        );
        assert_ne!(
            w.value("ACSCurrent").await.expect("cur").expose_secret(),
            prev.expose_secret()
        );
    }
    assert!(w.store.list_versions(NAME).await.expect("versions").len() <= 10);
}

#[tokio::test]
async fn a_failed_apply_resumes_with_the_same_pending_value() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Apply, 1, false);
    let e = rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("apply fails");
    assert_eq!(e.step(), step::APPLIED);
    let pending_version = w
        .version_at("ACSPending")
        .await
        .expect("pending stored before the target was touched");
    let pending = w.value("ACSPending").await.expect("pending value");
    assert_eq!(
        w.version_at("ACSCurrent").await.as_deref(),
        Some("v0"),
        "current untouched"
    );
    assert!(w.current_works().await);

    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("resume");
    assert!(out.resumed);
    assert_eq!(
        out.version_id.as_str(),
        pending_version,
        "rolls forward with the same version"
    );
    let cur = w.value("ACSCurrent").await.expect("current");
    assert_eq!(cur.expose_secret(), pending.expose_secret(), "and the same value");
    assert!(w.fake.accepts(&cur));
}

#[tokio::test]
async fn a_failed_verify_never_promotes_and_resumes_by_applying_again() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Verify, 2, false);
    for _ in 0..2 {
        let e = rotate(&w.store, &w.m, &limits(), None)
            .await
            .expect_err("verify fails");
        assert_eq!(e.step(), step::VERIFIED);
        assert_eq!(
            w.version_at("ACSCurrent").await.as_deref(),
            Some("v0"),
            "ACSCurrent never points at an unverified value"
        );
    }
    let applies = w.fake.calls(Op::Apply);
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("resume");
    assert!(out.resumed);
    assert_eq!(
        w.fake.calls(Op::Apply),
        applies + 1,
        "a rotation resumed past applied applies again (idempotent), so a target that lost the new \
         credential is repaired instead of failing verify forever"
    );
    assert!(w.current_works().await);
}

#[tokio::test]
async fn crash_between_journal_and_store_write_makes_a_fresh_pending_value() {
    let w = world(FakeBackend::single()).await;
    // The journal says pending, but the process died before the version was stored: the target was
    // never touched, so a new value under the same version id is safe.
    w.store
        .journal_append(&JournalRecord {
            secret_name: SecretName::parse(NAME).expect("name"),
            rotation_id: "r-crashed".into(),
            step: rotd_store::Step::Pending(rotd_store::Planned {
                slot: Slot::Single,
                started_from: None,
            }),
            version_id: Some(VersionId::parse("r-crashed").expect("id")),
        })
        .await
        .expect("journal");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("resume");
    assert!(out.resumed);
    assert_eq!(out.version_id.as_str(), "r-crashed");
    assert!(w.current_works().await);
}

#[tokio::test]
async fn crash_after_promotion_before_its_journal_entry_is_recognised() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Verify, 1, false);
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("stop before verify");
    // Finish verify and the promotion transaction by hand, as a process that died right after it.
    let open = rotation::open_rotation(&w.store.journal(NAME).await.expect("j")).expect("open");
    let vid = open.version_id.clone();
    w.store
        .update_version_stage(NAME, &StageLabel::current(), None, Some(&vid))
        .await
        .expect("promote");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("resume");
    assert_eq!(out.version_id, vid);
    assert_eq!(w.version_at("ACSCurrent").await.as_deref(), Some(vid.as_str()));
    assert_eq!(
        w.version_at("ACSPending").await,
        None,
        "the leftover pending label is cleaned up"
    );
    assert_eq!(w.steps().await.last().map(String::as_str), Some(step::PROMOTED));
}

#[tokio::test]
async fn requested_version_ids_are_idempotent() {
    let w = world(FakeBackend::single()).await;
    let v = VersionId::parse("req-1").expect("id");
    let first = rotate(&w.store, &w.m, &limits(), Some(v.clone()))
        .await
        .expect("rotate");
    assert_eq!(first.version_id, v);
    assert!(!first.already_done);
    let applies = w.fake.calls(Op::Apply);
    let again = rotate(&w.store, &w.m, &limits(), Some(v.clone()))
        .await
        .expect("repeat");
    assert!(again.already_done);
    assert_eq!(
        w.fake.calls(Op::Apply),
        applies,
        "a repeated request rotates nothing"
    );
}

#[tokio::test]
async fn a_hanging_backend_is_bounded_by_the_step_timeout() {
    let w = world(FakeBackend::single()).await;
    w.fake.hang(Op::Apply);
    let started = rotd_core::Clock::system().instant();
    let e = rotate(
        &w.store,
        &w.m,
        &StepLimits {
            step_timeout: Duration::from_millis(300),
            failpoint: None,
        },
        None,
    )
    .await
    .expect_err("times out");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(e.class() == rotd_core::ErrorClass::Retryable);
    assert!(rotd_core::Clock::system().elapsed(started) < Duration::from_secs(5));
    w.fake.unhang(Op::Apply);
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect("resumes after the hang");
    assert!(w.current_works().await);
}

#[tokio::test]
async fn retryable_failures_back_off_then_quarantine() {
    let w = world(FakeBackend::single()).await;
    let policy = FailurePolicy {
        max_attempts: 3,
        ..Default::default()
    };
    w.fake.fail_next(Op::Apply, 10, false);
    let mut retry_times = Vec::new();
    for i in 1..=2 {
        match attempt(&w.store, &w.m, &limits(), &policy, None, None).await {
            AttemptResult::Retry { retry_at, .. } => retry_times.push(retry_at),
            other => panic!("attempt {i}: {other:?}"),
        }
        let st = w.store.rotation_state(NAME).await.expect("state");
        assert_eq!(st.consecutive_failures, i);
        assert!(!st.quarantined);
    }
    let gap1 = retry_times[0] - rotd_core::Clock::system().now();
    assert!(
        gap1 > chrono::Duration::seconds(20) && gap1 <= chrono::Duration::seconds(36),
        "{gap1}"
    );
    let window = rotd_core::Clock::system().now() + chrono::Duration::days(1);
    match attempt(&w.store, &w.m, &limits(), &policy, None, Some(window)).await {
        AttemptResult::Quarantined { until, .. } => assert_eq!(until, Some(window)),
        other => panic!("third attempt: {other:?}"),
    }
    let st = w.store.rotation_state(NAME).await.expect("state");
    assert!(st.quarantined);
    assert_eq!(
        st.next_attempt_at.map(|t| t.timestamp()),
        Some(window.timestamp())
    );
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("injected Apply failure")
    );
    assert_eq!(
        w.steps().await.iter().filter(|s| *s == step::QUARANTINED).count(),
        1
    );
    assert!(
        w.current_works().await,
        "ACSCurrent still works while quarantined"
    );

    w.store.clear_quarantine(NAME).await.expect("resume");
    w.fake.fail_next(Op::Apply, 0, false);
    assert!(matches!(
        attempt(&w.store, &w.m, &limits(), &policy, None, None).await,
        AttemptResult::Done(_)
    ));
    let st = w.store.rotation_state(NAME).await.expect("state");
    assert_eq!((st.consecutive_failures, st.quarantined), (0, false));
    assert!(st.last_success_at.is_some());
}

#[tokio::test]
async fn a_permanent_failure_quarantines_at_once() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Apply, 1, true);
    let r = attempt(&w.store, &w.m, &limits(), &FailurePolicy::default(), None, None).await;
    assert!(matches!(r, AttemptResult::Quarantined { .. }), "{r:?}");
    assert!(w.store.rotation_state(NAME).await.expect("state").quarantined);
}

#[tokio::test]
async fn overlapping_backends_retire_the_old_credential() {
    let w = world(FakeBackend::overlapping()).await;
    let old = w.value("ACSCurrent").await.expect("current");
    rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert!(
        w.fake.accepts(&old),
        "overlap: the old credential works until retired"
    );
    let j = w.store.journal(NAME).await.expect("journal");
    let due = rotation::pending_retire(&j, 1, rotd_engine::Grace::NONE).expect("a retire is owed");
    assert_eq!(due.old_version.as_str(), "v0");
    rotation::retire(&w.store, &w.m, &limits(), &due)
        .await
        .expect("retire");
    assert!(!w.fake.accepts(&old), "retired");
    assert!(w.current_works().await);
    assert!(
        rotation::pending_retire(
            &w.store.journal(NAME).await.expect("j"),
            1,
            rotd_engine::Grace::NONE
        )
        .is_none()
    );
    // The next rotation retires what it owes before taking the slot.
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect("rotate again");
    let before = w.value("ACSPrevious").await.expect("prev");
    rotate(&w.store, &w.m, &limits(), None).await.expect("and again");
    assert!(
        !w.fake.accepts(&before),
        "the owed retire ran before the new rotation"
    );
    assert!(w.current_works().await);
}

/// An operator's rollback: `ACSCurrent` moved back to an older version outside any rotation.
async fn roll_back(w: &World, to: &str) {
    w.store
        .move_stages(
            NAME,
            &[rotd_store::StageMove {
                stage: StageLabel::current(),
                expect: rotd_store::Expect::Any,
                to: Some(VersionId::parse(to).expect("id")),
            }],
        )
        .await
        .expect("roll back");
}

#[tokio::test]
async fn after_a_rollback_the_next_rotation_resets_the_account_not_holding_current() {
    let w = world(FakeBackend::dual()).await;
    let first = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert_eq!(first.slot, Slot::Clone);
    // The operator rolls ACSCurrent back to v0 (the primary account); the journal still says the clone
    // was promoted last. An application reads v0.
    roll_back(&w, "v0").await;
    let held = w.value("ACSCurrent").await.expect("current");
    let next = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert_eq!(
        next.slot,
        Slot::Clone,
        "the slot comes from ACSCurrent's value (primary), so the clone is reset"
    );
    assert!(
        w.fake.accepts(&held),
        "the credential the application held after the rollback still logs in"
    );
    assert!(w.current_works().await);
}

#[tokio::test]
async fn a_rollback_while_a_rotation_is_open_replans_it_instead_of_resetting_the_live_account() {
    let w = world(FakeBackend::dual()).await;
    rotate(&w.store, &w.m, &limits(), None).await.expect("first");
    // The second rotation targets the primary (ACSCurrent is the clone) and stops before apply.
    w.fake.fail_next(Op::Apply, 1, false);
    let e = rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("apply fails");
    assert_eq!(e.step(), step::APPLIED);
    // Meanwhile the operator rolls back to v0, the primary's credential.
    roll_back(&w, "v0").await;
    let held = w.value("ACSCurrent").await.expect("current");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert_eq!(
        out.slot,
        Slot::Clone,
        "planned again from the rolled-back ACSCurrent"
    );
    assert!(!out.resumed, "the stale rotation was abandoned, not resumed");
    assert!(w.fake.accepts(&held), "the primary's credential was never reset");
    assert!(w.steps().await.iter().any(|s| s == step::ABANDONED));
    assert_eq!(w.version_at("ACSPending").await, None);
}

#[tokio::test]
async fn a_put_during_a_rotation_is_not_overwritten_by_its_promotion() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Verify, 1, false);
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("verify fails after apply");
    let stale = rotation::open_rotation(&w.store.journal_tail(NAME).await.expect("j"))
        .expect("open")
        .version_id;
    // An operator stores a value while the rotation is open.
    w.store
        .put_value(
            NAME,
            NewVersion {
                version_id: VersionId::parse("operator").expect("id"),
                data_type: DataType::Text,
                value: account_value("app", "operator-pw"),
            },
            None,
        )
        .await
        .expect("put");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert_ne!(
        out.version_id, stale,
        "the rotation planned before the put is abandoned, not promoted over it"
    );
    assert_eq!(
        w.version_at("ACSCurrent").await.as_deref(),
        Some(out.version_id.as_str())
    );
    assert_eq!(
        w.version_at("ACSPrevious").await.as_deref(),
        Some("operator"),
        "the put value is what the new rotation replaced"
    );
    assert!(w.current_works().await);
    let j = w.store.journal_tail(NAME).await.expect("j");
    assert!(
        w.store
            .journal(NAME)
            .await
            .expect("j")
            .iter()
            .any(|e| e.kind().as_str() == step::ABANDONED && e.version_id.as_deref() == Some(stale.as_str())),
        "the abandoned rotation is journaled: {j:?}"
    );
}

#[tokio::test]
async fn a_secret_created_again_under_the_same_name_starts_afresh() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Apply, 5, true);
    let policy = FailurePolicy {
        max_attempts: 1,
        ..Default::default()
    };
    let r = attempt(&w.store, &w.m, &limits(), &policy, None, None).await;
    assert!(matches!(r, AttemptResult::Quarantined { .. }), "{r:?}");
    w.store.set_paused(NAME, true).await.expect("pause");
    w.store
        .delete_secret(NAME, rotd_store::DeleteMode::Force)
        .await
        .expect("delete");
    let new = NewSecret {
        name: SecretName::parse(NAME).expect("name"),
        kind: SecretType::Rds,
        description: String::new(),
        tags: Tags::default(),
        cmk_id: "default".into(),
        extended_config: None,
        rotation: None,
        policy: None,
        managed_by: None,
    };
    let initial = NewVersion {
        version_id: VersionId::parse("fresh").expect("id"),
        data_type: DataType::Text,
        value: account_value("app", "imported-pw"),
    };
    w.store
        .create_secret(new, Some(initial))
        .await
        .expect("create again");
    let state = w.store.rotation_state(NAME).await.expect("state");
    assert!(!state.quarantined && !state.paused, "{state:?}");
    assert!(
        rotation::open_rotation(&w.store.journal_tail(NAME).await.expect("j")).is_none(),
        "the old secret's open rotation is not this one's"
    );
    w.fake.fail_next(Op::Apply, 0, false);
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    assert!(!out.resumed);
    assert_eq!(w.version_at("ACSPrevious").await.as_deref(), Some("fresh"));
}

#[tokio::test]
async fn a_single_rotation_past_applied_is_never_quarantined() {
    let w = world(FakeBackend::single()).await;
    let policy = FailurePolicy {
        max_attempts: 2,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
    };
    // The server took the new password; verify keeps failing permanently (say, a network ACL).
    w.fake.fail_next(Op::Verify, 6, true);
    for _ in 0..6 {
        let r = attempt(&w.store, &w.m, &limits(), &policy, None, None).await;
        assert!(
            matches!(r, AttemptResult::Retry { .. }),
            "ACSCurrent is dead until this rotation finishes, so it keeps retrying: {r:?}"
        );
    }
    let state = w.store.rotation_state(NAME).await.expect("state");
    assert_eq!(state.consecutive_failures, 6, "and the failures are visible");
    let r = attempt(&w.store, &w.m, &limits(), &policy, None, None).await;
    assert!(matches!(r, AttemptResult::Done(_)), "{r:?}");
    assert!(w.current_works().await);
}

#[tokio::test]
async fn a_dual_rotation_before_apply_is_still_quarantined() {
    let w = world(FakeBackend::dual()).await;
    // Both accounts have a stored value (a secret with only one is rotated until it has both).
    rotate(&w.store, &w.m, &limits(), None).await.expect("first");
    let policy = FailurePolicy {
        max_attempts: 2,
        ..Default::default()
    };
    w.fake.fail_next(Op::Apply, 5, false);
    let _ = attempt(&w.store, &w.m, &limits(), &policy, None, None).await;
    let r = attempt(&w.store, &w.m, &limits(), &policy, None, None).await;
    assert!(
        matches!(r, AttemptResult::Quarantined { .. }),
        "the live credential is untouched, so the usual bound applies: {r:?}"
    );
}

#[tokio::test]
async fn a_rotation_planned_for_a_single_account_is_replanned_when_the_secret_became_dual() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Apply, 1, false);
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("apply fails");
    // The file now says dual: same primary account `app`, plus a clone.
    let dual = FakeBackend::dual();
    dual.set_password(Slot::Primary, "imported-pw");
    let m = Managed {
        backend: Arc::new(dual.clone()),
        ..w.m.clone()
    };
    let out = rotate(&w.store, &m, &limits(), None).await.expect("rotate");
    assert_eq!(
        out.slot,
        Slot::Clone,
        "planned afresh: the clone, not the primary holding ACSCurrent"
    );
    assert!(!out.resumed);
    assert!(
        dual.accepts(&account_value("app", "imported-pw")),
        "ACSCurrent's account untouched"
    );
}

#[tokio::test]
async fn a_requested_version_is_rotated_after_the_open_rotation_finishes() {
    let w = world(FakeBackend::single()).await;
    w.fake.fail_next(Op::Apply, 1, false);
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect_err("leaves a rotation open");
    let asked = VersionId::parse("asked-for").expect("id");
    let out = rotate(&w.store, &w.m, &limits(), Some(asked.clone()))
        .await
        .expect("rotate");
    assert_eq!(
        out.version_id, asked,
        "the version RotateSecret named exists and is current"
    );
    assert_eq!(w.version_at("ACSCurrent").await.as_deref(), Some("asked-for"));
    assert!(w.current_works().await);
}

#[tokio::test]
async fn an_unreadable_journal_entry_quarantines_the_secret_with_a_clear_message() {
    use sqlx::Connection;
    let w = world(FakeBackend::single()).await;
    let path = w._dir.path().join("rotd.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    // An `applied` entry whose detail lost its slot: today's reader would have treated the rotation as
    // not open and started another one over a target that already has a new password.
    sqlx::query(
        "INSERT INTO rotation_journal (secret_name, rotation_id, step, version_id, at, detail)
         VALUES (?, 'r1', 'applied', 'r1', 0, '{\"slot\": 7}')",
    )
    .bind(NAME)
    .execute(&mut conn)
    .await
    .expect("insert");
    let r = attempt(&w.store, &w.m, &limits(), &FailurePolicy::default(), None, None).await;
    let AttemptResult::Quarantined { error, .. } = r else {
        panic!("not quarantined: {r:?}");
    };
    let msg = error.to_string();
    assert!(msg.contains("journal entry") && msg.contains(NAME), "{msg}");
    assert_eq!(
        w.fake.calls(Op::Apply),
        0,
        "nothing was applied on a journal rotd cannot read"
    );
    let state = w.store.rotation_state(NAME).await.expect("state");
    assert!(state.quarantined);
    assert!(state.last_error.unwrap_or_default().contains("journal entry"));
}

/// A world whose backend mints its credentials (a RAM user's AccessKeys, at most two at once).
async fn minting_world(grace: rotd_engine::Grace) -> World {
    let mut w = world(FakeBackend::minting()).await;
    w.m.grace = grace;
    w
}

#[tokio::test]
async fn a_crash_between_mint_and_store_write_leaks_no_credential() {
    let w = minting_world(rotd_engine::Grace::NONE).await;
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect("first rotation");
    // The first rotation retires v0 in full before the next one takes a slot.
    rotate(&w.store, &w.m, &limits(), None)
        .await
        .expect("second rotation");
    assert_eq!(
        w.fake.credentials_at_target(Slot::Single),
        2,
        "ACSCurrent and ACSPrevious"
    );
    // The third rotation first retires what the second owes (as `rotate` does before planning)…
    while let Some(r) = rotation::pending_retire(
        &w.store.journal_tail(NAME).await.expect("j"),
        2,
        rotd_engine::Grace::NONE,
    ) {
        rotation::retire(&w.store, &w.m, &limits(), &r)
            .await
            .expect("retire");
    }
    assert_eq!(w.fake.credentials_at_target(Slot::Single), 1);
    // …then is journaled as minting, and the process dies right after the mint, before the value
    // reached the store: the target holds a credential no version knows.
    let rid = "r-crashed";
    w.store
        .journal_append(&JournalRecord {
            secret_name: SecretName::parse(NAME).expect("name"),
            rotation_id: rid.into(),
            step: rotd_store::Step::Minting(rotd_store::Planned {
                slot: Slot::Single,
                started_from: Some(
                    w.store
                        .stages(NAME)
                        .await
                        .expect("stages")
                        .get(&StageLabel::current())
                        .cloned(),
                ),
            }),
            version_id: Some(VersionId::parse(rid).expect("id")),
        })
        .await
        .expect("journal");
    let orphan = rotd_core::Backend::mint(&w.fake, rid, Slot::Single)
        .await
        .expect("the mint that was never stored");
    let out = rotate(&w.store, &w.m, &limits(), None).await.expect("resume");
    assert!(out.resumed);
    assert!(!w.fake.accepts(&orphan), "the orphan was removed, not leaked");
    assert!(w.current_works().await);
    assert!(
        w.fake.credentials_at_target(Slot::Single) <= rotd_testkit::fake_backend::MINT_LIMIT,
        "never more than the target allows"
    );
}

#[tokio::test]
async fn retiring_takes_each_step_after_its_grace_and_journals_each() {
    // RAM's shape: deactivate an hour after the promotion, delete a day after that.
    let w = minting_world(rotd_engine::Grace {
        first: Duration::from_secs(3600),
        between_steps: Duration::from_secs(86_400),
    })
    .await;
    let old = w.value("ACSCurrent").await.expect("current");
    rotate(&w.store, &w.m, &limits(), None).await.expect("rotate");
    let j = w.store.journal_tail(NAME).await.expect("j");
    let first = rotation::pending_retire(&j, 2, w.m.grace).expect("step 1 owed");
    assert_eq!(first.step, 1);
    assert!(
        first.due > rotd_core::Clock::system().now() + chrono::Duration::minutes(59)
            && first.due <= rotd_core::Clock::system().now() + chrono::Duration::minutes(60),
        "an hour after the promotion, not the second grace"
    );
    assert!(
        w.fake.accepts(&old),
        "the old credential works during the grace period"
    );
    rotation::retire(&w.store, &w.m, &limits(), &first)
        .await
        .expect("step 1");
    assert!(!w.fake.accepts(&old), "deactivated");
    assert_eq!(
        w.fake.credentials_at_target(Slot::Single),
        2,
        "deactivated, not yet deleted"
    );
    let j = w.store.journal_tail(NAME).await.expect("j");
    let second = rotation::pending_retire(&j, 2, w.m.grace).expect("step 2 owed");
    assert_eq!(second.step, 2);
    assert!(
        second.due > rotd_core::Clock::system().now() + chrono::Duration::hours(23)
            && second.due <= rotd_core::Clock::system().now() + chrono::Duration::hours(24),
        "the second grace, a day after step 1, not the first one"
    );
    // A crash after step 2 ran but before it was journaled: it runs again, idempotently.
    rotd_core::Backend::retire(&w.fake, Slot::Single, &old, 2)
        .await
        .expect("step 2 before the crash");
    rotation::retire(&w.store, &w.m, &limits(), &second)
        .await
        .expect("step 2 again");
    assert_eq!(w.fake.credentials_at_target(Slot::Single), 1, "deleted");
    let j = w.store.journal_tail(NAME).await.expect("j");
    assert!(
        rotation::pending_retire(&j, 2, w.m.grace).is_none(),
        "nothing more owed"
    );
    assert!(w.current_works().await);
}
