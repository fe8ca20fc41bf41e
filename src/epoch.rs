//! Time as builds see it: `SOURCE_DATE_EPOCH`, the one clock that reaches a
//! digest, and UTC dates written from seconds since the epoch.

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
    // Days from 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
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
