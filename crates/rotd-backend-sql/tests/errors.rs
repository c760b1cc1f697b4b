//! Error classification and redaction against real servers: failed logins and missing privileges are
//! permanent, an unreachable server is retryable, configuration mistakes are refused up front with clear
//! messages, and no error ever contains the password or its hash.

mod common;

use common::*;
use rotd_backend_sql::{Accounts, Privilege, SqlBackend};
use rotd_core::{Backend, BackendError, Secret, Slot};
use rotd_testkit::fixtures::util::free_port;

/// Asserts `e` is permanent and mentions neither the password nor anything hash-like.
fn assert_clean(e: &BackendError, pw: &str) {
    for rendered in [e.to_string(), format!("{e:?}")] {
        assert!(!rendered.contains(pw), "error contains the password: {rendered}");
        assert!(
            !rendered.contains("SCRAM-SHA-256$"),
            "error contains a verifier: {rendered}"
        );
        assert!(
            !rendered.contains("PASSWORD '"),
            "error quotes a password statement: {rendered}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_permission_errors_are_permanent_and_carry_no_secret() {
    let (weak, weak_pw, user) = (unique_user(), password(), unique_user());
    let pg = blocking({
        let (weak, weak_pw, user) = (weak.clone(), weak_pw.clone(), user.clone());
        move || {
            let pg = postgres();
            pg.admin_sql(&format!(
                "CREATE ROLE {weak} LOGIN PASSWORD '{weak_pw}'; CREATE ROLE {user} LOGIN PASSWORD 'x{weak_pw}'"
            ));
            pg
        }
    })
    .await;
    let mut cfg = pg_config(pg, single(&user), Privilege::ReadWrite);
    cfg.admin_user = weak.clone();
    cfg.admin_password = Secret::from(weak_pw.as_str());
    let backend = SqlBackend::new(cfg).unwrap();

    let e = backend
        .check()
        .await
        .expect_err("a role without CREATEROLE fails check");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("CREATEROLE"), "{e}");

    let pw = password();
    let e = backend
        .apply(Slot::Single, &value(&backend, Slot::Single, &pw))
        .await
        .expect_err("a role without CREATEROLE cannot reset passwords");
    assert!(!e.is_retryable(), "permission denied is permanent: {e}");
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert_clean(&e, &pw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_permission_errors_are_permanent_and_carry_no_secret() {
    let (weak, weak_pw, user) = (unique_user(), password(), unique_user());
    let db = blocking({
        let (weak, weak_pw, user) = (weak.clone(), weak_pw.clone(), user.clone());
        move || {
            let db = mariadb();
            db.admin_sql(&format!(
                "CREATE USER '{weak}'@'%' IDENTIFIED BY '{weak_pw}'; GRANT SELECT ON mysql.* TO '{weak}'@'%'; \
                 CREATE USER '{user}'@'%' IDENTIFIED BY 'x{weak_pw}'"
            ));
            db
        }
    })
    .await;
    let mut cfg = mariadb_config(db, single(&user), Privilege::ReadWrite);
    cfg.admin_user = weak.clone();
    cfg.admin_password = Secret::from(weak_pw.as_str());
    let backend = SqlBackend::new(cfg).unwrap();

    let e = backend
        .check()
        .await
        .expect_err("no CREATE USER privilege fails check");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("CREATE USER"), "{e}");

    let pw = password();
    let e = backend
        .apply(Slot::Single, &value(&backend, Slot::Single, &pw))
        .await
        .expect_err("no CREATE USER privilege cannot reset passwords");
    assert!(!e.is_retryable(), "access denied is permanent: {e}");
    assert_clean(&e, &pw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_password_is_permanent_and_an_unreachable_server_retryable() {
    let pg = blocking(postgres).await;
    let mut cfg = pg_config(pg, single(&unique_user()), Privilege::ReadWrite);
    cfg.admin_password = Secret::from("not-the-admin-password");
    let backend = SqlBackend::new(cfg.clone()).unwrap();
    let e = backend.check().await.expect_err("wrong admin password");
    assert!(!e.is_retryable(), "{e}");
    assert!(!e.to_string().contains("not-the-admin-password"), "{e}");

    cfg.port = free_port();
    let backend = SqlBackend::new(cfg).unwrap();
    let pw = password();
    let e = backend
        .apply(Slot::Single, &value(&backend, Slot::Single, &pw))
        .await
        .expect_err("nothing listens there");
    assert!(e.is_retryable(), "connection refused is retryable: {e}");
    assert_clean(&e, &pw);
    let e = backend
        .verify(Slot::Single, &value(&backend, Slot::Single, &pw))
        .await
        .expect_err("nothing listens there");
    assert!(e.is_retryable(), "{e}");

    let db = blocking(mariadb).await;
    let mut cfg = mariadb_config(db, single(&unique_user()), Privilege::ReadWrite);
    cfg.port = free_port();
    let backend = SqlBackend::new(cfg).unwrap();
    let e = backend.check().await.expect_err("nothing listens there");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_names_the_account_but_not_the_password() {
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, single(&unique_user()), Privilege::ReadWrite)).unwrap();
    let pw = password();
    let e = backend
        .verify(Slot::Single, &value(&backend, Slot::Single, &pw))
        .await
        .expect_err("the account does not exist");
    assert!(!e.is_retryable());
    let user = backend.config().accounts.clone();
    let Accounts::Single { user } = user else {
        unreachable!()
    };
    assert!(e.to_string().contains(&format!("login as {user} failed")), "{e}");
    assert_clean(&e, &pw);
}

#[test]
fn bad_configuration_is_refused_with_clear_messages() {
    let pg = postgres();
    let err = |cfg| SqlBackend::new(cfg).expect_err("refused").to_string();

    let e = err(pg_config(pg, single("\"; DROP ROLE x; --"), Privilege::ReadWrite));
    assert!(
        e.contains("user: ") && e.contains("must start with a letter"),
        "{e}"
    );
    let e = err(pg_config(pg, single("app-1"), Privilege::ReadWrite));
    assert!(e.contains("contains '-'"), "{e}");

    let long = "a".repeat(30);
    let mut cfg = mariadb_config(mariadb(), dual(&long), Privilege::ReadWrite);
    let e = err(cfg.clone());
    assert!(
        e.contains("clone_user") && e.contains("at most 32"),
        "a clone name over MySQL's 32 characters: {e}"
    );
    cfg.accounts = dual("app");
    assert!(SqlBackend::new(cfg).is_ok());

    let e = err(pg_config(pg, dual(&"a".repeat(58)), Privilege::ReadWrite));
    assert!(e.contains("owner role"), "{e}");
    let mut cfg = pg_config(pg, single("app"), Privilege::ReadWrite);
    cfg.databases = vec!["shop; DROP".into()];
    assert!(err(cfg).contains("databases: "));
}

#[test]
fn values_for_another_account_or_slot_are_refused() {
    let backend = SqlBackend::new(pg_config(postgres(), single("app"), Privilege::ReadWrite)).unwrap();
    let e = backend
        .compose(Slot::Clone, &Secret::from("pw"))
        .expect_err("single accounts have no clone");
    assert!(e.to_string().contains("slot clone does not exist"), "{e}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let other = Secret::from(r#"{"AccountName":"root","AccountPassword":"hunter2"}"#);
    let e = rt
        .block_on(backend.apply(Slot::Single, &other))
        .expect_err("a value for another account");
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let garbage = Secret::from(r#"{"AccountName":"app","AccountPassword":12345678}"#);
    let e = rt
        .block_on(backend.verify(Slot::Single, &garbage))
        .expect_err("not a value");
    assert!(!e.to_string().contains("12345678"), "{e}");
}
