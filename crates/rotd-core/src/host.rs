//! Names on a managed Linux host (ECS secrets): login names and the path of a user's `authorized_keys`,
//! checked once here so the configuration checker and the SSH backend agree on what they accept.

/// A login name as the host's tools (useradd, chpasswd, sudo) take it: a letter or `_`, then letters,
/// digits, `_`, `.` or `-`, at most 32 characters.
pub fn is_login_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && s.len() <= 32
}

/// The `authorized_keys` path a template names for `user`: `%u` expanded, a leading `%h/` or `~/`
/// dropped (the home directory: a relative path means one inside it), otherwise relative or absolute
/// as written. Only letters, digits, `.`, `_`, `-` and `/` are accepted, no `..` and no trailing `/`, so
/// the path needs no care in a shell or in sshd's own expansion. The error says what is accepted.
pub fn authorized_keys_path(template: &str, user: &str) -> Result<String, String> {
    let mut p = template.replace("%u", user);
    for home in ["%h/", "~/"] {
        if let Some(rest) = p.strip_prefix(home) {
            p = rest.to_owned();
        }
    }
    let ok = !p.is_empty()
        && !p.ends_with('/')
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !p.split('/').any(|seg| seg == "..");
    if ok {
        Ok(p)
    } else {
        Err("must be a file path relative to the user's home directory (or absolute) of letters, digits, '.', '_', '-' and '/', with %u for the user".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert!(is_login_name("deploy") && is_login_name("_svc.a-1"));
        assert!(!is_login_name("1abc") && !is_login_name("a b") && !is_login_name(&"a".repeat(33)));
        assert!(!is_login_name("") && !is_login_name("a;id"));
    }

    #[test]
    fn authorized_keys_paths() {
        assert_eq!(
            authorized_keys_path(".ssh/authorized_keys", "u").as_deref(),
            Ok(".ssh/authorized_keys")
        );
        assert_eq!(
            authorized_keys_path("%h/.ssh/authorized_keys", "u").as_deref(),
            Ok(".ssh/authorized_keys")
        );
        assert_eq!(authorized_keys_path("~/.ssh/k", "u").as_deref(), Ok(".ssh/k"));
        assert_eq!(
            authorized_keys_path("/etc/ssh/keys/%u", "batch").as_deref(),
            Ok("/etc/ssh/keys/batch")
        );
        for bad in [
            "../x",
            ".ssh/../../etc/shadow",
            "a b",
            "$(id)",
            ".ssh/",
            "",
            "%h/",
        ] {
            assert!(authorized_keys_path(bad, "u").is_err(), "{bad}");
        }
    }
}
