//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs, may change at any time).
//!
//! The request pipeline's decoding is private to [`super`]; [`decode_and_resolve`] runs the same steps
//! on bytes instead of an HTTP request, in the same order and with the same functions: the query and
//! form decoding of rotd-aliyun, the duplicate check over query and body together, the header values as
//! `http` would hand them over (`HeaderName`/`HeaderValue` parsing, then `to_str`), the merged
//! [`Params`], the choice of action from what each signature scheme covers ([`super::signed_action`]),
//! and the resolution of the secret names the action operates on ([`super::target::resolve`]). Signature
//! verification is left out (the `v1_verify`/`v3_verify` targets cover it), so every input reaches the
//! resolution step.
//!
//! The sequence mirrors `process` in `kms/mod.rs` rather than being shared with it; when `process`
//! changes how it decodes, this function must follow.

use axum::http::{HeaderName, HeaderValue};
use rotd_aliyun::{Scheme, SignatureError, percent};

use super::{ApiConfig, ApiError, Params, target};

/// What the decoding steps made of a request, with no parameter values (they may hold `SecretData`).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The action the request may run under the scheme it was decoded for.
    pub action: Option<String>,
    /// Every parameter name, sorted (query and body merged).
    pub param_names: Vec<String>,
    /// The secret names the action operates on, as the audit record would show them.
    pub secret_names: Vec<String>,
    /// Whether the target is a BatchGetSecretValue list.
    pub batch: bool,
    /// The version id the action creates or requests, when it takes one.
    pub version: Option<String>,
}

/// Decodes `raw_query`, `headers` and `body` as the pipeline does and resolves what the request would
/// operate on if its signature, of `scheme`, were valid. Never panics; every refusal is an [`ApiError`].
#[doc(hidden)]
pub fn decode_and_resolve(
    config: &ApiConfig,
    raw_query: &str,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
    scheme: Scheme,
) -> Result<Resolved, ApiError> {
    if raw_query.len() > super::MAX_QUERY_BYTES || body.len() > super::MAX_BODY_BYTES {
        return Err(ApiError::InvalidParameter("too large".to_owned()));
    }
    // An `http` request cannot carry a header name or value that these refuse, so neither can reach the
    // pipeline; such inputs are out of scope rather than errors of the pipeline.
    let mut parsed = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            return Err(ApiError::InvalidParameter("not an http header".to_owned()));
        };
        parsed.push((name, value));
    }

    let query = percent::parse_query(raw_query).map_err(SignatureError::from)?;
    let is_form = parsed
        .iter()
        .find(|(n, _)| *n == axum::http::header::CONTENT_TYPE)
        .and_then(|(_, v)| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body_params = if is_form || !body.is_empty() {
        percent::parse_form(body).map_err(SignatureError::from)?
    } else {
        Vec::new()
    };
    let mut all = query;
    all.extend(body_params);
    if let Some(name) = percent::find_duplicate(&all) {
        return Err(SignatureError::DuplicateParameter(name.chars().take(64).collect()).into());
    }
    let mut headers: Vec<(String, String)> = Vec::with_capacity(parsed.len());
    for (name, value) in &parsed {
        let value = value
            .to_str()
            .map_err(|_| ApiError::InvalidParameter(format!("header {name} is not ASCII")))?;
        headers.push((name.as_str().to_owned(), value.to_owned()));
    }
    let params = Params(all.into_iter().collect());
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let action = super::signed_action(
        scheme,
        header("x-acs-action"),
        params.get("Action"),
        header("x-acs-version"),
        params.get("Version"),
    )?;
    let mut resolved = Resolved {
        action: action.clone(),
        param_names: params.0.keys().cloned().collect(),
        secret_names: Vec::new(),
        batch: false,
        version: None,
    };
    let Some(action) = action else {
        return Ok(resolved);
    };
    let target = target::resolve(config, &action, &params)?;
    resolved.secret_names = target.names();
    resolved.batch = matches!(target, target::Target::Batch(_));
    resolved.version = target.version().map(ToString::to_string);
    // The typed accessors the actions use on the same parameters.
    for name in ["SecretName", "VersionId", "SecretData", "SecretsList"] {
        let _ = params.required(name);
    }
    let _ = params.bool("FetchExtendedConfig", false);
    let _ = params.bool("ForceDeleteWithoutRecovery", false);
    let _ = params.int("PageSize", 10, 1, 100);
    let _ = params.int("RecoveryWindowInDays", 30, 7, 30);
    let _ = params.with_prefix("ExtendedConfig.").count();
    Ok(resolved)
}
