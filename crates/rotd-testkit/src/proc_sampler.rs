//! A process-table sampler for leak tests: a background thread that reads every process's
//! `/proc/<pid>/cmdline` and `/proc/<pid>/environ` every few milliseconds and keeps each distinct
//! string it saw, so a test can assert afterwards that a secret never appeared in any command
//! line or environment on the machine, not only in the processes it knows about.
//!
//! A sweep that misses a process cannot be told from a process that never held the secret, so a
//! leak test is only as good as the sampler's sensitivity; `tests/fixtures.rs` proves that it
//! catches a needle in the argv and in the environment of a child that lives 200 ms. A sweep
//! costs about two reads per process (some 2.5 ms for ~90 processes in a debug build on the
//! project's 2-core machine), so with a 1 ms interval a process is seen if it lives a few ms.
//! `/proc/<pid>/environ` is readable only for our own processes, unless we are root (the fixture
//! tests run as root and then see every process). The sampler includes its own process; what
//! `std::env::set_var` changes is not visible there (the kernel shows the environment the
//! process was started with).
//!
//! Memory stays bounded by the number of distinct strings: each file's content is hashed and
//! only a content not seen before is kept, so a process table that does not change costs nothing
//! but the reads.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A running sampler; [`ProcSampler::stop`] ends it and hands over what it saw. Dropping it
/// without `stop` also ends the thread.
pub struct ProcSampler {
    /// Set by `stop`/`drop`; the thread checks it between sweeps.
    stop: Arc<AtomicBool>,
    /// Returns the samples once the thread has done its final sweep.
    thread: Option<JoinHandle<Samples>>,
}

impl fmt::Debug for ProcSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcSampler")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl ProcSampler {
    /// Starts sweeping the process table every `interval` (a test that must catch short-lived
    /// processes uses 1 ms). Returns once the first sweep is complete, so every process alive
    /// from then on is seen if it lives longer than a sweep plus `interval`.
    pub fn start(interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("rotd-proc-sampler".to_owned())
            .spawn(move || {
                let mut samples = Samples::default();
                let mut buf = Vec::with_capacity(4096);
                samples.sweep(&mut buf);
                let _ = ready_tx.send(());
                while !thread_stop.load(Ordering::Relaxed) {
                    thread::sleep(interval);
                    samples.sweep(&mut buf);
                }
                samples
            })
            .expect("spawn the process sampler thread");
        // An error means the thread panicked before its first sweep; `stop` will report it.
        let _ = ready_rx.recv();
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the sampler after one last sweep and returns everything it saw.
    pub fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("the sampler is stopped only once");
        thread
            .join()
            .unwrap_or_else(|_| panic!("the process sampler thread panicked"))
    }
}

impl Drop for ProcSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which `/proc/<pid>` file an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Cmdline,
    Environ,
}

impl Source {
    const ALL: [Self; 2] = [Self::Cmdline, Self::Environ];

    fn file(self) -> &'static str {
        match self {
            Self::Cmdline => "cmdline",
            Self::Environ => "environ",
        }
    }
}

/// One distinct string: the first process it was seen in and the file's content, with the NUL
/// separators shown as spaces.
struct Entry {
    pid: u32,
    source: Source,
    text: String,
}

/// What a [`ProcSampler`] saw. `Debug` shows only counts, since the entries may hold the very
/// secrets a leak test looks for.
#[derive(Default)]
pub struct Samples {
    sweeps: usize,
    /// Hashes of (source, content) already kept; a content seen again is not stored twice.
    seen: HashSet<u64>,
    /// The distinct strings in the order they were first seen.
    entries: Vec<Entry>,
}

impl fmt::Debug for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Samples")
            .field("sweeps", &self.sweeps)
            .field("distinct", &self.entries.len())
            .finish()
    }
}

impl Samples {
    /// How many complete sweeps of the process table were made.
    pub fn count(&self) -> usize {
        self.sweeps
    }

    /// How many distinct command lines and environments were kept.
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }

    /// The first command line or environment that contains `needle`, as
    /// "pid 123 cmdline: sh -c sleep 0.2 NEEDLE" (arguments and variables separated by spaces).
    pub fn find(&self, needle: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.text.contains(needle))
            .map(|e| format!("pid {} {}: {}", e.pid, e.source.file(), e.text))
    }

    /// Reads every process's files once. Processes come and go while we read; a vanished one is
    /// simply skipped.
    fn sweep(&mut self, buf: &mut Vec<u8>) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            for source in Source::ALL {
                buf.clear();
                let path = format!("/proc/{pid}/{}", source.file());
                if File::open(&path).and_then(|mut f| f.read_to_end(buf)).is_err() || buf.is_empty() {
                    continue;
                }
                let mut hasher = DefaultHasher::new();
                source.hash(&mut hasher);
                buf.hash(&mut hasher);
                if self.seen.insert(hasher.finish()) {
                    let text = String::from_utf8_lossy(buf)
                        .trim_end_matches('\0')
                        .replace('\0', " ");
                    self.entries.push(Entry { pid, source, text });
                }
            }
        }
        self.sweeps += 1;
    }
}
