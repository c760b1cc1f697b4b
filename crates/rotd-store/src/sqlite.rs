//! The store handle and its SQLite engine.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rotd_core::{DataType, Secret, SecretName, SecretType, StageLabel, Tag, Tags, VersionId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqlitePool};

use crate::envelope::{self, Context, Sealed};
use crate::stages::{self, StageMap};
use crate::{
    AccessKeyInfo, DeleteMode, JournalEntry, JournalRecord, Keyring, NewSecret, NewVersion, PutOutcome,
    SecretMeta, SecretUpdate, Selector, StageMove, StoreError, VersionInfo, VersionValue,
};

type Result<T, E = StoreError> = std::result::Result<T, E>;
type Tx = crate::writer::Tx;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How many data keys one CMK version wraps (for `rotd key list`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CmkUsage {
    pub cmk_id: String,
    pub cmk_version: u32,
    pub data_keys: u64,
}

/// The handle every other crate uses. Cheap to clone.
///
/// The keyring sits behind a lock so that a reload (after `rotd key rotate`) swaps it for every clone;
/// it is only ever read while sealing or opening one value.
#[derive(Clone)]
pub struct Store {
    /// Reads; and the migrations at open.
    pub(crate) pool: SqlitePool,
    /// Every write transaction, group-committed on one connection (`writer.rs`).
    writer: crate::writer::Writer,
    keyring: Arc<RwLock<Keyring>>,
    /// What stamps journal entries, versions and requests: the system clock unless a test drives time.
    clock: rotd_core::Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &"sqlite")
            .finish_non_exhaustive()
    }
}

pub(crate) fn ts(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &Path, keyring: Keyring) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable in WAL mode: a rotation step that returned is on disk.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        // sqlx takes no lock around SQLite migrations, so two processes opening a new store at once (the
        // daemon's first start and a CLI command) could both run the same migration and one would fail
        // with "table already exists", or collide switching a new file to WAL ("database is locked"). An
        // exclusive lock on a file beside the database serializes opening, WAL setup and migrations.
        let lock_path = {
            let mut p = path.as_os_str().to_owned();
            p.push(".migrate-lock");
            std::path::PathBuf::from(p)
        };
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A local file cannot hang up: the default ping on every acquire cost one more round trip
            // to the connection's worker thread per read.
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let migrated = MIGRATOR.run(&pool).await;
        drop(lock);
        migrated?;
        let writer = crate::writer::Writer::start(opts.connect().await?)
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self {
            pool,
            writer,
            keyring: Arc::new(RwLock::new(keyring)),
            clock: rotd_core::Clock::system(),
        })
    }

    /// The same store, stamping time from `clock` (a test's manual clock). Handles cloned from it share
    /// the clock.
    pub fn with_clock(mut self, clock: rotd_core::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock this store stamps time with.
    pub fn clock(&self) -> &rotd_core::Clock {
        &self.clock
    }

    /// Replaces the keyring (after a CMK rotation). The new keyring must still hold every CMK version
    /// that wraps a stored data key.
    pub fn replace_keyring(&self, keyring: Keyring) {
        *self.keyring.write().expect("keyring lock poisoned") = keyring;
    }

    /// The newest version of each CMK in the keyring in use (ids and numbers only).
    pub fn keyring_newest_versions(&self) -> std::collections::BTreeMap<String, u32> {
        self.keyring
            .read()
            .expect("keyring lock poisoned")
            .newest_versions()
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// An online, consistent copy of the whole database into the new file `to` (SQLite's `VACUUM INTO`:
    /// one read transaction, so it is one snapshot and writers keep going meanwhile). The values in it
    /// stay encrypted; the keyring is not in it.
    pub async fn backup(&self, to: &Path) -> Result<()> {
        let to = to
            .to_str()
            .ok_or_else(|| corrupt("the backup path is not UTF-8"))?;
        sqlx::query("VACUUM INTO ?").bind(to).execute(&self.pool).await?;
        Ok(())
    }

    /// Checks the database file (`PRAGMA integrity_check`) and decrypts every version of every secret
    /// with the keyring in use: what a restore must see before it replaces a store. Returns how many
    /// versions were read.
    pub async fn verify_all(&self) -> Result<usize> {
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        if check != "ok" {
            return Err(corrupt(format!("integrity_check: {check}")));
        }
        // Every version row, also of secrets scheduled for deletion (a restore may still recover them).
        let rows = sqlx::query(
            "SELECT secret_name, version_id, cmk_id, cmk_version, wrapped_key, nonce, ciphertext FROM versions",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let secret: String = r.try_get(0)?;
            let version: String = r.try_get(1)?;
            let sealed = sealed_from_row(r, 2)?;
            self.open(
                Context::SecretVersion {
                    secret: &secret,
                    version: &version,
                },
                &sealed,
            )?;
        }
        Ok(rows.len())
    }

    /// Runs `body` as one write transaction on the writer thread and returns its result once it is
    /// durable; an error from `body` rolls back its changes alone (`writer.rs`). The batch holds the
    /// write lock from `BEGIN IMMEDIATE`, so another process's writer queues on busy_timeout instead of
    /// one failing with SQLITE_BUSY when it upgrades a read transaction.
    pub(crate) async fn write<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx) -> crate::writer::TxFuture<'c, T> + Send + 'static,
    {
        self.writer.run(body).await
    }

    fn seal(&self, cmk_id: &str, ctx: Context<'_>, value: &Secret) -> Result<Sealed> {
        envelope::seal(
            &self.keyring.read().expect("keyring lock poisoned"),
            cmk_id,
            ctx,
            value,
        )
    }

    fn open(&self, ctx: Context<'_>, sealed: &Sealed) -> Result<Secret> {
        envelope::open(&self.keyring.read().expect("keyring lock poisoned"), ctx, sealed)
    }

    // ----- secrets -------------------------------------------------------------------------------

    /// Creates a secret, optionally with its first version (which becomes `ACSCurrent`).
    pub async fn create_secret(&self, new: NewSecret, initial: Option<NewVersion>) -> Result<SecretMeta> {
        if let Some(v) = &initial {
            v.data_type.validate_value(&v.value)?;
        }
        if !self
            .keyring
            .read()
            .expect("keyring lock poisoned")
            .contains(&new.cmk_id)
        {
            return Err(StoreError::KeyNotFound {
                cmk_id: new.cmk_id.clone(),
                version: None,
            });
        }
        let this = self.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let name = new.name.as_str();
                if let Some(row) = sqlx::query("SELECT planned_delete_at FROM secrets WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?
                {
                    let planned: Option<i64> = row.try_get(0)?;
                    return Err(if planned.is_some() {
                        StoreError::PendingDeletion {
                            name: name.to_owned(),
                        }
                    } else {
                        StoreError::AlreadyExists {
                            name: name.to_owned(),
                        }
                    });
                }
                let now = this.clock.now().timestamp();
                let rotation = new
                    .rotation
                    .as_ref()
                    .map(|r| serde_json::to_string(r).expect("policy serializes"));
                sqlx::query(
                    "INSERT INTO secrets (name, secret_type, description, cmk_id, extended_config, rotation, policy,
                                          managed_by, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(name)
                .bind(new.kind.as_str())
                .bind(&new.description)
                .bind(&new.cmk_id)
                .bind(&new.extended_config)
                .bind(rotation)
                .bind(&new.policy)
                .bind(&new.managed_by)
                .bind(now)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                write_tags(tx, name, &new.tags).await?;
                // A new incarnation: the journal (which outlives deletions) gets a `created` marker that starts
                // this secret's tail, so nothing of an earlier secret of the same name (an open rotation, the
                // account slot, an owed retire) carries over; its control state and open requests go too.
                sqlx::query(
                    "INSERT INTO rotation_journal (secret_name, rotation_id, step, version_id, at, detail)
                     VALUES (?, ?, 'created', NULL, ?, '{}')",
                )
                .bind(name)
                .bind(incarnation_id()?)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM rotation_state WHERE secret_name = ?")
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "UPDATE rotation_requests SET done_at = ?, result = 'error: the secret was created again'
                     WHERE secret_name = ? AND done_at IS NULL",
                )
                .bind(now)
                .bind(name)
                .execute(&mut **tx)
                .await?;
                if let Some(v) = initial {
                    this.insert_version(tx, name, &new.cmk_id, &v, &[StageLabel::current()])
                        .await?;
                }
                let meta = load_meta(tx, name).await?;
                Ok(meta)
            })
        })
        .await
    }

    pub async fn describe(&self, name: &str) -> Result<SecretMeta> {
        let mut conn = self.pool.acquire().await?;
        load_meta(&mut conn, name).await
    }

    /// Every secret, ordered by name, including those scheduled for deletion.
    pub async fn list(&self) -> Result<Vec<SecretMeta>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(SELECT_META).fetch_all(&mut *conn).await?;
        let mut tags = load_all_tags(&mut conn).await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                meta_from_row(r, tags.remove(&name).unwrap_or_default())
            })
            .collect()
    }

    /// Changes metadata. Refused while the secret is scheduled for deletion.
    pub async fn update_secret(&self, name: &str, update: SecretUpdate) -> Result<SecretMeta> {
        let this = self.clone();
        let name = name.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                writable(tx, name).await?;
                let now = this.clock.now().timestamp();
                let rotation = update.rotation.as_ref().map(|r| {
                    r.as_ref()
                        .map(|r| serde_json::to_string(r).expect("policy serializes"))
                });
                let stamp = |t: &Option<Option<DateTime<Utc>>>| t.map(|t| t.map(|t| t.timestamp()));
                let (next, last) = (stamp(&update.next_rotation_at), stamp(&update.last_rotation_at));
                // One statement for every column: each is set only when its flag says the update names it.
                sqlx::query(
                    "UPDATE secrets SET
                         description = CASE WHEN ? THEN ? ELSE description END,
                         extended_config = CASE WHEN ? THEN ? ELSE extended_config END,
                         rotation = CASE WHEN ? THEN ? ELSE rotation END,
                         policy = CASE WHEN ? THEN ? ELSE policy END,
                         managed_by = CASE WHEN ? THEN ? ELSE managed_by END,
                         next_rotation_at = CASE WHEN ? THEN ? ELSE next_rotation_at END,
                         last_rotation_at = CASE WHEN ? THEN ? ELSE last_rotation_at END,
                         updated_at = ?
                     WHERE name = ?",
                )
                .bind(update.description.is_some())
                .bind(update.description.as_deref())
                .bind(update.extended_config.is_some())
                .bind(update.extended_config.clone().flatten())
                .bind(rotation.is_some())
                .bind(rotation.flatten())
                .bind(update.policy.is_some())
                .bind(update.policy.clone().flatten())
                .bind(update.managed_by.is_some())
                .bind(update.managed_by.clone().flatten())
                .bind(next.is_some())
                .bind(next.flatten())
                .bind(last.is_some())
                .bind(last.flatten())
                .bind(now)
                .bind(name)
                .execute(&mut **tx)
                .await?;
                if let Some(tags) = &update.tags {
                    sqlx::query("DELETE FROM secret_tags WHERE secret_name = ?")
                        .bind(name)
                        .execute(&mut **tx)
                        .await?;
                    write_tags(tx, name, tags).await?;
                }
                let meta = load_meta(tx, name).await?;
                Ok(meta)
            })
        })
        .await
    }

    /// Schedules or performs deletion. Returns the planned deletion time (now for a force delete).
    pub async fn delete_secret(&self, name: &str, mode: DeleteMode) -> Result<DateTime<Utc>> {
        let this = self.clone();
        let name = name.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let now = this.clock.now();
                let planned = match mode {
                    DeleteMode::Force => {
                        let n = sqlx::query("DELETE FROM secrets WHERE name = ?")
                            .bind(name)
                            .execute(&mut **tx)
                            .await?;
                        if n.rows_affected() == 0 {
                            return Err(StoreError::secret_not_found(name));
                        }
                        now
                    }
                    DeleteMode::Recovery { days } => {
                        if !(7..=30).contains(&days) {
                            return Err(StoreError::Invalid(rotd_core::ValidationError {
                                what: "recovery window",
                                reason: format!("{days} days is outside 7 to 30"),
                            }));
                        }
                        writable(tx, name).await?;
                        let at = now + chrono::Duration::days(i64::from(days));
                        sqlx::query(
                            "UPDATE secrets SET planned_delete_at = ?, updated_at = ? WHERE name = ?",
                        )
                        .bind(at.timestamp())
                        .bind(now.timestamp())
                        .bind(name)
                        .execute(&mut **tx)
                        .await?;
                        ts(at.timestamp())
                    }
                };
                Ok(planned)
            })
        })
        .await
    }

    /// Cancels a scheduled deletion.
    pub async fn restore_secret(&self, name: &str) -> Result<SecretMeta> {
        let this = self.clone();
        let name = name.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let planned = planned_delete(tx, name).await?;
                if planned.is_none() {
                    return Err(StoreError::NotPendingDeletion {
                        name: name.to_owned(),
                    });
                }
                sqlx::query("UPDATE secrets SET planned_delete_at = NULL, updated_at = ? WHERE name = ?")
                    .bind(this.clock.now().timestamp())
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                let meta = load_meta(tx, name).await?;
                Ok(meta)
            })
        })
        .await
    }

    /// Deletes, for good, every secret whose recovery window ended before `now`. Returns their names.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        self.write(move |tx| {
            Box::pin(async move {
                let rows = sqlx::query("DELETE FROM secrets WHERE planned_delete_at <= ? RETURNING name")
                    .bind(now.timestamp())
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
                    .collect()
            })
        })
        .await
    }

    // ----- versions and stages -------------------------------------------------------------------

    /// Stores a new version. With `stages = None` it becomes `ACSCurrent` (the old current becomes
    /// `ACSPrevious`); with explicit stages, only those labels move. Writing an existing version id
    /// again with the same value is a no-op; with a different value it is refused.
    pub async fn put_value(
        &self,
        name: &str,
        new: NewVersion,
        stages: Option<Vec<StageLabel>>,
    ) -> Result<PutOutcome> {
        new.data_type.validate_value(&new.value)?;
        let stages = stages.unwrap_or_else(|| vec![StageLabel::current()]);
        let this = self.clone();
        let name = name.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let cmk_id = writable(tx, name).await?;
                if let Some(existing) = version_row(tx, name, new.version_id.as_str()).await? {
                    let (info, sealed) = existing;
                    let ctx = Context::SecretVersion {
                        secret: name,
                        version: new.version_id.as_str(),
                    };
                    let old = this.open(ctx, &sealed)?;
                    if info.data_type != new.data_type || !old.constant_time_eq(&new.value) {
                        return Err(StoreError::VersionConflict {
                            name: name.to_owned(),
                            version: new.version_id.to_string(),
                        });
                    }
                    let map = load_stages(tx, name).await?;
                    return Ok(PutOutcome {
                        stages: stages_of(&map, &new.version_id),
                        version_id: new.version_id,
                        created: false,
                    });
                }
                let map = this.insert_version(tx, name, &cmk_id, &new, &stages).await?;
                Ok(PutOutcome {
                    stages: stages_of(&map, &new.version_id),
                    version_id: new.version_id,
                    created: true,
                })
            })
        })
        .await
    }

    async fn insert_version(
        &self,
        tx: &mut Tx,
        name: &str,
        cmk_id: &str,
        new: &NewVersion,
        stages: &[StageLabel],
    ) -> Result<StageMap> {
        let ctx = Context::SecretVersion {
            secret: name,
            version: new.version_id.as_str(),
        };
        let sealed = self.seal(cmk_id, ctx, &new.value)?;
        let seq: i64 = sqlx::query(
            "UPDATE secrets SET version_seq = version_seq + 1, updated_at = ? WHERE name = ? RETURNING version_seq",
        )
        .bind(self.clock.now().timestamp())
        .bind(name)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO versions (secret_name, version_id, seq, created_at, data_type, cmk_id, cmk_version,
                                   wrapped_key, nonce, ciphertext)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(name)
        .bind(new.version_id.as_str())
        .bind(seq)
        .bind(self.clock.now().timestamp())
        .bind(new.data_type.as_str())
        .bind(&sealed.cmk_id)
        .bind(i64::from(sealed.cmk_version))
        .bind(&sealed.wrapped_key)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(&mut **tx)
        .await?;
        let mut map = load_stages(tx, name).await?;
        let before = map.clone();
        let moves = stages::put_moves(&map, &new.version_id, stages);
        stages::apply(name, &mut map, &moves)?;
        save_stages(tx, name, &before, &map).await?;
        enforce_retention(tx, name).await?;
        Ok(map)
    }

    /// Reads and decrypts one version. Refused while the secret is scheduled for deletion.
    pub async fn get_value(&self, name: &str, selector: &Selector) -> Result<VersionValue> {
        // One statement, so one snapshot: the deletion check, the stage map and the version row, so a
        // value is never returned after its secret's deletion was scheduled, nor paired with stages
        // another writer moved in between. One row per stage, each carrying the selected version (the
        // one named, or the one the stage asked for points at), NULL where there is none.
        let (named, stage) = match selector {
            Selector::Stage(s) => (None, Some(s.as_str())),
            Selector::Version(v) | Selector::Both(v, _) => (Some(v.as_str()), None),
        };
        let rows = sqlx::query(
            "SELECT s.planned_delete_at, st.stage, st.version_id,
                    v.version_id, v.created_at, v.data_type,
                    v.cmk_id, v.cmk_version, v.wrapped_key, v.nonce, v.ciphertext
             FROM secrets s
             LEFT JOIN stages st ON st.secret_name = s.name
             LEFT JOIN versions v ON v.secret_name = s.name AND v.version_id = COALESCE(?2,
                 (SELECT x.version_id FROM stages x WHERE x.secret_name = s.name AND x.stage = ?3))
             WHERE s.name = ?1",
        )
        .bind(name)
        .bind(named)
        .bind(stage)
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or_else(|| StoreError::secret_not_found(name))?;
        if first.try_get::<Option<i64>, _>(0)?.is_some() {
            return Err(StoreError::PendingDeletion {
                name: name.to_owned(),
            });
        }
        let mut map = StageMap::new();
        for r in &rows {
            if let Some(stage) = r.try_get::<Option<String>, _>(1)? {
                map.insert(
                    StageLabel::parse(stage).map_err(corrupt)?,
                    VersionId::parse(r.try_get::<String, _>(2)?).map_err(corrupt)?,
                );
            }
        }
        let by_stage = |stage: &StageLabel| {
            map.get(stage).cloned().ok_or_else(|| StoreError::StageNotFound {
                name: name.to_owned(),
                stage: stage.to_string(),
            })
        };
        let version = match selector {
            Selector::Stage(s) => by_stage(s)?,
            Selector::Version(v) => v.clone(),
            Selector::Both(v, s) => {
                if by_stage(s)? != *v {
                    return Err(StoreError::Invalid(rotd_core::ValidationError {
                        what: "version selector",
                        reason: format!("version {v} does not carry stage {s}"),
                    }));
                }
                v.clone()
            }
        };
        let not_found = || StoreError::VersionNotFound {
            name: name.to_owned(),
            version: version.to_string(),
        };
        let found: Option<String> = first.try_get(3)?;
        if found.as_deref() != Some(version.as_str()) {
            return Err(not_found());
        }
        let info = VersionInfo {
            version_id: version.clone(),
            created_at: ts(first.try_get(4)?),
            data_type: DataType::from_str(&first.try_get::<String, _>(5)?).map_err(corrupt)?,
            stages: stages_of(&map, &version),
        };
        let sealed = sealed_from_row(first, 6)?;
        let value = self.open(
            Context::SecretVersion {
                secret: name,
                version: version.as_str(),
            },
            &sealed,
        )?;
        Ok(VersionValue { info, value })
    }

    /// Every kept version, oldest first.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<VersionInfo>> {
        let mut conn = self.pool.acquire().await?;
        let (_, map) = planned_and_stages(&mut conn, name).await?;
        let rows = sqlx::query(
            "SELECT version_id, created_at, data_type FROM versions WHERE secret_name = ? ORDER BY seq",
        )
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let mut info = info_from_row(r)?;
                info.stages = stages_of(&map, &info.version_id);
                Ok(info)
            })
            .collect()
    }

    /// The current stage map: label → version.
    pub async fn stages(&self, name: &str) -> Result<BTreeMap<StageLabel, VersionId>> {
        let mut conn = self.pool.acquire().await?;
        Ok(planned_and_stages(&mut conn, name).await?.1)
    }

    /// Applies stage moves atomically, each compare-and-set against its `expect`.
    pub async fn move_stages(
        &self,
        name: &str,
        moves: &[StageMove],
    ) -> Result<BTreeMap<StageLabel, VersionId>> {
        let name = name.to_owned();
        let moves = moves.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let name = name.as_str();
                let moves = moves.as_slice();
                writable(tx, name).await?;
                for m in moves {
                    if let Some(v) = &m.to
                        && version_row(tx, name, v.as_str()).await?.is_none()
                    {
                        return Err(StoreError::VersionNotFound {
                            name: name.to_owned(),
                            version: v.to_string(),
                        });
                    }
                }
                let mut map = load_stages(tx, name).await?;
                let before = map.clone();
                stages::apply(name, &mut map, moves)?;
                save_stages(tx, name, &before, &map).await?;
                enforce_retention(tx, name).await?;
                Ok(map)
            })
        })
        .await
    }

    /// The vendor's `UpdateSecretVersionStage`.
    pub async fn update_version_stage(
        &self,
        name: &str,
        stage: &StageLabel,
        remove_from: Option<&VersionId>,
        move_to: Option<&VersionId>,
    ) -> Result<BTreeMap<StageLabel, VersionId>> {
        let map = self.stages(name).await?;
        let moves = stages::update_stage_moves(&map, stage, remove_from, move_to)?;
        // The moves were planned from a snapshot; pin every label they read so a concurrent change
        // turns into a conflict instead of a lost update.
        let mut pinned: Vec<StageMove> = Vec::new();
        for m in moves {
            let expect = match m.expect {
                crate::Expect::Any => map
                    .get(&m.stage)
                    .map_or(crate::Expect::Absent, |v| crate::Expect::At(v.clone())),
                e => e,
            };
            pinned.push(StageMove { expect, ..m });
        }
        self.move_stages(name, &pinned).await
    }

    // ----- journal -------------------------------------------------------------------------------

    /// Appends a journal entry durably and returns its id.
    pub async fn journal_append(&self, rec: &JournalRecord) -> Result<i64> {
        // Everything the row holds is made here, outside the writer's serial part.
        let row = (
            rec.secret_name.to_string(),
            rec.rotation_id.clone(),
            rec.step.kind().as_str(),
            rec.version_id.as_ref().map(VersionId::to_string),
            self.clock.now().timestamp(),
            rec.step.detail().to_string(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                let (name, rotation, step, version, at, detail) = row;
                let id: i64 = sqlx::query(
                    "INSERT INTO rotation_journal (secret_name, rotation_id, step, version_id, at, detail)
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(name)
                .bind(rotation)
                .bind(step)
                .bind(version)
                .bind(at)
                .bind(detail)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                Ok(id)
            })
        })
        .await
    }

    /// A secret's journal, oldest first.
    pub async fn journal(&self, name: &str) -> Result<Vec<JournalEntry>> {
        self.journal_since_last(name, None).await
    }

    /// The part of a secret's journal the engine decides from: everything since the latest `promoted`
    /// entry or the latest `created` marker (the start of this incarnation), whichever is newer.
    pub async fn journal_tail(&self, name: &str) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(
            "SELECT id, secret_name, rotation_id, step, version_id, at, detail FROM rotation_journal
             WHERE secret_name = ?1 AND id >= COALESCE(
                 (SELECT MAX(id) FROM rotation_journal
                  WHERE secret_name = ?1 AND step IN ('promoted', 'created')), 0)
             ORDER BY id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(journal_row).collect()
    }

    /// The tail of a secret's journal that starts at its latest entry with step `step` (the whole journal
    /// if there is none). The engine reads only this much, so its cost does not grow with history.
    pub async fn journal_since_last(&self, name: &str, step: Option<&str>) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(
            "SELECT id, secret_name, rotation_id, step, version_id, at, detail FROM rotation_journal
             WHERE secret_name = ?1 AND id >= COALESCE(
                 (SELECT MAX(id) FROM rotation_journal WHERE secret_name = ?1 AND step = ?2), 0)
             ORDER BY id",
        )
        .bind(name)
        .bind(step)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(journal_row).collect()
    }

    // ----- CMKs ----------------------------------------------------------------------------------

    /// How many data keys each CMK version wraps.
    pub async fn cmk_usage(&self) -> Result<Vec<CmkUsage>> {
        let rows = sqlx::query(
            "SELECT cmk_id, cmk_version, COUNT(*) FROM (
                 SELECT cmk_id, cmk_version FROM versions UNION ALL SELECT cmk_id, cmk_version FROM access_keys)
             GROUP BY cmk_id, cmk_version ORDER BY cmk_id, cmk_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CmkUsage {
                    cmk_id: r.try_get(0)?,
                    cmk_version: u32::try_from(r.try_get::<i64, _>(1)?).map_err(corrupt)?,
                    data_keys: u64::try_from(r.try_get::<i64, _>(2)?).map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// Re-wraps every data key under the newest version of its CMK, one row per transaction so a
    /// crash leaves every row readable. Calls `progress(done, total)` as it goes; returns rows changed.
    pub async fn rewrap_all(&self, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT 'v', secret_name, version_id, cmk_id, cmk_version, wrapped_key, nonce, ciphertext FROM versions
             UNION ALL
             SELECT 'a', id, '', cmk_id, cmk_version, wrapped_key, nonce, ciphertext FROM access_keys",
        )
        .fetch_all(&self.pool)
        .await?;
        let total = rows.len() as u64;
        let mut changed = 0;
        for (i, r) in rows.iter().enumerate() {
            let kind: String = r.try_get(0)?;
            let (a, b): (String, String) = (r.try_get(1)?, r.try_get(2)?);
            let sealed = sealed_from_row(r, 3)?;
            let ctx = if kind == "v" {
                Context::SecretVersion {
                    secret: &a,
                    version: &b,
                }
            } else {
                Context::AccessKey { id: &a }
            };
            let next = envelope::rewrap(&self.keyring.read().expect("keyring lock poisoned"), ctx, &sealed)?;
            if let Some(next) = next {
                let old_version = i64::from(sealed.cmk_version);
                self.write(move |tx| {
                    Box::pin(async move {
                        let q = if kind == "v" {
                            sqlx::query(
                                "UPDATE versions SET cmk_version = ?, wrapped_key = ?
                                 WHERE secret_name = ? AND version_id = ? AND cmk_version = ?",
                            )
                            .bind(i64::from(next.cmk_version))
                            .bind(&next.wrapped_key)
                            .bind(&a)
                            .bind(&b)
                        } else {
                            sqlx::query(
                                "UPDATE access_keys SET cmk_version = ?, wrapped_key = ? WHERE id = ? AND cmk_version = ?",
                            )
                            .bind(i64::from(next.cmk_version))
                            .bind(&next.wrapped_key)
                            .bind(&a)
                        };
                        q.bind(old_version).execute(&mut **tx).await?;
                        Ok(())
                    })
                })
                .await?;
                changed += 1;
            }
            progress(i as u64 + 1, total);
        }
        Ok(changed)
    }

    // ----- access keys ---------------------------------------------------------------------------

    /// Creates an API access key and returns it with its secret, which is shown to the caller once.
    pub async fn create_access_key(
        &self,
        description: &str,
        policy: &str,
        cmk_id: &str,
    ) -> Result<(AccessKeyInfo, Secret)> {
        let id = format!("LTAI{}", random_alnum(20));
        let secret = Secret::from(random_alnum(30));
        let sealed = self.seal(cmk_id, Context::AccessKey { id: &id }, &secret)?;
        let now = self.clock.now().timestamp();
        let description = description.to_owned();
        let policy = policy.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let (description, policy) = (description.as_str(), policy.as_str());
                sqlx::query(
                    "INSERT INTO access_keys (id, description, policy, enabled, created_at, cmk_id, cmk_version, wrapped_key, nonce, ciphertext)
                     VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(description)
                .bind(policy)
                .bind(now)
                .bind(&sealed.cmk_id)
                .bind(i64::from(sealed.cmk_version))
                .bind(&sealed.wrapped_key)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .execute(&mut **tx)
                .await?;
                Ok((
                    AccessKeyInfo {
                        id,
                        description: description.to_owned(),
                        policy: policy.to_owned(),
                        enabled: true,
                        created_at: ts(now),
                    },
                    secret,
                ))
            })
        })
        .await
    }

    pub async fn list_access_keys(&self) -> Result<Vec<AccessKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, description, policy, enabled, created_at FROM access_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccessKeyInfo {
                    id: r.try_get(0)?,
                    description: r.try_get(1)?,
                    policy: r.try_get(2)?,
                    enabled: r.try_get::<i64, _>(3)? != 0,
                    created_at: ts(r.try_get(4)?),
                })
            })
            .collect()
    }

    /// Enables or disables an access key; returns false if there is no such key.
    pub async fn set_access_key_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let id = id.as_str();
                let r = sqlx::query("UPDATE access_keys SET enabled = ? WHERE id = ?")
                    .bind(i64::from(enabled))
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    /// Deletes an access key for good; returns false if there is no such key.
    pub async fn delete_access_key(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let id = id.as_str();
                let r = sqlx::query("DELETE FROM access_keys WHERE id = ?")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    /// An access key with its secret, for request verification.
    pub async fn access_key(&self, id: &str) -> Result<Option<(AccessKeyInfo, Secret)>> {
        let Some(r) = sqlx::query(
            "SELECT id, description, policy, enabled, created_at, cmk_id, cmk_version, wrapped_key, nonce, ciphertext
             FROM access_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let info = AccessKeyInfo {
            id: r.try_get(0)?,
            description: r.try_get(1)?,
            policy: r.try_get(2)?,
            enabled: r.try_get::<i64, _>(3)? != 0,
            created_at: ts(r.try_get(4)?),
        };
        let secret = self.open(Context::AccessKey { id }, &sealed_from_row(&r, 5)?)?;
        Ok(Some((info, secret)))
    }
}

fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 1];
    while out.len() < n {
        aws_lc_rs::rand::fill(&mut buf).expect("system random number generator");
        // 248 = 4 * 62: rejecting bytes above it keeps every character equally likely.
        if buf[0] < 248 {
            out.push(ALPHABET[usize::from(buf[0]) % ALPHABET.len()] as char);
        }
    }
    out
}

const SELECT_META: &str =
    "SELECT name, secret_type, description, cmk_id, extended_config, rotation, policy, managed_by,
    created_at, updated_at, planned_delete_at, last_rotation_at, next_rotation_at FROM secrets ORDER BY name";

fn meta_from_row(r: &SqliteRow, tags: Tags) -> Result<SecretMeta> {
    let name: String = r.try_get("name")?;
    let kind: String = r.try_get("secret_type")?;
    let rotation: Option<String> = r.try_get("rotation")?;
    let opt_ts = |c: &str| -> Result<Option<DateTime<Utc>>> { Ok(r.try_get::<Option<i64>, _>(c)?.map(ts)) };
    Ok(SecretMeta {
        name: SecretName::parse(name).map_err(corrupt)?,
        kind: SecretType::from_str(&kind).map_err(corrupt)?,
        description: r.try_get("description")?,
        tags,
        cmk_id: r.try_get("cmk_id")?,
        extended_config: r.try_get("extended_config")?,
        rotation: rotation
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt)?,
        policy: r.try_get("policy")?,
        managed_by: r.try_get("managed_by")?,
        created_at: ts(r.try_get("created_at")?),
        updated_at: ts(r.try_get("updated_at")?),
        planned_delete_at: opt_ts("planned_delete_at")?,
        last_rotation_at: opt_ts("last_rotation_at")?,
        next_rotation_at: opt_ts("next_rotation_at")?,
    })
}

async fn load_meta(conn: &mut sqlx::SqliteConnection, name: &str) -> Result<SecretMeta> {
    // The secret's row with its tags joined: one row per tag (key and value NULL without tags).
    let rows = sqlx::query(
        "SELECT s.name, s.secret_type, s.description, s.cmk_id, s.extended_config, s.rotation, s.policy,
                s.managed_by, s.created_at, s.updated_at, s.planned_delete_at, s.last_rotation_at,
                s.next_rotation_at, t.key AS tag_key, t.value AS tag_value
         FROM secrets s LEFT JOIN secret_tags t ON t.secret_name = s.name
         WHERE s.name = ? ORDER BY t.key",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let first = rows.first().ok_or_else(|| StoreError::secret_not_found(name))?;
    let mut tags = Vec::new();
    for r in &rows {
        if let Some(key) = r.try_get::<Option<String>, _>("tag_key")? {
            let value: String = r.try_get("tag_value")?;
            tags.push(Tag::new(key, value).map_err(corrupt)?);
        }
    }
    meta_from_row(first, Tags::new(tags).map_err(corrupt)?)
}

fn tags_from_rows(rows: &[SqliteRow]) -> Result<Tags> {
    let tags = rows
        .iter()
        .map(|r| Tag::new(r.try_get::<String, _>("key")?, r.try_get::<String, _>("value")?).map_err(corrupt))
        .collect::<Result<Vec<_>>>()?;
    Tags::new(tags).map_err(corrupt)
}

async fn load_all_tags(conn: &mut sqlx::SqliteConnection) -> Result<BTreeMap<String, Tags>> {
    let rows = sqlx::query("SELECT secret_name, key, value FROM secret_tags ORDER BY secret_name, key")
        .fetch_all(&mut *conn)
        .await?;
    let mut grouped: BTreeMap<String, Vec<SqliteRow>> = BTreeMap::new();
    for r in rows {
        grouped.entry(r.try_get("secret_name")?).or_default().push(r);
    }
    grouped
        .into_iter()
        .map(|(k, rows)| Ok((k, tags_from_rows(&rows)?)))
        .collect()
}

async fn write_tags(tx: &mut Tx, name: &str, tags: &Tags) -> Result<()> {
    for (k, v) in tags.iter() {
        sqlx::query("INSERT INTO secret_tags (secret_name, key, value) VALUES (?, ?, ?)")
            .bind(name)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The secret's planned deletion time; `SecretNotFound` if it does not exist.
async fn planned_delete(conn: &mut sqlx::SqliteConnection, name: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT planned_delete_at FROM secrets WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::secret_not_found(name))?;
    Ok(row.try_get(0)?)
}

/// Checks that the secret exists and may be written; returns its CMK id.
async fn writable(tx: &mut Tx, name: &str) -> Result<String> {
    let row = sqlx::query("SELECT planned_delete_at, cmk_id FROM secrets WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::secret_not_found(name))?;
    if row.try_get::<Option<i64>, _>(0)?.is_some() {
        return Err(StoreError::PendingDeletion {
            name: name.to_owned(),
        });
    }
    Ok(row.try_get(1)?)
}

fn info_from_row(r: &SqliteRow) -> Result<VersionInfo> {
    Ok(VersionInfo {
        version_id: VersionId::parse(r.try_get::<String, _>("version_id")?).map_err(corrupt)?,
        created_at: ts(r.try_get("created_at")?),
        data_type: DataType::from_str(&r.try_get::<String, _>("data_type")?).map_err(corrupt)?,
        stages: Vec::new(),
    })
}

fn sealed_from_row(r: &SqliteRow, first: usize) -> Result<Sealed> {
    Ok(Sealed {
        cmk_id: r.try_get(first)?,
        cmk_version: u32::try_from(r.try_get::<i64, _>(first + 1)?).map_err(corrupt)?,
        wrapped_key: r.try_get(first + 2)?,
        nonce: r.try_get(first + 3)?,
        ciphertext: r.try_get(first + 4)?,
    })
}

async fn version_row(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
    version: &str,
) -> Result<Option<(VersionInfo, Sealed)>> {
    let row = sqlx::query(
        "SELECT version_id, created_at, data_type, cmk_id, cmk_version, wrapped_key, nonce, ciphertext
         FROM versions WHERE secret_name = ? AND version_id = ?",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok((info_from_row(&r)?, sealed_from_row(&r, 3)?)))
        .transpose()
}

async fn load_stages(conn: &mut sqlx::SqliteConnection, name: &str) -> Result<StageMap> {
    let rows = sqlx::query("SELECT stage, version_id FROM stages WHERE secret_name = ?")
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                StageLabel::parse(r.try_get::<String, _>(0)?).map_err(corrupt)?,
                VersionId::parse(r.try_get::<String, _>(1)?).map_err(corrupt)?,
            ))
        })
        .collect()
}

/// The secret's planned deletion time and its stage map, read by one statement (one snapshot);
/// `SecretNotFound` if it does not exist.
async fn planned_and_stages(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
) -> Result<(Option<i64>, StageMap)> {
    let rows = sqlx::query(
        "SELECT s.planned_delete_at, st.stage, st.version_id FROM secrets s
         LEFT JOIN stages st ON st.secret_name = s.name WHERE s.name = ?",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let first = rows.first().ok_or_else(|| StoreError::secret_not_found(name))?;
    let planned = first.try_get(0)?;
    let mut map = StageMap::new();
    for r in &rows {
        if let Some(stage) = r.try_get::<Option<String>, _>(1)? {
            let version: String = r.try_get(2)?;
            map.insert(
                StageLabel::parse(stage).map_err(corrupt)?,
                VersionId::parse(version).map_err(corrupt)?,
            );
        }
    }
    Ok((planned, map))
}

async fn save_stages(tx: &mut Tx, name: &str, before: &StageMap, after: &StageMap) -> Result<()> {
    for stage in before.keys().filter(|s| !after.contains_key(*s)) {
        sqlx::query("DELETE FROM stages WHERE secret_name = ? AND stage = ?")
            .bind(name)
            .bind(stage.as_str())
            .execute(&mut **tx)
            .await?;
    }
    for (stage, version) in after.iter().filter(|(s, v)| before.get(*s) != Some(*v)) {
        sqlx::query(
            "INSERT INTO stages (secret_name, stage, version_id) VALUES (?, ?, ?)
             ON CONFLICT (secret_name, stage) DO UPDATE SET version_id = excluded.version_id",
        )
        .bind(name)
        .bind(stage.as_str())
        .bind(version.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn stages_of(map: &StageMap, version: &VersionId) -> Vec<StageLabel> {
    map.iter()
        .filter(|(_, v)| *v == version)
        .map(|(s, _)| s.clone())
        .collect()
}

/// Keeps at most `MAX_VERSIONS_PER_SECRET` versions by dropping the oldest unlabelled ones.
async fn enforce_retention(tx: &mut Tx, name: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM versions WHERE secret_name = ?1 AND version_id IN (
             SELECT version_id FROM versions v WHERE v.secret_name = ?1
               AND NOT EXISTS (SELECT 1 FROM stages s WHERE s.secret_name = v.secret_name AND s.version_id = v.version_id)
             ORDER BY seq
             LIMIT MAX(0, (SELECT COUNT(*) FROM versions WHERE secret_name = ?1) - ?2))",
    )
    .bind(name)
    .bind(rotd_core::MAX_VERSIONS_PER_SECRET as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn journal_row(r: &sqlx::sqlite::SqliteRow) -> Result<JournalEntry> {
    let id: i64 = r.try_get("id")?;
    let secret_name: String = r.try_get("secret_name")?;
    let step: String = r.try_get("step")?;
    let detail: serde_json::Value =
        serde_json::from_str(&r.try_get::<String, _>("detail")?).map_err(|e| {
            crate::journal::corrupt_entry(&secret_name, id, &format!("{step}: detail is not JSON: {e}"))
        })?;
    let step = crate::Step::decode(&step, &detail)
        .map_err(|e| crate::journal::corrupt_entry(&secret_name, id, &e))?;
    Ok(JournalEntry {
        id,
        secret_name,
        rotation_id: r.try_get("rotation_id")?,
        step,
        version_id: r.try_get("version_id")?,
        at: ts(r.try_get("at")?),
    })
}

/// A random id for a secret's incarnation (the `created` marker's rotation id).
fn incarnation_id() -> Result<String> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| StoreError::Keyring("random number generator failed".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
