//! Time formats for HTTP headers (IMF-fixdate) and the gRPC API (RFC 3339).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 5.6.7).
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month()) - 1)],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 in UTC, e.g. `2026-02-07T03:00:00Z`; empty if out of range.
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// Now, truncated to the second (CRL times carry no fractions).
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(rfc3339(784_111_777), "1994-11-06T08:49:37Z");
        assert_eq!(rfc3339(i64::MAX), "");
        assert_eq!(now().nanosecond(), 0);
    }
}
