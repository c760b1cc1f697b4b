//! The engine's Prometheus metrics, registered into the registry the binary owns
//! ([`Metrics::register`]). Label sets are bounded: `secret` comes from configuration, `kind`
//! from the backend list, `result` and `op` from fixed sets here. No error text or account name is ever
//! a label.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn duration_histogram() -> Histogram {
    // 50 ms … ~27 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// Every metric the engine exports. Cheap to clone (the series are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    rotations: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    last_success: Family<Labels, Gauge<i64, AtomicI64>>,
    next_due: Family<Labels, Gauge<i64, AtomicI64>>,
    failures: Family<Labels, Gauge<i64, AtomicI64>>,
    quarantined: Family<Labels, Gauge<i64, AtomicI64>>,
    awaiting_first: Family<Labels, Gauge<i64, AtomicI64>>,
    in_progress: Gauge<i64, AtomicI64>,
    journal_open: Gauge<i64, AtomicI64>,
    open_since: Family<Labels, Gauge<i64, AtomicI64>>,
    step_timeout: Gauge<i64, AtomicI64>,
    backend_errors: Family<Labels, Counter>,
    backend_calls: Family<Labels, Counter>,
    lagging: Family<Labels, Gauge<i64, AtomicI64>>,
    identity: Family<Labels, Gauge<i64, AtomicI64>>,
    /// The node each secret's `lagging` series names, so a change of node (or recovery) removes it.
    lagging_node: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl Default for Metrics {
    /// Metrics registered nowhere (tests, benches).
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

impl Metrics {
    /// Creates the engine's series and registers them into `r`.
    pub fn register(r: &mut Registry) -> Self {
        let rotations = Family::<Labels, Counter>::default();
        r.register(
            "rotd_rotations",
            "Rotation attempts by secret type and result",
            rotations.clone(),
        );
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        r.register(
            "rotd_rotation_duration_seconds",
            "Time from the start of an attempt to its end",
            duration.clone(),
        );
        let last_success = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_last_success_timestamp_seconds",
            "When each secret last rotated successfully",
            last_success.clone(),
        );
        let next_due = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_next_due_timestamp_seconds",
            "When each secret's next rotation is due",
            next_due.clone(),
        );
        let failures = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_rotation_failures_consecutive",
            "Failed attempts in a row per secret",
            failures.clone(),
        );
        let quarantined = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_quarantined",
            "1 while a secret's rotation is quarantined",
            quarantined.clone(),
        );
        let awaiting_first = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_awaiting_first_value",
            "1 while a declared secret has no value yet (its accounts are being created) or, with dual accounts, only one",
            awaiting_first.clone(),
        );
        let lagging = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_rotation_lagging_node",
            "1 while a secret's rotation is held back by one node of its target (down, or refusing the change); the node label names it",
            lagging.clone(),
        );
        let identity = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_target_identity_mismatch",
            "1 while a secret's target presented an identity other than the pinned one at the last attempt (an SSH host key); nothing was sent to it",
            identity.clone(),
        );
        let in_progress = Gauge::<i64, AtomicI64>::default();
        r.register(
            "rotd_rotations_in_progress",
            "Rotations running now",
            in_progress.clone(),
        );
        let journal_open = Gauge::<i64, AtomicI64>::default();
        r.register(
            "rotd_journal_open_rotations",
            "Rotations started but not yet promoted",
            journal_open.clone(),
        );
        let open_since = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        r.register(
            "rotd_rotation_open_since_timestamp_seconds",
            "When the secret's open rotation started (unix seconds); no series while none is open",
            open_since.clone(),
        );
        let step_timeout = Gauge::<i64, AtomicI64>::default();
        r.register(
            "rotd_rotation_step_timeout_seconds",
            "The configured [rotation] step_timeout: how long one step of a rotation may take",
            step_timeout.clone(),
        );
        let backend_errors = Family::<Labels, Counter>::default();
        r.register(
            "rotd_backend_errors",
            "Backend call failures by backend and operation",
            backend_errors.clone(),
        );
        let backend_calls = Family::<Labels, Counter>::default();
        r.register(
            "rotd_backend_calls",
            "Backend calls by backend and operation",
            backend_calls.clone(),
        );
        Self {
            rotations,
            duration,
            last_success,
            next_due,
            failures,
            quarantined,
            awaiting_first,
            in_progress,
            journal_open,
            backend_errors,
            lagging,
            identity,
            open_since,
            step_timeout,
            lagging_node: Default::default(),
            backend_calls,
        }
    }

    pub fn attempt_finished(&self, kind: &str, result: &str, seconds: f64) {
        self.rotations
            .get_or_create(&labels(&[("kind", kind), ("result", result)]))
            .inc();
        self.duration
            .get_or_create(&labels(&[("kind", kind)]))
            .observe(seconds);
    }

    pub fn set_last_success(&self, secret: &str, unix: i64) {
        self.last_success
            .get_or_create(&labels(&[("secret", secret)]))
            .set(unix);
    }

    pub fn set_next_due(&self, secret: &str, unix: Option<i64>) {
        let l = labels(&[("secret", secret)]);
        match unix {
            Some(t) => {
                self.next_due.get_or_create(&l).set(t);
            }
            None => {
                self.next_due.remove(&l);
            }
        }
    }

    pub fn set_failures(&self, secret: &str, n: u32, quarantined: bool) {
        let l = labels(&[("secret", secret)]);
        self.failures.get_or_create(&l).set(i64::from(n));
        self.quarantined.get_or_create(&l).set(i64::from(quarantined));
    }

    pub fn set_awaiting_first_value(&self, secret: &str, awaiting: bool) {
        self.awaiting_first
            .get_or_create(&labels(&[("secret", secret)]))
            .set(i64::from(awaiting));
    }

    pub fn in_progress(&self) -> &Gauge<i64, AtomicI64> {
        &self.in_progress
    }

    /// When `secret`'s open rotation started, or `None` when none is open.
    pub fn set_open_since(&self, secret: &str, unix: Option<i64>) {
        let l = labels(&[("secret", secret)]);
        match unix {
            Some(t) => {
                self.open_since.get_or_create(&l).set(t);
            }
            None => {
                self.open_since.remove(&l);
            }
        }
    }

    pub fn set_step_timeout(&self, secs: u64) {
        self.step_timeout.set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    pub fn set_journal_open(&self, n: i64) {
        self.journal_open.set(n);
    }

    pub fn backend_call(&self, backend: &str, op: &str, ok: bool) {
        let l = labels(&[("backend", backend), ("op", op)]);
        self.backend_calls.get_or_create(&l).inc();
        if !ok {
            self.backend_errors.get_or_create(&l).inc();
        }
    }

    /// Which node holds `secret`'s rotation back (`None`: none, after a success or a failure that names
    /// no node). A secret has at most one such series.
    pub fn set_lagging_node(&self, secret: &str, node: Option<&str>) {
        let mut known = self.lagging_node.lock().expect("lagging nodes");
        if let Some(old) = known.get(secret)
            && Some(old.as_str()) != node
        {
            self.lagging.remove(&labels(&[("secret", secret), ("node", old)]));
            known.remove(secret);
        }
        if let Some(node) = node {
            self.lagging
                .get_or_create(&labels(&[("secret", secret), ("node", node)]))
                .set(1);
            known.insert(secret.to_owned(), node.to_owned());
        }
    }

    /// Whether `secret`'s last attempt found its target's identity (a pinned host key) not matching.
    pub fn set_identity_mismatch(&self, secret: &str, mismatch: bool) {
        let l = labels(&[("secret", secret)]);
        if mismatch {
            self.identity.get_or_create(&l).set(1);
        } else {
            self.identity.remove(&l);
        }
    }

    /// Drops the per-secret series of a secret that is no longer managed.
    pub fn forget(&self, secret: &str) {
        self.set_lagging_node(secret, None);
        self.set_identity_mismatch(secret, false);
        self.set_open_since(secret, None);
        let l = labels(&[("secret", secret)]);
        self.last_success.remove(&l);
        self.next_due.remove(&l);
        self.failures.remove(&l);
        self.quarantined.remove(&l);
        self.awaiting_first.remove(&l);
    }
}
