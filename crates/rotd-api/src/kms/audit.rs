//! The audit log: one JSON line per KMS API request, durable before the response leaves. A record says
//! who (access key, source address), what (action, the secret or secrets it operated on, version), the
//! outcome (vendor code) and the request id; it never holds a value. Secret names are the resolved names
//! the action used, never a raw parameter. If a record cannot be written the request is refused with
//! `InternalFailure`: an unaudited read of a secret must not happen.
//!
//! The file is written by one dedicated thread (`rotd-audit`), never by the async workers. Appenders
//! send their line over a channel and wait for that line's outcome. The writer takes every line queued
//! when it wakes (up to [`MAX_BATCH_LINES`] / [`MAX_BATCH_BYTES`]), writes them with one `write` and makes
//! them durable with one `fdatasync`, then answers every appender of the batch with that result: under
//! concurrency, lines that arrive while one batch is being synced share the next batch's sync (group
//! commit), and a response still leaves only after its own line is on disk. A batch that fails (write or
//! sync) fails every request in it, and the file is cut back to where the batch began, so no line of a
//! refused request stays behind claiming it ran. Lines never interleave: one thread writes whole lines.
//!
//! Requests that fail before authentication (unsigned, a bad signature, an unknown key, malformed, over
//! the source budget) cost nothing to send, so they are not each written: [`PreAuthSampler`] lets at most
//! [`PRE_AUTH_LINES_PER_SECOND`] of them into the log per second, and the next line written (of any
//! kind) carries `suppressed`, how many were left out since the previous line that carried a count.
//! The metric `rotd_api_auth_failures_total` counts them all. Authenticated requests are always written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

/// The most lines one batch (one sync) holds.
pub const MAX_BATCH_LINES: usize = 4096;
/// The most bytes one batch holds (a batch always takes at least one line).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub access_key_id: Option<&'a str>,
    /// The client address: the TCP peer (`ip:port`), or the address a trusted proxy forwarded for.
    pub source: String,
    /// The trusted proxy a forwarded request came through; absent for direct requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub action: Option<&'a str>,
    /// The secret the action operated on, resolved (an ARN is recorded as the name it names); `None`
    /// when it operates on none, or on a list (then see `secret_names`).
    pub secret_name: Option<&'a str>,
    /// Every secret a BatchGetSecretValue reads, in request order; the field is absent for other
    /// actions, so their lines keep the earlier shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_names: Option<&'a [String]>,
    pub version_id: Option<&'a str>,
    /// `Success` or the vendor error code.
    pub result: &'a str,
    /// Pre-authentication failures left out of the log since the previous line that carried this
    /// field; absent when none were.
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most pre-authentication failures written to the log per second.
pub const PRE_AUTH_LINES_PER_SECOND: u32 = 10;

/// Decides which pre-authentication failures are written, and counts the ones that are not.
#[derive(Debug)]
pub(crate) struct PreAuthSampler {
    per_second: u32,
    state: Mutex<SamplerState>,
}

#[derive(Debug, Default)]
struct SamplerState {
    /// The start of the current one-second window, and how many failures it let through.
    window: Option<Instant>,
    written: u32,
    /// Failures left out and not yet reported on a line.
    suppressed: u64,
}

impl PreAuthSampler {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            state: Mutex::new(SamplerState::default()),
        }
    }

    /// Whether a pre-authentication failure at `now` is written; if not, it is counted as suppressed.
    pub fn admit(&self, now: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1))
        {
            s.window = Some(now);
            s.written = 0;
        }
        if s.written < self.per_second {
            s.written += 1;
            true
        } else {
            s.suppressed += 1;
            false
        }
    }

    /// The suppressed count for the line about to be written; [`PreAuthSampler::restore`] gives it back
    /// if that line fails.
    pub fn take_suppressed(&self) -> u64 {
        self.state
            .lock()
            .map_or(0, |mut s| std::mem::take(&mut s.suppressed))
    }

    pub fn restore(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.suppressed += n;
        }
    }
}

/// What the writer has done since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Lines written and synced (lines of failed batches are not counted).
    pub lines: u64,
    /// Syncs (batches) attempted, successful or not.
    pub syncs: u64,
    /// Batches that failed to be written or synced.
    pub failed_batches: u64,
}

/// Counters the writer thread updates and anyone may read.
#[derive(Debug)]
struct Shared {
    lines: AtomicU64,
    syncs: AtomicU64,
    failed_batches: AtomicU64,
    /// Seconds per batch (write and sync), exported as `rotd_api_audit_write_seconds`.
    write_seconds: prometheus_client::metrics::histogram::Histogram,
}

/// A line waiting for its batch, and where its outcome goes.
struct Pending {
    line: Vec<u8>,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// What the writer thread is asked to do.
enum Msg {
    Line(Pending),
    /// Open the path again (after logrotate moved the file away), answering when the new file is in use.
    Reopen(oneshot::Sender<std::io::Result<()>>),
}

/// The append-only audit file, written by its own thread. Cheap to clone; the thread ends once every
/// clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    /// Feeds the writer thread. A send fails only if that thread is gone, which fails the request.
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating 0600 if needed) the audit file for appending and starts its writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = open_file(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let shared = Arc::new(Shared {
            lines: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            write_seconds: super::metrics::audit_histogram(),
        });
        let writer = Writer {
            path: path.to_owned(),
            file,
            rx,
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("rotd-audit".to_owned())
            .spawn(move || writer.run())?;
        Ok(Self {
            path: path.to_owned(),
            tx,
            shared,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The batch latency histogram the writer observes.
    pub(crate) fn write_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.shared.write_seconds.clone()
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            lines: self.shared.lines.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            failed_batches: self.shared.failed_batches.load(Ordering::Relaxed),
        }
    }

    /// Appends one record and resolves once it is on disk (or its batch failed).
    pub async fn append(&self, record: &AuditRecord<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let (done, outcome) = oneshot::channel();
        let stopped = || std::io::Error::other("the audit writer has stopped");
        self.tx
            .send(Msg::Line(Pending { line, done }))
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Opens the file at the path again (SIGHUP, after logrotate renamed it): every line appended after
    /// this returns goes to the new file. The old file is synced and closed.
    pub async fn reopen(&self) -> std::io::Result<()> {
        let (done, outcome) = oneshot::channel();
        let stopped = || std::io::Error::other("the audit writer has stopped");
        self.tx.send(Msg::Reopen(done)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The writer thread's state: the only handle that writes the file.
struct Writer {
    path: PathBuf,
    file: File,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut reopen = None;
        // Blocks until a line arrives; ends when every AuditLog is dropped.
        while let Ok(msg) = self.rx.recv() {
            let first = match msg {
                Msg::Line(p) => p,
                Msg::Reopen(done) => {
                    let _ = done.send(self.reopen());
                    continue;
                }
            };
            buf.clear();
            buf.extend_from_slice(&first.line);
            batch.push(first);
            while batch.len() < MAX_BATCH_LINES && buf.len() < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(Msg::Line(next)) => {
                        buf.extend_from_slice(&next.line);
                        batch.push(next);
                    }
                    // The lines before it go to the old file; the reopen comes right after them.
                    Ok(Msg::Reopen(done)) => {
                        reopen = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let clock = rotd_core::Clock::system();
            let started = clock.instant();
            let result = self.write_batch(&buf);
            self.shared
                .write_seconds
                .observe(clock.elapsed(started).as_secs_f64());
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            match &result {
                Ok(()) => {
                    self.shared.lines.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.shared.failed_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, lines = batch.len(), "Writing the audit log failed.");
                }
            }
            for p in batch.drain(..) {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                };
                // An appender that gave up (its connection closed) no longer listens; nothing to do.
                let _ = p.done.send(outcome);
            }
            if let Some(done) = reopen.take() {
                let _ = done.send(self.reopen());
            }
        }
    }

    /// Replaces the file with a fresh open of the path; on failure the old file stays in use.
    fn reopen(&mut self) -> std::io::Result<()> {
        let fresh = open_file(&self.path)?;
        let _ = self.file.sync_data();
        self.file = fresh;
        Ok(())
    }

    /// Writes `buf` (whole lines) and syncs it. On failure the file is cut back to its length before
    /// the batch, so a refused request leaves no line; if the file is shorter than that by then (rotated
    /// by copy and truncate meanwhile), it is left alone.
    fn write_batch(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let before = self.file.metadata().ok().map(|m| m.len());
        let result = self.file.write_all(buf).and_then(|()| self.file.sync_data());
        if result.is_err()
            && let Some(before) = before
            && self
                .file
                .metadata()
                .is_ok_and(|m| m.is_file() && m.len() > before)
            && self.file.set_len(before).is_ok()
        {
            let _ = self.file.sync_data();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(id: &'a str) -> AuditRecord<'a> {
        AuditRecord {
            time: "2026-01-01T00:00:00Z".to_owned(),
            request_id: id,
            access_key_id: Some("LTAIkey"),
            source: "127.0.0.1:1".to_owned(),
            via: None,
            action: Some("GetSecretValue"),
            secret_name: Some("app/db"),
            secret_names: None,
            version_id: None,
            result: "Success",
            suppressed: 0,
        }
    }

    /// Many appenders at once: every line lands whole, once, and they share syncs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_group_committed_and_never_interleave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(&dir.path().join("audit.log")).expect("open");
        const N: usize = 1000;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..N {
            let log = log.clone();
            tasks.spawn(async move {
                let id = format!("req-{i:04}-{}", "x".repeat(i % 300));
                log.append(&record(&id)).await.expect("append");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        let stats = log.stats();
        let text = std::fs::read_to_string(log.path()).expect("read");
        let mut ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a whole line");
                v["request_id"].as_str().expect("id").to_owned()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), N);
        assert_eq!(stats.lines, N as u64);
        assert!(stats.syncs < stats.lines, "no group commit: {stats:?}");
        eprintln!("{N} concurrent appends: {stats:?}");
    }

    #[test]
    fn the_sampler_admits_n_per_second_and_counts_the_rest() {
        let s = PreAuthSampler::new(3);
        let t = rotd_core::Clock::system().instant();
        let admitted = (0..10).filter(|_| s.admit(t)).count();
        assert_eq!(admitted, 3);
        assert_eq!(s.take_suppressed(), 7);
        assert_eq!(s.take_suppressed(), 0);
        s.restore(2);
        assert!(s.admit(t + Duration::from_millis(1000)), "a new second");
        assert_eq!(s.take_suppressed(), 2);
    }

    /// A failing file fails every appender, and the writer keeps serving later batches.
    #[tokio::test]
    async fn a_failing_file_fails_every_appender() {
        let log = AuditLog::open(Path::new("/dev/full")).expect("open");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let log = log.clone();
            tasks.spawn(async move { log.append(&record(&format!("r{i}"))).await });
        }
        while let Some(r) = tasks.join_next().await {
            assert!(r.expect("task").is_err(), "a line written to /dev/full succeeded");
        }
        assert!(log.append(&record("again")).await.is_err());
        let stats = log.stats();
        assert_eq!(stats.lines, 0);
        assert_eq!(stats.failed_batches, stats.syncs);
    }

    /// logrotate renames the file and asks for a reopen: lines before the reopen are in the renamed
    /// file, lines after it in a new file (0600) at the path; none is lost or split, even with appenders
    /// running while it happens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_after_a_rename_moves_later_lines_to_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("open");
        log.append(&record("before")).await.expect("append");
        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        // Still the old file until the reopen.
        log.append(&record("renamed")).await.expect("append");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.spawn(async move { log.append(&record(&format!("during-{i}"))).await });
        }
        log.reopen().await.expect("reopen");
        log.append(&record("after")).await.expect("append");
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("append");
        }
        let ids = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("a whole line");
                    v["request_id"].as_str().expect("id").to_owned()
                })
                .collect()
        };
        let old = ids(&rotated);
        let new = ids(&path);
        assert_eq!(&old[..2], ["before", "renamed"]);
        assert!(!old.contains(&"after".to_owned()));
        assert!(
            new.contains(&"after".to_owned()),
            "a line after the reopen is in the new file"
        );
        assert_eq!(old.len() + new.len(), 203, "every line once");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
    }
}
