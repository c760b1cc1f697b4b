//! The API's Prometheus metrics, registered by the binary into the registry it owns
//! ([`ApiMetrics::register`]). Label values come from fixed sets only: `reason` from [`AuthFailure`],
//! never a key id, an address or error text.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::error::AuthFailure;

type Label = [(&'static str, &'static str); 1];

/// Every metric of the KMS API. Cheap to clone (the series are shared).
#[derive(Clone, Debug, Default)]
pub struct ApiMetrics {
    auth_failures: Family<Label, Counter>,
}

impl ApiMetrics {
    /// Registers every series into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rotd_api_auth_failures",
            "KMS API requests that failed before authentication, by reason",
            self.auth_failures.clone(),
        );
    }

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// How many requests failed before authentication for `reason` so far.
    pub fn auth_failures(&self, reason: AuthFailure) -> u64 {
        self.auth_failures
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }
}
