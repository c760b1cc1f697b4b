//! MySQL and MariaDB: accounts `'<user>'@'%'` with client-computed `mysql_native_password` hashes, and
//! privilege parity from `SHOW GRANTS` / `SHOW CREATE USER`.
//!
//! The two servers differ in how a hash is given: MariaDB takes `IDENTIFIED BY PASSWORD '*…'`, MySQL 8
//! `IDENTIFIED WITH mysql_native_password AS '*…'` (MySQL 8.4 disables that plugin by default and 9.0
//! removed it; such servers get a clear permanent error from the server). The flavour is read from
//! `SELECT VERSION()` on each admin connection.

use std::collections::BTreeSet;

use rotd_core::{BackendError, BackendResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use crate::config::{Privilege, SqlConfig, Tls};
use crate::error::{self, Hide};
use crate::quote;
use crate::{DriftItem, MYSQL_ACCOUNT_HOST, Target, hash, report_drift};

const KIND: &str = "mysql";

fn options(cfg: &SqlConfig, user: &str, password: &str) -> MySqlConnectOptions {
    let ssl_mode = match cfg.tls {
        Tls::Disable => MySqlSslMode::Disabled,
        Tls::Prefer => MySqlSslMode::Preferred,
        Tls::Require => MySqlSslMode::Required,
        Tls::VerifyFull => MySqlSslMode::VerifyIdentity,
    };
    let mut opts = MySqlConnectOptions::new()
        .host(&cfg.host)
        .port(cfg.port)
        .username(user)
        .password(password)
        .ssl_mode(ssl_mode)
        // sqlx logs every statement at DEBUG by default; ours carry password hashes.
        .disable_statement_logging();
    if let Some(db) = &cfg.database {
        opts = opts.database(db);
    }
    if let Some(ca) = &cfg.ca_file {
        opts = opts.ssl_ca(ca);
    }
    opts
}

/// Which server answers; decides how a password hash is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    Mysql,
}

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

    async fn admin(&self) -> BackendResult<MySqlConnection> {
        let password = self.cfg.admin_password.expose_str().unwrap_or_default();
        let opts = options(self.cfg, &self.cfg.admin_user, password);
        let context = format!(
            "connect to {}:{} as {}",
            self.cfg.host, self.cfg.port, self.cfg.admin_user
        );
        match tokio::time::timeout(self.cfg.connect_timeout, MySqlConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.err(&context, &e)),
            Err(_) => Err(error::timed_out(KIND, self.op, &context)),
        }
    }

    /// Runs one dynamic statement over the text protocol: no prepared statement, nothing cached.
    async fn exec(&self, conn: &mut MySqlConnection, sql: String, what: &str) -> BackendResult<()> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| self.err(what, &e))
    }

    /// Runs a dynamic statement and returns the first column of every row as text.
    async fn lines(&self, conn: &mut MySqlConnection, sql: String, what: &str) -> BackendResult<Vec<String>> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.err(what, &e))?;
        Ok(rows.iter().map(first_text).collect())
    }

    fn account(&self, user: &str) -> BackendResult<String> {
        quote::mysql_account(user, MYSQL_ACCOUNT_HOST).map_err(|e| self.permanent(e.to_string()))
    }

    async fn flavor(&self, conn: &mut MySqlConnection) -> BackendResult<Flavor> {
        let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err("read the server version", &e))?;
        Ok(if version.contains("MariaDB") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        })
    }
}

/// The first column as text. `SHOW` statements return text on some servers and binary strings on others.
fn first_text(row: &MySqlRow) -> String {
    row.try_get::<String, _>(0).unwrap_or_else(|_| {
        row.try_get::<Vec<u8>, _>(0)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    })
}

async fn close(conn: MySqlConnection) {
    let _ = conn.close().await;
}

pub(crate) async fn check(cfg: &SqlConfig) -> BackendResult<()> {
    let cx = Cx {
        cfg,
        op: "check",
        hide: Hide(&[]),
    };
    let mut conn = cx.admin().await?;
    let result = check_on(&cx, &mut conn).await;
    close(conn).await;
    result
}

async fn check_on(cx: &Cx<'_>, conn: &mut MySqlConnection) -> BackendResult<()> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(PRIVILEGE_TYPE AS CHAR), CAST(IS_GRANTABLE AS CHAR) \
           FROM information_schema.USER_PRIVILEGES \
          WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                                 SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err("read the admin account's privileges", &e))?;
    let has = |p: &str| rows.iter().any(|(priv_, _)| priv_ == p);
    let grantable = rows.iter().any(|(_, g)| g == "YES");
    let mut lacking = Vec::new();
    if !has("CREATE USER") {
        lacking.push("CREATE USER");
    }
    if !grantable {
        lacking.push("GRANT OPTION");
    }
    if !lacking.is_empty() {
        return Err(cx.permanent(format!(
            "the admin account {} lacks the global {} privilege(s) needed to create accounts and grant \
             privileges",
            cx.cfg.admin_user,
            lacking.join(" and ")
        )));
    }
    // Existence checks and idempotent password resets read mysql.user.
    sqlx::raw_sql("SELECT 1 FROM mysql.user LIMIT 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| cx.err("read mysql.user", &e))?;
    Ok(())
}

/// The failpoint (test-only, [`SqlConfig::failpoint`]) that parks an account creation right after
/// `CREATE USER … ACCOUNT LOCK`, before any grant.
const FAILPOINT_CREATED: &str = "sql-created";

/// Whether rotd owns the accounts' privileges: creation configures databases to grant on, while imported
/// accounts come with none (the binary passes an empty list) and keep whatever they already hold.
fn creates(cfg: &SqlConfig) -> bool {
    !cfg.databases.is_empty()
}

pub(crate) async fn verify(cfg: &SqlConfig, user: &str, password: &str) -> BackendResult<()> {
    let hide_list = [password];
    let cx = Cx {
        cfg,
        op: "verify",
        hide: Hide(&hide_list),
    };
    let opts = options(cfg, user, password);
    let context = format!("login as {user}");
    let mut conn = match tokio::time::timeout(cfg.connect_timeout, MySqlConnection::connect_with(&opts)).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) if error::is_auth_failure(&e) => {
            return Err(cx.permanent(format!("login as {user} failed: {}", error::describe(&e))));
        }
        Ok(Err(e)) => return Err(cx.err(&context, &e)),
        Err(_) => return Err(error::timed_out(KIND, "verify", &context)),
    };
    let result = prove_privileges(&cx, &mut conn, user).await;
    close(conn).await;
    result
}

/// Proves, on the account's own connection, that it holds privileges and not only a login (an account
/// whose creation stopped before its grants would pass `SELECT 1`). With configured databases it must be
/// able to `USE` each of them; without (imports), its own `SHOW GRANTS` must list some privilege or role
/// beyond `USAGE`. What exactly an imported account may do is parity's business, not verify's.
async fn prove_privileges(cx: &Cx<'_>, conn: &mut MySqlConnection, user: &str) -> BackendResult<()> {
    sqlx::raw_sql("SELECT 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| cx.err(&format!("SELECT 1 as {user}"), &e))?;
    if creates(cx.cfg) {
        for db in &cx.cfg.databases {
            let q_db = quote::quote_ident_mysql(db).map_err(|e| cx.permanent(e.to_string()))?;
            match sqlx::raw_sql(AssertSqlSafe(format!("USE {q_db}")))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {}
                Err(e) if error::is_auth_failure(&e) => {
                    return Err(cx.permanent(format!(
                        "{user} logs in but cannot use database {db}: {}",
                        error::describe(&e)
                    )));
                }
                Err(e) => return Err(cx.err(&format!("use database {db} as {user}"), &e)),
            }
        }
        return Ok(());
    }
    let lines = cx
        .lines(conn, "SHOW GRANTS".to_owned(), &format!("show grants as {user}"))
        .await?;
    // A line the parser does not know is still a grant of some kind; verify fails only an account that
    // holds nothing at all.
    let holds_something = match grants(&lines) {
        Ok(held) => held.iter().any(|g| !matches!(g, Grant::DefaultRoles { .. })),
        Err(_) => true,
    };
    if holds_something {
        Ok(())
    } else {
        Err(cx.permanent(format!(
            "{user} logs in but holds no privilege and no role (only USAGE)"
        )))
    }
}

pub(crate) async fn apply(cfg: &SqlConfig, target: &Target<'_>) -> BackendResult<()> {
    let hash = hash::mysql_native_hash(target.password.as_bytes());
    let hide_list = [target.password, hash.as_str()];
    let cx = Cx {
        cfg,
        op: "apply",
        hide: Hide(&hide_list),
    };
    let mut conn = cx.admin().await?;
    let result = apply_on(&cx, &mut conn, target, &hash).await;
    close(conn).await;
    result
}

/// What `apply` needs to know of an existing `'user'@'%'`.
struct Existing {
    /// The stored authentication string (the hash) and plugin.
    stored: String,
    plugin: String,
    /// `ACCOUNT LOCK`: set by rotd's own creation until its last step, or by an operator.
    locked: bool,
}

impl Existing {
    /// Whether the account already accepts the password whose hash is `hash`.
    fn accepts(&self, hash: &str) -> bool {
        self.stored == hash && (self.plugin == "mysql_native_password" || self.plugin.is_empty())
    }
}

/// The account `'user'@'%'`, or `None` if there is no such account.
async fn lookup(cx: &Cx<'_>, conn: &mut MySqlConnection, user: &str) -> BackendResult<Option<Existing>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT CAST(authentication_string AS CHAR), CAST(plugin AS CHAR) \
           FROM mysql.user WHERE User = ? AND Host = ?",
    )
    .bind(user)
    .bind(MYSQL_ACCOUNT_HOST)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("look up account {user}"), &e))?;
    let Some((stored, plugin)) = row else {
        return Ok(None);
    };
    let account = cx.account(user)?;
    let create = cx
        .lines(conn, format!("SHOW CREATE USER {account}"), "show create user")
        .await?;
    Ok(Some(Existing {
        stored,
        plugin,
        locked: account_info(&create).locked,
    }))
}

/// The hosts of the accounts named `user` other than `'%'` (MariaDB roles, whose host is empty, excluded).
async fn other_hosts(cx: &Cx<'_>, conn: &mut MySqlConnection, user: &str) -> BackendResult<Vec<String>> {
    sqlx::query_scalar(
        "SELECT CAST(Host AS CHAR) FROM mysql.user WHERE User = ? AND Host <> ? AND Host <> '' \
          ORDER BY Host",
    )
    .bind(user)
    .bind(MYSQL_ACCOUNT_HOST)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("look up other hosts of account {user}"), &e))
}

/// The grants `SHOW GRANTS` lists for `'user'@'%'`, refusing lines the parser does not understand.
async fn held(cx: &Cx<'_>, conn: &mut MySqlConnection, user: &str) -> BackendResult<BTreeSet<Grant>> {
    let account = cx.account(user)?;
    let lines = cx
        .lines(conn, format!("SHOW GRANTS FOR {account}"), "show grants")
        .await?;
    grants(&lines).map_err(|unknown| {
        cx.permanent(format!(
            "SHOW GRANTS FOR {account} returned a line rotd cannot read (starting with {}); rotd does not \
             copy or compare privileges it cannot read completely",
            unknown.0
        ))
    })
}

fn identified(flavor: Flavor, hash: &str) -> String {
    // The hash is `*` and 40 upper-case hex digits (checked by the caller), so it needs no escaping.
    match flavor {
        Flavor::MariaDb => format!("IDENTIFIED BY PASSWORD '{hash}'"),
        Flavor::Mysql => format!("IDENTIFIED WITH mysql_native_password AS '{hash}'"),
    }
}

async fn apply_on(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    target: &Target<'_>,
    hash: &str,
) -> BackendResult<()> {
    if !hash::is_plain_hash_text(hash) {
        return Err(cx.permanent("unexpected characters in the password hash"));
    }
    let flavor = cx.flavor(conn).await?;
    let user = target.user;
    let account = cx.account(user)?;
    let existing = lookup(cx, conn, user).await?;

    // The same user name under another host is another account with its own password and grants; clients
    // whose address matches that host authenticate against it, not against '%'.
    let elsewhere = other_hosts(cx, conn, user).await?;
    if !elsewhere.is_empty() {
        let hosts = elsewhere
            .iter()
            .map(|h| format!("'{user}'@'{h}'"))
            .collect::<Vec<_>>()
            .join(", ");
        if existing.is_none() {
            return Err(cx.permanent(format!(
                "account {user} exists only as {hosts}, not as '{user}'@'{MYSQL_ACCOUNT_HOST}'; rotd manages \
                 '{user}'@'{MYSQL_ACCOUNT_HOST}' and does not create it beside another host's account (that \
                 account would keep its own password and privileges); rename the account to \
                 '{user}'@'{MYSQL_ACCOUNT_HOST}' (RENAME USER) or drop it"
            )));
        }
        tracing::warn!(
            backend = KIND,
            account = user,
            other_hosts = %hosts,
            "Accounts with the same user name under other hosts are not rotated; clients matching those hosts \
             keep their own passwords."
        );
    }

    // The other account counts only once it holds something: a locked one without grants is a creation
    // rotd did not finish, with nothing to copy.
    let current = match target.other {
        Some(other) => match lookup(cx, conn, other).await? {
            Some(o) if o.locked && held(cx, conn, other).await?.is_empty() => None,
            Some(_) => Some(other),
            None => None,
        },
        None => None,
    };
    let create_mode = creates(cx.cfg);

    // Creation makes the account `ACCOUNT LOCK`, grants, and unlocks as the very last step, so an
    // interrupted creation (a crash, a step timeout) never leaves a login without privileges; the next
    // apply recognises it and finishes it. `finishing` says this apply ends with the unlock.
    let finishing = match &existing {
        None => {
            if !create_mode && current.is_none() {
                return Err(cx.permanent(format!(
                    "account '{user}'@'{MYSQL_ACCOUNT_HOST}' does not exist, and there are neither databases to \
                     grant on nor a twin account to copy privileges from, so creating it would make an account \
                     without privileges"
                )));
            }
            cx.exec(
                conn,
                format!("CREATE USER {account} {} ACCOUNT LOCK", identified(flavor, hash)),
                &format!("create account {user}"),
            )
            .await?;
            tracing::info!(
                backend = KIND,
                account = user,
                slot = %target.slot,
                "Created the database account, locked until it holds its privileges."
            );
            if cx.cfg.failpoint.as_deref() == Some(FAILPOINT_CREATED) {
                tracing::warn!(
                    backend = KIND,
                    account = user,
                    failpoint = FAILPOINT_CREATED,
                    "Failpoint reached; parking this apply."
                );
                std::future::pending::<()>().await;
            }
            true
        }
        Some(e) if e.locked => {
            // rotd's own unfinished creation holds the password being applied (creation sets it) or lacks
            // privileges it should have; an account that has them and another password was locked by an
            // operator, and stays locked (verify then fails: the login is refused).
            let held_now = held(cx, conn, user).await?;
            let lacking = if create_mode {
                !configured_grants(cx)?.is_subset(&held_now)
            } else {
                held_now.is_empty()
            };
            let unfinished = e.stored == hash || lacking;
            if !unfinished {
                tracing::warn!(
                    backend = KIND,
                    account = user,
                    "The account is locked (ACCOUNT LOCK) and holds its privileges; rotd resets its password \
                     but leaves the lock to whoever set it."
                );
            }
            unfinished
        }
        Some(_) => false,
    };

    // rotd owns the configured privileges: they are granted again on every apply (GRANT is idempotent), so
    // an account that lost them, or a creation stopped before them, gets them back.
    if create_mode {
        grant_configured(cx, conn, &account, user).await?;
    }
    if let Some(current) = current {
        parity(cx, conn, flavor, user, current).await?;
    }

    let accepts = existing.as_ref().is_none_or(|e| e.accepts(hash));
    let sql = match (finishing, accepts) {
        (true, true) => format!("ALTER USER {account} ACCOUNT UNLOCK"),
        (true, false) => format!("ALTER USER {account} {} ACCOUNT UNLOCK", identified(flavor, hash)),
        // Already accepts this password: a repeated apply after a crash changes nothing.
        (false, true) => return Ok(()),
        (false, false) => format!("ALTER USER {account} {}", identified(flavor, hash)),
    };
    cx.exec(conn, sql, &format!("set the password of {user}")).await?;
    if finishing {
        tracing::info!(
            backend = KIND,
            account = user,
            slot = %target.slot,
            "Unlocked the database account: its creation is complete."
        );
    }
    Ok(())
}

/// The privileges a configured level grants on each database, or `None` for `Privileged` (everything,
/// server-wide, with GRANT OPTION).
fn configured_privileges(privilege: Privilege) -> Option<&'static str> {
    Some(match privilege {
        Privilege::ReadOnly => "SELECT, SHOW VIEW, LOCK TABLES, EXECUTE",
        Privilege::DmlOnly => {
            "SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, SHOW VIEW, \
             EVENT, TRIGGER"
        }
        Privilege::DdlOnly => {
            "CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, SHOW VIEW, \
             CREATE ROUTINE, ALTER ROUTINE"
        }
        Privilege::ReadWrite | Privilege::Standard => "ALL PRIVILEGES",
        Privilege::Privileged => return None,
    })
}

/// The configured grants as `SHOW GRANTS` lists them, to tell whether a locked account already holds them.
/// (MySQL 8 lists a global `ALL PRIVILEGES` expanded, so there a locked `Privileged` account always counts
/// as lacking them.)
fn configured_grants(cx: &Cx<'_>) -> BackendResult<BTreeSet<Grant>> {
    let Some(list) = configured_privileges(cx.cfg.privilege) else {
        let object = "*.*".to_owned();
        return Ok([
            Grant::Privilege {
                object: object.clone(),
                privilege: "ALL PRIVILEGES".to_owned(),
            },
            Grant::GrantOption { object },
        ]
        .into_iter()
        .collect());
    };
    let mut out = BTreeSet::new();
    for db in &cx.cfg.databases {
        let q_db = quote::quote_ident_mysql(db).map_err(|e| cx.permanent(e.to_string()))?;
        for privilege in list.split(", ") {
            out.insert(Grant::Privilege {
                object: format!("{q_db}.*"),
                privilege: privilege.to_owned(),
            });
        }
    }
    Ok(out)
}

/// Grants the configured privilege level on each configured database (or server-wide for Privileged).
async fn grant_configured(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    account: &str,
    user: &str,
) -> BackendResult<()> {
    let Some(privileges) = configured_privileges(cx.cfg.privilege) else {
        return cx
            .exec(
                conn,
                format!("GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION"),
                &format!("grant the configured privileges to {user}"),
            )
            .await;
    };
    for db in &cx.cfg.databases {
        let q_db = quote::quote_ident_mysql(db).map_err(|e| cx.permanent(e.to_string()))?;
        cx.exec(
            conn,
            format!("GRANT {privileges} ON {q_db}.* TO {account}"),
            &format!("grant the configured privileges on {db} to {user}"),
        )
        .await?;
    }
    Ok(())
}

/// Compares `target` with `current`, replays what `target` lacks, and reports the rest.
async fn parity(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    flavor: Flavor,
    target: &str,
    current: &str,
) -> BackendResult<()> {
    let found = drift_on(cx, conn, target, current).await?;
    let account = cx.account(target)?;
    // `found` lists the repairs in `Grant` order: privileges, then roles, partial revokes (which need the
    // privilege they restrict), and default roles (which need the role) last.
    for grant in found.iter().filter_map(|(_, fix)| fix.as_ref()) {
        cx.exec(
            conn,
            grant.statement(&account, flavor),
            &format!("copy {grant} to {target}"),
        )
        .await?;
    }
    let items: Vec<DriftItem> = found.into_iter().map(|(item, _)| item).collect();
    report_drift(KIND, target, current, &items, true);
    Ok(())
}

pub(crate) async fn drift(cfg: &SqlConfig, target: &str, current: &str) -> BackendResult<Vec<DriftItem>> {
    let cx = Cx {
        cfg,
        op: "drift",
        hide: Hide(&[]),
    };
    let mut conn = cx.admin().await?;
    let result = drift_on(&cx, &mut conn, target, current).await;
    close(conn).await;
    Ok(result?.into_iter().map(|(item, _)| item).collect())
}

/// Everything parity compares of one account: its grants, with its default roles (from `SHOW GRANTS` on
/// MariaDB, from `SHOW CREATE USER` on MySQL), and its account options.
async fn profile(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    user: &str,
) -> BackendResult<(BTreeSet<Grant>, Vec<String>)> {
    let mut held = held(cx, conn, user).await?;
    let account = cx.account(user)?;
    let info = account_info(
        &cx.lines(conn, format!("SHOW CREATE USER {account}"), "show create user")
            .await?,
    );
    let has_default = held.iter().any(|g| matches!(g, Grant::DefaultRoles { .. }));
    if !info.default_roles.is_empty() && !has_default {
        held.insert(Grant::DefaultRoles {
            roles: info.default_roles,
        });
    }
    Ok((held, info.options))
}

async fn drift_on(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    target: &str,
    current: &str,
) -> BackendResult<Vec<(DriftItem, Option<Grant>)>> {
    let mut found = Vec::new();
    let (grants_t, opts_t) = profile(cx, conn, target).await?;
    let (grants_c, opts_c) = profile(cx, conn, current).await?;
    for g in grants_c.difference(&grants_t) {
        found.push((
            DriftItem {
                kind: "grant",
                detail: format!("{target} lacks {g}, which {current} has"),
                repairable: true,
            },
            Some(g.clone()),
        ));
    }
    for g in grants_t.difference(&grants_c) {
        found.push((
            DriftItem {
                kind: "grant",
                detail: format!("{target} has {g}, which {current} lacks"),
                repairable: false,
            },
            None,
        ));
    }
    if opts_t != opts_c {
        found.push((
            DriftItem {
                kind: "account",
                detail: format!(
                    "account options (TLS requirement, limits, lock, expiry) differ: {target} has [{}], \
                     {current} has [{}]",
                    opts_t.join(" "),
                    opts_c.join(" ")
                ),
                repairable: false,
            },
            None,
        ));
    }
    Ok(found)
}

/// One item of what an account holds, as `SHOW GRANTS` lists it, independent of the account it is granted
/// to. The variant order is the order parity replays missing items in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Grant {
    /// `GRANT <privilege> ON <object>`; the object text is the server's own rendering (backticks kept).
    Privilege { object: String, privilege: String },
    /// `… ON <object> … WITH GRANT OPTION`.
    #[allow(clippy::enum_variant_names)]
    GrantOption { object: String },
    /// `GRANT <role> TO …` (MariaDB roles, MySQL 8 roles).
    Role { role: String },
    /// `GRANT <role> TO … WITH ADMIN OPTION`.
    RoleAdmin { role: String },
    /// `REVOKE <privilege> ON <object> FROM …`: a partial revoke (MySQL 8 with `partial_revokes`), an
    /// exception carved out of a global privilege.
    Revoke { object: String, privilege: String },
    /// The roles active at login: `SET DEFAULT ROLE … FOR …` (MariaDB, one role) or `DEFAULT ROLE …` in
    /// `SHOW CREATE USER` (MySQL 8). One item for the whole list, since setting it replaces the list.
    DefaultRoles { roles: Vec<String> },
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Privilege { object, privilege } => write!(f, "{privilege} on {object}"),
            Grant::GrantOption { object } => write!(f, "GRANT OPTION on {object}"),
            Grant::Role { role } => write!(f, "role {role}"),
            Grant::RoleAdmin { role } => write!(f, "ADMIN OPTION on role {role}"),
            Grant::Revoke { object, privilege } => write!(f, "partial revoke of {privilege} on {object}"),
            Grant::DefaultRoles { roles } => write!(f, "default role {}", roles.join(", ")),
        }
    }
}

impl Grant {
    /// The statement that gives `account` this item. The object, privilege and role texts come from the
    /// server's own `SHOW GRANTS` output, so they are already valid, quoted SQL.
    fn statement(&self, account: &str, flavor: Flavor) -> String {
        match self {
            Grant::Privilege { object, privilege } => format!("GRANT {privilege} ON {object} TO {account}"),
            Grant::GrantOption { object } => {
                format!("GRANT USAGE ON {object} TO {account} WITH GRANT OPTION")
            }
            Grant::Role { role } => format!("GRANT {role} TO {account}"),
            Grant::RoleAdmin { role } => format!("GRANT {role} TO {account} WITH ADMIN OPTION"),
            Grant::Revoke { object, privilege } => format!("REVOKE {privilege} ON {object} FROM {account}"),
            Grant::DefaultRoles { roles } => {
                let preposition = match flavor {
                    Flavor::MariaDb => "FOR",
                    Flavor::Mysql => "TO",
                };
                format!("SET DEFAULT ROLE {} {preposition} {account}", roles.join(", "))
            }
        }
    }
}

/// A lexical token of a `SHOW GRANTS`/`SHOW CREATE USER` line, with its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    start: usize,
    end: usize,
    /// Quoted with `'`, `"` or a backtick.
    quoted: bool,
}

/// Splits a line into tokens: the punctuation `(`, `)` and `,`, and maximal runs of anything else up to
/// whitespace, where a quoted section (`'…'`, `"…"`, `` `…` ``, with doubled quotes and, outside backticks,
/// backslash escapes) is consumed whole. So `` `db`.* ``, `'u'@'%'` and a name containing spaces, commas
/// or keywords each stay one token.
fn tokenize(line: &str) -> Vec<Token> {
    let bytes = line.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b"(),".contains(&b) {
            i += 1;
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !b"(),".contains(&bytes[i]) {
                let q = bytes[i];
                i += 1;
                if matches!(q, b'\'' | b'"' | b'`') {
                    while i < bytes.len() {
                        let escaped = bytes[i] == b'\\' && q != b'`';
                        let doubled = bytes[i] == q && bytes.get(i + 1) == Some(&q);
                        if escaped || doubled {
                            i += 2;
                        } else if bytes[i] == q {
                            i += 1;
                            break;
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        let end = i.min(bytes.len());
        tokens.push(Token {
            start,
            end,
            quoted: matches!(b, b'\'' | b'"' | b'`'),
        });
    }
    tokens
}

fn is_word(line: &str, t: &Token, word: &str) -> bool {
    !t.quoted && line[t.start..t.end].eq_ignore_ascii_case(word)
}

/// A `SHOW GRANTS` line the parser does not understand. Holds only the line's leading keywords: the line
/// itself may carry a password hash (`GRANT USAGE … IDENTIFIED BY PASSWORD '*…'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownLine(pub String);

impl UnknownLine {
    fn of(line: &str, tokens: &[Token]) -> Self {
        let words: Vec<&str> = tokens
            .iter()
            .take(3)
            .map(|t| &line[t.start..t.end])
            .take_while(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_'))
            .collect();
        Self(if words.is_empty() {
            "something other than a keyword".to_owned()
        } else {
            format!("{:?}", words.join(" "))
        })
    }
}

/// The index of the first unquoted `word` at parenthesis depth 0 in `tokens[from..]`.
fn find_word(line: &str, tokens: &[Token], from: usize, word: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match &line[t.start..t.end] {
            "(" if !t.quoted => depth += 1,
            ")" if !t.quoted => depth -= 1,
            _ if depth == 0 && is_word(line, t, word) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether `tokens` contain the unquoted pair `first second`.
fn has_pair(line: &str, tokens: &[Token], first: &str, second: &str) -> bool {
    tokens
        .windows(2)
        .any(|w| is_word(line, &w[0], first) && is_word(line, &w[1], second))
}

/// Parses `SHOW GRANTS` lines into single items: `GRANT` privileges and roles, `REVOKE` (partial revokes)
/// and `SET DEFAULT ROLE`. `USAGE` (no privilege at all) is dropped. Any other line is an error: parity
/// must copy everything or refuse, never silently copy a part.
pub(crate) fn grants(lines: &[String]) -> Result<BTreeSet<Grant>, UnknownLine> {
    let mut out = BTreeSet::new();
    let mut default_roles = Vec::new();
    for line in lines {
        let tokens = tokenize(line);
        let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| is_word(line, t, w));
        if tokens.is_empty() {
            continue;
        }
        let understood = if word(0, "GRANT") {
            parse_grant(line, &tokens, &mut out)
        } else if word(0, "REVOKE") {
            parse_revoke(line, &tokens, &mut out)
        } else if word(0, "SET") && word(1, "DEFAULT") && word(2, "ROLE") {
            parse_default_role(line, &tokens, &mut default_roles)
        } else {
            false
        };
        if !understood {
            return Err(UnknownLine::of(line, &tokens));
        }
    }
    if !default_roles.is_empty() {
        default_roles.sort();
        default_roles.dedup();
        out.insert(Grant::DefaultRoles { roles: default_roles });
    }
    Ok(out)
}

/// `GRANT <privileges> ON <object> TO <account> …` or `GRANT <roles> TO <account> …`.
fn parse_grant(line: &str, tokens: &[Token], out: &mut BTreeSet<Grant>) -> bool {
    let Some(to) = find_word(line, tokens, 1, "TO") else {
        return false;
    };
    let rest = &tokens[to + 1..];
    let Some(on) = find_word(line, &tokens[..to], 1, "ON") else {
        // A role grant: everything between GRANT and TO is the role list.
        let roles = split_list(line, &tokens[1..to]);
        if roles.is_empty() {
            return false;
        }
        let admin = has_pair(line, rest, "ADMIN", "OPTION");
        for role in roles {
            if admin {
                out.insert(Grant::RoleAdmin { role: role.clone() });
            }
            out.insert(Grant::Role { role });
        }
        return true;
    };
    let privileges = split_list(line, &tokens[1..on]);
    if privileges.is_empty() || on + 1 >= to {
        return false;
    }
    let object = line[tokens[on + 1].start..tokens[to - 1].end].trim().to_owned();
    for privilege in privileges {
        if privilege.eq_ignore_ascii_case("USAGE") {
            continue;
        }
        out.insert(Grant::Privilege {
            object: object.clone(),
            privilege,
        });
    }
    if has_pair(line, rest, "GRANT", "OPTION") {
        out.insert(Grant::GrantOption { object });
    }
    true
}

/// `REVOKE <privileges> ON <object> FROM <account>`: how MySQL 8 with `partial_revokes` lists a
/// restriction of a global privilege.
fn parse_revoke(line: &str, tokens: &[Token], out: &mut BTreeSet<Grant>) -> bool {
    let Some(from) = find_word(line, tokens, 1, "FROM") else {
        return false;
    };
    let Some(on) = find_word(line, &tokens[..from], 1, "ON") else {
        return false;
    };
    let privileges = split_list(line, &tokens[1..on]);
    if privileges.is_empty() || on + 1 >= from {
        return false;
    }
    let object = line[tokens[on + 1].start..tokens[from - 1].end].trim().to_owned();
    for privilege in privileges {
        out.insert(Grant::Revoke {
            object: object.clone(),
            privilege,
        });
    }
    true
}

/// `SET DEFAULT ROLE <roles> FOR <account>` (MariaDB; MySQL spells it with `TO`).
fn parse_default_role(line: &str, tokens: &[Token], roles: &mut Vec<String>) -> bool {
    let Some(end) = find_word(line, tokens, 3, "FOR").or_else(|| find_word(line, tokens, 3, "TO")) else {
        return false;
    };
    let listed = split_list(line, &tokens[3..end]);
    if listed.is_empty() {
        return false;
    }
    if !(listed.len() == 1 && listed[0].eq_ignore_ascii_case("NONE")) {
        roles.extend(listed);
    }
    true
}

/// Splits tokens at commas outside parentheses, returning each part's source text with whitespace
/// collapsed (so `SELECT (a, b)` keeps its column list).
fn split_list(line: &str, tokens: &[Token]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut depth = 0;
    for t in tokens {
        let text = &line[t.start..t.end];
        match text {
            "(" if !t.quoted => depth += 1,
            ")" if !t.quoted => depth -= 1,
            "," if !t.quoted && depth == 0 => {
                parts.push(current.join(" "));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(text);
    }
    if !current.is_empty() {
        parts.push(current.join(" "));
    }
    parts
        .into_iter()
        .map(|p| p.replace("( ", "(").replace(" )", ")").replace(" ,", ","))
        .filter(|p| !p.is_empty())
        .collect()
}

/// What parity and `apply` read from `SHOW CREATE USER`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccountInfo {
    /// The account-level options: everything after the account except the `IDENTIFIED …` clause (which
    /// carries the password hash) and `DEFAULT ROLE`, as upper-cased tokens. Quoted tokens that look like
    /// hashes are dropped as well, so this never holds credential material whatever the server prints.
    pub options: Vec<String>,
    /// MySQL 8's `DEFAULT ROLE <role>, …` (MariaDB lists default roles in `SHOW GRANTS` instead).
    pub default_roles: Vec<String>,
    /// `ACCOUNT LOCK`.
    pub locked: bool,
}

/// Reads a `SHOW CREATE USER` line.
pub(crate) fn account_info(lines: &[String]) -> AccountInfo {
    let Some(line) = lines.first() else {
        return AccountInfo::default();
    };
    let tokens = tokenize(line);
    let text = |t: &Token| &line[t.start..t.end];
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| is_word(line, t, w));
    // `CREATE USER <account> …`
    let mut i = 3.min(tokens.len());
    let mut out = Vec::new();
    let mut default_roles = Vec::new();
    while i < tokens.len() {
        if word(i, "IDENTIFIED") {
            i = skip_identified(line, &tokens, i + 1);
            continue;
        }
        if word(i, "DEFAULT") && word(i + 1, "ROLE") {
            // `DEFAULT ROLE r1, r2`: each role is one token (`` `r`@`%` ``), commas between.
            i += 2;
            while let Some(t) = tokens.get(i) {
                default_roles.push(text(t).to_owned());
                i += 1;
                if tokens.get(i).is_some_and(|t| !t.quoted && text(t) == ",") {
                    i += 1;
                } else {
                    break;
                }
            }
            continue;
        }
        let t = text(&tokens[i]);
        let hash_like = tokens[i].quoted && (t.starts_with("'*") || t.starts_with("'$") || t.len() > 40);
        if !hash_like {
            out.push(t.to_ascii_uppercase());
        }
        i += 1;
    }
    let locked = out.windows(2).any(|w| w[0] == "ACCOUNT" && w[1] == "LOCK");
    // MySQL prints defaults explicitly (`ACCOUNT UNLOCK`, `REQUIRE NONE`); MariaDB omits them.
    let joined = out.join(" ");
    let normalized = joined
        .replace("REQUIRE NONE", "")
        .replace("ACCOUNT UNLOCK", "")
        .replace("PASSWORD EXPIRE DEFAULT", "");
    default_roles.sort();
    AccountInfo {
        options: normalized.split_whitespace().map(str::to_owned).collect(),
        default_roles,
        locked,
    }
}

/// Skips `BY [PASSWORD] '…'` or `VIA|WITH plugin [USING|AS|BY [PASSWORD] '…'] [OR plugin …]` after
/// IDENTIFIED, returning the index of the first token after the clause.
fn skip_identified(line: &str, tokens: &[Token], mut i: usize) -> usize {
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| is_word(line, t, w));
    // After `OR` MariaDB names the next plugin directly, without VIA.
    let mut after_or = false;
    loop {
        if !after_or && word(i, "BY") {
            i += 1;
            if word(i, "PASSWORD") {
                i += 1;
            }
            // The literal.
            i += 1;
        } else if after_or || word(i, "VIA") || word(i, "WITH") {
            // VIA/WITH (unless after OR), then the plugin name.
            i += if after_or { 1 } else { 2 };
            if word(i, "USING") || word(i, "AS") || word(i, "BY") {
                i += 1;
                if word(i, "PASSWORD") && tokens.get(i + 1).is_some_and(|t| &line[t.start..t.end] == "(") {
                    // `PASSWORD('…')`.
                    i += 4;
                } else {
                    // The literal.
                    i += 1;
                }
            }
        } else {
            return i.min(tokens.len());
        }
        if word(i, "OR") {
            i += 1;
            after_or = true;
            continue;
        }
        return i.min(tokens.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn grants_split_into_single_privileges_without_the_account() {
        let a = grants(&lines(&[
            "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
            "GRANT SELECT, INSERT, UPDATE (`a`, `b`) ON `shop`.* TO `app`@`%` WITH GRANT OPTION",
            "GRANT `reporting` TO `app`@`%`",
            "SET DEFAULT ROLE `reporting` FOR `app`@`%`",
        ]))
        .unwrap();
        let b = grants(&lines(&[
            "GRANT USAGE ON *.* TO `app_clone`@`%` IDENTIFIED BY PASSWORD '*0000'",
            "GRANT INSERT ON `shop`.* TO `app_clone`@`%`",
            "GRANT SELECT ON `shop`.* TO `app_clone`@`%`",
        ]))
        .unwrap();
        let expected: BTreeSet<Grant> = [
            Grant::Privilege {
                object: "`shop`.*".into(),
                privilege: "SELECT".into(),
            },
            Grant::Privilege {
                object: "`shop`.*".into(),
                privilege: "INSERT".into(),
            },
            Grant::Privilege {
                object: "`shop`.*".into(),
                privilege: "UPDATE (`a`, `b`)".into(),
            },
            Grant::GrantOption {
                object: "`shop`.*".into(),
            },
            Grant::Role {
                role: "`reporting`".into(),
            },
            Grant::DefaultRoles {
                roles: vec!["`reporting`".into()],
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(a, expected);
        let missing: Vec<String> = a
            .difference(&b)
            .map(|g| g.statement("'x'@'%'", Flavor::MariaDb))
            .collect();
        assert_eq!(
            missing,
            [
                "GRANT UPDATE (`a`, `b`) ON `shop`.* TO 'x'@'%'",
                "GRANT USAGE ON `shop`.* TO 'x'@'%' WITH GRANT OPTION",
                "GRANT `reporting` TO 'x'@'%'",
                "SET DEFAULT ROLE `reporting` FOR 'x'@'%'",
            ]
        );
        for g in &a {
            assert!(!g.to_string().contains("2470C0"), "{g}");
        }
    }

    #[test]
    fn names_with_keywords_and_commas_stay_whole() {
        let g = grants(&lines(&[
            "GRANT SELECT ON `we ird, TO ON`.`t``x` TO `app`@`%`",
            "GRANT EXECUTE ON PROCEDURE `db`.`p` TO `app`@`%`",
        ]))
        .unwrap();
        assert!(g.contains(&Grant::Privilege {
            object: "`we ird, TO ON`.`t``x`".into(),
            privilege: "SELECT".into()
        }));
        assert!(g.contains(&Grant::Privilege {
            object: "PROCEDURE `db`.`p`".into(),
            privilege: "EXECUTE".into()
        }));
    }

    #[test]
    fn account_options_drop_the_password_hash() {
        let account_options = |l: &[String]| account_info(l).options;
        let maria = account_options(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' \
             REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 5 ACCOUNT LOCK",
        ]));
        assert_eq!(
            maria,
            [
                "REQUIRE",
                "SSL",
                "WITH",
                "MAX_QUERIES_PER_HOUR",
                "5",
                "ACCOUNT",
                "LOCK"
            ]
        );
        let plain = account_options(&lines(&[
            "CREATE USER `app_clone`@`%` IDENTIFIED BY PASSWORD '*0000000000000000000000000000000000000000'",
        ]));
        assert!(plain.is_empty(), "{plain:?}");
        let mysql = account_options(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' \
             REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
        ]));
        assert!(mysql.is_empty(), "{mysql:?}");
        let via = account_options(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED VIA ed25519 USING 'abcdef' OR unix_socket PASSWORD EXPIRE",
        ]));
        assert_eq!(via, ["PASSWORD", "EXPIRE"]);
    }

    /// MySQL 8 with `partial_revokes = ON`, as `SHOW GRANTS` prints it: a global privilege with a
    /// database carved out, a role with ADMIN OPTION and dynamic privileges without spaces after commas.
    #[test]
    fn mysql_partial_revokes_and_roles_are_replayed_in_order() {
        let current = grants(&lines(&[
            "GRANT SELECT, INSERT ON *.* TO `app`@`%`",
            "GRANT BACKUP_ADMIN,BINLOG_ADMIN ON *.* TO `app`@`%`",
            "REVOKE INSERT ON `mysql`.* FROM `app`@`%`",
            "REVOKE SELECT, INSERT ON `sys`.* FROM `app`@`%`",
            "GRANT `reporting`@`%`,`audit`@`%` TO `app`@`%` WITH ADMIN OPTION",
        ]))
        .unwrap();
        assert!(current.contains(&Grant::Revoke {
            object: "`mysql`.*".into(),
            privilege: "INSERT".into()
        }));
        assert!(current.contains(&Grant::Revoke {
            object: "`sys`.*".into(),
            privilege: "SELECT".into()
        }));
        assert!(current.contains(&Grant::RoleAdmin {
            role: "`audit`@`%`".into()
        }));
        let twin = grants(&lines(&["GRANT USAGE ON *.* TO `app_clone`@`%`"])).unwrap();
        // MySQL lists default roles in SHOW CREATE USER, not in SHOW GRANTS.
        let info = account_info(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS \
             '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' DEFAULT ROLE `reporting`@`%`,`audit`@`%` REQUIRE NONE \
             PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK PASSWORD HISTORY DEFAULT PASSWORD REUSE INTERVAL DEFAULT \
             PASSWORD REQUIRE CURRENT DEFAULT",
        ]));
        assert_eq!(info.default_roles, ["`audit`@`%`", "`reporting`@`%`"]);
        assert!(!info.locked);
        assert!(
            !info.options.iter().any(|o| o.contains("REPORTING")),
            "{:?}",
            info.options
        );
        let mut current = current;
        current.insert(Grant::DefaultRoles {
            roles: info.default_roles,
        });
        let replay: Vec<String> = current
            .difference(&twin)
            .map(|g| g.statement("'app_clone'@'%'", Flavor::Mysql))
            .collect();
        assert_eq!(
            replay,
            [
                "GRANT BACKUP_ADMIN ON *.* TO 'app_clone'@'%'",
                "GRANT BINLOG_ADMIN ON *.* TO 'app_clone'@'%'",
                "GRANT INSERT ON *.* TO 'app_clone'@'%'",
                "GRANT SELECT ON *.* TO 'app_clone'@'%'",
                "GRANT `audit`@`%` TO 'app_clone'@'%'",
                "GRANT `reporting`@`%` TO 'app_clone'@'%'",
                "GRANT `audit`@`%` TO 'app_clone'@'%' WITH ADMIN OPTION",
                "GRANT `reporting`@`%` TO 'app_clone'@'%' WITH ADMIN OPTION",
                "REVOKE INSERT ON `mysql`.* FROM 'app_clone'@'%'",
                "REVOKE INSERT ON `sys`.* FROM 'app_clone'@'%'",
                "REVOKE SELECT ON `sys`.* FROM 'app_clone'@'%'",
                "SET DEFAULT ROLE `audit`@`%`, `reporting`@`%` TO 'app_clone'@'%'",
            ]
        );
    }

    #[test]
    fn unknown_lines_are_refused_without_quoting_them() {
        for line in [
            "GRANT SELECT ON `shop`.* `app`@`%`",
            "REVOKE INSERT `mysql`.* FROM `app`@`%`",
            "DENY SELECT ON `shop`.* TO `app`@`%` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
            "'*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
        ] {
            let e = grants(&lines(&["GRANT USAGE ON *.* TO `app`@`%`", line])).expect_err(line);
            assert!(!e.0.contains("2470C0") && !e.0.contains("shop"), "{e:?}");
        }
        assert_eq!(
            grants(&lines(&["DENY SELECT ON x TO y"])).unwrap_err().0,
            "\"DENY SELECT ON\""
        );
    }

    #[test]
    fn account_lock_is_read_from_show_create_user() {
        let maria = account_info(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' ACCOUNT LOCK",
        ]));
        assert!(maria.locked);
        let mysql = account_info(&lines(&[
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' \
             REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
        ]));
        assert!(!mysql.locked);
    }
}
