//! Group commit: every write transaction of a [`crate::Store`] runs on one connection owned by a writer
//! thread, and the transactions that queue while one batch commits are committed together, with one
//! `fsync` of the WAL instead of one each.
//!
//! Durability is unchanged: [`Writer::run`] returns only after the `COMMIT` that contains the caller's
//! changes has returned (`synchronous=FULL`: the WAL is synced), so a rotation step that returned is on
//! disk before the next one is taken, exactly as with a transaction of its own. What changes is that
//! many concurrent rotations share each sync: the disk's sync latency (several milliseconds on the
//! machines this was measured on) bounded the store at a few hundred writes a second whatever the
//! number of rotations running.
//!
//! ```text
//!   caller A: run(body A) ─────────────────────────────────────► durable ─► next step
//!   caller B: run(body B) ─────────────────────────────────────► durable
//!   writer:   BEGIN IMMEDIATE; SAVEPOINT, body A │ RELEASE; SAVEPOINT, body B │ (queue empty) RELEASE; COMMIT
//! ```
//!
//! The writer thread runs each transaction's body itself, on its own single-threaded runtime: the
//! batch's serial part is then only SQLite's work, never a wait for a busy async worker to poll the
//! caller. Each transaction is a savepoint inside the batch's transaction: one whose body fails is
//! rolled back to its savepoint alone, and the others in its batch still commit. A batch commits as
//! soon as nothing else is queued, or at [`MAX_BATCH`] transactions, so a lone writer waits for no one.
//! If the batch's `COMMIT` fails, or SQLite aborted the whole transaction under it, every caller in the
//! batch gets the error: none of them is told its change is durable when it is not. A caller that stops
//! waiting (its future dropped) does not stop its transaction: it commits or fails as if the caller
//! had been cancelled just after.
//!
//! Readers use the store's pool and, as before, see only committed data.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// At most this many transactions share one commit, which bounds how long the first of them waits.
pub(crate) const MAX_BATCH: usize = 128;

/// A transaction body's future; it runs on the writer thread only, so it need not be `Send`.
pub(crate) type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + 'c>>;

/// The handle through which a store's clones reach its writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    requests: mpsc::UnboundedSender<Request>,
}

/// Tells a caller how its transaction ended once the batch holding it has (`Ok` = durable).
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A queued transaction. Given the connection inside its savepoint it runs the body and returns how to
/// answer its caller after the commit, or `None` if the body failed (the caller has its error, and the
/// savepoint is rolled back). Given an error instead (the batch could not take it), it answers with it.
type Job = Box<dyn for<'c> FnOnce(Result<&'c mut Tx, StoreError>) -> JobFuture<'c> + Send>;
type JobFuture<'c> = Pin<Box<dyn Future<Output = Option<Deliver>> + 'c>>;

enum Request {
    Job(Job),
    /// `Store::close`: commit what is pending, close the connection, stop.
    Close(oneshot::Sender<()>),
}

/// The writer's connection as a transaction body sees it.
pub(crate) struct Tx {
    conn: SqliteConnection,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

fn gone() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
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
            .spawn(move || rt.block_on(run(Tx { conn }, rx)))?;
        Ok(Self { requests })
    }

    /// Runs `body` as one write transaction (`BEGIN IMMEDIATE` semantics: the batch holds the
    /// database's write lock) and returns its result once it is durable. An error from `body` rolls
    /// back its changes alone.
    pub(crate) async fn run<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx) -> TxFuture<'c, T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |tx: Result<&mut Tx, StoreError>| -> JobFuture<'_> {
            Box::pin(async move {
                let tx = match tx {
                    Ok(tx) => tx,
                    Err(e) => {
                        let _ = answer.send(Err(e));
                        return None;
                    }
                };
                match body(tx).await {
                    Ok(v) => Some(Box::new(move |durable: Result<(), StoreError>| {
                        let _ = answer.send(durable.map(|()| v));
                    }) as Deliver),
                    Err(e) => {
                        let _ = answer.send(Err(e));
                        None
                    }
                }
            })
        });
        self.requests.send(Request::Job(job)).map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
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
    waiting: Vec<Deliver>,
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
    fn keep(&mut self, done: Deliver) {
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
            w(match result {
                Ok(()) => Ok(()),
                Err(e) => Err(batch_failed(format!("committing the write batch: {e}"))),
            });
        }
    }
}

async fn run(mut tx: Tx, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Batch::default();
    loop {
        let next = if batch.open {
            // Nothing else queued (or every handle gone): commit the batch now rather than wait.
            rx.try_recv().ok()
        } else {
            match rx.recv().await {
                Some(r) => Some(r),
                None => break,
            }
        };
        let job = match next {
            None => {
                batch.commit(&mut tx).await;
                continue;
            }
            Some(Request::Close(done)) => {
                batch.commit(&mut tx).await;
                let _ = tx.conn.close().await;
                let _ = done.send(());
                return;
            }
            Some(Request::Job(job)) => job,
        };
        let was_open = batch.open;
        let mut opened = batch.savepoint(&mut tx).await;
        if opened.is_err() && was_open {
            // The batch was lost under this transaction, which has done nothing yet: a fresh one.
            opened = batch.savepoint(&mut tx).await;
        }
        if let Err(e) = opened {
            let _ = job(Err(e)).await;
            continue;
        }
        match job(Ok(&mut tx)).await {
            Some(done) => batch.keep(done),
            None => batch.undo(&mut tx).await,
        }
        if batch.waiting.len() >= MAX_BATCH {
            batch.commit(&mut tx).await;
        }
    }
    batch.commit(&mut tx).await;
}
