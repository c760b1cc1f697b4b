//! Request timestamps: the wire format and the clock-skew rule.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use crate::SignatureError;

/// How far a request's `x-acs-date` / `Timestamp` may be from the server clock, in either direction.
///
/// The vendor documents 15 minutes for its KMS instance API; the OpenAPI gateway's figure is not published,
/// and 15 minutes is what its SDK users expect.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// The wire format of `x-acs-date` and `Timestamp`: UTC, whole seconds, literal `Z`.
const WIRE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Longest timestamp text worth parsing; real ones are 20 bytes, RFC 3339 with nanoseconds and an offset
/// about 35.
const MAX_TIMESTAMP_LEN: usize = 64;

/// Formats `t` the way the SDKs send `x-acs-date` and `Timestamp`, e.g. `2024-01-01T00:00:00Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format(WIRE_FORMAT).to_string()
}

/// Parses a request timestamp. The SDKs' own format (`2024-01-01T00:00:00Z`) is tried first; any other
/// RFC 3339 date-time (fractional seconds, an explicit offset) is accepted too, because the value is signed
/// and only its distance from the server clock matters.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, SignatureError> {
    if s.len() > MAX_TIMESTAMP_LEN {
        return Err(SignatureError::TimestampUnparseable);
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, WIRE_FORMAT) {
        return Ok(naive.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SignatureError::TimestampUnparseable)
}

/// Accepts `date` when it is within [`MAX_CLOCK_SKEW`] of `now`, boundaries included.
pub fn check_skew(date: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), SignatureError> {
    if (now - date).abs() > MAX_CLOCK_SKEW {
        return Err(SignatureError::TimestampSkew);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn parses_and_formats_the_wire_format() {
        let date = t("2024-01-01T00:00:00Z");
        assert_eq!(format_timestamp(date), "2024-01-01T00:00:00Z");
        assert_eq!(
            t("2024-01-01T08:00:00.250+08:00"),
            date + TimeDelta::milliseconds(250)
        );
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01 00:00:00",
            "2024-13-01T00:00:00Z",
            "yesterday",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(SignatureError::TimestampUnparseable),
                "{bad}"
            );
        }
        assert!(parse_timestamp(&"9".repeat(1000)).is_err());
    }

    #[test]
    fn skew_is_fifteen_minutes_either_way() {
        let now = t("2024-01-01T12:00:00Z");
        assert!(check_skew(now, now).is_ok());
        assert!(check_skew(now - MAX_CLOCK_SKEW, now).is_ok());
        assert!(check_skew(now + MAX_CLOCK_SKEW, now).is_ok());
        let just_over = MAX_CLOCK_SKEW + TimeDelta::seconds(1);
        assert_eq!(
            check_skew(now - just_over, now),
            Err(SignatureError::TimestampSkew)
        );
        assert_eq!(
            check_skew(now + just_over, now),
            Err(SignatureError::TimestampSkew)
        );
    }
}
