//! rotd-api owns rotd's network listeners. Today that is the admin listener (loopback by default):
//! `/metrics` (OpenMetrics text for Prometheus), `/healthz` (the process is alive) and `/readyz` (the
//! store is open and the scheduler is running). The KMS-compatible HTTPS API joins it here.

pub mod admin;
