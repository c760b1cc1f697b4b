//! Authorization: the access key's own policy and the secret's resource policy, evaluated together.
//!
//! An access key policy is `{"Actions":["kms:GetSecretValue","kms:*"],"Secrets":["app/*","*"]}`: a request is
//! allowed by it when one action pattern and one secret pattern match (`*` matches any run of characters).
//! A resource policy is the vendor's document `{"Version":"1","Statement":[{"Effect":"Allow|Deny",
//! "Principal":{"RAM":[...]},"Action":["kms:*"],"Resource":["*"]}]}`; principals are access key ids or `*`.
//! A request is allowed when either policy allows it and no statement denies it: deny wins. A policy that
//! cannot be parsed allows nothing, so a corrupt policy fails closed.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPolicy {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourcePolicy {
    #[serde(default)]
    statement: Vec<Statement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Statement {
    effect: String,
    #[serde(default)]
    principal: Option<Principal>,
    #[serde(default)]
    action: OneOrMany,
}

#[derive(Debug, Deserialize)]
struct Principal {
    #[serde(rename = "RAM", default)]
    ram: OneOrMany,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let v: Vec<&str> = match self {
            Self::None => Vec::new(),
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        };
        v.into_iter()
    }
}

/// Whether `pattern` (with `*` wildcards) matches `text`; action patterns are compared case-insensitively.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn action_matches(pattern: &str, action: &str) -> bool {
    glob(
        &pattern.to_ascii_lowercase(),
        &format!("kms:{}", action.to_ascii_lowercase()),
    )
}

/// Whether the access key policy allows `action`, and (when the action concerns one) the secret `secret`.
pub fn key_allows(policy: &str, action: &str, secret: Option<&str>) -> bool {
    let Ok(p) = serde_json::from_str::<KeyPolicy>(policy) else {
        return false;
    };
    p.actions.iter().any(|a| action_matches(a, action))
        && secret.is_none_or(|s| p.secrets.iter().any(|pat| glob(pat, s)))
}

/// Whether the access key policy allows `action` on at least some secrets (used before listing).
pub fn key_allows_action(policy: &str, action: &str) -> bool {
    serde_json::from_str::<KeyPolicy>(policy)
        .is_ok_and(|p| p.actions.iter().any(|a| action_matches(a, action)))
}

/// What a secret's resource policy says about this principal and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Silent,
}

pub fn resource_verdict(policy: Option<&str>, key_id: &str, action: &str) -> Verdict {
    let Some(doc) = policy else {
        return Verdict::Silent;
    };
    let Ok(p) = serde_json::from_str::<ResourcePolicy>(doc) else {
        return Verdict::Deny;
    };
    let mut verdict = Verdict::Silent;
    for st in &p.statement {
        let principal = st
            .principal
            .as_ref()
            .is_some_and(|pr| pr.ram.iter().any(|r| r == "*" || r == key_id));
        if !principal || !st.action.iter().any(|a| action_matches(a, action)) {
            continue;
        }
        if st.effect.eq_ignore_ascii_case("deny") {
            return Verdict::Deny;
        }
        if st.effect.eq_ignore_ascii_case("allow") {
            verdict = Verdict::Allow;
        }
    }
    verdict
}

/// The decision for one action on one secret: either policy may allow, and any deny wins.
pub fn allowed(
    key_policy: &str,
    resource_policy: Option<&str>,
    key_id: &str,
    action: &str,
    secret: &str,
) -> bool {
    match resource_verdict(resource_policy, key_id, action) {
        Verdict::Deny => false,
        Verdict::Allow => true,
        Verdict::Silent => key_allows(key_policy, action, Some(secret)),
    }
}

/// Checks that a resource policy document is one this module can evaluate.
pub fn validate_resource_policy(doc: &str) -> Result<(), String> {
    serde_json::from_str::<ResourcePolicy>(doc)
        .map(|_| ())
        .map_err(|e| format!("Policy is not a valid policy document ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("app/*", "app/db"));
        assert!(!glob("app/*", "other/db"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("", ""));
    }

    #[test]
    fn key_policies() {
        let p = r#"{"Actions":["kms:GetSecretValue"],"Secrets":["app/*"]}"#;
        assert!(key_allows(p, "GetSecretValue", Some("app/x")));
        assert!(!key_allows(p, "GetSecretValue", Some("db/x")));
        assert!(!key_allows(p, "PutSecretValue", Some("app/x")));
        assert!(key_allows(
            r#"{"Actions":["kms:*"],"Secrets":["*"]}"#,
            "DeleteSecret",
            Some("x")
        ));
        assert!(!key_allows("not json", "GetSecretValue", Some("x")));
    }

    #[test]
    fn deny_wins() {
        let all = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;
        let deny = r#"{"Version":"1","Statement":[{"Effect":"Deny","Principal":{"RAM":["AK1"]},"Action":["kms:GetSecretValue"],"Resource":["*"]}]}"#;
        assert!(!allowed(all, Some(deny), "AK1", "GetSecretValue", "s"));
        assert!(allowed(all, Some(deny), "AK2", "GetSecretValue", "s"));
        let allow = r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"],"Resource":["*"]}]}"#;
        assert!(allowed("{}", Some(allow), "AK3", "GetSecretValue", "s"));
        assert!(!allowed(all, Some("garbage"), "AK1", "GetSecretValue", "s"));
    }
}
