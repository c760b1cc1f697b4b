//! Bulk secrets on one Redis server, shared by the bulk test (`tests/bulk.rs`) and the benchmark
//! (`benches/bulk_rotation.rs`): `n` dual secrets declared in a real SQLite store, their `2n` ACL users
//! created by the backend's `create_accounts`, and the real engine's scheduler loop running on a manual
//! clock, so the test and the benchmark make every secret due at one instant by moving the clock.
#![allow(dead_code)] // each of the two targets uses part of it

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig};
use rotd_core::{
    Backend, Clock, DataType, PasswordPolicy, RotationInterval, RotationPolicy, RotationSchedule, Secret,
    SecretName, SecretType, Slot, StageLabel, Tags, VersionId,
};
use rotd_engine::{Engine, EngineConfig, Managed, Metrics, SecretEntry};
use rotd_store::{NewSecret, NewVersion, Selector, Store};
use rotd_testkit::fixtures::redis::Redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every secret rotates every 30 days, with no window (so no jitter): all fall due at one instant.
pub const INTERVAL_DAYS: i64 = 30;

/// 2030-01-01T00:00:00Z on the manual clock.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("t0")
}

pub fn name(i: usize) -> String {
    format!("bulk/s{i:04}")
}

/// The account pair of secret `i`.
pub fn accounts(i: usize) -> (String, String) {
    (format!("bulk{i:04}"), format!("bulk{i:04}_clone"))
}

fn policy() -> RotationPolicy {
    RotationPolicy {
        enabled: true,
        schedule: RotationSchedule::Interval {
            interval: RotationInterval::from_secs(INTERVAL_DAYS as u64 * 86_400),
        },
        window_secs: None,
    }
}

/// `n` secrets on one server with the engine running.
pub struct Bulk {
    pub redis: Redis,
    pub store: Store,
    pub clock: Clock,
    pub engine: Arc<Engine>,
    pub backends: Vec<Arc<RedisBackend>>,
    pub promotions: tokio::sync::broadcast::Receiver<String>,
    /// How long creating the `2n` accounts took (real time).
    pub created_in: Duration,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk")
            .field("secrets", &self.backends.len())
            .finish_non_exhaustive()
    }
}

pub fn backend(redis: &Redis, i: usize, persist: Persist) -> RedisBackend {
    let (user, clone_user) = accounts(i);
    RedisBackend::new(RedisConfig {
        nodes: vec![(redis.host().to_owned(), redis.port())],
        admin_user: redis.admin_user().to_owned(),
        admin_password: Secret::from(redis.admin_password()),
        discover: false,
        tls: None,
        user,
        clone_user: Some(clone_user),
        rules: READ_WRITE_RULES.to_owned(),
        persist,
        timeout: Duration::from_secs(10),
    })
    .expect("config")
}

impl Bulk {
    /// Starts a server, declares `n` secrets whose accounts `create_accounts` makes (`ACSCurrent` the
    /// primary, `ACSPrevious` the clone, as a dual import stores them), and starts the engine on a
    /// manual clock at [`t0`]. Nothing is due until the clock moves 30 days.
    pub async fn start(n: usize, persist: Persist, cfg: EngineConfig) -> Self {
        let redis = Redis::start();
        let dir = tempfile::tempdir().expect("dir");
        let clock = Clock::manual(t0());
        let store = Store::open_sqlite(&dir.path().join("rotd.db"), rotd_testkit::store_suite::keyring())
            .await
            .expect("store")
            .with_clock(clock.clone());
        let backends: Vec<Arc<RedisBackend>> =
            (0..n).map(|i| Arc::new(backend(&redis, i, persist))).collect();

        // The accounts, created concurrently (as many at once as the engine would rotate), then stored.
        let real = Clock::system();
        let started = real.instant();
        let gate = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent.max(1)));
        let mut created = tokio::task::JoinSet::new();
        for (i, b) in backends.iter().enumerate() {
            let (b, store, gate) = (b.clone(), store.clone(), gate.clone());
            created.spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
                let pair = b.create_accounts().await.expect("create accounts");
                declare(&store, i, pair).await;
            });
        }
        while let Some(r) = created.join_next().await {
            r.expect("declare");
        }
        let created_in = real.elapsed(started);

        let engine = Engine::new(store.clone(), cfg, Metrics::default());
        let promotions = engine.subscribe_promotions();
        let specs = backends
            .iter()
            .enumerate()
            .map(|(i, b)| SecretEntry {
                managed: Managed {
                    name: SecretName::parse(name(i)).expect("name"),
                    kind: SecretType::Redis,
                    backend: b.clone() as Arc<dyn Backend>,
                    password: PasswordPolicy::default(),
                    grace: rotd_engine::Grace::NONE,
                },
                policy: Some(policy()),
                hooks: Vec::new(),
            })
            .collect();
        engine.set_secrets(specs).await;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(engine.clone().run(stop_rx));
        Self {
            redis,
            store,
            clock,
            engine,
            backends,
            promotions,
            created_in,
            stop,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Moves the clock to the `round`-th due time (every secret due at once) and waits (real time, at
    /// most `limit`) until `n` rotations were promoted and every task has ended. Returns how long that
    /// took, from the moment the clock moved, and how many were promoted.
    pub async fn rotate_all(&mut self, round: i64, limit: Duration) -> (Duration, usize) {
        // Promotions of an earlier round that are still queued are not this round's.
        while self.promotions.try_recv().is_ok() {}
        let n = self.backends.len();
        let real = Clock::system();
        let started = real.instant();
        self.clock
            .set(t0() + chrono::Duration::days(INTERVAL_DAYS * round));
        let mut promoted = 0;
        while promoted < n {
            let left = limit.saturating_sub(real.elapsed(started));
            match tokio::time::timeout(left, self.promotions.recv()).await {
                Ok(Ok(_)) => promoted += 1,
                // The channel holds 256; a lagging receiver is told how many it missed.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(k))) => {
                    promoted += usize::try_from(k).unwrap_or(usize::MAX)
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let took = real.elapsed(started);
        // A task records the rotation time and refreshes after it announces the promotion; the next
        // round may move the clock only once every task has ended.
        while (0..n).any(|i| self.engine.is_running(&name(i))) && real.elapsed(started) < limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (took, promoted)
    }

    /// The value a stage of secret `i` holds.
    pub async fn value(&self, i: usize, stage: StageLabel) -> Secret {
        self.store
            .get_value(&name(i), &Selector::Stage(stage))
            .await
            .expect("value")
            .value
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Declares secret `i` with the pair `create_accounts` returned: the primary's value is the first
/// version (`ACSCurrent`), the clone's is stored beside it as `ACSPrevious`.
async fn declare(store: &Store, i: usize, pair: Vec<(Slot, Secret)>) {
    let value = |slot: Slot| {
        pair.iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, v)| v.clone())
            .expect("a value per slot")
    };
    store
        .create_secret(
            NewSecret {
                name: SecretName::parse(name(i)).expect("name"),
                kind: SecretType::Redis,
                description: String::new(),
                tags: Tags::default(),
                cmk_id: "default".into(),
                extended_config: None,
                rotation: Some(policy()),
                policy: None,
                managed_by: None,
            },
            Some(NewVersion {
                version_id: VersionId::initial(),
                data_type: DataType::Text,
                value: value(Slot::Primary),
            }),
        )
        .await
        .expect("create");
    store
        .put_value(
            &name(i),
            NewVersion {
                version_id: VersionId::parse(rotd_engine::rotation::new_rotation_id()).expect("id"),
                data_type: DataType::Text,
                value: value(Slot::Clone),
            },
            Some(vec![StageLabel::previous()]),
        )
        .await
        .expect("clone value");
}

/// The account and password of a value.
pub fn account(value: &Secret) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("json");
    (
        v["AccountName"].as_str().expect("user").to_owned(),
        v["AccountPassword"].as_str().expect("pw").to_owned(),
    )
}

/// A fresh connection, `AUTH user password` (RESP), and whether the reply is `+OK`.
pub async fn logs_in(port: u16, value: &Secret) -> bool {
    let (user, pw) = account(value);
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let cmd = format!(
        "*3\r\n$4\r\nAUTH\r\n${}\r\n{user}\r\n${}\r\n{pw}\r\n",
        user.len(),
        pw.len()
    );
    if s.write_all(cmd.as_bytes()).await.is_err() {
        return false;
    }
    let mut b = [0u8; 64];
    matches!(s.read(&mut b).await, Ok(n) if n >= 3 && &b[..3] == b"+OK")
}
