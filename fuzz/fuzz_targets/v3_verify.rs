//! The ACS3-HMAC-SHA256 verifier (`rotd_aliyun::v3`) on arbitrary requests.
//!
//! Wire mode: a request as received (seeds: the official Python SDK's requests), verified against the
//! fixed keys. Structured mode: a request built by `arbitrary`, signed with one of the fixed keys by
//! `v3::sign_request`, optionally tampered with, then verified.
//!
//! Checked: nothing panics; verification is deterministic and `authenticate` agrees with it; an accepted
//! request names a known key; a request rotd signed itself is never refused as `SignatureMismatch`
//! (signer and verifier agree on the canonical form); and a tamper with something the signature covers
//! (method, path, a query value, a parameter, the body, a signed header, the key) is always refused, while
//! adding an unsigned, non-`x-acs-` header changes nothing.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotd_aliyun::{RequestParts, Scheme, SignatureError, Verified, percent, v3};
use rotd_fuzz::{KEYS, date, key, lookup, parse_wire, sdk_trim};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        wire(rest);
    } else if let Ok(input) = Structured::arbitrary_take_rest(Unstructured::new(rest)) {
        structured(input);
    }
});

fn wire(data: &[u8]) {
    let Some(w) = parse_wire(data) else { return };
    let Ok(query) = percent::parse_query(w.raw_query) else {
        return;
    };
    let Some(headers) = w.text_headers() else {
        return;
    };
    let _ = check(&RequestParts {
        method: w.method,
        path: w.path,
        query: &query,
        headers: &headers,
        body: w.body,
    });
}

/// Verifies twice and through `authenticate`; the answers must agree.
fn check(request: &RequestParts<'_>) -> Result<Verified, SignatureError> {
    let first = v3::verify_v3(request, lookup);
    assert_eq!(
        first,
        v3::verify_v3(request, lookup),
        "verification is not deterministic"
    );
    if let Ok(verified) = &first {
        assert_eq!(verified.scheme, Scheme::V3);
        assert!(KEYS.iter().any(|(id, _)| *id == verified.access_key_id));
        // At the signed date the skew check passes, so `authenticate` must give the same answer.
        let again = rotd_aliyun::authenticate(request, &[], verified.date, lookup);
        assert_eq!(
            again.as_ref(),
            Ok(verified),
            "authenticate disagrees with verify_v3"
        );
    }
    first
}

#[derive(Arbitrary, Debug)]
enum Method {
    Post,
    Get,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Nonce {
    Hex(u128),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Method(String),
    Path(String),
    QueryValue(u8, String),
    AddQuery(String, String),
    Body(Vec<u8>),
    HeaderValue(u8, String),
    DropHeader(u8),
    AddHeader(String, String),
    Authorization(String),
    SwapKey(u8),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    key: u8,
    date: u32,
    nonce: Nonce,
    tamper: Option<Tamper>,
}

fn structured(input: Structured) {
    let key = key(input.key);
    let method = match &input.method {
        Method::Post => "POST",
        Method::Get => "GET",
        Method::Other(m) => m.as_str(),
    };
    let nonce = match &input.nonce {
        Nonce::Hex(n) => format!("{n:032x}"),
        Nonce::Other(s) => s.clone(),
    };
    let request = RequestParts {
        method,
        path: &input.path,
        query: &input.query,
        headers: &input.headers,
        body: &input.body,
    };
    let mut headers = input.headers.clone();
    headers.retain(|(n, _)| {
        ![
            "authorization",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ]
        .iter()
        .any(|r| n.eq_ignore_ascii_case(r))
    });
    headers.extend(v3::sign_request(&key, &request, date(input.date), &nonce));
    let signed = RequestParts {
        headers: &headers,
        ..request
    };
    let base = check(&signed);
    assert_ne!(
        base,
        Err(SignatureError::SignatureMismatch),
        "a request signed by sign_request does not verify"
    );
    let Some(tamper) = input.tamper else { return };

    let auth_index = headers
        .iter()
        .position(|(n, _)| n == "Authorization")
        .expect("sign_request adds Authorization");
    // Headers other than Authorization, which the tampers pick by index.
    let others: Vec<usize> = (0..headers.len()).filter(|&i| i != auth_index).collect();
    let pick = |i: u8| others[usize::from(i) % others.len()];
    let mut query = input.query.clone();
    let mut tampered_headers = headers.clone();
    let mut tampered = signed;
    // Whether the change must be refused (given that the original was accepted): `Some(true)` refused,
    // `Some(false)` same answer as the original, `None` no claim.
    let expect: Option<bool>;
    match &tamper {
        Tamper::Method(m) => {
            tampered.method = m.as_str();
            expect = Some(m != method);
        }
        Tamper::Path(p) => {
            tampered.path = p.as_str();
            let norm = |p: &str| {
                if p.is_empty() {
                    "/".to_owned()
                } else {
                    p.to_owned()
                }
            };
            expect = Some(norm(p) != norm(&input.path));
        }
        Tamper::QueryValue(i, v) => {
            if query.is_empty() {
                return;
            }
            let i = usize::from(*i) % query.len();
            expect = Some(query[i].1 != *v);
            query[i].1 = v.clone();
        }
        Tamper::AddQuery(n, v) => {
            query.push((n.clone(), v.clone()));
            expect = Some(true);
        }
        Tamper::Body(b) => {
            tampered.body = b.as_slice();
            expect = Some(*b != input.body);
        }
        Tamper::HeaderValue(i, v) => {
            let i = pick(*i);
            let name = tampered_headers[i].0.clone();
            let unique = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
                .count()
                == 1;
            expect = unique.then(|| sdk_trim(&tampered_headers[i].1) != sdk_trim(v));
            tampered_headers[i].1 = v.clone();
        }
        Tamper::DropHeader(i) => {
            tampered_headers.remove(pick(*i));
            expect = Some(true);
        }
        Tamper::AddHeader(n, v) => {
            let signed_or_acs = headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n))
                || n.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("x-acs-"));
            expect = if signed_or_acs {
                Some(true)
            } else if n.eq_ignore_ascii_case("authorization") {
                Some(true)
            } else {
                Some(false)
            };
            tampered_headers.push((n.clone(), v.clone()));
        }
        Tamper::Authorization(a) => {
            tampered_headers[auth_index].1 = a.clone();
            expect = None;
        }
        Tamper::SwapKey(k) => {
            let other = rotd_fuzz::key(*k);
            let old = format!("Credential={},", key.id());
            let new = format!("Credential={},", other.id());
            tampered_headers[auth_index].1 = tampered_headers[auth_index].1.replacen(&old, &new, 1);
            expect = Some(other.id() != key.id());
        }
    }
    tampered.query = &query;
    tampered.headers = &tampered_headers;
    let result = check(&tampered);
    if base.is_ok() {
        match expect {
            Some(true) => assert!(result.is_err(), "tamper {tamper:?} was accepted"),
            Some(false) => assert_eq!(result, base, "tamper {tamper:?} changed the answer"),
            None => {}
        }
    }
}
