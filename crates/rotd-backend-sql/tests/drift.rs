//! Privilege parity between dual accounts on real servers: an extra privilege on one account, a privilege
//! revoked from the other, an attribute changed, a table created by the clone. Each case is either repaired
//! by the next apply of the target account (copying from the current one) or reported by `drift`.

mod common;

use common::*;
use rotd_backend_sql::{DriftItem, Privilege, SqlBackend};
use rotd_core::{Backend, Slot};

/// Creates both accounts through the backend and returns their passwords.
async fn create_pair(backend: &SqlBackend) -> (String, String) {
    let (pw, clone_pw) = (password(), password());
    for (slot, pw) in [(Slot::Primary, &pw), (Slot::Clone, &clone_pw)] {
        backend
            .apply(slot, &value(backend, slot, pw))
            .await
            .expect("create");
    }
    (pw, clone_pw)
}

fn find<'a>(items: &'a [DriftItem], needle: &str) -> Option<&'a DriftItem> {
    items.iter().find(|i| i.detail.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drift_is_repaired_or_reported() {
    let user = unique_user();
    let clone = format!("{user}_clone");
    let owner = format!("{user}_owner");
    let pg = blocking(postgres).await;
    let backend = SqlBackend::new(pg_config(pg, dual(&user), Privilege::ReadWrite)).unwrap();
    let (pw, clone_pw) = create_pair(&backend).await;
    assert_eq!(
        backend.drift(Slot::Clone).await.unwrap(),
        [],
        "a fresh pair has no drift"
    );

    // The clone creates a table: it is owned by the shared owner role, so the primary can use and alter it.
    let (c, cpw) = (clone.clone(), clone_pw.clone());
    let (u, upw) = (user.clone(), pw.clone());
    let table_owner = blocking(move || {
        let pg = postgres();
        pg.psql_db(
            &c,
            &cpw,
            DB,
            "CREATE TABLE made_by_clone (id int); INSERT INTO made_by_clone VALUES (1)",
        )
        .expect("the clone creates a table");
        pg.psql_db(
            &u,
            &upw,
            DB,
            "ALTER TABLE made_by_clone ADD COLUMN note text; SELECT count(*) FROM made_by_clone",
        )
        .expect("the primary alters and reads the clone's table");
        pg.psql_db(
            pg.admin_user(),
            pg.admin_password(),
            DB,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_clone'",
        )
        .unwrap()
    })
    .await;
    assert_eq!(table_owner, owner);

    // Drift: an extra database privilege on the clone, a connection limit and VALID UNTIL changed by hand.
    let (c, u) = (clone.clone(), user.clone());
    blocking(move || {
        let pg = postgres();
        pg.admin_sql(&format!("GRANT CREATE ON DATABASE {DB} TO {c}"));
        pg.admin_sql(&format!("ALTER ROLE {u} CONNECTION LIMIT 7"));
        pg.admin_sql(&format!("ALTER ROLE {c} VALID UNTIL '2999-01-01'"));
    })
    .await;

    let toward_clone = backend.drift(Slot::Clone).await.unwrap();
    let extra = find(&toward_clone, "has CREATE on database shop").expect("extra grant reported");
    assert!(!extra.repairable);
    let limit = find(&toward_clone, "connection limit").expect("connection limit drift");
    assert!(limit.repairable);
    let valid = find(&toward_clone, "VALID UNTIL").expect("valid-until drift");
    assert!(!valid.repairable);

    // Rotating the clone copies the connection limit from the primary; the extra grant stays reported.
    let new_clone_pw = password();
    let v = value(&backend, Slot::Clone, &new_clone_pw);
    backend.apply(Slot::Clone, &v).await.unwrap();
    backend.verify(Slot::Clone, &v).await.unwrap();
    let after = backend.drift(Slot::Clone).await.unwrap();
    assert!(find(&after, "connection limit").is_none(), "{after:?}");
    assert!(find(&after, "has CREATE").is_some(), "{after:?}");

    // Rotating the primary copies the clone's extra grant over (to the owner role): parity restored.
    let primary_lacks = backend.drift(Slot::Primary).await.unwrap();
    assert!(find(&primary_lacks, "lacks CREATE on database shop").is_some_and(|i| i.repairable));
    let v = value(&backend, Slot::Primary, &password());
    backend.apply(Slot::Primary, &v).await.unwrap();
    let after = backend.drift(Slot::Primary).await.unwrap();
    assert!(find(&after, "CREATE").is_none(), "{after:?}");

    // A revoked membership is put back: the primary loses the owner role's sibling role.
    let (u, r) = (user.clone(), format!("{user}_reports"));
    blocking(move || {
        let pg = postgres();
        pg.admin_sql(&format!("CREATE ROLE {r} NOLOGIN; GRANT {r} TO {u}"));
    })
    .await;
    let clone_lacks = backend.drift(Slot::Clone).await.unwrap();
    assert!(
        find(&clone_lacks, "is not a member of").is_some_and(|i| i.repairable),
        "{clone_lacks:?}"
    );
    backend
        .apply(Slot::Clone, &value(&backend, Slot::Clone, &password()))
        .await
        .unwrap();
    let after = backend.drift(Slot::Clone).await.unwrap();
    assert!(find(&after, "member").is_none(), "{after:?}");
}

/// An imported login that owns objects (a schema and a table) holds ACSCurrent: creating its clone is
/// refused before anything changes, with the remedy in the error. After the remedy the clone is created
/// and switched, and both logins use the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_imported_owner_of_objects_is_refused_until_reassigned() {
    let (user, pw) = (unique_user(), password());
    let owner = format!("{user}_owner");
    let (u, p) = (user.clone(), pw.clone());
    blocking(move || {
        let pg = postgres();
        pg.admin_sql(&format!(
            "CREATE ROLE {u} LOGIN PASSWORD '{p}'; GRANT CONNECT, CREATE ON DATABASE {DB} TO {u}"
        ));
        pg.psql_db(
            pg.admin_user(),
            pg.admin_password(),
            DB,
            &format!("CREATE SCHEMA {u} AUTHORIZATION {u}"),
        )
        .unwrap();
        pg.psql_db(&u, &p, DB, &format!("CREATE TABLE {u}.legacy (id int)"))
            .unwrap();
    })
    .await;
    let pg = blocking(postgres).await;
    let backend = SqlBackend::new(pg_config(pg, dual(&user), Privilege::ReadWrite)).unwrap();
    let clone_pw = password();
    let v = value(&backend, Slot::Clone, &clone_pw);
    let e = backend
        .apply(Slot::Clone, &v)
        .await
        .expect_err("the live login owns objects");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.message.contains("owns objects"), "{e}");
    assert!(e.message.contains(&format!("2 in database {DB}")), "{e}");
    assert!(
        e.message
            .contains(&format!("REASSIGN OWNED BY {user} TO {owner} in database {DB}")),
        "{e}"
    );
    let (c, o) = (format!("{user}_clone"), owner.clone());
    let roles = blocking(move || {
        postgres().admin_sql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('{c}', '{o}')"
        ))
    })
    .await;
    assert_eq!(roles, "0", "nothing was created");

    // The operator runs what the message says; the clone is then created, and both use the table.
    let (u, o) = (user.clone(), owner.clone());
    blocking(move || {
        let pg = postgres();
        pg.admin_sql(&format!("CREATE ROLE {o} NOLOGIN; GRANT {o} TO {u}"));
        pg.psql_db(
            pg.admin_user(),
            pg.admin_password(),
            DB,
            &format!("REASSIGN OWNED BY {u} TO {o}"),
        )
        .unwrap();
    })
    .await;
    backend.apply(Slot::Clone, &v).await.expect("create the clone");
    backend.verify(Slot::Clone, &v).await.unwrap();
    backend
        .verify(Slot::Primary, &value(&backend, Slot::Primary, &pw))
        .await
        .expect("the imported primary still logs in");
    let (u, c, cpw) = (user.clone(), format!("{user}_clone"), clone_pw.clone());
    blocking(move || {
        let pg = postgres();
        for (login, password) in [(&u, &pw), (&c, &cpw)] {
            pg.psql_db(
                login,
                password,
                DB,
                &format!(
                    "INSERT INTO {u}.legacy VALUES (1); ALTER TABLE {u}.legacy ADD COLUMN IF NOT EXISTS x int"
                ),
            )
            .unwrap_or_else(|e| panic!("{login} uses the reassigned table: {e}"));
        }
    })
    .await;
    let items = backend.drift(Slot::Clone).await.unwrap();
    assert!(items.iter().all(|i| i.kind != "ownership"), "{items:?}");
    // The primary's database privileges were copied: the clone can create in the database too.
    assert!(find(&items, "lacks CREATE on database").is_none(), "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drift_is_repaired_or_reported() {
    let user = unique_user();
    let clone = format!("{user}_clone");
    let db = blocking(mariadb).await;
    let backend = SqlBackend::new(mariadb_config(db, dual(&user), Privilege::ReadOnly)).unwrap();
    let (_, clone_pw) = create_pair(&backend).await;
    assert_eq!(
        backend.drift(Slot::Clone).await.unwrap(),
        [],
        "a fresh pair has no drift"
    );

    // An extra privilege on the clone, one revoked from the primary, and TLS required of the clone.
    let (c, u) = (clone.clone(), user.clone());
    blocking(move || {
        mariadb().admin_sql(&format!(
            "GRANT DELETE ON {DB}.* TO '{c}'@'%'; REVOKE SHOW VIEW ON {DB}.* FROM '{u}'@'%'; \
             ALTER USER '{c}'@'%' WITH MAX_QUERIES_PER_HOUR 100"
        ));
    })
    .await;
    let toward_clone = backend.drift(Slot::Clone).await.unwrap();
    assert!(
        find(&toward_clone, "has DELETE on `shop`.*").is_some_and(|i| !i.repairable),
        "{toward_clone:?}"
    );
    assert!(find(&toward_clone, "MAX_QUERIES_PER_HOUR").is_some_and(|i| i.kind == "account"));
    for item in &toward_clone {
        assert!(
            !item.detail.contains("'*") && !item.detail.contains("IDENTIFIED"),
            "no hash in drift details: {item}"
        );
    }

    // Rotating the primary restores SHOW VIEW (copied from the clone) and takes DELETE over too.
    let toward_primary = backend.drift(Slot::Primary).await.unwrap();
    assert!(
        find(&toward_primary, "lacks SHOW VIEW").is_some_and(|i| i.repairable),
        "{toward_primary:?}"
    );
    let primary_pw = password();
    let v = value(&backend, Slot::Primary, &primary_pw);
    backend.apply(Slot::Primary, &v).await.unwrap();
    backend.verify(Slot::Primary, &v).await.unwrap();
    let u = user.clone();
    let grants = blocking(move || mariadb().admin_sql(&format!("SHOW GRANTS FOR '{u}'@'%'"))).await;
    assert!(
        grants.contains("SHOW VIEW") && grants.contains("DELETE"),
        "{grants}"
    );
    let after = backend.drift(Slot::Primary).await.unwrap();
    assert!(after.iter().all(|i| i.kind == "account"), "{after:?}");

    // A table created by the clone is usable by the primary (MySQL has no object owners).
    let (c, cpw) = (clone.clone(), clone_pw.clone());
    let rows = blocking(move || {
        let db = mariadb();
        db.admin_sql(&format!("GRANT CREATE, INSERT ON {DB}.* TO '{c}'@'%'"));
        db.mysql_db(
            &c,
            &cpw,
            Some(DB),
            "CREATE TABLE by_clone (id int); INSERT INTO by_clone VALUES (1)",
        )
        .expect("the clone creates a table");
        db.mysql_db(&user, &primary_pw, Some(DB), "SELECT count(*) FROM by_clone")
            .expect("the primary reads the clone's table")
    })
    .await;
    assert_eq!(rows, "1");
    let after = backend.drift(Slot::Primary).await.unwrap();
    assert!(
        find(&after, "lacks CREATE").is_some_and(|i| i.repairable),
        "{after:?}"
    );
}
