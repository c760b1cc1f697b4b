//! The legacy RPC signature (version 1.0, HMAC-SHA1), carried in the `Signature` query parameter.
//!
//! ```text
//! Canonicalized = sorted params except Signature, encode(name)=encode(value) joined with &
//! StringToSign  = METHOD & %2F & encode(Canonicalized)
//! Signature     = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))
//! ```
//!
//! The parameters are the query *and* the form body together: the SDKs merge both before signing, so a
//! `SecretData` sent in the body is covered. `encode` is RFC 3986 ([`crate::percent::encode`]); the
//! canonicalized string is encoded a second time inside the string to sign, so `:` in a timestamp ends up
//! as `%253A`.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rotd_core::Secret;

use crate::{
    AccessKey, Scheme, SignatureError, Verified, check_token, format_timestamp, parse_timestamp, percent,
    reject_duplicates,
};

/// The only `SignatureMethod` this scheme is defined for.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// The only `SignatureVersion` this scheme is defined for.
pub const SIGNATURE_VERSION: &str = "1.0";

/// The common parameters [`sign_v1`] adds and [`verify_v1`] requires, besides `Signature` itself.
const SIGNATURE_PARAMS: [&str; 5] = [
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
];

/// Which parameters take part in the canonicalized string. The SDKs disagree about empty values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyValues {
    /// Every parameter, empty or not: the Python and Go SDKs, and the legacy `aliyun-python-sdk-core`
    /// (which sends and signs an empty `SignatureType=`).
    Signed,
    /// Parameters with an empty value left out: the Java SDK (`if (StringUtils.isEmpty(value)) continue`).
    Skipped,
}

/// The canonicalized query string over `params`, leaving out `Signature`: sorted by name (then value, which
/// only orders duplicates, which a server rejects anyway), names and values RFC 3986-encoded.
pub fn canonicalized_query(params: &[(String, String)]) -> String {
    canonicalized_query_with(params, EmptyValues::Signed)
}

fn canonicalized_query_with(params: &[(String, String)], empty: EmptyValues) -> String {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(name, value)| name != "Signature" && !(empty == EmptyValues::Skipped && value.is_empty()))
        .collect();
    sorted.sort_unstable();
    let mut out = String::new();
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent::encode_into(&mut out, name);
        out.push('=');
        percent::encode_into(&mut out, value);
    }
    out
}

/// `METHOD&%2F&encode(canonicalized_query(params))`. The path is always `/` in this scheme, whatever the
/// request path was.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    string_to_sign_with(method, params, EmptyValues::Signed)
}

fn string_to_sign_with(method: &str, params: &[(String, String)], empty: EmptyValues) -> String {
    format!(
        "{method}&%2F&{}",
        percent::encode(&canonicalized_query_with(params, empty))
    )
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn sign(secret: &Secret, string_to_sign: &str) -> String {
    BASE64.encode(mac(secret, string_to_sign))
}

fn mac(secret: &Secret, string_to_sign: &str) -> hmac::Tag {
    // The key is the secret with "&" appended (the empty "token secret" of the OAuth-1-style scheme this
    // descends from). Building it in a zeroizing buffer keeps the copy from outliving the call.
    let mut key_bytes = Vec::with_capacity(secret.len() + 1);
    key_bytes.extend_from_slice(secret.expose_secret());
    key_bytes.push(b'&');
    let key_bytes = Secret::new(key_bytes);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key_bytes.expose_secret());
    hmac::sign(&key, string_to_sign.as_bytes())
}

/// Signs an RPC request the way the SDKs' `do_rpcrequest` does. `params` are all of the request's own
/// parameters, query and form body together (`Action`, `Version`, `Format`, the action's parameters,
/// `SecretData`...). Returns the parameters to add to the *query*: `AccessKeyId`, `SignatureMethod`,
/// `SignatureVersion`, `SignatureNonce`, `Timestamp` and `Signature`. Any of those already in `params` is
/// ignored and replaced.
pub fn sign_v1(
    key: &AccessKey,
    method: &str,
    params: &[(String, String)],
    timestamp: DateTime<Utc>,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut added: Vec<(String, String)> = [
        ("AccessKeyId", key.id().to_owned()),
        ("SignatureMethod", SIGNATURE_METHOD.to_owned()),
        ("SignatureVersion", SIGNATURE_VERSION.to_owned()),
        ("SignatureNonce", nonce.to_owned()),
        ("Timestamp", format_timestamp(timestamp)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let mut all: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "Signature" && !SIGNATURE_PARAMS.contains(&name.as_str()))
        .cloned()
        .collect();
    all.extend(added.iter().cloned());
    let signature = sign(key.secret(), &string_to_sign(method, &all));
    added.push(("Signature".to_owned(), signature));
    added
}

/// Verifies a V1 signature. `params` are the query and form-body parameters together, `Signature`
/// included, as they arrived (decoded).
///
/// Requires no duplicated parameter (a name in both query and body counts as duplicated: the SDKs merge
/// them into one map, so a legitimate client never sends both), exactly one `Signature`, `AccessKeyId`,
/// `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`, a well-formed `SignatureNonce` and a parseable
/// `Timestamp`. It does not judge the timestamp or the nonce; see [`crate::verify_request`].
///
/// The string to sign is computed with empty-valued parameters included (Python, Go, legacy core) and,
/// only when there are any, also without them (Java); a match in either is accepted. Accepting the second
/// means a third party could append empty parameters to a signed request, but it would still need the
/// request itself, which TLS keeps from it, and an unused nonce, which the replay cache denies it.
pub fn verify_v1(
    method: &str,
    params: &[(String, String)],
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Verified, SignatureError> {
    reject_duplicates(params)?;
    let signature = param(params, "Signature").ok_or(SignatureError::MissingSignature)?;
    let access_key_id = param(params, "AccessKeyId").unwrap_or_default();
    check_token(access_key_id, "AccessKeyId")?;
    match param(params, "SignatureMethod") {
        None => return Err(SignatureError::MissingField("SignatureMethod")),
        Some(SIGNATURE_METHOD) => {}
        Some(_) => return Err(SignatureError::UnsupportedAlgorithm),
    }
    match param(params, "SignatureVersion") {
        None => return Err(SignatureError::MissingField("SignatureVersion")),
        Some(SIGNATURE_VERSION) => {}
        Some(_) => return Err(SignatureError::UnsupportedAlgorithm),
    }
    let nonce = param(params, "SignatureNonce").unwrap_or_default();
    check_token(nonce, "SignatureNonce")?;
    let date = parse_timestamp(param(params, "Timestamp").ok_or(SignatureError::MissingField("Timestamp"))?)?;
    // An HMAC-SHA1 is 20 bytes; anything that is not its base64 cannot match.
    let presented = BASE64
        .decode(signature)
        .ok()
        .filter(|bytes| bytes.len() == 20)
        .ok_or(SignatureError::Malformed("Signature is not a base64 HMAC-SHA1"))?;

    let secret = lookup(access_key_id).ok_or(SignatureError::UnknownAccessKey)?;
    let mut variants = vec![EmptyValues::Signed];
    if params
        .iter()
        .any(|(name, value)| value.is_empty() && name != "Signature")
    {
        variants.push(EmptyValues::Skipped);
    }
    // Every candidate is computed and compared, so the time taken does not depend on which one matched.
    let mut matched = false;
    for empty in variants {
        let expected = mac(&secret, &string_to_sign_with(method, params, empty));
        matched |= constant_time::verify_slices_are_equal(expected.as_ref(), &presented).is_ok();
    }
    if !matched {
        return Err(SignatureError::SignatureMismatch);
    }
    Ok(Verified {
        access_key_id: access_key_id.to_owned(),
        date,
        nonce: nonce.to_owned(),
        scheme: Scheme::V1,
    })
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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

    /// The documentation's worked example (reference §2.2), checked exactly: its printed string to sign,
    /// signed with key `testsecret&`, gives `s/OdVWMTmNGagvWlljdAJ7Itsew=`.
    #[test]
    fn reference_doc_example() {
        let printed = "GET&%2F&AccessKeyId%3Dtestid&Action%3DCreateKey&Format%3Djson\
                       &SignatureMethod%3DHMAC-SHA1&SignatureVersion%3D1.0\
                       &Timestamp%3D2016-03-28T03%253A13%253A08Z&Version%3D2016-01-20";
        assert_eq!(
            sign(&Secret::from("testsecret"), printed),
            "s/OdVWMTmNGagvWlljdAJ7Itsew="
        );
    }

    /// The same example as the SDKs really compute it. The printed string above has lost the encoding of
    /// the `&` between pairs (`%26`), which `encode(canonicalized)` produces and every SDK sends; the
    /// documentation's own signed URL carries `Signature=41wk2SSX1GJh7fwnc5eqOfiJPFg%3D`, the value below,
    /// and the Python SDK's `get_rpcsignature` returns it too. Servers must follow the SDKs.
    #[test]
    fn reference_doc_example_as_the_sdks_sign_it() {
        let params = pairs(&[
            ("Version", "2016-01-20"),
            ("Action", "CreateKey"),
            ("Format", "json"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-03-28T03:13:08Z"),
        ]);
        assert_eq!(
            canonicalized_query(&params),
            "AccessKeyId=testid&Action=CreateKey&Format=json&SignatureMethod=HMAC-SHA1&SignatureVersion=1.0\
             &Timestamp=2016-03-28T03%3A13%3A08Z&Version=2016-01-20"
        );
        let sts = string_to_sign("GET", &params);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DCreateKey%26Format%3Djson%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-03-28T03%253A13%253A08Z%26Version%3D2016-01-20"
        );
        assert_eq!(
            sign(&Secret::from("testsecret"), &sts),
            "41wk2SSX1GJh7fwnc5eqOfiJPFg="
        );
    }

    fn signed_params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let key = AccessKey::new("testid", Secret::from("testsecret"));
        let mut params = pairs(&[
            ("Action", "GetSecretValue"),
            ("Version", "2016-01-20"),
            ("Format", "json"),
        ]);
        params.extend(pairs(extra));
        let timestamp = parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        params.extend(sign_v1(
            &key,
            "POST",
            &params,
            timestamp,
            "0123456789abcdef0123456789abcdef",
        ));
        params
    }

    fn verify(params: &[(String, String)]) -> Result<Verified, SignatureError> {
        verify_v1("POST", params, |id| {
            (id == "testid").then(|| Secret::from("testsecret"))
        })
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let params = signed_params(&[("SecretName", "a b/é*~"), ("SecretData", "{\"k\":\"v\"}")]);
        let verified = verify(&params).unwrap();
        assert_eq!(verified.access_key_id, "testid");
        assert_eq!(verified.scheme, Scheme::V1);
        assert_eq!(verified.nonce, "0123456789abcdef0123456789abcdef");
        // Order on the wire does not matter; contents do.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(verify(&reversed).is_ok());
        let mut changed = params.clone();
        changed[3].1.push('!');
        assert_eq!(verify(&changed), Err(SignatureError::SignatureMismatch));
        assert_eq!(
            verify_v1("GET", &params, |_| Some(Secret::from("testsecret"))),
            Err(SignatureError::SignatureMismatch)
        );
        assert_eq!(
            verify_v1("POST", &params, |_| None),
            Err(SignatureError::UnknownAccessKey)
        );
        assert_eq!(
            verify_v1("POST", &params, |_| Some(Secret::from("testsecreT"))),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn required_parameters() {
        let params = signed_params(&[]);
        let without = |name: &str| -> Vec<(String, String)> {
            params.iter().filter(|(n, _)| n != name).cloned().collect()
        };
        assert_eq!(
            verify(&without("Signature")),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verify(&without("AccessKeyId")),
            Err(SignatureError::MissingField("AccessKeyId"))
        );
        assert_eq!(
            verify(&without("SignatureMethod")),
            Err(SignatureError::MissingField("SignatureMethod"))
        );
        assert_eq!(
            verify(&without("SignatureVersion")),
            Err(SignatureError::MissingField("SignatureVersion"))
        );
        assert_eq!(
            verify(&without("SignatureNonce")),
            Err(SignatureError::MissingField("SignatureNonce"))
        );
        assert_eq!(
            verify(&without("Timestamp")),
            Err(SignatureError::MissingField("Timestamp"))
        );

        let with = |name: &str, value: &str| -> Vec<(String, String)> {
            params
                .iter()
                .map(|(n, v)| (n.clone(), if n == name { value.to_owned() } else { v.clone() }))
                .collect()
        };
        assert_eq!(
            verify(&with("SignatureMethod", "HMAC-SHA256")),
            Err(SignatureError::UnsupportedAlgorithm)
        );
        assert_eq!(
            verify(&with("SignatureVersion", "2.0")),
            Err(SignatureError::UnsupportedAlgorithm)
        );
        assert_eq!(
            verify(&with("Timestamp", "soon")),
            Err(SignatureError::TimestampUnparseable)
        );
        assert_eq!(
            verify(&with("Signature", "!!")).unwrap_err().code(),
            "IncompleteSignature"
        );
        assert_eq!(
            verify(&with("Signature", "AAAA")).unwrap_err().code(),
            "IncompleteSignature"
        );

        let mut duplicated = params.clone();
        duplicated.push(("Action".to_owned(), "DeleteSecret".to_owned()));
        assert_eq!(
            verify(&duplicated),
            Err(SignatureError::DuplicateParameter("Action".to_owned()))
        );
    }

    #[test]
    fn empty_values_signed_or_skipped_are_both_accepted() {
        let params = signed_params(&[("SignatureType", ""), ("SecretName", "s")]);
        assert!(verify(&params).is_ok());

        // Java-style: empty values left out of the string to sign.
        let mut java = params.clone();
        let signature = sign(
            &Secret::from("testsecret"),
            &string_to_sign_with("POST", &java, EmptyValues::Skipped),
        );
        java.iter_mut().find(|(n, _)| n == "Signature").unwrap().1 = signature;
        assert!(verify(&java).is_ok());
    }

    #[test]
    fn sign_v1_replaces_stale_signature_params() {
        let key = AccessKey::new("testid", Secret::from("testsecret"));
        let params = pairs(&[
            ("Action", "X"),
            ("Timestamp", "old"),
            ("Signature", "old"),
            ("AccessKeyId", "other"),
        ]);
        let timestamp = parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        let added = sign_v1(&key, "POST", &params, timestamp, "n");
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "AccessKeyId",
                "SignatureMethod",
                "SignatureVersion",
                "SignatureNonce",
                "Timestamp",
                "Signature"
            ]
        );
        let mut all = pairs(&[("Action", "X")]);
        all.extend(added);
        assert!(verify(&all).is_ok());
    }
}
