//! Rotation policy as data: what a valid policy looks like, including the per-type interval bounds of
//! DESIGN.md §2. The schedule math (next due time, jitter, catch-up) is `schedule.rs`, as pure functions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{SecretType, ValidationError};

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// A rotation interval in whole seconds, written as `integer[unit]` with unit `d`, `h`, `m` or `s`
/// (`30d`, `6h`, `604800s`), exactly as the vendor's `RotationInterval` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RotationInterval(u64);

impl RotationInterval {
    pub fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// The vendor's response form: seconds with an `s` suffix, e.g. `604800s`.
    pub fn to_wire(self) -> String {
        format!("{}s", self.0)
    }

    /// The inclusive bounds for a secret type, in seconds.
    pub fn bounds(kind: SecretType) -> (u64, u64) {
        match kind {
            // Generic secrets rotate through a user command; one minute keeps a typo from becoming a storm.
            SecretType::Generic => (MINUTE, 365 * DAY),
            SecretType::Rds | SecretType::PolarDb | SecretType::Redis => (6 * HOUR, 365 * DAY),
            SecretType::Ecs => (HOUR, 365 * DAY),
            SecretType::RamCredentials => (7 * DAY, 365 * DAY),
        }
    }

    pub fn check_bounds(self, kind: SecretType) -> Result<(), ValidationError> {
        let (lo, hi) = Self::bounds(kind);
        if self.0 < lo || self.0 > hi {
            return Err(ValidationError::new(
                "rotation interval",
                format!(
                    "{self} is out of bounds for {kind} secrets; allowed is {} to {}",
                    human(lo),
                    human(hi)
                ),
            ));
        }
        Ok(())
    }
}

fn human(secs: u64) -> String {
    for (unit, n) in [("d", DAY), ("h", HOUR), ("m", MINUTE)] {
        if secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

impl fmt::Display for RotationInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

impl FromStr for RotationInterval {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            ValidationError::new(
                "rotation interval",
                format!("{s:?} is not of the form <integer><unit> with unit d, h, m or s (e.g. 30d, 6h)"),
            )
        };
        let s = s.trim();
        let (digits, mult) = match s.char_indices().last() {
            Some((i, 'd')) => (&s[..i], DAY),
            Some((i, 'h')) => (&s[..i], HOUR),
            Some((i, 'm')) => (&s[..i], MINUTE),
            Some((i, 's')) => (&s[..i], 1),
            _ => (s, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: u64 = digits.parse().map_err(|_| err())?;
        let secs = n.checked_mul(mult).ok_or_else(err)?;
        if secs == 0 {
            return Err(ValidationError::new(
                "rotation interval",
                "must be greater than zero",
            ));
        }
        Ok(Self(secs))
    }
}

/// When a secret rotates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RotationSchedule {
    /// Rotate when `interval` has passed since the last rotation (`NextRotationDate` = last + interval).
    Interval { interval: RotationInterval },
    /// Rotate at the times a cron expression names, evaluated in an IANA time zone.
    Cron { expression: String, timezone: String },
}

/// A secret's rotation policy. A secret without a policy, or with `enabled = false`, is rotated only on
/// explicit request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub enabled: bool,
    pub schedule: RotationSchedule,
    /// A rotation that falls due may start at any point in this many seconds after its due time; the
    /// engine picks a deterministic per-secret offset inside it.
    pub window_secs: Option<u64>,
}

impl RotationPolicy {
    pub fn interval(&self) -> Option<RotationInterval> {
        match &self.schedule {
            RotationSchedule::Interval { interval } => Some(*interval),
            RotationSchedule::Cron { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vendor_intervals() {
        assert_eq!("7d".parse::<RotationInterval>().unwrap().as_secs(), 604_800);
        assert_eq!("604800s".parse::<RotationInterval>().unwrap().as_secs(), 604_800);
        assert_eq!("6h".parse::<RotationInterval>().unwrap().as_secs(), 21_600);
        assert_eq!("90m".parse::<RotationInterval>().unwrap().as_secs(), 5_400);
        assert_eq!("3600".parse::<RotationInterval>().unwrap().as_secs(), 3_600);
        assert_eq!("7d".parse::<RotationInterval>().unwrap().to_wire(), "604800s");
        for bad in ["", "d", "7w", "-1d", "1.5d", "0d", "99999999999999999999d"] {
            assert!(bad.parse::<RotationInterval>().is_err(), "{bad}");
        }
    }

    #[test]
    fn enforces_per_type_bounds() {
        let i = |s: &str| s.parse::<RotationInterval>().unwrap();
        i("6h").check_bounds(SecretType::Rds).unwrap();
        let e = i("5h").check_bounds(SecretType::Rds).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rotation interval: 5h is out of bounds for Rds secrets; allowed is 6h to 365d"
        );
        i("1h").check_bounds(SecretType::Ecs).unwrap();
        assert!(i("6d").check_bounds(SecretType::RamCredentials).is_err());
        assert!(i("366d").check_bounds(SecretType::Redis).is_err());
        i("365d").check_bounds(SecretType::PolarDb).unwrap();
    }
}
