//! Rotation control state: pause/quarantine/backoff per secret, operator requests to the daemon, and
//! the daemon's heartbeat. Plain rows; the engine owns the rules.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::sqlite::ts;
use crate::{RequestKind, RequestOutcome, Store, StoreError};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One secret's rotation control state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RotationState {
    pub secret_name: String,
    pub paused: bool,
    pub quarantined: bool,
    pub consecutive_failures: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// A request from the CLI or API to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationRequest {
    pub id: i64,
    pub secret_name: String,
    pub kind: RequestKind,
    pub version_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "outcome_text")]
    pub result: Option<RequestOutcome>,
}

fn outcome_text<S: serde::Serializer>(o: &Option<RequestOutcome>, s: S) -> Result<S::Ok, S::Error> {
    match o {
        Some(o) => s.serialize_some(&o.to_string()),
        None => s.serialize_none(),
    }
}

/// The running daemon's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub beat_at: DateTime<Utc>,
    /// The daemon refused its last configuration reload (when, and how many errors it found) and runs
    /// with the previous configuration.
    pub reload_failed: Option<(DateTime<Utc>, u32)>,
}

fn state_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RotationState> {
    Ok(RotationState {
        secret_name: r.try_get("secret_name")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        quarantined: r.try_get::<i64, _>("quarantined")? != 0,
        consecutive_failures: u32::try_from(r.try_get::<i64, _>("consecutive_failures")?).unwrap_or(u32::MAX),
        next_attempt_at: r.try_get::<Option<i64>, _>("next_attempt_at")?.map(ts),
        last_error: r.try_get("last_error")?,
        last_success_at: r.try_get::<Option<i64>, _>("last_success_at")?.map(ts),
    })
}

fn request_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RotationRequest> {
    let id: i64 = r.try_get("id")?;
    let kind: String = r.try_get("kind")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(RotationRequest {
        id,
        secret_name: r.try_get("secret_name")?,
        kind: RequestKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("request {id} has an unknown kind {kind:?}")))?,
        version_id: r.try_get("version_id")?,
        requested_at: ts(r.try_get("requested_at")?),
        done_at: r.try_get::<Option<i64>, _>("done_at")?.map(ts),
        result: match result {
            Some(text) => Some(
                RequestOutcome::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("request {id} has an unreadable result")))?,
            ),
            None => None,
        },
    })
}

const STATE_COLS: &str =
    "secret_name, paused, quarantined, consecutive_failures, next_attempt_at, last_error, last_success_at";

impl Store {
    /// A secret's rotation state (all defaults if it never had any).
    pub async fn rotation_state(&self, name: &str) -> Result<RotationState> {
        let sql = format!("SELECT {STATE_COLS} FROM rotation_state WHERE secret_name = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => state_from_row(&r),
            None => Ok(RotationState {
                secret_name: name.to_owned(),
                ..Default::default()
            }),
        }
    }

    pub async fn rotation_states(&self) -> Result<Vec<RotationState>> {
        let sql = format!("SELECT {STATE_COLS} FROM rotation_state ORDER BY secret_name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(state_from_row).collect()
    }

    async fn upsert_state(
        &self,
        name: &str,
        set: &'static str,
        binds: &[Option<i64>],
        text: Option<&str>,
    ) -> Result<()> {
        let now = self.clock().now().timestamp();
        let name = name.to_owned();
        let binds = binds.to_vec();
        let text = text.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                // `set` is one of the fixed assignment lists in this file, never user input.
                let sql = format!("UPDATE rotation_state SET updated_at = ?, {set} WHERE secret_name = ?");
                let update = || {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(now);
                    for b in &binds {
                        q = q.bind(*b);
                    }
                    if let Some(t) = &text {
                        q = q.bind(t.clone());
                    }
                    q.bind(name)
                };
                // The row exists after a secret's first attempt: one statement then.
                if update().execute(&mut **tx).await?.rows_affected() == 0 {
                    sqlx::query("INSERT INTO rotation_state (secret_name, updated_at) VALUES (?, ?)")
                        .bind(name)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    update().execute(&mut **tx).await?;
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        self.upsert_state(name, "paused = ?", &[Some(i64::from(paused))], None)
            .await
    }

    /// A rotation succeeded: clear failures, quarantine and backoff.
    pub async fn record_success(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.upsert_state(
            name,
            "last_success_at = ?, consecutive_failures = 0, quarantined = 0, next_attempt_at = NULL, last_error = NULL",
            &[Some(at.timestamp())],
            None,
        )
        .await
    }

    /// A rotation attempt failed. `next_attempt_at` is the backoff; `quarantine` stops attempts.
    pub async fn record_failure(
        &self,
        name: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        quarantine: bool,
    ) -> Result<()> {
        self.upsert_state(
            name,
            "consecutive_failures = consecutive_failures + 1, next_attempt_at = ?, quarantined = ?, last_error = ?",
            &[next_attempt_at.map(|t| t.timestamp()), Some(i64::from(quarantine))],
            Some(error),
        )
        .await
    }

    /// Lifts a quarantine and forgets the failure count and backoff.
    pub async fn clear_quarantine(&self, name: &str) -> Result<()> {
        self.upsert_state(
            name,
            "quarantined = 0, consecutive_failures = 0, next_attempt_at = NULL",
            &[],
            None,
        )
        .await
    }

    /// Queues a request for the daemon and returns its id.
    pub async fn add_request(&self, name: &str, kind: RequestKind, version_id: Option<&str>) -> Result<i64> {
        let now = self.clock().now().timestamp();
        let name = name.to_owned();
        let version_id = version_id.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let id = sqlx::query(
                    "INSERT INTO rotation_requests (secret_name, kind, version_id, requested_at) VALUES (?, ?, ?, ?) RETURNING id",
                )
                .bind(name)
                .bind(kind.as_str())
                .bind(version_id)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                Ok(id)
            })
        })
        .await
    }

    /// How many requests of `kind` for `name` were made since `since` (for the 50-per-hour limit).
    pub async fn count_requests_since(
        &self,
        name: &str,
        kind: RequestKind,
        since: DateTime<Utc>,
    ) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM rotation_requests WHERE secret_name = ? AND kind = ? AND requested_at >= ?",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(since.timestamp())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Queues a request unless `limit` requests of `kind` for `name` were made in the `window` before
    /// now (the vendor's 50 rotations per secret per hour): count and insert are one statement, so
    /// concurrent callers can never pass the limit together. `None` when the limit is reached.
    pub async fn add_request_within_limit(
        &self,
        name: &str,
        kind: RequestKind,
        version_id: Option<&str>,
        limit: u64,
        window: chrono::Duration,
    ) -> Result<Option<i64>> {
        let now = self.clock().now();
        let since = now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let name = name.to_owned();
        let version_id = version_id.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let row = sqlx::query(
                    "INSERT INTO rotation_requests (secret_name, kind, version_id, requested_at) \
                     SELECT ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM rotation_requests \
                     WHERE secret_name = ? AND kind = ? AND requested_at >= ?) < ? RETURNING id",
                )
                .bind(name)
                .bind(kind.as_str())
                .bind(version_id)
                .bind(now.timestamp())
                .bind(name)
                .bind(kind.as_str())
                .bind(since.timestamp())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_optional(&mut **tx)
                .await?;
                row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
            })
        })
        .await
    }

    pub async fn open_requests(&self) -> Result<Vec<RotationRequest>> {
        let rows = sqlx::query("SELECT * FROM rotation_requests WHERE done_at IS NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    pub async fn request(&self, id: i64) -> Result<Option<RotationRequest>> {
        let row = sqlx::query("SELECT * FROM rotation_requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    pub async fn finish_request(&self, id: i64, result: &RequestOutcome) -> Result<()> {
        let now = self.clock().now().timestamp();
        let result = result.to_string();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE rotation_requests SET done_at = ?, result = ? WHERE id = ?")
                    .bind(now)
                    .bind(result)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn heartbeat(&self, pid: u32, started_at: DateTime<Utc>) -> Result<()> {
        let now = self.clock().now().timestamp();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO daemon_heartbeat (id, pid, started_at, beat_at) VALUES (1, ?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at, beat_at = excluded.beat_at",
                )
                .bind(i64::from(pid))
                .bind(started_at.timestamp())
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn last_heartbeat(&self) -> Result<Option<Heartbeat>> {
        let row = sqlx::query(
            "SELECT pid, started_at, beat_at, reload_failed_at, reload_errors FROM daemon_heartbeat WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let failed_at: Option<i64> = r.try_get(3)?;
            let errors: Option<i64> = r.try_get(4)?;
            Ok(Heartbeat {
                pid: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                started_at: ts(r.try_get(1)?),
                beat_at: ts(r.try_get(2)?),
                reload_failed: failed_at
                    .map(|at| (ts(at), errors.and_then(|n| u32::try_from(n).ok()).unwrap_or(0))),
            })
        })
        .transpose()
    }

    /// Records the running daemon's last configuration reload: `Some(errors)` when it was refused (the
    /// previous configuration stays in use), `None` when the configuration in use is the last one loaded.
    /// Does nothing before the daemon's first heartbeat.
    pub async fn record_reload(&self, refused_with: Option<u32>) -> Result<()> {
        let now = self.clock().now().timestamp();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE daemon_heartbeat SET reload_failed_at = ?, reload_errors = ? WHERE id = 1",
                )
                .bind(refused_with.map(|_| now))
                .bind(refused_with.map(i64::from))
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }
}

/// The keyring handshake between the CLI and the running daemon (`keyring_reload`, one row).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KeyringReload {
    /// Raised by the CLI each time it asks for a reload.
    pub requested: i64,
    /// The last `requested` value the daemon acted on.
    pub handled: i64,
    /// The newest version of each CMK in the daemon's keyring after that (no key material).
    pub loaded: std::collections::BTreeMap<String, u32>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Why the daemon refused the last reload, if it did (it kept its previous keyring).
    pub error: Option<String>,
}

impl Store {
    /// Asks the running daemon to reload its keyring; returns the request's number, which
    /// [`KeyringReload::handled`] reaches once the daemon has acted on it.
    pub async fn request_keyring_reload(&self) -> Result<i64> {
        self.write(move |tx| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE keyring_reload SET requested = requested + 1 WHERE id = 1 RETURNING requested",
                )
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                Ok(n)
            })
        })
        .await
    }

    pub async fn keyring_reload(&self) -> Result<KeyringReload> {
        let r = sqlx::query(
            "SELECT requested, handled, loaded, loaded_at, error FROM keyring_reload WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let loaded: String = r.try_get("loaded")?;
        Ok(KeyringReload {
            requested: r.try_get("requested")?,
            handled: r.try_get("handled")?,
            loaded: serde_json::from_str(&loaded)
                .map_err(|e| StoreError::Corrupt(format!("keyring_reload.loaded: {e}")))?,
            loaded_at: r.try_get::<Option<i64>, _>("loaded_at")?.map(ts),
            error: r.try_get("error")?,
        })
    }

    /// The daemon's answer: it acted on request `handled` and now holds `loaded` (or refused, `error`).
    pub async fn record_keyring_reload(
        &self,
        handled: i64,
        loaded: &std::collections::BTreeMap<String, u32>,
        error: Option<&str>,
    ) -> Result<()> {
        let loaded = serde_json::to_string(loaded).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = self.clock().now().timestamp();
        let error = error.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE keyring_reload SET handled = MAX(handled, ?), loaded = ?, loaded_at = ?, error = ? WHERE id = 1",
                )
                .bind(handled)
                .bind(loaded)
                .bind(now)
                .bind(error)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }
}
