//! The KMS-compatible HTTPS API (Secrets Manager, API version 2016-01-20), served RPC style as the
//! official SDKs call it: `POST /` with the parameters in the query string and `SecretData` in a form
//! body, the action in `x-acs-action` (V3) or `Action` (V1), JSON answers with a `RequestId`.
//!
//! Every request goes through one pipeline ([`handle`]): the budget of its source address (`source`,
//! `ratelimit`: before any key lookup), size limit (before the body is read), strict
//! parameter decoding with duplicates refused, signature verification by rotd-aliyun against the access
//! key in the store (skew and replay included), the per-key rate limit, resolution of the secret name(s)
//! the action operates on (`target`: the only names the action gets and the audit record shows),
//! authorization by the key's policy and the secret's resource policy, the action itself, and an audit
//! record that is on disk before the answer leaves (`audit`: a writer thread that group-commits); if the
//! record cannot be written the answer is `InternalFailure`. Errors leave through the
//! one mapping in [`error`].

mod actions;
pub mod audit;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod server;
mod source;
mod target;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rotd_aliyun::{NonceCache, RequestParts, percent};
use rotd_store::Store;
use serde_json::{Map, Value};
use source::Source;
use tokio::sync::watch;

pub use audit::{AuditLog, AuditRecord, AuditStats};
pub use error::{ApiError, AuthFailure};
pub use metrics::ApiMetrics;
pub use ratelimit::{RateLimit, RateLimiter, SourceLimiter};
pub use server::Limits;
pub use target::MAX_SECRET_PARAM_CHARS;

/// Largest request body accepted (a form body holding `SecretData`, at most 30,720 bytes once decoded,
/// so up to about 92 KiB percent-encoded). Larger bodies are refused from `Content-Length` or while
/// streaming, never buffered.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// Longest raw query string accepted; the largest legitimate parameters (a 32 KiB policy, percent-encoded)
/// fit.
pub const MAX_QUERY_BYTES: usize = 128 * 1024;

/// Settings of the API that are not in the store.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Region used in ARNs: `acs:kms:<region>:<account>:secret/<name>`. An ARN parameter of another
    /// region names no secret here.
    pub region: String,
    /// Account used in ARNs. `None` (no account configured) writes [`DEFAULT_ACCOUNT`] into the ARNs rotd
    /// returns and accepts an ARN with any account of 1–20 digits, since rotd serves one account and
    /// ARNs copied from the vendor carry the vendor's account id; `Some` accepts only that account.
    pub account: Option<String>,
    /// `HostId` in error bodies.
    pub host_id: String,
    /// CMK that wraps new secrets unless `EncryptionKeyId` names another.
    pub default_cmk: String,
    /// Budget of one access key, taken once its signature is checked.
    pub rate_limit: RateLimit,
    /// Budget of one source address (an IPv6 address counts by its /64), taken before anything else.
    pub per_source: RateLimit,
    /// Peers whose `X-Forwarded-For` names the source (load balancers, reverse proxies); from anyone
    /// else the header is ignored.
    pub trusted_proxies: Vec<rotd_core::IpNet>,
    /// Connection limits: header and body timeouts, the most connections open at once.
    pub limits: Limits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            region: "cn-hangzhou".to_owned(),
            account: None,
            host_id: "rotd".to_owned(),
            default_cmk: rotd_store::DEFAULT_CMK.to_owned(),
            rate_limit: RateLimit::default(),
            per_source: RateLimit::PER_SOURCE,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// The account written into returned ARNs when none is configured.
pub const DEFAULT_ACCOUNT: &str = "1";

impl ApiConfig {
    /// The account rotd's ARNs carry.
    pub fn arn_account(&self) -> &str {
        self.account.as_deref().unwrap_or(DEFAULT_ACCOUNT)
    }

    /// Whether an ARN's account (already checked to be 1–20 digits) is this daemon's.
    pub fn accepts_account(&self, account: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
    }
}

/// Everything a request needs, shared by all connections.
#[derive(Clone, Debug)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    audit: AuditLog,
    config: ApiConfig,
    /// Nonces seen within the replay window, per access key.
    nonces: NonceCache,
    limiter: RateLimiter,
    /// Per-source-address budgets, checked before a request costs a key lookup.
    sources: SourceLimiter,
    /// Which pre-authentication failures reach the audit log.
    pre_auth: audit::PreAuthSampler,
    metrics: ApiMetrics,
    /// Whether the daemon has a rotation backend for a secret (RotateSecret is refused otherwise).
    rotatable: Rotatable,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Answers "can this secret be rotated here?"; the daemon passes the engine's view.
pub type Rotatable = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl ApiState {
    pub fn new(store: Store, audit: AuditLog, config: ApiConfig) -> Self {
        let limiter = RateLimiter::new(config.rate_limit);
        let sources = SourceLimiter::new(config.per_source);
        let metrics = ApiMetrics::new(audit.write_histogram());
        Self {
            inner: Arc::new(Inner {
                store,
                audit,
                config,
                nonces: NonceCache::default(),
                limiter,
                sources,
                pre_auth: audit::PreAuthSampler::new(audit::PRE_AUTH_LINES_PER_SECOND),
                metrics,
                rotatable: Arc::new(|_| true),
            }),
        }
    }

    /// Sets the predicate RotateSecret consults (by default every managed secret is rotatable).
    pub fn with_rotatable(self, rotatable: Rotatable) -> Self {
        let inner = Arc::try_unwrap(self.inner).expect("with_rotatable is called before the state is shared");
        Self {
            inner: Arc::new(Inner { rotatable, ..inner }),
        }
    }

    /// The API's metrics, for the binary to register into its registry.
    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    /// Writes one audit record, carrying the count of pre-authentication failures left out since the
    /// previous line (given back if this line fails).
    async fn audit(&self, mut record: AuditRecord<'_>, request_id: &str) -> Result<(), ApiError> {
        record.suppressed = self.inner.pre_auth.take_suppressed();
        let suppressed = record.suppressed;
        match self.inner.audit.append(&record).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.inner.pre_auth.restore(suppressed);
                tracing::error!(error = %e, path = %self.inner.audit.path().display(), request_id = %request_id,
                    "Audit log write failed; refusing the request.");
                Err(ApiError::Internal)
            }
        }
    }

    /// What the audit writer has done so far (lines, syncs, failed batches).
    pub fn audit_stats(&self) -> audit::AuditStats {
        self.inner.audit.stats()
    }

    pub(crate) fn can_rotate(&self, name: &str) -> bool {
        (self.inner.rotatable)(name)
    }
}

/// The API routes. Serve with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(state: ApiState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Serves the API over TLS on `listener` until `shutdown` turns true. The listener is bound by the caller
/// (so a port conflict is a start-up error); `tls` comes from [`crate::tls::server_config`], and can be
/// reloaded in place with `RustlsConfig::reload_from_config` after `rotd tls rotate` (new connections use
/// it). Connections are HTTP/1.1 only and bounded by the [`Limits`] in the state's configuration.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: ApiState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let limits = state.inner.config.limits;
    let metrics = state.inner.metrics.clone();
    let on_open = Arc::new(move |delta| metrics.connection(delta));
    server::run(listener, tls, router(state), limits, shutdown, on_open).await
}

/// A request id shaped like the vendor's (a lowercase UUID).
fn request_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b = rotd_core::Clock::system()
            .now()
            .timestamp_nanos_opt()
            .unwrap_or(0)
            .to_be_bytes()
            .repeat(2)
            .try_into()
            .unwrap_or([0; 16]);
    }
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// What the audit record learns as the request progresses. Secret names and the version id are set only
/// from the resolved [`target::Target`], never from raw parameters.
#[derive(Debug, Default)]
struct Trace {
    access_key_id: Option<String>,
    action: Option<String>,
    /// The secrets the action operates on (one, or every entry of a batch).
    secret_names: Vec<String>,
    /// Whether the action is a batch (its names are recorded as a list).
    batch: bool,
    version_id: Option<String>,
}

impl Trace {
    fn record<'a>(&'a self, request_id: &'a str, source: &Source, result: &'a str) -> AuditRecord<'a> {
        AuditRecord {
            time: rotd_aliyun::format_timestamp(rotd_core::Clock::system().now()),
            request_id,
            access_key_id: self.access_key_id.as_deref(),
            source: source.audit_source(),
            via: source.audit_via(),
            action: self.action.as_deref(),
            secret_name: if self.batch {
                None
            } else {
                self.secret_names.first().map(String::as_str)
            },
            secret_names: self.batch.then_some(self.secret_names.as_slice()),
            version_id: self.version_id.as_deref(),
            result,
            suppressed: 0,
        }
    }
}

/// An authenticated caller and its parameters, handed to an action.
pub(crate) struct Call {
    pub key_id: String,
    pub key_policy: String,
    pub params: Params,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("key_id", &self.key_id)
            .field("params", &self.params)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The request's parameters, query and body merged (duplicates already refused). Values include
/// `SecretData` in plaintext: `Debug` shows names only, and the values are zeroized on drop.
#[derive(Default)]
pub(crate) struct Params(BTreeMap<String, String>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Params")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be present (an empty value counts as absent, as the vendor's validation does).
    pub fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::MissingParameter(name))
    }

    /// A boolean, case-insensitively (`True` from Python, `true` elsewhere).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(ApiError::InvalidParameter(format!(
                "{name} must be true or false"
            ))),
        }
    }

    pub fn int(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::InvalidParameter(format!("{name} must be an integer from {min} to {max}"))
                }),
        }
    }

    /// Parameters whose names start with `prefix`, with the prefix removed (flattened maps).
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.0
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(move |(k, v)| (&k[prefix.len()..], v.as_str()))
    }
}

/// The one request pipeline. Never panics on input; every failure is a vendor error.
async fn handle(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let clock = rotd_core::Clock::system();
    let started = clock.instant();
    let request_id = request_id();
    let mut trace = Trace::default();
    let source = source::resolve(peer, request.headers(), &state.inner.config.trusted_proxies);
    let result = process(&state, request, &mut trace, &request_id, &source).await;
    let code = match &result {
        Ok(_) => "Success",
        Err(e) => e.code(),
    };
    // A request that failed before it was authenticated is counted, and only sampled into the log:
    // it cost its sender nothing, so it must not cost a sync each.
    let written = match &result {
        Err(e) if trace.access_key_id.is_none() => {
            state.inner.metrics.auth_failure(e.auth_failure());
            state.inner.pre_auth.admit(rotd_core::Clock::system().instant())
        }
        _ => true,
    };
    let result = if written {
        let record = trace.record(&request_id, &source, code);
        match state.audit(record, &request_id).await {
            Ok(()) => result,
            Err(e) => Err(e),
        }
    } else {
        result
    };
    let code = match &result {
        Ok(_) => "Success",
        Err(e) => e.code(),
    };
    state.inner.metrics.request(
        trace.action.as_deref(),
        code,
        clock.elapsed(started).as_secs_f64(),
    );
    match result {
        Ok(mut body) => {
            body.insert("RequestId".to_owned(), Value::String(request_id));
            json_response(StatusCode::OK, Value::Object(body))
        }
        Err(e) => {
            let (code, status, message) = e.parts();
            let body = serde_json::json!({
                "RequestId": request_id,
                "HostId": state.inner.config.host_id,
                "Code": code,
                "Message": message,
            });
            json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

async fn process(
    state: &ApiState,
    request: Request,
    trace: &mut Trace,
    request_id: &str,
    source: &Source,
) -> Result<Map<String, Value>, ApiError> {
    // First, before the request costs anything (a body read, a key lookup, a signature check): the
    // budget of the address it comes from.
    if !state
        .inner
        .sources
        .try_acquire(source.ip, rotd_core::Clock::system().instant())
    {
        return Err(ApiError::Throttled);
    }
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(ApiError::UnsupportedMethod);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let raw_query = parts.uri.query().unwrap_or("");
    if raw_query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::InvalidParameter(format!(
            "the query string exceeds {MAX_QUERY_BYTES} bytes"
        )));
    }
    // The whole body must arrive within the body timeout, so a client that trickles it cannot hold the
    // connection (and a slot of the connection limit) for long.
    let body = tokio::time::timeout(
        state.inner.config.limits.body_timeout,
        axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)?
    .map_err(|_| ApiError::BodyTooLarge(MAX_BODY_BYTES))?;
    let query = percent::parse_query(raw_query).map_err(rotd_aliyun::SignatureError::from)?;
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body_params = if is_form || !body.is_empty() {
        percent::parse_form(&body).map_err(rotd_aliyun::SignatureError::from)?
    } else {
        Vec::new()
    };
    let mut all = query.clone();
    all.extend(body_params.iter().cloned());
    if let Some(name) = percent::find_duplicate(&all) {
        return Err(rotd_aliyun::SignatureError::DuplicateParameter(name.chars().take(64).collect()).into());
    }
    let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|_| ApiError::InvalidParameter(format!("header {name} is not ASCII")))?;
        headers.push((name.as_str().to_owned(), value.to_owned()));
    }
    let params = Params(all.into_iter().collect());
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    // Until the signature is checked this is only what the request claims (for the audit of a refusal);
    // the action that runs is chosen below from what the signature covers.
    let claimed_action = header("x-acs-action").or_else(|| params.get("Action").map(str::to_owned));
    trace.action = claimed_action.as_deref().map(|a| a.chars().take(64).collect());

    // Who signed: the key id comes from the Authorization header (V3) or the AccessKeyId parameter (V1).
    let claimed = match headers.iter().find(|(n, _)| n == "authorization") {
        Some((_, v)) => Some(rotd_aliyun::v3::parse_authorization(v)?.access_key_id),
        None => params.get("AccessKeyId").map(str::to_owned),
    };
    let key = match &claimed {
        Some(id) if !id.is_empty() && id.len() <= 128 => state.inner.store.access_key(id).await?,
        _ => None,
    };
    let now = rotd_core::Clock::system().now();
    let request_parts = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let secret = key.as_ref().map(|(_, s)| s.clone());
    let verified = rotd_aliyun::authenticate(&request_parts, &body_params, now, |_| secret)?;
    trace.access_key_id = Some(verified.access_key_id.clone());
    let action = signed_action(
        verified.scheme,
        header("x-acs-action").as_deref(),
        params.get("Action"),
        header("x-acs-version").as_deref(),
        params.get("Version"),
    )?;
    trace.action = action.as_deref().map(|a| a.chars().take(64).collect());
    let Some((info, _)) = key else {
        return Err(ApiError::Internal);
    };
    if !info.enabled {
        return Err(ApiError::AccessKeyDisabled);
    }
    if !state
        .inner
        .limiter
        .try_acquire(&info.id, rotd_core::Clock::system().instant())
    {
        return Err(ApiError::Throttled);
    }
    // Only now is the nonce taken: a disabled or throttled key must not be able to fill the replay cache.
    state
        .inner
        .nonces
        .check_and_insert(&verified.access_key_id, &verified.nonce, now)?;
    let action = action.ok_or(ApiError::MissingParameter("Action"))?;
    // The secrets the action operates on, resolved once: the audit record names exactly these.
    let target = target::resolve(&state.inner.config, &action, &params)?;
    trace.secret_names = target.names();
    trace.batch = matches!(target, target::Target::Batch(_));
    trace.version_id = target.version().map(ToString::to_string);
    let call = Call {
        key_id: info.id,
        key_policy: info.policy,
        params,
        now,
    };
    // Fail closed: an action that changes something is recorded before it runs, so a change can never
    // happen without an audit record. Reads are recorded once, with their result, after they run.
    if !is_read_only(&action) {
        let record = trace.record(request_id, source, "Started");
        state.audit(record, request_id).await?;
    }
    let out = actions::dispatch(state, &action, call, target).await?;
    // A read records the version it returned (GetSecretValue without a VersionId reads a stage).
    if !trace.batch
        && let Some(Value::String(v)) = out.get("VersionId")
    {
        trace.version_id = Some(v.clone());
    }
    Ok(out)
}

/// The action (and API version) a request may run, taken only from what its signature covers.
///
/// V3 signs every `x-acs-*` header and the query, so `x-acs-action` (or an `Action` parameter) is signed.
/// V1 signs the parameters and no header at all: the action is the signed `Action` parameter, the version
/// the signed `Version`. The legacy SDK also sends `x-acs-action`/`x-acs-version` headers, unsigned;
/// they are accepted only when they agree with the signed parameters, since anyone who can touch a
/// request in flight could otherwise turn a read into a delete. Where both forms are present they must
/// agree, for either scheme.
fn signed_action(
    scheme: rotd_aliyun::Scheme,
    header_action: Option<&str>,
    param_action: Option<&str>,
    header_version: Option<&str>,
    param_version: Option<&str>,
) -> Result<Option<String>, ApiError> {
    for (what, header, param) in [
        ("x-acs-action", header_action, param_action),
        ("x-acs-version", header_version, param_version),
    ] {
        if let (Some(h), Some(p)) = (header, param)
            && h != p
        {
            return Err(ApiError::InvalidParameter(format!(
                "the {what} header does not match the signed parameter"
            )));
        }
    }
    Ok(match scheme {
        rotd_aliyun::Scheme::V3 => header_action.or(param_action).map(str::to_owned),
        rotd_aliyun::Scheme::V1 => {
            if header_action.is_some() && param_action.is_none() {
                return Err(ApiError::InvalidParameter(
                    "a V1-signed request names its action in the signed Action parameter, not in an unsigned header"
                        .to_owned(),
                ));
            }
            param_action.map(str::to_owned)
        }
    })
}

/// Actions that only read: audited after they run.
fn is_read_only(action: &str) -> bool {
    matches!(
        action,
        "GetSecretValue"
            | "BatchGetSecretValue"
            | "DescribeSecret"
            | "ListSecrets"
            | "ListSecretVersionIds"
            | "GetRandomPassword"
            | "GetSecretPolicy"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_calls_debug_names_only() {
        let params = Params(BTreeMap::from([
            ("SecretData".to_owned(), "hunter2-plaintext".to_owned()),
            ("SecretName".to_owned(), "app/db".to_owned()),
        ]));
        let call = Call {
            key_id: "LTAIkey".to_owned(),
            key_policy: "{}".to_owned(),
            params,
            now: rotd_core::Clock::system().now(),
        };
        let shown = format!("{call:?} {:?}", call.params);
        assert!(
            shown.contains("SecretData") && shown.contains("SecretName"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2") && !shown.contains("app/db"), "{shown}");
    }
}
