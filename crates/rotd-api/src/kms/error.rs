//! The one mapping from everything the KMS API can refuse to the vendor's error code, HTTP status and
//! message, and the JSON error body the SDKs parse (`{"RequestId","HostId","Code","Message"}`).
//!
//! No variant carries a secret value: parameter errors name the parameter, store errors are reduced to
//! their vendor code, and anything unexpected becomes `InternalFailure` with a generic message (the cause
//! is logged by the handler, and store errors never contain values either).

use rotd_aliyun::SignatureError;
use rotd_store::StoreError;

/// Why a KMS API request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Authentication failed in rotd-aliyun (signature, timestamp, nonce, encoding, duplicates).
    Signature(SignatureError),
    /// A required parameter is absent.
    MissingParameter(&'static str),
    /// A parameter is present but not acceptable; the text names it and says why, without its value.
    InvalidParameter(String),
    /// The body is larger than the API accepts; it was refused before being read.
    BodyTooLarge(usize),
    /// The body did not arrive within the body timeout.
    BodyTimeout,
    /// Only `POST` is served.
    UnsupportedMethod,
    /// The access key exists but is disabled.
    AccessKeyDisabled,
    /// The access key's policy or the secret's resource policy does not allow this.
    NoPermission,
    /// The secret, version or stage does not exist.
    NotFound,
    AlreadyExists,
    InDeleteWindow,
    LimitExceeded(String),
    Throttled,
    Unavailable,
    Internal,
}

impl ApiError {
    /// The vendor code, HTTP status and client-facing message, in one exhaustive match.
    pub fn parts(&self) -> (&'static str, u16, String) {
        match self {
            Self::Signature(e) => (e.code(), e.http_status(), e.message()),
            Self::MissingParameter(p) => (
                "MissingParameter",
                400,
                format!(
                    "The input parameter {p} that is mandatory for processing this request is not supplied."
                ),
            ),
            Self::InvalidParameter(m) => ("InvalidParameter", 400, format!("The parameter is invalid: {m}.")),
            Self::BodyTooLarge(limit) => (
                "InvalidParameter",
                400,
                format!("The request body exceeds the limit of {limit} bytes."),
            ),
            Self::BodyTimeout => (
                "RequestTimeout",
                408,
                "The request body was not received in time.".to_owned(),
            ),
            Self::UnsupportedMethod => (
                "UnsupportedHTTPMethod",
                403,
                "This HTTP method is not supported; use POST.".to_owned(),
            ),
            Self::AccessKeyDisabled => (
                "Forbidden.AccessKey",
                403,
                "The specified access key is disabled.".to_owned(),
            ),
            Self::NoPermission => (
                "Forbidden.NoPermission",
                403,
                "This operation is forbidden by the access key policy or the secret policy.".to_owned(),
            ),
            Self::NotFound => (
                "Forbidden.ResourceNotFound",
                404,
                "The resource is not found.".to_owned(),
            ),
            Self::AlreadyExists => (
                "Rejected.ResourceExist",
                409,
                "The resource already exists.".to_owned(),
            ),
            Self::InDeleteWindow => (
                "Rejected.ResourceInDeleteWindow",
                409,
                "The secret is planned to be deleted.".to_owned(),
            ),
            Self::LimitExceeded(m) => (
                "Rejected.LimitExceeded",
                400,
                format!("The limit is exceeded: {m}."),
            ),
            // No `x-acs-retry-after` header is sent: with it the Python SDK raises ThrottlingException
            // instead of ClientException(code='Rejected.Throttling'), which is what the vendor's clients
            // match on to back off.
            Self::Throttled => ("Rejected.Throttling", 429, "QPS Limit Exceeded".to_owned()),
            Self::Unavailable => (
                "ServiceUnavailableTemporary",
                503,
                "The service is temporarily unavailable; retry later.".to_owned(),
            ),
            Self::Internal => (
                "InternalFailure",
                500,
                "An internal error occurred; retry later.".to_owned(),
            ),
        }
    }

    pub fn code(&self) -> &'static str {
        self.parts().0
    }
}

/// Why a request failed before it was authenticated: the `reason` label of
/// `rotd_api_auth_failures_total`, a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// The source address's budget was spent (nothing else was looked at).
    Throttled,
    /// No signature at all.
    Unsigned,
    /// A signature that does not match (wrong secret, altered request, body hash).
    BadSignature,
    /// A claimed access key id the store does not have.
    UnknownKey,
    /// A timestamp outside the allowed skew, or unreadable.
    Timestamp,
    /// Anything else: method, size, encoding, duplicates, a malformed signature, a body too slow.
    Malformed,
}

impl AuthFailure {
    pub const ALL: [Self; 6] = [
        Self::Throttled,
        Self::Unsigned,
        Self::BadSignature,
        Self::UnknownKey,
        Self::Timestamp,
        Self::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::Timestamp => "timestamp",
            Self::Malformed => "malformed",
        }
    }
}

impl ApiError {
    /// The reason label of an error that ended a request before authentication.
    pub fn auth_failure(&self) -> AuthFailure {
        match self {
            Self::Throttled => AuthFailure::Throttled,
            Self::Signature(e) => match e {
                SignatureError::MissingSignature => AuthFailure::Unsigned,
                SignatureError::SignatureMismatch | SignatureError::BodyHashMismatch => {
                    AuthFailure::BadSignature
                }
                SignatureError::UnknownAccessKey => AuthFailure::UnknownKey,
                SignatureError::TimestampUnparseable | SignatureError::TimestampSkew => {
                    AuthFailure::Timestamp
                }
                SignatureError::Malformed(_)
                | SignatureError::MissingField(_)
                | SignatureError::UnsupportedAlgorithm
                | SignatureError::MissingSignedHeader(_)
                | SignatureError::UnsignedHeader(_)
                | SignatureError::NonceReused
                | SignatureError::NonceQuotaExceeded
                | SignatureError::NonceCacheFull
                | SignatureError::UnsupportedParameterName
                | SignatureError::DuplicateParameter(_)
                | SignatureError::MalformedEncoding(_) => AuthFailure::Malformed,
            },
            Self::MissingParameter(_)
            | Self::InvalidParameter(_)
            | Self::BodyTooLarge(_)
            | Self::BodyTimeout
            | Self::UnsupportedMethod
            | Self::AccessKeyDisabled
            | Self::NoPermission
            | Self::NotFound
            | Self::AlreadyExists
            | Self::InDeleteWindow
            | Self::LimitExceeded(_)
            | Self::Unavailable
            | Self::Internal => AuthFailure::Malformed,
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        Self::Signature(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SecretNotFound { .. }
            | StoreError::VersionNotFound { .. }
            | StoreError::StageNotFound { .. }
            // A CMK the request itself names (CreateSecret's EncryptionKeyId) that the keyring lacks.
            | StoreError::KeyNotFound { version: None, .. } => Self::NotFound,
            StoreError::AlreadyExists { .. } | StoreError::VersionConflict { .. } => Self::AlreadyExists,
            StoreError::PendingDeletion { .. } => Self::InDeleteWindow,
            StoreError::NotPendingDeletion { .. } => {
                Self::InvalidParameter("the secret is not scheduled for deletion".to_owned())
            }
            // Validation messages describe inputs by length and shape, never echo a value.
            StoreError::Invalid(v) => Self::InvalidParameter(v.to_string()),
            StoreError::LimitExceeded(m) => Self::LimitExceeded(m),
            StoreError::StageConflict { .. } => Self::Unavailable,
            e if e.is_retryable() => Self::Unavailable,
            // A stored data key wrapped by a CMK version missing from the daemon's keyring is the
            // server's fault (a keyring the daemon has not reloaded, or lost), never the client's: the
            // secret exists, and "not found" would send clients hunting for a deleted secret.
            StoreError::KeyNotFound { version: Some(_), .. }
            | StoreError::Decrypt { .. }
            | StoreError::Keyring(_)
            | StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::Migrate(_) => {
                tracing::error!(error = %e, "Store failure while serving a KMS request.");
                Self::Internal
            }
        }
    }
}

impl From<rotd_core::ValidationError> for ApiError {
    fn from(e: rotd_core::ValidationError) -> Self {
        Self::InvalidParameter(e.to_string())
    }
}
