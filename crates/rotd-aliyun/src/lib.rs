//! rotd-aliyun owns Alibaba Cloud OpenAPI request signing, both directions: rotd's clients sign requests
//! with it, and rotd's KMS-compatible API verifies the official SDKs' requests with it. It implements the
//! two schemes the SDKs use, ACS3-HMAC-SHA256 ([`v3`], the default: an `Authorization` header over canonical
//! headers) and the legacy RPC HMAC-SHA1 ([`v1`], a `Signature` query parameter over every parameter,
//! form-body ones included), plus what a server needs around them: strict form decoding ([`percent`]),
//! the clock-skew rule, a bounded replay cache ([`NonceCache`]) and one mapping from every failure to the
//! vendor's error code and HTTP status ([`SignatureError`]).
//!
//! It does no IO and reads no clock: requests arrive as [`RequestParts`], time as a `now` argument, and
//! the access-key secret through a caller-supplied lookup. Crypto comes only from aws-lc-rs. Secrets are
//! [`rotd_core::Secret`] values and never appear in an error, a `Debug` output or a string this crate
//! returns other than a signature.
//!
//! Where the official SDKs disagree with each other (Java percent-encodes V3 query *names* and drops empty
//! V1 parameters; Python and Go do neither), signing follows the Python SDK byte for byte. Verification
//! accepts either V1 form, and refuses V3 query names outside `A-Za-z0-9-_.~` (for which the SDKs agree),
//! since V3 writes names unescaped and such a name could sign like other parameters.

pub mod percent;
pub mod v1;
pub mod v3;

mod error;
mod nonce;
mod time;

use std::fmt;

use chrono::{DateTime, Utc};
use rotd_core::Secret;

pub use error::SignatureError;
pub use nonce::{DEFAULT_MAX_NONCES, NonceCache, NonceCacheConfig};
pub use time::{MAX_CLOCK_SKEW, check_skew, format_timestamp, parse_timestamp};

/// The parts of an HTTP request that signatures cover, borrowed from wherever the caller holds them.
///
/// `path` is the request path exactly as it appeared on the wire (still percent-encoded, without the query);
/// `query` is the query string decoded by [`percent::parse_query`], in wire order with duplicates kept;
/// `headers` are all received headers, names in any case, a repeated header as repeated entries; `body` is
/// the raw body bytes.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl fmt::Debug for RequestParts<'_> {
    /// The body is shown by length only: it is where `SecretData` travels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// An access key pair as a client holds it. `Debug` shows the id and redacts the secret.
#[derive(Clone)]
pub struct AccessKey {
    id: String,
    secret: Secret,
}

impl AccessKey {
    pub fn new(id: impl Into<String>, secret: Secret) -> Self {
        Self {
            id: id.into(),
            secret,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Which signature scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ACS3-HMAC-SHA256 in the `Authorization` header.
    V3,
    /// RPC HMAC-SHA1 in the `Signature` parameter.
    V1,
}

/// What a valid signature established: who signed, when they say they did, and with which nonce. The
/// signature check alone does not judge `date` or `nonce`; [`verify_request`] does, or the caller does with
/// [`authenticate`] (which checks the skew) and [`NonceCache::check_and_insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub date: DateTime<Utc>,
    pub nonce: String,
    pub scheme: Scheme,
}

/// Checks a request's signature, of whichever scheme it uses, and its clock skew against `now`, but
/// records nothing: the caller decides what else must hold (the key is enabled, it has rate-limit budget)
/// before the nonce is taken with [`NonceCache::check_and_insert`], so that a disabled or throttled key
/// cannot fill the replay cache. [`verify_request`] does both steps at once.
///
/// A request with an `Authorization` header is verified as V3; otherwise one with a `Signature` query
/// parameter as V1. `body_params` are the form-body parameters as the caller decoded them with
/// [`percent::parse_form`] (empty when the body is not a form); V1 signs them together with the query and
/// V3 ignores them (it covers the body through its hash). `lookup` maps an access key id to its secret;
/// `None` is reported as `InvalidAccessKeyId.NotFound`.
pub fn authenticate(
    request: &RequestParts<'_>,
    body_params: &[(String, String)],
    now: DateTime<Utc>,
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Verified, SignatureError> {
    let has_authorization = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let verified = if has_authorization {
        v3::verify_v3(request, lookup)?
    } else if request.query.iter().any(|(name, _)| name == "Signature") {
        let mut params = Vec::with_capacity(request.query.len() + body_params.len());
        params.extend_from_slice(request.query);
        params.extend_from_slice(body_params);
        v1::verify_v1(request.method, &params, lookup)?
    } else {
        return Err(SignatureError::MissingSignature);
    };
    check_skew(verified.date, now)?;
    Ok(verified)
}

/// Authenticates a request completely: [`authenticate`], then records the nonce in `nonces` (only after
/// the signature is known good, so unauthenticated traffic cannot consume the replay cache).
pub fn verify_request(
    request: &RequestParts<'_>,
    body_params: &[(String, String)],
    now: DateTime<Utc>,
    nonces: &NonceCache,
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Verified, SignatureError> {
    let verified = authenticate(request, body_params, now, lookup)?;
    nonces.check_and_insert(&verified.access_key_id, &verified.nonce, now)?;
    Ok(verified)
}

/// A fresh signature nonce: 32 lowercase hex characters from the system CSPRNG, the shape the SDKs send.
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG only fails if the OS cannot provide randomness at all, in which case no request
    // could be signed safely anyway.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    hex::encode(bytes)
}

/// Longest access key id or nonce accepted; real ones are 24–32 characters. Anything longer is refused as
/// malformed before any work is done on it.
const MAX_TOKEN_LEN: usize = 128;

/// Checks the shape of an access key id or nonce taken from a request: non-empty, bounded, printable ASCII
/// without spaces, so it can be logged and stored without escaping.
fn check_token(value: &str, what: &'static str) -> Result<(), SignatureError> {
    if value.is_empty() {
        return Err(SignatureError::MissingField(what));
    }
    if value.len() > MAX_TOKEN_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignatureError::Malformed(what));
    }
    Ok(())
}

/// Rejects a parameter list in which some name occurs twice. The duplicated name is echoed to the client
/// (it is a parameter name, not a value), shortened so a hostile name cannot bloat the error.
fn reject_duplicates(params: &[(String, String)]) -> Result<(), SignatureError> {
    match percent::find_duplicate(params) {
        None => Ok(()),
        Some(name) => Err(SignatureError::DuplicateParameter(
            name.chars().take(64).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_nonces_look_like_the_sdks() {
        let (a, b) = (random_nonce(), random_nonce());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn debug_output_hides_secrets_and_bodies() {
        let key = AccessKey::new("ak-visible", Secret::from("hunter2-secret"));
        let shown = format!("{key:?}");
        assert!(shown.contains("ak-visible") && !shown.contains("hunter2"));
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: &[],
            headers: &[],
            body: b"SecretData=hunter2-secret",
        };
        let shown = format!("{parts:?}");
        assert!(shown.contains("body_len: 25") && !shown.contains("hunter2"));
    }

    #[test]
    fn token_shapes() {
        assert!(check_token("0123456789abcdef", "nonce").is_ok());
        assert_eq!(
            check_token("", "nonce"),
            Err(SignatureError::MissingField("nonce"))
        );
        assert_eq!(
            check_token("a b", "nonce"),
            Err(SignatureError::Malformed("nonce"))
        );
        assert_eq!(
            check_token(&"x".repeat(129), "nonce"),
            Err(SignatureError::Malformed("nonce"))
        );
        assert_eq!(check_token("é", "nonce"), Err(SignatureError::Malformed("nonce")));
    }

    #[test]
    fn duplicate_names_are_shortened() {
        let long = "n".repeat(1000);
        let params = vec![(long.clone(), "1".to_owned()), (long, "2".to_owned())];
        match reject_duplicates(&params) {
            Err(SignatureError::DuplicateParameter(name)) => assert_eq!(name.len(), 64),
            other => panic!("unexpected {other:?}"),
        }
    }
}
