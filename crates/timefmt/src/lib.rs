//! The time formats used across the workspace, written once:
//! RFC 3339 for the gRPC API, JSON and audit details, and IMF-fixdate
//! (RFC 9110 §5.6.7) for HTTP headers.
//!
//! A leaf crate: it depends on `time` only, so that every other crate may use it.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `t` in RFC 3339, as `time` writes it (the offset of `t` is kept).
pub fn format_rfc3339(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.format(&Rfc3339)
}

/// A Unix time in RFC 3339 (UTC), e.g. `2026-02-07T03:00:00Z`; `None` if out of range.
pub fn rfc3339_checked(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| format_rfc3339(t).ok())
}

/// A Unix time in RFC 3339 (UTC); empty if out of range.
pub fn rfc3339(unix: i64) -> String {
    rfc3339_checked(unix).unwrap_or_default()
}

/// A Unix time in RFC 3339 (UTC); empty for 0 (unset) or an unrepresentable time.
pub fn rfc3339_unless_unset(unix: i64) -> String {
    if unix == 0 {
        return String::new();
    }
    rfc3339(unix)
}

/// The length of an IMF-fixdate.
pub const HTTP_DATE_LEN: usize = 29;

/// A Unix time as IMF-fixdate bytes, `Sun, 06 Nov 1994 08:49:37 GMT`, without allocating;
/// `None` outside the years 0000 to 9999.
pub fn http_date_bytes(unix: i64) -> Option<[u8; HTTP_DATE_LEN]> {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let t = OffsetDateTime::from_unix_timestamp(unix).ok()?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let two = |v: u8| [b'0' + v / 10, b'0' + v % 10];
    let mut b = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    b[..3].copy_from_slice(DAYS[usize::from(t.weekday().number_days_from_monday())]);
    b[5..7].copy_from_slice(&two(t.day()));
    b[8..11].copy_from_slice(MONTHS[usize::from(u8::from(t.month())) - 1]);
    b[12..16].copy_from_slice(&[
        b'0' + (year / 1000) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
    ]);
    b[17..19].copy_from_slice(&two(t.hour()));
    b[20..22].copy_from_slice(&two(t.minute()));
    b[23..25].copy_from_slice(&two(t.second()));
    Some(b)
}

/// A Unix time as an IMF-fixdate string; `None` outside the years 0000 to 9999.
pub fn http_date(unix: i64) -> Option<String> {
    http_date_bytes(unix).map(|b| b.iter().map(|&c| char::from(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        let cases = [(784_111_777, "1994-11-06T08:49:37Z"), (0, "1970-01-01T00:00:00Z"), (i64::MAX, "")];
        for (unix, want) in cases {
            assert_eq!(rfc3339(unix), want, "{unix}");
        }
        assert_eq!(rfc3339_checked(i64::MAX), None);
        assert_eq!(rfc3339_unless_unset(0), "");
        assert_eq!(rfc3339_unless_unset(1_767_193_200), "2025-12-31T15:00:00Z");
        let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap();
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap().to_offset(jst);
        assert_eq!(format_rfc3339(t).unwrap(), "1970-01-01T09:00:00+09:00");
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let cases = [
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        ];
        for (unix, want) in cases {
            assert_eq!(http_date(unix).as_deref(), Some(want), "{unix}");
        }
        assert!(http_date(253_402_300_800).is_none(), "year 10000");
        assert!(http_date(-62_167_219_201).is_none(), "year -1");
        assert_eq!(&http_date_bytes(0).unwrap(), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
