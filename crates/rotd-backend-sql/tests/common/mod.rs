//! Shared setup for the SQL backend's tests: one PostgreSQL and one MariaDB server per test binary (tests
//! that stop servers or switch logging on start their own), unique account names per test, and config
//! builders.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rotd_backend_sql::{Accounts, Engine, Privilege, SqlBackend, SqlConfig, Tls};
use rotd_core::{Backend, Secret, Slot};
use rotd_testkit::backend_suite::BackendUnderTest;
use rotd_testkit::fixtures::util::{random_lower, random_password};
use rotd_testkit::fixtures::{MariaDb, Postgres};

/// The database every shared server has, with one table, for privilege tests.
pub const DB: &str = "shop";

/// The shared PostgreSQL server. Statics are never dropped: the fixture's watchdog stops the server and
/// removes its files when the test process exits.
pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = Postgres::start();
        prepare_postgres(&pg);
        pg
    })
}

/// Creates the `shop` database with a table, owned by the admin.
pub fn prepare_postgres(pg: &Postgres) {
    pg.admin_sql(&format!("CREATE DATABASE {DB}"));
    pg.psql_db(
        pg.admin_user(),
        pg.admin_password(),
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
    )
    .expect("create the items table");
}

/// The shared MariaDB server.
pub fn mariadb() -> &'static MariaDb {
    static DB_: OnceLock<MariaDb> = OnceLock::new();
    DB_.get_or_init(|| {
        let db = MariaDb::start();
        prepare_mariadb(&db);
        db
    })
}

pub fn prepare_mariadb(db: &MariaDb) {
    db.admin_sql(&format!(
        "CREATE DATABASE {DB}; CREATE TABLE {DB}.items (id int PRIMARY KEY, name text)"
    ));
}

/// A fresh account name, so tests sharing a server never see each other's accounts.
pub fn unique_user() -> String {
    format!("a{}", random_lower(10))
}

pub fn pg_config(pg: &Postgres, accounts: Accounts, privilege: Privilege) -> SqlConfig {
    SqlConfig {
        engine: Engine::Postgres,
        host: pg.host().to_owned(),
        port: pg.port(),
        database: None,
        tls: Tls::Disable,
        ca_file: None,
        admin_user: pg.admin_user().to_owned(),
        admin_password: Secret::from(pg.admin_password()),
        accounts,
        privilege,
        databases: vec![DB.to_owned()],
        connect_timeout: Duration::from_secs(10),
        failpoint: None,
    }
}

pub fn mariadb_config(db: &MariaDb, accounts: Accounts, privilege: Privilege) -> SqlConfig {
    SqlConfig {
        engine: Engine::Mysql,
        host: db.host().to_owned(),
        port: db.port(),
        database: None,
        tls: Tls::Disable,
        ca_file: None,
        admin_user: db.admin_user().to_owned(),
        admin_password: Secret::from(db.admin_password()),
        accounts,
        privilege,
        databases: vec![DB.to_owned()],
        connect_timeout: Duration::from_secs(10),
        failpoint: None,
    }
}

pub fn single(user: &str) -> Accounts {
    Accounts::Single {
        user: user.to_owned(),
    }
}

pub fn dual(user: &str) -> Accounts {
    Accounts::Dual {
        user: user.to_owned(),
        clone_user: format!("{user}_clone"),
    }
}

pub fn value(backend: &SqlBackend, slot: Slot, password: &str) -> Secret {
    backend.compose(slot, &Secret::from(password)).expect("compose")
}

/// Wraps a backend for the conformance suite; the shared servers outlive every test, so no guard.
pub fn under_test(backend: SqlBackend, initial: Vec<(Slot, Secret)>) -> BackendUnderTest {
    BackendUnderTest {
        backend: Arc::new(backend) as Arc<dyn Backend>,
        initial,
        guard: Box::new(()),
        nodes: None,
    }
}

/// A password of the kind the fixtures use (letters and digits).
pub fn password() -> String {
    random_password(24)
}

/// Runs blocking fixture calls (they spawn `psql`/`mariadb` and wait) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking fixture call")
}
