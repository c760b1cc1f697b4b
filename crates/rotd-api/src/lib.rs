//! rotd-api owns rotd's network listeners: the admin listener (loopback by default: `/metrics`
//! OpenMetrics text for Prometheus, `/healthz` the process is alive, `/readyz` the store is open and the
//! scheduler is running), the KMS-compatible HTTPS API ([`kms`]) that the official Alibaba Cloud SDKs talk
//! to, and the TLS material that API is served with ([`tls`]: rotd's own CA and server certificate).

pub mod admin;
pub mod kms;
pub mod tls;
