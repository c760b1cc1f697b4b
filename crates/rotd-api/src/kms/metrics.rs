//! The API's Prometheus metrics, registered by the binary into the registry it owns
//! ([`ApiMetrics::register`]). Label values come from fixed sets only: `action` from the actions the API
//! serves (anything else is `other`), `code` from the vendor codes of [`super::ApiError`] (and
//! `Success`), `reason` from [`AuthFailure`]; never a key id, an address, a secret name or error text.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::AuthFailure;

type Label = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Request latency buckets: 0.5 ms … ~16 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Audit batch (write + fdatasync) latency buckets: 0.1 ms … ~3 s.
pub(crate) fn audit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the KMS API. Cheap to clone (the series are shared).
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<Labels2, Counter>,
    auth_failures: Family<Label, Counter>,
    duration: Histogram,
    /// Observed by the audit writer thread, once per batch.
    audit_write: Histogram,
    connections: Gauge<i64, AtomicI64>,
}

impl ApiMetrics {
    /// The API's metrics; `audit_write` is the audit log's batch latency histogram.
    pub(crate) fn new(audit_write: Histogram) -> Self {
        Self {
            requests: Family::default(),
            auth_failures: Family::default(),
            duration: request_histogram(),
            audit_write,
            connections: Gauge::default(),
        }
    }

    /// Registers every series into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rotd_api_requests",
            "KMS API requests by action and result code",
            self.requests.clone(),
        );
        registry.register(
            "rotd_api_auth_failures",
            "KMS API requests that failed before authentication, by reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "rotd_api_request_duration_seconds",
            "Time from a KMS API request's head to its answer, its audit line included",
            self.duration.clone(),
        );
        registry.register(
            "rotd_api_audit_write_seconds",
            "Time to write and fdatasync one batch of audit lines",
            self.audit_write.clone(),
        );
        registry.register(
            "rotd_api_connections_open",
            "KMS API connections open now",
            self.connections.clone(),
        );
    }

    /// Counts a request's outcome. `action` is what the request named, if anything; only an action the
    /// API serves becomes a label value.
    pub(crate) fn request(&self, action: Option<&str>, code: &'static str, seconds: f64) {
        let action = action
            .and_then(|a| super::actions::ACTIONS.iter().find(|k| **k == a))
            .copied()
            .unwrap_or("other");
        self.requests
            .get_or_create(&[("action", action), ("code", code)])
            .inc();
        self.duration.observe(seconds);
    }

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// +1 when a connection opens, -1 when it closes.
    pub(crate) fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// How many requests failed before authentication for `reason` so far.
    pub fn auth_failures(&self, reason: AuthFailure) -> u64 {
        self.auth_failures
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_labels_are_bounded() {
        let m = ApiMetrics::new(audit_histogram());
        m.request(Some("GetSecretValue"), "Success", 0.01);
        m.request(Some("x".repeat(64).as_str()), "InvalidParameter", 0.01);
        m.request(None, "IncompleteSignature", 0.01);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        assert!(
            out.contains(r#"rotd_api_requests_total{action="GetSecretValue",code="Success"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"rotd_api_requests_total{action="other",code="InvalidParameter"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"rotd_api_requests_total{action="other",code="IncompleteSignature"} 1"#),
            "{out}"
        );
        assert!(!out.contains("xxxx"), "{out}");
    }
}
