//! The SQL backend passes the shared backend conformance suite on real PostgreSQL and MariaDB servers
//! (password authentication enforced), single and dual, with imported accounts (created here first, with a
//! known password) and with accounts that `apply` creates.

mod common;

use common::*;
use rotd_backend_sql::{Privilege, SqlBackend};
use rotd_core::Slot;
use rotd_testkit::backend_suite::BackendUnderTest;

/// Creates a PostgreSQL login with a password and some privileges, as an operator would have.
async fn pg_import(user: String, password: String) {
    blocking(move || {
        let pg = postgres();
        pg.admin_sql(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}'; GRANT CONNECT ON DATABASE {DB} TO {user}"
        ));
        pg.psql_db(
            pg.admin_user(),
            pg.admin_password(),
            DB,
            &format!("GRANT SELECT ON items TO {user}"),
        )
        .expect("grant on items");
    })
    .await;
}

async fn mariadb_import(user: String, password: String) {
    blocking(move || {
        mariadb().admin_sql(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT SELECT ON {DB}.* TO '{user}'@'%'"
        ));
    })
    .await;
}

mod postgres_single_import {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let (user, pw) = (unique_user(), password());
        pg_import(user.clone(), pw.clone()).await;
        let pg = blocking(postgres).await;
        let backend =
            SqlBackend::new(pg_config(pg, single(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![(Slot::Single, value(&backend, Slot::Single, &pw))];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod postgres_single_create {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let pg = blocking(postgres).await;
        let backend = SqlBackend::new(pg_config(pg, single(&unique_user()), Privilege::ReadWrite))
            .expect("valid config");
        under_test(backend, Vec::new())
    }
    rotd_testkit::backend_conformance!(factory);
}

mod postgres_dual_import {
    use super::*;
    /// Only the primary exists; the first apply of the clone creates it with the primary's privileges.
    async fn factory() -> BackendUnderTest {
        let (user, pw) = (unique_user(), password());
        pg_import(user.clone(), pw.clone()).await;
        let pg = blocking(postgres).await;
        let backend =
            SqlBackend::new(pg_config(pg, dual(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![(Slot::Primary, value(&backend, Slot::Primary, &pw))];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod postgres_dual_import_both {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let (user, pw, clone_pw) = (unique_user(), password(), password());
        pg_import(user.clone(), pw.clone()).await;
        pg_import(format!("{user}_clone"), clone_pw.clone()).await;
        let pg = blocking(postgres).await;
        let backend =
            SqlBackend::new(pg_config(pg, dual(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![
            (Slot::Primary, value(&backend, Slot::Primary, &pw)),
            (Slot::Clone, value(&backend, Slot::Clone, &clone_pw)),
        ];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod postgres_dual_create {
    use super::*;
    /// Neither account exists: applying the primary creates it with the configured privilege.
    async fn factory() -> BackendUnderTest {
        let pg = blocking(postgres).await;
        let backend =
            SqlBackend::new(pg_config(pg, dual(&unique_user()), Privilege::ReadWrite)).expect("valid config");
        let primary = value(&backend, Slot::Primary, &password());
        rotd_core::Backend::apply(&backend, Slot::Primary, &primary)
            .await
            .expect("create the primary");
        under_test(backend, vec![(Slot::Primary, primary)])
    }
    rotd_testkit::backend_conformance!(factory);
}

mod mariadb_single_import {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let (user, pw) = (unique_user(), password());
        mariadb_import(user.clone(), pw.clone()).await;
        let db = blocking(mariadb).await;
        let backend =
            SqlBackend::new(mariadb_config(db, single(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![(Slot::Single, value(&backend, Slot::Single, &pw))];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod mariadb_single_create {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let db = blocking(mariadb).await;
        let backend = SqlBackend::new(mariadb_config(db, single(&unique_user()), Privilege::ReadWrite))
            .expect("valid config");
        under_test(backend, Vec::new())
    }
    rotd_testkit::backend_conformance!(factory);
}

mod mariadb_dual_import {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let (user, pw) = (unique_user(), password());
        mariadb_import(user.clone(), pw.clone()).await;
        let db = blocking(mariadb).await;
        let backend =
            SqlBackend::new(mariadb_config(db, dual(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![(Slot::Primary, value(&backend, Slot::Primary, &pw))];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod mariadb_dual_import_both {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let (user, pw, clone_pw) = (unique_user(), password(), password());
        mariadb_import(user.clone(), pw.clone()).await;
        mariadb_import(format!("{user}_clone"), clone_pw.clone()).await;
        let db = blocking(mariadb).await;
        let backend =
            SqlBackend::new(mariadb_config(db, dual(&user), Privilege::ReadWrite)).expect("valid config");
        let initial = vec![
            (Slot::Primary, value(&backend, Slot::Primary, &pw)),
            (Slot::Clone, value(&backend, Slot::Clone, &clone_pw)),
        ];
        under_test(backend, initial)
    }
    rotd_testkit::backend_conformance!(factory);
}

mod mariadb_dual_create {
    use super::*;
    async fn factory() -> BackendUnderTest {
        let db = blocking(mariadb).await;
        let backend = SqlBackend::new(mariadb_config(db, dual(&unique_user()), Privilege::ReadWrite))
            .expect("valid config");
        let primary = value(&backend, Slot::Primary, &password());
        rotd_core::Backend::apply(&backend, Slot::Primary, &primary)
            .await
            .expect("create the primary");
        under_test(backend, vec![(Slot::Primary, primary)])
    }
    rotd_testkit::backend_conformance!(factory);
}
