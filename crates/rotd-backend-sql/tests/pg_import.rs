//! Imported PostgreSQL dual accounts whose privileges live in a database the configuration does not name
//! (issue 9): the secret file sets no `database` (connections open `postgres`) and, as for every import,
//! no `databases`. The logins must keep working across alternations, a live login that owns objects is
//! refused before anything changes, drift in function, column and type privileges is found in the
//! database where it is, a disabled login stays disabled, and CREATEDB reaches the shared owner role only
//! when both logins have it.
//!
//! Every test uses its own database and roles, so the tests are independent of each other and of the
//! runner (one server per process under nextest, one shared server under `cargo test`).

mod common;

use common::*;
use rotd_backend_sql::{Privilege, SqlBackend, SqlConfig};
use rotd_core::{Backend, ErrorClass, Slot};
use rotd_testkit::fixtures::util::random_lower;

/// One imported pair: `user` and `clone` with passwords, privileges on table `t` in database `db`.
struct Pair {
    db: String,
    user: String,
    clone: String,
    pw: String,
    clone_pw: String,
}

impl Pair {
    fn owner(&self) -> String {
        format!("{}_owner", self.user)
    }

    fn password(&self, slot: Slot) -> &str {
        match slot {
            Slot::Clone => &self.clone_pw,
            _ => &self.pw,
        }
    }

    fn account(&self, slot: Slot) -> &str {
        match slot {
            Slot::Clone => &self.clone,
            _ => &self.user,
        }
    }
}

/// Creates database `db` with table `t` (owned by the admin) and the two logins, each with
/// `SELECT, INSERT` on `t` and nothing else: CONNECT comes from PUBLIC's default, as on a fresh server.
/// `extra` runs in `db` as the admin afterwards.
async fn import_pair(extra: String) -> Pair {
    let user = unique_user();
    let pair = Pair {
        db: format!("appdb_{}", random_lower(8)),
        clone: format!("{user}_clone"),
        user,
        pw: password(),
        clone_pw: password(),
    };
    let (db, u, c, pw, cpw) = (
        pair.db.clone(),
        pair.user.clone(),
        pair.clone.clone(),
        pair.pw.clone(),
        pair.clone_pw.clone(),
    );
    blocking(move || {
        let pg = postgres();
        // CREATE DATABASE cannot share a statement string (an implicit transaction) with anything.
        pg.admin_sql(&format!("CREATE DATABASE {db}"));
        pg.admin_sql(&format!(
            "CREATE ROLE {u} LOGIN PASSWORD '{pw}'; CREATE ROLE {c} LOGIN PASSWORD '{cpw}'"
        ));
        let sql =
            format!("CREATE TABLE t (id int, note text); GRANT SELECT, INSERT ON t TO {u}, {c}; {extra}");
        pg.psql_db(pg.admin_user(), pg.admin_password(), &db, &sql)
            .unwrap_or_else(|e| panic!("prepare {db}: {e}"));
    })
    .await;
    pair
}

/// The configuration an import gets from `crates/rotd/src/wiring.rs` when the secret file names no
/// database: `database` unset (so `postgres`), `databases` empty.
fn import_config(pair: &Pair) -> SqlConfig {
    let mut cfg = pg_config(postgres(), dual(&pair.user), Privilege::ReadWrite);
    cfg.database = None;
    cfg.databases = Vec::new();
    cfg
}

/// Runs `sql` in the pair's database as `user` with `password`.
async fn as_login(db: &str, user: &str, password: &str, sql: String) -> Result<String, String> {
    let (db, user, password) = (db.to_owned(), user.to_owned(), password.to_owned());
    blocking(move || postgres().psql_db(&user, &password, &db, &sql)).await
}

async fn admin_in(db: &str, sql: String) -> String {
    let db = db.to_owned();
    blocking(move || {
        let pg = postgres();
        pg.psql_db(pg.admin_user(), pg.admin_password(), &db, &sql)
            .unwrap_or_else(|e| panic!("admin SQL in {db} failed: {sql}: {e}"))
    })
    .await
}

/// Both logins, with their current passwords, can read and write `t`.
async fn both_use_t(pair: &Pair, round: usize) {
    for slot in [Slot::Primary, Slot::Clone] {
        let (user, pw) = (pair.account(slot), pair.password(slot));
        let out = as_login(
            &pair.db,
            user,
            pw,
            format!("INSERT INTO t VALUES ({round}, '{user}'); SELECT count(*) FROM t"),
        )
        .await;
        assert!(
            out.is_ok(),
            "after rotation {round}, {user} cannot use t in {}: {out:?}",
            pair.db
        );
    }
}

/// The reproduction: 20 alternations the way the engine runs them (a fresh value for the slot not
/// holding `ACSCurrent`, apply, verify, then that slot becomes current), and after each one both logins
/// still read and write the table in the database the configuration never named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_pair_keeps_its_privileges_in_an_unnamed_database() {
    let mut pair = import_pair(String::new()).await;
    let backend = SqlBackend::new(import_config(&pair)).unwrap();
    both_use_t(&pair, 0).await;

    let mut current = Slot::Primary;
    for round in 1..=20 {
        let target = current.other();
        let pw = password();
        let v = value(&backend, target, &pw);
        backend
            .apply(target, &v)
            .await
            .unwrap_or_else(|e| panic!("rotation {round}: apply {target}: {e}"));
        backend
            .verify(target, &v)
            .await
            .unwrap_or_else(|e| panic!("rotation {round}: verify {target}: {e}"));
        match target {
            Slot::Clone => pair.clone_pw = pw,
            _ => pair.pw = pw,
        }
        current = target;
        both_use_t(&pair, round).await;
    }

    // Both ended up acting as the shared owner role, and a table created by one is usable by the other.
    admin_in(
        &pair.db,
        format!("GRANT CREATE ON SCHEMA public TO {}", pair.owner()),
    )
    .await;
    as_login(
        &pair.db,
        &pair.clone,
        &pair.clone_pw,
        "CREATE TABLE by_clone (id int)".into(),
    )
    .await
    .expect("the clone creates a table");
    as_login(
        &pair.db,
        &pair.user,
        &pair.pw,
        "INSERT INTO by_clone VALUES (1); ALTER TABLE by_clone ADD COLUMN x int".into(),
    )
    .await
    .expect("the primary uses and alters the clone's table");
    assert_eq!(backend.drift(Slot::Primary).await.unwrap(), []);
    assert_eq!(backend.drift(Slot::Clone).await.unwrap(), []);
}

/// The live login owns a table its twin cannot reach: the rotation is refused with a permanent error that
/// says what to run, before anything is changed; after the operator runs it, the rotation succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_login_owning_objects_is_refused_before_any_change() {
    let pair = import_pair(String::new()).await;
    let u = pair.user.clone();
    admin_in(&pair.db, format!("GRANT CREATE ON SCHEMA public TO {u}")).await;
    as_login(
        &pair.db,
        &pair.user,
        &pair.pw,
        "CREATE TABLE mine (id int); INSERT INTO mine VALUES (1)".into(),
    )
    .await
    .expect("the primary creates a table");
    let backend = SqlBackend::new(import_config(&pair)).unwrap();

    // ACSCurrent is on the primary, so the clone is the target.
    let new_pw = password();
    let e = backend
        .apply(Slot::Clone, &value(&backend, Slot::Clone, &new_pw))
        .await
        .expect_err("the live login owns objects");
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    let remedy = format!("REASSIGN OWNED BY {u} TO {}", pair.owner());
    assert!(e.message.contains(&remedy), "{e}");
    assert!(e.message.contains(&pair.db), "{e}");
    assert!(!e.message.contains(&new_pw));

    // Nothing changed: no owner role, no settings, no memberships, the clone's old password still works.
    let (owner, clone) = (pair.owner(), pair.clone.clone());
    let state = blocking(move || {
        postgres().admin_sql(&format!(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{owner}'), \
                    (SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
                      WHERE r.rolname IN ('{u}', '{clone}')), \
                    (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
                      WHERE r.rolname IN ('{u}', '{clone}'))"
        ))
    })
    .await;
    assert_eq!(state, "0|0|0");
    backend
        .verify(Slot::Clone, &value(&backend, Slot::Clone, &pair.clone_pw))
        .await
        .expect("the clone's password is unchanged");
    both_use_t(&pair, 0).await;

    // The operator follows the message; then the clone rotates and both logins use `mine`.
    let owner = pair.owner();
    blocking({
        let (owner, u) = (owner.clone(), pair.user.clone());
        move || {
            postgres().admin_sql(&format!("CREATE ROLE {owner} NOLOGIN; GRANT {owner} TO {u}"));
        }
    })
    .await;
    admin_in(&pair.db, remedy.clone()).await;
    let v = value(&backend, Slot::Clone, &new_pw);
    backend
        .apply(Slot::Clone, &v)
        .await
        .expect("rotate after REASSIGN");
    backend.verify(Slot::Clone, &v).await.unwrap();
    for (user, pw) in [(&pair.user, &pair.pw), (&pair.clone, &new_pw)] {
        as_login(&pair.db, user, pw, "SELECT count(*) FROM mine".into())
            .await
            .unwrap_or_else(|e| panic!("{user} reads mine: {e}"));
    }
}

/// Drift in EXECUTE on a function, a column privilege and USAGE on a type, all in the unnamed database:
/// found by `drift`, repaired by the next apply of the account that lacks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_column_and_type_drift_is_found_in_every_used_database() {
    let extra = "CREATE FUNCTION f(a integer) RETURNS int LANGUAGE sql AS 'SELECT a'; \
                 REVOKE EXECUTE ON FUNCTION f(integer) FROM PUBLIC; \
                 CREATE DOMAIN positive AS int CHECK (VALUE > 0); \
                 REVOKE USAGE ON DOMAIN positive FROM PUBLIC;"
        .to_owned();
    let pair = import_pair(extra).await;
    let c = pair.clone.clone();
    admin_in(
        &pair.db,
        format!(
            "GRANT EXECUTE ON FUNCTION f(integer) TO {c}; GRANT UPDATE (note) ON t TO {c}; \
             GRANT USAGE ON TYPE positive TO {c}"
        ),
    )
    .await;
    let backend = SqlBackend::new(import_config(&pair)).unwrap();

    let items = backend.drift(Slot::Primary).await.unwrap();
    let db = &pair.db;
    for needle in [
        format!("lacks EXECUTE on routine public.f(a integer) in database {db}"),
        format!("lacks UPDATE on column public.t (note) in database {db}"),
        format!("lacks USAGE on type public.positive in database {db}"),
    ] {
        let item = items
            .iter()
            .find(|i| i.detail.contains(&needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {items:?}"));
        assert!(item.repairable, "{item}");
    }
    let toward_clone = backend.drift(Slot::Clone).await.unwrap();
    assert!(
        toward_clone
            .iter()
            .any(|i| i.detail.contains("has EXECUTE on routine public.f(a integer)") && !i.repairable),
        "{toward_clone:?}"
    );

    // The clone is live; rotating the primary copies the three privileges over.
    let pw = password();
    let v = value(&backend, Slot::Primary, &pw);
    backend.apply(Slot::Primary, &v).await.unwrap();
    backend.verify(Slot::Primary, &v).await.unwrap();
    as_login(
        db,
        &pair.user,
        &pw,
        "SELECT f(1); UPDATE t SET note = 'x'; SELECT 5::positive".into(),
    )
    .await
    .expect("the primary got EXECUTE, UPDATE (note) and USAGE");
    let after = backend.drift(Slot::Primary).await.unwrap();
    assert!(after.iter().all(|i| !i.detail.contains("lacks")), "{after:?}");
}

/// An imported login an operator disabled (NOLOGIN) is not re-enabled by a rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_imported_login_is_not_reenabled() {
    let pair = import_pair(String::new()).await;
    let c = pair.clone.clone();
    blocking(move || postgres().admin_sql(&format!("ALTER ROLE {c} NOLOGIN"))).await;
    let backend = SqlBackend::new(import_config(&pair)).unwrap();
    let e = backend
        .apply(Slot::Clone, &value(&backend, Slot::Clone, &password()))
        .await
        .expect_err("a disabled login is refused");
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("NOLOGIN"), "{e}");
    let c = pair.clone.clone();
    let can_login = blocking(move || {
        postgres().admin_sql(&format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{c}'"))
    })
    .await;
    assert_eq!(can_login, "f");
}

/// The target has CREATEDB and the live twin does not: the shared owner role does not get CREATEDB (the
/// twin's sessions would gain it), so the target is not switched and keeps CREATEDB itself; the live twin
/// is left exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn createdb_is_not_given_to_the_shared_role_when_the_twin_lacks_it() {
    let pair = import_pair(String::new()).await;
    let c = pair.clone.clone();
    blocking(move || postgres().admin_sql(&format!("ALTER ROLE {c} CREATEDB"))).await;
    let backend = SqlBackend::new(import_config(&pair)).unwrap();

    let pw = password();
    let v = value(&backend, Slot::Clone, &pw);
    backend.apply(Slot::Clone, &v).await.unwrap();
    backend.verify(Slot::Clone, &v).await.unwrap();

    let (u, c, owner) = (pair.user.clone(), pair.clone.clone(), pair.owner());
    let state = blocking(move || {
        postgres().admin_sql(&format!(
            "SELECT (SELECT rolcreatedb FROM pg_roles WHERE rolname = '{owner}'), \
                    (SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
                      WHERE r.rolname IN ('{u}', '{c}')), \
                    (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
                      WHERE r.rolname = '{u}'), \
                    (SELECT rolcreatedb FROM pg_roles WHERE rolname = '{u}')"
        ))
    })
    .await;
    assert_eq!(
        state, "f|0|0|f",
        "owner CREATEDB | switched logins | live memberships | live CREATEDB"
    );
    let db = format!("made_{}", random_lower(8));
    as_login("postgres", &pair.clone, &pw, format!("CREATE DATABASE {db}"))
        .await
        .expect("the clone keeps CREATEDB");
    let mut pair = pair;
    pair.clone_pw = pw;
    both_use_t(&pair, 1).await;
}
