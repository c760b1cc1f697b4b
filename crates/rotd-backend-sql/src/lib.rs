//! rotd-backend-sql rotates database account passwords on MySQL, MariaDB and PostgreSQL over a direct SQL
//! connection with an administrator credential: the vendor's RDS and PolarDB secret types, on any server,
//! managed or self-hosted. [`SqlBackend`] implements [`rotd_core::Backend`]; it knows one server and one
//! secret's accounts ([`SqlConfig`]), and nothing of the store, the schedule or configuration files.
//!
//! # Accounts and values
//!
//! A secret owns one account ([`Accounts::Single`]: the password is reset in place, so clients holding the
//! old one fail until they re-read `ACSCurrent`; the gap is the time between `apply` and promotion) or two
//! ([`Accounts::Dual`]: `user` and `clone_user` alternate, and each rotation resets the account *not*
//! holding `ACSCurrent`, so the credential applications hold never stops working). Values are the vendor's
//! `{"AccountName":"…","AccountPassword":"…"}`.
//!
//! `apply` makes the slot's account accept the password through the admin connection. An account that
//! does not exist is created: with the configured [`Privilege`] on the configured databases when neither
//! account exists, or with the other account's privileges when only the other one does (the clone of an
//! imported account). An existing account gets its password reset; an imported account whose stored
//! password is wrong is therefore repaired by the first rotation, as the vendor promises. `verify` opens a
//! fresh TCP connection *as the account* (TLS when configured) and runs `SELECT 1` (on MySQL/MariaDB it also
//! proves the account's privileges, see below); it never touches existing sessions.
//!
//! # Passwords never reach the server in clear
//!
//! DDL cannot bind parameters, so the password would otherwise appear in the statement, and from there in
//! `log_statement` output, the general query log, binlogs and `pg_stat_activity`. Instead the server's
//! stored form is computed here and sent as a literal: a SCRAM-SHA-256 verifier for PostgreSQL
//! (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$4096:…'`), and the `mysql_native_password` hash for MySQL and
//! MariaDB (`IDENTIFIED BY PASSWORD '*…'` on MariaDB, `IDENTIFIED WITH mysql_native_password AS '*…'` on
//! MySQL, told apart by `SELECT VERSION()`). Every dynamic statement is built by the one quoting module
//! ([`quote`]), after configured names have passed an allowlist; secret-bearing statements are sent with
//! `raw_sql` (no prepared-statement cache), sqlx's own statement logging is off, and error messages are
//! built from the server's message only, scrubbed of the password and its hash.
//!
//! # PostgreSQL: the shared owner role
//!
//! Two login roles that alternate fall into an ownership trap: a table created by `app` during one interval
//! is owned by `app`, and after the swap `app_clone` cannot alter or even read it. rotd avoids this with a
//! third role, `<user>_owner`, created `NOLOGIN`:
//!
//! - both logins are members of it, and each gets `ALTER ROLE <login> SET role = '<user>_owner'`, so every
//!   session of either login acts as the owner role and every object it creates is owned by the owner role,
//!   usable and alterable by both;
//! - when rotd creates the accounts, the configured privileges are granted to the owner role, so the two
//!   logins have identical rights by construction;
//! - when a login already existed (imported), it joins at its own turn, when it is the account being
//!   reset: its direct object privileges and role memberships are first copied to the owner role, then
//!   rotd checks that the owner role has every privilege the login has in every database it uses, and
//!   only then switches its sessions. A login that owns objects, has default privileges or row-security
//!   policies naming it, or has SUPERUSER or BYPASSRLS, is not switched (the reason is logged); CREATEDB
//!   and CREATEROLE are given to the owner role only when the live twin has them too.
//! - the login holding `ACSCurrent` (the live twin of the account being reset) is never altered: no
//!   `SET role`, no membership, no attribute. While the live twin is a member of the owner role, only
//!   privileges it already has are copied to that role, so adopting the target never widens the live
//!   account.
//! - when the live login owns objects its twin cannot use (a table it created before import, say), the
//!   rotation stops with a permanent error before any change, naming the databases and the remedy
//!   (`GRANT <user>_owner TO <login>`, then `REASSIGN OWNED BY <login> TO <user>_owner` in each database):
//!   after the swap, clients on the twin would lose those objects.
//!
//! Imports name no databases, and a secret file may name none for the connection either (`postgres` is
//! then used), so the databases compared are found, not configured: besides the configured and the
//! connection database, every database one of the pair's roles (or a role they are members of) owns or
//! holds an explicit privilege on, or where it owns objects, holds object or default privileges, or is
//! named by a policy. PUBLIC's default `CONNECT` alone does not count; to find object privileges rotd
//! opens every non-template database that allows connections and that one of the roles can connect to,
//! on each apply and drift report, so the admin must be able to connect to those databases.
//!
//! Creation makes the role `NOLOGIN` with a comment marking it as rotd's unfinished creation (in one
//! transaction), grants, and enables `LOGIN` with the password last, removing the mark. A `NOLOGIN` role
//! with the mark is finished by the next apply; one without it is an account someone disabled, and apply
//! refuses it with a permanent error rather than re-enabling it. (A creation interrupted by a rotd
//! version before the mark existed is refused the same way; `ALTER ROLE … LOGIN` lets it rotate.)
//!
//! # MySQL/MariaDB: creation, verification, hosts
//!
//! - **Creation is locked until it is complete.** rotd creates `'<user>'@'%'` with `ACCOUNT LOCK`, grants,
//!   and unlocks (`ALTER USER … ACCOUNT UNLOCK`) as the very last step, so a crash or step timeout between
//!   `CREATE USER` and `GRANT` leaves an account that cannot log in rather than a login without privileges.
//!   An existing locked account is an unfinished creation when it lacks the configured grants (imports: has
//!   no grant at all) or already holds the password being applied (which only rotd's own creation sets);
//!   the next `apply` grants and unlocks it. Any other locked account was locked by an operator: its password
//!   is reset, the lock is left, and `verify` fails until the operator unlocks it. MariaDB needs 10.4.2+
//!   (account locking).
//! - **rotd owns the configured privileges.** With configured databases (accounts rotd creates) every
//!   `apply` re-runs the configured `GRANT`s (idempotent) before it resets or unlocks, so an account that
//!   lost them gets them back; grants beyond them are left alone.
//! - **`verify` proves privileges, not only the login.** After logging in as the account and `SELECT 1`, it
//!   `USE`s each configured database (refused: a permanent error naming the database). Imported accounts
//!   have no configured databases; there the account's own `SHOW GRANTS` must list some privilege or role
//!   beyond `USAGE`, so an imported account holding nothing at all cannot be rotated. What exactly an
//!   imported twin may do is parity's concern (below).
//! - **Only `'<user>'@'%'` is managed.** When the account does not exist as `'<user>'@'%'` but the user name
//!   exists under another host, `apply` refuses with a permanent error (rename the account with `RENAME
//!   USER`, or drop it) instead of creating a second account beside it: clients matching the other host would
//!   keep authenticating against the old one. When both exist, the other hosts are logged with a warning and
//!   not rotated. An account that does not exist at all is created only with configured databases or as the
//!   twin of an existing account, never from nothing (it would have no privileges).
//! - **Failpoint (test-only).** `SqlConfig::failpoint = Some("sql-created")` (the binary sets it from
//!   `ROTD_FAILPOINT`) parks `apply` forever right after `CREATE USER … ACCOUNT LOCK`, before any grant, so
//!   crash tests can abandon a creation exactly there. It is inert unless set and never set in production.
//!
//! # Privilege parity
//!
//! Before every dual alternation `apply` compares the target account with the current one and repairs what
//! the target lacks, copying from the current account; what the target has in excess, or what cannot be
//! repaired safely, is reported with `tracing::warn!` (and returned by [`SqlBackend::drift`]).
//! MySQL/MariaDB compare `SHOW GRANTS` split into single items (so the user name does not matter) and
//! replay what the target lacks: privileges per object (with GRANT OPTION), roles (with ADMIN OPTION),
//! partial revokes (`REVOKE … ON … FROM`, MySQL 8 with `partial_revokes`; replayed after the privileges they
//! restrict) and default roles (`SET DEFAULT ROLE` in MariaDB's `SHOW GRANTS`, `DEFAULT ROLE` in MySQL's
//! `SHOW CREATE USER`; replayed last, so a copied role is active at the twin's login). A `SHOW GRANTS` line
//! the parser does not understand is a permanent error: rotd refuses to alternate rather than copy part of
//! the privileges. A partial revoke or default role the target has in excess is reported, not removed.
//! `SHOW CREATE USER` is compared for TLS requirements, resource limits and account locks (reported only).
//! PostgreSQL compares role attributes (CREATEDB, CREATEROLE, INHERIT and the connection limit are
//! repaired; SUPERUSER, REPLICATION, BYPASSRLS and VALID UNTIL reported), role memberships, and the
//! effective object privileges on databases, schemas, tables, views, sequences, columns, functions and
//! procedures (EXECUTE) and types in each database the pair uses (see above); objects (relations,
//! schemas, routines, types) owned by a login rather than the owner role are reported.
//!
//! # Limits
//!
//! - Configured privileges on PostgreSQL cover each database's `public` schema (plus default privileges
//!   for tables the admin creates there later); other schemas are the operator's to grant.
//! - PostgreSQL parity does not compare privileges on large objects, languages, foreign-data wrappers and
//!   servers, tablespaces or parameters, nor default privileges (a login that has some is not switched,
//!   but they are not copied), and ownership counts only relations, schemas, routines and types.
//! - MySQL DDL is not transactional; creation relies on `ACCOUNT LOCK` (above) instead of a transaction, so
//!   a half-made account stays locked until an `apply` finishes it.
//! - MySQL 8 lists a global `ALL PRIVILEGES` expanded into single privileges, so there a locked `Privileged`
//!   account always counts as an unfinished creation and is unlocked by the next `apply`.
//! - MySQL 8.4 disables `mysql_native_password` by default and MySQL 9 removed it; there the server
//!   refuses the hashed form with a permanent error. MariaDB `ed25519`/PARSEC accounts are converted to
//!   `mysql_native_password` by the first reset, and an *admin* account on those plugins cannot log in
//!   (sqlx does not speak them). A MySQL 8 admin on `caching_sha2_password` needs TLS, because sqlx is built
//!   without the RSA key exchange.
//! - Only the login itself has a timeout (`connect_timeout`); the engine bounds a whole attempt.
//! - sqlx still reads `PGOPTIONS` and the `PGSSL*` certificate variables from the environment for
//!   PostgreSQL connections; host, port, user, password, database and TLS mode are always set from the
//!   configuration (and `~/.pgpass` is never read).

mod config;
mod error;
mod hash;
mod mysql;
mod pg;
pub mod quote;

use std::fmt;
use std::sync::Arc;

use rotd_core::{Backend, BackendError, BackendResult, BoxFuture, Capabilities, Secret, Slot};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crate::config::{
    Accounts, Engine, NameProblem, Privilege, SqlConfig, Tls, check_accounts, check_database,
};

/// The host part of every MySQL/MariaDB account rotd creates or manages.
pub const MYSQL_ACCOUNT_HOST: &str = "%";

/// A [`Backend`] for one secret's database accounts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlBackend {
    cfg: Arc<SqlConfig>,
}

/// One difference between the two accounts of a dual pair, as found before an alternation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftItem {
    /// What differs: `grant`, `membership`, `attribute`, `account` (TLS, limits, lock) or `ownership`.
    pub kind: &'static str,
    /// A description naming the object and privilege or attribute; never a secret.
    pub detail: String,
    /// The target account lacks what the current one has, and rotd copies it over (`true`); or the
    /// difference is only reported (`false`).
    pub repairable: bool,
}

impl fmt::Display for DriftItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The parsed value of a database secret. The password lives in a zeroizing buffer.
#[derive(Deserialize)]
struct AccountValue {
    #[serde(rename = "AccountName")]
    name: String,
    #[serde(rename = "AccountPassword")]
    password: Zeroizing<String>,
}

/// The value written for a slot; borrowing keeps the only full copy in the resulting [`Secret`].
#[derive(Serialize)]
struct AccountValueRef<'a> {
    #[serde(rename = "AccountName")]
    name: &'a str,
    #[serde(rename = "AccountPassword")]
    password: &'a str,
}

/// What `apply` and `verify` work on: one account and the password it must accept.
pub(crate) struct Target<'a> {
    pub slot: Slot,
    pub user: &'a str,
    /// The other account of a dual pair.
    pub other: Option<&'a str>,
    pub password: &'a str,
}

impl SqlBackend {
    /// Builds the backend after checking every name against the allowlist (`^[A-Za-z_][A-Za-z0-9_]*$`) and
    /// the server's length limits (user names: MySQL 32, PostgreSQL 63 characters, and on PostgreSQL the
    /// owner role `<user>_owner` must fit too). Opens no connection.
    pub fn new(cfg: SqlConfig) -> Result<Self, BackendError> {
        let kind = cfg.engine.kind();
        cfg.validate()
            .map_err(|m| BackendError::permanent(kind, "configure", m))?;
        Ok(Self { cfg: Arc::new(cfg) })
    }

    pub fn config(&self) -> &SqlConfig {
        &self.cfg
    }

    /// Compares the account of `slot` with the other account of a dual pair, changing nothing. Used by
    /// `apply` before each alternation (which then repairs the repairable items) and by status reports.
    /// Single accounts have no drift.
    pub async fn drift(&self, slot: Slot) -> BackendResult<Vec<DriftItem>> {
        let (Some(user), Some(other)) = (self.cfg.account(slot), self.cfg.account(slot.other())) else {
            return Err(self.bad_slot("drift", slot));
        };
        if !self.cfg.is_dual() {
            return Ok(Vec::new());
        }
        match self.cfg.engine {
            Engine::Postgres => pg::drift(&self.cfg, user, other).await,
            Engine::Mysql => mysql::drift(&self.cfg, user, other).await,
        }
    }

    fn bad_slot(&self, operation: &'static str, slot: Slot) -> BackendError {
        let shape = if self.cfg.is_dual() { "dual" } else { "single" };
        BackendError::permanent(
            self.kind(),
            operation,
            format!("slot {slot} does not exist for {shape} accounts"),
        )
    }

    /// Parses a value and checks it belongs to `slot`'s account.
    fn parse<'a>(
        &'a self,
        operation: &'static str,
        slot: Slot,
        value: &Secret,
    ) -> BackendResult<(&'a str, Zeroizing<String>)> {
        let user = self
            .cfg
            .account(slot)
            .ok_or_else(|| self.bad_slot(operation, slot))?;
        // The serde error is not quoted: for a wrongly typed field it would echo the value.
        let parsed: AccountValue = serde_json::from_slice(value.expose_secret()).map_err(|_| {
            BackendError::permanent(
                self.kind(),
                operation,
                "the value is not {\"AccountName\",\"AccountPassword\"} JSON",
            )
        })?;
        if parsed.name != user {
            return Err(BackendError::permanent(
                self.kind(),
                operation,
                format!(
                    "the value is for account {:?}, but slot {slot} is account {user:?}",
                    parsed.name
                ),
            ));
        }
        check_password(self.kind(), operation, &parsed.password)?;
        Ok((user, parsed.password))
    }
}

/// Passwords must be non-empty text without NUL: both servers' login protocols end a password at NUL.
fn check_password(kind: &str, operation: &'static str, password: &str) -> BackendResult<()> {
    if password.is_empty() || password.contains('\0') {
        return Err(BackendError::permanent(
            kind,
            operation,
            "the password must be non-empty and contain no NUL byte",
        ));
    }
    Ok(())
}

impl Backend for SqlBackend {
    fn kind(&self) -> &str {
        self.cfg.engine.kind()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dual_accounts: self.cfg.is_dual(),
            overlap: false,
            source: rotd_core::CredentialSource::Generated,
            retire_steps: 0,
            creates_accounts: false,
        }
    }

    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async move {
            match self.cfg.engine {
                Engine::Postgres => pg::check(&self.cfg).await,
                Engine::Mysql => mysql::check(&self.cfg).await,
            }
        })
    }

    fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret> {
        let user = self
            .cfg
            .account(slot)
            .ok_or_else(|| self.bad_slot("compose", slot))?;
        let password = password.expose_str().ok_or_else(|| {
            BackendError::permanent(self.kind(), "compose", "the password must be UTF-8 text")
        })?;
        check_password(self.kind(), "compose", password)?;
        let bytes = serde_json::to_vec(&AccountValueRef { name: user, password })
            .map_err(|_| BackendError::permanent(self.kind(), "compose", "cannot encode the value"))?;
        Ok(Secret::new(bytes))
    }

    fn target(&self) -> Option<String> {
        Some(format!("{} {}:{}", self.kind(), self.cfg.host, self.cfg.port))
    }

    fn slot_of(&self, value: &Secret) -> Option<Slot> {
        #[derive(Deserialize)]
        struct Name {
            #[serde(rename = "AccountName")]
            name: String,
        }
        let parsed: Name = serde_json::from_slice(value.expose_secret()).ok()?;
        [Slot::Single, Slot::Primary, Slot::Clone]
            .into_iter()
            .find(|s| self.cfg.account(*s) == Some(parsed.name.as_str()))
    }

    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let (user, password) = self.parse("apply", slot, new)?;
            let target = Target {
                slot,
                user,
                other: if self.cfg.is_dual() {
                    self.cfg.account(slot.other())
                } else {
                    None
                },
                password: &password,
            };
            match self.cfg.engine {
                Engine::Postgres => pg::apply(&self.cfg, &target).await,
                Engine::Mysql => mysql::apply(&self.cfg, &target).await,
            }
        })
    }

    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let (user, password) = self.parse("verify", slot, secret)?;
            match self.cfg.engine {
                Engine::Postgres => pg::verify(&self.cfg, user, &password).await,
                Engine::Mysql => mysql::verify(&self.cfg, user, &password).await,
            }
        })
    }
}

/// Logs drift found before an alternation: one warning per item, fields first, no secrets.
pub(crate) fn report_drift(kind: &str, target: &str, current: &str, items: &[DriftItem], repaired: bool) {
    for item in items {
        if item.repairable && repaired {
            tracing::info!(
                backend = kind,
                account = target,
                copied_from = current,
                drift = item.kind,
                detail = %item.detail,
                "Repaired privilege drift before rotating the account."
            );
        } else {
            tracing::warn!(
                backend = kind,
                account = target,
                current = current,
                drift = item.kind,
                detail = %item.detail,
                repairable = item.repairable,
                "Privilege drift between the dual accounts that rotd does not repair."
            );
        }
    }
}
