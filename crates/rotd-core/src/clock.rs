//! The clock: the one place rotd reads the time. Everything that schedules, stamps or measures takes a
//! [`Clock`] instead of calling `Utc::now()` or `Instant::now()` (the workspace's `clippy.toml` refuses
//! those calls everywhere else), so a test can drive the scheduler loop through days of rotations by
//! advancing a manual clock, without tokio's paused time (whose auto-advance fires every timeout in
//! sight, an sqlx pool's acquire timeout among them).
//!
//! A manual clock moves only when [`Clock::advance`] or [`Clock::set`] is called; its sleepers wake when
//! the time they wait for is reached. Its monotonic reading ([`Clock::instant`]) moves with it, so
//! durations measured under it are the advanced ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A source of wall-clock and monotonic time. Cloning shares it.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<Manual>),
}

struct Manual {
    /// The manual time, published so sleepers can wait for it to reach their deadline.
    now: watch::Sender<DateTime<Utc>>,
    /// The wall time and real instant the clock was created at; `instant()` is `base_instant` plus the
    /// manual time's distance from `base`.
    base: DateTime<Utc>,
    base_instant: Instant,
    /// Serializes `advance` so two callers never lose a step.
    step: Mutex<()>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Manual(m) => write!(f, "Clock::manual({})", *m.now.borrow()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The machine's clocks.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that stands at `start` until it is advanced.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Source::Manual(Arc::new(Manual {
            now: watch::channel(start).0,
            base: start,
            #[allow(clippy::disallowed_methods)] // the clock module
            base_instant: Instant::now(),
            step: Mutex::new(()),
        })))
    }

    /// Whether this is a manual clock (tests).
    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }

    /// The current wall-clock time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            #[allow(clippy::disallowed_methods)] // the clock module
            Source::System => Utc::now(),
            Source::Manual(m) => *m.now.borrow(),
        }
    }

    /// A monotonic reading, for measuring how long something took.
    pub fn instant(&self) -> Instant {
        match &self.0 {
            #[allow(clippy::disallowed_methods)] // the clock module
            Source::System => Instant::now(),
            Source::Manual(m) => {
                let ahead = (*m.now.borrow() - m.base).to_std().unwrap_or(Duration::ZERO);
                m.base_instant + ahead
            }
        }
    }

    /// How long since `earlier`, a reading of [`Clock::instant`] on this clock.
    pub fn elapsed(&self, earlier: Instant) -> Duration {
        self.instant().saturating_duration_since(earlier)
    }

    /// Waits until the wall clock reaches `deadline` (at once if it has). On the system clock this is a
    /// timer for the distance now; a wall-clock jump while it sleeps is noticed at the next wake-up.
    pub async fn sleep_until(&self, deadline: DateTime<Utc>) {
        match &self.0 {
            Source::System => {
                let d = (deadline - self.now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(d).await;
            }
            Source::Manual(m) => {
                let mut rx = m.now.subscribe();
                // `wait_for` checks the current value first, then every change.
                let _ = rx.wait_for(|now| *now >= deadline).await;
            }
        }
    }

    /// Waits for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        let deadline = self
            .now()
            .checked_add_signed(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.sleep_until(deadline).await;
    }

    /// Moves a manual clock forward by `d` and wakes the sleepers whose time has come. Returns the new
    /// time. Refused (`None`) on the system clock, which no one may move.
    pub fn advance(&self, d: Duration) -> Option<DateTime<Utc>> {
        let Source::Manual(m) = &self.0 else {
            return None;
        };
        let _one_at_a_time = m.step.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = m
            .now
            .borrow()
            .checked_add_signed(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        m.now.send_replace(next);
        Some(next)
    }

    /// Sets a manual clock to `t` (forward or back, as an operator's clock change would). Refused on the
    /// system clock.
    pub fn set(&self, t: DateTime<Utc>) -> bool {
        let Source::Manual(m) = &self.0 else {
            return false;
        };
        let _one_at_a_time = m.step.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.now.send_replace(t);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(t0());
        let i0 = c.instant();
        assert_eq!(c.now(), t0());
        assert_eq!(
            c.advance(Duration::from_secs(90)),
            Some(t0() + chrono::Duration::seconds(90))
        );
        assert_eq!(c.now(), t0() + chrono::Duration::seconds(90));
        assert_eq!(c.elapsed(i0), Duration::from_secs(90));
        assert!(Clock::system().advance(Duration::from_secs(1)).is_none());
        assert!(!Clock::system().set(t0()));
    }

    #[tokio::test]
    async fn sleepers_wake_when_the_manual_time_reaches_them() {
        let c = Clock::manual(t0());
        let sleeper = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(1800));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished(), "half way is not there yet");
        c.advance(Duration::from_secs(1800));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke")
            .expect("task");
        // A deadline already passed returns at once.
        tokio::time::timeout(Duration::from_secs(5), c.sleep_until(t0()))
            .await
            .expect("past deadline");
    }
}
