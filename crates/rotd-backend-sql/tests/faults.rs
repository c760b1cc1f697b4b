//! A database that goes away mid-rotation: while it is down, apply and verify fail *retryably* (so the
//! engine backs off and tries again), the current credential is untouched, and after a restart the same
//! apply succeeds and the new credential verifies.

mod common;

use common::*;
use rotd_backend_sql::{Privilege, SqlBackend};
use rotd_core::{Backend, Slot};
use rotd_testkit::fixtures::{MariaDb, Postgres};

/// Creates the pair, stops the server after a successful apply of the clone, and checks the rest.
async fn rotation_across_a_restart(backend: &SqlBackend, stop: impl FnOnce(), restart: impl FnOnce()) {
    let primary = value(backend, Slot::Primary, &password());
    backend
        .apply(Slot::Primary, &primary)
        .await
        .expect("create the primary");
    let pending = value(backend, Slot::Clone, &password());

    stop();
    let e = backend
        .apply(Slot::Clone, &pending)
        .await
        .expect_err("the server is down");
    assert!(e.is_retryable(), "a stopped server is a retryable failure: {e}");
    let e = backend
        .verify(Slot::Primary, &primary)
        .await
        .expect_err("the server is down");
    assert!(e.is_retryable(), "{e}");
    let e = backend.check().await.expect_err("the server is down");
    assert!(e.is_retryable(), "{e}");

    restart();
    backend
        .apply(Slot::Clone, &pending)
        .await
        .expect("the same apply succeeds after the restart");
    backend
        .verify(Slot::Clone, &pending)
        .await
        .expect("the new credential works");
    backend
        .verify(Slot::Primary, &primary)
        .await
        .expect("the current credential survived the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_retryable_and_the_rotation_completes_after_restart() {
    let pg = blocking(|| {
        let pg = Postgres::start();
        prepare_postgres(&pg);
        pg
    })
    .await;
    let pg = std::sync::Arc::new(std::sync::Mutex::new(pg));
    let backend = {
        let guard = pg.lock().unwrap();
        SqlBackend::new(pg_config(&guard, dual(&unique_user()), Privilege::ReadWrite)).unwrap()
    };
    rotation_across_a_restart(
        &backend,
        || pg.lock().unwrap().stop(),
        || pg.lock().unwrap().restart(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_outage_is_retryable_and_the_rotation_completes_after_restart() {
    let db = blocking(|| {
        let db = MariaDb::start();
        prepare_mariadb(&db);
        db
    })
    .await;
    let db = std::sync::Arc::new(std::sync::Mutex::new(db));
    let backend = {
        let guard = db.lock().unwrap();
        SqlBackend::new(mariadb_config(&guard, dual(&unique_user()), Privilege::ReadWrite)).unwrap()
    };
    rotation_across_a_restart(
        &backend,
        || db.lock().unwrap().stop(),
        || db.lock().unwrap().restart(),
    )
    .await;
}
