//! Bulk secrets (the vendor's "Create bulk secrets"): 1,000 dual Redis secrets on one real server, their
//! 2,000 ACL users made by `create_accounts`, all due at the same instant of the engine's manual clock.
//! The real scheduler loop and SQLite store rotate every one: each new `ACSCurrent` logs in with a fresh
//! `AUTH`, each old one (now `ACSPrevious`) still does, the labels and versions are where a dual rotation
//! puts them, and after a server restart every `ACSCurrent` still logs in, so `ACL SAVE` (coalesced across
//! the rotations, `pool.rs`) persisted all 1,000 changes. The rate is printed, never asserted; the
//! benchmark `benches/bulk_rotation.rs` measures it against a raw loop.

mod common;

use std::time::Duration;

use rotd_backend_redis::Persist;
use rotd_core::{Backend, Slot, StageLabel, VersionId};
use rotd_engine::EngineConfig;
use rotd_store::Step;

const SECRETS: usize = 1000;

/// The bulk tuning config/README.md gives for many secrets on one server.
fn bulk_tuning() -> EngineConfig {
    EngineConfig {
        max_concurrent: 128,
        per_backend: 128,
        per_target: 96,
        ..EngineConfig::default()
    }
}

/// Logs every value in `values` in at `port`, 32 at a time; returns the indexes that were refused.
async fn refused(port: u16, values: Vec<(usize, rotd_core::Secret)>) -> Vec<usize> {
    let mut bad = Vec::new();
    for chunk in values.chunks(32) {
        let logins: Vec<_> = chunk
            .iter()
            .map(|(i, v)| {
                let (i, v) = (*i, v.clone());
                tokio::spawn(async move { (i, common::logs_in(port, &v).await) })
            })
            .collect();
        for l in logins {
            let (i, ok) = l.await.expect("login");
            if !ok {
                bad.push(i);
            }
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_secrets_on_one_server_due_at_once_all_rotate() {
    let mut bulk = common::Bulk::start(SECRETS, Persist::AclFile, bulk_tuning()).await;
    println!(
        "{} accounts created by create_accounts and declared in {:.2} s",
        2 * SECRETS,
        bulk.created_in.as_secs_f64()
    );
    let mut before = Vec::with_capacity(SECRETS);
    for i in 0..SECRETS {
        before.push(bulk.value(i, StageLabel::current()).await);
    }
    let port = bulk.redis.port();
    assert_eq!(
        refused(port, before.iter().cloned().enumerate().collect()).await,
        Vec::<usize>::new(),
        "the created accounts log in"
    );

    let (took, promoted) = bulk.rotate_all(1, Duration::from_secs(600)).await;
    println!(
        "{SECRETS} secrets due at one instant: {promoted} promoted in {:.2} s ({:.0} rotations/s)",
        took.as_secs_f64(),
        promoted as f64 / took.as_secs_f64()
    );
    assert_eq!(promoted, SECRETS, "every secret rotated");

    let due = common::t0() + chrono::Duration::days(common::INTERVAL_DAYS);
    let mut current = Vec::with_capacity(SECRETS);
    let mut previous = Vec::with_capacity(SECRETS);
    for (i, old) in before.iter().enumerate() {
        let name = common::name(i);
        let stages = bulk.store.stages(&name).await.expect("stages");
        let cur = bulk
            .store
            .get_value(&name, &rotd_store::Selector::current())
            .await
            .expect("ACSCurrent");
        let prev = bulk
            .store
            .get_value(&name, &rotd_store::Selector::Stage(StageLabel::previous()))
            .await
            .expect("ACSPrevious");
        // The old ACSCurrent (the primary's first version) is ACSPrevious now; ACSCurrent is a new,
        // generated version for the clone, and nothing is left pending.
        assert_eq!(prev.info.version_id, VersionId::initial(), "{name}");
        assert!(
            prev.value.constant_time_eq(old),
            "{name}: ACSPrevious is the old ACSCurrent"
        );
        assert_ne!(cur.info.version_id, VersionId::initial(), "{name}");
        assert_eq!(cur.info.version_id.as_str().len(), 32, "{name}: a generated id");
        assert!(
            !stages.contains_key(&StageLabel::pending()),
            "{name}: no ACSPending left"
        );
        let (user, clone_user) = common::accounts(i);
        assert_eq!(common::account(&prev.value).0, user, "{name}");
        assert_eq!(common::account(&cur.value).0, clone_user, "{name}");
        assert_eq!(bulk.backends[i].slot_of(&cur.value), Some(Slot::Clone));
        let journal = bulk.store.journal_tail(&name).await.expect("journal");
        assert!(
            matches!(
                journal.first().map(|e| &e.step),
                Some(Step::Promoted {
                    slot: Slot::Clone,
                    ..
                })
            ),
            "{name}: the clone's rotation is promoted: {journal:?}"
        );
        let meta = bulk.store.describe(&name).await.expect("meta");
        assert_eq!(meta.last_rotation_at, Some(due), "{name}: the nominal due time");
        assert_eq!(
            meta.next_rotation_at,
            Some(due + chrono::Duration::days(common::INTERVAL_DAYS)),
            "{name}"
        );
        current.push((i, cur.value));
        previous.push((i, prev.value));
    }
    assert_eq!(
        refused(port, current.clone()).await,
        Vec::<usize>::new(),
        "every new ACSCurrent logs in with a fresh AUTH"
    );
    assert_eq!(
        refused(port, previous).await,
        Vec::<usize>::new(),
        "every old ACSCurrent (now ACSPrevious) still logs in"
    );

    // The server forgets what was not saved: after a restart it loads its users from the ACL file.
    bulk.redis.restart();
    assert_eq!(
        refused(port, current).await,
        Vec::<usize>::new(),
        "every ACSCurrent logs in after a restart: all 1,000 changes were saved"
    );
    bulk.stop().await;
}
