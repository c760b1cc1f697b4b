//! Why signature verification or replay checking refused a request; never carries a secret or a
//! string-to-sign.

use thiserror::Error;

use crate::percent::DecodeError;

/// Why a request failed signature verification, or why the replay cache refused it.
///
/// Every variant maps to exactly one vendor error code and HTTP status through [`SignatureError::code`]
/// and [`SignatureError::http_status`], and to the message an SDK user sees through
/// [`SignatureError::message`]. `Display` is the operator-facing text for logs: lowercase, no trailing
/// period.
///
/// No variant carries secret material. Variants describe *what* was wrong, never echo a value that might
/// be sensitive: in particular no error carries a string-to-sign, because the V1 string-to-sign contains the
/// form-body parameters, and those include `SecretData` in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// Neither an `Authorization` header nor a `Signature` parameter is present.
    #[error("request is not signed: no authorization header and no signature parameter")]
    MissingSignature,
    /// The `Authorization` header (or one of the V1 signature parameters) cannot be parsed.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// A parameter or header that the signature scheme requires is absent.
    #[error("missing required signature field {0}")]
    MissingField(&'static str),
    /// The request names an algorithm other than ACS3-HMAC-SHA256 (V3) or HMAC-SHA1 version 1.0 (V1).
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// `SignedHeaders` lists a header the request does not carry.
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    /// A header that must be covered by the signature is not listed in `SignedHeaders`.
    #[error("header {0} is not covered by the signature")]
    UnsignedHeader(String),
    /// `x-acs-content-sha256` is not the SHA-256 of the body that arrived.
    #[error("x-acs-content-sha256 does not match the request body")]
    BodyHashMismatch,
    /// No access key with this id exists (or it is not usable; the caller decides).
    #[error("access key not found")]
    UnknownAccessKey,
    /// The signature was computed with a different secret or over a different request.
    #[error("signature does not match")]
    SignatureMismatch,
    /// `x-acs-date` / `Timestamp` is not a UTC date-time.
    #[error("request timestamp is not a valid date-time")]
    TimestampUnparseable,
    /// `x-acs-date` / `Timestamp` is further than [`crate::MAX_CLOCK_SKEW`] from the server clock.
    #[error("request timestamp is outside the allowed clock skew")]
    TimestampSkew,
    /// The (access key, nonce) pair was already seen within the replay window.
    #[error("signature nonce has already been used")]
    NonceReused,
    /// This access key has as many nonces in the replay cache as it is allowed; it is sending faster than
    /// the cache is sized for.
    #[error("replay cache quota of this access key is exhausted")]
    NonceQuotaExceeded,
    /// The replay cache is full across all access keys.
    #[error("replay cache is full")]
    NonceCacheFull,
    /// A V3 query parameter name is empty or holds a character outside `A-Za-z0-9-_.~`: V3 writes names
    /// into the canonical query unescaped, so such a name could sign like a different set of parameters.
    #[error("a query parameter name holds characters outside A-Za-z0-9-_.~")]
    UnsupportedParameterName,
    /// The same parameter name occurs more than once (in the query, or in query and body together).
    #[error("parameter {0} is duplicated")]
    DuplicateParameter(String),
    /// A query string or form body is not valid percent-encoded UTF-8.
    #[error("malformed parameter encoding: {0}")]
    MalformedEncoding(#[from] DecodeError),
}

/// The vendor's message for `IncompleteSignature`; every signature problem starts with it so that SDK
/// users searching for the vendor's text find the vendor's documentation.
const INCOMPLETE: &str = "The request signature does not conform to Aliyun standards.";

impl SignatureError {
    /// The vendor error code (`Code` in the JSON error body).
    ///
    /// A wrong signature is reported as `IncompleteSignature`, not the POP gateway's
    /// `SignatureDoesNotMatch`: `IncompleteSignature` (400) is the code the KMS documentation lists among
    /// its common errors, and the message says plainly that the signature does not match.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature
            | Self::Malformed(_)
            | Self::MissingField(_)
            | Self::UnsupportedAlgorithm
            | Self::MissingSignedHeader(_)
            | Self::UnsignedHeader(_)
            | Self::BodyHashMismatch
            | Self::SignatureMismatch => "IncompleteSignature",
            Self::UnknownAccessKey => "InvalidAccessKeyId.NotFound",
            Self::TimestampUnparseable | Self::TimestampSkew => "IllegalTimestamp",
            Self::NonceReused => "SignatureNonceUsed",
            Self::NonceQuotaExceeded => "Rejected.Throttling",
            Self::NonceCacheFull => "ServiceUnavailableTemporary",
            Self::DuplicateParameter(_) | Self::MalformedEncoding(_) | Self::UnsupportedParameterName => {
                "InvalidParameter"
            }
        }
    }

    /// The HTTP status the vendor uses for [`SignatureError::code`].
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MissingSignature
            | Self::Malformed(_)
            | Self::MissingField(_)
            | Self::UnsupportedAlgorithm
            | Self::MissingSignedHeader(_)
            | Self::UnsignedHeader(_)
            | Self::BodyHashMismatch
            | Self::SignatureMismatch
            | Self::TimestampUnparseable
            | Self::TimestampSkew
            | Self::NonceReused
            | Self::DuplicateParameter(_)
            | Self::UnsupportedParameterName
            | Self::MalformedEncoding(_) => 400,
            Self::UnknownAccessKey => 404,
            Self::NonceQuotaExceeded => 429,
            Self::NonceCacheFull => 503,
        }
    }

    /// The client-facing message (`Message` in the JSON error body), phrased like the vendor's.
    pub fn message(&self) -> String {
        match self {
            Self::SignatureMismatch => format!("{INCOMPLETE} The signature does not match."),
            Self::MissingSignature
            | Self::Malformed(_)
            | Self::MissingField(_)
            | Self::UnsupportedAlgorithm
            | Self::MissingSignedHeader(_)
            | Self::UnsignedHeader(_)
            | Self::BodyHashMismatch => format!("{INCOMPLETE} Cause: {self}."),
            Self::UnknownAccessKey => "Specified access key is not found.".to_owned(),
            Self::TimestampUnparseable => {
                "The specified Timestamp or x-acs-date is not a valid UTC date-time.".to_owned()
            }
            Self::TimestampSkew => {
                "The specified Timestamp or x-acs-date is more than 15 minutes away from the server time."
                    .to_owned()
            }
            Self::NonceReused => "Specified signature nonce was used already.".to_owned(),
            Self::NonceQuotaExceeded => "QPS Limit Exceeded".to_owned(),
            Self::NonceCacheFull => "The service is temporarily unavailable; retry later.".to_owned(),
            Self::DuplicateParameter(name) => format!("The parameter {name} is specified more than once."),
            Self::UnsupportedParameterName => {
                "A query parameter name may hold only A-Z, a-z, 0-9, -, _, . and ~.".to_owned()
            }
            Self::MalformedEncoding(_) => {
                "The request parameters are not valid percent-encoded UTF-8.".to_owned()
            }
        }
    }
}
