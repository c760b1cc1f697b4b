//! The scheduler loop itself (not only `decide`) against the fake backend and a real SQLite store: a
//! secret with no value is rotated at once, and no reload can start a second rotation of one secret.

use std::sync::Arc;
use std::time::Duration;

use rotd_core::{
    Backend, DataType, PasswordPolicy, RotationInterval, RotationPolicy, RotationSchedule, SecretName,
    SecretType, Slot, StageLabel, Tags, VersionId,
};
use rotd_engine::rotation::step;
use rotd_engine::{Engine, EngineConfig, Managed, Metrics, SecretEntry};
use rotd_store::{NewSecret, NewVersion, Selector, Store};
use rotd_testkit::fake_backend::{FakeBackend, account_value};

const NAME: &str = "db/app";

fn policy() -> RotationPolicy {
    RotationPolicy {
        enabled: true,
        schedule: RotationSchedule::Interval {
            interval: RotationInterval::from_secs(30 * 86_400),
        },
        window_secs: None,
    }
}

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("rotd.db"), rotd_testkit::store_suite::keyring())
        .await
        .expect("store")
}

async fn declare(store: &Store, initial: Option<NewVersion>) {
    declare_as(store, NAME, Some(policy()), initial).await;
}

/// A declared secret named `name` (managed by a file) with its rotation policy and first value.
async fn declare_as(
    store: &Store,
    name: &str,
    rotation: Option<RotationPolicy>,
    initial: Option<NewVersion>,
) {
    let new = NewSecret {
        name: SecretName::parse(name).expect("name"),
        kind: SecretType::Rds,
        description: String::new(),
        tags: Tags::default(),
        cmk_id: "default".into(),
        extended_config: None,
        rotation,
        policy: None,
        managed_by: Some(format!("/etc/rotd/secrets.d/{}.toml", name.replace('/', "-"))),
    };
    store.create_secret(new, initial).await.expect("create");
}

/// An account value stored as version `id`.
fn version(id: &str, account: &str, password: &str) -> NewVersion {
    NewVersion {
        version_id: VersionId::parse(id).expect("id"),
        data_type: DataType::Text,
        value: account_value(account, password),
    }
}

fn entry(fake: &FakeBackend) -> SecretEntry {
    SecretEntry {
        managed: Managed {
            name: SecretName::parse(NAME).expect("name"),
            kind: SecretType::Rds,
            backend: Arc::new(fake.clone()) as Arc<dyn Backend>,
            password: PasswordPolicy::default(),
            grace: rotd_engine::Grace::NONE,
        },
        policy: Some(policy()),
        hooks: Vec::new(),
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        poll: Duration::from_millis(20),
        ..Default::default()
    }
}

async fn value(store: &Store, stage: StageLabel) -> Option<rotd_core::Secret> {
    store
        .get_value(NAME, &Selector::Stage(stage))
        .await
        .ok()
        .map(|v| v.value)
}

fn account_of(v: &rotd_core::Secret) -> String {
    let doc: serde_json::Value = serde_json::from_slice(v.expose_secret()).expect("json");
    doc["AccountName"].as_str().expect("name").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_dual_secret_without_a_value_gets_both_accounts_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    declare(&store, None).await;
    let fake = FakeBackend::dual();
    let engine = Engine::new(store.clone(), config(), Metrics::default());
    engine.set_secrets(vec![entry(&fake)]).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    let start = rotd_core::Clock::system().instant();
    while value(&store, StageLabel::previous()).await.is_none()
        && rotd_core::Clock::system().elapsed(start) < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    let current = value(&store, StageLabel::current())
        .await
        .expect("ACSCurrent exists long before the first scheduled rotation (30 days)");
    let previous = value(&store, StageLabel::previous())
        .await
        .expect("ACSPrevious too");
    assert_eq!(
        account_of(&current),
        fake.account(Slot::Primary),
        "ACSCurrent is the first account"
    );
    assert_eq!(
        account_of(&previous),
        fake.account(Slot::Clone),
        "ACSPrevious is the clone"
    );
    assert!(fake.accepts(&current) && fake.accepts(&previous), "both log in");
    let meta = store.describe(NAME).await.expect("meta");
    assert!(
        meta.next_rotation_at.expect("scheduled")
            > rotd_core::Clock::system().now() + chrono::Duration::days(29),
        "and the next rotation is a whole interval away, so the clone is reset then"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_never_starts_two_rotations_of_one_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    let fake = FakeBackend::single();
    fake.set_password(Slot::Single, "imported-pw");
    declare(&store, Some(version("v0", "app", "imported-pw"))).await;
    let engine = Engine::new(store.clone(), config(), Metrics::default());
    engine.set_secrets(vec![entry(&fake)]).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    // Reload as fast as possible while 50 rotations are requested, the secret's entry dropped and
    // replaced each time (a reload without its file, a backend that failed to build, the rebuild after
    // an admin credential rotated).
    let storm = {
        let engine = engine.clone();
        let fake = fake.clone();
        tokio::spawn(async move {
            loop {
                engine.set_secrets(Vec::new()).await;
                tokio::task::yield_now().await;
                engine.set_secrets(vec![entry(&fake)]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(
            store
                .add_request(NAME, rotd_store::RequestKind::Rotate, None)
                .await
                .expect("request"),
        );
    }
    let start = rotd_core::Clock::system().instant();
    loop {
        let mut open = 0;
        for id in &ids {
            if store
                .request(*id)
                .await
                .expect("request")
                .is_none_or(|r| r.done_at.is_none())
            {
                open += 1;
            }
        }
        if open == 0 || rotd_core::Clock::system().elapsed(start) > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    storm.abort();
    let _ = stop.send(true);
    let _ = task.await;
    let journal = store.journal(NAME).await.expect("journal");
    let mut open: Option<String> = None;
    let mut pendings = 0;
    for e in &journal {
        match e.kind().as_str() {
            step::PENDING => {
                assert!(
                    open.is_none(),
                    "a second pending ({}) while {:?} was open: {:?}",
                    e.rotation_id,
                    open,
                    journal
                        .iter()
                        .map(|e| (&e.rotation_id, e.kind().as_str()))
                        .collect::<Vec<_>>()
                );
                open = Some(e.rotation_id.clone());
                pendings += 1;
            }
            step::PROMOTED | step::ABANDONED => open = None,
            _ => {}
        }
    }
    assert!(pendings >= 1, "rotations ran");
    assert!(fake.accepts(&value(&store, StageLabel::current()).await.expect("current")));
}

/// Runs the engine until request `id` is done; returns its result.
async fn until_done(store: &Store, engine: &Arc<Engine>, id: i64) -> String {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    let start = rotd_core::Clock::system().instant();
    let result = loop {
        if let Some(r) = store.request(id).await.expect("request")
            && let Some(result) = r.result
        {
            break result.to_string();
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(20),
            "request {id} never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(true);
    let _ = task.await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_abandons_a_rotation_that_cannot_finish_unless_it_would_kill_current() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    let fake = FakeBackend::dual();
    fake.set_password(Slot::Primary, "p0");
    fake.set_password(Slot::Clone, "c0");
    declare(&store, Some(version("v0", "app", "p0"))).await;
    store
        .put_value(
            NAME,
            version("c0", "app_clone", "c0"),
            Some(vec![StageLabel::previous()]),
        )
        .await
        .expect("clone value");
    // The clone's apply fails permanently: quarantined, with the rotation open at `pending`.
    fake.fail_next(rotd_testkit::fake_backend::Op::Apply, 100, true);
    let engine = Engine::new(store.clone(), config(), Metrics::default());
    engine.set_secrets(vec![entry(&fake)]).await;
    let id = store
        .add_request(NAME, rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(r.starts_with("quarantined"), "{r}");
    let open = rotd_engine::open_rotation(&store.journal_tail(NAME).await.expect("j")).expect("open");

    let id = store
        .add_request(NAME, rotd_store::RequestKind::Abandon, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(r.starts_with("ok: abandoned"), "{r}");
    assert!(rotd_engine::open_rotation(&store.journal_tail(NAME).await.expect("j")).is_none());
    let stages = store.stages(NAME).await.expect("stages");
    assert!(!stages.contains_key(&StageLabel::pending()), "ACSPending removed");
    assert!(
        store
            .get_value(NAME, &Selector::Version(open.version_id.clone()))
            .await
            .is_ok(),
        "the abandoned value is kept as a version"
    );
    let id = store
        .add_request(NAME, rotd_store::RequestKind::Abandon, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(r.starts_with("error: ") && r.contains("no open rotation"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoning_a_single_account_rotation_past_applied_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    let fake = FakeBackend::single();
    fake.set_password(Slot::Single, "imported-pw");
    declare(&store, Some(version("v0", "app", "imported-pw"))).await;
    fake.fail_next(rotd_testkit::fake_backend::Op::Verify, 1_000, true);
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            failure: rotd_engine::FailurePolicy {
                max_attempts: 1,
                backoff_base: Duration::from_secs(3600),
                backoff_max: Duration::from_secs(3600),
            },
            ..config()
        },
        Metrics::default(),
    );
    engine.set_secrets(vec![entry(&fake)]).await;
    let id = store
        .add_request(NAME, rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(r.starts_with("error"), "retried, not quarantined: {r}");
    let id = store
        .add_request(NAME, rotd_store::RequestKind::Abandon, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(r.contains("refused") && r.contains("past applied"), "{r}");
    let open = rotd_engine::open_rotation(&store.journal_tail(NAME).await.expect("j")).expect("still open");
    assert_eq!(open.step.as_str(), step::APPLIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_host_does_not_hold_every_slot_of_its_backend_kind() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    // Two secrets on host A (one shared fake server, hung), one on host B; per_backend = 2.
    let host_a = FakeBackend::single();
    host_a.set_password(Slot::Single, "imported-pw");
    let host_b = FakeBackend::single();
    host_b.set_password(Slot::Single, "imported-pw");
    let mut entries = Vec::new();
    for (name, fake) in [
        ("a/one", host_a.on_target("fake host-a")),
        ("a/two", host_a.on_target("fake host-a")),
        ("b/one", host_b.on_target("fake host-b")),
    ] {
        declare_as(&store, name, None, Some(version("v0", "app", "imported-pw"))).await;
        let mut e = entry(&fake);
        e.managed.name = SecretName::parse(name).expect("name");
        e.policy = None;
        entries.push(e);
    }
    host_a.hang(rotd_testkit::fake_backend::Op::Apply);
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            per_backend: 2,
            per_target: 1,
            max_concurrent: 4,
            ..config()
        },
        Metrics::default(),
    );
    engine.set_secrets(entries).await;
    store
        .add_request("a/one", rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    store
        .add_request("a/two", rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = store
        .add_request("b/one", rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    let r = until_done(&store, &engine, id).await;
    assert!(
        r.starts_with("ok"),
        "host B rotated while host A hung with two secrets: {r}"
    );
    host_a.unhang(rotd_testkit::fake_backend::Op::Apply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_host_with_more_due_secrets_than_slots_holds_only_its_per_target_share() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    // Six secrets on host A (hung), one on host B; four rotations at once, two per host. Were the
    // rotations queued behind host A to hold their global slot while they wait for A, host A's six
    // would take all four and host B would wait for the step timeout.
    let host_a = FakeBackend::single();
    host_a.set_password(Slot::Single, "imported-pw");
    let host_b = FakeBackend::single();
    host_b.set_password(Slot::Single, "imported-pw");
    let mut entries = Vec::new();
    let mut names: Vec<(String, FakeBackend)> = (0..6)
        .map(|i| (format!("a/s{i}"), host_a.on_target("fake host-a")))
        .collect();
    names.push(("b/one".to_owned(), host_b.on_target("fake host-b")));
    for (name, fake) in &names {
        declare_as(&store, name, None, Some(version("v0", "app", "imported-pw"))).await;
        let mut e = entry(fake);
        e.managed.name = SecretName::parse(name.as_str()).expect("name");
        e.policy = None;
        entries.push(e);
    }
    host_a.hang(rotd_testkit::fake_backend::Op::Apply);
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            max_concurrent: 4,
            per_backend: 4,
            per_target: 2,
            ..config()
        },
        Metrics::default(),
    );
    engine.set_secrets(entries).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    for (name, _) in &names[..6] {
        store
            .add_request(name, rotd_store::RequestKind::Rotate, None)
            .await
            .expect("request");
    }
    // Host A's six rotations are all under way (two hung in apply, four waiting) before B's request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!((0..6).all(|i| engine.is_running(&format!("a/s{i}"))));
    let id = store
        .add_request("b/one", rotd_store::RequestKind::Rotate, None)
        .await
        .expect("request");
    let start = rotd_core::Clock::system().instant();
    let r = loop {
        if let Some(r) = store.request(id).await.expect("request")
            && let Some(result) = r.result
        {
            break result.to_string();
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(10),
            "host B's rotation never finished while host A hung"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(r.starts_with("ok"), "{r}");
    host_a.unhang(rotd_testkit::fake_backend::Op::Apply);
    let _ = stop.send(true);
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_catch_up_spread() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(&dir).await;
    let fake = FakeBackend::single();
    fake.set_password(Slot::Single, "imported-pw");
    let mut entries = Vec::new();
    // Three secrets whose rotation fell due a day ago, while the daemon was down.
    for name in ["c/one", "c/two", "c/three"] {
        declare_as(
            &store,
            name,
            Some(policy()),
            Some(version("v0", "app", "imported-pw")),
        )
        .await;
        store
            .update_secret(
                name,
                rotd_store::SecretUpdate {
                    last_rotation_at: Some(Some(
                        rotd_core::Clock::system().now() - chrono::Duration::days(31),
                    )),
                    ..Default::default()
                },
            )
            .await
            .expect("overdue");
        let mut e = entry(&fake);
        e.managed.name = SecretName::parse(name).expect("name");
        entries.push(e);
    }
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            catch_up_spread: Duration::from_secs(3600),
            ..config()
        },
        Metrics::default(),
    );
    engine.set_secrets(entries.clone()).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGHUP: the same files again.
    engine.set_secrets(entries).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop.send(true);
    let _ = task.await;
    let mut rotated = 0;
    for name in ["c/one", "c/two", "c/three"] {
        let j = store.journal(name).await.expect("journal");
        rotated += usize::from(j.iter().any(|e| e.kind().as_str() == step::PROMOTED));
    }
    assert_eq!(
        rotated, 1,
        "the most overdue starts now; the others keep their slots over the next hour, reload or not"
    );
}

// ---- the loop driven through time by a manual clock ---------------------------------------------

/// 2030-01-01T00:00:00Z: far from the machine's own clock, so nothing here can pass by reading it.
fn t0() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_893_456_000, 0).expect("t0")
}

/// How many rotations of `name` were promoted so far.
async fn promotions(store: &Store, name: &str) -> usize {
    store
        .journal(name)
        .await
        .expect("journal")
        .iter()
        .filter(|e| matches!(e.step, rotd_store::Step::Promoted { .. }))
        .count()
}

/// Whether `n` rotations were promoted and the secret's task has ended (it records the rotation time
/// after the promotion: moving the clock before that would change what it records).
async fn settled(store: &Store, engine: &Engine, n: usize) -> bool {
    promotions(store, NAME).await == n && !engine.is_running(NAME)
}

/// Waits (real time, bounded) until `cond` holds; the manual clock does not move meanwhile.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = rotd_core::Clock::system().instant();
    while !cond().await {
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(20),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_rotates_each_secret_on_its_nominal_due_time_through_a_year_of_a_manual_clock() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = rotd_core::Clock::manual(t0());
    let store = store(&dir).await.with_clock(clock.clone());
    // 30 days with a 6-hour window: each start lands at a fixed offset inside the window.
    let windowed = RotationPolicy {
        window_secs: Some(6 * 3600),
        ..policy()
    };
    declare_as(&store, NAME, Some(windowed.clone()), None).await;
    let fake = FakeBackend::dual();
    let mut e = entry(&fake);
    e.policy = Some(windowed);
    let engine = Engine::new(store.clone(), config(), Metrics::default());
    engine.set_secrets(vec![e]).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));

    // The first value at once, at t0 on the manual clock.
    eventually("the first value", || settled(&store, &engine, 2)).await;
    let first = store.describe(NAME).await.expect("meta");
    assert_eq!(first.last_rotation_at, Some(t0()), "stamped by the manual clock");
    let mut due = first.next_rotation_at.expect("scheduled");
    assert_eq!(
        due,
        t0() + chrono::Duration::days(30),
        "NextRotationDate = last + interval"
    );

    for cycle in 1..=12 {
        let before = promotions(&store, NAME).await;
        let live = value(&store, StageLabel::current()).await.expect("current");
        // A minute before the due time nothing starts, however long the loop gets to look.
        clock.set(due - chrono::Duration::minutes(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            promotions(&store, NAME).await,
            before,
            "cycle {cycle}: nothing before due"
        );
        // Past the whole window the rotation has started and finishes.
        clock.set(due + chrono::Duration::hours(6));
        eventually("the scheduled rotation", || settled(&store, &engine, before + 1)).await;
        let current = value(&store, StageLabel::current()).await.expect("current");
        assert_ne!(
            account_of(&current),
            account_of(&live),
            "cycle {cycle}: the accounts alternate"
        );
        assert!(
            fake.accepts(&live),
            "cycle {cycle}: the credential applications held still works"
        );
        let meta = store.describe(NAME).await.expect("meta");
        // The rotation is recorded at its nominal due time, not at its jittered start or completion,
        // so the window never compounds.
        assert_eq!(meta.last_rotation_at, Some(due), "cycle {cycle}");
        let next = meta.next_rotation_at.expect("scheduled");
        assert_eq!(next, due + chrono::Duration::days(30), "cycle {cycle}");
        due = next;
    }
    assert_eq!(
        due,
        t0() + chrono::Duration::days(13 * 30),
        "no drift over a year"
    );
    let _ = stop.send(true);
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_retires_a_minted_credential_after_each_grace() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = rotd_core::Clock::manual(t0());
    let store = store(&dir).await.with_clock(clock.clone());
    declare_as(&store, NAME, Some(policy()), None).await;
    let fake = FakeBackend::minting();
    let mut e = entry(&fake);
    // RAM's shape: deactivate an hour after the promotion, delete a day after that.
    e.managed.grace = rotd_engine::Grace {
        first: Duration::from_secs(3600),
        between_steps: Duration::from_secs(86_400),
    };
    let engine = Engine::new(store.clone(), config(), Metrics::default());
    engine.set_secrets(vec![e]).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));

    eventually("the first value", || settled(&store, &engine, 1)).await;
    let old = value(&store, StageLabel::current()).await.expect("first key");
    let due = store
        .describe(NAME)
        .await
        .expect("meta")
        .next_rotation_at
        .expect("due");
    clock.set(due);
    eventually("the second key", || settled(&store, &engine, 2)).await;
    let promoted_at = clock.now();
    assert!(fake.accepts(&old), "the old key works during the grace");
    assert_eq!(fake.credentials_at_target(Slot::Single), 2);

    clock.set(promoted_at + chrono::Duration::minutes(59));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fake.accepts(&old), "still inside the first grace");
    clock.set(promoted_at + chrono::Duration::minutes(61));
    eventually("the old key deactivated", || async {
        !fake.accepts(&old) && !engine.is_running(NAME)
    })
    .await;
    assert_eq!(
        fake.credentials_at_target(Slot::Single),
        2,
        "deactivated, not deleted"
    );

    let deactivated_at = clock.now();
    clock.set(deactivated_at + chrono::Duration::hours(23));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.credentials_at_target(Slot::Single),
        2,
        "inside the second grace"
    );
    clock.set(deactivated_at + chrono::Duration::hours(25));
    eventually("the old key deleted", || async {
        fake.credentials_at_target(Slot::Single) == 1
    })
    .await;
    let current = value(&store, StageLabel::current()).await.expect("current");
    assert!(fake.accepts(&current), "the new key works throughout");
    let _ = stop.send(true);
    let _ = task.await;
}
