//! Time formats for HTTP headers (IMF-fixdate) and the gRPC API (RFC 3339),
//! from the workspace's `timefmt` crate.

use time::OffsetDateTime;

pub(crate) use ::timefmt::rfc3339;

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 5.6.7).
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    ::timefmt::http_date(t.unix_timestamp()).unwrap_or_default()
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
