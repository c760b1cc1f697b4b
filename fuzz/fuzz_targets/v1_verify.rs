//! The V1 (HMAC-SHA1) verifier (`rotd_aliyun::v1`) on arbitrary requests.
//!
//! Wire mode: a request as received (seeds: the official Python SDK's V1 requests), its query and form
//! body decoded as the API decodes them, verified against the fixed keys. Structured mode: parameters
//! built by `arbitrary`, signed with one of the fixed keys by `v1::sign_v1`, spread over query and body,
//! put on the wire with the SDK's encoding and decoded back, optionally tampered with, then verified.
//!
//! Checked: nothing panics; verification is deterministic and `authenticate` (query and body apart)
//! agrees with `verify_v1` (parameters merged); an accepted request names a known key; a request rotd
//! signed itself is never refused as `SignatureMismatch`; changing, adding (with a value) or dropping a
//! signed parameter, the method, the signature or the key is always refused; moving a parameter between
//! query and body changes nothing (V1 signs them merged). Adding an *empty* parameter is not claimed to
//! be refused: verify_v1 documents that it accepts the Java SDK's form, which leaves empty values out.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotd_aliyun::{RequestParts, Scheme, SignatureError, Verified, percent, v1};
use rotd_fuzz::{KEYS, date, key, lookup, parse_wire};

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
    let Ok(body) = percent::parse_form(w.body) else {
        return;
    };
    let Some(headers) = w.text_headers() else {
        return;
    };
    let _ = check(w.method, &query, &body, &headers);
}

/// Verifies the merged parameters twice with `verify_v1` and the request through `authenticate`; the
/// answers must agree.
fn check(
    method: &str,
    query: &[(String, String)],
    body: &[(String, String)],
    headers: &[(String, String)],
) -> Result<Verified, SignatureError> {
    let mut all = query.to_vec();
    all.extend_from_slice(body);
    let first = v1::verify_v1(method, &all, lookup);
    assert_eq!(
        first,
        v1::verify_v1(method, &all, lookup),
        "verification is not deterministic"
    );
    if let Ok(verified) = &first {
        assert_eq!(verified.scheme, Scheme::V1);
        assert!(KEYS.iter().any(|(id, _)| *id == verified.access_key_id));
        let routed_to_v1 = !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            && query.iter().any(|(n, _)| n == "Signature");
        if routed_to_v1 {
            let request = RequestParts {
                method,
                path: "/",
                query,
                headers,
                body: b"",
            };
            let again = rotd_aliyun::authenticate(&request, body, verified.date, lookup);
            assert_eq!(
                again.as_ref(),
                Ok(verified),
                "authenticate disagrees with verify_v1"
            );
        }
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
    Value(u8, String),
    Add(String, String),
    Drop(u8),
    MoveToBody(u8),
    Signature(String),
    SwapKey(u8),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    method: Method,
    /// The request's own parameters, each with whether it travels in the form body.
    params: Vec<(String, String, bool)>,
    key: u8,
    date: u32,
    nonce: Nonce,
    tamper: Option<Tamper>,
}

/// The parameters `sign_v1` adds; an honest client does not send them itself.
const SIGNATURE_PARAMS: [&str; 6] = [
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
];

/// `pairs` put on the wire with the SDK's encoding and decoded as the server decodes them.
fn round_trip(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let wire: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{}={}", percent::encode(n), percent::encode(v)))
        .collect();
    let decoded = percent::parse_query(&wire.join("&")).expect("encoded pairs decode");
    assert_eq!(decoded, pairs, "encode/parse_query do not round-trip");
    decoded
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
    let own: Vec<(String, String, bool)> = input
        .params
        .into_iter()
        .filter(|(n, _, _)| !SIGNATURE_PARAMS.contains(&n.as_str()))
        .collect();
    let plain: Vec<(String, String)> = own.iter().map(|(n, v, _)| (n.clone(), v.clone())).collect();
    let added = v1::sign_v1(&key, method, &plain, date(input.date), &nonce);
    let mut query: Vec<(String, String)> = own
        .iter()
        .filter(|p| !p.2)
        .map(|(n, v, _)| (n.clone(), v.clone()))
        .collect();
    query.extend(added);
    let body: Vec<(String, String)> = own
        .iter()
        .filter(|p| p.2)
        .map(|(n, v, _)| (n.clone(), v.clone()))
        .collect();
    let (query, body) = (round_trip(&query), round_trip(&body));

    let base = check(method, &query, &body, &[]);
    assert_ne!(
        base,
        Err(SignatureError::SignatureMismatch),
        "a request signed by sign_v1 does not verify"
    );
    let Some(tamper) = input.tamper else { return };

    let (mut query, mut body, mut method) = (query, body, method);
    let count = query.len() + body.len();
    // Parameter `i` of query and body together, as (list, index).
    let at = |i: u8, query_len: usize| {
        let i = usize::from(i) % count;
        if i < query_len {
            (false, i)
        } else {
            (true, i - query_len)
        }
    };
    // `Some(true)`: must be refused (given the original was accepted); `Some(false)`: same answer.
    let expect: Option<bool> = match &tamper {
        Tamper::Method(m) => {
            let changed = m != method;
            method = m.as_str();
            Some(changed)
        }
        Tamper::Value(i, v) => {
            let (in_body, i) = at(*i, query.len());
            let list = if in_body { &mut body } else { &mut query };
            let claim = list[i].0 != "Signature" && list[i].1 != *v;
            list[i].1 = v.clone();
            claim.then_some(true)
        }
        Tamper::Add(n, v) => {
            query.push((n.clone(), v.clone()));
            (!v.is_empty()).then_some(true)
        }
        Tamper::Drop(i) => {
            let (in_body, i) = at(*i, query.len());
            let list = if in_body { &mut body } else { &mut query };
            let (name, _) = list.remove(i);
            (name != "Signature").then_some(true)
        }
        Tamper::MoveToBody(i) => {
            let i = usize::from(*i) % query.len();
            if query[i].0 == "Signature" {
                return;
            }
            body.push(query.remove(i));
            Some(false)
        }
        Tamper::Signature(s) => {
            let entry = query
                .iter_mut()
                .find(|(n, _)| n == "Signature")
                .expect("sign_v1 adds Signature");
            let changed = entry.1 != *s;
            entry.1 = s.clone();
            Some(changed)
        }
        Tamper::SwapKey(k) => {
            let other = rotd_fuzz::key(*k);
            let entry = query
                .iter_mut()
                .find(|(n, _)| n == "AccessKeyId")
                .expect("sign_v1 adds AccessKeyId");
            entry.1 = other.id().to_owned();
            Some(other.id() != key.id())
        }
    };
    let result = check(method, &query, &body, &[]);
    if base.is_ok() {
        match expect {
            Some(true) => assert!(result.is_err(), "tamper {tamper:?} was accepted"),
            Some(false) => assert_eq!(result, base, "tamper {tamper:?} changed the answer"),
            None => {}
        }
    }
}
