//! MySQL/MariaDB account creation and takeover on a real MariaDB: a creation interrupted between
//! `CREATE USER` and the grants leaves a locked account that the next apply finishes (never a login
//! without privileges), `verify` proves the configured databases are usable, imported accounts under
//! another host or with nothing to copy from are refused, and parity replays default roles.

mod common;

use std::time::Duration;

use common::*;
use rotd_backend_sql::{Privilege, SqlBackend, SqlConfig};
use rotd_core::{Backend, Slot};

/// `SHOW GRANTS FOR 'user'@'%'` through the admin, one line per grant.
async fn show_grants(user: &str) -> String {
    let u = user.to_owned();
    blocking(move || mariadb().admin_sql(&format!("SHOW GRANTS FOR '{u}'@'%'"))).await
}

/// Whether `'user'@'%'` is `ACCOUNT LOCK`ed.
async fn is_locked(user: &str) -> bool {
    let u = user.to_owned();
    blocking(move || mariadb().admin_sql(&format!("SHOW CREATE USER '{u}'@'%'")))
        .await
        .contains("ACCOUNT LOCK")
}

/// Runs `sql` as `user` over TCP with `shop` as the default database.
async fn as_user(user: &str, password: &str, sql: &str) -> Result<String, String> {
    let (u, p, s) = (user.to_owned(), password.to_owned(), sql.to_owned());
    blocking(move || mariadb().mysql_db(&u, &p, Some(DB), &s)).await
}

async fn admin(sql: String) {
    blocking(move || {
        mariadb().admin_sql(&sql);
    })
    .await;
}

/// The configuration the binary builds for imported accounts: no databases to grant on.
fn import_config(accounts: rotd_backend_sql::Accounts) -> SqlConfig {
    let mut cfg = mariadb_config(mariadb(), accounts, Privilege::ReadWrite);
    cfg.databases = Vec::new();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_interrupted_before_the_grants_is_locked_and_finished_by_the_next_apply() {
    let (user, pw) = (unique_user(), password());
    let db = blocking(mariadb).await;
    let mut cfg = mariadb_config(db, single(&user), Privilege::ReadWrite);
    cfg.failpoint = Some("sql-created".to_owned());
    let crashing = SqlBackend::new(cfg.clone()).unwrap();
    let v = value(&crashing, Slot::Single, &pw);
    // The failpoint parks apply right after CREATE USER; abandoning it is what a step timeout (or a
    // kill) does.
    tokio::time::timeout(Duration::from_secs(5), crashing.apply(Slot::Single, &v))
        .await
        .expect_err("apply parks at the failpoint");

    assert!(is_locked(&user).await, "a half-made account is locked");
    let grants = show_grants(&user).await;
    assert!(!grants.contains("shop"), "no grant yet: {grants}");
    let login = as_user(&user, &pw, "SELECT 1").await;
    assert!(
        login.as_ref().is_err_and(|e| e.contains("locked")),
        "the half-made account cannot log in: {login:?}"
    );
    crashing
        .verify(Slot::Single, &v)
        .await
        .expect_err("verify refuses the half-made account");

    cfg.failpoint = None;
    let backend = SqlBackend::new(cfg).unwrap();
    backend
        .apply(Slot::Single, &v)
        .await
        .expect("the next apply finishes the creation");
    assert!(!is_locked(&user).await, "unlocked as the last step");
    let grants = show_grants(&user).await;
    assert!(grants.contains("GRANT ALL PRIVILEGES ON `shop`.*"), "{grants}");
    backend.verify(Slot::Single, &v).await.expect("verify");
    assert_eq!(
        as_user(&user, &pw, "SELECT count(*) FROM items").await,
        Ok("0".to_owned()),
        "the configured database is usable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_grantless_account_with_another_password_is_finished() {
    // What a creation interrupted by an earlier attempt with another value leaves behind.
    let user = unique_user();
    admin(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{}' ACCOUNT LOCK",
        password()
    ))
    .await;
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, dual(&user), Privilege::ReadOnly)).unwrap();
    let pw = password();
    let v = value(&backend, Slot::Primary, &pw);
    backend.apply(Slot::Primary, &v).await.expect("apply");
    assert!(!is_locked(&user).await);
    let grants = show_grants(&user).await;
    assert!(
        grants.contains("SELECT") && grants.contains("`shop`.*"),
        "{grants}"
    );
    backend.verify(Slot::Primary, &v).await.expect("verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlocked_account_without_its_configured_privileges_gets_them_again() {
    // What an interrupted creation of older rotd versions left: a working login with no grants.
    let (user, old_pw) = (unique_user(), password());
    admin(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{old_pw}'")).await;
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, single(&user), Privilege::DmlOnly)).unwrap();
    let pw = password();
    let v = value(&backend, Slot::Single, &pw);
    backend.apply(Slot::Single, &v).await.expect("apply");
    let grants = show_grants(&user).await;
    assert!(
        grants.contains("INSERT") && grants.contains("`shop`.*"),
        "the configured grants are (re-)run: {grants}"
    );
    backend.verify(Slot::Single, &v).await.expect("verify");
    assert_eq!(
        as_user(
            &user,
            &pw,
            "INSERT INTO items VALUES (7, 'x'); DELETE FROM items WHERE id = 7"
        )
        .await,
        Ok(String::new())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_proves_the_configured_database_is_usable_not_only_the_login() {
    let user = unique_user();
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, single(&user), Privilege::ReadWrite)).unwrap();
    let pw = password();
    let v = value(&backend, Slot::Single, &pw);
    backend.apply(Slot::Single, &v).await.expect("create");
    backend.verify(Slot::Single, &v).await.expect("verify");

    admin(format!("REVOKE ALL PRIVILEGES ON {DB}.* FROM '{user}'@'%'")).await;
    assert_eq!(
        as_user(&user, &pw, "SELECT 1").await.map_err(|_| ()),
        Err(()),
        "the fixture's client cannot even open shop now"
    );
    let e = backend
        .verify(Slot::Single, &v)
        .await
        .expect_err("the login works, but the database is not usable");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("cannot use database shop"), "{e}");
    assert!(!e.to_string().contains(&pw), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_lock_on_a_complete_account_is_left_alone() {
    let user = unique_user();
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, single(&user), Privilege::ReadWrite)).unwrap();
    let v = value(&backend, Slot::Single, &password());
    backend.apply(Slot::Single, &v).await.expect("create");
    admin(format!("ALTER USER '{user}'@'%' ACCOUNT LOCK")).await;

    let next = value(&backend, Slot::Single, &password());
    backend
        .apply(Slot::Single, &next)
        .await
        .expect("apply resets the password");
    assert!(is_locked(&user).await, "rotd does not undo an operator's lock");
    let e = backend
        .verify(Slot::Single, &next)
        .await
        .expect_err("a locked account cannot log in");
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_under_another_host_is_refused_instead_of_making_a_second_account() {
    let (user, pw) = (unique_user(), password());
    admin(format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{pw}'; GRANT SELECT ON {DB}.* TO '{user}'@'127.0.0.1'"
    ))
    .await;
    blocking(mariadb).await;
    let backend = SqlBackend::new(import_config(single(&user))).unwrap();
    let e = backend
        .apply(Slot::Single, &value(&backend, Slot::Single, &password()))
        .await
        .expect_err("only 'user'@'127.0.0.1' exists");
    assert!(!e.is_retryable(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("'{user}'@'127.0.0.1'")) && msg.contains("RENAME USER"),
        "{msg}"
    );
    let u = user.clone();
    let count =
        blocking(move || mariadb().admin_sql(&format!("SELECT COUNT(*) FROM mysql.user WHERE User = '{u}'")))
            .await;
    assert_eq!(count, "1", "no second, grantless '%' account");

    // The same for the clone of a dual pair whose name exists under another host.
    let (primary, ppw) = (unique_user(), password());
    admin(format!(
        "CREATE USER '{primary}'@'%' IDENTIFIED BY '{ppw}'; GRANT SELECT ON {DB}.* TO '{primary}'@'%'; \
         CREATE USER '{primary}_clone'@'localhost' IDENTIFIED BY '{ppw}'"
    ))
    .await;
    let backend = SqlBackend::new(import_config(dual(&primary))).unwrap();
    let e = backend
        .apply(Slot::Clone, &value(&backend, Slot::Clone, &password()))
        .await
        .expect_err("the clone exists only at localhost");
    assert!(e.to_string().contains("'@'localhost'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_a_missing_account_is_refused_instead_of_creating_it_without_privileges() {
    let user = unique_user();
    blocking(mariadb).await;
    let backend = SqlBackend::new(import_config(single(&user))).unwrap();
    let e = backend
        .apply(Slot::Single, &value(&backend, Slot::Single, &password()))
        .await
        .expect_err("nothing to create it from");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("without privileges"), "{e}");
    let u = user.clone();
    let count =
        blocking(move || mariadb().admin_sql(&format!("SELECT COUNT(*) FROM mysql.user WHERE User = '{u}'")))
            .await;
    assert_eq!(count, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_copies_default_roles_so_the_twin_has_the_role_active_at_login() {
    // An imported primary whose privileges come from a default role.
    let (user, pw) = (unique_user(), password());
    let role = format!("{user}_reader");
    admin(format!(
        "CREATE ROLE {role}; GRANT SELECT ON {DB}.items TO {role}; \
         CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'; GRANT {role} TO '{user}'@'%'; \
         SET DEFAULT ROLE {role} FOR '{user}'@'%'"
    ))
    .await;
    assert_eq!(
        as_user(&user, &pw, "SELECT CURRENT_ROLE()").await,
        Ok(role.clone())
    );
    blocking(mariadb).await;
    let backend = SqlBackend::new(import_config(dual(&user))).unwrap();
    let clone = format!("{user}_clone");

    // The clone does not exist: apply creates it with the primary's grants and default role.
    let clone_pw = password();
    let v = value(&backend, Slot::Clone, &clone_pw);
    backend.apply(Slot::Clone, &v).await.expect("create the clone");
    backend.verify(Slot::Clone, &v).await.expect("verify the clone");
    assert_eq!(
        as_user(&clone, &clone_pw, "SELECT CURRENT_ROLE()").await,
        Ok(role.clone()),
        "the role is active at the clone's login"
    );
    assert_eq!(
        as_user(&clone, &clone_pw, "SELECT count(*) FROM items").await,
        Ok("0".to_owned())
    );
    let drift = backend.drift(Slot::Clone).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");

    // A default role set on the live account later reaches an existing twin at its next alternation.
    let other = format!("{user}_auditor");
    admin(format!(
        "CREATE ROLE {other}; GRANT SELECT ON {DB}.* TO {other}; GRANT {other} TO '{user}'@'%'; \
         SET DEFAULT ROLE {other} FOR '{user}'@'%'"
    ))
    .await;
    let next_pw = password();
    let next = value(&backend, Slot::Clone, &next_pw);
    backend.apply(Slot::Clone, &next).await.expect("alternate");
    assert_eq!(
        as_user(&clone, &next_pw, "SELECT CURRENT_ROLE()").await,
        Ok(other)
    );
}
