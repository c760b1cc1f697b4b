//! Pure scheduling math for rotation policies: compiling a [`RotationSchedule`] into something that can
//! answer "when is this secret next due", the deterministic per-secret jitter inside a rotation window, and
//! spreading rotations that fell due during downtime so a restart does not start them all at once. Nothing
//! here reads the clock: every function takes the times it needs as arguments, so the engine persists a
//! secret's next due time and these functions stay reproducible in tests. Cron expressions are parsed with
//! croner 4 and evaluated in their IANA time zone (chrono-tz), never at a fixed UTC offset, so a 02:30
//! Europe/Berlin job stays at 02:30 local time across daylight-saving changes (DESIGN.md §7).

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use crate::{RotationPolicy, RotationSchedule, ValidationError};

/// The year whose occurrences [`CompiledSchedule::min_interval_secs`] samples and from which [`compile`]
/// checks that a cron expression matches at all. A fixed year keeps both answers independent of the clock.
const REFERENCE_YEAR: i32 = 2026;

/// How many consecutive occurrences [`CompiledSchedule::min_interval_secs`] inspects after each anchor.
const SAMPLE_OCCURRENCES: usize = 50;

/// The cron macros croner expands, listed in the error for an unknown one.
const MACROS: &str = "@yearly, @annually, @monthly, @weekly, @daily and @hourly";

/// A [`RotationSchedule`] that has been validated and parsed once, ready to compute due times.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Interval { secs: u64, delta: TimeDelta },
    // Boxed so an interval schedule does not carry the size of a parsed cron pattern.
    Cron { cron: Box<Cron>, tz: Tz },
}

/// Validates and parses a rotation schedule.
///
/// Cron expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, or
/// are one of croner's macros (`@daily`, `@hourly`, ...). When both day-of-month and day-of-week are
/// restricted, a day matches if *either* does, as in Vixie cron; a `+` before the day-of-week field (croner's
/// extension, e.g. `0 0 1 * +MON`) asks for both. The time zone is an IANA name; an empty one means UTC.
pub fn compile(schedule: &RotationSchedule) -> Result<CompiledSchedule, ValidationError> {
    let kind = match schedule {
        RotationSchedule::Interval { interval } => {
            let secs = interval.as_secs();
            if secs == 0 {
                return Err(ValidationError {
                    what: "rotation interval",
                    reason: "must be greater than zero".to_owned(),
                });
            }
            let delta = i64::try_from(secs)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .ok_or_else(|| ValidationError {
                    what: "rotation interval",
                    reason: format!("{interval} is too large to schedule"),
                })?;
            Kind::Interval { secs, delta }
        }
        RotationSchedule::Cron { expression, timezone } => {
            let tz = parse_timezone(timezone)?;
            let cron = parse_cron(expression)?;
            // A pattern such as `0 0 30 2 *` parses but names no real date; croner would search until the
            // year 5000 on every call, so it is rejected here, once, with a reason an operator can act on.
            let reference = Utc
                .with_ymd_and_hms(REFERENCE_YEAR, 1, 1, 0, 0, 0)
                .single()
                .expect("midnight UTC always exists")
                .with_timezone(&tz);
            if cron.find_next_occurrence(&reference, false).is_err() {
                return Err(ValidationError {
                    what: "rotation schedule",
                    reason: format!(
                        "cron expression {:?} never matches a real date (e.g. february 30)",
                        expression.trim()
                    ),
                });
            }
            Kind::Cron {
                cron: Box::new(cron),
                tz,
            }
        }
    };
    Ok(CompiledSchedule { kind })
}

fn parse_timezone(timezone: &str) -> Result<Tz, ValidationError> {
    let name = timezone.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>().map_err(|_| ValidationError {
        what: "rotation timezone",
        reason: format!(
            "unknown time zone {name:?}; expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
        ),
    })
}

fn parse_cron(expression: &str) -> Result<Cron, ValidationError> {
    let expr = expression.trim();
    let invalid = |reason: String| ValidationError {
        what: "rotation schedule",
        reason,
    };
    if expr.is_empty() {
        return Err(invalid("cron expression is empty".to_owned()));
    }
    // croner's own field-count message talks about years, which rotd does not accept, so the count is
    // checked here with a message in rotd's terms.
    let fields = expr.split_whitespace().count();
    if !expr.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(invalid(format!(
            "cron expression {expr:?} has {fields} fields; expected 5 (minute hour day-of-month month \
             day-of-week) or 6 (with seconds first)"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .sloppy_ranges(false)
        .build();
    parser.parse(expr).map_err(|e| {
        if expr.starts_with('@') {
            return invalid(format!("unknown cron macro {expr:?}; supported are {MACROS}"));
        }
        let detail = match e {
            // croner reports the offending character upper-cased, because it upper-cases the pattern
            // before parsing, so its message would not match what the operator wrote.
            CronError::IllegalCharacters(_) => "it contains a character cron does not allow there; \
                fields take numbers, *, ranges (1-5), lists (1,3), steps (*/10, 1-30/5), month and \
                weekday names, and L, W, ? and # where cron allows them"
                .to_owned(),
            CronError::ComponentError(msg) | CronError::InvalidPattern(msg) => lowercase_sentence(&msg),
            other => lowercase_sentence(&other.to_string()),
        };
        invalid(format!("cron expression {expr:?} is invalid: {detail}"))
    })
}

/// Turns croner's capitalised, full-stopped messages into the lowercase, unpunctuated style of
/// [`ValidationError`] reasons.
fn lowercase_sentence(message: &str) -> String {
    let trimmed = message.trim().trim_end_matches('.');
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl CompiledSchedule {
    /// The first due time strictly after `last`.
    ///
    /// For an interval this is `last + interval`, the vendor's `NextRotationDate` rule. For cron it is the
    /// first occurrence after `last`, computed on the wall clock of the schedule's time zone: on a
    /// spring-forward day a fixed-time job (single second, minute and hour, e.g. `30 2 * * *`) whose time
    /// does not exist runs at the first instant after the gap (03:00 in Europe/Berlin), and on a fall-back
    /// day it runs once, at the earlier of the two instants. Jobs with a wildcard, step, range or list in
    /// the time fields follow the wall clock instead: times inside the gap are skipped and repeated times
    /// run on both instants (croner's OCPS rules). `None` when no occurrence exists before croner's search
    /// limit (the year 5000) or the result would overflow.
    pub fn next_due(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Interval { delta, .. } => last.checked_add_signed(*delta),
            Kind::Cron { cron, tz } => next_cron(cron, *tz, last),
        }
    }

    /// The shortest time between two consecutive due times, in seconds, so callers can hold cron
    /// schedules to the same per-type bounds as intervals.
    ///
    /// For cron this is sampled, not proven: it is the smallest gap among the first 50 occurrences after
    /// the start of each month of 2026 and after the day before each of that year's UTC-offset changes in
    /// the schedule's zone, which is where daylight saving shortens a gap. `None` if fewer than two
    /// occurrences were found.
    pub fn min_interval_secs(&self) -> Option<u64> {
        match &self.kind {
            Kind::Interval { secs, .. } => Some(*secs),
            Kind::Cron { cron, tz } => min_cron_gap(cron, *tz),
        }
    }
}

fn next_cron(cron: &Cron, tz: Tz, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut from = last.with_timezone(&tz);
    // croner's exclusive search starts one wall-clock second after `from`, which is strictly later than
    // `last` everywhere we have seen. The loop guards the contract anyway, because a due time that does not
    // advance would make the engine rotate the same secret in a tight loop.
    for _ in 0..3 {
        let next = cron.find_next_occurrence(&from, false).ok()?.with_timezone(&Utc);
        if next > last {
            return Some(next);
        }
        from = from.checked_add_signed(TimeDelta::seconds(1))?;
    }
    None
}

fn min_cron_gap(cron: &Cron, tz: Tz) -> Option<u64> {
    let mut min_gap: Option<u64> = None;
    // The occurrences computed so far, as one run of consecutive occurrences. An anchor inside the run
    // only extends it, so overlapping windows cost no repeated searches.
    let mut run: Vec<DateTime<Utc>> = Vec::new();
    for anchor in sample_anchors(tz) {
        let ahead = run.iter().filter(|t| **t > anchor).count();
        let mut from = match run.last() {
            Some(end) if *end > anchor => *end,
            _ => {
                run.clear();
                anchor
            }
        };
        for _ in ahead..SAMPLE_OCCURRENCES {
            let Some(next) = next_cron(cron, tz, from) else {
                break;
            };
            if let Some(prev) = run.last() {
                let gap = u64::try_from((next - *prev).num_seconds()).unwrap_or(0);
                min_gap = Some(min_gap.map_or(gap, |m| m.min(gap)));
            }
            run.push(next);
            from = next;
        }
    }
    min_gap
}

/// The instants [`min_cron_gap`] starts sampling from, ascending: the first of every month of the
/// reference year and one day before each change of the zone's UTC offset in that year.
fn sample_anchors(tz: Tz) -> Vec<DateTime<Utc>> {
    let start = Utc
        .with_ymd_and_hms(REFERENCE_YEAR, 1, 1, 0, 0, 0)
        .single()
        .expect("midnight UTC always exists");
    let mut anchors: Vec<DateTime<Utc>> = (1..=12)
        .filter_map(|month| Utc.with_ymd_and_hms(REFERENCE_YEAR, month, 1, 0, 0, 0).single())
        .collect();
    let offset_at = |t: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let day = TimeDelta::days(1);
    let mut noon = start + TimeDelta::hours(12);
    for _ in 0..366 {
        let next_noon = noon + day;
        if offset_at(noon) != offset_at(next_noon) {
            anchors.push(noon - day);
        }
        noon = next_noon;
    }
    anchors.sort();
    anchors.dedup();
    anchors
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit: a fixed, documented hash, so jitter does not change with the Rust release, the platform
/// or the process (std's `DefaultHasher` promises none of these).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finaliser. FNV-1a barely mixes its last byte into the high bits, and names such as
/// `db-1` and `db-2` differ only there, so the hash is mixed before it is scaled into the window.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// A deterministic per-secret offset in `[0, window_secs)` (0 for an empty window), the same in every
/// process, version and platform, so secrets that share a schedule spread over their rotation window.
pub fn jitter(secret_name: &str, window_secs: u64) -> u64 {
    if window_secs == 0 {
        return 0;
    }
    let hash = fmix64(fnv1a64(secret_name.as_bytes()));
    // Multiplying and keeping the high word maps the hash onto the window without modulo bias.
    let scaled = (u128::from(hash) * u128::from(window_secs)) >> 64;
    u64::try_from(scaled).expect("a 64-bit hash times a 64-bit window, shifted right 64 bits, fits in u64")
}

/// When a rotation due at `due` starts: `due` plus the secret's [`jitter`] inside the rotation window, or
/// `due` itself without a window. A window so large that the start would not be representable also yields
/// `due`; policy validation keeps windows far below that.
pub fn start_at(due: DateTime<Utc>, secret_name: &str, window_secs: Option<u64>) -> DateTime<Utc> {
    let offset = jitter(secret_name, window_secs.unwrap_or(0));
    i64::try_from(offset)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|delta| due.checked_add_signed(delta))
        .unwrap_or(due)
}

/// Catch-up after downtime without a storm.
///
/// Every item whose start time is at or before `now` gets a new start time, spread evenly over
/// `[now, now + spread_secs)` in order of how overdue it is (the earliest start first, ties broken by
/// name), so the most overdue secret starts at `now`. Offsets are whole seconds when there are no more
/// overdue items than seconds in the spread, and finer otherwise so the order still holds. Items that are
/// not yet due keep their time. The result is sorted by start time; equal times keep the overdue order
/// (overdue before waiting items, waiting items by name). It depends only on the arguments' contents, not
/// on their order.
pub fn spread_overdue(
    overdue: &[(String, DateTime<Utc>)],
    now: DateTime<Utc>,
    spread_secs: u64,
) -> Vec<(String, DateTime<Utc>)> {
    let (mut due, mut later): (Vec<_>, Vec<_>) =
        overdue.iter().cloned().partition(|(_, start)| *start <= now);
    due.sort_by(|(a_name, a_start), (b_name, b_start)| a_start.cmp(b_start).then_with(|| a_name.cmp(b_name)));

    let count = u128::try_from(due.len()).expect("a slice length fits in u128");
    let whole_seconds = count <= u128::from(spread_secs);
    let mut out: Vec<(String, DateTime<Utc>)> = due
        .into_iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let i = u128::try_from(i).expect("an index fits in u128");
            let offset = if whole_seconds {
                i64::try_from(i * u128::from(spread_secs) / count)
                    .ok()
                    .and_then(TimeDelta::try_seconds)
            } else {
                let spread_nanos = u128::from(spread_secs) * 1_000_000_000;
                i64::try_from(i * spread_nanos / count)
                    .ok()
                    .map(TimeDelta::nanoseconds)
            };
            // An offset that cannot be represented only arises for absurd spreads; starting at `now` is the
            // safe answer, because the item is overdue either way.
            let start = offset
                .and_then(|delta| now.checked_add_signed(delta))
                .unwrap_or(now);
            (name, start)
        })
        .collect();
    // Spread items come first and the sort is stable, so equal start times (a zero spread, or a spread
    // item landing on a waiting item's time) keep the most overdue first and overdue before waiting.
    later.sort_by(|(a_name, a_start), (b_name, b_start)| {
        a_start.cmp(b_start).then_with(|| a_name.cmp(b_name))
    });
    out.append(&mut later);
    out.sort_by_key(|(_, start)| *start);
    out
}

/// The `LastRotationDate` to record when a rotation completes at `now`.
///
/// A scheduled rotation records the *nominal* due time it ran for (`nominal`), not its completion time:
/// it started at `nominal` plus the secret's jitter and took some time, and counting from its completion
/// would add both to every period, so the schedule would drift by the jitter (up to the whole window)
/// each cycle. Counting from the nominal time keeps `NextRotationDate = LastRotationDate + interval` (the
/// vendor's rule, as reported) while the jitter stays a fixed offset from it. A rotation that ran for a
/// due time so old that the next one would already be due (catch-up after downtime), an operator's
/// rotation and a first value record `now`.
pub fn recorded_rotation_time(
    compiled: Option<&CompiledSchedule>,
    nominal: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    match (compiled, nominal) {
        (Some(c), Some(due)) if due <= now && c.next_due(due).is_some_and(|next| next > now) => due,
        _ => now,
    }
}

/// When the secret `name` next starts rotating under `policy`, given its last rotation (or due) time:
/// `None` if the policy is disabled or the schedule has no further occurrence, else
/// [`start_at`]`(next_due(last), name, policy.window_secs)`.
pub fn next_start(
    policy: &RotationPolicy,
    compiled: &CompiledSchedule,
    last: DateTime<Utc>,
    name: &str,
) -> Option<DateTime<Utc>> {
    if !policy.enabled {
        return None;
    }
    let due = compiled.next_due(last)?;
    Some(start_at(due, name, policy.window_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RotationInterval;

    #[test]
    fn the_window_jitter_does_not_compound_over_100_cycles() {
        let interval = 6 * 3600;
        let window = 3600;
        let schedule = RotationSchedule::Interval {
            interval: RotationInterval::from_secs(interval),
        };
        let compiled = compile(&schedule).expect("valid");
        let name = "orders/mysql-app";
        let offset = jitter(name, window);
        assert!(offset > 0, "this name gets a real offset in a one-hour window");
        let created = t("2026-01-01T00:00:00Z");
        let mut last = created;
        let mut start = created;
        for cycle in 0..100 {
            let due = compiled.next_due(last).expect("due");
            start = start_at(due, name, Some(window));
            // The rotation takes a while (10 s to 2 min), then records its time.
            let done = start + TimeDelta::seconds(10 + (cycle * 37) % 110);
            last = recorded_rotation_time(Some(&compiled), Some(due), done);
        }
        let expected = created + TimeDelta::seconds(100 * i64::try_from(interval).expect("fits"));
        let drift = (start - expected).num_seconds();
        assert_eq!(
            drift,
            i64::try_from(offset).expect("fits"),
            "the 100th start is the nominal time plus the same offset, not 100 offsets later"
        );
        // Counting from completion (the old rule) drifts by offset + run time every cycle.
        let mut last = created;
        for cycle in 0..100 {
            let due = compiled.next_due(last).expect("due");
            start = start_at(due, name, Some(window));
            last = start + TimeDelta::seconds(10 + (cycle * 37) % 110);
        }
        assert!((start - expected).num_seconds() > 99 * i64::try_from(offset).expect("fits"));
    }

    #[test]
    fn catch_up_and_unscheduled_rotations_record_now() {
        let compiled = compile(&RotationSchedule::Interval {
            interval: RotationInterval::from_secs(86_400),
        })
        .expect("valid");
        let now = t("2026-03-10T12:00:00Z");
        assert_eq!(recorded_rotation_time(Some(&compiled), None, now), now);
        assert_eq!(recorded_rotation_time(None, Some(now), now), now);
        // Due three days ago (the daemon was down): the next one would already be due, so `now`.
        let old = t("2026-03-07T12:00:00Z");
        assert_eq!(recorded_rotation_time(Some(&compiled), Some(old), now), now);
        let recent = t("2026-03-10T11:30:00Z");
        assert_eq!(recorded_rotation_time(Some(&compiled), Some(recent), now), recent);
    }

    /// Parses an RFC 3339 literal; tests write expected instants with their local offset so the DST
    /// behaviour is visible in the assertion itself.
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test literal is RFC 3339")
            .with_timezone(&Utc)
    }

    fn cron(expression: &str, timezone: &str) -> CompiledSchedule {
        compile(&RotationSchedule::Cron {
            expression: expression.to_owned(),
            timezone: timezone.to_owned(),
        })
        .expect("test schedule is valid")
    }

    fn cron_err(expression: &str, timezone: &str) -> ValidationError {
        compile(&RotationSchedule::Cron {
            expression: expression.to_owned(),
            timezone: timezone.to_owned(),
        })
        .expect_err("test schedule is invalid")
    }

    fn interval(secs: u64) -> CompiledSchedule {
        compile(&RotationSchedule::Interval {
            interval: RotationInterval::from_secs(secs),
        })
        .expect("test interval is valid")
    }

    /// The next `n` due times after `from`, each computed from the previous one.
    fn dues(s: &CompiledSchedule, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let mut last = t(from);
        (0..n)
            .map(|_| {
                last = s.next_due(last).expect("schedule has a next occurrence");
                last
            })
            .collect()
    }

    fn ts(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|s| t(s)).collect()
    }

    #[test]
    fn interval_adds_to_last_rotation() {
        let s = interval(7 * 86_400);
        assert_eq!(
            s.next_due(t("2026-01-01T10:20:30Z")),
            Some(t("2026-01-08T10:20:30Z"))
        );
        // An interval is absolute time, so it ignores DST; it has no time zone to observe.
        assert_eq!(
            s.next_due(t("2026-03-25T12:00:00Z")),
            Some(t("2026-04-01T12:00:00Z"))
        );
        assert_eq!(s.min_interval_secs(), Some(604_800));
        assert_eq!(
            interval(21_600).next_due(t("2026-05-01T23:00:00Z")),
            Some(t("2026-05-02T05:00:00Z"))
        );
        assert_eq!(s.next_due(DateTime::<Utc>::MAX_UTC), None);
    }

    #[test]
    fn interval_must_be_positive_and_representable() {
        let zero = compile(&RotationSchedule::Interval {
            interval: RotationInterval::from_secs(0),
        })
        .expect_err("zero interval");
        assert_eq!(zero.to_string(), "rotation interval: must be greater than zero");
        let huge = compile(&RotationSchedule::Interval {
            interval: RotationInterval::from_secs(u64::MAX),
        })
        .expect_err("huge interval");
        assert_eq!(huge.what, "rotation interval");
    }

    #[test]
    fn cron_five_fields() {
        let s = cron("30 2 * * *", "UTC");
        assert_eq!(
            dues(&s, "2026-05-01T12:00:00Z", 2),
            ts(&["2026-05-02T02:30:00Z", "2026-05-03T02:30:00Z"])
        );
        assert_eq!(s.min_interval_secs(), Some(86_400));
    }

    #[test]
    fn cron_six_fields_has_seconds_first() {
        let s = cron("15 30 2 * * *", "UTC");
        assert_eq!(
            s.next_due(t("2026-05-01T12:00:00Z")),
            Some(t("2026-05-02T02:30:15Z"))
        );
        let every_ten = cron("*/10 * * * * *", "UTC");
        assert_eq!(
            dues(&every_ten, "2026-05-01T12:00:05Z", 3),
            ts(&[
                "2026-05-01T12:00:10Z",
                "2026-05-01T12:00:20Z",
                "2026-05-01T12:00:30Z"
            ])
        );
        assert_eq!(every_ten.min_interval_secs(), Some(10));
    }

    #[test]
    fn cron_next_due_is_strictly_after_last() {
        let s = cron("0 * * * *", "UTC");
        // Exactly on an occurrence: the next one, not the same one again.
        assert_eq!(
            s.next_due(t("2026-05-01T12:00:00Z")),
            Some(t("2026-05-01T13:00:00Z"))
        );
        // A sub-second past an occurrence still counts as that occurrence having happened.
        assert_eq!(
            s.next_due(t("2026-05-01T12:00:00.250Z")),
            Some(t("2026-05-01T13:00:00Z"))
        );
        // A sub-second before one is still before it.
        assert_eq!(
            s.next_due(t("2026-05-01T11:59:59.999Z")),
            Some(t("2026-05-01T12:00:00Z"))
        );
    }

    #[test]
    fn cron_is_evaluated_in_the_zone_not_at_a_fixed_offset() {
        // tokio-cron-scheduler freezes the offset at creation; 09:00 Berlin must be 08:00Z in winter and
        // 07:00Z in summer.
        let s = cron("0 9 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_due(t("2026-01-10T12:00:00Z")),
            Some(t("2026-01-11T09:00:00+01:00"))
        );
        assert_eq!(
            s.next_due(t("2026-07-10T12:00:00Z")),
            Some(t("2026-07-11T09:00:00+02:00"))
        );
        assert_eq!(t("2026-07-11T09:00:00+02:00"), t("2026-07-11T07:00:00Z"));
    }

    #[test]
    fn cron_macros() {
        let from = "2026-05-13T12:00:00Z"; // a Wednesday
        assert_eq!(
            dues(&cron("@daily", "UTC"), from, 1),
            ts(&["2026-05-14T00:00:00Z"])
        );
        assert_eq!(
            dues(&cron("@hourly", "UTC"), from, 1),
            ts(&["2026-05-13T13:00:00Z"])
        );
        // @weekly is Sunday midnight.
        assert_eq!(
            dues(&cron("@weekly", "UTC"), from, 1),
            ts(&["2026-05-17T00:00:00Z"])
        );
        assert_eq!(
            dues(&cron("@monthly", "UTC"), from, 1),
            ts(&["2026-06-01T00:00:00Z"])
        );
        assert_eq!(
            dues(&cron("@yearly", "UTC"), from, 1),
            ts(&["2027-01-01T00:00:00Z"])
        );
        assert_eq!(
            dues(&cron("@annually", "UTC"), from, 1),
            ts(&["2027-01-01T00:00:00Z"])
        );
        assert_eq!(
            dues(&cron("@daily", "Europe/Berlin"), from, 1),
            ts(&["2026-05-14T00:00:00+02:00"])
        );
        assert_eq!(
            cron_err("@reboot", "UTC").to_string(),
            "rotation schedule: unknown cron macro \"@reboot\"; supported are @yearly, @annually, \
             @monthly, @weekly, @daily and @hourly"
        );
    }

    #[test]
    fn names_and_aliases_are_case_insensitive() {
        let s = cron("0 4 * jan-mar mon-fri", "UTC");
        assert_eq!(
            dues(&s, "2026-03-27T12:00:00Z", 2),
            // Friday 27 March, then past the weekend to Monday 30 March, the last weekday in the months.
            ts(&["2026-03-30T04:00:00Z", "2026-03-31T04:00:00Z"])
        );
        assert_eq!(
            s.next_due(t("2026-03-31T12:00:00Z")),
            Some(t("2027-01-01T04:00:00Z"))
        );
    }

    #[test]
    fn invalid_expressions_are_rejected_with_reasons() {
        assert_eq!(
            cron_err("", "UTC").to_string(),
            "rotation schedule: cron expression is empty"
        );
        assert_eq!(
            cron_err("* * * *", "UTC").to_string(),
            "rotation schedule: cron expression \"* * * *\" has 4 fields; expected 5 (minute hour \
             day-of-month month day-of-week) or 6 (with seconds first)"
        );
        // A year field is a croner extension rotd does not accept.
        assert_eq!(
            cron_err("0 0 0 * * * 2027", "UTC").reason,
            "cron expression \"0 0 0 * * * 2027\" has 7 fields; expected 5 (minute hour day-of-month \
             month day-of-week) or 6 (with seconds first)"
        );
        assert_eq!(
            cron_err("61 * * * *", "UTC").to_string(),
            "rotation schedule: cron expression \"61 * * * *\" is invalid: number out of bounds"
        );
        assert_eq!(
            cron_err("*/0 * * * *", "UTC").reason,
            "cron expression \"*/0 * * * *\" is invalid: step cannot be zero"
        );
        for bad in [
            "a b c d e",
            "0/10 * * * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "0 25 * * *",
        ] {
            let e = cron_err(bad, "UTC");
            assert_eq!(e.what, "rotation schedule", "{bad}");
            assert!(
                e.reason
                    .starts_with(&format!("cron expression {bad:?} is invalid: ")),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            cron_err("0 0 30 2 *", "UTC").to_string(),
            "rotation schedule: cron expression \"0 0 30 2 *\" never matches a real date (e.g. february 30)"
        );
        assert_eq!(cron_err("0 0 31 4 *", "Europe/Berlin").what, "rotation schedule");
    }

    #[test]
    fn time_zones() {
        assert_eq!(
            cron_err("30 2 * * *", "Europe/Berln").to_string(),
            "rotation timezone: unknown time zone \"Europe/Berln\"; expected an IANA name such as \
             \"Europe/Berlin\" or \"UTC\""
        );
        assert_eq!(cron_err("30 2 * * *", "CEST").what, "rotation timezone");
        assert_eq!(cron_err("30 2 * * *", "+02:00").what, "rotation timezone");
        // An empty zone is the documented UTC default.
        assert_eq!(
            cron("30 2 * * *", "").next_due(t("2026-05-01T12:00:00Z")),
            Some(t("2026-05-02T02:30:00Z"))
        );
        assert_eq!(
            cron("30 2 * * *", "Asia/Kolkata").next_due(t("2026-05-01T12:00:00Z")),
            Some(t("2026-05-02T02:30:00+05:30"))
        );
        // The zone is reported before the expression, so an operator fixes one thing at a time in order.
        assert_eq!(cron_err("nonsense", "Nowhere/Land").what, "rotation timezone");
    }

    #[test]
    fn berlin_spring_forward_runs_a_missing_fixed_time_once_after_the_gap() {
        // On 2026-03-29 Berlin jumps from 02:00 CET to 03:00 CEST, so 02:30 does not exist that day.
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            dues(&s, "2026-03-28T02:30:00+01:00", 3),
            ts(&[
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00",
            ])
        );
        // The same with an explicit seconds field.
        assert_eq!(
            cron("0 30 2 * * *", "Europe/Berlin").next_due(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-29T03:00:00+02:00"))
        );
    }

    #[test]
    fn berlin_fall_back_runs_a_repeated_fixed_time_once() {
        // On 2026-10-25 Berlin goes from 03:00 CEST back to 02:00 CET, so 02:30 happens twice.
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            dues(&s, "2026-10-24T02:30:00+02:00", 2),
            ts(&["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"])
        );
        // Starting from inside the repeated hour, after the first 02:30, does not run the second one.
        assert_eq!(
            s.next_due(t("2026-10-25T02:10:00+01:00")),
            Some(t("2026-10-26T02:30:00+01:00"))
        );
    }

    #[test]
    fn berlin_wildcard_jobs_follow_the_wall_clock() {
        // An hourly job runs in both copies of the repeated hour and skips the missing one, so its real
        // spacing stays one hour.
        let hourly = cron("30 * * * *", "Europe/Berlin");
        assert_eq!(
            dues(&hourly, "2026-10-25T01:30:00+02:00", 3),
            ts(&[
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:30:00+01:00",
            ])
        );
        assert_eq!(
            dues(&hourly, "2026-03-29T01:30:00+01:00", 2),
            ts(&["2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"])
        );
        // A list in the hour field makes it a wildcard job to croner: 02:30 is skipped on the spring day
        // and runs twice on the fall day. Pin that, because it differs from the single-hour case.
        let list = cron("30 2,14 * * *", "Europe/Berlin");
        assert_eq!(
            dues(&list, "2026-03-28T15:00:00+01:00", 2),
            ts(&["2026-03-29T14:30:00+02:00", "2026-03-30T02:30:00+02:00"])
        );
        assert_eq!(
            dues(&list, "2026-10-24T15:00:00+02:00", 3),
            ts(&[
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T14:30:00+01:00",
            ])
        );
    }

    #[test]
    fn new_york_dst() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT; 2026-11-01: 02:00 EDT falls back to 01:00 EST.
        let s = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            dues(&s, "2026-03-07T02:30:00-05:00", 2),
            ts(&["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"])
        );
        let s = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            dues(&s, "2026-10-31T01:30:00-04:00", 2),
            ts(&["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"])
        );
        assert_eq!(
            dues(&cron("0 12 * * *", "America/New_York"), "2026-11-01T00:00:00Z", 2),
            ts(&["2026-11-01T12:00:00-05:00", "2026-11-02T12:00:00-05:00"])
        );
    }

    #[test]
    fn monthly_across_month_ends() {
        let s = cron("0 3 1 * *", "UTC");
        assert_eq!(
            dues(&s, "2026-01-15T00:00:00Z", 4),
            ts(&[
                "2026-02-01T03:00:00Z",
                "2026-03-01T03:00:00Z",
                "2026-04-01T03:00:00Z",
                "2026-05-01T03:00:00Z",
            ])
        );
        // Across a year end, and in a zone whose offset changes between the months.
        assert_eq!(
            dues(&cron("0 3 1 * *", "Europe/Berlin"), "2026-12-15T00:00:00Z", 4),
            ts(&[
                "2027-01-01T03:00:00+01:00",
                "2027-02-01T03:00:00+01:00",
                "2027-03-01T03:00:00+01:00",
                "2027-04-01T03:00:00+02:00",
            ])
        );
        // The 31st skips the short months rather than rolling over into the next one.
        assert_eq!(
            dues(&cron("0 3 31 * *", "UTC"), "2026-01-31T03:00:00Z", 3),
            ts(&[
                "2026-03-31T03:00:00Z",
                "2026-05-31T03:00:00Z",
                "2026-07-31T03:00:00Z"
            ])
        );
        // `L` is the last day of each month, leap years included.
        assert_eq!(
            dues(&cron("0 3 L * *", "UTC"), "2028-01-31T12:00:00Z", 2),
            ts(&["2028-02-29T03:00:00Z", "2028-03-31T03:00:00Z"])
        );
        assert_eq!(cron("0 3 1 * *", "UTC").min_interval_secs(), Some(28 * 86_400));
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_with_or_like_vixie_cron() {
        // 2026-07-01 is a Wednesday: it matches as the 1st, and the Mondays match as Mondays.
        let or = cron("0 0 1 * MON", "UTC");
        assert_eq!(
            dues(&or, "2026-06-30T12:00:00Z", 3),
            ts(&[
                "2026-07-01T00:00:00Z",
                "2026-07-06T00:00:00Z",
                "2026-07-13T00:00:00Z"
            ])
        );
        // croner's `+` asks for both: the next 1st that is a Monday after June 2026 is in February 2027.
        let and = cron("0 0 1 * +MON", "UTC");
        assert_eq!(
            and.next_due(t("2026-06-30T12:00:00Z")),
            Some(t("2027-02-01T00:00:00Z"))
        );
        // A wildcard day-of-week does not widen a restricted day-of-month.
        assert_eq!(
            dues(&cron("0 0 13 * *", "UTC"), "2026-06-30T12:00:00Z", 2),
            ts(&["2026-07-13T00:00:00Z", "2026-08-13T00:00:00Z"])
        );
    }

    /// Iterates `n` due times and checks they strictly increase, returning them for further checks.
    fn iterate_strictly(s: &CompiledSchedule, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let mut last = t(from);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let next = s.next_due(last).expect("schedule keeps occurring");
            assert!(next > last, "iteration {i}: {next} is not after {last}");
            out.push(next);
            last = next;
        }
        out
    }

    #[test]
    fn next_due_is_monotonic_across_dst() {
        // 1000 days from January 2026 crosses six Berlin and six New York offset changes.
        for zone in ["Europe/Berlin", "America/New_York"] {
            let tz: Tz = zone.parse().expect("known zone");
            let daily = iterate_strictly(&cron("30 2 * * *", zone), "2026-01-01T00:00:00Z", 1000);
            // Exactly one run per local date: nothing skipped in a gap, nothing doubled in an overlap.
            let dates: Vec<_> = daily.iter().map(|d| d.with_timezone(&tz).date_naive()).collect();
            let mut unique = dates.clone();
            unique.dedup();
            assert_eq!(unique.len(), 1000, "{zone}");
            assert_eq!(
                dates.last().map(ToString::to_string).as_deref(),
                Some("2028-09-26"),
                "{zone}"
            );
            // Dense wildcard schedules through both of 2026's changes.
            iterate_strictly(&cron("*/20 1-3 * * *", zone), "2026-03-01T00:00:00Z", 1000);
            iterate_strictly(&cron("*/20 1-3 * * *", zone), "2026-10-01T00:00:00Z", 1000);
            iterate_strictly(&cron("0 * * * *", zone), "2026-10-20T00:00:00Z", 1000);
        }
    }

    #[test]
    fn min_interval_of_cron_schedules() {
        assert_eq!(cron("*/5 * * * *", "UTC").min_interval_secs(), Some(300));
        assert_eq!(cron("0 */6 * * *", "UTC").min_interval_secs(), Some(21_600));
        assert_eq!(cron("0 0 * * 0", "UTC").min_interval_secs(), Some(604_800));
        assert_eq!(cron("* * * * * *", "UTC").min_interval_secs(), Some(1));
        // Daily in Berlin: the spring-forward day is one hour short.
        assert_eq!(
            cron("0 3 * * *", "Europe/Berlin").min_interval_secs(),
            Some(23 * 3600)
        );
        // 01:30 and 03:30 are two hours apart, except on 2026-03-29 when the clock skips 02:00-03:00. No
        // month anchor's 50 occurrences reach that day, so this pins the anchor before the offset change.
        assert_eq!(
            cron("30 1,3 * * *", "Europe/Berlin").min_interval_secs(),
            Some(3600)
        );
        assert_eq!(cron("30 1,3 * * *", "UTC").min_interval_secs(), Some(2 * 3600));
        // A leap-day schedule still samples in bounded time: every fourth year, or eighth across 2100.
        assert_eq!(cron("0 0 29 2 *", "UTC").min_interval_secs(), Some(1461 * 86_400));
    }

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jitter_is_deterministic() {
        // Computed independently (Python) from FNV-1a 64 + fmix64 + multiply-shift; a change here changes
        // every deployed secret's start time, so it must be deliberate.
        assert_eq!(jitter("prod/db/main", 3600), 3222);
        assert_eq!(jitter("prod/db/main", 86_400), 77_337);
        assert_eq!(jitter("prod/redis/cache", 3600), 3053);
        assert_eq!(jitter("prod/redis/cache", 86_400), 73_289);
        assert_eq!(jitter("rotd-test", 3600), 3561);
        assert_eq!(jitter("a", 3600), 1837);
        assert_eq!(jitter("a", 7), 3);
    }

    #[test]
    fn jitter_bounds() {
        assert_eq!(jitter("prod/db/main", 0), 0);
        assert_eq!(jitter("prod/db/main", 1), 0);
        for i in 0..1000 {
            let name = format!("secret-{i}");
            for window in [2, 7, 60, 3600, u64::MAX] {
                assert!(jitter(&name, window) < window, "{name} {window}");
            }
        }
    }

    #[test]
    fn jitter_spreads_names_uniformly() {
        let window = 3600;
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let j = jitter(&format!("secret-{i}"), window);
            buckets[usize::try_from(j * 10 / window).expect("bucket index is below 10")] += 1;
        }
        assert!(buckets.iter().all(|&b| (60..=140).contains(&b)), "{buckets:?}");
        // Chi-squared with 9 degrees of freedom stays below its 99.9th percentile (27.88) for a uniform
        // spread; names that clustered would blow far past it.
        let chi2: f64 = buckets
            .iter()
            .map(|&b| (f64::from(b) - 100.0).powi(2) / 100.0)
            .sum();
        assert!(chi2 < 27.88, "chi2 = {chi2}, buckets {buckets:?}");
    }

    #[test]
    fn start_at_adds_jitter() {
        let due = t("2026-05-01T03:00:00Z");
        assert_eq!(
            start_at(due, "prod/db/main", Some(3600)),
            t("2026-05-01T03:53:42Z")
        );
        assert_eq!(start_at(due, "prod/db/main", None), due);
        assert_eq!(start_at(due, "prod/db/main", Some(0)), due);
        assert_eq!(start_at(due, "prod/db/main", Some(u64::MAX)), due);
    }

    #[test]
    fn spread_overdue_spreads_a_backlog_evenly() {
        let now = t("2026-05-01T12:00:00Z");
        // Secret i became due i minutes before an outage ended, so secret-099 is the most overdue.
        let items: Vec<(String, DateTime<Utc>)> = (0..100)
            .map(|i| (format!("secret-{i:03}"), now - TimeDelta::minutes(i)))
            .collect();
        let out = spread_overdue(&items, now, 3600);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0], ("secret-099".to_owned(), now));
        assert_eq!(out[1], ("secret-098".to_owned(), t("2026-05-01T12:00:36Z")));
        assert_eq!(out[99], ("secret-000".to_owned(), t("2026-05-01T12:59:24Z")));
        for pair in out.windows(2) {
            assert!(pair[0].1 < pair[1].1, "{pair:?}");
        }
        assert!(
            out.iter()
                .all(|(_, s)| *s >= now && *s < t("2026-05-01T13:00:00Z"))
        );
        // The input order does not matter.
        let reversed: Vec<_> = items.iter().rev().cloned().collect();
        assert_eq!(spread_overdue(&reversed, now, 3600), out);
    }

    #[test]
    fn spread_overdue_leaves_future_items_and_breaks_ties_by_name() {
        let now = t("2026-05-01T12:00:00Z");
        let items = vec![
            ("later".to_owned(), t("2026-05-01T12:10:00Z")),
            ("b".to_owned(), t("2026-05-01T11:00:00Z")),
            ("a".to_owned(), t("2026-05-01T11:00:00Z")),
            ("exactly-now".to_owned(), now),
            ("oldest".to_owned(), t("2026-04-30T00:00:00Z")),
        ];
        assert_eq!(
            spread_overdue(&items, now, 1200),
            vec![
                ("oldest".to_owned(), t("2026-05-01T12:00:00Z")),
                ("a".to_owned(), t("2026-05-01T12:05:00Z")),
                // An overdue item goes before a waiting one with the same start time.
                ("b".to_owned(), t("2026-05-01T12:10:00Z")),
                ("later".to_owned(), t("2026-05-01T12:10:00Z")),
                ("exactly-now".to_owned(), t("2026-05-01T12:15:00Z")),
            ]
        );
        assert_eq!(spread_overdue(&[], now, 3600), vec![]);
    }

    #[test]
    fn spread_overdue_with_more_items_than_seconds_keeps_order() {
        let now = t("2026-05-01T12:00:00Z");
        let items: Vec<(String, DateTime<Utc>)> = (0..10)
            .map(|i| (format!("s{i}"), now - TimeDelta::seconds(i)))
            .collect();
        let out = spread_overdue(&items, now, 4);
        assert_eq!(out[0], ("s9".to_owned(), now));
        assert_eq!(out[1], ("s8".to_owned(), t("2026-05-01T12:00:00.400Z")));
        assert_eq!(out[9], ("s0".to_owned(), t("2026-05-01T12:00:03.600Z")));
        for pair in out.windows(2) {
            assert!(pair[0].1 < pair[1].1, "{pair:?}");
        }
        // Without a spread everything starts now, most overdue first.
        let names: Vec<_> = spread_overdue(&items, now, 0)
            .into_iter()
            .map(|(n, s)| {
                assert_eq!(s, now);
                n
            })
            .collect();
        assert_eq!(
            names,
            ["s9", "s8", "s7", "s6", "s5", "s4", "s3", "s2", "s1", "s0"]
        );
    }

    #[test]
    fn next_start_combines_schedule_and_window() {
        let schedule = RotationSchedule::Cron {
            expression: "0 3 * * *".to_owned(),
            timezone: "Europe/Berlin".to_owned(),
        };
        let compiled = compile(&schedule).expect("valid schedule");
        let mut policy = RotationPolicy {
            enabled: true,
            schedule,
            window_secs: Some(3600),
        };
        let last = t("2026-05-01T12:00:00Z");
        assert_eq!(
            next_start(&policy, &compiled, last, "prod/db/main"),
            Some(t("2026-05-02T03:53:42+02:00"))
        );
        policy.window_secs = None;
        assert_eq!(
            next_start(&policy, &compiled, last, "prod/db/main"),
            Some(t("2026-05-02T03:00:00+02:00"))
        );
        policy.enabled = false;
        assert_eq!(next_start(&policy, &compiled, last, "prod/db/main"), None);
    }
}
