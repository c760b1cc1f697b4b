//! Decorators that implement [`Backend`] around another backend: per-kind concurrency limits and
//! metrics. The engine composes them; backends stay unaware.

use std::sync::Arc;

use rotd_core::{Backend, BackendResult, BoxFuture, Capabilities, Reconciled, Secret, Slot};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// Lets at most N calls into the inner backend run at once (shared by every secret of one backend kind).
/// Targets are limited a level up: the scheduler gives each rotation a slot of its target (host)
/// before it starts, so a call never waits here for a hung host's slot while holding its kind's.
pub struct Limited {
    inner: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited")
            .field("inner", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

impl Limited {
    pub fn new(inner: Arc<dyn Backend>, permits: Arc<Semaphore>) -> Self {
        Self { inner, permits }
    }

    async fn permits(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.permits.acquire().await.expect("semaphore never closed")
    }
}

/// Counts calls and failures of the inner backend by operation.
pub struct Measured {
    inner: Arc<dyn Backend>,
    metrics: Metrics,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("inner", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

impl Measured {
    pub fn new(inner: Arc<dyn Backend>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn record<T>(&self, op: &str, fut: BoxFuture<'_, BackendResult<T>>) -> BackendResult<T> {
        let r = fut.await;
        self.metrics.backend_call(self.inner.kind(), op, r.is_ok());
        r
    }
}

macro_rules! delegate_sync {
    () => {
        fn kind(&self) -> &str {
            self.inner.kind()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret> {
            self.inner.compose(slot, password)
        }
        fn compose_version(&self, slot: Slot, password: &Secret, version_id: &str) -> BackendResult<Secret> {
            self.inner.compose_version(slot, password, version_id)
        }
        fn slot_of(&self, value: &Secret) -> Option<Slot> {
            self.inner.slot_of(value)
        }
        fn target(&self) -> Option<String> {
            self.inner.target()
        }
    };
}

impl Backend for Limited {
    delegate_sync!();
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.check().await
        })
    }
    fn inspect(&self) -> BoxFuture<'_, BackendResult<Vec<String>>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.inspect().await
        })
    }
    fn mint<'a>(&'a self, rotation_id: &'a str, slot: Slot) -> BoxFuture<'a, BackendResult<Secret>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.mint(rotation_id, slot).await
        })
    }
    fn reconcile<'a>(&'a self, slot: Slot, known: &'a [Secret]) -> BoxFuture<'a, BackendResult<Reconciled>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.reconcile(slot, known).await
        })
    }
    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.apply(slot, new).await
        })
    }
    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.verify(slot, secret).await
        })
    }
    fn retire<'a>(&'a self, slot: Slot, old: &'a Secret, step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.retire(slot, old, step).await
        })
    }
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(async move {
            let _permits = self.permits().await;
            self.inner.create_accounts().await
        })
    }
}

impl Backend for Measured {
    delegate_sync!();
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(self.record("check", self.inner.check()))
    }
    fn inspect(&self) -> BoxFuture<'_, BackendResult<Vec<String>>> {
        Box::pin(self.record("inspect", self.inner.inspect()))
    }
    fn mint<'a>(&'a self, rotation_id: &'a str, slot: Slot) -> BoxFuture<'a, BackendResult<Secret>> {
        Box::pin(self.record("mint", self.inner.mint(rotation_id, slot)))
    }
    fn reconcile<'a>(&'a self, slot: Slot, known: &'a [Secret]) -> BoxFuture<'a, BackendResult<Reconciled>> {
        Box::pin(self.record("reconcile", self.inner.reconcile(slot, known)))
    }
    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(self.record("apply", self.inner.apply(slot, new)))
    }
    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(self.record("verify", self.inner.verify(slot, secret)))
    }
    fn retire<'a>(&'a self, slot: Slot, old: &'a Secret, step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(self.record("retire", self.inner.retire(slot, old, step)))
    }
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(self.record("create_accounts", self.inner.create_accounts()))
    }
}

/// The built-in backend of a generic secret with no target: rotation means "store a new generated
/// value". Nothing to apply or verify against, so both succeed; consumers learn of the new value
/// through hooks or by reading `ACSCurrent`.
#[derive(Debug, Default)]
pub struct Generator;

impl Backend for Generator {
    fn kind(&self) -> &str {
        "generator"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn compose(&self, _slot: Slot, password: &Secret) -> BackendResult<Secret> {
        Ok(password.clone())
    }
    fn apply<'a>(&'a self, _slot: Slot, _new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn verify<'a>(&'a self, _slot: Slot, _secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async { Ok(()) })
    }
}
