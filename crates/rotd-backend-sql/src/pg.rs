//! PostgreSQL: login roles with client-computed SCRAM verifiers, the shared owner role of dual pairs, and
//! privilege parity. The scheme is described in the crate docs.

use std::collections::{BTreeMap, BTreeSet};

use rotd_core::{BackendError, BackendResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::config::{Privilege, SqlConfig, Tls};
use crate::error::{self, Hide};
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
    async fn exec(&self, conn: &mut PgConnection, sql: String, what: &str) -> BackendResult<()> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| self.err(what, &e))
    }

    fn ident(&self, name: &str) -> BackendResult<String> {
        quote::quote_ident_pg(name).map_err(|e| self.permanent(format!("role name: {e}")))
    }

    fn literal(&self, text: &str) -> BackendResult<String> {
        quote::quote_literal(Dialect::Postgres, text).map_err(|e| self.permanent(e.to_string()))
    }
}

/// Closes a connection politely so the server logs a normal disconnect; failures do not matter here.
async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}

/// The databases whose privileges rotd grants and compares.
fn grant_databases(cfg: &SqlConfig) -> Vec<&str> {
    if cfg.databases.is_empty() {
        vec![cfg.pg_database()]
    } else {
        cfg.databases.iter().map(String::as_str).collect()
    }
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
    // The other account counts only once it can log in: a NOLOGIN one is an unfinished creation.
    let current = match target.other {
        Some(other) => role_attrs(cx, conn, other)
            .await?
            .filter(|a| a.canlogin)
            .map(|_| other),
        None => None,
    };
    let owner = cx.cfg.owner_role();
    if let Some(owner) = &owner {
        ensure_owner_role(cx, conn, owner).await?;
    }

    // Creation makes the role NOLOGIN first and enables LOGIN with the password as the very last step,
    // so an interrupted creation is recognisable (and finished by the next apply) rather than leaving a
    // working login with half its privileges.
    let creating = match &attrs {
        None => {
            let mut sql = format!("CREATE ROLE {} NOLOGIN", cx.ident(user)?);
            if current.is_none() && cx.cfg.privilege == Privilege::Privileged {
                sql.push_str(" CREATEDB CREATEROLE");
            }
            cx.exec(conn, sql, &format!("create role {user}")).await?;
            tracing::info!(backend = KIND, account = user, slot = %target.slot, "Created the database account.");
            true
        }
        Some(a) => !a.canlogin,
    };

    if let Some(owner) = &owner {
        for login in std::iter::once(user).chain(current) {
            adopt_into_owner_role(cx, conn, owner, login).await?;
        }
    }
    if creating && current.is_none() {
        let grantee = owner.as_deref().unwrap_or(user);
        grant_configured(cx, conn, grantee).await?;
    }
    if let (Some(owner), Some(current)) = (&owner, current) {
        let found = drift_on(cx, conn, owner, user, current).await?;
        repair(cx, conn, owner, user, &found).await?;
        let items: Vec<DriftItem> = found.into_iter().map(|f| f.item).collect();
        report_drift(KIND, user, current, &items, true);
    }

    let sql = format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD {}",
        cx.ident(user)?,
        cx.literal(verifier)?
    );
    cx.exec(conn, sql, &format!("set the password of {user}")).await
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

/// One explicit privilege: object kind (`DATABASE`, `SCHEMA`, `TABLE`, `SEQUENCE`), the object's name as
/// the server quoted it, the privilege, and whether it is grantable.
type Acl = (String, String, String, bool);

/// The explicit privileges `role` holds in the connected database, excluding an owner's implicit ones.
async fn acl(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<BTreeSet<Acl>> {
    let sql = format!(
        "WITH g AS (SELECT oid FROM pg_roles WHERE rolname = $1) \
         SELECT 'DATABASE'::text, quote_ident(d.datname), a.privilege_type, a.is_grantable \
           FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a \
          WHERE d.datname = current_database() AND a.grantee = (SELECT oid FROM g) AND a.grantee <> d.datdba \
         UNION ALL \
         SELECT 'SCHEMA'::text, quote_ident(n.nspname), a.privilege_type, a.is_grantable \
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a \
          WHERE {SYSTEM_SCHEMAS} AND a.grantee = (SELECT oid FROM g) AND a.grantee <> n.nspowner \
         UNION ALL \
         SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, \
                format('%I.%I', n.nspname, c.relname), a.privilege_type, a.is_grantable \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                CROSS JOIN LATERAL aclexplode(c.relacl) a \
          WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') AND {SYSTEM_SCHEMAS} \
            AND a.grantee = (SELECT oid FROM g) AND a.grantee <> c.relowner"
    );
    let rows: Vec<Acl> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| cx.err(&format!("read the privileges of {role}"), &e))?;
    Ok(rows.into_iter().collect())
}

/// How many tables, views, sequences and schemas `role` owns in the connected database.
async fn owned_objects(cx: &Cx<'_>, conn: &mut PgConnection, role: &str) -> BackendResult<i64> {
    let sql = format!(
        "WITH g AS (SELECT oid FROM pg_roles WHERE rolname = $1) \
         SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE c.relowner = (SELECT oid FROM g) AND {SYSTEM_SCHEMAS}) \
              + (SELECT count(*) FROM pg_namespace n WHERE n.nspowner = (SELECT oid FROM g) AND {SYSTEM_SCHEMAS})"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(role)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| cx.err(&format!("count the objects {role} owns"), &e))
}

/// Runs `f` once per database in [`grant_databases`], reusing `main` for the admin database and opening
/// (and closing) an admin connection for each other one.
macro_rules! for_each_database {
    ($cx:expr, $main:expr, |$db:ident, $conn:ident| $body:block) => {{
        for $db in grant_databases($cx.cfg) {
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

/// Puts `login` into the shared-owner scheme: membership in the owner role, then (when it owns nothing)
/// its direct privileges and memberships copied to the owner role and its sessions switched to it.
async fn adopt_into_owner_role(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    owner: &str,
    login: &str,
) -> BackendResult<()> {
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
        return Ok(());
    }
    let mut owned = 0;
    for_each_database!(cx, conn, |_db, c| {
        owned += owned_objects(cx, c, login).await?;
        Ok(())
    });
    if owned > 0 {
        // Switching would take the owner's rights on these objects away from the login's own sessions;
        // drift reports it with the REASSIGN OWNED remedy instead.
        return Ok(());
    }
    // Whatever the login could do on its own, the owner role must be able to do before sessions switch.
    for role in memberships(cx, conn, login, owner).await? {
        if !is_member(cx, conn, &role, owner).await? {
            cx.exec(
                conn,
                format!("GRANT {} TO {q_owner}", cx.ident(&role)?),
                &format!("copy membership in {role} to {owner}"),
            )
            .await?;
        }
    }
    for_each_database!(cx, conn, |_db, c| {
        let have = acl(cx, c, owner).await?;
        for grant in acl(cx, c, login).await? {
            if !have.contains(&grant) {
                exec_grant(cx, c, &grant, &q_owner, owner).await?;
            }
        }
        Ok(())
    });
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
    Ok(())
}

/// Issues one `GRANT <privilege> ON <kind> <object> TO <grantee>` from a row the server produced. The
/// object name was quoted by the server (`quote_ident`/`format('%I')`); the kind comes from our own query
/// and the privilege is checked to be a bare keyword.
async fn exec_grant(
    cx: &Cx<'_>,
    conn: &mut PgConnection,
    (kind, object, privilege, grantable): &Acl,
    q_grantee: &str,
    grantee: &str,
) -> BackendResult<()> {
    let keyword = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b' ');
    if !keyword(kind) || !keyword(privilege) {
        return Err(cx.permanent(format!("refusing an unexpected privilege row for {object}")));
    }
    let option = if *grantable { " WITH GRANT OPTION" } else { "" };
    cx.exec(
        conn,
        format!("GRANT {privilege} ON {kind} {object} TO {q_grantee}{option}"),
        &format!("grant {privilege} on {kind} {object} to {grantee}"),
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
    for_each_database!(cx, conn, |db, c| {
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
    let result = drift_on(&cx, &mut conn, &owner, target, current).await;
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
    for_each_database!(cx, conn, |db, d| {
        let owner_acl = acl(cx, d, owner).await?;
        let a_t = eff_t.combine(&acl(cx, d, target).await?, &owner_acl);
        let a_c = eff_c.combine(&acl(cx, d, current).await?, &owner_acl);
        let entry = per_db.entry(db.to_owned()).or_default();
        for grant in a_c.difference(&a_t) {
            let (kind, object, privilege, grantable) = grant;
            let option = if *grantable { " with grant option" } else { "" };
            entry.push(Found {
                item: DriftItem {
                    kind: "grant",
                    detail: format!(
                        "{target} lacks {privilege} on {} {object}{option} in database {db}, which {current} has",
                        kind.to_lowercase()
                    ),
                    repairable: true,
                },
                fix: Some(Fix::Grant {
                    db: db.to_owned(),
                    acl: grant.clone(),
                }),
            });
        }
        for (kind, object, privilege, _) in a_t.difference(&a_c) {
            entry.push(Found {
                item: DriftItem {
                    kind: "grant",
                    detail: format!(
                        "{target} has {privilege} on {} {object} in database {db}, which {current} lacks",
                        kind.to_lowercase()
                    ),
                    repairable: false,
                },
                fix: None,
            });
        }
        for login in [target, current] {
            let n = owned_objects(cx, d, login).await?;
            if n > 0 {
                entry.push(Found {
                    item: DriftItem {
                        kind: "ownership",
                        detail: format!(
                            "{login} owns {n} object(s) in database {db}, which the other account cannot \
                             alter; run REASSIGN OWNED BY {login} TO {owner} there"
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
    for_each_database!(cx, conn, |db, c| {
        for grant in grants.get(db).into_iter().flatten() {
            exec_grant(cx, c, grant, &q_grantee, grantee).await?;
        }
        Ok(())
    });
    Ok(())
}
