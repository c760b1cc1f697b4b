//! Group commit: every write transaction of a [`crate::Store`] runs on one connection owned by a writer
//! thread, and the transactions that queue while one batch commits are committed together, with one
//! `fsync` of the WAL instead of one each.
//!
//! Durability is unchanged: [`WriteTx::commit`] returns only after the `COMMIT` that contains the
//! caller's changes has returned (`synchronous=FULL`: the WAL is synced), so a rotation step that
//! returned is on disk before the next one is taken, exactly as with a transaction of its own. What
//! changes is that many concurrent rotations share each sync: the disk's sync latency (several
//! milliseconds on the machines this was measured on) bounded the store at a few hundred writes a
//! second whatever the number of rotations running.
//!
//! ```text
//!   caller A: write_tx ─► lease ─(SQL)─► commit ─────────────► durable ─► next step
//!   caller B: write_tx ──────► lease ─(SQL)─► commit ──────────► durable
//!   writer:   BEGIN IMMEDIATE; SAVEPOINT (A) │ RELEASE; SAVEPOINT (B) │ (queue empty) RELEASE; COMMIT
//! ```
//!
//! Each transaction is a savepoint inside the batch's transaction: one that fails or is dropped
//! (an error returned with `?`, a cancelled future) is rolled back to its savepoint alone, and the
//! others in its batch still commit. A batch commits as soon as no lease request is queued, or at
//! [`MAX_BATCH`] transactions, so a lone writer waits for no one. If the batch's `COMMIT` fails, or
//! SQLite aborted the whole transaction under it, every caller in the batch gets the error: none of
//! them is told its change is durable when it is not.
//!
//! Readers use the store's pool and, as before, see only committed data.

use std::ops::{Deref, DerefMut};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// At most this many transactions share one commit, which bounds how long the first of them waits.
pub(crate) const MAX_BATCH: usize = 128;

/// The handle through which a store's clones reach its writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    requests: mpsc::UnboundedSender<Request>,
}

enum Request {
    /// A caller wants the connection for one transaction.
    Lease(oneshot::Sender<Result<WriteTx, StoreError>>),
    /// `Store::close`: commit what is pending, close the connection, stop.
    Close(oneshot::Sender<()>),
}

/// What a lease sends back with the connection.
enum Outcome {
    /// Keep the changes; answer on the channel once they are durable.
    Commit(oneshot::Sender<Result<(), StoreError>>),
    /// Discard the changes (an error, or the transaction was dropped).
    Rollback,
}

struct Returned {
    conn: SqliteConnection,
    outcome: Outcome,
}

/// One write transaction: the writer's connection, lent out inside a savepoint. Commit with
/// [`WriteTx::commit`]; dropping it rolls its changes back.
pub(crate) struct WriteTx {
    conn: Option<SqliteConnection>,
    back: Option<oneshot::Sender<Returned>>,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").finish_non_exhaustive()
    }
}

fn gone() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

impl WriteTx {
    /// Keeps the changes and waits until the batch holding them is committed (durable).
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let (done, durable) = oneshot::channel();
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            back.send(Returned {
                conn,
                outcome: Outcome::Commit(done),
            })
            .map_err(|_| gone())?;
        }
        durable.await.map_err(|_| gone())?
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            // The writer is waiting for the connection; if it has stopped, the connection just closes.
            let _ = back.send(Returned {
                conn,
                outcome: Outcome::Rollback,
            });
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_ref()
            .expect("a lease holds the connection until it is returned")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a lease holds the connection until it is returned")
    }
}

impl Writer {
    /// Starts the writer thread on `conn` (opened with the store's options).
    pub(crate) fn start(conn: SqliteConnection) -> std::io::Result<Self> {
        let (requests, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Its own thread and runtime, so the store works from any runtime that holds a clone (and
        // outlives none: the thread ends when the last clone is dropped or the store is closed).
        std::thread::Builder::new()
            .name("rotd-store-writer".to_owned())
            .spawn(move || rt.block_on(run(conn, rx)))?;
        Ok(Self { requests })
    }

    /// A write transaction (`BEGIN IMMEDIATE` semantics: it holds the database's write lock).
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        let (reply, lease) = oneshot::channel();
        self.requests.send(Request::Lease(reply)).map_err(|_| gone())?;
        lease.await.map_err(|_| gone())?
    }

    /// Commits what is pending and stops the writer; later writes fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.requests.send(Request::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

/// A batch that did not commit, told to each of its callers: retryable, as an I/O failure is (the
/// caller's transaction can be run again).
fn batch_failed(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(message)))
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(Into::into)
}

/// The batch under way: its transaction is open and these callers wait for its commit.
///
/// Each transaction runs inside the savepoint `w`. The savepoint of one that keeps its changes is
/// released together with the next statement the writer sends (the next transaction's `SAVEPOINT`,
/// or the batch's `COMMIT`), so a transaction costs the writer one round trip to SQLite, and a release
/// that fails (SQLite gave up the whole transaction) is still seen before anyone is told of success.
#[derive(Default)]
struct Batch {
    open: bool,
    /// The last transaction kept its changes and its savepoint is not released yet.
    unreleased: bool,
    waiting: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

impl Batch {
    /// Opens the savepoint of the next transaction (and the batch's transaction, if none is open).
    async fn savepoint(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let sql = match (self.open, self.unreleased) {
            (false, _) => "BEGIN IMMEDIATE; SAVEPOINT w",
            (true, true) => "RELEASE w; SAVEPOINT w",
            (true, false) => "SAVEPOINT w",
        };
        match exec(conn, sql).await {
            Ok(()) => {
                self.open = true;
                self.unreleased = false;
                Ok(())
            }
            Err(e) if self.open => {
                self.abort(conn, &e).await;
                Err(e)
            }
            Err(e) => {
                // `BEGIN` may have succeeded before `SAVEPOINT` failed.
                let _ = exec(conn, "ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// The transaction in `w` kept its changes: its caller waits for the batch's commit.
    fn keep(&mut self, done: oneshot::Sender<Result<(), StoreError>>) {
        self.unreleased = true;
        self.waiting.push(done);
    }

    /// The transaction in `w` is undone; the batch goes on without it.
    async fn undo(&mut self, conn: &mut SqliteConnection) {
        self.unreleased = false;
        if let Err(e) = exec(conn, "ROLLBACK TO w; RELEASE w").await {
            self.abort(conn, &e).await;
        }
    }

    async fn commit(&mut self, conn: &mut SqliteConnection) {
        if !self.open {
            return;
        }
        let sql = if self.unreleased {
            "RELEASE w; COMMIT"
        } else {
            "COMMIT"
        };
        self.open = false;
        self.unreleased = false;
        let result = exec(conn, sql).await;
        if result.is_err() {
            // Whatever the failure left open goes; the callers are told their changes are not durable.
            let _ = exec(conn, "ROLLBACK").await;
        }
        self.answer(&result);
    }

    /// SQLite gave up the whole transaction under the batch (or a savepoint could not be closed):
    /// nothing in it will be committed.
    async fn abort(&mut self, conn: &mut SqliteConnection, why: &StoreError) {
        let _ = exec(conn, "ROLLBACK").await;
        self.open = false;
        self.unreleased = false;
        let err = Err(batch_failed(format!("the write batch was rolled back: {why}")));
        self.answer(&err);
    }

    fn answer(&mut self, result: &Result<(), StoreError>) {
        for w in self.waiting.drain(..) {
            let _ = w.send(match result {
                Ok(()) => Ok(()),
                Err(e) => Err(batch_failed(format!("committing the write batch: {e}"))),
            });
        }
    }
}

async fn run(conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut conn = Some(conn);
    let mut batch = Batch::default();
    loop {
        let Some(c) = conn.as_mut() else { return };
        let next = if batch.open {
            // Nothing else queued (or every handle gone): commit the batch now rather than wait.
            rx.try_recv().ok()
        } else {
            match rx.recv().await {
                Some(r) => Some(r),
                None => break,
            }
        };
        let reply = match next {
            None => {
                batch.commit(c).await;
                continue;
            }
            Some(Request::Close(done)) => {
                batch.commit(c).await;
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
                let _ = done.send(());
                return;
            }
            Some(Request::Lease(reply)) => reply,
        };
        if reply.is_closed() {
            continue;
        }
        let was_open = batch.open;
        let mut opened = batch.savepoint(c).await;
        if opened.is_err() && was_open {
            // The batch was lost under this transaction, which has done nothing yet: a fresh one.
            opened = batch.savepoint(c).await;
        }
        if let Err(e) = opened {
            let _ = reply.send(Err(e));
            continue;
        }
        let (back, returned) = oneshot::channel();
        let lease = WriteTx {
            conn: conn.take(),
            back: Some(back),
        };
        // A caller that stopped waiting drops the lease here, which sends the connection back.
        drop(reply.send(Ok(lease)));
        let Ok(Returned { conn: c, outcome }) = returned.await else {
            // The lease was leaked without returning the connection (never done in this crate); the
            // batch is lost with it.
            batch.answer(&Err(gone()));
            return;
        };
        let c = conn.insert(c);
        match outcome {
            Outcome::Commit(done) => batch.keep(done),
            Outcome::Rollback => batch.undo(c).await,
        }
        if batch.waiting.len() >= MAX_BATCH {
            batch.commit(c).await;
        }
    }
    if let Some(c) = conn.as_mut() {
        batch.commit(c).await;
    }
}
