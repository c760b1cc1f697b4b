//! The strict resource-policy parser and its evaluation (`rotd_api::kms::policy`).
//!
//! The input is a policy document (seeds: the documents the API tests use). Checked: nothing panics;
//! a document accepted for a configured account is accepted with none configured and says the same
//! there; an accepted document, re-serialized (through `serde_json::Value`, rotd has no serializer of its
//! own), is accepted again and gives the same verdict for every caller and action; a Deny verdict is
//! never overridden by an access key policy that allows everything; the same text read as an access key
//! policy never panics; `glob` matches every text against itself and against `*`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rotd_api::kms::policy::{Caller, ResourcePolicy, Verdict, allowed, glob, key_allows, key_allows_action};

const KEY_IDS: [&str; 4] = ["testid", "LTAI5tKey", "ak2", ""];
const ACTIONS: [&str; 9] = [
    "GetSecretValue",
    "BatchGetSecretValue",
    "DeleteSecret",
    "PutSecretValue",
    "SetSecretPolicy",
    "GetSecretPolicy",
    "getsecretvalue",
    "Get*",
    "",
];
const ACCOUNTS: [Option<&str>; 3] = [None, Some("1"), Some("1234567890123456")];
const ALLOW_ALL: &str = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else {
        return;
    };
    let verdicts = |p: &ResourcePolicy| -> Vec<Verdict> {
        KEY_IDS
            .iter()
            .flat_map(|k| ACTIONS.iter().map(move |a| p.verdict(k, a)))
            .collect()
    };
    let unconfigured = ResourcePolicy::parse(doc, None);
    for account in ACCOUNTS {
        let Ok(policy) = ResourcePolicy::parse(doc, account) else {
            continue;
        };
        let here = verdicts(&policy);
        let open = unconfigured
            .as_ref()
            .expect("accepted for an account but not without one");
        assert_eq!(
            here,
            verdicts(open),
            "the account changes what an accepted policy says"
        );

        let value: serde_json::Value = serde_json::from_str(doc).expect("an accepted policy is JSON");
        let again = ResourcePolicy::parse(&value.to_string(), account).expect("re-serialized policy refused");
        assert_eq!(here, verdicts(&again), "re-serialized policy says something else");

        for key_id in KEY_IDS {
            let caller = Caller {
                key_id,
                key_policy: ALLOW_ALL,
                account,
            };
            for action in ACTIONS {
                let verdict = policy.verdict(key_id, action);
                let decision = allowed(&caller, Some(doc), action, "app/db");
                match verdict {
                    Verdict::Deny => assert!(!decision, "a Deny was overridden"),
                    Verdict::Allow => assert!(decision),
                    Verdict::Silent => {
                        assert_eq!(decision, key_allows(ALLOW_ALL, action, Some("app/db")));
                    }
                }
            }
        }
    }
    if unconfigured.is_err() {
        // A stored document that does not parse denies everything, whatever the key policy says.
        let caller = Caller {
            key_id: "testid",
            key_policy: ALLOW_ALL,
            account: None,
        };
        assert!(!allowed(&caller, Some(doc), "GetSecretValue", "app/db"));
    }
    for action in ACTIONS {
        let _ = key_allows(doc, action, Some("app/db"));
        let _ = key_allows(doc, action, None);
        let _ = key_allows_action(doc, action);
    }
    let mut mid = doc.len() / 2;
    while !doc.is_char_boundary(mid) {
        mid -= 1;
    }
    let (pattern, text) = doc.split_at(mid);
    let _ = glob(pattern, text);
    assert!(glob("*", doc));
    if !doc.contains('*') {
        assert!(glob(doc, doc));
    }
});
