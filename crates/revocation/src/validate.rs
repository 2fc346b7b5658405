//! Checks on request fields, each failing with INVALID_ARGUMENT naming the
//! field. They match what the registry accepts, so its refusals (which name
//! its own fields) are only seen for what it alone can know.

use domain::ConfirmationMethod;
use proto::registry::v1::RevocationReason;
use proto::revocation::v1::IdentityConfirmation;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::RevocationError;

/// Identifiers: card ids, licence numbers, operators, approval ids.
pub const MAX_ID_LEN: usize = 128;
/// Free-text notes.
pub const MAX_NOTE_LEN: usize = 1024;
/// RFC 5280 4.1.2.2: serials are at most 20 octets (`domain::Serial` holds to it).
pub const MAX_SERIAL_OCTETS: usize = domain::MAX_SERIAL_LEN;
/// Clock difference tolerated on times that must not be in the future.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(2);

/// A non-empty identifier without control characters or surrounding spaces.
pub fn id(field: &str, value: &str) -> Result<String, RevocationError> {
    if value.is_empty() {
        return Err(RevocationError::invalid(field, "is required"));
    }
    if value.trim() != value {
        return Err(RevocationError::invalid(field, "has leading or trailing whitespace"));
    }
    bounded_printable(field, value, MAX_ID_LEN, "contains control characters")
}

/// Optional free text, bounded and on one line.
pub fn note(field: &str, value: &str) -> Result<String, RevocationError> {
    bounded_printable(field, value, MAX_NOTE_LEN, "contains control characters (keep it on one line)")
}

/// `value` when it is at most `max_len` bytes and has no control characters
/// (refused with `control_message`).
fn bounded_printable(
    field: &str,
    value: &str,
    max_len: usize,
    control_message: &'static str,
) -> Result<String, RevocationError> {
    if value.len() > max_len {
        return Err(RevocationError::invalid(field, format!("is longer than {max_len} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(RevocationError::invalid(field, control_message));
    }
    Ok(value.to_owned())
}

/// A certificate serial in hex (either case); returned in lower case.
pub fn serial(field: &str, value: &str) -> Result<String, RevocationError> {
    match domain::Serial::from_hex(value) {
        Ok(serial) => Ok(serial.to_hex()),
        Err(domain::SerialParseError::Empty) => Err(RevocationError::invalid(field, "is required")),
        Err(domain::SerialParseError::NotHex(e)) => Err(RevocationError::invalid(field, format!("is not hex: {e}"))),
        Err(domain::SerialParseError::TooLong) => Err(RevocationError::invalid(
            field,
            format!("is longer than {MAX_SERIAL_OCTETS} octets (RFC 5280 4.1.2.2)"),
        )),
    }
}

/// One of the RFC 5280 reasons the proto defines (UNSPECIFIED included: RFC
/// 5280's `unspecified`). Anything else, such as certificateHold (6), is refused.
pub fn reason(field: &str, value: i32) -> Result<RevocationReason, RevocationError> {
    RevocationReason::try_from(value).map_err(|_| {
        RevocationError::invalid(
            field,
            format!(
                "{value} is not a revocation reason here (certificateHold and removeFromCRL \
                 do not exist: revocation is final)"
            ),
        )
    })
}

/// An RFC 3339 time that is not in the future (beyond `CLOCK_SKEW`).
pub fn past_time(field: &str, value: &str, now: OffsetDateTime) -> Result<OffsetDateTime, RevocationError> {
    if value.is_empty() {
        return Err(RevocationError::invalid(field, "is required"));
    }
    let t = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| RevocationError::invalid(field, format!("is not an RFC 3339 time: {e}")))?;
    if t > now + CLOCK_SKEW {
        return Err(RevocationError::invalid(field, "is in the future"));
    }
    if t.unix_timestamp() <= 0 {
        return Err(RevocationError::invalid(field, "is not after 1970-01-01"));
    }
    Ok(t)
}

/// Empty (meaning now), or as `past_time`.
pub fn optional_past_time(
    field: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, RevocationError> {
    if value.is_empty() {
        Ok(None)
    } else {
        past_time(field, value, now).map(Some)
    }
}

/// The times an operator gives with a revocation, as checked against the
/// request's own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationTimes {
    /// revoked_at; None: now (the registry's clock).
    pub revoked_at: Option<OffsetDateTime>,
    /// compromised_at (the invalidityDate); None: none given.
    pub compromised_at: Option<OffsetDateTime>,
}

impl RevocationTimes {
    /// `revoked_at` (empty: now) may lie at most `max_backdate` before `now`:
    /// an earlier revocationDate would void signatures made before the loss;
    /// the time of compromise goes in `compromised_at` instead. That one
    /// (empty: none) may lie before the revocation, not after it, and not in
    /// the future. Neither may be in the future beyond `CLOCK_SKEW`.
    pub fn check(
        revoked_at: &str,
        compromised_at: &str,
        now: OffsetDateTime,
        max_backdate: time::Duration,
    ) -> Result<RevocationTimes, RevocationError> {
        let revoked = optional_past_time("revoked_at", revoked_at, now)?;
        if let Some(t) = revoked {
            if t < now - max_backdate {
                return Err(RevocationError::invalid(
                    "revoked_at",
                    format!(
                        "is more than {} s before the request ([revocation] max_backdate_seconds); the revocation \
                         date is when the CA revokes: give an earlier time of compromise in compromised_at",
                        max_backdate.whole_seconds()
                    ),
                ));
            }
        }
        let compromised = optional_past_time("compromised_at", compromised_at, now)?;
        if let Some(c) = compromised {
            if c > revoked.unwrap_or(now) {
                return Err(RevocationError::invalid("compromised_at", "is after the revocation time (revoked_at)"));
            }
        }
        Ok(RevocationTimes { revoked_at: revoked, compromised_at: compromised })
    }

    /// Neither time may lie before the certificate's notBefore (a
    /// certificate cannot be revoked, or its key compromised, before it is
    /// valid). `not_before_unix` 0 (unknown) checks nothing.
    pub fn check_not_before(&self, not_before_unix: i64, serial: &str) -> Result<(), RevocationError> {
        if not_before_unix == 0 {
            return Ok(());
        }
        for (field, t) in [("revoked_at", self.revoked_at), ("compromised_at", self.compromised_at)] {
            if t.is_some_and(|t| t.unix_timestamp() < not_before_unix) {
                return Err(RevocationError::invalid(
                    field,
                    format!("is before the notBefore ({}) of certificate {serial}", rfc3339(not_before_unix)),
                ));
            }
        }
        Ok(())
    }

    pub fn revoked_at_unix(&self) -> i64 {
        self.revoked_at.map_or(0, |t| t.unix_timestamp())
    }

    pub fn invalidity_date_unix(&self) -> i64 {
        self.compromised_at.map_or(0, |t| t.unix_timestamp())
    }
}

/// The identity-confirmation record of an emergency revocation, as checked;
/// stored as JSON with the revocation and in the approval (method `"PHONE"`).
pub type Confirmation = domain::IdentityConfirmation;

pub fn confirmation(c: Option<&IdentityConfirmation>, now: OffsetDateTime) -> Result<Confirmation, RevocationError> {
    let Some(c) = c else {
        return Err(RevocationError::invalid(
            "confirmation",
            "is required (who confirmed the holder's identity, how and when)",
        ));
    };
    let confirmed_by = id("confirmation.confirmed_by", &c.confirmed_by)?;
    let method = match ConfirmationMethod::try_from(c.method) {
        Ok(m) => m,
        Err(0) => {
            return Err(RevocationError::invalid(
                "confirmation.method",
                "is required (PHONE, WRITTEN_REPORT or IN_PERSON)",
            ))
        }
        Err(n) => {
            return Err(RevocationError::invalid(
                "confirmation.method",
                format!("{n} is not PHONE, WRITTEN_REPORT or IN_PERSON"),
            ))
        }
    };
    let at = past_time("confirmation.confirmed_at", &c.confirmed_at, now)?;
    let confirmed_at = rfc3339(at.unix_timestamp());
    let note = note("confirmation.note", &c.note)?;
    Ok(Confirmation { confirmed_by, method, confirmed_at, note })
}

/// RFC 3339 in UTC; empty for 0 (unset) or an unrepresentable time.
pub use timefmt::rfc3339_unless_unset as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: std::fmt::Debug>(r: Result<T, RevocationError>) -> String {
        r.unwrap_err().to_string()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-05-01T12:00:00+09:00", &Rfc3339).unwrap()
    }

    #[test]
    fn ids_must_be_present_trimmed_short_and_printable() {
        assert_eq!(id("operator", "op-1").unwrap(), "op-1");
        assert_eq!(message(id("operator", "")), "operator: is required");
        assert!(message(id("operator", " op")).contains("whitespace"));
        assert!(message(id("operator", &"x".repeat(MAX_ID_LEN + 1))).contains("longer"));
        assert!(message(id("card_id", "C\u{7}1")).starts_with("card_id: contains control"));
    }

    #[test]
    fn notes_are_optional_bounded_one_line() {
        assert_eq!(note("note", "").unwrap(), "");
        assert_eq!(note("note", "紛失 (電話)").unwrap(), "紛失 (電話)");
        assert!(message(note("note", "a\nb")).starts_with("note: contains control"));
        assert!(message(note("note", &"x".repeat(MAX_NOTE_LEN + 1))).starts_with("note: is longer"));
    }

    #[test]
    fn serials_are_hex_up_to_20_octets_and_come_back_in_lower_case() {
        assert_eq!(serial("serial", "0A1b").unwrap(), "0a1b");
        assert_eq!(serial("serial", &"7f".repeat(20)).unwrap(), "7f".repeat(20));
        assert_eq!(message(serial("serial", "")), "serial: is required");
        assert!(message(serial("serial", "xyz")).starts_with("serial: is not hex"));
        assert!(message(serial("serial", "abc")).starts_with("serial: is not hex"));
        assert!(message(serial("serial", &"01".repeat(21))).starts_with("serial: is longer than 20 octets"));
    }

    #[test]
    fn reasons_are_the_enum_values_only() {
        assert_eq!(reason("reason", 0).unwrap(), RevocationReason::Unspecified);
        assert_eq!(reason("reason", 1).unwrap(), RevocationReason::KeyCompromise);
        assert_eq!(reason("reason", 9).unwrap(), RevocationReason::PrivilegeWithdrawn);
        for hold_like in [6, 7, 8, 10, -1] {
            assert!(message(reason("reason", hold_like)).starts_with("reason: "), "{hold_like}");
        }
    }

    #[test]
    fn times_are_rfc3339_and_not_in_the_future() {
        let t = past_time("revoked_at", "2026-05-01T02:00:00Z", now()).unwrap();
        assert_eq!(t.unix_timestamp(), now().unix_timestamp() - 3600);
        // Within the tolerated skew.
        assert!(past_time("revoked_at", "2026-05-01T03:01:00Z", now()).is_ok());
        assert_eq!(message(past_time("revoked_at", "2026-05-02T00:00:00Z", now())), "revoked_at: is in the future");
        assert!(message(past_time("revoked_at", "yesterday", now())).starts_with("revoked_at: is not an RFC 3339"));
        assert_eq!(message(past_time("revoked_at", "", now())), "revoked_at: is required");
        assert!(past_time("revoked_at", "1969-12-31T00:00:00Z", now()).is_err());
        assert_eq!(optional_past_time("revoked_at", "", now()).unwrap(), None);
    }

    fn conf() -> IdentityConfirmation {
        IdentityConfirmation {
            confirmed_by: "op-1".into(),
            method: proto::revocation::v1::ConfirmationMethod::Phone as i32,
            confirmed_at: "2026-05-01T11:30:00+09:00".into(),
            note: "callback to registered number".into(),
        }
    }

    #[test]
    fn a_confirmation_is_checked_field_by_field() {
        let c = confirmation(Some(&conf()), now()).unwrap();
        assert_eq!(c.method.name(), "PHONE");
        assert_eq!(c.confirmed_at, "2026-05-01T02:30:00Z");
        assert!(message(confirmation(None, now())).starts_with("confirmation: is required"));
        type Change = fn(&mut IdentityConfirmation);
        let cases: [(&str, Change); 5] = [
            ("confirmation.confirmed_by: is required", |c| c.confirmed_by.clear()),
            ("confirmation.method: is required", |c| c.method = 0),
            ("confirmation.method: 7 is not", |c| c.method = 7),
            ("confirmation.confirmed_at: is in the future", |c| c.confirmed_at = "2027-01-01T00:00:00Z".into()),
            ("confirmation.note: contains control", |c| c.note = "a\tb".into()),
        ];
        for (expected, change) in cases {
            let mut c = conf();
            change(&mut c);
            let got = message(confirmation(Some(&c), now()));
            assert!(got.starts_with(expected), "{got:?} does not start with {expected:?}");
        }
    }

    #[test]
    fn revoked_at_may_be_backdated_a_little_and_compromised_at_before_it() {
        let skew = time::Duration::seconds(300);
        let t = RevocationTimes::check("", "", now(), skew).unwrap();
        assert_eq!((t.revoked_at_unix(), t.invalidity_date_unix()), (0, 0));
        // 4 minutes back: fine. 6 minutes back: refused, naming the field.
        let ok = RevocationTimes::check("2026-05-01T02:56:00Z", "", now(), skew).unwrap();
        assert_eq!(ok.revoked_at_unix(), now().unix_timestamp() - 240);
        let err = message(RevocationTimes::check("2026-05-01T02:54:00Z", "", now(), skew));
        assert!(err.starts_with("revoked_at: is more than 300 s before the request"), "{err}");
        // A compromise a week ago is what compromised_at is for.
        let week = RevocationTimes::check("", "2026-04-24T03:00:00Z", now(), skew).unwrap();
        assert_eq!(week.invalidity_date_unix(), now().unix_timestamp() - 7 * 86_400);
        assert_eq!(week.revoked_at_unix(), 0, "the revocation date stays now");
        let err = message(RevocationTimes::check("", "2026-05-02T00:00:00Z", now(), skew));
        assert_eq!(err, "compromised_at: is in the future");
        let err = message(RevocationTimes::check("2026-05-01T02:56:00Z", "2026-05-01T02:58:00Z", now(), skew));
        assert!(err.starts_with("compromised_at: is after the revocation time"), "{err}");
        assert!(message(RevocationTimes::check("", "last week", now(), skew)).starts_with("compromised_at: is not"));
        // notBefore bounds both.
        let nb = now().unix_timestamp() - 3 * 86_400;
        week.check_not_before(nb - 86_400 * 10, "0a").unwrap();
        let err = message(week.check_not_before(nb, "0a"));
        assert!(
            err.starts_with("compromised_at: is before the notBefore (2026-04-28T03:00:00Z) of certificate 0a"),
            "{err}"
        );
        let err = message(ok.check_not_before(now().unix_timestamp(), "0a"));
        assert!(err.starts_with("revoked_at: is before the notBefore"), "{err}");
        ok.check_not_before(0, "0a").unwrap();
    }

    #[test]
    fn rfc3339_of_unset_is_empty() {
        assert_eq!(rfc3339(0), "");
        assert_eq!(rfc3339(1_767_193_200), "2025-12-31T15:00:00Z");
    }
}
