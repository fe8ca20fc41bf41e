//! Time as builds see it: `SOURCE_DATE_EPOCH`, the one clock that reaches a
//! digest, and UTC dates written from seconds since the epoch and read back
//! (RFC 3339, RFC 2822).

use crate::env;

/// 2108-01-01T00:00:00Z: zip (and so wheel) timestamps end with 2107, and
/// pip refuses `SOURCE_DATE_EPOCH` from there on.
pub const ZIP_TIME_LIMIT: u64 = 4_354_819_200;

/// `SOURCE_DATE_EPOCH` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// Not a number of seconds.
    #[error("{var}={value:?} is not a number of seconds", var = env::SOURCE_DATE_EPOCH)]
    NotSeconds {
        /// What the variable holds.
        value: String,
    },
    /// Past what wheels can store.
    #[error(
        "{var}={epoch} is {date}, past what zip timestamps hold (wheels store times up to \
         the end of 2107); use a time before {limit}",
        var = env::SOURCE_DATE_EPOCH,
        date = rfc3339(*.epoch),
        limit = rfc3339(ZIP_TIME_LIMIT)
    )]
    PastZipTime {
        /// The value given.
        epoch: u64,
    },
}

impl EpochError {
    /// Always: the variable's value is the user's input (exit 2).
    pub fn is_bad_input(&self) -> bool {
        true
    }
}

/// `SOURCE_DATE_EPOCH` from the variable's value (unset or blank: 0),
/// checked against what wheels can store.
pub fn source_date_epoch(value: Option<&str>) -> Result<u64, EpochError> {
    let epoch = match value.map(str::trim) {
        Some(v) if !v.is_empty() => v.parse::<u64>().map_err(|_| EpochError::NotSeconds {
            value: value.unwrap_or_default().to_string(),
        })?,
        _ => 0,
    };
    if epoch >= ZIP_TIME_LIMIT {
        return Err(EpochError::PastZipTime { epoch });
    }
    Ok(epoch)
}

/// Year, month, day, hour, minute and second (UTC) of seconds since the epoch.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// The wall clock, in seconds since the epoch (not SOURCE_DATE_EPOCH: for
/// real ages, such as a build cache entry's).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp (`2023-11-14T22:13:20Z`).
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub fn utc_date(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// Seconds since the epoch of an RFC 2822 date in UTC, as Debian's
/// `Release` files write it (`Sat, 11 Jul 2026 10:16:37 UTC`); None when
/// it is not one (another zone than UTC/GMT/+0000 included).
pub fn from_rfc2822(date: &str) -> Option<u64> {
    let mut words = date.split_whitespace();
    let mut day = words.next()?;
    if day.ends_with(',') {
        day = words.next()?;
    }
    let day: i64 = day.parse().ok()?;
    let month = words.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let year: i64 = words.next()?.parse().ok()?;
    let mut hms = words.next()?.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !matches!(words.next(), Some("UTC" | "GMT" | "+0000" | "Z")) || words.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..61).contains(&s)
    {
        return None;
    }
    u64::try_from(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// Seconds since the epoch of an RFC 3339 timestamp
/// (`2026-11-30T20:15:00Z`, `2026-11-30T21:15:00.5+01:00`); None when it
/// is not one, names a day the month does not have, or is before 1970.
/// Fractions of a second are dropped; a leap second (`:60`) counts as the
/// second before it.
pub fn from_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    // Fixed-width digits at `at`, `n` of them.
    let num = |at: usize, n: usize| -> Option<i64> {
        let digits = b.get(at..at + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at).is_some_and(|x| *x == c);
    let shape = sep(4, b'-')
        && sep(7, b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
        && sep(13, b':')
        && sep(16, b':');
    if !shape {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, m, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |x: u8, y: u8| -> Option<i64> {
                (x.is_ascii_digit() && y.is_ascii_digit())
                    .then(|| i64::from(x - b'0') * 10 + i64::from(y - b'0'))
            };
            let (oh, om) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s.min(59);
    u64::try_from(local - offset).ok()
}

/// Days of `month` (1 to 12) in `year` of the Gregorian calendar.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn release_file_dates_are_read() {
        assert_eq!(
            from_rfc2822("Tue, 14 Nov 2023 22:13:20 UTC"),
            Some(1_700_000_000)
        );
        assert_eq!(from_rfc2822("29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        assert_eq!(from_rfc2822("Thu, 01 Jan 1970 00:00:00 +0000"), Some(0));
        assert_eq!(from_rfc2822("Tue, 14 Nov 2023 22:13:20 +0100"), None);
        assert_eq!(from_rfc2822("Tue, 14 Foo 2023 22:13:20 UTC"), None);
        assert_eq!(from_rfc2822(""), None);
    }

    #[test]
    fn rfc3339_timestamps_are_read() {
        assert_eq!(from_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(from_rfc3339("2000-02-29T00:00:00z"), Some(951_782_400));
        // Fractions dropped, offsets applied, lower-case t.
        assert_eq!(
            from_rfc3339("2023-11-14T22:13:20.999999Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            from_rfc3339("2023-11-14t23:43:20+01:30"),
            Some(1_700_000_000)
        );
        assert_eq!(
            from_rfc3339("2023-11-14T21:13:20-01:00"),
            Some(1_700_000_000)
        );
        // A leap second is the second before it.
        assert_eq!(from_rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_799));
        // Every instant written by rfc3339() reads back.
        for secs in [0, 59, 86_399, 951_868_799, 1_700_000_000, 4_354_819_199] {
            assert_eq!(from_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn what_is_not_rfc3339_is_none() {
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20ZZ",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-11-00T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:61Z",
            "+023-11-14T22:13:20Z",
            "2023-1a-14T22:13:20Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "Tue, 14 Nov 2023 22:13:20 UTC",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert_eq!(from_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(from_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    }

    #[test]
    fn epoch_values_are_checked() {
        assert_eq!(source_date_epoch(None).unwrap(), 0);
        assert_eq!(source_date_epoch(Some(" ")).unwrap(), 0);
        assert_eq!(source_date_epoch(Some(" 17 ")).unwrap(), 17);
        assert!(matches!(
            source_date_epoch(Some("x")),
            Err(EpochError::NotSeconds { .. })
        ));
        let e = source_date_epoch(Some("4354819200"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2108-01-01T00:00:00Z") && e.contains("zip timestamps"),
            "{e}"
        );
    }
}
