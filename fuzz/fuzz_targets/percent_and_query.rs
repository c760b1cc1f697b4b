//! Percent decoding and query/form parsing (`rotd_aliyun::percent`) and the API's decoding of a request
//! into parameters, action and target secrets (`rotd_api::kms::fuzzing::decode_and_resolve`).
//!
//! Wire mode: a request as received (seeds: the SDK requests of the verifier targets). Raw mode: the
//! rest of the input as one query string / form body / component.
//!
//! Checked: nothing panics; error offsets lie inside the input; whatever parses re-encodes with the
//! signing encoder and parses back to the same pairs; `encode` writes only unreserved characters and
//! upper-case escapes and `needs_encoding` says exactly when it changes its input; `find_duplicate` finds
//! a repeated name exactly when there is one; the API's decoding is deterministic, names only secrets
//! that are valid names, and under V1 never runs an action other than the signed `Action` parameter.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use rotd_aliyun::Scheme;
use rotd_aliyun::percent::{self, DecodeError};
use rotd_api::kms::ApiConfig;
use rotd_api::kms::fuzzing::decode_and_resolve;
use rotd_fuzz::parse_wire;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Some(w) = parse_wire(rest) {
            pipeline(&w);
            decoding(w.raw_query.as_bytes());
            decoding(w.body);
        }
    } else {
        decoding(rest);
    }
});

fn offset(e: DecodeError) -> usize {
    match e {
        DecodeError::InvalidEscape { offset } | DecodeError::InvalidUtf8 { offset } => offset,
    }
}

fn decoding(input: &[u8]) {
    let form = percent::parse_form(input);
    if let Ok(text) = std::str::from_utf8(input) {
        let query = percent::parse_query(text);
        assert_eq!(query, form, "parse_query and parse_form disagree");
        let component = percent::decode_component(text);
        match component {
            Ok(decoded) => {
                assert_eq!(
                    percent::decode_component(&percent::encode(&decoded)).as_ref(),
                    Ok(&decoded)
                );
            }
            Err(e) => assert!(offset(e) < text.len().max(1), "{e:?} outside the input"),
        }
        let encoded = percent::encode(text);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
            "encode left a reserved byte"
        );
        for escape in encoded.split('%').skip(1) {
            let hex = escape.get(..2).expect("an escape has two digits");
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{hex}"
            );
        }
        assert_eq!(percent::needs_encoding(text), encoded != text);
        let mut into = String::from("x=");
        percent::encode_into(&mut into, text);
        assert_eq!(into[2..], encoded);
    }
    match form {
        Ok(pairs) => {
            let wire: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{}={}", percent::encode(n), percent::encode(v)))
                .collect();
            assert_eq!(
                percent::parse_query(&wire.join("&")).as_ref(),
                Ok(&pairs),
                "re-encoded pairs parse differently"
            );
            let mut seen = HashSet::new();
            let has_duplicate = !pairs.iter().all(|(n, _)| seen.insert(n.as_str()));
            assert_eq!(percent::find_duplicate(&pairs).is_some(), has_duplicate);
            if let Some(name) = percent::find_duplicate(&pairs) {
                assert!(pairs.iter().filter(|(n, _)| n == name).count() > 1);
            }
        }
        Err(e) => assert!(offset(e) < input.len().max(1), "{e:?} outside the input"),
    }
}

fn pipeline(w: &rotd_fuzz::Wire<'_>) {
    let configs = [
        ApiConfig::default(),
        ApiConfig {
            account: Some("1234567890123456".to_owned()),
            ..ApiConfig::default()
        },
    ];
    for config in &configs {
        for scheme in [Scheme::V3, Scheme::V1] {
            let first = decode_and_resolve(config, w.raw_query, &w.headers, w.body, scheme);
            let second = decode_and_resolve(config, w.raw_query, &w.headers, w.body, scheme);
            match (&first, &second) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "decoding is not deterministic"),
                (Err(a), Err(b)) => assert_eq!(a.parts(), b.parts(), "decoding is not deterministic"),
                _ => panic!("decoding is not deterministic"),
            }
            if let Ok(resolved) = &first {
                for name in &resolved.secret_names {
                    assert!(
                        rotd_core::SecretName::parse(name).is_ok(),
                        "resolved an invalid name"
                    );
                }
                if scheme == Scheme::V1 && resolved.action.is_some() {
                    assert!(
                        resolved.param_names.iter().any(|n| n == "Action"),
                        "V1 action from a header"
                    );
                }
            }
        }
    }
}
