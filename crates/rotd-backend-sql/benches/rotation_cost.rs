//! rotd's full dual-account rotation against the raw cost of the same work done by a minimal program with
//! the same driver on the same server in the same run: a fresh admin connection, one `ALTER USER` with the
//! hashed password, and one verification login running `SELECT 1`.
//!
//! rotd's rotation adds the durable journal and store writes (pending, applied, verified, promoted, each
//! fsync'd), the privilege-parity check (`SHOW GRANTS` for both accounts) and the engine's bookkeeping.
//! Run: `cargo bench -p rotd-backend-sql --bench rotation_cost` (ROTD_BENCH_ROUNDS, default 30).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use rotd_backend_sql::{Privilege, SqlBackend};
use rotd_core::{Backend, DataType, PasswordPolicy, SecretName, SecretType, Slot, Tags, VersionId};
use rotd_engine::{Managed, StepLimits, rotate};
use rotd_store::{Keyring, NewSecret, NewVersion, Store};
use sqlx::Connection;

fn mysql_native_hash(pw: &str) -> String {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
    let once = digest(&SHA1_FOR_LEGACY_USE_ONLY, pw.as_bytes());
    let twice = digest(&SHA1_FOR_LEGACY_USE_ONLY, once.as_ref());
    format!(
        "*{}",
        twice
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v.iter().sum::<f64>() / v.len() as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ROTD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let db = common::mariadb();
    let (host, port) = (db.host().to_owned(), db.port());

    // rotd: a dual pair, imported primary, rotated `rounds` times through the engine.
    let user = common::unique_user();
    let backend = Arc::new(
        SqlBackend::new(common::mariadb_config(
            db,
            common::dual(&user),
            Privilege::ReadWrite,
        ))
        .expect("backend"),
    );
    let initial = backend
        .compose(
            Slot::Primary,
            &rotd_core::Secret::from(common::password().as_str()),
        )
        .expect("compose");
    backend
        .apply(Slot::Primary, &initial)
        .await
        .expect("create primary");
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(
        &dir.path().join("rotd.db"),
        Keyring::generate(rotd_core::Clock::system().now()),
    )
    .await
    .expect("store");
    store
        .create_secret(
            NewSecret {
                name: SecretName::parse("db/app").expect("name"),
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
        .expect("secret");
    let managed = Managed {
        name: SecretName::parse("db/app").expect("name"),
        kind: SecretType::Rds,
        backend: backend.clone() as Arc<dyn Backend>,
        password: PasswordPolicy::default(),
        grace: rotd_engine::Grace::NONE,
    };
    // The first rotation creates the clone; it is not part of the steady state.
    rotate(&store, &managed, &StepLimits::default(), None)
        .await
        .expect("warm-up rotation");

    // Baseline: a second account, its password reset and verified by hand with the same driver.
    let raw_user = common::unique_user();
    db.admin_sql(&format!(
        "CREATE USER '{raw_user}'@'%' IDENTIFIED BY 'initial-pw-123'"
    ));
    let admin = sqlx::mysql::MySqlConnectOptions::new()
        .host(&host)
        .port(port)
        .username(db.admin_user())
        .password(db.admin_password());

    let mut raw = Vec::new();
    let mut full = Vec::new();
    // Interleave the two so both see the same machine load.
    for i in 0..rounds {
        let pw = format!("Raw{i}{}", common::password());
        let t = rotd_core::Clock::system().instant();
        let mut c = sqlx::MySqlConnection::connect_with(&admin)
            .await
            .expect("admin login");
        let sql = format!(
            "ALTER USER '{raw_user}'@'%' IDENTIFIED BY PASSWORD '{}'",
            mysql_native_hash(&pw)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect("alter user");
        c.close().await.expect("close");
        let login = sqlx::mysql::MySqlConnectOptions::new()
            .host(&host)
            .port(port)
            .username(&raw_user)
            .password(&pw);
        let mut v = sqlx::MySqlConnection::connect_with(&login)
            .await
            .expect("verify login");
        sqlx::query("SELECT 1").execute(&mut v).await.expect("select");
        v.close().await.expect("close");
        raw.push(rotd_core::Clock::system().elapsed(t).as_secs_f64() * 1000.0);

        let t = rotd_core::Clock::system().instant();
        rotate(&store, &managed, &StepLimits::default(), None)
            .await
            .expect("rotation");
        full.push(rotd_core::Clock::system().elapsed(t).as_secs_f64() * 1000.0);
    }
    let (raw_p50, raw_mean) = stats(raw);
    let (full_p50, full_mean) = stats(full);
    println!("MariaDB dual-account rotation, {rounds} rounds interleaved (ms):");
    println!(
        "  baseline (admin connect + ALTER USER hash + verify login + SELECT 1): p50 {raw_p50:.1}  mean {raw_mean:.1}"
    );
    println!(
        "  rotd full rotation (journal, store, parity check, apply, verify, promote): p50 {full_p50:.1}  mean {full_mean:.1}"
    );
    println!(
        "  ratio rotd/baseline: p50 {:.2}x  mean {:.2}x",
        full_p50 / raw_p50,
        full_mean / raw_mean
    );
}
