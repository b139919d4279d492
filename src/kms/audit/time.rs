//! ISO 8601 UTC times of audit events (`2026-12-01T04:39:09Z`), as
//! CloudTrail writes them; seconds since the epoch are still read.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
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
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

pub fn format_iso(secs: u64) -> String {
    let s = secs as i64;
    let (y, m, d) = civil_from_days(s.div_euclid(86_400));
    let t = s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` or with an offset (`-08:00`), or a date alone,
/// or seconds since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, clock) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let (clock, offset) = match clock.find(['+', '-']) {
        Some(i) => (&clock[..i], offset_secs(&clock[i..])?),
        None => (clock, 0),
    };
    let num = |p: &str| p.parse::<i64>().ok();
    let dp: Vec<&str> = date.split('-').collect();
    let cp: Vec<&str> = clock.split(':').collect();
    let [y, mo, d] = dp[..] else { return None };
    let (y, mo, d) = (num(y)?, num(mo)?, num(d)?);
    let (h, mi, sec) = match cp[..] {
        [h, mi] => (num(h)?, num(mi)?, 0),
        [h, mi, sec] => (num(h)?, num(mi)?, num(sec.split('.').next()?)?),
        _ => return None,
    };
    let ok = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&sec);
    let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    (ok && t >= 0).then_some(t as u64)
}

/// `+HH:MM` or `-HH:MM` (or `+HHMM`, `+HH`) in seconds east of UTC.
fn offset_secs(s: &str) -> Option<i64> {
    let (sign, rest) = match s.split_at(1) {
        ("+", r) => (1, r),
        ("-", r) => (-1, r),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Some(0), |m| m.parse().ok())?;
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_round_trip() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso(1_798_000_000), "2026-12-23T04:26:40Z");
        for t in [0, 951_782_400, 1_798_000_000, 4_102_444_800] {
            assert_eq!(parse_time(&format_iso(t)), Some(t));
        }
        assert_eq!(parse_time("12"), Some(12));
        assert_eq!(parse_time("2026-12-23"), Some(1_797_984_000));
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(
            parse_time("2026-12-23T04:26:40-08:00"),
            Some(1_798_000_000 + 8 * 3600)
        );
        assert_eq!(parse_time("2026-12-23T05:56:40+01:30"), Some(1_798_000_000));
        assert_eq!(parse_time("2026-12-23T04:26:40+25:00"), None);
        assert_eq!(parse_time("2026-12-23T04:26:40-0x:00"), None);
    }
}
