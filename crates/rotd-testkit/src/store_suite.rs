//! The store conformance suite: one async function per case, each taking a fresh, empty [`Store`].
//!
//! Every store engine runs every case through [`store_conformance!`](crate::store_conformance), which
//! expands to one named `#[tokio::test]` per case, so a new case reaches every engine at once:
//!
//! ```ignore
//! async fn sqlite(keyring: Keyring) -> rotd_testkit::store_suite::Handle { .. }
//! rotd_testkit::store_conformance!(sqlite);
//! ```

use std::any::Any;

use chrono::Duration;
use rotd_core::{
    DataType, RotationInterval, RotationPolicy, RotationSchedule, Secret, SecretName, SecretType, StageLabel,
    Tag, Tags, VersionId,
};
use rotd_store::{
    DeleteMode, Expect, JournalRecord, Keyring, NewSecret, NewVersion, SecretUpdate, Selector, StageMove,
    Store, StoreError,
};

/// A store under test and whatever must live as long as it (a temp dir, a server fixture).
pub struct Handle {
    pub store: Store,
    pub guard: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Expands to one `#[tokio::test]` per suite case. `$factory` is an `async fn(Keyring) -> Handle`.
#[macro_export]
macro_rules! store_conformance {
    ($factory:path) => {
        $crate::store_conformance!(@cases $factory,
            create_and_describe_round_trip,
            create_twice_is_rejected,
            initial_version_is_current,
            put_default_stage_shifts_current_and_previous,
            put_explicit_stages_leave_current_alone,
            put_same_version_same_value_is_a_no_op,
            put_same_version_other_value_is_rejected,
            retention_drops_oldest_unlabelled_first,
            at_most_eight_stage_labels,
            update_stage_follows_vendor_rules,
            stage_moves_are_compare_and_set,
            promotion_is_one_transaction,
            selectors_must_agree,
            rejected_writes_change_nothing,
            delete_with_recovery_window_and_restore,
            force_delete_removes_everything,
            purge_removes_expired_secrets,
            cmk_rotation_and_rewrap,
            missing_cmk_is_a_clear_error,
            journal_is_ordered_and_survives_force_delete,
            access_keys_round_trip,
            metadata_updates,
            errors_never_contain_the_secret,
        );
    };
    (@cases $factory:path, $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let keyring = $crate::store_suite::keyring();
                let handle = $factory(keyring).await;
                $crate::store_suite::$case(&handle).await;
            }
        )+
    };
}

/// A fresh keyring with one CMK, `default`, at version 1.
pub fn keyring() -> Keyring {
    Keyring::generate(rotd_core::Clock::system().now())
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).expect("valid name")
}
fn vid(s: &str) -> VersionId {
    VersionId::parse(s).expect("valid version id")
}
fn stage(s: &str) -> StageLabel {
    StageLabel::parse(s).expect("valid stage")
}
fn text(version: &str, value: &str) -> NewVersion {
    NewVersion {
        version_id: vid(version),
        data_type: DataType::Text,
        value: Secret::from(value),
    }
}

fn generic(n: &str) -> NewSecret {
    new_secret(n, SecretType::Generic)
}

/// A secret of `kind` named `n` with every other field empty (no rotation policy, no tags, the
/// `default` CMK), for tests that create one directly in a store.
pub fn new_secret(n: &str, kind: SecretType) -> NewSecret {
    NewSecret {
        name: name(n),
        kind,
        description: String::new(),
        tags: Tags::default(),
        cmk_id: "default".into(),
        extended_config: None,
        rotation: None,
        policy: None,
        managed_by: None,
    }
}

async fn value_at(store: &Store, n: &str, s: &str) -> Option<(String, String)> {
    match store.get_value(n, &Selector::Stage(stage(s))).await {
        Ok(v) => Some((
            v.info.version_id.to_string(),
            v.value.expose_str().expect("text").to_owned(),
        )),
        Err(StoreError::StageNotFound { .. }) => None,
        Err(e) => panic!("get {n} {s}: {e}"),
    }
}

async fn stage_of(store: &Store, n: &str, s: &str) -> Option<String> {
    store
        .stages(n)
        .await
        .expect("stages")
        .get(&stage(s))
        .map(ToString::to_string)
}

async fn version_ids(store: &Store, n: &str) -> Vec<String> {
    store
        .list_versions(n)
        .await
        .expect("versions")
        .iter()
        .map(|v| v.version_id.to_string())
        .collect()
}

pub async fn create_and_describe_round_trip(h: &Handle) {
    let s = &h.store;
    let policy = RotationPolicy {
        enabled: true,
        schedule: RotationSchedule::Interval {
            interval: "30d".parse::<RotationInterval>().expect("interval"),
        },
        window_secs: Some(3600),
    };
    let new = NewSecret {
        name: name("app/db"),
        kind: SecretType::Rds,
        description: "orders database".into(),
        tags: Tags::new([
            Tag::new("team", "payments").expect("tag"),
            Tag::new("env", "prod").expect("tag"),
        ])
        .expect("tags"),
        extended_config: Some(
            r#"{"SecretSubType":"DoubleUsers","DBInstanceId":"rm-1","CustomData":{}}"#.into(),
        ),
        rotation: Some(policy.clone()),
        policy: Some(r#"{"Version":"1","Statement":[]}"#.into()),
        managed_by: Some("/etc/rotd/secrets.d/db.toml".into()),
        ..generic("app/db")
    };
    let created = s.create_secret(new.clone(), None).await.expect("create");
    let got = s.describe("app/db").await.expect("describe");
    assert_eq!(created, got);
    assert_eq!(got.kind, SecretType::Rds);
    assert_eq!(got.description, "orders database");
    assert_eq!(got.tags.get("team"), Some("payments"));
    assert_eq!(got.tags.len(), 2);
    assert_eq!(got.extended_config, new.extended_config);
    assert_eq!(got.rotation, Some(policy));
    assert_eq!(got.policy, new.policy);
    assert_eq!(got.managed_by.as_deref(), Some("/etc/rotd/secrets.d/db.toml"));
    assert!(got.planned_delete_at.is_none());
    assert!(
        (rotd_core::Clock::system().now() - got.created_at)
            .num_seconds()
            .abs()
            < 60
    );
    let listed = s.list().await.expect("list");
    assert_eq!(listed, vec![got]);
    assert!(matches!(
        s.describe("nope").await,
        Err(StoreError::SecretNotFound { .. })
    ));
}

pub async fn create_twice_is_rejected(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    let e = s
        .create_secret(generic("a"), Some(text("v9", "other")))
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");
    assert_eq!(
        version_ids(s, "a").await,
        ["v1"],
        "the rejected create changed nothing"
    );
}

pub async fn initial_version_is_current(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v1".into(), "one".into()))
    );
    assert_eq!(value_at(s, "a", "ACSPrevious").await, None);
    s.create_secret(generic("empty"), None)
        .await
        .expect("create without value");
    assert!(matches!(
        s.get_value("empty", &Selector::current()).await,
        Err(StoreError::StageNotFound { .. })
    ));
}

pub async fn put_default_stage_shifts_current_and_previous(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    let out = s.put_value("a", text("v2", "two"), None).await.expect("put v2");
    assert!(out.created);
    assert_eq!(out.stages, vec![stage("ACSCurrent")]);
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v2"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v1"));
    s.put_value("a", text("v3", "three"), None).await.expect("put v3");
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v3".into(), "three".into()))
    );
    assert_eq!(
        value_at(s, "a", "ACSPrevious").await,
        Some(("v2".into(), "two".into()))
    );
    let versions = s.list_versions("a").await.expect("versions");
    let v1 = versions
        .iter()
        .find(|v| v.version_id.as_str() == "v1")
        .expect("v1 kept");
    assert!(v1.stages.is_empty(), "the old previous loses its label");
    assert_eq!(version_ids(s, "a").await, ["v1", "v2", "v3"], "oldest first");
}

pub async fn put_explicit_stages_leave_current_alone(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "two"), None).await.expect("put v2");
    let out = s
        .put_value("a", text("v3", "three"), Some(vec![stage("MyPending")]))
        .await
        .expect("put v3");
    assert_eq!(out.stages, vec![stage("MyPending")]);
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v2"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v1"));
    // A custom label points at one version: putting it again moves it.
    s.put_value(
        "a",
        text("v4", "four"),
        Some(vec![stage("MyPending"), stage("Other")]),
    )
    .await
    .expect("put v4");
    assert_eq!(stage_of(s, "a", "MyPending").await.as_deref(), Some("v4"));
    assert_eq!(stage_of(s, "a", "Other").await.as_deref(), Some("v4"));
    // Explicitly including ACSCurrent behaves as the default.
    s.put_value(
        "a",
        text("v5", "five"),
        Some(vec![stage("ACSCurrent"), stage("Mine")]),
    )
    .await
    .expect("put v5");
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v5"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v2"));
}

pub async fn put_same_version_same_value_is_a_no_op(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "two"), None).await.expect("put v2");
    let again = s
        .put_value("a", text("v1", "one"), None)
        .await
        .expect("idempotent repeat");
    assert!(!again.created);
    assert!(again.stages.contains(&stage("ACSPrevious")));
    assert_eq!(
        stage_of(s, "a", "ACSCurrent").await.as_deref(),
        Some("v2"),
        "a repeat moves no label"
    );
    assert_eq!(version_ids(s, "a").await, ["v1", "v2"]);
}

pub async fn put_same_version_other_value_is_rejected(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    let e = s
        .put_value("a", text("v1", "changed"), None)
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::VersionConflict { .. }), "{e}");
    let bin = NewVersion {
        version_id: vid("v1"),
        data_type: DataType::Binary,
        value: Secret::from("one"),
    };
    assert!(matches!(
        s.put_value("a", bin, None).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v1".into(), "one".into()))
    );
}

pub async fn retention_drops_oldest_unlabelled_first(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    // v1 keeps a custom label, so it must survive while unlabelled versions go.
    s.update_version_stage("a", &stage("Keep"), None, Some(&vid("v1")))
        .await
        .expect("label v1");
    for i in 2..=14 {
        s.put_value("a", text(&format!("v{i}"), &i.to_string()), None)
            .await
            .expect("put");
        assert!(s.list_versions("a").await.expect("versions").len() <= 10);
    }
    let ids = version_ids(s, "a").await;
    assert_eq!(
        ids,
        ["v1", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14"]
    );
    assert_eq!(value_at(s, "a", "Keep").await, Some(("v1".into(), "1".into())));
}

pub async fn at_most_eight_stage_labels(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "2"), None).await.expect("put");
    for i in 0..6 {
        s.update_version_stage("a", &stage(&format!("L{i}")), None, Some(&vid("v1")))
            .await
            .expect("label");
    }
    let e = s
        .update_version_stage("a", &stage("L6"), None, Some(&vid("v1")))
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::LimitExceeded(_)), "{e}");
    let e = s
        .put_value("a", text("v3", "3"), Some(vec![stage("Ninth")]))
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::LimitExceeded(_)), "{e}");
    assert_eq!(
        version_ids(s, "a").await,
        ["v1", "v2"],
        "the refused put stored nothing"
    );
    assert_eq!(s.stages("a").await.expect("stages").len(), 8);
}

pub async fn update_stage_follows_vendor_rules(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "2"), None).await.expect("put");
    s.put_value("a", text("v3", "3"), Some(vec![stage("MyPendingLabel")]))
        .await
        .expect("stage v3");
    // The vendor's manual rotation recipe: move ACSCurrent to the staged version.
    s.update_version_stage("a", &stage("ACSCurrent"), None, Some(&vid("v3")))
        .await
        .expect("move current");
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v3"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v2"));
    // Remove a custom label, but only from where it is.
    let e = s
        .update_version_stage("a", &stage("MyPendingLabel"), Some(&vid("v1")), None)
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::StageConflict { .. }), "{e}");
    s.update_version_stage("a", &stage("MyPendingLabel"), Some(&vid("v3")), None)
        .await
        .expect("remove");
    assert_eq!(stage_of(s, "a", "MyPendingLabel").await, None);
    // Built-in labels can only be moved.
    let e = s
        .update_version_stage("a", &stage("ACSCurrent"), Some(&vid("v3")), None)
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert!(matches!(
        s.update_version_stage("a", &stage("X"), None, None).await,
        Err(StoreError::Invalid(_))
    ));
    // Move with both: from v3 to v1.
    s.update_version_stage("a", &stage("ACSPrevious"), Some(&vid("v2")), Some(&vid("v1")))
        .await
        .expect("move");
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v1"));
    let e = s
        .update_version_stage("a", &stage("X"), None, Some(&vid("v99")))
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::VersionNotFound { .. }), "{e}");
}

pub async fn stage_moves_are_compare_and_set(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "2"), Some(vec![stage("ACSPending")]))
        .await
        .expect("stage");
    let stale = [StageMove {
        stage: stage("ACSCurrent"),
        expect: Expect::At(vid("v0")),
        to: Some(vid("v2")),
    }];
    let e = s.move_stages("a", &stale).await.expect_err("must be refused");
    assert!(matches!(e, StoreError::StageConflict { .. }), "{e}");
    assert!(e.is_retryable());
    let absent = [StageMove {
        stage: stage("ACSPending"),
        expect: Expect::Absent,
        to: Some(vid("v1")),
    }];
    assert!(matches!(
        s.move_stages("a", &absent).await,
        Err(StoreError::StageConflict { .. })
    ));
    assert_eq!(
        stage_of(s, "a", "ACSCurrent").await.as_deref(),
        Some("v1"),
        "a failed CAS changes nothing"
    );
    assert_eq!(stage_of(s, "a", "ACSPending").await.as_deref(), Some("v2"));
}

pub async fn promotion_is_one_transaction(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "2"), Some(vec![stage("ACSPending")]))
        .await
        .expect("pending");
    let promote = [
        StageMove {
            stage: stage("ACSCurrent"),
            expect: Expect::At(vid("v1")),
            to: Some(vid("v2")),
        },
        StageMove {
            stage: stage("ACSPrevious"),
            expect: Expect::Any,
            to: Some(vid("v1")),
        },
        StageMove {
            stage: stage("ACSPending"),
            expect: Expect::At(vid("v2")),
            to: None,
        },
    ];
    let map = s.move_stages("a", &promote).await.expect("promote");
    assert_eq!(map.len(), 2);
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v2"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v1"));
    assert_eq!(stage_of(s, "a", "ACSPending").await, None);
    // Replaying the same promotion fails its CAS as a whole and changes nothing.
    assert!(matches!(
        s.move_stages("a", &promote).await,
        Err(StoreError::StageConflict { .. })
    ));
    assert_eq!(stage_of(s, "a", "ACSCurrent").await.as_deref(), Some("v2"));
    assert_eq!(stage_of(s, "a", "ACSPrevious").await.as_deref(), Some("v1"));
}

pub async fn selectors_must_agree(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.put_value("a", text("v2", "2"), None).await.expect("put");
    let v = s
        .get_value("a", &Selector::Version(vid("v1")))
        .await
        .expect("by version");
    assert_eq!(v.value.expose_str(), Some("1"));
    assert_eq!(v.info.stages, vec![stage("ACSPrevious")]);
    let v = s
        .get_value("a", &Selector::Both(vid("v2"), stage("ACSCurrent")))
        .await
        .expect("both");
    assert_eq!(v.info.version_id.as_str(), "v2");
    let e = s
        .get_value("a", &Selector::Both(vid("v1"), stage("ACSCurrent")))
        .await
        .expect_err("must be refused");
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert!(matches!(
        s.get_value("a", &Selector::Version(vid("v9"))).await,
        Err(StoreError::VersionNotFound { .. })
    ));
    assert!(matches!(
        s.get_value("zz", &Selector::current()).await,
        Err(StoreError::SecretNotFound { .. })
    ));
}

pub async fn rejected_writes_change_nothing(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    let too_big = NewVersion {
        version_id: vid("v2"),
        data_type: DataType::Binary,
        value: Secret::new(vec![7u8; rotd_core::MAX_VALUE_BYTES + 1]),
    };
    assert!(matches!(
        s.put_value("a", too_big, None).await,
        Err(StoreError::Invalid(_))
    ));
    let not_text = NewVersion {
        version_id: vid("v2"),
        data_type: DataType::Text,
        value: Secret::new(vec![0xff]),
    };
    assert!(matches!(
        s.put_value("a", not_text, None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.put_value("missing", text("v1", "x"), None).await,
        Err(StoreError::SecretNotFound { .. })
    ));
    assert_eq!(version_ids(s, "a").await, ["v1"]);
    let binary_max = NewVersion {
        version_id: vid("v3"),
        data_type: DataType::Binary,
        value: Secret::new(vec![0u8; rotd_core::MAX_VALUE_BYTES]),
    };
    s.put_value("a", binary_max, None)
        .await
        .expect("exactly the limit is fine");
    let got = s.get_value("a", &Selector::current()).await.expect("get");
    assert_eq!(got.info.data_type, DataType::Binary);
    assert_eq!(got.value.len(), rotd_core::MAX_VALUE_BYTES);
}

pub async fn delete_with_recovery_window_and_restore(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    for days in [6, 31] {
        assert!(matches!(
            s.delete_secret("a", DeleteMode::Recovery { days }).await,
            Err(StoreError::Invalid(_))
        ));
    }
    let planned = s
        .delete_secret("a", DeleteMode::Recovery { days: 7 })
        .await
        .expect("delete");
    let diff = planned - rotd_core::Clock::system().now();
    assert!(
        diff > Duration::days(7) - Duration::minutes(1) && diff <= Duration::days(7),
        "{diff}"
    );
    assert_eq!(
        s.describe("a").await.expect("still described").planned_delete_at,
        Some(planned)
    );
    assert!(matches!(
        s.put_value("a", text("v2", "2"), None).await,
        Err(StoreError::PendingDeletion { .. })
    ));
    assert!(matches!(
        s.get_value("a", &Selector::current()).await,
        Err(StoreError::PendingDeletion { .. })
    ));
    assert!(matches!(
        s.update_secret(
            "a",
            SecretUpdate {
                description: Some("x".into()),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::PendingDeletion { .. })
    ));
    assert!(matches!(
        s.create_secret(generic("a"), None).await,
        Err(StoreError::PendingDeletion { .. })
    ));
    assert!(matches!(
        s.delete_secret("a", DeleteMode::Recovery { days: 30 }).await,
        Err(StoreError::PendingDeletion { .. })
    ));
    s.restore_secret("a").await.expect("restore");
    assert!(matches!(
        s.restore_secret("a").await,
        Err(StoreError::NotPendingDeletion { .. })
    ));
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v1".into(), "1".into())),
        "nothing was lost"
    );
    s.put_value("a", text("v2", "2"), None)
        .await
        .expect("writable again");
}

pub async fn force_delete_removes_everything(h: &Handle) {
    let s = &h.store;
    let mut new = generic("a");
    new.tags = Tags::new([Tag::new("k", "v").expect("tag")]).expect("tags");
    s.create_secret(new, Some(text("v1", "1"))).await.expect("create");
    s.put_value("a", text("v2", "2"), None).await.expect("put");
    s.delete_secret("a", DeleteMode::Force).await.expect("force");
    assert!(matches!(
        s.describe("a").await,
        Err(StoreError::SecretNotFound { .. })
    ));
    assert!(s.list().await.expect("list").is_empty());
    assert!(matches!(
        s.delete_secret("a", DeleteMode::Force).await,
        Err(StoreError::SecretNotFound { .. })
    ));
    // The name is free again, with no leftover versions, labels or tags.
    s.create_secret(generic("a"), Some(text("v1", "new")))
        .await
        .expect("recreate");
    assert_eq!(version_ids(s, "a").await, ["v1"]);
    assert!(s.describe("a").await.expect("describe").tags.is_empty());
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v1".into(), "new".into()))
    );
}

pub async fn purge_removes_expired_secrets(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.create_secret(generic("b"), Some(text("v1", "1")))
        .await
        .expect("create");
    s.delete_secret("a", DeleteMode::Recovery { days: 7 })
        .await
        .expect("delete");
    assert!(
        s.purge_expired(rotd_core::Clock::system().now())
            .await
            .expect("purge")
            .is_empty(),
        "not yet expired"
    );
    let purged = s
        .purge_expired(rotd_core::Clock::system().now() + Duration::days(8))
        .await
        .expect("purge");
    assert_eq!(purged, ["a"]);
    assert!(matches!(
        s.describe("a").await,
        Err(StoreError::SecretNotFound { .. })
    ));
    assert!(s.describe("b").await.is_ok());
}

pub async fn cmk_rotation_and_rewrap(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "one")))
        .await
        .expect("create");
    let (ak, ak_secret) = s
        .create_access_key("admin", "{}", "default")
        .await
        .expect("access key");
    let usage = s.cmk_usage().await.expect("usage");
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].cmk_version, usage[0].data_keys), (1, 2));

    // Rotate: a keyring with the same version 1 plus a new version 2.
    let mut rotated = Keyring::parse(&handle_keyring_bytes(h)).expect("reparse");
    assert_eq!(rotated.rotate("default", rotd_core::Clock::system().now()), 2);
    s.replace_keyring(Keyring::parse(&rotated.to_bytes()).expect("copy"));
    s.put_value("a", text("v2", "two"), None)
        .await
        .expect("put after rotation");
    let usage = s.cmk_usage().await.expect("usage");
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.cmk_version, u.data_keys))
            .collect::<Vec<_>>(),
        [(1, 2), (2, 1)]
    );
    assert_eq!(
        value_at(s, "a", "ACSPrevious").await,
        Some(("v1".into(), "one".into())),
        "old versions decrypt"
    );

    let mut calls = 0;
    let changed = s.rewrap_all(|_, _| calls += 1).await.expect("rewrap");
    assert_eq!(changed, 2);
    assert_eq!(calls, 3);
    let usage = s.cmk_usage().await.expect("usage");
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.cmk_version, u.data_keys))
            .collect::<Vec<_>>(),
        [(2, 3)]
    );
    assert_eq!(
        s.rewrap_all(|_, _| {}).await.expect("rewrap again"),
        0,
        "rewrap is idempotent"
    );

    // After rewrap, a keyring holding only version 2 reads everything.
    let mut only_v2 = rotated.to_bytes().to_vec();
    let parsed: serde_json::Value = serde_json::from_slice(&only_v2).expect("json");
    let keys: Vec<_> = parsed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["version"] == 2)
        .cloned()
        .collect();
    only_v2 =
        serde_json::to_vec(&serde_json::json!({"format": parsed["format"], "keys": keys})).expect("json");
    s.replace_keyring(Keyring::parse(&only_v2).expect("v2 only"));
    assert_eq!(
        value_at(s, "a", "ACSPrevious").await,
        Some(("v1".into(), "one".into()))
    );
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v2".into(), "two".into()))
    );
    let (_, got) = s.access_key(&ak.id).await.expect("read").expect("exists");
    assert_eq!(got, ak_secret);
}

/// The suite's keyring bytes. The factory received `keyring()`'s output; we cannot get it back from
/// the store, so the suite stores a copy in the guard when the factory used [`keyring_for`].
fn handle_keyring_bytes(h: &Handle) -> Vec<u8> {
    h.guard
        .downcast_ref::<GuardWithKeyring>()
        .map(|g| g.keyring_bytes.clone())
        .expect("store factories must return their guard through keyring_guard()")
}

/// A guard that also remembers the keyring the store was opened with, for the CMK rotation case.
pub struct GuardWithKeyring {
    pub keyring_bytes: Vec<u8>,
    pub inner: Box<dyn Any + Send>,
}

impl std::fmt::Debug for GuardWithKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardWithKeyring { .. }")
    }
}

/// Wraps a factory's guard together with a copy of the keyring it opened the store with.
pub fn keyring_guard(keyring: &Keyring, inner: impl Any + Send) -> Box<dyn Any + Send> {
    Box::new(GuardWithKeyring {
        keyring_bytes: keyring.to_bytes().to_vec(),
        inner: Box::new(inner),
    })
}

pub async fn missing_cmk_is_a_clear_error(h: &Handle) {
    let s = &h.store;
    let mut new = generic("a");
    new.cmk_id = "nope".into();
    let e = s
        .create_secret(new, Some(text("v1", "1")))
        .await
        .expect_err("must be refused");
    assert_eq!(e.to_string(), "CMK nope is not in the keyring");
    assert!(matches!(
        s.describe("a").await,
        Err(StoreError::SecretNotFound { .. })
    ));
}

pub async fn journal_is_ordered_and_survives_force_delete(h: &Handle) {
    use rotd_core::Slot;
    use rotd_store::{Planned, Step};
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    let planned = Planned {
        slot: Slot::Clone,
        started_from: Some(Some(vid("v1"))),
    };
    let mut ids = Vec::new();
    for step in [
        Step::Pending(planned.clone()),
        Step::Applied { slot: Slot::Clone },
        Step::Verified { slot: Slot::Clone },
        Step::Promoted {
            slot: Slot::Clone,
            retire: None,
        },
    ] {
        let rec = JournalRecord {
            secret_name: name("a"),
            rotation_id: "r1".into(),
            step,
            version_id: Some(vid("v2")),
        };
        ids.push(s.journal_append(&rec).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let next = JournalRecord {
        secret_name: name("a"),
        rotation_id: "r2".into(),
        step: Step::Pending(Planned {
            slot: Slot::Primary,
            started_from: Some(None),
        }),
        version_id: Some(vid("v3")),
    };
    s.journal_append(&next).await.expect("append");
    // The tail from the last promotion: that entry and everything after it, nothing before.
    let tail = s.journal_since_last("a", Some("promoted")).await.expect("tail");
    assert_eq!(
        tail.iter()
            .map(|e| (e.rotation_id.as_str(), e.kind().as_str()))
            .collect::<Vec<_>>(),
        [("r1", "promoted"), ("r2", "pending")]
    );
    let all = s
        .journal_since_last("a", Some("never-happened"))
        .await
        .expect("all");
    assert_eq!(
        all.len(),
        6,
        "without such a step the whole journal is returned (with the `created` marker)"
    );
    s.delete_secret("a", DeleteMode::Force).await.expect("force");
    let j = s.journal("a").await.expect("journal");
    assert_eq!(
        j.iter().map(|e| e.kind().as_str()).collect::<Vec<_>>(),
        ["created", "pending", "applied", "verified", "promoted", "pending"]
    );
    assert_eq!(
        j[1].step,
        Step::Pending(planned),
        "typed details read back as written"
    );
    assert_eq!(j[1].version_id.as_deref(), Some("v2"));
}

pub async fn access_keys_round_trip(h: &Handle) {
    let s = &h.store;
    let (info, secret) = s
        .create_access_key("first admin", r#"{"Actions":["kms:*"]}"#, "default")
        .await
        .expect("create");
    assert!(info.id.starts_with("LTAI") && info.id.len() == 24, "{}", info.id);
    assert_eq!(secret.len(), 30);
    let (info2, secret2) = s
        .create_access_key("second", "{}", "default")
        .await
        .expect("create");
    assert_ne!(info.id, info2.id);
    assert!(!secret.constant_time_eq(&secret2));
    let listed = s.list_access_keys().await.expect("list");
    assert_eq!(listed.len(), 2);
    let (got, got_secret) = s.access_key(&info.id).await.expect("get").expect("exists");
    assert_eq!(got, info);
    assert_eq!(got_secret, secret);
    assert!(s.access_key("LTAInope").await.expect("get").is_none());
}

pub async fn metadata_updates(h: &Handle) {
    let s = &h.store;
    s.create_secret(generic("a"), Some(text("v1", "1")))
        .await
        .expect("create");
    let next = rotd_core::Clock::system().now() + Duration::days(3);
    let updated = s
        .update_secret(
            "a",
            SecretUpdate {
                description: Some("new".into()),
                tags: Some(Tags::new([Tag::new("x", "y").expect("tag")]).expect("tags")),
                managed_by: Some(Some("/f.toml".into())),
                next_rotation_at: Some(Some(next)),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.description, "new");
    assert_eq!(updated.tags.get("x"), Some("y"));
    assert_eq!(updated.managed_by.as_deref(), Some("/f.toml"));
    assert_eq!(
        updated.next_rotation_at.map(|t| t.timestamp()),
        Some(next.timestamp())
    );
    let cleared = s
        .update_secret(
            "a",
            SecretUpdate {
                tags: Some(Tags::default()),
                managed_by: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert!(cleared.tags.is_empty());
    assert_eq!(cleared.managed_by, None);
    assert_eq!(cleared.description, "new", "fields not named stay");
    assert_eq!(
        value_at(s, "a", "ACSCurrent").await,
        Some(("v1".into(), "1".into()))
    );
}

pub async fn errors_never_contain_the_secret(h: &Handle) {
    let s = &h.store;
    let secret = "S3cr3t-Value-That-Must-Not-Leak";
    s.create_secret(generic("a"), Some(text("v1", secret)))
        .await
        .expect("create");
    let mut errors: Vec<StoreError> = vec![
        s.put_value("a", text("v1", &format!("{secret}-other")), None)
            .await
            .expect_err("must be refused"),
        s.create_secret(generic("a"), Some(text("v1", secret)))
            .await
            .expect_err("must be refused"),
        s.put_value("a", text("v2", &format!("{secret}{}", "x".repeat(40_000))), None)
            .await
            .expect_err("must be refused"),
    ];
    let mut bad_cmk = generic("b");
    bad_cmk.cmk_id = "nope".into();
    errors.push(
        s.create_secret(bad_cmk, Some(text("v1", secret)))
            .await
            .expect_err("must be refused"),
    );
    for e in &errors {
        for rendered in [e.to_string(), format!("{e:?}")] {
            assert!(!rendered.contains(secret), "error leaks the secret: {rendered}");
        }
    }
    let v = s.get_value("a", &Selector::current()).await.expect("get");
    assert!(
        !format!("{v:?}").contains(secret),
        "VersionValue's Debug leaks the secret"
    );
}
