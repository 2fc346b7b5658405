//! Validity periods. HPKI subscriber certificates run from 00:00:00 JST on
//! the day of issue to 23:59:59 JST on the same calendar day `years` later
//! (the real MEDIS certificate: 220206150000Z–270207145959Z).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Japan Standard Time, UTC+9, no daylight saving.
pub const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC, // unreachable: 9 h is a valid offset
};

const LAST_SECOND: Time = match Time::from_hms(23, 59, 59) {
    Ok(t) => t,
    Err(_) => Time::MIDNIGHT, // unreachable: a valid time
};

/// Subscriber validity in UTC: 00:00:00 JST on `issue_date` to 23:59:59 JST
/// on the same calendar day `years` later (Feb 29 becomes Feb 28 in a
/// non-leap year), with not_after clamped to `ca_not_after`.
///
/// If the CA expires before `issue_date` starts, not_after ends up before
/// not_before; callers must refuse to issue then (see [`is_usable`]).
pub fn subscriber_validity(
    issue_date: Date,
    years: u32,
    ca_not_after: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime) {
    let ca_not_after = truncate_to_second(ca_not_after).to_offset(UtcOffset::UTC);
    let not_before = PrimitiveDateTime::new(issue_date, Time::MIDNIGHT).assume_offset(JST);
    // A target year beyond what `time` represents is past any CA's not_after.
    let not_after = add_years(issue_date, years)
        .map(|d| PrimitiveDateTime::new(d, LAST_SECOND).assume_offset(JST))
        .map_or(ca_not_after, |na| na.min(ca_not_after));
    (not_before.to_offset(UtcOffset::UTC), not_after.to_offset(UtcOffset::UTC))
}

/// CA certificate validity: `now` (truncated to the second) to the same
/// instant `years` later, clamped to the issuer's not_after when there is one.
pub fn ca_validity(
    now: OffsetDateTime,
    years: u32,
    issuer_not_after: Option<OffsetDateTime>,
) -> (OffsetDateTime, OffsetDateTime) {
    let not_before = truncate_to_second(now).to_offset(UtcOffset::UTC);
    let cap = issuer_not_after.map(|t| truncate_to_second(t).to_offset(UtcOffset::UTC));
    let end = add_years(not_before.date(), years).map(|d| not_before.replace_date(d));
    let not_after = match (end, cap) {
        (Some(e), Some(c)) => e.min(c),
        (Some(e), None) => e,
        (None, Some(c)) => c,
        (None, None) => PrimitiveDateTime::new(Date::MAX, LAST_SECOND).assume_utc(),
    };
    (not_before, not_after)
}

/// True when the period is non-empty.
pub fn is_usable(not_before: OffsetDateTime, not_after: OffsetDateTime) -> bool {
    not_before < not_after
}

/// Today's date in JST.
pub fn today_jst() -> Date {
    OffsetDateTime::now_utc().to_offset(JST).date()
}

pub fn truncate_to_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Same month and day `years` later; Feb 29 becomes Feb 28 in a non-leap year.
fn add_years(date: Date, years: u32) -> Option<Date> {
    let year = date.year().checked_add(i32::try_from(years).ok()?)?;
    match Date::from_calendar_date(year, date.month(), date.day()) {
        Ok(d) => Some(d),
        Err(_) if date.month() == Month::February && date.day() == 29 => {
            Date::from_calendar_date(year, Month::February, 28).ok()
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    /// [`subscriber_validity`], whose bounds must be in UTC.
    fn utc_validity(issue_date: Date, years: u32, ca_end: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        let (nb, na) = subscriber_validity(issue_date, years, ca_end);
        assert_eq!((nb.offset(), na.offset()), (UtcOffset::UTC, UtcOffset::UTC));
        (nb, na)
    }

    #[test]
    fn medis_example() {
        let ca_end = datetime!(2042-01-01 00:00 UTC);
        let expected = (datetime!(2022-02-06 15:00:00 UTC), datetime!(2027-02-07 14:59:59 UTC));
        assert_eq!(utc_validity(date!(2022 - 02 - 07), 5, ca_end), expected);
    }

    #[test]
    fn leap_day_ends_on_feb_28_or_29() {
        let ca_end = datetime!(2099-01-01 00:00 UTC);
        let expected = (datetime!(2024-02-28 15:00:00 UTC), datetime!(2029-02-28 14:59:59 UTC));
        assert_eq!(utc_validity(date!(2024 - 02 - 29), 5, ca_end), expected);
        // Four years on is a leap year again.
        let (_, na) = utc_validity(date!(2024 - 02 - 29), 4, ca_end);
        assert_eq!(na, datetime!(2028-02-29 14:59:59 UTC));
    }

    #[test]
    fn not_after_is_clamped_to_the_ca() {
        let ca_end = datetime!(2025-06-30 12:34:56.789 UTC);
        let (nb, na) = utc_validity(date!(2022 - 02 - 07), 5, ca_end);
        assert_eq!((nb, na), (datetime!(2022-02-06 15:00:00 UTC), datetime!(2025-06-30 12:34:56 UTC)));
        assert!(is_usable(nb, na));
    }

    #[test]
    fn expired_ca_gives_an_unusable_period() {
        let ca_end = datetime!(2020-01-01 00:00 UTC);
        let (nb, na) = subscriber_validity(date!(2022 - 02 - 07), 5, ca_end);
        assert!(!is_usable(nb, na));
    }

    #[test]
    fn huge_years_do_not_panic() {
        let ca_end = datetime!(2040-01-01 00:00 UTC);
        let (_, na) = subscriber_validity(date!(2022 - 02 - 07), u32::MAX, ca_end);
        assert_eq!(na, ca_end);
        let (_, na) = ca_validity(datetime!(2022-01-01 00:00 UTC), u32::MAX, None);
        assert!(na > datetime!(9000-01-01 00:00 UTC));
    }

    #[test]
    fn ca_validity_truncates_and_clamps() {
        let now = datetime!(2026-03-01 10:20:30.999 +09:00);
        let (nb, na) = ca_validity(now, 20, None);
        assert_eq!(nb, datetime!(2026-03-01 01:20:30 UTC));
        assert_eq!(na, datetime!(2046-03-01 01:20:30 UTC));
        let root_end = datetime!(2040-01-01 00:00 UTC);
        let (_, na) = ca_validity(now, 20, Some(root_end));
        assert_eq!(na, root_end);
    }

    #[test]
    fn today_is_the_jst_date() {
        let utc = OffsetDateTime::now_utc();
        let d = today_jst();
        assert!(d == utc.date() || d == utc.date().next_day().unwrap());
    }
}
