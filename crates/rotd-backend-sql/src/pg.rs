//! PostgreSQL: login roles with client-computed SCRAM verifiers, the shared owner role of dual pairs, and
//! privilege parity. The scheme is described in the crate docs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rotd_core::{BackendError, BackendResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::config::{Privilege, SqlConfig, Tls};
use crate::error::{self, Hide, is_concurrent_catalog_update};
use crate::quote::{self, Dialect};
use crate::{DriftItem, Target, hash, report_drift};

const KIND: &str = "postgres";

/// Schemas that belong to the server, never compared or granted on.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'";

fn options(cfg: &SqlConfig, user: &str, password: &str, database: &str) -> PgConnectOptions {
    let ssl_mode = match cfg.tls {
        Tls::Disable => PgSslMode::Disable,
        Tls::Prefer => PgSslMode::Prefer,
        Tls::Require => PgSslMode::Require,
        Tls::VerifyFull => PgSslMode::VerifyFull,
    };
    // `new_without_pgpass` so a ~/.pgpass can never supply a password we did not mean to use.
    let mut opts = PgConnectOptions::new_without_pgpass()
        .host(&cfg.host)
        .port(cfg.port)
        .username(user)
        .password(password)
        .database(database)
        .ssl_mode(ssl_mode)
        .application_name("rotd")
        // sqlx logs every statement at DEBUG by default; ours carry password verifiers.
        .disable_statement_logging();
    if let Some(ca) = &cfg.ca_file {
        opts = opts.ssl_root_cert(ca);
    }
    opts
}

/// One operation's context: which operation it is, and what its error messages must not contain.
struct Cx<'a> {
    cfg: &'a SqlConfig,
    op: &'static str,
    hide: Hide<'a>,
}

impl Cx<'_> {
    fn err(&self, context: &str, e: &sqlx::Error) -> BackendError {
        error::from_sqlx(KIND, self.op, context, e, self.hide)
    }

    fn permanent(&self, message: impl Into<String>) -> BackendError {
        BackendError::permanent(KIND, self.op, self.hide.scrub(message.into()))
    }

    async fn connect(&self, user: &str, password: &str, database: &str) -> BackendResult<PgConnection> {
        let opts = options(self.cfg, user, password, database);
        let context = format!("connect to {}:{} as {user}", self.cfg.host, self.cfg.port);
        match tokio::time::timeout(self.cfg.connect_timeout, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.err(&context, &e)),
            Err(_) => Err(error::timed_out(KIND, self.op, &context)),
        }
    }

    async fn admin(&self, database: &str) -> BackendResult<PgConnection> {
        let password = self.cfg.admin_password.expose_str().unwrap_or_default();
        self.connect(&self.cfg.admin_user, password, database).await
    }

    /// Runs one dynamic statement through the simple-query protocol: no prepared statement, so nothing
    /// secret is cached on either side.
    /// Runs one simple-query message (autocommit, or one implicit transaction when it holds several
    /// statements). A message that lost a race on a catalog row to another session
    /// ([`is_concurrent_catalog_update`]) rolled back whole and is sent again, a few times, at once:
    /// backing off the whole rotation for a lost GRANT race would be out of proportion.
    async fn exec(&self, conn: &mut PgConnection, sql: String, what: &str) -> BackendResult<()> {
        let mut attempt = 0;
        loop {
            match sqlx::raw_sql(AssertSqlSafe(sql.as_str()))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_concurrent_catalog_update(&e) && attempt < CATALOG_RACE_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                }
                Err(e) => return Err(self.err(what, &e)),
            }
        }
    }

    fn ident(&self, name: &str) -> BackendResult<String> {
        quote::quote_ident_pg(name).map_err(|e| self.permanent(format!("role name: {e}")))
    }

    fn literal(&self, text: &str) -> BackendResult<String> {
        quote::quote_literal(Dialect::Postgres, text).map_err(|e| self.permanent(e.to_string()))
    }
}

/// How often [`Cx::exec`] resends a message that lost a catalog-row race before reporting it (retryable).
const CATALOG_RACE_RETRIES: u32 = 5;

/// Closes a connection politely so the server logs a normal disconnect; failures do not matter here.
async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}

/// The databases rotd grants the configured privileges in when it creates an account: the configured
/// ones, or the connection database.
fn grant_databases(cfg: &SqlConfig) -> Vec<String> {
    if cfg.databases.is_empty() {
        vec![cfg.pg_database().to_owned()]
    } else {
        cfg.databases.clone()
    }
}

/// Runs `f` once per database of `dbs` (a `&[String]`), reusing `main` for the connection database and
/// opening (and closing) an admin connection for each other one.
macro_rules! for_each_database {
    ($cx:expr, $main:expr, $dbs:expr, |$db:ident, $conn:ident| $body:block) => {{
        for $db in $dbs.iter().map(String::as_str) {
            let mut own: Option<PgConnection> = None;
            let $conn: &mut PgConnection = if $db == $cx.cfg.pg_database() {
                &mut *$main
            } else {
                own.insert($cx.admin($db).await?)
            };
            let result: BackendResult<()> = async { $body }.await;
            if let Some(c) = own {
                close(c).await;
            }
            result?;
        }
    }};
}

pub(crate) async fn check(cfg: &SqlConfig) -> BackendResult<()> {
    let cx = Cx {
        cfg,
        op: "check",
        hide: Hide(&[]),
    };
    let mut conn = cx.admin(cfg.pg_database()).await?;
    let result = check_on(&cx, &mut conn).await;
    close(conn).await;
    result
}

async fn check_on(cx: &Cx<'_>, conn: &mut PgConnection) -> BackendResult<()> {
    let (superuser, createrole): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| cx.err("read the admin role's attributes", &e))?;
    if !superuser && !createrole {
        return Err(cx.permanent(format!(
            "the admin role {} has neither SUPERUSER nor CREATEROLE, so it cannot create roles or reset \
             passwords",
            cx.cfg.admin_user
        )));
    }
    if !cx.cfg.databases.is_empty() {
        let present: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = ANY($1)")
                .bind(&cx.cfg.databases)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| cx.err("list databases", &e))?;
        let missing: Vec<&str> = cx
            .cfg
            .databases
            .iter()
            .filter(|d| !present.contains(d))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(cx.permanent(format!("databases do not exist: {}", missing.join(", "))));
        }
    }
    Ok(())
}

pub(crate) async fn verify(cfg: &SqlConfig, user: &str, password: &str) -> BackendResult<()> {
    let hide_list = [password];
    let cx = Cx {
        cfg,
        op: "verify",
        hide: Hide(&hide_list),
    };
    let opts = options(cfg, user, password, cfg.pg_database());
    let context = format!("login as {user}");
    let mut conn = match tokio::time::timeout(cfg.connect_timeout, PgConnection::connect_with(&opts)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) if error::is_auth_failure(&e) => {
            return Err(cx.permanent(format!("login as {user} failed: {}", error::describe(&e))));
        }
        Ok(Err(e)) => return Err(cx.err(&context, &e)),
        Err(_) => return Err(error::timed_out(KIND, "verify", &context)),
    };
    let result = sqlx::raw_sql("SELECT 1")
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| cx.err(&format!("SELECT 1 as {user}"), &e));
    close(conn).await;
    result
}

pub(crate) async fn apply(cfg: &SqlConfig, target: &Target<'_>) -> BackendResult<()> {
    let verifier = hash::pg_scram_verifier(target.password.as_bytes());
    if !hash::is_plain_hash_text(&verifier) {
        return Err(BackendError::permanent(
            KIND,
            "apply",
            "unexpected characters in the SCRAM verifier",
        ));
    }
    let hide_list = [target.password, verifier.as_str()];
    let cx = Cx {
        cfg,
        op: "apply",
        hide: Hide(&hide_list),
    };
    let mut conn = cx.admin(cfg.pg_database()).await?;
    let result = apply_on(&cx, &mut conn, target, &verifier).await;
    close(conn).await;
    result
}

async fn apply_on(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    target: &Target<'_>,
    verifier: &str,
) -> BackendResult<()> {
    let user = target.user;
    let attrs = role_attrs(cx, conn, user).await?;
    // The other account counts only once it can log in: a NOLOGIN one is an unfinished creation (or a
    // disabled account, which has nothing to copy from either).
    let current = match target.other {
        Some(other) => role_attrs(cx, conn, other)
            .await?
            .filter(|a| a.canlogin)
            .map(|_| other),
        None => None,
    };
    let owner = cx.cfg.owner_role();

    // Creation makes the role NOLOGIN and marks it (one transaction), and enables LOGIN with the password
    // as the very last step, so an interrupted creation is recognisable and finished by the next apply.
    // A NOLOGIN role without the mark is an account someone disabled: it is not re-enabled.
    let resuming = match &attrs {
        Some(a) if !a.canlogin => {
            if !creation_marked(cx, conn, user).await? {
                return Err(cx.permanent(format!(
                    "role {user} exists but is NOLOGIN and was not left so by an unfinished rotd creation; \
                     rotd does not re-enable a disabled account (run ALTER ROLE {user} LOGIN to rotate it \
                     again)"
                )));
            }
            true
        }
        _ => false,
    };

    // Everything up to here only reads. For a dual pair the databases are found once, then the live
    // account is checked for objects its twin could not use after the swap, still before any change.
    let dbs = match &owner {
        Some(owner) => {
            let roles: Vec<&str> = std::iter::once(user)
                .chain(target.other)
                .chain(Some(owner.as_str()))
                .collect();
            used_databases(cx, conn, &roles).await?
        }
        None => Vec::new(),
    };
    if let (Some(owner), Some(current)) = (&owner, current) {
        refuse_live_ownership(cx, conn, &dbs, owner, current, user).await?;
    }

    if let Some(owner) = &owner {
        ensure_owner_role(cx, conn, owner).await?;
    }
    let creating = match &attrs {
        None => {
            let q_user = cx.ident(user)?;
            let mut sql = format!("CREATE ROLE {q_user} NOLOGIN");
            if current.is_none() && cx.cfg.privilege == Privilege::Privileged {
                sql.push_str(" CREATEDB CREATEROLE");
            }
            // One simple-query message runs as one implicit transaction: the role never exists unmarked.
            sql.push_str(&format!(
                "; COMMENT ON ROLE {q_user} IS {}",
                cx.literal(CREATION_MARK)?
            ));
            cx.exec(conn, sql, &format!("create role {user}")).await?;
            tracing::info!(backend = KIND, account = user, slot = %target.slot, "Created the database account.");
            true
        }
        Some(_) => resuming,
    };

    if let Some(owner) = &owner {
        // Only the target joins the scheme here; the live twin is never altered, and joins at its own turn.
        adopt_into_owner_role(cx, conn, &dbs, owner, user, current).await?;
    }
    if creating && current.is_none() {
        let grantee = owner.as_deref().unwrap_or(user);
        grant_configured(cx, conn, grantee).await?;
    }
    if let (Some(owner), Some(current)) = (&owner, current) {
        let found = drift_on(cx, conn, &dbs, owner, user, current).await?;
        repair(cx, conn, &dbs, owner, user, &found).await?;
        let items: Vec<DriftItem> = found.into_iter().map(|f| f.item).collect();
        report_drift(KIND, user, current, &items, true);
    }

    let q_user = cx.ident(user)?;
    let sql = if creating {
        format!(
            "ALTER ROLE {q_user} WITH LOGIN PASSWORD {}; COMMENT ON ROLE {q_user} IS NULL",
            cx.literal(verifier)?
        )
    } else {
        // Never `LOGIN` here: an existing account keeps whatever an operator set.
        format!("ALTER ROLE {q_user} WITH PASSWORD {}", cx.literal(verifier)?)
    };
    cx.exec(conn, sql, &format!("set the password of {user}")).await
}

/// The comment a role carries from its creation by rotd until `LOGIN` is enabled.
const CREATION_MARK: &str = "rotd: creation in progress; LOGIN is enabled last";

async fn creation_marked(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<bool> {
    sqlx::query_scalar(
        "SELECT coalesce(shobj_description(oid, 'pg_authid') = $2, false) FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .bind(CREATION_MARK)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read the comment on role {role}"), &e))
}

/// The databases an apply or a drift report looks at: the configured ones (or the connection database),
/// the connection database, and every database one of `roles` uses. A role uses a database when it (or a
/// role it is a member of) owns the database or holds an explicit privilege on it, or owns objects, holds
/// object privileges, default privileges or row-security policies there. PUBLIC's default `CONNECT` alone
/// does not make a database used, so candidates where no role has an explicit database privilege are
/// opened and inspected: every non-template database that allows connections and that one of `roles` can
/// connect to.
async fn used_databases(cx: &Cx<'_>, conn: &mut PgConnection, roles: &[&str]) -> BackendResult<Vec<String>> {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let mut used: BTreeSet<String> = grant_databases(cx.cfg).into_iter().collect();
    used.insert(cx.cfg.pg_database().to_owned());
    let closure: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE r(oid) AS ( \
             SELECT oid FROM pg_roles WHERE rolname = ANY($1) \
             UNION SELECT m.roleid FROM pg_auth_members m JOIN r ON m.member = r.oid) \
         SELECT rolname::text FROM pg_roles WHERE oid IN (SELECT oid FROM r)",
    )
    .bind(&roles)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err("read role memberships", &e))?;
    let candidates: Vec<(String, bool)> = sqlx::query_as(
        "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = ANY($1)) \
         SELECT d.datname::text, \
                d.datdba IN (SELECT oid FROM r) \
                OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee IN (SELECT oid FROM r)) \
           FROM pg_database d \
          WHERE d.datallowconn AND NOT d.datistemplate \
            AND EXISTS (SELECT 1 FROM pg_roles l \
                         WHERE l.rolname = ANY($2) AND has_database_privilege(l.oid, d.oid, 'CONNECT')) \
          ORDER BY 1",
    )
    .bind(&closure)
    .bind(&roles)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err("list databases", &e))?;
    for (db, explicit) in candidates {
        if explicit {
            used.insert(db);
            continue;
        }
        if used.contains(&db) {
            continue;
        }
        let mut c = match cx.admin(&db).await {
            Ok(c) => c,
            Err(e) => {
                // A database dropped since it was listed is simply not used.
                let exists: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                        .bind(&db)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| cx.err("list databases", &e))?;
                if exists {
                    return Err(e);
                }
                continue;
            }
        };
        let uses = uses_database(cx, &mut c, &closure).await;
        close(c).await;
        if uses? {
            used.insert(db);
        }
    }
    Ok(used.into_iter().collect())
}

/// Whether one of `roles` owns objects, holds object or default privileges, or is named by a row-security
/// policy in the connected database. Grants to PUBLIC do not count.
async fn uses_database(cx: &Cx<'_>, conn: &mut PgConnection, roles: &[String]) -> BackendResult<bool> {
    let sql = format!(
        "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = ANY($1)) \
         SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE {SYSTEM_SCHEMAS} AND (c.relowner IN (SELECT oid FROM r) OR EXISTS \
                               (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee IN (SELECT oid FROM r)))) \
             OR EXISTS (SELECT 1 FROM pg_namespace n \
                         WHERE {SYSTEM_SCHEMAS} AND (n.nspowner IN (SELECT oid FROM r) OR EXISTS \
                               (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee IN (SELECT oid FROM r)))) \
             OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                         WHERE {SYSTEM_SCHEMAS} AND (p.proowner IN (SELECT oid FROM r) OR EXISTS \
                               (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee IN (SELECT oid FROM r)))) \
             OR EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                         WHERE {SYSTEM_SCHEMAS} AND (t.typowner IN (SELECT oid FROM r) OR EXISTS \
                               (SELECT 1 FROM aclexplode(t.typacl) a WHERE a.grantee IN (SELECT oid FROM r)))) \
             OR EXISTS (SELECT 1 FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid \
                               JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE {SYSTEM_SCHEMAS} AND at.attacl IS NOT NULL AND EXISTS \
                               (SELECT 1 FROM aclexplode(at.attacl) a WHERE a.grantee IN (SELECT oid FROM r))) \
             OR EXISTS (SELECT 1 FROM pg_default_acl d \
                         WHERE d.defaclrole IN (SELECT oid FROM r) OR EXISTS \
                               (SELECT 1 FROM aclexplode(d.defaclacl) a WHERE a.grantee IN (SELECT oid FROM r))) \
             OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polroles && ARRAY(SELECT oid FROM r))"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(roles)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| cx.err("inspect which databases the accounts use", &e))
}

/// Refuses to rotate while the live account (`current`, holding ACSCurrent) owns objects the target could
/// not use once clients move to it: a permanent error naming what to run, raised before any change.
async fn refuse_live_ownership(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    dbs: &[String],
    owner: &str,
    current: &str,
    target: &str,
) -> BackendResult<()> {
    // A target with the live account's privileges (a member of it) reaches everything it owns.
    let reaches: bool = sqlx::query_scalar(
        "SELECT coalesce((SELECT pg_has_role(t.oid, c.oid, 'USAGE') FROM pg_roles t, pg_roles c \
                           WHERE t.rolname = $1 AND c.rolname = $2), false)",
    )
    .bind(target)
    .bind(current)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read the memberships of {target}"), &e))?;
    if reaches {
        return Ok(());
    }
    let owned_dbs: Vec<String> = sqlx::query_scalar(
        "SELECT d.datname::text FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
          WHERE r.rolname = $1 ORDER BY 1",
    )
    .bind(current)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("list the databases {current} owns"), &e))?;
    let mut places: Vec<String> = Vec::new();
    let mut in_dbs: Vec<&str> = Vec::new();
    for_each_database!(cx, conn, dbs, |db, c| {
        let (n, names) = owned(cx, c, current).await?;
        if n > 0 {
            places.push(format!("{n} in database {db} ({})", ellipsis(&names, n)));
            in_dbs.push(db);
        }
        Ok(())
    });
    if places.is_empty() && owned_dbs.is_empty() {
        return Ok(());
    }
    if !owned_dbs.is_empty() {
        places.push(format!("database(s) {}", owned_dbs.join(", ")));
    }
    let mut steps = Vec::new();
    if role_attrs(cx, conn, owner).await?.is_none() {
        steps.push(format!("CREATE ROLE {owner} NOLOGIN"));
    }
    if !is_member(cx, conn, owner, current).await? {
        steps.push(format!("GRANT {owner} TO {current}"));
    }
    let where_ = if in_dbs.is_empty() {
        format!("in database {}", cx.cfg.pg_database())
    } else {
        format!("in database {}", in_dbs.join(" and in database "))
    };
    let first = if steps.is_empty() {
        String::new()
    } else {
        format!("{}; then ", steps.join("; "))
    };
    Err(cx.permanent(format!(
        "{current} holds ACSCurrent and owns objects that {target} cannot use after the swap: {}; nothing \
         was changed. Hand them to the shared owner role first: {first}REASSIGN OWNED BY {current} TO \
         {owner} {where_}",
        places.join("; ")
    )))
}

/// Up to three names, and "…" when there are more.
fn ellipsis(names: &[String], total: i64) -> String {
    let mut text = names.join(", ");
    if total > names.len() as i64 {
        text.push_str(", …");
    }
    text
}

/// The role attributes parity looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleAttrs {
    superuser: bool,
    inherit: bool,
    createrole: bool,
    createdb: bool,
    canlogin: bool,
    replication: bool,
    bypassrls: bool,
    connlimit: i32,
    valid_until: Option<String>,
}

type AttrRow = (bool, bool, bool, bool, bool, bool, bool, i32, Option<String>);

async fn role_attrs(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<Option<RoleAttrs>> {
    let row: Option<AttrRow> = sqlx::query_as(
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, \
                rolbypassrls, rolconnlimit, rolvaliduntil::text \
           FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read role {role}"), &e))?;
    Ok(row.map(
        |(
            superuser,
            inherit,
            createrole,
            createdb,
            canlogin,
            replication,
            bypassrls,
            connlimit,
            valid_until,
        )| {
            RoleAttrs {
                superuser,
                inherit,
                createrole,
                createdb,
                canlogin,
                replication,
                bypassrls,
                connlimit,
                valid_until,
            }
        },
    ))
}

/// Creates the shared owner role of a dual pair if it is missing. It never logs in.
async fn ensure_owner_role(cx: &Cx<'_>, conn: &mut PgConnection, owner: &str) -> BackendResult<()> {
    if role_attrs(cx, conn, owner).await?.is_some() {
        return Ok(());
    }
    let mut sql = format!("CREATE ROLE {} NOLOGIN", cx.ident(owner)?);
    // Sessions act as the owner role, and attributes such as CREATEDB are checked on the current role.
    if cx.cfg.privilege == Privilege::Privileged {
        sql.push_str(" CREATEDB CREATEROLE");
    }
    cx.exec(conn, sql, &format!("create the owner role {owner}"))
        .await?;
    tracing::info!(
        backend = KIND,
        role = owner,
        "Created the shared owner role of the dual accounts."
    );
    Ok(())
}

async fn is_member(cx: &Cx<'_>, conn: &mut PgConnection, group: &str, member: &str) -> BackendResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
                          JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
                         WHERE g.rolname = $1 AND u.rolname = $2)",
    )
    .bind(group)
    .bind(member)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read the memberships of {member}"), &e))
}

/// Whether `login`'s sessions start as the owner role (`ALTER ROLE login SET role = owner`).
async fn is_switched(cx: &Cx<'_>, conn: &mut PgConnection, login: &str, owner: &str) -> BackendResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
                         WHERE r.rolname = $1 AND s.setdatabase = 0 AND $2 = ANY (s.setconfig))",
    )
    .bind(login)
    .bind(format!("role={owner}"))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read the settings of {login}"), &e))
}

/// Role memberships of `role`, without the owner role.
async fn memberships(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    role: &str,
    owner: &str,
) -> BackendResult<BTreeSet<String>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT g.rolname::text FROM pg_auth_members m \
           JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
          WHERE u.rolname = $1 AND g.rolname <> $2",
    )
    .bind(role)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read the memberships of {role}"), &e))?;
    Ok(rows.into_iter().collect())
}

/// One explicit privilege: object kind (`DATABASE`, `SCHEMA`, `TABLE`, `SEQUENCE`, `COLUMN`, `ROUTINE`,
/// `TYPE`), the object's name as the server quoted it (for a routine with its argument types; for a
/// column, its table), the column (quoted; empty for other kinds), the privilege, and whether it is
/// grantable.
type Acl = (String, String, String, String, bool);

/// The explicit privileges `role` holds in the connected database, excluding an owner's implicit ones.
async fn acl(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<BTreeSet<Acl>> {
    let sql = format!(
        "WITH g AS (SELECT oid FROM pg_roles WHERE rolname = $1) \
         SELECT 'DATABASE'::text, quote_ident(d.datname), ''::text, a.privilege_type, a.is_grantable \
           FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a \
          WHERE d.datname = current_database() AND a.grantee = (SELECT oid FROM g) AND a.grantee <> d.datdba \
         UNION ALL \
         SELECT 'SCHEMA'::text, quote_ident(n.nspname), '', a.privilege_type, a.is_grantable \
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a \
          WHERE {SYSTEM_SCHEMAS} AND a.grantee = (SELECT oid FROM g) AND a.grantee <> n.nspowner \
         UNION ALL \
         SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, \
                format('%I.%I', n.nspname, c.relname), '', a.privilege_type, a.is_grantable \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                CROSS JOIN LATERAL aclexplode(c.relacl) a \
          WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') AND {SYSTEM_SCHEMAS} \
            AND a.grantee = (SELECT oid FROM g) AND a.grantee <> c.relowner \
         UNION ALL \
         SELECT 'COLUMN', format('%I.%I', n.nspname, c.relname), quote_ident(at.attname), \
                a.privilege_type, a.is_grantable \
           FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid \
                JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(at.attacl) a \
          WHERE at.attnum > 0 AND NOT at.attisdropped AND c.relkind IN ('r', 'v', 'm', 'f', 'p') \
            AND {SYSTEM_SCHEMAS} AND a.grantee = (SELECT oid FROM g) AND a.grantee <> c.relowner \
         UNION ALL \
         SELECT 'ROUTINE', \
                format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), '', \
                a.privilege_type, a.is_grantable \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                CROSS JOIN LATERAL aclexplode(p.proacl) a \
          WHERE {SYSTEM_SCHEMAS} AND a.grantee = (SELECT oid FROM g) AND a.grantee <> p.proowner \
         UNION ALL \
         SELECT 'TYPE', format('%I.%I', n.nspname, t.typname), '', a.privilege_type, a.is_grantable \
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                CROSS JOIN LATERAL aclexplode(t.typacl) a \
          WHERE {SYSTEM_SCHEMAS} AND a.grantee = (SELECT oid FROM g) AND a.grantee <> t.typowner"
    );
    let rows: Vec<Acl> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| cx.err(&format!("read the privileges of {role}"), &e))?;
    Ok(rows.into_iter().collect())
}

/// Whether the privileges in `have` include `grant`: the same privilege on the same object with at least
/// the same grant option, or for a column privilege, the privilege on its whole table.
fn covers(have: &BTreeSet<Acl>, grant: &Acl) -> bool {
    let (kind, object, column, privilege, grantable) = grant;
    have.iter().any(|(k, o, c, p, g)| {
        o == object
            && p == privilege
            && (*g || !*grantable)
            && ((k == kind && c == column) || (kind == "COLUMN" && k == "TABLE"))
    })
}

/// How an object of a privilege row is named in messages: `table public.t`, `column public.t (note)`.
fn describe_object(kind: &str, object: &str, column: &str) -> String {
    if kind == "COLUMN" {
        format!("column {object} ({column})")
    } else {
        format!("{} {object}", kind.to_lowercase())
    }
}

/// How many relations, schemas, routines and types `role` owns in the connected database (indexes and
/// the types the server creates with tables and arrays not counted), and up to three of their names.
async fn owned(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<(i64, Vec<String>)> {
    let sql = format!(
        "WITH g AS (SELECT oid FROM pg_roles WHERE rolname = $1), o(name) AS ( \
           SELECT format('%s %I.%I', CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' \
                                     WHEN 'm' THEN 'materialized view' WHEN 'c' THEN 'type' \
                                     WHEN 'f' THEN 'foreign table' ELSE 'table' END, n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
            WHERE c.relowner = (SELECT oid FROM g) AND c.relkind NOT IN ('i', 'I', 't') AND {SYSTEM_SCHEMAS} \
           UNION ALL \
           SELECT format('schema %I', n.nspname) FROM pg_namespace n \
            WHERE n.nspowner = (SELECT oid FROM g) AND {SYSTEM_SCHEMAS} \
           UNION ALL \
           SELECT format('routine %I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
            WHERE p.proowner = (SELECT oid FROM g) AND {SYSTEM_SCHEMAS} \
           UNION ALL \
           SELECT format('type %I.%I', n.nspname, t.typname) \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
            WHERE t.typowner = (SELECT oid FROM g) AND t.typtype IN ('b', 'd', 'e', 'r') \
              AND t.typcategory <> 'A' AND {SYSTEM_SCHEMAS}) \
         SELECT (SELECT count(*) FROM o), ARRAY(SELECT name FROM o ORDER BY name LIMIT 3)"
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(role)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| cx.err(&format!("list the objects {role} owns"), &e))
}

/// What in the connected database keeps `role`'s sessions from acting as another role without losing
/// something: default privileges granted to it (objects created later would grant it, not the owner
/// role) and row-security policies that name it.
async fn role_bound(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<(i64, i64)> {
    sqlx::query_as(
        "WITH g AS (SELECT oid FROM pg_roles WHERE rolname = $1) \
         SELECT (SELECT count(*) FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a \
                  WHERE a.grantee = (SELECT oid FROM g)), \
                (SELECT count(*) FROM pg_policy p WHERE (SELECT oid FROM g) = ANY (p.polroles))",
    )
    .bind(role)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("read default privileges and policies for {role}"), &e))
}

/// Puts the target `login` into the shared-owner scheme: membership in the owner role; then its direct
/// privileges and memberships copied to the owner role; then, only if the owner role now has every
/// privilege the login has in every used database (and the login owns nothing and has no attribute,
/// default privilege or policy the owner role would lose), its sessions switched to the owner role.
///
/// `twin` is the live account. Nothing is done to it, and when it is a member of the owner role (so grants
/// to the role reach it), only privileges it already has are copied: adopting the target never widens
/// what the live account can do. A login that is not switched keeps working with its own rights; the
/// reasons are logged, and the next apply tries again. Returns whether the login is switched.
async fn adopt_into_owner_role(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    dbs: &[String],
    owner: &str,
    login: &str,
    twin: Option<&str>,
) -> BackendResult<bool> {
    let (q_owner, q_login) = (cx.ident(owner)?, cx.ident(login)?);
    if !is_member(cx, conn, owner, login).await? {
        cx.exec(
            conn,
            format!("GRANT {q_owner} TO {q_login}"),
            &format!("make {login} a member of {owner}"),
        )
        .await?;
    }
    if is_switched(cx, conn, login, owner).await? {
        return Ok(true);
    }
    let twin_member = match twin {
        Some(t) => is_member(cx, conn, owner, t).await?,
        None => false,
    };
    let mut blockers: Vec<String> = Vec::new();

    // Copy: memberships, then privileges in every used database.
    let twin_roles = match twin {
        Some(t) if twin_member => memberships(cx, conn, t, owner).await?,
        _ => BTreeSet::new(),
    };
    for role in memberships(cx, conn, login, owner).await? {
        if is_member(cx, conn, &role, owner).await? {
            continue;
        }
        if twin_member && !twin_roles.contains(&role) {
            continue; // the check below reports it
        }
        cx.exec(
            conn,
            format!("GRANT {} TO {q_owner}", cx.ident(&role)?),
            &format!("copy membership in {role} to {owner}"),
        )
        .await?;
    }
    for_each_database!(cx, conn, dbs, |db, c| {
        let have = acl(cx, c, owner).await?;
        let twin_has = match twin {
            Some(t) if twin_member => acl(cx, c, t).await?,
            _ => BTreeSet::new(),
        };
        let mine = acl(cx, c, login).await?;
        for grant in &mine {
            if covers(&have, grant) || (twin_member && !covers(&twin_has, grant)) {
                continue;
            }
            exec_grant(cx, c, grant, &q_owner, owner).await?;
        }
        // Check, from the server's state after copying.
        let have = acl(cx, c, owner).await?;
        for (kind, object, column, privilege, _) in mine.iter().filter(|g| !covers(&have, g)) {
            blockers.push(format!(
                "{owner} lacks {privilege} on {} in database {db}",
                describe_object(kind, object, column)
            ));
        }
        let (n, names) = owned(cx, c, login).await?;
        if n > 0 {
            blockers.push(format!(
                "{login} owns {n} object(s) in database {db} ({})",
                ellipsis(&names, n)
            ));
        }
        let (defaults, policies) = role_bound(cx, c, login).await?;
        if defaults > 0 {
            blockers.push(format!("default privileges in database {db} grant to {login}"));
        }
        if policies > 0 {
            blockers.push(format!("row-security policies in database {db} name {login}"));
        }
        Ok(())
    });
    for role in memberships(cx, conn, login, owner).await? {
        if !is_member(cx, conn, &role, owner).await? {
            blockers.push(format!("{owner} is not a member of {role}"));
        }
    }
    let owned_dbs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1",
    )
    .bind(login)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("list the databases {login} owns"), &e))?;
    if owned_dbs > 0 {
        blockers.push(format!("{login} owns {owned_dbs} database(s)"));
    }

    // Attributes are checked on the role a session acts as. The owner role is shared by both logins, so
    // it gets CREATEDB or CREATEROLE only when the live twin has it too (or there is no live twin);
    // SUPERUSER and BYPASSRLS are never given to it.
    let missing = |what: &str| cx.permanent(format!("role {what} does not exist"));
    let l = role_attrs(cx, conn, login).await?.ok_or_else(|| missing(login))?;
    let o = role_attrs(cx, conn, owner).await?.ok_or_else(|| missing(owner))?;
    let tw = match twin {
        Some(t) => role_attrs(cx, conn, t).await?,
        None => None,
    };
    let mut give: Vec<&'static str> = Vec::new();
    for (name, has_l, has_o, has_twin, grantable) in [
        (
            "CREATEDB",
            l.createdb,
            o.createdb,
            tw.as_ref().is_none_or(|t| t.createdb),
            true,
        ),
        (
            "CREATEROLE",
            l.createrole,
            o.createrole,
            tw.as_ref().is_none_or(|t| t.createrole),
            true,
        ),
        ("SUPERUSER", l.superuser, o.superuser, false, false),
        ("BYPASSRLS", l.bypassrls, o.bypassrls, false, false),
    ] {
        if has_l && !has_o {
            if grantable && has_twin {
                give.push(name);
            } else {
                blockers.push(format!("{login} has {name}, which {owner} lacks"));
            }
        }
    }

    if !blockers.is_empty() {
        tracing::warn!(
            backend = KIND,
            account = login,
            role = owner,
            reasons = %blockers.join("; "),
            "Not switching the account's sessions to the shared owner role: they would lose rights."
        );
        return Ok(false);
    }
    for name in give {
        cx.exec(
            conn,
            format!("ALTER ROLE {q_owner} {name}"),
            &format!("give {owner} {name}, which both accounts have"),
        )
        .await?;
    }
    cx.exec(
        conn,
        format!("ALTER ROLE {q_login} SET role = {}", cx.literal(owner)?),
        &format!("switch {login}'s sessions to {owner}"),
    )
    .await?;
    tracing::info!(
        backend = KIND,
        account = login,
        role = owner,
        "Switched the account's sessions to the shared owner role."
    );
    Ok(true)
}

/// Issues one `GRANT` from a privilege row the server produced. The object and column names were quoted
/// by the server (`quote_ident`/`format('%I')`, and `pg_get_function_identity_arguments` for routines);
/// the kind comes from our own query and the privilege is checked to be a bare keyword.
async fn exec_grant(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    (kind, object, column, privilege, grantable): &Acl,
    q_grantee: &str,
    grantee: &str,
) -> BackendResult<()> {
    let keyword = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b' ');
    if !keyword(kind) || !keyword(privilege) || (kind == "COLUMN") == column.is_empty() {
        return Err(cx.permanent(format!("refusing an unexpected privilege row for {object}")));
    }
    let option = if *grantable { " WITH GRANT OPTION" } else { "" };
    let on = if kind == "COLUMN" {
        format!("{privilege} ({column}) ON TABLE {object}")
    } else {
        format!("{privilege} ON {kind} {object}")
    };
    cx.exec(
        conn,
        format!("GRANT {on} TO {q_grantee}{option}"),
        &format!(
            "grant {privilege} on {} to {grantee}",
            describe_object(kind, object, column)
        ),
    )
    .await
}

/// Grants the configured privilege level to `grantee` on each configured database's `public` schema,
/// including default privileges for tables the admin creates later.
async fn grant_configured(cx: &Cx<'_>, conn: &mut PgConnection, grantee: &str) -> BackendResult<()> {
    let g = cx.ident(grantee)?;
    let (database, schema, tables, sequences): (&str, &str, Option<&str>, Option<&str>) =
        match cx.cfg.privilege {
            Privilege::ReadOnly => ("CONNECT", "USAGE", Some("SELECT"), Some("SELECT")),
            Privilege::DmlOnly => (
                "CONNECT",
                "USAGE",
                Some("SELECT, INSERT, UPDATE, DELETE"),
                Some("USAGE, SELECT"),
            ),
            Privilege::DdlOnly => ("CONNECT, TEMPORARY", "USAGE, CREATE", None, None),
            Privilege::ReadWrite | Privilege::Standard => (
                "CONNECT, TEMPORARY",
                "USAGE, CREATE",
                Some("ALL PRIVILEGES"),
                Some("ALL PRIVILEGES"),
            ),
            Privilege::Privileged => (
                "ALL PRIVILEGES",
                "USAGE, CREATE",
                Some("ALL PRIVILEGES"),
                Some("ALL PRIVILEGES"),
            ),
        };
    for_each_database!(cx, conn, grant_databases(cx.cfg), |db, c| {
        let mut statements = vec![
            format!("GRANT {database} ON DATABASE {} TO {g}", cx.ident(db)?),
            format!("GRANT {schema} ON SCHEMA public TO {g}"),
        ];
        if let Some(t) = tables {
            statements.push(format!("GRANT {t} ON ALL TABLES IN SCHEMA public TO {g}"));
            statements.push(format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {t} ON TABLES TO {g}"
            ));
        }
        if let Some(s) = sequences {
            statements.push(format!("GRANT {s} ON ALL SEQUENCES IN SCHEMA public TO {g}"));
            statements.push(format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {s} ON SEQUENCES TO {g}"
            ));
        }
        for sql in statements {
            cx.exec(
                c,
                sql,
                &format!("grant the configured privileges on {db} to {grantee}"),
            )
            .await?;
        }
        Ok(())
    });
    Ok(())
}

/// A difference and, when rotd can repair it, how.
struct Found {
    item: DriftItem,
    fix: Option<Fix>,
}

enum Fix {
    /// `ALTER ROLE <target> <clause>`.
    Attribute(&'static str),
    ConnectionLimit(i32),
    /// `GRANT <role> TO <grantee>`.
    Membership(String),
    /// A privilege in a database.
    Grant {
        db: String,
        acl: Acl,
    },
}

pub(crate) async fn drift(cfg: &SqlConfig, target: &str, current: &str) -> BackendResult<Vec<DriftItem>> {
    let cx = Cx {
        cfg,
        op: "drift",
        hide: Hide(&[]),
    };
    let owner = cfg.owner_role().unwrap_or_default();
    let mut conn = cx.admin(cfg.pg_database()).await?;
    let result = async {
        let dbs = used_databases(&cx, &mut conn, &[target, current, &owner]).await?;
        drift_on(&cx, &mut conn, &dbs, &owner, target, current).await
    }
    .await;
    close(conn).await;
    Ok(result?.into_iter().map(|f| f.item).collect())
}

/// What a login can use: its own privileges plus the owner role's when it is a member (or its sessions
/// switch to the owner role).
struct Effective {
    switched: bool,
    member: bool,
}

impl Effective {
    async fn of(cx: &Cx<'_>, conn: &mut PgConnection, login: &str, owner: &str) -> BackendResult<Self> {
        Ok(Self {
            switched: is_switched(cx, conn, login, owner).await?,
            member: is_member(cx, conn, owner, login).await?,
        })
    }

    /// The login's own privileges plus, for a member, the owner role's. A switched login's own grants
    /// still count: its sessions can `RESET ROLE` to use them.
    fn combine<T: Ord + Clone>(&self, own: &BTreeSet<T>, owner: &BTreeSet<T>) -> BTreeSet<T> {
        if self.member || self.switched {
            own.union(owner).cloned().collect()
        } else {
            own.clone()
        }
    }
}

async fn drift_on(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    dbs: &[String],
    owner: &str,
    target: &str,
    current: &str,
) -> BackendResult<Vec<Found>> {
    let mut found = Vec::new();
    let missing = |what: &str| cx.permanent(format!("role {what} does not exist"));
    let t = role_attrs(cx, conn, target)
        .await?
        .ok_or_else(|| missing(target))?;
    let c = role_attrs(cx, conn, current)
        .await?
        .ok_or_else(|| missing(current))?;
    let mut attribute = |name: &'static str, has_t: bool, has_c: bool, clause: &'static str, safe: bool| {
        if has_c && !has_t {
            found.push(Found {
                item: DriftItem {
                    kind: "attribute",
                    detail: format!("{target} lacks {name}, which {current} has"),
                    repairable: safe,
                },
                fix: safe.then_some(Fix::Attribute(clause)),
            });
        } else if has_t && !has_c {
            found.push(Found {
                item: DriftItem {
                    kind: "attribute",
                    detail: format!("{target} has {name}, which {current} lacks"),
                    repairable: false,
                },
                fix: None,
            });
        }
    };
    attribute("CREATEDB", t.createdb, c.createdb, "CREATEDB", true);
    attribute("CREATEROLE", t.createrole, c.createrole, "CREATEROLE", true);
    attribute("INHERIT", t.inherit, c.inherit, "INHERIT", true);
    attribute("SUPERUSER", t.superuser, c.superuser, "SUPERUSER", false);
    attribute("REPLICATION", t.replication, c.replication, "REPLICATION", false);
    attribute("BYPASSRLS", t.bypassrls, c.bypassrls, "BYPASSRLS", false);
    if t.connlimit != c.connlimit {
        found.push(Found {
            item: DriftItem {
                kind: "attribute",
                detail: format!(
                    "connection limit of {target} is {}, of {current} {}",
                    t.connlimit, c.connlimit
                ),
                repairable: true,
            },
            fix: Some(Fix::ConnectionLimit(c.connlimit)),
        });
    }
    if t.valid_until != c.valid_until {
        found.push(Found {
            item: DriftItem {
                kind: "attribute",
                detail: format!(
                    "VALID UNTIL of {target} is {}, of {current} {}",
                    t.valid_until.as_deref().unwrap_or("infinity"),
                    c.valid_until.as_deref().unwrap_or("infinity")
                ),
                repairable: false,
            },
            fix: None,
        });
    }

    let eff_t = Effective::of(cx, conn, target, owner).await?;
    let eff_c = Effective::of(cx, conn, current, owner).await?;
    let owner_members = memberships(cx, conn, owner, owner).await?;
    let m_t = eff_t.combine(&memberships(cx, conn, target, owner).await?, &owner_members);
    let m_c = eff_c.combine(&memberships(cx, conn, current, owner).await?, &owner_members);
    for role in m_c.difference(&m_t) {
        found.push(Found {
            item: DriftItem {
                kind: "membership",
                detail: format!("{target} is not a member of {role}, as {current} is"),
                repairable: true,
            },
            fix: Some(Fix::Membership(role.clone())),
        });
    }
    for role in m_t.difference(&m_c) {
        found.push(Found {
            item: DriftItem {
                kind: "membership",
                detail: format!("{target} is a member of {role}, {current} is not"),
                repairable: false,
            },
            fix: None,
        });
    }

    let mut per_db: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for_each_database!(cx, conn, dbs, |db, d| {
        let owner_acl = acl(cx, d, owner).await?;
        let a_t = eff_t.combine(&acl(cx, d, target).await?, &owner_acl);
        let a_c = eff_c.combine(&acl(cx, d, current).await?, &owner_acl);
        let entry = per_db.entry(db.to_owned()).or_default();
        for grant in a_c.difference(&a_t).filter(|g| !covers(&a_t, g)) {
            let (kind, object, column, privilege, grantable) = grant;
            let option = if *grantable { " with grant option" } else { "" };
            entry.push(Found {
                item: DriftItem {
                    kind: "grant",
                    detail: format!(
                        "{target} lacks {privilege} on {}{option} in database {db}, which {current} has",
                        describe_object(kind, object, column)
                    ),
                    repairable: true,
                },
                fix: Some(Fix::Grant {
                    db: db.to_owned(),
                    acl: grant.clone(),
                }),
            });
        }
        for (kind, object, column, privilege, _) in a_t.difference(&a_c).filter(|g| !covers(&a_c, g)) {
            entry.push(Found {
                item: DriftItem {
                    kind: "grant",
                    detail: format!(
                        "{target} has {privilege} on {} in database {db}, which {current} lacks",
                        describe_object(kind, object, column)
                    ),
                    repairable: false,
                },
                fix: None,
            });
        }
        for login in [target, current] {
            let (n, names) = owned(cx, d, login).await?;
            if n > 0 {
                entry.push(Found {
                    item: DriftItem {
                        kind: "ownership",
                        detail: format!(
                            "{login} owns {n} object(s) in database {db} ({}), which the other account \
                             cannot alter; run REASSIGN OWNED BY {login} TO {owner} there",
                            ellipsis(&names, n)
                        ),
                        repairable: false,
                    },
                    fix: None,
                });
            }
        }
        Ok(())
    });
    found.extend(per_db.into_values().flatten());
    Ok(found)
}

/// Applies the repairable fixes to `target`: attributes on the login itself, memberships and privileges
/// on whichever role its sessions act as.
async fn repair(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    dbs: &[String],
    owner: &str,
    target: &str,
    found: &[Found],
) -> BackendResult<()> {
    if found.iter().all(|f| f.fix.is_none()) {
        return Ok(());
    }
    let switched = is_switched(cx, conn, target, owner).await?;
    let grantee = if switched { owner } else { target };
    let (q_target, q_grantee) = (cx.ident(target)?, cx.ident(grantee)?);
    let mut grants: BTreeMap<&str, Vec<&Acl>> = BTreeMap::new();
    for fix in found.iter().filter_map(|f| f.fix.as_ref()) {
        match fix {
            Fix::Attribute(clause) => {
                cx.exec(
                    conn,
                    format!("ALTER ROLE {q_target} {clause}"),
                    &format!("give {target} {clause}"),
                )
                .await?;
                // A switched session checks CREATEDB and CREATEROLE on the owner role. The live account
                // has the attribute (that is why it is copied), so the shared role may have it too.
                if switched && matches!(*clause, "CREATEDB" | "CREATEROLE") {
                    cx.exec(
                        conn,
                        format!("ALTER ROLE {} {clause}", cx.ident(owner)?),
                        &format!("give {owner} {clause}"),
                    )
                    .await?;
                }
            }
            Fix::ConnectionLimit(n) => {
                cx.exec(
                    conn,
                    format!("ALTER ROLE {q_target} CONNECTION LIMIT {n}"),
                    &format!("set the connection limit of {target}"),
                )
                .await?;
            }
            Fix::Membership(role) => {
                cx.exec(
                    conn,
                    format!("GRANT {} TO {q_grantee}", cx.ident(role)?),
                    &format!("grant membership in {role} to {grantee}"),
                )
                .await?;
            }
            Fix::Grant { db, acl } => grants.entry(db).or_default().push(acl),
        }
    }
    for_each_database!(cx, conn, dbs, |db, c| {
        for grant in grants.get(db).into_iter().flatten() {
            exec_grant(cx, c, grant, &q_grantee, grantee).await?;
        }
        Ok(())
    });
    Ok(())
}
