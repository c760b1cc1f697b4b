//! Continuity under rotation, end to end with the real engine and store: a client opens a fresh
//! connection every ~5 ms with whatever `ACSCurrent` says at that moment and queries the application's
//! table, while rotd rotates. Dual accounts: zero failed logins or queries over 200 rotations. Single
//! account: the failure window is measured and printed (it may be non-zero; the README quotes it).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rotd_backend_sql::{Privilege, SqlBackend};
use rotd_core::{Backend, DataType, PasswordPolicy, SecretName, SecretType, Slot, Tags, VersionId};
use rotd_engine::{Managed, StepLimits, rotate};
use rotd_store::{Keyring, NewSecret, NewVersion, Selector, Store};
use sqlx::Connection;

struct Outcome {
    attempts: u32,
    failures: u32,
    /// Longest run of consecutive failures, in wall time.
    longest_gap: Duration,
}

async fn login(engine: rotd_backend_sql::Engine, host: &str, port: u16, value: &rotd_core::Secret) -> bool {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("value json");
    let (user, pw) = (
        v["AccountName"].as_str().expect("user"),
        v["AccountPassword"].as_str().expect("pw"),
    );
    match engine {
        rotd_backend_sql::Engine::Mysql => {
            let opts = sqlx::mysql::MySqlConnectOptions::new()
                .host(host)
                .port(port)
                .username(user)
                .password(pw)
                .database(common::DB);
            match sqlx::MySqlConnection::connect_with(&opts).await {
                Ok(mut c) => {
                    // The application's own table, not only `SELECT 1`: the privileges came along too.
                    let ok = sqlx::query("SELECT COUNT(*) FROM items")
                        .execute(&mut c)
                        .await
                        .is_ok();
                    let _ = c.close().await;
                    ok
                }
                Err(_) => false,
            }
        }
        rotd_backend_sql::Engine::Postgres => {
            let opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
                .host(host)
                .port(port)
                .username(user)
                .password(pw)
                .database(common::DB);
            match sqlx::PgConnection::connect_with(&opts).await {
                Ok(mut c) => {
                    let ok = sqlx::query("SELECT COUNT(*) FROM items")
                        .execute(&mut c)
                        .await
                        .is_ok();
                    let _ = c.close().await;
                    ok
                }
                Err(_) => false,
            }
        }
    }
}

async fn run(cfg: rotd_backend_sql::SqlConfig, rotations: usize) -> Outcome {
    let (engine_kind, host, port) = (cfg.engine, cfg.host.clone(), cfg.port);
    let dual = matches!(cfg.accounts, rotd_backend_sql::Accounts::Dual { .. });
    let backend = Arc::new(SqlBackend::new(cfg).expect("backend"));
    // Import: the primary exists with a known password (created through the backend itself).
    let first_slot = if dual { Slot::Primary } else { Slot::Single };
    let initial = backend
        .compose(first_slot, &rotd_core::Secret::from(common::password().as_str()))
        .expect("compose");
    backend
        .apply(first_slot, &initial)
        .await
        .expect("create the primary");

    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(
        &dir.path().join("rotd.db"),
        Keyring::generate(rotd_core::Clock::system().now()),
    )
    .await
    .expect("store");
    let name = SecretName::parse("db/app").expect("name");
    store
        .create_secret(
            NewSecret {
                name: name.clone(),
                kind: SecretType::Rds,
                description: String::new(),
                tags: Tags::default(),
                cmk_id: "default".into(),
                extended_config: None,
                rotation: None,
                policy: None,
                managed_by: None,
            },
            Some(NewVersion {
                version_id: VersionId::parse("v0").expect("id"),
                data_type: DataType::Text,
                value: initial,
            }),
        )
        .await
        .expect("create secret");
    let managed = Managed {
        name,
        kind: SecretType::Rds,
        backend: backend.clone() as Arc<dyn Backend>,
        password: PasswordPolicy::default(),
        grace: rotd_engine::Grace::NONE,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (store, stop, host) = (store.clone(), stop.clone(), host.clone());
        tokio::spawn(async move {
            let mut out = Outcome {
                attempts: 0,
                failures: 0,
                longest_gap: Duration::ZERO,
            };
            let mut gap_start: Option<Instant> = None;
            while !stop.load(Ordering::SeqCst) {
                let current = store
                    .get_value("db/app", &Selector::current())
                    .await
                    .expect("ACSCurrent")
                    .value;
                out.attempts += 1;
                if login(engine_kind, &host, port, &current).await {
                    if let Some(s) = gap_start.take() {
                        out.longest_gap = out.longest_gap.max(rotd_core::Clock::system().elapsed(s));
                    }
                } else {
                    out.failures += 1;
                    gap_start.get_or_insert_with(|| rotd_core::Clock::system().instant());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(s) = gap_start {
                out.longest_gap = out.longest_gap.max(rotd_core::Clock::system().elapsed(s));
            }
            out
        })
    };
    let limits = StepLimits::default();
    for i in 0..rotations {
        rotate(&store, &managed, &limits, None)
            .await
            .unwrap_or_else(|e| panic!("rotation {i}: {e}"));
        // Let the client see each new credential before the next rotation starts.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    client.await.expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_dual_rotations_never_refuse_a_login() {
    let db = common::mariadb();
    let user = common::unique_user();
    let out = run(
        common::mariadb_config(db, common::dual(&user), Privilege::ReadWrite),
        200,
    )
    .await;
    println!(
        "mariadb dual: {} logins and table queries during 200 rotations, {} failed",
        out.attempts, out.failures
    );
    assert!(
        out.attempts >= 200,
        "the client kept logging in ({})",
        out.attempts
    );
    assert_eq!(out.failures, 0, "a dual rotation refused a login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_dual_rotations_never_refuse_a_login() {
    let pg = common::postgres();
    let user = common::unique_user();
    let out = run(
        common::pg_config(pg, common::dual(&user), Privilege::ReadWrite),
        200,
    )
    .await;
    println!(
        "postgres dual: {} logins and table queries during 200 rotations, {} failed",
        out.attempts, out.failures
    );
    assert!(
        out.attempts >= 200,
        "the client kept logging in ({})",
        out.attempts
    );
    assert_eq!(out.failures, 0, "a dual rotation refused a login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_account_failure_window_is_measured() {
    let db = common::mariadb();
    let user = common::unique_user();
    let out = run(
        common::mariadb_config(db, common::single(&user), Privilege::ReadWrite),
        20,
    )
    .await;
    println!(
        "mariadb single: {} logins during 20 rotations, {} failed, longest failure window {:?}",
        out.attempts, out.failures, out.longest_gap
    );
    assert!(out.attempts >= 20);
    // Allowed to be non-zero; it must stay a short gap, not an outage.
    assert!(
        out.longest_gap < Duration::from_secs(5),
        "failure window {:?}",
        out.longest_gap
    );
}
