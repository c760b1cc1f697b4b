//! Turning sqlx errors into [`BackendError`]s: one classification (retryable or permanent) and one
//! rendering that can never carry a secret.
//!
//! Server messages are the useful part of an error, but they can quote the statement that failed (MySQL's
//! "…near '…' at line 1"), and a failed `ALTER ROLE`/`ALTER USER` carries a password hash. So every message
//! is built from the server's error *message* only (never the statement), the quoted excerpt of a syntax
//! error is cut, and the caller's known secrets (password, verifier, hash) are replaced as a last guard.

use rotd_core::{BackendError, ErrorClass};
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;

/// What replaces a secret found in an error message.
pub(crate) const REDACTED: &str = "**REDACTED**";

/// The texts an error message must not contain: the password and what was derived from it. Empty strings
/// are ignored, so callers can pass `""` when they have nothing to hide.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hide<'a>(pub &'a [&'a str]);

impl Hide<'_> {
    pub(crate) fn scrub(&self, mut text: String) -> String {
        for needle in self.0.iter().filter(|n| !n.is_empty()) {
            if text.contains(needle) {
                text = text.replace(needle, REDACTED);
            }
        }
        text
    }
}

/// Whether retrying can help, from the error's kind and the server's code.
pub(crate) fn classify(e: &sqlx::Error) -> ErrorClass {
    use ErrorClass::{Permanent, Retryable};
    match e {
        // A refused or reset connection, a server going down, a timeout: all transient.
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => Retryable,
        // The stream broke mid-message, which is what a server killed mid-answer looks like; the one
        // protocol error that is a configuration fact is an account on an unsupported auth plugin.
        sqlx::Error::Protocol(msg) if msg.contains("authentication plugin") => Permanent,
        sqlx::Error::Protocol(_) => Retryable,
        sqlx::Error::Database(_) if is_concurrent_catalog_update(e) => Retryable,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                classify_pg(pg.code())
            } else if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
                classify_mysql(my.number())
            } else {
                Permanent
            }
        }
        // Configuration, TLS (a bad certificate does not fix itself), decoding and everything else.
        _ => Permanent,
    }
}

/// Whether PostgreSQL refused a statement because another session updated the same catalog row at the
/// same time: GRANT, REVOKE and ALTER DEFAULT PRIVILEGES rewrite an object's ACL row without locking it,
/// so two sessions granting on one database, schema or table (two secrets on one server creating
/// accounts, an operator or a migration granting meanwhile) can make one fail with SQLSTATE XX000
/// "tuple concurrently updated". The losing statement changed nothing, and trying again succeeds.
pub(crate) fn is_concurrent_catalog_update(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| pg.code() == "XX000" && pg.message().contains("tuple concurrently updated"))
}

/// PostgreSQL SQLSTATEs that are worth retrying: connection exceptions (08), insufficient resources such
/// as too many connections (53), operator intervention such as a shutdown or a server starting up (57P),
/// and serialization failures or deadlocks (40).
fn classify_pg(code: &str) -> ErrorClass {
    let transient = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("40")
        || code == "55P03"; // lock_not_available
    if transient {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    }
}

/// MySQL/MariaDB error numbers that are worth retrying.
fn classify_mysql(number: u16) -> ErrorClass {
    match number {
        // Too many connections, server shutdown in progress, lock wait timeout, deadlock,
        // query interrupted, server has gone away / lost connection (client-side numbers).
        1040 | 1053 | 1205 | 1213 | 1317 | 2002 | 2003 | 2006 | 2013 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Whether the error is the server refusing a login (wrong password, unknown account, or no access).
pub(crate) fn is_auth_failure(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        // 28P01 invalid_password, 28000 invalid_authorization_specification (no such role, or pg_hba).
        pg.code().starts_with("28")
    } else if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        // 1045 access denied (bad password or account), 1698 access denied without a usable password
        // (MariaDB answers it for some unknown accounts and plugin mismatches), 1044 no access to the
        // database, 3118 account locked (MySQL), 4151 account locked (MariaDB), 1862 password expired.
        matches!(my.number(), 1044 | 1045 | 1698 | 1862 | 3118 | 4151)
    } else {
        false
    }
}

/// A short description of a sqlx error: the server's code and message for database errors, the kind
/// otherwise. Never the statement text.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => {
            let code = if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
                my.number().to_string()
            } else {
                db.code().map(|c| c.into_owned()).unwrap_or_default()
            };
            let message = cut_statement_excerpt(db.message());
            if code.is_empty() {
                message
            } else {
                format!("{message} (code {code})")
            }
        }
        sqlx::Error::Io(io) => format!("connection error: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS error: {tls}"),
        sqlx::Error::Protocol(p) => format!("protocol error: {p}"),
        sqlx::Error::Configuration(c) => format!("connection settings: {c}"),
        other => other.to_string(),
    };
    lowercase_first(text)
}

/// MySQL syntax errors quote the statement from the failing token on ("…near 'IDENTIFIED BY PASSWORD
/// '*AB…' at line 1"); the quote is cut because it may contain a hash.
fn cut_statement_excerpt(message: &str) -> String {
    match message.find(" near '") {
        Some(at) => format!("{} near <statement not shown>", &message[..at]),
        None => message.to_owned(),
    }
}

/// Error messages in this project start lowercase; server messages often do not.
fn lowercase_first(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_ascii_uppercase() => {
            let mut out = String::with_capacity(text.len());
            out.push(first.to_ascii_lowercase());
            out.push_str(chars.as_str());
            out
        }
        _ => text,
    }
}

/// Builds a [`BackendError`] from a sqlx error with a `context` prefix ("reset password of app"), scrubbed
/// of `hide`.
pub(crate) fn from_sqlx(
    kind: &str,
    operation: &'static str,
    context: &str,
    e: &sqlx::Error,
    hide: Hide<'_>,
) -> BackendError {
    let message = hide.scrub(format!("{context}: {}", describe(e)));
    BackendError {
        backend: kind.to_owned(),
        operation,
        class: classify(e),
        message,
        node: None,
        identity_mismatch: false,
    }
}

/// A connection attempt that did not finish within the configured timeout.
pub(crate) fn timed_out(kind: &str, operation: &'static str, context: &str) -> BackendError {
    BackendError::retryable(kind, operation, format!("{context}: timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_secret() {
        let hide = Hide(&["s3cret", "", "*ABCDEF"]);
        assert_eq!(
            hide.scrub("a s3cret and *ABCDEF and s3cret".into()),
            "a **REDACTED** and **REDACTED** and **REDACTED**"
        );
    }

    #[test]
    fn syntax_error_excerpts_are_cut() {
        let m = "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB \
                 server version for the right syntax to use near 'PASSWORD '*0123' at line 1";
        let cut = cut_statement_excerpt(m);
        assert!(!cut.contains("*0123"), "{cut}");
        assert!(cut.ends_with("near <statement not shown>"));
    }

    #[test]
    fn io_errors_are_retryable_and_config_errors_permanent() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&io), ErrorClass::Retryable);
        let cfg = sqlx::Error::Configuration("bad".into());
        assert_eq!(classify(&cfg), ErrorClass::Permanent);
        assert_eq!(
            classify(&sqlx::Error::Protocol(
                "unknown authentication plugin: ed25519".into()
            )),
            ErrorClass::Permanent
        );
        assert_eq!(classify_pg("57P01"), ErrorClass::Retryable);
        assert_eq!(classify_pg("28P01"), ErrorClass::Permanent);
        assert_eq!(classify_pg("42501"), ErrorClass::Permanent);
        assert_eq!(classify_mysql(1040), ErrorClass::Retryable);
        assert_eq!(classify_mysql(1045), ErrorClass::Permanent);
        assert_eq!(classify_mysql(1064), ErrorClass::Permanent);
    }
}
