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
    let result = sqlx::raw_sql("SELECT 1")
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| cx.err(&format!("SELECT 1 as {user}"), &e));
    close(conn).await;
    result
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

/// The stored authentication string and plugin of `'user'@'%'`, or `None` if there is no such account.
async fn lookup(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    user: &str,
) -> BackendResult<Option<(String, String)>> {
    sqlx::query_as(
        "SELECT CAST(authentication_string AS CHAR), CAST(plugin AS CHAR) \
           FROM mysql.user WHERE User = ? AND Host = ?",
    )
    .bind(user)
    .bind(MYSQL_ACCOUNT_HOST)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| cx.err(&format!("look up account {user}"), &e))
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
    let current = match target.other {
        Some(other) => lookup(cx, conn, other).await?.map(|_| other),
        None => None,
    };

    let Some((stored, plugin)) = existing else {
        cx.exec(
            conn,
            format!("CREATE USER {account} {}", identified(flavor, hash)),
            &format!("create account {user}"),
        )
        .await?;
        tracing::info!(backend = KIND, account = user, slot = %target.slot, "Created the database account.");
        // MySQL DDL is not transactional: if granting fails, the half-made account is dropped again so
        // the next attempt starts from scratch instead of finding an account and only resetting it.
        let granted = match current {
            Some(current) => parity(cx, conn, user, current).await,
            None => grant_configured(cx, conn, &account, user).await,
        };
        if let Err(e) = granted {
            let _ = cx
                .exec(
                    conn,
                    format!("DROP USER {account}"),
                    "drop the half-created account",
                )
                .await;
            return Err(e);
        }
        return Ok(());
    };

    if let Some(current) = current {
        parity(cx, conn, user, current).await?;
    }
    if stored == hash && (plugin == "mysql_native_password" || plugin.is_empty()) {
        // Already accepts this password: a repeated apply after a crash changes nothing.
        return Ok(());
    }
    cx.exec(
        conn,
        format!("ALTER USER {account} {}", identified(flavor, hash)),
        &format!("set the password of {user}"),
    )
    .await
}

/// Grants the configured privilege level on each configured database (or server-wide for Privileged).
async fn grant_configured(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    account: &str,
    user: &str,
) -> BackendResult<()> {
    let privileges = match cx.cfg.privilege {
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
        Privilege::Privileged => {
            return cx
                .exec(
                    conn,
                    format!("GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION"),
                    &format!("grant the configured privileges to {user}"),
                )
                .await;
        }
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

/// Compares `target` with `current`, copies the grants `target` lacks, and reports the rest.
async fn parity(cx: &Cx<'_>, conn: &mut MySqlConnection, target: &str, current: &str) -> BackendResult<()> {
    let found = drift_on(cx, conn, target, current).await?;
    let account = cx.account(target)?;
    for grant in found.iter().filter_map(|(_, fix)| fix.as_ref()) {
        cx.exec(
            conn,
            grant.statement(&account),
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

async fn drift_on(
    cx: &Cx<'_>,
    conn: &mut MySqlConnection,
    target: &str,
    current: &str,
) -> BackendResult<Vec<(DriftItem, Option<Grant>)>> {
    let mut found = Vec::new();
    let (t_acct, c_acct) = (cx.account(target)?, cx.account(current)?);
    let grants_t = grants(
        &cx.lines(conn, format!("SHOW GRANTS FOR {t_acct}"), "show grants")
            .await?,
    );
    let grants_c = grants(
        &cx.lines(conn, format!("SHOW GRANTS FOR {c_acct}"), "show grants")
            .await?,
    );
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
    let opts_t = account_options(
        &cx.lines(conn, format!("SHOW CREATE USER {t_acct}"), "show create user")
            .await?,
    );
    let opts_c = account_options(
        &cx.lines(conn, format!("SHOW CREATE USER {c_acct}"), "show create user")
            .await?,
    );
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

/// One privilege on one object, as `SHOW GRANTS` lists it, independent of the account it is granted to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Grant {
    /// `GRANT <privilege> ON <object>`; the object text is the server's own rendering (backticks kept).
    Privilege { object: String, privilege: String },
    /// `… ON <object> … WITH GRANT OPTION`.
    #[allow(clippy::enum_variant_names)]
    GrantOption { object: String },
    /// `GRANT <role> TO …` (MariaDB roles, MySQL 8 roles).
    Role { role: String },
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Privilege { object, privilege } => write!(f, "{privilege} on {object}"),
            Grant::GrantOption { object } => write!(f, "GRANT OPTION on {object}"),
            Grant::Role { role } => write!(f, "role {role}"),
        }
    }
}

impl Grant {
    /// The statement that gives `account` this grant. The object, privilege and role texts come from the
    /// server's own `SHOW GRANTS` output, so they are already valid, quoted SQL.
    fn statement(&self, account: &str) -> String {
        match self {
            Grant::Privilege { object, privilege } => format!("GRANT {privilege} ON {object} TO {account}"),
            Grant::GrantOption { object } => {
                format!("GRANT USAGE ON {object} TO {account} WITH GRANT OPTION")
            }
            Grant::Role { role } => format!("GRANT {role} TO {account}"),
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

/// Parses `SHOW GRANTS` lines into single grants. `USAGE` (no privilege at all) is dropped, and so are
/// lines that are not `GRANT` statements (`SET DEFAULT ROLE …`).
pub(crate) fn grants(lines: &[String]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for line in lines {
        let tokens = tokenize(line);
        let Some(first) = tokens.first() else { continue };
        if !is_word(line, first, "GRANT") {
            continue;
        }
        // Find `ON` and `TO` at parenthesis depth 0.
        let (mut on, mut to, mut depth) = (None, None, 0i32);
        for (i, t) in tokens.iter().enumerate().skip(1) {
            match &line[t.start..t.end] {
                "(" if !t.quoted => depth += 1,
                ")" if !t.quoted => depth -= 1,
                _ if depth == 0 && on.is_none() && to.is_none() && is_word(line, t, "ON") => on = Some(i),
                _ if depth == 0 && to.is_none() && is_word(line, t, "TO") => {
                    to = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(to) = to else { continue };
        let rest = &tokens[to + 1..];
        let with_grant_option = rest
            .windows(2)
            .any(|w| is_word(line, &w[0], "GRANT") && is_word(line, &w[1], "OPTION"));
        let Some(on) = on else {
            // A role grant: everything between GRANT and TO is the role list.
            for role in split_list(line, &tokens[1..to]) {
                out.insert(Grant::Role { role });
            }
            continue;
        };
        let object = line[tokens[on + 1].start..tokens[to - 1].end].trim().to_owned();
        for privilege in split_list(line, &tokens[1..on]) {
            if privilege.eq_ignore_ascii_case("USAGE") {
                continue;
            }
            out.insert(Grant::Privilege {
                object: object.clone(),
                privilege,
            });
        }
        if with_grant_option {
            out.insert(Grant::GrantOption { object });
        }
    }
    out
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

/// The account-level options of a `SHOW CREATE USER` line: everything after the account except the
/// `IDENTIFIED …` clause (which carries the password hash), as a token list. Quoted tokens that look like
/// hashes are dropped as well, so this never holds credential material whatever the server prints.
pub(crate) fn account_options(lines: &[String]) -> Vec<String> {
    let Some(line) = lines.first() else {
        return Vec::new();
    };
    let tokens = tokenize(line);
    let text = |t: &Token| &line[t.start..t.end];
    // `CREATE USER <account> …`
    let mut i = 3.min(tokens.len());
    let mut out = Vec::new();
    while i < tokens.len() {
        if is_word(line, &tokens[i], "IDENTIFIED") {
            i = skip_identified(line, &tokens, i + 1);
            continue;
        }
        let t = text(&tokens[i]);
        let hash_like = tokens[i].quoted && (t.starts_with("'*") || t.starts_with("'$") || t.len() > 40);
        if !hash_like {
            out.push(t.to_ascii_uppercase());
        }
        i += 1;
    }
    // MySQL prints defaults explicitly (`ACCOUNT UNLOCK`, `REQUIRE NONE`); MariaDB omits them.
    let joined = out.join(" ");
    let normalized = joined
        .replace("REQUIRE NONE", "")
        .replace("ACCOUNT UNLOCK", "")
        .replace("PASSWORD EXPIRE DEFAULT", "");
    normalized.split_whitespace().map(str::to_owned).collect()
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
        ]));
        let b = grants(&lines(&[
            "GRANT USAGE ON *.* TO `app_clone`@`%` IDENTIFIED BY PASSWORD '*0000'",
            "GRANT INSERT ON `shop`.* TO `app_clone`@`%`",
            "GRANT SELECT ON `shop`.* TO `app_clone`@`%`",
        ]));
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
        ]
        .into_iter()
        .collect();
        assert_eq!(a, expected);
        let missing: Vec<String> = a.difference(&b).map(|g| g.statement("'x'@'%'")).collect();
        assert_eq!(
            missing,
            [
                "GRANT UPDATE (`a`, `b`) ON `shop`.* TO 'x'@'%'",
                "GRANT USAGE ON `shop`.* TO 'x'@'%' WITH GRANT OPTION",
                "GRANT `reporting` TO 'x'@'%'",
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
        ]));
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
}
