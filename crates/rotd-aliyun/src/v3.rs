//! ACS3-HMAC-SHA256, the header-based signature the current SDKs send by default.
//!
//! ```text
//! CanonicalRequest = METHOD \n PATH \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "ACS3-HMAC-SHA256" \n hex(sha256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(key = AccessKeySecret, StringToSign))
//! Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<h1;h2;...>,Signature=<hex>
//! ```
//!
//! The canonical headers block already ends in `\n`, so a blank line precedes SignedHeaders. The server
//! rebuilds the canonical headers from the names the client listed, never from a fixed set: the Python SDK
//! signs every header it sends, the Java and Go SDKs only `host`, `content-type` and `x-acs-*`.

use aws_lc_rs::{constant_time, digest, hmac};
use rotd_core::Secret;

use crate::{
    AccessKey, RequestParts, Scheme, SignatureError, Verified, check_token, format_timestamp,
    parse_timestamp, percent, reject_duplicates,
};

/// The algorithm name at the start of the `Authorization` header and of the string to sign.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// `hex(sha256(""))`, the content hash of a request without a body.
pub const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Headers that every verified request must have signed: without `host` a signature could be replayed
/// against another endpoint, and the other three carry what the server checks (freshness, uniqueness and
/// the body's integrity). Every other `x-acs-*` header present must be signed as well (see [`verify_v3`]).
pub const REQUIRED_SIGNED_HEADERS: [&str; 4] = [
    "host",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// Longest `Authorization` header parsed; the SDKs' are about 400 bytes.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Most names accepted in `SignedHeaders`; the Python SDK signs about a dozen.
const MAX_SIGNED_HEADERS: usize = 64;

/// The parsed `Authorization` header of a V3 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Auth {
    pub access_key_id: String,
    /// The header names exactly as listed, in the client's order (the Java SDK does not sort them).
    pub signed_headers: Vec<String>,
    /// The signature bytes, decoded from hex.
    pub signature: [u8; 32],
}

/// `hex(sha256(data))`, lowercase.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The canonical query string as the Python SDK builds it: pairs sorted by name (then value, which only
/// matters for duplicates, which a server rejects anyway), `name=value` joined with `&`, values RFC
/// 3986-encoded, names verbatim.
///
/// Names are written verbatim, so a name holding `&` or `=` would canonicalize like two parameters; the
/// verifier therefore accepts only names of unreserved characters (`A-Za-z0-9-_.~`), for which the
/// Python and Go SDKs (verbatim) and the Java SDK (percent-encoded) write the same bytes.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = query.iter().collect();
    sorted.sort_unstable();
    let mut out = String::new();
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        percent::encode_into(&mut out, value);
    }
    out
}

/// The canonical headers block for `signed_headers`: one `name:value\n` line per distinct name, names
/// lowercase and sorted, values trimmed, the values of a repeated header sorted and joined with `,` (as the
/// Python and Go SDKs do). A listed name the request lacks yields an empty value; [`verify_v3`] refuses
/// such requests before it gets here.
pub fn canonical_headers(headers: &[(String, String)], signed_headers: &[String]) -> String {
    let mut names: Vec<String> = signed_headers.iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in &names {
        let mut values: Vec<&str> = header_values(headers, name).map(sdk_trim).collect();
        values.sort_unstable();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// The canonical request. `path` is used as given (`/` when empty), like the SDKs' `pathname`; the
/// SignedHeaders line is `signed_headers` joined with `;` in the order given, because that is the string
/// the client put in its `Authorization` header.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed_headers: &[String],
    body_sha256_hex: &str,
) -> String {
    canonical_request_with(
        method,
        path,
        &canonical_query(query),
        headers,
        signed_headers,
        body_sha256_hex,
    )
}

fn canonical_request_with(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    signed_headers: &[String],
    body_sha256_hex: &str,
) -> String {
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{path}\n{canonical_query}\n{}\n{}\n{body_sha256_hex}",
        canonical_headers(headers, signed_headers),
        signed_headers.join(";"),
    )
}

/// `"ACS3-HMAC-SHA256\n" + hex(sha256(canonical_request))`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", hex_sha256(canonical_request.as_bytes()))
}

/// `hex(HMAC-SHA256(secret, string_to_sign))`. Unlike V1, the key has no `&` suffix.
pub fn sign(secret: &Secret, string_to_sign: &str) -> String {
    hex::encode(mac(secret, string_to_sign))
}

fn mac(secret: &Secret, string_to_sign: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret());
    hmac::sign(&key, string_to_sign.as_bytes())
}

/// Signs a request the way the Python SDK's `do_request` does and returns the headers to add to it:
/// `x-acs-date`, `x-acs-signature-nonce`, `x-acs-content-sha256` and `Authorization`, in that order.
///
/// Every header in `request.headers` is signed, as the Python SDK signs every header it sends, so the caller
/// passes exactly the headers it will send (`host` is required by servers, rotd's included; add
/// `x-acs-action`, `x-acs-version` and `content-type` as the SDKs do). Any `authorization`, `x-acs-date`,
/// `x-acs-signature-nonce` or `x-acs-content-sha256` already in `request.headers` is ignored and replaced.
pub fn sign_request(
    key: &AccessKey,
    request: &RequestParts<'_>,
    date: chrono::DateTime<chrono::Utc>,
    nonce: &str,
) -> Vec<(String, String)> {
    const REPLACED: [&str; 4] = [
        "authorization",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ];
    let added = [
        ("x-acs-date".to_owned(), format_timestamp(date)),
        ("x-acs-signature-nonce".to_owned(), nonce.to_owned()),
        ("x-acs-content-sha256".to_owned(), hex_sha256(request.body)),
    ];
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !REPLACED.iter().any(|r| name.eq_ignore_ascii_case(r)))
        .cloned()
        .collect();
    headers.extend(added.iter().cloned());
    let mut signed: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    signed.sort_unstable();
    signed.dedup();
    let canonical = canonical_request(
        request.method,
        request.path,
        request.query,
        &headers,
        &signed,
        &added[2].1,
    );
    let signature = sign(key.secret(), &string_to_sign(&canonical));
    let authorization = format!(
        "{ALGORITHM} Credential={},SignedHeaders={},Signature={signature}",
        key.id(),
        signed.join(";")
    );
    let mut out = added.to_vec();
    out.push(("Authorization".to_owned(), authorization));
    out
}

/// Parses `ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<h1;h2>,Signature=<hex>`. The three fields may
/// come in any order, each exactly once, with optional spaces after the commas; anything else is malformed.
/// The other ACS3 algorithms (HMAC-SM3, RSA-SHA256) are reported as unsupported.
pub fn parse_authorization(value: &str) -> Result<V3Auth, SignatureError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(SignatureError::Malformed("authorization header too long"));
    }
    let value = value.trim();
    let (algorithm, fields) = value
        .split_once(' ')
        .ok_or(SignatureError::Malformed("authorization header has no fields"))?;
    if algorithm != ALGORITHM {
        return Err(if algorithm.starts_with("ACS3-") {
            SignatureError::UnsupportedAlgorithm
        } else {
            SignatureError::Malformed("authorization scheme is not ACS3")
        });
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (name, field_value) = field
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("authorization field without '='"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(SignatureError::Malformed("unknown authorization field")),
        };
        if slot.replace(field_value).is_some() {
            return Err(SignatureError::Malformed("repeated authorization field"));
        }
    }
    let credential = credential.ok_or(SignatureError::Malformed("authorization lacks Credential"))?;
    let signed_headers =
        signed_headers.ok_or(SignatureError::Malformed("authorization lacks SignedHeaders"))?;
    let signature = signature.ok_or(SignatureError::Malformed("authorization lacks Signature"))?;

    check_token(credential, "Credential")?;
    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(SignatureError::Malformed("too many signed headers"));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_header_name_byte) {
            return Err(SignatureError::Malformed("invalid name in SignedHeaders"));
        }
        if names[..i]
            .iter()
            .any(|earlier| earlier.eq_ignore_ascii_case(name))
        {
            return Err(SignatureError::Malformed("repeated name in SignedHeaders"));
        }
    }
    let mut signature_bytes = [0u8; 32];
    hex::decode_to_slice(signature, &mut signature_bytes)
        .map_err(|_| SignatureError::Malformed("Signature is not 64 hex digits"))?;
    Ok(V3Auth {
        access_key_id: credential.to_owned(),
        signed_headers: names,
        signature: signature_bytes,
    })
}

/// Verifies the ACS3-HMAC-SHA256 signature of `request`, using `lookup` to find the secret of the access
/// key it names.
///
/// Besides the signature itself this requires: exactly one `Authorization` header; the
/// [`REQUIRED_SIGNED_HEADERS`] and every other `x-acs-*` header present listed in `SignedHeaders` (so that
/// `x-acs-action` or `x-acs-security-token` cannot be added or swapped without the key); every listed header
/// present; `x-acs-content-sha256` equal to the SHA-256 of the body received; a parseable `x-acs-date`; a
/// well-formed nonce; and no duplicated query parameter. It does not judge the date or the nonce; see
/// [`crate::verify_request`].
///
/// A query parameter name outside the unreserved set (`A-Za-z0-9-_.~`), or empty, is refused with
/// [`SignatureError::UnsupportedParameterName`] before any key is looked up: names go into the canonical
/// query verbatim, so `a&b=c` could otherwise sign like two parameters, and the SDKs disagree on how such
/// names are written (Java percent-encodes them).
pub fn verify_v3(
    request: &RequestParts<'_>,
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Verified, SignatureError> {
    let authorization =
        single_header(request.headers, "authorization")?.ok_or(SignatureError::MissingSignature)?;
    let auth = parse_authorization(authorization)?;
    let signed = |name: &str| auth.signed_headers.iter().any(|s| s.eq_ignore_ascii_case(name));

    for required in REQUIRED_SIGNED_HEADERS {
        if !signed(required) {
            return Err(SignatureError::UnsignedHeader(required.to_owned()));
        }
    }
    if let Some((name, _)) = request
        .headers
        .iter()
        .find(|(name, _)| has_acs_prefix(name) && !signed(name))
    {
        return Err(SignatureError::UnsignedHeader(
            name.to_ascii_lowercase().chars().take(64).collect(),
        ));
    }
    if let Some(absent) = auth
        .signed_headers
        .iter()
        .find(|name| header_values(request.headers, name).next().is_none())
    {
        return Err(SignatureError::MissingSignedHeader(absent.to_ascii_lowercase()));
    }

    let content_sha256 = sdk_trim(required_header(request.headers, "x-acs-content-sha256")?);
    if !content_sha256.eq_ignore_ascii_case(&hex_sha256(request.body)) {
        return Err(SignatureError::BodyHashMismatch);
    }
    let date = parse_timestamp(sdk_trim(required_header(request.headers, "x-acs-date")?))?;
    let nonce = sdk_trim(required_header(request.headers, "x-acs-signature-nonce")?);
    check_token(nonce, "x-acs-signature-nonce")?;
    reject_duplicates(request.query)?;
    if request
        .query
        .iter()
        .any(|(name, _)| name.is_empty() || percent::needs_encoding(name))
    {
        return Err(SignatureError::UnsupportedParameterName);
    }

    let secret = lookup(&auth.access_key_id).ok_or(SignatureError::UnknownAccessKey)?;
    let canonical = canonical_request_with(
        request.method,
        request.path,
        &canonical_query(request.query),
        request.headers,
        &auth.signed_headers,
        content_sha256,
    );
    let expected = mac(&secret, &string_to_sign(&canonical));
    if constant_time::verify_slices_are_equal(expected.as_ref(), &auth.signature).is_err() {
        return Err(SignatureError::SignatureMismatch);
    }
    Ok(Verified {
        access_key_id: auth.access_key_id,
        date,
        nonce: nonce.to_owned(),
        scheme: Scheme::V3,
    })
}

/// The values of every header called `name` (ASCII case-insensitively), in arrival order.
fn header_values<'h>(headers: &'h [(String, String)], name: &str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The value of a header that may occur at most once; a repeated one is malformed, because the server
/// would otherwise have to pick which copy to believe.
fn single_header<'h>(
    headers: &'h [(String, String)],
    name: &'static str,
) -> Result<Option<&'h str>, SignatureError> {
    let mut values = header_values(headers, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(SignatureError::Malformed("a signature header is repeated"));
    }
    Ok(first)
}

fn required_header<'h>(
    headers: &'h [(String, String)],
    name: &'static str,
) -> Result<&'h str, SignatureError> {
    single_header(headers, name)?.ok_or(SignatureError::MissingField(name))
}

fn has_acs_prefix(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("x-acs-"))
}

/// RFC 9110 token characters, which is what a header name may contain.
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trims a header value the way the Python SDK does (`str.strip()`): Unicode white space plus the ASCII
/// separators U+001C..U+001F, which Python counts as white space and Rust does not.
fn sdk_trim(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn reference_query() -> Vec<(String, String)> {
        pairs(&[("SecretName", "my secret/1"), ("VersionStage", "ACSCurrent")])
    }

    fn reference_headers() -> Vec<(String, String)> {
        pairs(&[
            ("host", "kms.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "GetSecretValue"),
            ("x-acs-version", "2016-01-20"),
            ("x-acs-date", "2024-01-01T00:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ])
    }

    const REFERENCE_CANONICAL: &str = "POST
/
SecretName=my%20secret%2F1&VersionStage=ACSCurrent
host:kms.cn-hangzhou.aliyuncs.com
x-acs-action:GetSecretValue
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-date:2024-01-01T00:00:00Z
x-acs-signature-nonce:0123456789abcdef0123456789abcdef
x-acs-version:2016-01-20

host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    const REFERENCE_SIGNATURE: &str = "2d0c968836ece55e368138d2934bf93ad1ae5fa0e2aa783d2570e12a9db14d54";

    fn reference_signed_headers() -> Vec<String> {
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
            .split(';')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn reference_worked_example() {
        assert_eq!(hex_sha256(b""), EMPTY_BODY_SHA256);
        let canonical = canonical_request(
            "POST",
            "/",
            &reference_query(),
            &reference_headers(),
            &reference_signed_headers(),
            EMPTY_BODY_SHA256,
        );
        assert_eq!(canonical, REFERENCE_CANONICAL);
        assert_eq!(
            hex_sha256(canonical.as_bytes()),
            "85a72a8cdf3066720d86e81c3568ac7ff0d6a416393978a80ede9dfe2ce72368"
        );
        let sts = string_to_sign(&canonical);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n85a72a8cdf3066720d86e81c3568ac7ff0d6a416393978a80ede9dfe2ce72368"
        );
        assert_eq!(sign(&Secret::from("testsecret"), &sts), REFERENCE_SIGNATURE);
    }

    #[test]
    fn sign_request_reproduces_the_reference_and_verifies() {
        let key = AccessKey::new("testid", Secret::from("testsecret"));
        let base: Vec<(String, String)> = reference_headers().into_iter().take(3).collect();
        let query = reference_query();
        let request = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &base,
            body: b"",
        };
        let date = parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        let added = sign_request(&key, &request, date, "0123456789abcdef0123456789abcdef");
        let expected_auth = format!(
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={},Signature={REFERENCE_SIGNATURE}",
            reference_signed_headers().join(";")
        );
        assert_eq!(added[3], ("Authorization".to_owned(), expected_auth));

        let mut headers = base.clone();
        headers.extend(added);
        let request = RequestParts {
            headers: &headers,
            ..request
        };
        let verified = verify_v3(&request, |id| {
            (id == "testid").then(|| Secret::from("testsecret"))
        })
        .unwrap();
        assert_eq!(verified.access_key_id, "testid");
        assert_eq!(verified.nonce, "0123456789abcdef0123456789abcdef");
        assert_eq!(verified.date, date);
        assert_eq!(verified.scheme, Scheme::V3);

        assert_eq!(
            verify_v3(&request, |_| Some(Secret::from("wrongsecret"))),
            Err(SignatureError::SignatureMismatch)
        );
        assert_eq!(
            verify_v3(&request, |_| None),
            Err(SignatureError::UnknownAccessKey)
        );
    }

    #[test]
    fn parses_authorization_headers() {
        let sig = REFERENCE_SIGNATURE;
        let auth = parse_authorization(&format!(
            "ACS3-HMAC-SHA256 Signature={sig}, SignedHeaders=x-acs-date;host,Credential=ak"
        ))
        .unwrap();
        assert_eq!(auth.access_key_id, "ak");
        assert_eq!(auth.signed_headers, vec!["x-acs-date", "host"]);
        assert_eq!(hex::encode(auth.signature), sig);

        let bad = [
            "".to_owned(),
            "ACS3-HMAC-SHA256".to_owned(),
            format!("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature={sig}"),
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host".to_owned(),
            format!("ACS3-HMAC-SHA256 Credential=a,Credential=b,SignedHeaders=host,Signature={sig}"),
            format!("ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature={sig}"),
            format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;;x,Signature={sig}"),
            format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;HOST,Signature={sig}"),
            format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=ho st,Signature={sig}"),
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=abc".to_owned(),
            format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature={sig},Extra=1"),
            format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature={sig}0"),
        ];
        for value in bad {
            let err = parse_authorization(&value).expect_err(&value);
            assert_eq!(err.code(), "IncompleteSignature", "{value}: {err}");
        }
    }

    /// Builds a correctly signed request around `headers`/`query`/`body` and hands it to `check`.
    fn signed(
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &[u8],
        check: impl FnOnce(Vec<(String, String)>),
    ) {
        let key = AccessKey::new("ak", Secret::from("sk"));
        let request = RequestParts {
            method: "POST",
            path: "/",
            query,
            headers,
            body,
        };
        let date = parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        let mut all = headers.to_vec();
        all.extend(sign_request(&key, &request, date, "nonce-1"));
        check(all);
    }

    fn verify(
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Verified, SignatureError> {
        let request = RequestParts {
            method: "POST",
            path: "/",
            query,
            headers,
            body,
        };
        verify_v3(&request, |id| (id == "ak").then(|| Secret::from("sk")))
    }

    #[test]
    fn server_side_checks() {
        let query = pairs(&[("SecretName", "s1")]);
        let base = pairs(&[("Host", "localhost:18443"), ("x-acs-action", "GetSecretValue")]);
        signed(&query, &base, b"SecretData=x", |headers| {
            assert!(verify(&query, &headers, b"SecretData=x").is_ok());
            assert_eq!(
                verify(&query, &headers, b"SecretData=y"),
                Err(SignatureError::BodyHashMismatch)
            );

            let mut extra = headers.clone();
            extra.push(("X-Acs-Security-Token".to_owned(), "t".to_owned()));
            assert_eq!(
                verify(&query, &extra, b"SecretData=x"),
                Err(SignatureError::UnsignedHeader("x-acs-security-token".to_owned()))
            );

            // An unsigned header that is not x-acs-* does not matter (proxies add such headers).
            let mut extra = headers.clone();
            extra.push(("x-forwarded-for".to_owned(), "10.0.0.1".to_owned()));
            assert!(verify(&query, &extra, b"SecretData=x").is_ok());

            let without_action: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n != "x-acs-action")
                .cloned()
                .collect();
            assert_eq!(
                verify(&query, &without_action, b"SecretData=x"),
                Err(SignatureError::MissingSignedHeader("x-acs-action".to_owned()))
            );

            let mut twice = headers.clone();
            twice.push(("x-acs-date".to_owned(), "2024-01-01T00:00:00Z".to_owned()));
            assert_eq!(
                verify(&query, &twice, b"SecretData=x").unwrap_err().code(),
                "IncompleteSignature"
            );

            let mut dup = query.clone();
            dup.push(("SecretName".to_owned(), "s2".to_owned()));
            assert_eq!(
                verify(&dup, &headers, b"SecretData=x"),
                Err(SignatureError::DuplicateParameter("SecretName".to_owned()))
            );

            let other_value = pairs(&[("SecretName", "s2")]);
            assert_eq!(
                verify(&other_value, &headers, b"SecretData=x"),
                Err(SignatureError::SignatureMismatch)
            );
            assert_eq!(verify(&query, &[], b""), Err(SignatureError::MissingSignature));
        });
    }

    #[test]
    fn required_headers_must_be_signed() {
        let query = pairs(&[("SecretName", "s1")]);
        signed(&query, &pairs(&[("host", "h")]), b"", |headers| {
            for (name, _) in &headers {
                let auth = headers
                    .iter()
                    .find(|(n, _)| n == "Authorization")
                    .unwrap()
                    .1
                    .clone();
                let lower = name.to_ascii_lowercase();
                if lower == "authorization" {
                    continue;
                }
                // Drop the name from SignedHeaders; the request must now be refused for that reason.
                let reduced = auth
                    .replace(&format!("{lower};"), "")
                    .replace(&format!(";{lower},"), ",");
                let headers: Vec<_> = headers
                    .iter()
                    .map(|(n, v)| {
                        if n == "Authorization" {
                            (n.clone(), reduced.clone())
                        } else {
                            (n.clone(), v.clone())
                        }
                    })
                    .collect();
                assert_eq!(
                    verify(&query, &headers, b""),
                    Err(SignatureError::UnsignedHeader(lower))
                );
            }
        });
    }

    #[test]
    fn bad_dates_and_nonces_are_refused() {
        let query = Vec::new();
        signed(&query, &pairs(&[("host", "h")]), b"", |headers| {
            let replace = |name: &str, value: &str| -> Vec<(String, String)> {
                headers
                    .iter()
                    .map(|(n, v)| {
                        if n == name {
                            (n.clone(), value.to_owned())
                        } else {
                            (n.clone(), v.clone())
                        }
                    })
                    .collect()
            };
            assert_eq!(
                verify(&query, &replace("x-acs-date", "not a date"), b""),
                Err(SignatureError::TimestampUnparseable)
            );
            assert_eq!(
                verify(&query, &replace("x-acs-signature-nonce", ""), b""),
                Err(SignatureError::MissingField("x-acs-signature-nonce"))
            );
            assert_eq!(
                verify(&query, &replace("x-acs-signature-nonce", "a b"), b""),
                Err(SignatureError::Malformed("x-acs-signature-nonce"))
            );
        });
    }

    #[test]
    fn header_canonicalization_trims_lowercases_and_joins() {
        let headers = pairs(&[
            ("X-Acs-B", " 2 "),
            ("x-acs-a", "\t1\u{1f}"),
            ("x-acs-b", "1"),
            ("other", "x"),
        ]);
        let names: Vec<String> = vec!["x-acs-b".into(), "X-ACS-A".into()];
        assert_eq!(canonical_headers(&headers, &names), "x-acs-a:1\nx-acs-b:1,2\n");
    }

    #[test]
    fn query_names_outside_the_unreserved_set_are_refused() {
        // `a&b=c` written verbatim canonicalizes like the two parameters `a` and `b=c`: refused, as is any
        // name the SDKs would write differently (the Java SDK percent-encodes names).
        for name in ["a&b", "a=b", "my key", "ExtendedConfig.CustomData.k/1", "é", ""] {
            let query = pairs(&[(name, "c"), ("SecretName", "s")]);
            signed(&query, &pairs(&[("host", "h")]), b"", |headers| {
                assert_eq!(
                    verify(&query, &headers, b""),
                    Err(SignatureError::UnsupportedParameterName),
                    "{name:?}"
                );
            });
        }
        let query = pairs(&[("ExtendedConfig.CustomData.k_1-~", "v 1"), ("SecretName", "s")]);
        signed(&query, &pairs(&[("host", "h")]), b"", |headers| {
            assert!(verify(&query, &headers, b"").is_ok());
        });
        assert_eq!(
            SignatureError::UnsupportedParameterName.code(),
            "InvalidParameter"
        );
    }
}
