//! Authorization: the access key's own policy and the secret's resource policy, evaluated together.
//!
//! An access key policy is `{"Actions":["kms:GetSecretValue","kms:*"],"Secrets":["app/*","*"]}`: a request is
//! allowed by it when one action pattern and one secret pattern match (`*` matches any run of characters).
//!
//! A resource policy is the vendor's document, in a strict grammar: everything rotd does not evaluate is
//! refused, never dropped, so a statement can never mean less (a Deny) or more (an Allow) than it says.
//!
//! ```text
//! {"Version":"1",                          required, exactly "1"
//!  "Statement":[{                          required, may be empty
//!     "Sid":"...",                         optional, 1-128 characters of A-Za-z0-9_/+=.@-
//!     "Effect":"Allow"|"Deny",             required, exactly one of these two
//!     "Principal":{"RAM":[...]},           required; RAM is a string or a non-empty list of:
//!                                            "*"                    every access key
//!                                            "<access key id>"      1-128 ASCII letters and digits
//!                                            "acs:ram::<account>:*" every access key of this daemon's
//!                                                                   account (any 1-20 digits when none
//!                                                                   is configured)
//!     "Action":["kms:<Action>",...],       required; a string or a non-empty list; each starts with
//!                                          kms: and may use * wildcards (kms:*, kms:Get*)
//!     "Resource":["*"]}]}                  optional; if present "*" or a list of only "*"
//! ```
//!
//! Any other member (`Condition`, `NotAction`, `NotPrincipal`, `NotResource`, ...) anywhere, another
//! principal form (a RAM user or role, another account, a service), another Effect, or a duplicate member
//! makes the document invalid: SetSecretPolicy and CreateSecret refuse it with `InvalidParameter`.
//!
//! A request is allowed when either policy allows it and no statement denies it: deny wins. A policy that
//! cannot be parsed allows nothing: a corrupt access key policy grants nothing, and a stored resource
//! policy that no longer parses (written before this grammar, or for another account) denies every action
//! on its secret and logs the secret's name (not the document).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPolicy {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

/// A resource policy document as written, before the checks serde cannot express.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawDocument {
    version: String,
    statement: Vec<RawStatement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawStatement {
    #[serde(default)]
    sid: Option<String>,
    effect: Effect,
    principal: RawPrincipal,
    action: OneOrMany,
    #[serde(default)]
    resource: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    #[serde(rename = "RAM")]
    ram: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Effect {
    Allow,
    Deny,
}

/// Who a statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// `*`, or `acs:ram::<this account>:*`: every access key (all of them belong to this daemon's account).
    Everyone,
    /// One access key, by id.
    Key(String),
}

#[derive(Debug)]
struct Statement {
    effect: Effect,
    principals: Vec<Principal>,
    /// Action patterns with `*` wildcards, `kms:` prefix included, lowercased.
    actions: Vec<String>,
}

/// A resource policy in the grammar above, checked.
#[derive(Debug)]
pub struct ResourcePolicy {
    statements: Vec<Statement>,
}

const MAX_SID_CHARS: usize = 128;
const MAX_KEY_ID_CHARS: usize = 128;
const MAX_ACCOUNT_DIGITS: usize = 20;

impl ResourcePolicy {
    /// Parses `doc` strictly. `account` is the daemon's configured account (`None`: none configured). The
    /// error names what is wrong (a member, a form), never the document's values.
    pub fn parse(doc: &str, account: Option<&str>) -> Result<Self, String> {
        let raw: RawDocument = serde_json::from_str(doc).map_err(|e| {
            let why = e.to_string();
            // serde names the type of an untagged enum; say what it means instead.
            let why = if why.contains("OneOrMany") {
                "Action, Principal.RAM and Resource must each be a string or a list of strings".to_owned()
            } else {
                why
            };
            format!("Policy is not a policy document rotd supports ({why})")
        })?;
        if raw.version != "1" {
            return Err("Policy Version must be \"1\"".to_owned());
        }
        let statements = raw
            .statement
            .into_iter()
            .enumerate()
            .map(|(i, st)| Statement::check(st, account).map_err(|e| format!("Policy Statement {i}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// What this policy says about `key_id` doing `action`.
    pub fn verdict(&self, key_id: &str, action: &str) -> Verdict {
        let action = format!("kms:{}", action.to_ascii_lowercase());
        let mut verdict = Verdict::Silent;
        for st in &self.statements {
            let principal = st.principals.iter().any(|p| match p {
                Principal::Everyone => true,
                Principal::Key(k) => k == key_id,
            });
            if !principal || !st.actions.iter().any(|a| glob(a, &action)) {
                continue;
            }
            match st.effect {
                Effect::Deny => return Verdict::Deny,
                Effect::Allow => verdict = Verdict::Allow,
            }
        }
        verdict
    }
}

impl Statement {
    fn check(raw: RawStatement, account: Option<&str>) -> Result<Self, String> {
        if let Some(sid) = &raw.sid {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || "_/+=.@-".contains(c);
            if sid.is_empty() || sid.chars().count() > MAX_SID_CHARS || !sid.chars().all(ok_char) {
                return Err(format!(
                    "Sid must be 1 to {MAX_SID_CHARS} characters of A-Za-z0-9_/+=.@-"
                ));
            }
        }
        let principals = raw.principal.ram.into_vec();
        if principals.is_empty() {
            return Err("Principal RAM must name at least one principal".to_owned());
        }
        let principals = principals
            .iter()
            .map(|p| principal(p, account))
            .collect::<Result<Vec<_>, _>>()?;
        let actions = raw.action.into_vec();
        if actions.is_empty() {
            return Err("Action must name at least one action".to_owned());
        }
        let actions = actions
            .iter()
            .map(|a| {
                let lower = a.to_ascii_lowercase();
                let rest = lower.strip_prefix("kms:").unwrap_or("");
                if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*') {
                    return Err(
                        "each Action must be kms: followed by an action name, * wildcards allowed".to_owned(),
                    );
                }
                Ok(lower)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(resource) = raw.resource {
            let resource = resource.into_vec();
            if resource.is_empty() || resource.iter().any(|r| r != "*") {
                return Err("Resource must be \"*\" (the secret the policy is attached to)".to_owned());
            }
        }
        Ok(Self {
            effect: raw.effect,
            principals,
            actions,
        })
    }
}

/// One `Principal.RAM` entry, in a form rotd can match.
fn principal(p: &str, account: Option<&str>) -> Result<Principal, String> {
    if p == "*" {
        return Ok(Principal::Everyone);
    }
    if let Some(rest) = p.strip_prefix("acs:ram::") {
        let digits = rest.strip_suffix(":*").unwrap_or("");
        let well_formed = !digits.is_empty()
            && digits.len() <= MAX_ACCOUNT_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(
                "a RAM principal must be acs:ram::<account>:* (RAM users and roles do not exist in rotd)"
                    .to_owned(),
            );
        }
        if account.is_some_and(|a| a != digits) {
            return Err("a RAM principal names another account".to_owned());
        }
        return Ok(Principal::Everyone);
    }
    if !p.is_empty() && p.len() <= MAX_KEY_ID_CHARS && p.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(Principal::Key(p.to_owned()));
    }
    Err("each principal must be *, an access key id or acs:ram::<account>:*".to_owned())
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

/// Who is asking, for [`allowed`].
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub key_id: &'a str,
    pub key_policy: &'a str,
    /// The daemon's configured account (`None`: none configured), which `acs:ram::<account>:*` must name.
    pub account: Option<&'a str>,
}

/// What the stored resource policy of `secret` says; one that no longer parses denies (and is logged
/// by the secret's name only: the document may be what an operator wants to keep private).
pub fn resource_verdict(policy: Option<&str>, caller: &Caller<'_>, action: &str, secret: &str) -> Verdict {
    let Some(doc) = policy else {
        return Verdict::Silent;
    };
    match ResourcePolicy::parse(doc, caller.account) {
        Ok(p) => p.verdict(caller.key_id, action),
        Err(_) => {
            tracing::warn!(secret = %secret,
                "Stored resource policy does not parse under rotd's policy grammar; denying every action on the secret. Replace it with SetSecretPolicy.");
            Verdict::Deny
        }
    }
}

/// The decision for one action on one secret: either policy may allow, and any deny wins.
pub fn allowed(caller: &Caller<'_>, resource_policy: Option<&str>, action: &str, secret: &str) -> bool {
    match resource_verdict(resource_policy, caller, action, secret) {
        Verdict::Deny => false,
        Verdict::Allow => true,
        Verdict::Silent => key_allows(caller.key_policy, action, Some(secret)),
    }
}

/// Checks that a resource policy document is one this module can evaluate; the error is the client's
/// message.
pub fn validate_resource_policy(doc: &str, account: Option<&str>) -> Result<(), String> {
    ResourcePolicy::parse(doc, account).map(|_| ())
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

    const ALL: &str = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;

    fn caller<'a>(key_id: &'a str, key_policy: &'a str) -> Caller<'a> {
        Caller {
            key_id,
            key_policy,
            account: None,
        }
    }

    #[test]
    fn deny_wins() {
        let deny = r#"{"Version":"1","Statement":[{"Effect":"Deny","Principal":{"RAM":["AK1"]},"Action":["kms:GetSecretValue"],"Resource":["*"]}]}"#;
        assert!(!allowed(&caller("AK1", ALL), Some(deny), "GetSecretValue", "s"));
        assert!(allowed(&caller("AK2", ALL), Some(deny), "GetSecretValue", "s"));
        let allow = r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"],"Resource":["*"]}]}"#;
        assert!(allowed(&caller("AK3", "{}"), Some(allow), "GetSecretValue", "s"));
        assert!(!allowed(
            &caller("AK1", ALL),
            Some("garbage"),
            "GetSecretValue",
            "s"
        ));
    }

    fn statement(body: &str) -> String {
        format!(r#"{{"Version":"1","Statement":[{{{body}}}]}}"#)
    }

    #[test]
    fn the_grammar_accepts_what_rotd_evaluates() {
        for ok in [
            r#"{"Version":"1","Statement":[]}"#.to_owned(),
            statement(r#""Effect":"Allow","Principal":{"RAM":"*"},"Action":"kms:*""#),
            statement(
                r#""Sid":"a-b_c/d+e=f.g@h","Effect":"Deny","Principal":{"RAM":["LTAIabc","*"]},"Action":["kms:Get*","kms:DeleteSecret"],"Resource":"*""#,
            ),
            // The vendor's own example form: every principal of the account.
            statement(
                r#""Effect":"Allow","Principal":{"RAM":["acs:ram::123456789012:*"]},"Action":["kms:*"],"Resource":["*"]"#,
            ),
        ] {
            assert!(validate_resource_policy(&ok, None).is_ok(), "{ok}");
        }
        let vendor =
            statement(r#""Effect":"Allow","Principal":{"RAM":["acs:ram::42:*"]},"Action":["kms:*"]"#);
        assert!(validate_resource_policy(&vendor, Some("42")).is_ok());
        assert!(validate_resource_policy(&vendor, Some("43")).is_err());
    }

    #[test]
    fn the_grammar_refuses_what_rotd_would_not_evaluate() {
        let base = r#""Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"]"#;
        for (bad, says) in [
            (
                statement(&format!(
                    r#"{base},"Condition":{{"IpAddress":{{"acs:SourceIp":"10.0.0.0/8"}}}}"#
                )),
                "Condition",
            ),
            (
                statement(&format!(r#"{base},"NotAction":["kms:DeleteSecret"]"#)),
                "NotAction",
            ),
            (
                statement(r#""Effect":"Deny","NotPrincipal":{"RAM":["AK1"]},"Action":["kms:*"]"#),
                "NotPrincipal",
            ),
            (
                statement(&format!(r#"{base},"NotResource":["*"]"#)),
                "NotResource",
            ),
            (
                statement(&format!(r#"{base},"Resource":["acs:kms:*:*:secret/other"]"#)),
                "Resource",
            ),
            (statement(&format!(r#"{base},"Resource":[]"#)), "Resource"),
            (
                statement(r#""Effect":"allow","Principal":{"RAM":["*"]},"Action":["kms:*"]"#),
                "variant",
            ),
            (
                statement(r#""Effect":"Audit","Principal":{"RAM":["*"]},"Action":["kms:*"]"#),
                "variant",
            ),
            (
                statement(r#""Principal":{"RAM":["*"]},"Action":["kms:*"]"#),
                "Effect",
            ),
            (statement(r#""Effect":"Allow","Action":["kms:*"]"#), "Principal"),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":["*"]}"#),
                "Action",
            ),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":[]},"Action":["kms:*"]"#),
                "at least one",
            ),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":["*"]},"Action":[]"#),
                "at least one",
            ),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":["*"]},"Action":["GetSecretValue"]"#),
                "kms:",
            ),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:"]"#),
                "kms:",
            ),
            (
                statement(
                    r#""Effect":"Allow","Principal":{"Service":["ecs.aliyuncs.com"]},"Action":["kms:*"]"#,
                ),
                "Service",
            ),
            (
                statement(r#""Effect":"Allow","Principal":"*","Action":["kms:*"]"#),
                "Principal",
            ),
            (
                statement(
                    r#""Effect":"Allow","Principal":{"RAM":["acs:ram::1:user/alice"]},"Action":["kms:*"]"#,
                ),
                "RAM users",
            ),
            (
                statement(
                    r#""Effect":"Allow","Principal":{"RAM":["acs:ram::1:role/app"]},"Action":["kms:*"]"#,
                ),
                "RAM users",
            ),
            (
                statement(r#""Effect":"Allow","Principal":{"RAM":["LTAI key"]},"Action":["kms:*"]"#),
                "principal",
            ),
            (statement(&format!(r#"{base},"Sid":"has space""#)), "Sid"),
            (
                statement(&format!(r#"{base},"Sid":"{}""#, "s".repeat(129))),
                "Sid",
            ),
            (statement(&format!(r#"{base},"Effect":"Deny""#)), "duplicate"),
            (r#"{"Statement":[]}"#.to_owned(), "Version"),
            (r#"{"Version":"2","Statement":[]}"#.to_owned(), "Version"),
            (r#"{"Version":"1"}"#.to_owned(), "Statement"),
            (r#"{"Version":"1","Statement":[],"Id":"x"}"#.to_owned(), "Id"),
            ("not json".to_owned(), "policy document"),
        ] {
            let err = validate_resource_policy(&bad, None).expect_err(&bad);
            assert!(err.contains(says), "{bad}: {err}");
            // Stored, such a document denies everything, even to a key that may do everything.
            assert!(
                !allowed(&caller("AK1", ALL), Some(&bad), "GetSecretValue", "s"),
                "{bad}"
            );
        }
    }

    #[test]
    fn principals_match_keys_and_the_account() {
        let p = |ram: &str| {
            statement(&format!(
                r#""Effect":"Allow","Principal":{{"RAM":{ram}}},"Action":"kms:GetSecretValue""#
            ))
        };
        let one = p(r#"["AK1"]"#);
        assert!(allowed(&caller("AK1", "{}"), Some(&one), "GetSecretValue", "s"));
        assert!(!allowed(&caller("AK2", "{}"), Some(&one), "GetSecretValue", "s"));
        assert!(!allowed(&caller("AK1", "{}"), Some(&one), "DeleteSecret", "s"));
        let account = p(r#""acs:ram::1234:*""#);
        assert!(allowed(
            &caller("AK2", "{}"),
            Some(&account),
            "GetSecretValue",
            "s"
        ));
        let configured = Caller {
            account: Some("99"),
            ..caller("AK2", ALL)
        };
        assert!(!allowed(&configured, Some(&account), "GetSecretValue", "s"));
    }
}
