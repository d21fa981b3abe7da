//! Calendar arithmetic for the times Cordon writes and reads: RFC 3339 in UTC (events, the
//! trail, the query log) and the civil dates of certificates. No time zones: every time is UTC.

/// Seconds since the epoch as RFC 3339 in UTC (`2026-11-30T01:02:03Z`).
pub fn rfc3339(at: i64) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds
/// (`2026-11-30T01:02:03.456Z`).
pub fn rfc3339_ms(at_ms: i64) -> String {
    let secs = rfc3339(at_ms.div_euclid(1000));
    let ms = at_ms.rem_euclid(1000);
    format!("{}.{ms:03}Z", &secs[..secs.len() - 1])
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only) as milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let text = text.strip_suffix(['Z', 'z'])?;
    let (date, time) = text.split_once(['T', 't', ' '])?;
    // Digits only: `parse` alone would take a sign.
    let number = |p: &str| {
        let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| p.parse::<i64>().ok()).flatten()
    };
    let mut d = date.splitn(3, '-').map(number);
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(number);
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    number(fraction)?;
    let ms: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let secs = utc_seconds(year, month, day, hour, minute, second)?;
    secs.checked_mul(1000)?.checked_add(ms)
}

/// `since` as milliseconds since the epoch: seconds since the epoch, an RFC 3339 time in UTC
/// (`2026-11-30T01:02:03Z`), or an age before `now_ms` (`30m`, `6h`, `7d`).
pub fn parse_since_ms(text: &str, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return secs.checked_mul(1000).filter(|ms| *ms >= 0);
    }
    let age = text.char_indices().last().filter(|(i, c)| {
        *i > 0 && c.is_ascii_alphabetic() && text[..*i].bytes().all(|b| b.is_ascii_digit())
    });
    if let Some((at, unit)) = age {
        let count: i64 = text[..at].parse().ok()?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return parse_rfc3339_ms(text).filter(|ms| *ms >= 0),
        };
        return Some(now_ms - count.checked_mul(secs * 1000)?.min(now_ms));
    }
    // Before the epoch is no time a trail holds.
    parse_rfc3339_ms(text).filter(|ms| *ms >= 0)
}

/// A UTC date and time as seconds since the epoch; `None` for a field out of its range (a leap
/// second, 60, is allowed and counts as the next second).
pub fn utc_seconds(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<i64> {
    let valid = (0..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second);
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_ms(1_709_251_199_007), "2024-02-29T23:59:59.007Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_reads_back_what_it_writes_and_nothing_else() {
        for ms in [0, 951_782_400_000, 1_709_251_199_007, 1_796_000_523_000] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T01:02:03Z"),
            Some(1_796_000_523_000)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        for junk in [
            "",
            "2026-11-30T01:02:03",
            "2026-13-01T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T01:02:03.Z",
            "2026-11-30T01:02:03.x1Z",
            "2026-11-30T01:02Z",
            "+02026-11-30T01:02:03Z",
        ] {
            assert_eq!(parse_rfc3339_ms(junk), None, "{junk}");
        }
    }

    #[test]
    fn since_reads_seconds_rfc3339_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since_ms("1700000000", now), Some(1_700_000_000_000));
        assert_eq!(parse_since_ms("30m", now), Some(now - 1_800_000));
        assert_eq!(parse_since_ms("7d", now), Some(now - 7 * 86_400_000));
        assert_eq!(
            parse_since_ms("2026-11-30T01:02:03Z", now),
            Some(1_796_000_523_000)
        );
        for junk in [
            "",
            "yesterday",
            "-5",
            "5y",
            "h",
            "99999999999999999999d",
            "9223372036854775807",
        ] {
            assert_eq!(parse_since_ms(junk, now), None, "{junk}");
        }
    }
}
