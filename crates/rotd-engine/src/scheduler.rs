//! The scheduler: a deadline loop over every managed secret.
//!
//! Each secret's next due time is computed from its last rotation (`NextRotationDate` = last rotation +
//! interval, or the next cron occurrence in its time zone) and persisted in the store; its start time
//! adds a deterministic per-secret jitter inside the rotation window. The loop sleeps until the earliest
//! start (or a one-second poll for operator requests), then starts what is due, bounded by a global and
//! a per-backend concurrency limit. After downtime, secrets that fell due are spread over a catch-up
//! period instead of starting together. Decisions are a pure function of `now` ([`decide`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rotd_core::{Backend, Clock, CompiledSchedule, RotationPolicy, VersionId};
use rotd_store::{RequestKind, RequestOutcome, RotationRequest, SecretUpdate, StepKind, Store};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, error, info, warn};

use crate::decorators::{Limited, Measured};
use crate::metrics::Metrics;
use crate::policy::{AttemptResult, FailurePolicy, attempt};
use crate::rotation::{self, Managed, StepLimits};

/// A command run after a promotion (e.g. `systemctl reload app`), with a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// One secret as the engine manages it.
#[derive(Clone, Debug)]
pub struct SecretEntry {
    pub managed: Managed,
    pub policy: Option<RotationPolicy>,
    pub hooks: Vec<Hook>,
}

/// The engine's tunables.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rotations (and retires) running at once, across all secrets.
    pub max_concurrent: usize,
    /// Backend calls at once into one kind of backend.
    pub per_backend: usize,
    /// Rotations (and retires) at once against one target (host and port) of any backend kind. A task
    /// takes its target's slot before one of the `max_concurrent` slots, so the rotations queued behind
    /// a busy or hung host hold no slot, and a hung host holds at most `per_target` of them.
    pub per_target: usize,
    pub limits: StepLimits,
    pub failure: FailurePolicy,
    /// Secrets overdue at start-up are spread over this long.
    pub catch_up_spread: Duration,
    /// How often operator requests are polled.
    pub poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            per_backend: 2,
            per_target: 1,
            limits: StepLimits::default(),
            failure: FailurePolicy::default(),
            catch_up_spread: Duration::from_secs(600),
            poll: Duration::from_secs(1),
        }
    }
}

/// What the loop should do with a secret now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    At(DateTime<Utc>),
    Idle,
}

/// The facts [`decide`] needs about one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub running: bool,
    pub paused: bool,
    pub quarantined: bool,
    /// Backoff after a failure, or the next window for a quarantined secret.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A rotation was started and not promoted: roll it forward.
    pub open_rotation: bool,
    /// The secret has no value yet (accounts rotd creates, an import without a known password) or, for
    /// dual accounts, only one: rotate now rather than at the first scheduled time.
    pub first_value: bool,
    /// The scheduled start (due time + jitter, or a catch-up slot); `None` without automatic rotation.
    pub start_at: Option<DateTime<Utc>>,
}

/// The scheduling rule, as a pure function of `now`.
pub fn decide(now: DateTime<Utc>, v: &View) -> Decision {
    if v.running || v.paused {
        return Decision::Idle;
    }
    if v.quarantined {
        return match v.next_attempt_at {
            Some(t) if t <= now => Decision::Run,
            Some(t) => Decision::At(t),
            None => Decision::Idle,
        };
    }
    if let Some(t) = v.next_attempt_at.filter(|t| *t > now) {
        return Decision::At(t);
    }
    if v.open_rotation || v.first_value {
        return Decision::Run;
    }
    match v.start_at {
        Some(t) if t <= now => Decision::Run,
        Some(t) => Decision::At(t),
        None => Decision::Idle,
    }
}

struct Entry {
    spec: SecretEntry,
    backend: Arc<dyn Backend>,
    /// The slots of the secret's target (`per_target`), shared by every secret on it.
    target: Option<Arc<Semaphore>>,
    compiled: Option<CompiledSchedule>,
    view: View,
    retire_due: Option<DateTime<Utc>>,
    next_due: Option<DateTime<Utc>>,
}

/// The running engine. Shared between the scheduler task and the daemon's control paths.
pub struct Engine {
    store: Store,
    cfg: EngineConfig,
    metrics: Metrics,
    global: Arc<Semaphore>,
    per_kind: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_target: Mutex<HashMap<String, Arc<Semaphore>>>,
    entries: Mutex<HashMap<String, Entry>>,
    /// Secrets with a task (rotation or retire) under way, launched or still waiting for a permit. Kept
    /// apart from `entries`, which a reload replaces wholesale, so no reload, backend rebuild or refresh
    /// can ever let a second task start for a secret; a task's [`InFlight`] guard removes its name when
    /// the task ends, also by panic.
    inflight: Arc<Mutex<HashSet<String>>>,
    /// Bumped by every `set_secrets`: a refresh that read the store before a reload does not write its
    /// stale entry back over the reloaded one.
    generation: std::sync::atomic::AtomicU64,
    wake: Notify,
    started: Mutex<bool>,
    /// Set when the loop stops: tasks still waiting for a permit give up instead of starting.
    stopping: std::sync::atomic::AtomicBool,
    /// Names of secrets whose rotation was just promoted, for listeners such as the binary, which rebuilds
    /// backends whose admin credential is that secret.
    promoted: tokio::sync::broadcast::Sender<String>,
    /// When the loop last went round; the systemd watchdog is fed only while this stays fresh, so a
    /// wedged loop gets the service restarted.
    last_tick: Mutex<Instant>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn unix(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp())
}

impl Engine {
    pub fn new(store: Store, cfg: EngineConfig, metrics: Metrics) -> Arc<Self> {
        metrics.set_step_timeout(cfg.limits.step_timeout.as_secs());
        Arc::new(Self {
            global: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            store,
            cfg,
            metrics,
            per_kind: Mutex::default(),
            per_target: Mutex::default(),
            entries: Mutex::default(),
            inflight: Arc::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
            wake: Notify::new(),
            started: Mutex::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            last_tick: Mutex::new(Clock::system().instant()),
            promoted: tokio::sync::broadcast::channel(256).0,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The engine's wall clock: its store's, so due times and journal stamps never disagree (a test
    /// drives both by handing the store a manual clock).
    pub fn clock(&self) -> &Clock {
        self.store.clock()
    }

    /// The backend with its kind's call limit and metrics around it, and its target's slots.
    fn decorate(&self, backend: Arc<dyn Backend>) -> (Arc<dyn Backend>, Option<Arc<Semaphore>>) {
        let sem = self
            .per_kind
            .lock()
            .expect("engine lock")
            .entry(backend.kind().to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.per_backend.max(1))))
            .clone();
        let target = backend.target().map(|t| {
            self.per_target
                .lock()
                .expect("engine lock")
                .entry(t)
                .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.per_target.max(1))))
                .clone()
        });
        let decorated = Arc::new(Measured::new(
            Arc::new(Limited::new(backend, sem)),
            self.metrics.clone(),
        ));
        (decorated, target)
    }

    /// Waits for a slot of the task's target (if it has one), then for one of the global slots.
    async fn slots(
        &self,
        target: Option<Arc<Semaphore>>,
    ) -> (
        Option<tokio::sync::OwnedSemaphorePermit>,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let target = match target {
            Some(t) => Some(t.acquire_owned().await.expect("semaphore never closed")),
            None => None,
        };
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        (target, global)
    }

    /// Replaces the set of managed secrets (at start-up and on reload), computing and persisting each
    /// one's next due time. Rotations in progress finish with the backend they started with.
    pub async fn set_secrets(&self, specs: Vec<SecretEntry>) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let now = self.clock().now();
        let first = {
            let mut started = self.started.lock().expect("engine lock");
            !std::mem::replace(&mut *started, true)
        };
        let mut fresh = HashMap::new();
        let mut overdue = Vec::new();
        for spec in specs {
            let name = spec.managed.name.to_string();
            let entry = match self.load_entry(spec).await {
                Ok(e) => e,
                Err(e) => {
                    error!(secret = %name, error = %e, "Cannot schedule this secret.");
                    continue;
                }
            };
            if first && let Some(t) = entry.view.start_at.filter(|t| *t <= now) {
                overdue.push((name.clone(), t));
            }
            fresh.insert(name, entry);
        }
        // Catch up after downtime: spread what fell due over the catch-up period, most overdue first.
        if overdue.len() > 1 {
            let spread = rotd_core::spread_overdue(&overdue, now, self.cfg.catch_up_spread.as_secs());
            info!(
                count = spread.len(),
                spread_secs = self.cfg.catch_up_spread.as_secs(),
                "Rotations fell due while rotd was down; spreading them out."
            );
            for (name, at) in spread {
                if let Some(e) = fresh.get_mut(&name) {
                    e.view.start_at = Some(at);
                }
            }
        }
        let mut entries = self.entries.lock().expect("engine lock");
        for old in entries.keys().filter(|k| !fresh.contains_key(*k)) {
            self.metrics.forget(old);
        }
        // A reload keeps the catch-up slots handed out at start-up: a secret spread to a later start
        // keeps it while its due time is unchanged, instead of falling due with all the others at once.
        for (name, e) in fresh.iter_mut() {
            if let Some(old) = entries.get(name)
                && let (Some(old_start), Some(new_start)) = (old.view.start_at, e.view.start_at)
                && old.next_due == e.next_due
                && old_start > new_start
            {
                e.view.start_at = Some(old_start);
            }
        }
        *entries = fresh;
        drop(entries);
        self.wake.notify_one();
    }

    async fn load_entry(&self, spec: SecretEntry) -> Result<Entry, rotd_store::StoreError> {
        let name = spec.managed.name.as_str();
        let meta = self.store.describe(name).await?;
        let state = self.store.rotation_state(name).await?;
        let journal = self.store.journal_tail(name).await?;
        let first_value = rotation::needs_first_value(&self.store, &spec.managed).await?;
        let open_since = rotation::open_rotation(&journal).and_then(|open| {
            journal
                .iter()
                .find(|e| e.rotation_id == open.rotation_id)
                .map(|e| e.at.timestamp())
        });
        self.metrics.set_open_since(name, open_since);
        let compiled = match &spec.policy {
            Some(p) if p.enabled => match rotd_core::compile(&p.schedule) {
                Ok(c) => Some(c),
                Err(e) => {
                    error!(secret = %name, error = %e, "Invalid schedule; automatic rotation is off for this secret.");
                    None
                }
            },
            _ => None,
        };
        let base = meta.last_rotation_at.unwrap_or(meta.created_at);
        let next_due = compiled.as_ref().and_then(|c| c.next_due(base));
        if unix(next_due) != unix(meta.next_rotation_at) && meta.planned_delete_at.is_none() {
            let update = SecretUpdate {
                next_rotation_at: Some(next_due),
                ..Default::default()
            };
            self.store.update_secret(name, update).await?;
        }
        let window = spec.policy.as_ref().and_then(|p| p.window_secs);
        let start_at = next_due.map(|d| rotd_core::start_at(d, name, window));
        self.metrics.set_next_due(name, unix(next_due));
        self.metrics
            .set_failures(name, state.consecutive_failures, state.quarantined);
        self.metrics.set_awaiting_first_value(name, first_value);
        if let Some(t) = state.last_success_at.or(meta.last_rotation_at) {
            self.metrics.set_last_success(name, t.timestamp());
        }
        let (backend, target) = self.decorate(spec.managed.backend.clone());
        let caps = backend.capabilities();
        let retire_due = if caps.retires() && rotation::open_rotation(&journal).is_none() {
            rotation::pending_retire(&journal, caps.retire_steps, spec.managed.grace).map(|r| r.due)
        } else {
            None
        };
        Ok(Entry {
            view: View {
                running: false,
                paused: state.paused,
                quarantined: state.quarantined,
                next_attempt_at: state.next_attempt_at,
                open_rotation: rotation::open_rotation(&journal).is_some(),
                first_value,
                start_at,
            },
            retire_due,
            next_due,
            backend,
            target,
            compiled,
            spec,
        })
    }

    /// Whether a secret is managed by this engine.
    pub fn manages(&self, name: &str) -> bool {
        self.entries.lock().expect("engine lock").contains_key(name)
    }

    /// Starts a task for a secret unless one is running. Returns false if it was already running or unknown.
    fn launch(self: &Arc<Self>, name: &str, requested: Option<VersionId>, request: Option<i64>) -> bool {
        let (managed, hooks, policy_next, nominal, target, guard) = {
            let entries = self.entries.lock().expect("engine lock");
            let Some(e) = entries.get(name) else {
                return false;
            };
            let Some(guard) = InFlight::take(&self.inflight, name) else {
                return false;
            };
            let mut m = e.spec.managed.clone();
            m.backend = e.backend.clone();
            // A scheduled run rotates for its nominal due time; an operator's request does not.
            let nominal = if request.is_none() { e.next_due } else { None };
            let target = e.target.clone();
            (
                m,
                e.spec.hooks.clone(),
                e.compiled.clone(),
                nominal,
                target,
                guard,
            )
        };
        let this = Arc::clone(self);
        // Every line the task logs (the backend's too) carries the secret's name from this span.
        let span = tracing::info_span!("secret", secret = %managed.name);
        tokio::spawn(async move {
            let _slots = this.slots(target).await;
            if this.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                // Shutting down: a task still waiting for its permit does not start (its request stays
                // open for the next start).
                return;
            }
            this.run_attempt(
                &managed,
                &hooks,
                policy_next.as_ref(),
                nominal,
                requested,
                request,
            )
            .instrument(span)
            .await;
            this.metrics.in_progress().dec();
            // Refresh before freeing the secret, so the loop never sees it idle with a stale view.
            this.refresh(managed.name.as_str()).await;
            drop(guard);
            this.wake.notify_one();
        });
        true
    }

    /// One attempt of a launched task, with its metrics, hooks and request outcome.
    async fn run_attempt(
        &self,
        managed: &Managed,
        hooks: &[Hook],
        policy_next: Option<&CompiledSchedule>,
        nominal: Option<DateTime<Utc>>,
        requested: Option<VersionId>,
        request: Option<i64>,
    ) {
        self.metrics.in_progress().inc();
        let started = Clock::system().instant();
        let state = self
            .store
            .rotation_state(managed.name.as_str())
            .await
            .unwrap_or_default();
        if state.quarantined {
            let _ = self.store.clear_quarantine(managed.name.as_str()).await;
        }
        let next_window = policy_next.and_then(|c| c.next_due(self.clock().now()));
        let result = attempt(
            &self.store,
            managed,
            &self.cfg.limits,
            &self.cfg.failure,
            requested,
            next_window,
        )
        .await;
        let secs = Clock::system().elapsed(started).as_secs_f64();
        let kind = managed.kind.as_str();
        let summary = match &result {
            AttemptResult::Done(o) => {
                self.metrics.attempt_finished(kind, "success", secs);
                self.metrics.set_lagging_node(managed.name.as_str(), None);
                self.metrics.set_identity_mismatch(managed.name.as_str(), false);
                if !o.already_done {
                    let now = self.clock().now();
                    let last = rotd_core::recorded_rotation_time(policy_next, nominal, now);
                    let next_due = policy_next.and_then(|c| c.next_due(last));
                    let update = SecretUpdate {
                        last_rotation_at: Some(Some(last)),
                        next_rotation_at: Some(next_due),
                        ..Default::default()
                    };
                    if let Err(e) = self.store.update_secret(managed.name.as_str(), update).await {
                        warn!(error = %e, "Could not record the rotation time.");
                    }
                    // The hooks belong to the rotation: their lines carry its id.
                    let span = tracing::info_span!("rotation", rotation_id = %o.rotation_id);
                    run_hooks(managed, &o.version_id, hooks).instrument(span).await;
                    let _ = self.promoted.send(managed.name.to_string());
                }
                RequestOutcome::Ok(format!("version {}", o.version_id))
            }
            AttemptResult::Retry { error, .. } => {
                self.metrics.attempt_finished(kind, "failure", secs);
                self.metrics.set_lagging_node(managed.name.as_str(), error.node());
                self.metrics
                    .set_identity_mismatch(managed.name.as_str(), error.identity_mismatch());
                RequestOutcome::Error(error.to_string())
            }
            AttemptResult::Quarantined { error, .. } => {
                self.metrics.attempt_finished(kind, "quarantined", secs);
                self.metrics.set_lagging_node(managed.name.as_str(), error.node());
                self.metrics
                    .set_identity_mismatch(managed.name.as_str(), error.identity_mismatch());
                RequestOutcome::Quarantined(error.to_string())
            }
        };
        if let Some(id) = request
            && let Err(e) = self.store.finish_request(id, &summary).await
        {
            warn!(error = %e, "Could not finish a rotation request.");
        }
    }

    /// Re-reads a secret's state from the store after a change (attempt finished, operator request).
    async fn refresh(&self, name: &str) {
        // A reload that lands while this refresh reads the store replaces the entry; then read again
        // from the reloaded spec rather than write a stale entry back over it.
        for _ in 0..3 {
            let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
            let spec = {
                let entries = self.entries.lock().expect("engine lock");
                match entries.get(name) {
                    Some(e) => e.spec.clone(),
                    None => return,
                }
            };
            let loaded = self.load_entry(spec).await;
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                continue;
            }
            self.store_refreshed(name, loaded);
            break;
        }
        self.wake.notify_one();
    }

    fn store_refreshed(&self, name: &str, loaded: Result<Entry, rotd_store::StoreError>) {
        match loaded {
            Ok(mut fresh) => {
                let mut entries = self.entries.lock().expect("engine lock");
                if let Some(old) = entries.get(name) {
                    // Keep a catch-up slot that has not come yet.
                    if let (Some(old_start), Some(new_start)) = (old.view.start_at, fresh.view.start_at)
                        && old.next_due == fresh.next_due
                        && old_start > new_start
                    {
                        fresh.view.start_at = Some(old_start);
                    }
                }
                entries.insert(name.to_owned(), fresh);
            }
            Err(e) => error!(secret = %name, error = %e, "Could not reload a secret's rotation state."),
        }
    }

    async fn handle_request(self: &Arc<Self>, r: RotationRequest) {
        let done = |result: RequestOutcome| {
            let store = self.store.clone();
            async move {
                if let Err(e) = store.finish_request(r.id, &result).await {
                    warn!(error = %e, "Could not finish a request.");
                }
            }
        };
        match r.kind {
            RequestKind::Rotate => {
                if !self.manages(&r.secret_name) {
                    done(RequestOutcome::Error(format!(
                        "secret {} is not managed by this daemon (no rotation backend)",
                        r.secret_name
                    )))
                    .await;
                    return;
                }
                let requested = r.version_id.as_deref().and_then(|v| VersionId::parse(v).ok());
                info!(secret = %r.secret_name, "Rotation requested by an operator.");
                if !self.launch(&r.secret_name, requested, Some(r.id)) {
                    // Already running: leave the request open; the loop retries it when the run ends.
                }
            }
            RequestKind::Abandon => {
                let result = self.abandon_open(&r.secret_name).await;
                info!(secret = %r.secret_name, result = %result, "Operator asked to abandon the open rotation.");
                done(result).await;
                self.refresh(&r.secret_name).await;
            }
            RequestKind::Resume | RequestKind::Refresh => {
                self.refresh(&r.secret_name).await;
                done(RequestOutcome::Ok(String::new())).await;
            }
        }
    }

    /// `rotd rotation abandon`: ends the secret's open rotation (journaled `abandoned`; its value stays
    /// as an unlabelled version), unless it is a single-account rotation past `applied`, whose
    /// abandonment would leave `ACSCurrent` dead: that one is refused, and keeps retrying.
    async fn abandon_open(&self, name: &str) -> RequestOutcome {
        let managed = {
            let entries = self.entries.lock().expect("engine lock");
            match entries.get(name) {
                Some(e) => e.spec.managed.clone(),
                None => {
                    return RequestOutcome::Error(format!(
                        "secret {name} is not managed by this daemon (no rotation backend)"
                    ));
                }
            }
        };
        let journal = match self.store.journal_tail(name).await {
            Ok(j) => j,
            Err(e) => return RequestOutcome::Error(format!("reading the journal: {e}")),
        };
        let Some(open) = rotation::open_rotation(&journal) else {
            return RequestOutcome::Error(format!("secret {name} has no open rotation"));
        };
        let past_applied = matches!(open.step, StepKind::Applied | StepKind::Verified);
        if past_applied && !managed.backend.capabilities().dual_accounts {
            return RequestOutcome::Error(format!(
                "refused: rotation {} of {name} is past applied on a single account, so the server \
                 already has the new password and ACSCurrent no longer logs in; it keeps retrying until it \
                 finishes (fix the cause; `rotd status` shows the last error)",
                open.rotation_id
            ));
        }
        match rotation::abandon(&self.store, &managed.name, &open, "abandoned by an operator").await {
            Ok(()) => RequestOutcome::Ok(format!(
                "abandoned rotation {} after {}; version {} is kept without a label, and the next \
                 rotation plans afresh",
                open.rotation_id, open.step, open.version_id
            )),
            Err(e) => RequestOutcome::Error(e.to_string()),
        }
    }

    /// Runs the loop until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let pid = std::process::id();
        let clock = self.clock().clone();
        // Liveness (the heartbeat's period, the watchdog's tick) is real time whatever the store's clock.
        let real = Clock::system();
        let started = clock.now();
        let mut last_beat: Option<Instant> = None;
        loop {
            if *shutdown.borrow() || self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            *self.last_tick.lock().expect("engine lock") = real.instant();
            if last_beat.is_none_or(|t| real.elapsed(t) >= Duration::from_secs(5)) {
                if let Err(e) = self.store.heartbeat(pid, started).await {
                    warn!(error = %e, "Could not write the heartbeat.");
                }
                last_beat = Some(real.instant());
            }
            match self.store.open_requests().await {
                Ok(reqs) => {
                    for r in reqs {
                        let running = self.is_running(&r.secret_name);
                        // A rotation or an abandon waits until the secret's task has ended.
                        if !(matches!(r.kind, RequestKind::Rotate | RequestKind::Abandon) && running) {
                            self.handle_request(r).await;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "Could not read operator requests."),
            }
            let now = clock.now();
            let mut due = Vec::new();
            let mut retire = Vec::new();
            let mut next_wake = now + chrono::Duration::from_std(self.cfg.poll).unwrap_or_default();
            let mut open = 0;
            {
                let entries = self.entries.lock().expect("engine lock");
                let inflight = self.inflight.lock().expect("engine lock").clone();
                for (name, e) in entries.iter() {
                    open += i64::from(e.view.open_rotation);
                    let running = inflight.contains(name);
                    let view = View {
                        running,
                        ..e.view.clone()
                    };
                    match decide(now, &view) {
                        Decision::Run => due.push(name.clone()),
                        Decision::At(t) => next_wake = next_wake.min(t),
                        Decision::Idle => {}
                    }
                    if let Some(t) = e.retire_due.filter(|_| !running) {
                        if t <= now {
                            retire.push(name.clone());
                        } else {
                            next_wake = next_wake.min(t);
                        }
                    }
                }
            }
            self.metrics.set_journal_open(open);
            for name in due {
                self.launch(&name, None, None);
            }
            for name in retire {
                self.launch_retire(&name);
            }
            tokio::select! {
                () = clock.sleep_until(next_wake) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Subscribes to the names of secrets as their rotations are promoted.
    pub fn subscribe_promotions(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.promoted.subscribe()
    }

    /// How long ago the scheduler loop last went round.
    pub fn since_last_tick(&self) -> Duration {
        Clock::system().elapsed(*self.last_tick.lock().expect("engine lock"))
    }

    /// Stops starting work and waits up to `timeout` for rotations in progress to finish. Returns false
    /// if some were still running (they resume from the journal at the next start).
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        // A shutdown's deadline is real time (systemd's stop timeout), whatever the store's clock.
        let real = Clock::system();
        let deadline = real.instant() + timeout;
        while !self.inflight.lock().expect("engine lock").is_empty() {
            if real.instant() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    fn launch_retire(self: &Arc<Self>, name: &str) {
        let (managed, target, guard) = {
            let entries = self.entries.lock().expect("engine lock");
            let Some(e) = entries.get(name) else { return };
            let Some(guard) = InFlight::take(&self.inflight, name) else {
                return;
            };
            let mut m = e.spec.managed.clone();
            m.backend = e.backend.clone();
            (m, e.target.clone(), guard)
        };
        let this = Arc::clone(self);
        let span = tracing::info_span!("secret", secret = %managed.name);
        tokio::spawn(async move {
            let name = managed.name.to_string();
            let _slots = this.slots(target).await;
            async {
                if let Ok(j) = this.store.journal_tail(&name).await
                    && let Some(r) =
                        rotation::pending_retire(&j, managed.backend.capabilities().retire_steps, managed.grace)
                {
                    match rotation::retire(&this.store, &managed, &this.cfg.limits, &r).await {
                        Ok(()) => {
                            info!(rotation_id = %r.rotation_id, version = %r.old_version, step = r.step, "Retired the old credential (step done).")
                        }
                        Err(e) => {
                            warn!(rotation_id = %r.rotation_id, error = %e, "Retiring the old credential failed; will retry.")
                        }
                    }
                }
            }
            .instrument(span)
            .await;
            this.refresh(&name).await;
            drop(guard);
            this.wake.notify_one();
        });
    }

    /// Whether a task (rotation or retire) for this secret is under way.
    pub fn is_running(&self, name: &str) -> bool {
        self.inflight.lock().expect("engine lock").contains(name)
    }
}

/// A secret's place in the in-flight set, held by its task; dropping it (the task ended, returned early
/// or panicked) frees the secret for the next task.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl InFlight {
    /// Claims `name`, or `None` when a task for it is already under way.
    fn take(set: &Arc<Mutex<HashSet<String>>>, name: &str) -> Option<Self> {
        if !set.lock().expect("engine lock").insert(name.to_owned()) {
            return None;
        }
        Some(Self {
            set: Arc::clone(set),
            name: name.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.name);
        }
    }
}

/// Runs the post-promotion hooks. A hook gets the secret name and version in its environment, never the
/// value; a failing or hanging hook is logged and does not undo the rotation.
async fn run_hooks(m: &Managed, version: &VersionId, hooks: &[Hook]) {
    for hook in hooks {
        let Some((program, args)) = hook.command.split_first() else {
            continue;
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("ROTD_SECRET_NAME", m.name.as_str())
            .env("ROTD_VERSION_ID", version.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so a timeout kills everything the hook started, not only the shell.
            .process_group(0)
            .kill_on_drop(true);
        let result = match cmd.spawn() {
            Ok(child) => {
                let pgid = child.id();
                let r = tokio::time::timeout(hook.timeout, child.wait_with_output()).await;
                if r.is_err() {
                    kill_process_group(pgid);
                }
                r
            }
            Err(e) => {
                warn!(hook = %program, error = %e, "Could not start a post-rotation hook.");
                continue;
            }
        };
        match result {
            Ok(Ok(out)) if out.status.success() => {
                info!(hook = %program, "Post-rotation hook succeeded.")
            }
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: String = stderr
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                warn!(hook = %program, status = %out.status, stderr = %tail.trim(), "Post-rotation hook failed.");
            }
            Ok(Err(e)) => warn!(hook = %program, error = %e, "Post-rotation hook failed."),
            Err(_) => {
                warn!(hook = %program, timeout_secs = hook.timeout.as_secs(), "Post-rotation hook timed out and was killed.")
            }
        }
    }
}

/// Sends SIGKILL to a timed-out hook's whole process group.
#[allow(unsafe_code)]
fn kill_process_group(pgid: Option<u32>) {
    // 0 and 1 are refused: `kill(0)` would signal rotd's own group and `kill(-1)` every process rotd may
    // signal. A hook spawned with `process_group(0)` leads its own group, whose id is its pid.
    let Some(pgid) = pgid
        .and_then(|p| libc::pid_t::try_from(p).ok())
        .filter(|&p| p > 1)
    else {
        return;
    };
    // SAFETY: kill(2) takes two integers and touches no memory of this process, so it cannot break any
    // Rust invariant. The group is the hook's own (spawned with `process_group(0)`).
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        // ESRCH: the whole group is already gone, which is the goal.
        tracing::debug!(pgid, "killing a hook's process group failed (already gone)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn a_timed_out_hook_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().expect("dir");
        let pidfile = dir.path().join("grandchild.pid");
        let hook = Hook {
            command: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
            ],
            timeout: Duration::from_millis(500),
        };
        let m = Managed {
            name: rotd_core::SecretName::parse("hook/test").expect("name"),
            kind: rotd_core::SecretType::Generic,
            backend: Arc::new(crate::Generator),
            password: rotd_core::PasswordPolicy::default(),
            grace: crate::Grace::NONE,
        };
        run_hooks(&m, &VersionId::parse("v1").expect("id"), &[hook]).await;
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("the hook ran")
            .trim()
            .parse()
            .expect("pid");
        let real = Clock::system();
        let start = real.instant();
        while alive(pid) && real.elapsed(start) < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive(pid),
            "the hook's background child {pid} outlived the timeout"
        );
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn decisions() {
        let now = t(12, 0);
        let due = View {
            start_at: Some(t(11, 0)),
            ..Default::default()
        };
        assert_eq!(decide(now, &due), Decision::Run);
        assert_eq!(
            decide(
                now,
                &View {
                    start_at: Some(t(13, 0)),
                    ..Default::default()
                }
            ),
            Decision::At(t(13, 0))
        );
        assert_eq!(
            decide(
                now,
                &View {
                    running: true,
                    ..due.clone()
                }
            ),
            Decision::Idle
        );
        assert_eq!(
            decide(
                now,
                &View {
                    paused: true,
                    ..due.clone()
                }
            ),
            Decision::Idle
        );
        assert_eq!(
            decide(now, &View::default()),
            Decision::Idle,
            "no schedule, nothing open"
        );
        // Backoff wins over a due schedule and over recovery; once it passes, recovery runs.
        let backoff = View {
            next_attempt_at: Some(t(12, 30)),
            open_rotation: true,
            ..due.clone()
        };
        assert_eq!(decide(now, &backoff), Decision::At(t(12, 30)));
        assert_eq!(decide(t(12, 31), &backoff), Decision::Run);
        // An open rotation is rolled forward even without a schedule.
        assert_eq!(
            decide(
                now,
                &View {
                    open_rotation: true,
                    ..Default::default()
                }
            ),
            Decision::Run
        );
        // Quarantine holds until the next window, then runs; without a window it holds.
        let q = View {
            quarantined: true,
            next_attempt_at: Some(t(18, 0)),
            open_rotation: true,
            ..due.clone()
        };
        assert_eq!(decide(now, &q), Decision::At(t(18, 0)));
        assert_eq!(decide(t(18, 0), &q), Decision::Run);
        assert_eq!(
            decide(
                now,
                &View {
                    quarantined: true,
                    ..due
                }
            ),
            Decision::Idle
        );
    }
}
