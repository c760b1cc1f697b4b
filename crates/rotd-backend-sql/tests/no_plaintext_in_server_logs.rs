//! Passwords never reach a server log in clear: with PostgreSQL's `log_statement = 'all'` and MariaDB's
//! general query log on, account creation, password resets and a verification leave only hashes behind.
//! Each test also checks that the log did record the statements, so it fails if logging was silently off.

mod common;

use common::*;
use rotd_backend_sql::{Privilege, SqlBackend};
use rotd_core::{Backend, Slot};
use rotd_testkit::fixtures::util::read_lossy;
use rotd_testkit::fixtures::{MariaDb, Postgres};

/// Creates both dual accounts, resets each once more, verifies one, and fails one verification; returns
/// every password used.
async fn rotate_a_few_times(backend: &SqlBackend) -> Vec<String> {
    let mut used = Vec::new();
    for slot in [Slot::Primary, Slot::Clone, Slot::Primary, Slot::Clone] {
        let pw = password();
        let v = value(backend, slot, &pw);
        backend.apply(slot, &v).await.expect("apply");
        backend.verify(slot, &v).await.expect("verify");
        used.push(pw);
    }
    let wrong = password();
    assert!(
        backend
            .verify(Slot::Primary, &value(backend, Slot::Primary, &wrong))
            .await
            .is_err()
    );
    used.push(wrong);
    used
}

fn assert_absent(log_name: &str, log: &str, passwords: &[String]) {
    for pw in passwords {
        assert!(
            !log.contains(pw.as_str()),
            "{log_name} contains a plaintext password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_log_has_only_scram_verifiers() {
    let pg = blocking(|| {
        let pg = Postgres::start();
        prepare_postgres(&pg);
        pg.set_conf("log_statement", "all");
        // Failed logins and failed statements are logged too; make sure nothing is filtered out.
        pg.set_conf("log_min_error_statement", "debug5");
        pg.set_conf("log_connections", "on");
        pg
    })
    .await;
    let backend = SqlBackend::new(pg_config(&pg, dual(&unique_user()), Privilege::ReadWrite)).unwrap();
    let passwords = rotate_a_few_times(&backend).await;

    let log = read_lossy(pg.log_path());
    assert!(log.contains("CREATE ROLE"), "the log recorded no CREATE ROLE");
    assert!(log.contains("ALTER ROLE"), "the log recorded no ALTER ROLE");
    assert_absent("postgres.log", &log, &passwords);
    assert!(
        log.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
        "the log shows no SCRAM verifier, so the test did not see the password statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_general_log_has_only_password_hashes() {
    let db = blocking(|| {
        let db = MariaDb::start();
        prepare_mariadb(&db);
        db.set_general_log(true);
        db
    })
    .await;
    let backend = SqlBackend::new(mariadb_config(&db, dual(&unique_user()), Privilege::ReadWrite)).unwrap();
    let passwords = rotate_a_few_times(&backend).await;

    let general = read_lossy(db.general_log_path());
    assert!(
        general.contains("CREATE USER"),
        "the general log recorded no CREATE USER"
    );
    assert!(
        general.contains("ALTER USER"),
        "the general log recorded no ALTER USER"
    );
    assert_absent("general.log", &general, &passwords);
    assert!(
        general.contains("IDENTIFIED BY PASSWORD '*"),
        "the general log shows no password hash, so the test did not see the password statements"
    );
    assert_absent("error.log", &read_lossy(db.error_log_path()), &passwords);
}
