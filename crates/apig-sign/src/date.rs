//! `X-Sdk-Date` (`YYYYMMDDTHHMMSSZ`, UTC) without a date library.

use crate::SignError;

const SECS_PER_DAY: i64 = 86_400;

/// Formats unix seconds as `YYYYMMDDTHHMMSSZ`.
///
/// Years outside 0..=9999 cannot be written in four digits; they produce a string that
/// [`parse_sdk_date`] rejects instead of a panic.
pub fn format_sdk_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(SECS_PER_DAY);
    let secs = unix_secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses exactly `YYYYMMDDTHHMMSSZ` into unix seconds; any other shape, or an impossible
/// date or time (month 13, 30 February, second 60), is [`SignError::MalformedDate`].
///
/// Strict on purpose: the literal header goes into the string to sign, so a lenient parse
/// (Python's `strptime` accepts single-digit fields) would let two spellings mean one time.
pub fn parse_sdk_date(s: &str) -> Result<i64, SignError> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(SignError::MalformedDate);
    }
    let num = |from: usize, to: usize| -> Result<i64, SignError> {
        b[from..to].iter().try_fold(0i64, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + i64::from(c - b'0'))
            } else {
                Err(SignError::MalformedDate)
            }
        })
    };
    let (year, month, day) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(SignError::MalformedDate);
    }
    Ok(days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (proleptic Gregorian, eras of 400 years shifted to start in
// March so the leap day is last).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_sdk_date(0), "19700101T000000Z");
        assert_eq!(format_sdk_date(1_704_067_200), "20240101T000000Z");
        assert_eq!(format_sdk_date(951_825_600), "20000229T120000Z");
        assert_eq!(format_sdk_date(-1), "19691231T235959Z");
        assert_eq!(format_sdk_date(253_402_300_799), "99991231T235959Z");
        assert_eq!(parse_sdk_date("20240101T000000Z"), Ok(1_704_067_200));
        assert_eq!(parse_sdk_date("20000229T120000Z"), Ok(951_825_600));
        assert_eq!(parse_sdk_date("00000101T000000Z"), Ok(-62_167_219_200));
    }

    #[test]
    fn round_trip_over_centuries() {
        // Every day from 1600 to 2500 at a varying time of day, crossing 1700/1800/1900 (not
        // leap) and 1600/2000/2400 (leap).
        let start = parse_sdk_date("16000101T000000Z").unwrap();
        let end = parse_sdk_date("25000101T000000Z").unwrap();
        let mut t = start;
        let mut i = 0i64;
        while t < end {
            let s = format_sdk_date(t);
            assert_eq!(parse_sdk_date(&s), Ok(t), "{s}");
            t += SECS_PER_DAY + (i * 7919) % SECS_PER_DAY / 1000;
            i += 1;
        }
    }

    #[test]
    fn leap_days() {
        for ok in [
            "16000229T000000Z",
            "20000229T000000Z",
            "20240229T235959Z",
            "24000229T000000Z",
        ] {
            assert!(parse_sdk_date(ok).is_ok(), "{ok}");
        }
        for bad in [
            "17000229T000000Z",
            "19000229T000000Z",
            "20230229T000000Z",
            "21000229T000000Z",
        ] {
            assert_eq!(parse_sdk_date(bad), Err(SignError::MalformedDate), "{bad}");
        }
        let feb28 = parse_sdk_date("20240228T000000Z").unwrap();
        assert_eq!(format_sdk_date(feb28 + SECS_PER_DAY), "20240229T000000Z");
        assert_eq!(
            format_sdk_date(feb28 + 2 * SECS_PER_DAY),
            "20240301T000000Z"
        );
    }

    #[test]
    fn strict_format() {
        for bad in [
            "",
            "20240101T000000",
            "20240101T000000z",
            "20240101t000000Z",
            "2024-01-01T000000Z",
            "2024011T0000000Z",
            "20240101T000000Z ",
            " 20240101T00000Z",
            "20241301T000000Z",
            "20240001T000000Z",
            "20240100T000000Z",
            "20240431T000000Z",
            "20240101T240000Z",
            "20240101T006000Z",
            "20240101T000060Z",
            "+0240101T000000Z",
            "2024010１T00000Z",
            "Mon, 01 Jan 2024",
        ] {
            assert_eq!(
                parse_sdk_date(bad),
                Err(SignError::MalformedDate),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        for t in [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -62_167_219_201,
            253_402_300_800,
        ] {
            let s = format_sdk_date(t);
            assert_eq!(parse_sdk_date(&s), Err(SignError::MalformedDate), "{s}");
        }
    }
}
