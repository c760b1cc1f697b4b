//! Fuzz-style tests: generated and mutated inputs (malformed `Authorization` headers, truncated and
//! duplicated parameters, invalid percent escapes, non-UTF-8 bytes) must produce an error, never a panic,
//! and never an error that shows the secret. A small deterministic generator keeps runs reproducible
//! without a fuzzing dependency; a failure prints the seed and the input.

use chrono::{DateTime, TimeDelta, Utc};
use rotd_aliyun::{
    AccessKey, NonceCache, RequestParts, SignatureError, parse_timestamp, percent, v1, v3, verify_request,
};
use rotd_core::Secret;

const SECRET: &str = "S3cr3t-Value-That-Must-Never-Leak";
const SECRET_DATA: &str = "TopSecretPayload-4242";

/// Name/value pairs, as queries, headers and V1 parameters are held.
type Params = Vec<(String, String)>;

/// SplitMix64: tiny, fast and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn now() -> DateTime<Utc> {
    parse_timestamp("2024-01-01T00:00:00Z").expect("valid timestamp")
}

fn lookup(id: &str) -> Option<Secret> {
    (id == "ak").then(|| Secret::from(SECRET))
}

/// Every way an error is shown must leave out the secret and the body's secret value.
fn assert_no_leak(err: &SignatureError, context: &str) {
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        err.message(),
        err.code().to_owned(),
    ] {
        assert!(!shown.contains(SECRET), "{context}: secret leaked in {shown}");
        assert!(
            !shown.contains(SECRET_DATA),
            "{context}: body value leaked in {shown}"
        );
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A correctly signed V3 request: (query, headers, body).
fn signed_v3() -> (Params, Params, Vec<u8>) {
    let key = AccessKey::new("ak", Secret::from(SECRET));
    let query = pairs(&[("SecretName", "app/db é"), ("VersionStage", "ACSCurrent")]);
    let mut headers = pairs(&[
        ("host", "localhost:18443"),
        ("x-acs-action", "PutSecretValue"),
        ("x-acs-version", "2016-01-20"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    let body = format!("SecretData={SECRET_DATA}").into_bytes();
    let request = RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: &body,
    };
    let added = v3::sign_request(&key, &request, now(), "0123456789abcdef0123456789abcdef");
    headers.extend(added);
    (query, headers, body)
}

/// A correctly signed V1 request's parameters, body parameter included.
fn signed_v1() -> Vec<(String, String)> {
    let key = AccessKey::new("ak", Secret::from(SECRET));
    let mut params = pairs(&[
        ("Action", "PutSecretValue"),
        ("Version", "2016-01-20"),
        ("Format", "json"),
        ("SecretName", "app/db"),
        ("SecretData", SECRET_DATA),
    ]);
    let added = v1::sign_v1(&key, "POST", &params, now(), "0123456789abcdef0123456789abcdef");
    params.extend(added);
    params
}

#[test]
fn baseline_requests_verify() {
    let (query, headers, body) = signed_v3();
    let request = RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: &body,
    };
    v3::verify_v3(&request, lookup).unwrap();
    v1::verify_v1("POST", &signed_v1(), lookup).unwrap();
}

#[test]
fn generated_authorization_headers_never_panic() {
    let (query, headers, body) = signed_v3();
    let good = headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .unwrap()
        .1
        .clone();
    let tokens = [
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SM3",
        "ACS3-",
        " ",
        "  ",
        ",",
        "=",
        ";",
        "Credential",
        "SignedHeaders",
        "Signature",
        "ak",
        "host",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
        "HOST",
        "0",
        "f",
        "g",
        "é",
        "\u{0}",
        "\t",
        "\n",
        "😀",
        "%",
        &good,
    ];
    let mut rng = Rng(1);
    for case in 0..20_000 {
        let value: String = match case % 3 {
            // Token soup: every structural character in every position.
            0 => (0..rng.below(24)).map(|_| *rng.pick(&tokens)).collect(),
            // The good header, cut short.
            1 => good.chars().take(rng.below(good.chars().count() + 1)).collect(),
            // The good header with one character replaced, inserted or deleted.
            _ => {
                let mut chars: Vec<char> = good.chars().collect();
                let at = rng.below(chars.len());
                let replacement = *rng.pick(&[' ', ',', '=', ';', 'A', '0', 'é', '\u{0}']);
                match rng.below(3) {
                    0 => chars[at] = replacement,
                    1 => chars.insert(at, replacement),
                    _ => {
                        chars.remove(at);
                    }
                }
                chars.into_iter().collect()
            }
        };
        let _ = v3::parse_authorization(&value);
        let mut mutated: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| n != "Authorization")
            .cloned()
            .collect();
        mutated.push(("Authorization".to_owned(), value.clone()));
        let request = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &mutated,
            body: &body,
        };
        match v3::verify_v3(&request, lookup) {
            // Only a semantically identical header may pass: same fields, in any order or spacing.
            Ok(_) => {
                let parsed = v3::parse_authorization(&value).unwrap();
                assert_eq!(
                    parsed,
                    v3::parse_authorization(&good).unwrap(),
                    "case {case}: {value:?}"
                );
            }
            Err(err) => assert_no_leak(&err, &format!("case {case}: {value:?}")),
        }
    }
}

#[test]
fn mutated_v3_requests_are_refused() {
    let (query, headers, body) = signed_v3();
    let mut rng = Rng(2);
    for case in 0..5_000 {
        let (mut query, mut headers, mut body) = (query.clone(), headers.clone(), body.clone());
        let what = rng.below(8);
        match what {
            // Truncate a query value or a header value (never the Authorization header: see above).
            0 => {
                let i = rng.below(query.len());
                if query[i].1.pop().is_none() {
                    query[i].1.push('x');
                }
            }
            1 => {
                let i = rng.below(headers.len() - 1);
                let value = &mut headers[i].1;
                value.pop();
            }
            // Duplicate a query parameter, with the same or another value.
            2 => {
                let mut dup = rng.pick(&query).clone();
                if rng.below(2) == 0 {
                    dup.1.push('2');
                }
                query.push(dup);
            }
            // Duplicate a signed header.
            3 => {
                let i = rng.below(headers.len() - 1);
                let mut dup = headers[i].clone();
                dup.1.push('2');
                headers.push(dup);
            }
            // Drop a parameter or a header.
            4 => {
                query.remove(rng.below(query.len()));
            }
            5 => {
                headers.remove(rng.below(headers.len()));
            }
            // Flip bits in the body, or cut it, or append non-UTF-8 bytes.
            6 => {
                let i = rng.below(body.len());
                body[i] ^= 1 << rng.below(8);
            }
            _ => {
                body.truncate(rng.below(body.len()));
                body.extend_from_slice(&[0xff, 0xfe, 0x80][..rng.below(4)]);
            }
        }
        let request = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: &body,
        };
        let err = v3::verify_v3(&request, lookup).expect_err(&format!("case {case} (mutation {what})"));
        assert_no_leak(&err, &format!("case {case}"));
        assert!(matches!(err.http_status(), 400 | 404), "case {case}: {err:?}");
    }
}

#[test]
fn mutated_v1_parameters_are_refused() {
    let params = signed_v1();
    let mut rng = Rng(3);
    for case in 0..5_000 {
        let mut params = params.clone();
        let what = rng.below(5);
        match what {
            0 => {
                params.remove(rng.below(params.len()));
            }
            1 => {
                let dup = rng.pick(&params).clone();
                params.push(dup);
            }
            2 => {
                let i = rng.below(params.len());
                let value = &mut params[i].1;
                if value.pop().is_none() || rng.below(2) == 0 {
                    value.push('~');
                }
            }
            3 => {
                let i = rng.below(params.len());
                params[i].0.push('_');
            }
            _ => {
                let i = rng.below(params.len());
                params[i].1 = String::new();
            }
        }
        let err =
            v1::verify_v1("POST", &params, lookup).expect_err(&format!("case {case} (mutation {what})"));
        assert_no_leak(&err, &format!("case {case}"));
    }
}

#[test]
fn generated_query_strings_and_bodies_never_panic() {
    let alphabet: &[&[u8]] = &[
        b"a",
        b"Z",
        b"0",
        b"=",
        b"&",
        b"+",
        b"%",
        b"%2",
        b"%2F",
        b"%2f",
        b"%G0",
        b"%C3",
        b"%A9",
        b"%C3%A9",
        b"%FF",
        b"%00",
        b"\xff",
        b"\xc3",
        b"\xc3\xa9",
        b"\x00",
        b" ",
        b"~",
        b"*",
        b";",
    ];
    let mut rng = Rng(4);
    for case in 0..50_000 {
        let input: Vec<u8> = (0..rng.below(16))
            .flat_map(|_| rng.pick(alphabet).iter().copied())
            .collect();
        match percent::parse_form(&input) {
            Ok(pairs) => {
                // What decodes must survive a round trip through the SDKs' encoding.
                let encoded: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
                    .collect();
                assert_eq!(
                    percent::parse_form(encoded.join("&").as_bytes()).unwrap(),
                    pairs,
                    "case {case}"
                );
            }
            // Only an escape or a byte outside ASCII can make decoding fail.
            Err(err) => assert!(
                input.contains(&b'%') || input.iter().any(|&b| b >= 0x80),
                "case {case}: {err} for {input:?}"
            ),
        }
        if let Ok(text) = std::str::from_utf8(&input) {
            assert_eq!(
                percent::parse_query(text),
                percent::parse_form(&input),
                "case {case}"
            );
        }
    }
}

#[test]
fn full_verification_of_garbage_never_panics() {
    let nonces = NonceCache::default();
    let mut rng = Rng(5);
    let header_names = [
        "authorization",
        "Authorization",
        "host",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
        "x-acs-action",
        "content-type",
    ];
    let values = [
        "",
        " ",
        "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host,Signature=00",
        "2024-01-01T00:00:00Z",
        "0123",
        v3::EMPTY_BODY_SHA256,
        "é",
        "\u{0}",
    ];
    let param_names = [
        "Signature",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Action",
        "",
    ];
    let param_values = [
        "",
        "ak",
        "HMAC-SHA1",
        "1.0",
        "n",
        "2024-01-01T00:00:00Z",
        "AAAA",
        "s/OdVWMTmNGagvWlljdAJ7Itsew=",
    ];
    for case in 0..20_000 {
        let headers: Vec<(String, String)> = (0..rng.below(8))
            .map(|_| {
                (
                    (*rng.pick(&header_names)).to_owned(),
                    (*rng.pick(&values)).to_owned(),
                )
            })
            .collect();
        let query: Vec<(String, String)> = (0..rng.below(10))
            .map(|_| {
                (
                    (*rng.pick(&param_names)).to_owned(),
                    (*rng.pick(&param_values)).to_owned(),
                )
            })
            .collect();
        let body: Vec<u8> = (0..rng.below(4)).map(|_| rng.next() as u8).collect();
        let request = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: &body,
        };
        let err = verify_request(&request, &[], now(), &nonces, lookup).expect_err(&format!("case {case}"));
        assert_no_leak(&err, &format!("case {case}"));
    }
    assert!(
        nonces.is_empty(),
        "no unauthenticated request may reach the replay cache"
    );
}

#[test]
fn skew_and_replay_through_verify_request() {
    let (query, headers, body) = signed_v3();
    let request = RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: &body,
    };
    let nonces = NonceCache::default();
    let late = now() + TimeDelta::minutes(16);
    assert_eq!(
        verify_request(&request, &[], late, &nonces, lookup),
        Err(SignatureError::TimestampSkew)
    );
    assert!(nonces.is_empty(), "a refused request must not burn its nonce");
    verify_request(&request, &[], now() + TimeDelta::minutes(15), &nonces, lookup).unwrap();
    assert_eq!(
        verify_request(&request, &[], now(), &nonces, lookup),
        Err(SignatureError::NonceReused)
    );

    let params = signed_v1();
    let (query, body): (Vec<_>, Vec<_>) = params.into_iter().partition(|(n, _)| n != "SecretData");
    let request = RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &[],
        body: b"",
    };
    // The nonce is per access key, not per scheme: this V1 request reuses the V3 request's nonce.
    assert_eq!(
        verify_request(&request, &body, now(), &nonces, lookup),
        Err(SignatureError::NonceReused)
    );
    let nonces = NonceCache::default();
    verify_request(&request, &body, now(), &nonces, lookup).unwrap();
    assert_eq!(
        verify_request(&request, &body, now(), &nonces, lookup),
        Err(SignatureError::NonceReused)
    );
    assert_eq!(
        verify_request(&request, &[], now(), &NonceCache::default(), lookup),
        Err(SignatureError::SignatureMismatch)
    );
    let mut both = body.clone();
    both.extend(query.iter().filter(|(n, _)| n == "Action").cloned());
    assert_eq!(
        verify_request(&request, &both, now(), &NonceCache::default(), lookup),
        Err(SignatureError::DuplicateParameter("Action".to_owned()))
    );
}

#[test]
fn every_error_maps_to_a_vendor_code_without_leaking() {
    let all = [
        SignatureError::MissingSignature,
        SignatureError::Malformed("x"),
        SignatureError::MissingField("x"),
        SignatureError::UnsupportedAlgorithm,
        SignatureError::MissingSignedHeader("h".into()),
        SignatureError::UnsignedHeader("h".into()),
        SignatureError::BodyHashMismatch,
        SignatureError::UnknownAccessKey,
        SignatureError::SignatureMismatch,
        SignatureError::TimestampUnparseable,
        SignatureError::TimestampSkew,
        SignatureError::NonceReused,
        SignatureError::NonceQuotaExceeded,
        SignatureError::NonceCacheFull,
        SignatureError::DuplicateParameter("p".into()),
        SignatureError::MalformedEncoding(percent::DecodeError::InvalidUtf8 { offset: 0 }),
    ];
    for err in &all {
        let expected = match err.code() {
            "IncompleteSignature" | "IllegalTimestamp" | "SignatureNonceUsed" | "InvalidParameter" => 400,
            "InvalidAccessKeyId.NotFound" => 404,
            "Rejected.Throttling" => 429,
            "ServiceUnavailableTemporary" => 503,
            other => panic!("unexpected code {other}"),
        };
        assert_eq!(err.http_status(), expected, "{err:?}");
        let display = err.to_string();
        assert!(
            display.chars().next().unwrap().is_lowercase() && !display.ends_with('.'),
            "{display}"
        );
        assert_no_leak(err, "table");
    }
    assert!(
        SignatureError::SignatureMismatch
            .message()
            .contains("does not conform to Aliyun standards")
    );
    assert!(
        SignatureError::SignatureMismatch
            .message()
            .contains("does not match")
    );
}
