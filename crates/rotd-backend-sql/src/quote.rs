//! The one place where text is spliced into SQL. DDL such as `CREATE ROLE`, `ALTER USER` and `GRANT`
//! cannot take bind parameters on either server, so every dynamic statement this crate sends is built
//! from the functions below, and nothing else in the crate formats an identifier or a literal itself.
//!
//! Two layers keep this safe. First, every name that comes from configuration is checked against a strict
//! allowlist ([`validate_ident`]) when the backend is built, so hostile names never get this far. Second,
//! the quoting functions are correct for *any* input anyway, because some names come from the server
//! (role memberships, granted objects) and are not ours to restrict: quote characters are doubled, a
//! backslash is escaped for MySQL's default `sql_mode`, and a NUL byte, which neither server accepts
//! inside a name or a literal, is refused instead of being silently truncated.

use std::fmt;

/// Which server's rules a name must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Postgres,
}

impl Dialect {
    /// The longest user name the server accepts: MySQL/MariaDB 32 characters, PostgreSQL 63 bytes.
    pub fn max_user_len(self) -> usize {
        match self {
            Dialect::Mysql => 32,
            Dialect::Postgres => 63,
        }
    }

    /// The longest database name the server accepts.
    pub fn max_database_len(self) -> usize {
        match self {
            Dialect::Mysql => 64,
            Dialect::Postgres => 63,
        }
    }
}

/// Why a name was refused; the message names the field and the rule, and quotes the name with `{:?}` so
/// control characters are visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentError {
    pub what: String,
    pub reason: String,
}

impl fmt::Display for IdentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.reason)
    }
}

/// Checks a configured name against `^[A-Za-z_][A-Za-z0-9_]*$` and a length limit. `what` names the
/// configuration field in the error ("user", "clone_user", "database").
pub fn validate_ident(what: &str, name: &str, max_len: usize) -> Result<(), IdentError> {
    let err = |reason: String| IdentError {
        what: what.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(err("must not be empty".to_owned()));
    };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(err(format!(
            "{name:?} must start with a letter or underscore (allowed: A-Z a-z 0-9 _)"
        )));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(err(format!(
            "{name:?} contains {bad:?}; only A-Z a-z 0-9 _ are allowed"
        )));
    }
    // The allowlist is ASCII, so the byte length is the character count.
    if name.len() > max_len {
        return Err(err(format!(
            "{name:?} is {} characters long; the server allows at most {max_len}",
            name.len()
        )));
    }
    Ok(())
}

/// A string that cannot be quoted: both servers end a name or literal at a NUL byte, so quoting it would
/// change its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NulByte;

impl fmt::Display for NulByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NUL byte cannot be quoted into SQL")
    }
}

/// Quotes a PostgreSQL identifier: `"` + the name with `"` doubled + `"`. Inside double quotes PostgreSQL
/// gives no other character a special meaning (backslashes included), so this is the whole rule.
pub fn quote_ident_pg(name: &str) -> Result<String, NulByte> {
    if name.contains('\0') {
        return Err(NulByte);
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Quotes a string literal for either server: `'` + the text with `'` doubled + `'`, and with every
/// backslash doubled.
///
/// The two servers differ on backslashes. MySQL/MariaDB (without `NO_BACKSLASH_ESCAPES`) treat them as
/// escapes inside `'...'`, so they are doubled. PostgreSQL with `standard_conforming_strings = on` (the
/// default since 9.1) does not, so a doubled backslash would change the value: for text containing a
/// backslash the PostgreSQL form is an escape string `E'...'`, where doubling is exactly right. A MySQL
/// server running with `NO_BACKSLASH_ESCAPES` would read a doubled backslash as two; that cannot matter
/// here, because the only MySQL literals this crate builds are allowlisted names, the host `%` and hex
/// password hashes, none of which contains a backslash.
pub fn quote_literal(dialect: Dialect, text: &str) -> Result<String, NulByte> {
    if text.contains('\0') {
        return Err(NulByte);
    }
    let body = text.replace('\\', "\\\\").replace('\'', "''");
    let prefix = match dialect {
        Dialect::Postgres if text.contains('\\') => "E",
        _ => "",
    };
    Ok(format!("{prefix}'{body}'"))
}

/// The MySQL/MariaDB account `'user'@'host'`: both halves are string literals, not identifiers.
pub fn mysql_account(user: &str, host: &str) -> Result<String, NulByte> {
    Ok(format!(
        "{}@{}",
        quote_literal(Dialect::Mysql, user)?,
        quote_literal(Dialect::Mysql, host)?
    ))
}

/// Quotes a MySQL/MariaDB identifier (a database name) with backticks, doubling any backtick inside.
pub fn quote_ident_mysql(name: &str) -> Result<String, NulByte> {
    if name.contains('\0') {
        return Err(NulByte);
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names an attacker might try, with the exact quoted forms that neutralise them.
    const HOSTILE: &[&str] = &[
        "app",
        "it's",
        "say \"hi\"",
        "back\\slash",
        "back\\'slash",
        "\"; DROP ROLE x; --",
        "'; DROP USER x; --",
        "`; DROP DATABASE x; --",
        "ünïcödé_名前",
        "tab\tnewline\n",
        "",
    ];

    #[test]
    fn pg_identifiers_double_their_quotes() {
        assert_eq!(quote_ident_pg("app").unwrap(), "\"app\"");
        assert_eq!(
            quote_ident_pg("\"; DROP ROLE x; --").unwrap(),
            "\"\"\"; DROP ROLE x; --\""
        );
        assert_eq!(quote_ident_pg("back\\slash").unwrap(), "\"back\\slash\"");
        assert_eq!(quote_ident_pg("ünïcödé").unwrap(), "\"ünïcödé\"");
        for name in HOSTILE {
            let q = quote_ident_pg(name).unwrap();
            // Inside the outer quotes every quote is doubled, so the identifier cannot end early.
            let inner = &q[1..q.len() - 1];
            assert_eq!(inner.replace("\"\"", ""), inner.replace('"', ""), "{q}");
            assert_eq!(inner.replace("\"\"", "\""), *name);
        }
    }

    #[test]
    fn literals_double_quotes_and_backslashes() {
        assert_eq!(quote_literal(Dialect::Mysql, "it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal(Dialect::Postgres, "it's").unwrap(), "'it''s'");
        assert_eq!(
            quote_literal(Dialect::Mysql, "back\\'slash").unwrap(),
            "'back\\\\''slash'"
        );
        assert_eq!(
            quote_literal(Dialect::Postgres, "it's\\x").unwrap(),
            "E'it''s\\\\x'",
            "the form PostgreSQL's own format('%L') produces"
        );
        assert_eq!(
            quote_literal(Dialect::Mysql, "'; DROP USER x; --").unwrap(),
            "'''; DROP USER x; --'"
        );
        assert_eq!(quote_literal(Dialect::Postgres, "名前").unwrap(), "'名前'");
        for dialect in [Dialect::Mysql, Dialect::Postgres] {
            for text in HOSTILE {
                let q = quote_literal(dialect, text).unwrap();
                let start = q.find('\'').unwrap() + 1;
                let inner = &q[start..q.len() - 1];
                // Undo the escaping the way the server reads it and get the original back.
                let mut unescaped = String::new();
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' | '\'' => {
                            let next = chars.next().expect("escapes come in pairs");
                            assert_eq!(next, c, "a lone {c:?} would end or change the literal: {q}");
                            unescaped.push(c);
                        }
                        c => unescaped.push(c),
                    }
                }
                assert_eq!(unescaped, *text);
            }
        }
    }

    #[test]
    fn mysql_accounts_are_two_literals() {
        assert_eq!(mysql_account("app", "%").unwrap(), "'app'@'%'");
        assert_eq!(mysql_account("a'b\\c", "%").unwrap(), "'a''b\\\\c'@'%'");
        assert_eq!(quote_ident_mysql("we`ird").unwrap(), "`we``ird`");
    }

    #[test]
    fn nul_bytes_are_refused_everywhere() {
        assert_eq!(quote_ident_pg("a\0b"), Err(NulByte));
        assert_eq!(quote_literal(Dialect::Mysql, "a\0b"), Err(NulByte));
        assert_eq!(quote_literal(Dialect::Postgres, "a\0b"), Err(NulByte));
        assert_eq!(mysql_account("a\0", "%"), Err(NulByte));
        assert_eq!(quote_ident_mysql("a\0"), Err(NulByte));
    }

    #[test]
    fn the_allowlist_refuses_hostile_names_with_clear_errors() {
        assert!(validate_ident("user", "app_1", 32).is_ok());
        assert!(validate_ident("user", "_x", 32).is_ok());
        for name in HOSTILE.iter().filter(|n| **n != "app") {
            let e = validate_ident("user", name, 63).expect_err(name);
            assert!(e.to_string().starts_with("user: "), "{e}");
        }
        assert!(validate_ident("user", "1app", 32).is_err());
        assert!(validate_ident("user", "a-b", 32).is_err());
        assert!(validate_ident("user", "a\0", 32).is_err());
        let long = "a".repeat(33);
        let e = validate_ident("clone_user", &long, 32).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("clone_user: {long:?} is 33 characters long; the server allows at most 32")
        );
        assert!(validate_ident("user", &"a".repeat(63), 63).is_ok());
        assert!(validate_ident("user", &"a".repeat(64), 63).is_err());
    }
}
