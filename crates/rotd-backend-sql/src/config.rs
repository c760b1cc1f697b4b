//! The typed configuration of one database-backed secret, and its validation. The binary builds a
//! [`SqlConfig`] from its TOML and the admin credential; this crate never reads files or the environment.

use std::path::PathBuf;
use std::time::Duration;

use rotd_core::{Secret, Slot};

use crate::quote::{Dialect, validate_ident};

/// The server family. MariaDB is spoken to as `Mysql`; the flavour is detected at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Mysql,
    Postgres,
}

impl Engine {
    pub(crate) fn dialect(self) -> Dialect {
        match self {
            Engine::Mysql => Dialect::Mysql,
            Engine::Postgres => Dialect::Postgres,
        }
    }

    /// The backend's label in logs, metrics and errors.
    pub fn kind(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Postgres => "postgres",
        }
    }
}

/// Transport security for every connection the backend opens, admin and verification alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise.
    Prefer,
    /// TLS or fail, without checking the certificate.
    Require,
    /// TLS with the certificate chain checked against `ca_file` and the host name matched.
    VerifyFull,
}

/// Which accounts the secret owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// One account whose password is reset in place (RDS single-user).
    Single { user: String },
    /// `user` and `clone_user` alternate (RDS/PolarDB double-users).
    Dual { user: String, clone_user: String },
}

/// The vendor's permission levels, used when rotd creates an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Read and write data and schema in the listed databases.
    ReadWrite,
    /// Read data in the listed databases.
    ReadOnly,
    /// Create, alter and drop objects in the listed databases, without reading or writing rows.
    DdlOnly,
    /// Read and write rows in the listed databases, without changing the schema.
    DmlOnly,
    /// A standard account: the same rights as `ReadWrite` on the listed databases.
    Standard,
    /// A privileged account: all privileges server-wide (MySQL, with GRANT OPTION) or on the listed
    /// databases plus CREATEDB and CREATEROLE (PostgreSQL).
    Privileged,
}

/// The configuration of one database-backed secret. `Debug` is safe to print: [`Secret`] redacts itself.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    /// The database the admin and verification connections open. PostgreSQL needs one (default
    /// `postgres`); MySQL/MariaDB connect without a default database when it is `None`.
    pub database: Option<String>,
    pub tls: Tls,
    /// The CA bundle that signs the server certificate, for `Tls::VerifyFull` (and `Require`, where it is
    /// used when given).
    pub ca_file: Option<PathBuf>,
    pub admin_user: String,
    pub admin_password: Secret,
    pub accounts: Accounts,
    /// The permission level an account gets when rotd creates it from nothing.
    pub privilege: Privilege,
    /// The databases that permission level applies to.
    pub databases: Vec<String>,
    /// How long to wait for a TCP connection and login before giving up (retryably).
    pub connect_timeout: Duration,
    /// Test hook for crash tests, `None` in production: `Some("sql-created")` parks `apply` forever right
    /// after a MySQL/MariaDB `CREATE USER … ACCOUNT LOCK`, before any grant, so a test (or a step timeout)
    /// can abandon the attempt exactly there. The binary sets it from `ROTD_FAILPOINT`.
    #[doc(hidden)]
    pub failpoint: Option<String>,
}

/// The suffix of the shared PostgreSQL owner role of a dual pair, `<user>_owner`.
pub(crate) const OWNER_SUFFIX: &str = "_owner";

impl SqlConfig {
    /// Checks every name and setting, returning the first problem as a sentence naming the field.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.port == 0 {
            return Err("port: must not be 0".into());
        }
        check_accounts(self.engine, &self.accounts).map_err(|p| format!("{}: {}", p.field, p.message))?;
        if self.admin_user.is_empty() {
            return Err("admin_user: must not be empty".into());
        }
        if self.admin_password.expose_str().is_none() {
            return Err("admin_password: must be UTF-8 text".into());
        }
        if let Some(db) = &self.database {
            check_database(self.engine, db).map_err(|m| format!("database: {m}"))?;
        }
        for db in &self.databases {
            check_database(self.engine, db).map_err(|m| format!("databases: {m}"))?;
        }
        if self.tls == Tls::VerifyFull && self.ca_file.is_none() {
            return Err("ca_file: tls = verify-full needs the CA certificate that signs the server's".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("connect_timeout: must be positive".into());
        }
        Ok(())
    }

    /// The account behind `slot`, or `None` when the slot does not exist for these accounts.
    pub(crate) fn account(&self, slot: Slot) -> Option<&str> {
        match (&self.accounts, slot) {
            (Accounts::Single { user }, Slot::Single) => Some(user),
            (Accounts::Dual { user, .. }, Slot::Primary) => Some(user),
            (Accounts::Dual { clone_user, .. }, Slot::Clone) => Some(clone_user),
            _ => None,
        }
    }

    pub(crate) fn is_dual(&self) -> bool {
        matches!(self.accounts, Accounts::Dual { .. })
    }

    /// The shared owner role of a PostgreSQL dual pair.
    pub(crate) fn owner_role(&self) -> Option<String> {
        match &self.accounts {
            Accounts::Dual { user, .. } if self.engine == Engine::Postgres => {
                Some(format!("{user}{OWNER_SUFFIX}"))
            }
            _ => None,
        }
    }

    /// The database the admin and verification connections open on PostgreSQL.
    pub(crate) fn pg_database(&self) -> &str {
        self.database.as_deref().unwrap_or("postgres")
    }
}

/// A configured name the backend would refuse: which field, and why (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameProblem {
    /// `user` or `clone_user`.
    pub field: &'static str,
    pub message: String,
}

/// The naming rules for a secret's accounts on `engine`, exactly as [`crate::SqlBackend::new`] applies
/// them. The backend owns these rules; `rotd check` calls this function, so `check` and `serve` cannot
/// disagree (names: `^[A-Za-z_][A-Za-z0-9_]*$`; MySQL 32, PostgreSQL 63 characters; on PostgreSQL the
/// dual pair's owner role `<user>_owner` must fit too).
pub fn check_accounts(engine: Engine, accounts: &Accounts) -> Result<(), NameProblem> {
    let user_max = engine.dialect().max_user_len();
    let problem = |field: &'static str, message: String| NameProblem { field, message };
    match accounts {
        Accounts::Single { user } => {
            validate_ident("user", user, user_max).map_err(|e| problem("user", e.reason))?;
        }
        Accounts::Dual { user, clone_user } => {
            let limit = match engine {
                Engine::Postgres => user_max - OWNER_SUFFIX.len(),
                Engine::Mysql => user_max,
            };
            validate_ident("user", user, limit).map_err(|e| {
                problem(
                    "user",
                    match engine {
                        Engine::Postgres => format!(
                            "{} (PostgreSQL dual accounts also need the owner role {user}{OWNER_SUFFIX} within {user_max} characters)",
                            e.reason
                        ),
                        Engine::Mysql => e.reason,
                    },
                )
            })?;
            validate_ident("clone_user", clone_user, user_max)
                .map_err(|e| problem("clone_user", e.reason))?;
            if user == clone_user {
                return Err(problem("clone_user", format!("must differ from user ({user:?})")));
            }
            if engine == Engine::Postgres && *clone_user == format!("{user}{OWNER_SUFFIX}") {
                return Err(problem(
                    "clone_user",
                    format!("{clone_user:?} is the name of the shared owner role; choose another"),
                ));
            }
        }
    }
    Ok(())
}

/// The naming rule for a database rotd connects to or grants on (`^[A-Za-z_][A-Za-z0-9_]*$`, MySQL 64 and
/// PostgreSQL 63 characters), as the backend applies it; `rotd check` calls it too.
pub fn check_database(engine: Engine, name: &str) -> Result<(), String> {
    validate_ident("database", name, engine.dialect().max_database_len()).map_err(|e| e.reason)
}
