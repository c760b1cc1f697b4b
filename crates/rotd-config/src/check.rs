//! Small validators shared by the daemon file and the secret files. Each reports into a [`Diag`] and
//! returns `None` on failure so callers can keep checking the rest of the file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotd_core::RotationInterval;
use serde_spanned::Spanned;

use crate::error::Diag;

/// Parses one of a fixed set of words. The message lists the choices and does not echo the value.
pub(crate) fn choice<T: Copy>(
    d: &mut Diag<'_>,
    v: &Spanned<String>,
    key: &str,
    options: &[(&str, T)],
) -> Option<T> {
    if let Some((_, t)) = options.iter().find(|(s, _)| *s == v.get_ref()) {
        return Some(*t);
    }
    let names: Vec<&str> = options.iter().map(|(s, _)| *s).collect();
    d.at(v, key, format!("must be one of {}", names.join(", ")))
}

/// Like [`choice`] for an optional key with a default.
pub(crate) fn choice_or<T: Copy>(
    d: &mut Diag<'_>,
    v: Option<&Spanned<String>>,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> Option<T> {
    match v {
        Some(v) => choice(d, v, key, options),
        None => Some(default),
    }
}

/// A required key that is missing is reported on the table that should have held it.
pub(crate) fn required<'v, T>(
    d: &mut Diag<'_>,
    v: Option<&'v Spanned<T>>,
    table_span: std::ops::Range<usize>,
    key: &str,
) -> Option<&'v Spanned<T>> {
    if v.is_none() {
        d.error(table_span, key, "is required");
    }
    v
}

/// A relative path joined to `base`. Paths are not canonicalized: they may not exist yet.
pub(crate) fn path(d: &mut Diag<'_>, v: &Spanned<String>, key: &str, base: &Path) -> Option<PathBuf> {
    if v.get_ref().is_empty() {
        return d.at(v, key, "must not be empty");
    }
    Some(base.join(v.get_ref()))
}

pub(crate) fn socket_addr(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
    match v.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => d.at(
            v,
            key,
            "must be an ip address and port, e.g. 127.0.0.1:8443 or [::1]:8443",
        ),
    }
}

/// A host name or IP address to connect to. The port has its own key, so `host:port` is refused.
pub(crate) fn host(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    let h = v.get_ref();
    if h.is_empty() {
        return d.at(v, key, "must not be empty");
    }
    if h.parse::<IpAddr>().is_ok() {
        return Some(h.clone());
    }
    if h.contains(':') {
        return d.at(
            v,
            key,
            "must be a host name or ip address without a port; set port instead",
        );
    }
    if !is_dns_name(h) {
        return d.at(
            v,
            key,
            "is not a valid host name (letters, digits, '-' and '.' only)",
        );
    }
    Some(h.clone())
}

/// An RFC 1123 host name: dot-separated labels of 1–63 letters, digits and inner hyphens.
pub(crate) fn is_dns_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A `host:port` pair, with IPv6 addresses in brackets.
pub(crate) fn endpoint(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<(String, u16)> {
    let bad = "must be host:port, e.g. 10.0.0.5:6379 or [fd00::5]:6379";
    let Some((h, p)) = v.get_ref().rsplit_once(':') else {
        return d.at(v, key, bad);
    };
    let Ok(port) = p.parse::<u16>() else {
        return d.at(v, key, bad);
    };
    let host = match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip6) if ip6.parse::<std::net::Ipv6Addr>().is_ok() => ip6.to_owned(),
        Some(_) => return d.at(v, key, bad),
        None if h.parse::<IpAddr>().is_ok() || is_dns_name(h) => h.to_owned(),
        None => return d.at(v, key, bad),
    };
    Some((host, port))
}

/// The vendor's interval syntax (`30d`, `6h`, `90m`, `45s`).
pub(crate) fn interval(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<RotationInterval> {
    match v.get_ref().parse::<RotationInterval>() {
        Ok(i) => Some(i),
        Err(e) => d.at(v, key, e.reason),
    }
}

pub(crate) fn duration(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<Duration> {
    interval(d, v, key).map(|i| Duration::from_secs(i.as_secs()))
}

/// A duration no longer than `max`: the engine adds these to timestamps and multiplies them, so a
/// value beyond what it can use is refused here rather than clamped or overflowed there.
pub(crate) fn duration_at_most(
    d: &mut Diag<'_>,
    v: &Spanned<String>,
    key: &str,
    max: Duration,
) -> Option<Duration> {
    match duration(d, v, key)? {
        t if t > max => d.at(
            v,
            key,
            format!("must be at most {}", RotationInterval::from_secs(max.as_secs())),
        ),
        t => Some(t),
    }
}

/// A free-form identifier such as an instance id or region id: non-empty, no whitespace or control
/// characters, at most 128 characters.
pub(crate) fn ident(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    let s = v.get_ref();
    if s.is_empty() {
        return d.at(v, key, "must not be empty");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return d.at(v, key, "must not contain whitespace or control characters");
    }
    if s.chars().count() > 128 {
        return d.at(v, key, "is longer than 128 characters");
    }
    Some(s.clone())
}

/// A CMK id as the keyring names it.
pub(crate) fn cmk(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    let s = v.get_ref();
    if s.is_empty() || s.len() > 128 {
        return d.at(v, key, "must be 1 to 128 characters");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./:".contains(c))
    {
        return d.at(v, key, "may only contain letters, digits and _ - . / :");
    }
    Some(s.clone())
}

/// A database, Redis or login account name: `^[A-Za-z_][A-Za-z0-9_]*$`, which needs no quoting in
/// any dialect rotd speaks.
pub(crate) fn is_account_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn account_name(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    if !is_account_name(v.get_ref()) {
        return d.at(
            v,
            key,
            "must start with a letter or '_' and contain only letters, digits and '_'",
        );
    }
    Some(v.get_ref().clone())
}

/// A Unix login name as `useradd` accepts it by default, at most 32 characters.
pub(crate) fn login_name(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    let s = v.get_ref();
    if !rotd_core::is_login_name(s) {
        return d.at(
            v,
            key,
            "must be a login name: a letter or '_' followed by letters, digits, '_', '.' or '-', at most 32 characters",
        );
    }
    Some(s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_and_accounts() {
        assert!(is_dns_name("db.internal.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("-bad.example"));
        assert!(!is_dns_name("under_score"));
        assert!(!is_dns_name(""));
        assert!(is_account_name("app_1"));
        assert!(is_account_name("_x"));
        assert!(!is_account_name("1app"));
        assert!(!is_account_name("app-1"));
        assert!(!is_account_name(""));
    }
}
