//! Client-side password hashing, so the plaintext never reaches the server (and so never its statement
//! log, general log, binlog or `pg_stat_activity`): what the server stores is computed here and sent as a
//! literal in the DDL.
//!
//! Neither form is harmless: a SCRAM verifier or a `mysql_native_password` hash allows an offline guessing
//! attack, so both are kept in zeroizing buffers, never logged, and scrubbed from error messages.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use zeroize::Zeroizing;

/// The `mysql_native_password` hash: `*` followed by the upper-case hex of SHA1(SHA1(password)), the form
/// `IDENTIFIED BY PASSWORD '…'` (MariaDB) and `IDENTIFIED WITH mysql_native_password AS '…'` (MySQL) take.
/// SHA-1 is what that plugin is defined with; it comes from aws-lc-rs so the tree keeps one crypto stack.
pub(crate) fn mysql_native_hash(password: &[u8]) -> Zeroizing<String> {
    let stage1 = digest(&SHA1_FOR_LEGACY_USE_ONLY, password);
    let stage2 = digest(&SHA1_FOR_LEGACY_USE_ONLY, stage1.as_ref());
    let mut out = Zeroizing::new(String::with_capacity(41));
    out.push('*');
    for b in stage2.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A PostgreSQL SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`) with a fresh
/// random salt, computed exactly as libpq's `PQencryptPasswordConn` does (SASLprep included).
pub(crate) fn pg_scram_verifier(password: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(postgres_protocol::password::scram_sha_256(password))
}

/// Whether `text` is safe to put between single quotes without any escaping: hashes and verifiers are
/// hex or base64 plus `$ : * + / =`, and this is asserted before each is interpolated, as a second line of
/// defence behind the quoting function.
pub(crate) fn is_plain_hash_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$:*+/=-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_hash_matches_the_server_function() {
        // SELECT PASSWORD('password') on MariaDB / MySQL 5.7.
        assert_eq!(
            mysql_native_hash(b"password").as_str(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert!(is_plain_hash_text(&mysql_native_hash(b"it's \\ \"odd\"")));
    }

    #[test]
    fn scram_verifiers_have_the_server_format_and_a_fresh_salt() {
        let a = pg_scram_verifier(b"pw");
        let b = pg_scram_verifier(b"pw");
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{}", a.as_str());
        assert_ne!(a.as_str(), b.as_str(), "each verifier has its own salt");
        assert!(is_plain_hash_text(&a));
        assert!(!a.contains("pw$"));
    }
}
