//! Checks on request fields, each failing with INVALID_ARGUMENT naming the field.
//! Only what the registry itself relies on; the domain rules (documents,
//! dates, licence formats) are the issuance service's.

use store::{CertificateKind, RevocationReason, Serial};

use crate::error::RegistryError;

/// Identifiers and labels: ids, licence numbers, actors, action names.
pub const MAX_ID_LEN: usize = 128;
/// Names, addresses and other free text of a holder or an audit subject.
pub const MAX_TEXT_LEN: usize = 1024;
/// The application as received, and audit details.
pub const MAX_JSON_LEN: usize = 256 * 1024;
/// A certificate or its to-be-signed part; HPKI certificates are a few KiB.
pub const MAX_DER_LEN: usize = 64 * 1024;

/// A non-empty identifier without control characters or surrounding spaces.
pub fn id(field: &'static str, value: &str) -> Result<String, RegistryError> {
    if value.is_empty() {
        return Err(RegistryError::invalid(field, "is required"));
    }
    if value.trim() != value {
        return Err(RegistryError::invalid(field, "has leading or trailing whitespace"));
    }
    text(field, value, MAX_ID_LEN)
}

/// Optional free text, bounded and without control characters.
pub fn text(field: &'static str, value: &str, max_len: usize) -> Result<String, RegistryError> {
    if value.len() > max_len {
        return Err(RegistryError::invalid(field, format!("is longer than {max_len} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(RegistryError::invalid(field, "contains control characters"));
    }
    Ok(value.to_owned())
}

/// Empty, or a JSON document.
pub fn json(field: &'static str, value: &str) -> Result<String, RegistryError> {
    if value.len() > MAX_JSON_LEN {
        return Err(RegistryError::invalid(field, format!("is longer than {MAX_JSON_LEN} bytes")));
    }
    if !value.is_empty() {
        serde_json::from_str::<serde_json::Value>(value)
            .map_err(|e| RegistryError::invalid(field, format!("is not JSON: {e}")))?;
    }
    Ok(value.to_owned())
}

/// Empty, or a calendar date written YYYY-MM-DD.
pub fn optional_date(field: &'static str, value: &str) -> Result<String, RegistryError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let bad = || RegistryError::invalid(field, format!("{value:?} is not a date (YYYY-MM-DD)"));
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return Err(bad());
    }
    let number = |r: std::ops::Range<usize>| value[r].parse::<u32>().map_err(|_| bad());
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > days {
        return Err(bad());
    }
    Ok(value.to_owned())
}

/// A byte string whose length lies in `range`; `what` says what it holds.
pub fn bytes_len(
    field: &'static str,
    value: &[u8],
    range: std::ops::RangeInclusive<usize>,
    what: &str,
) -> Result<(), RegistryError> {
    if range.contains(&value.len()) {
        return Ok(());
    }
    let wanted = if range.start() == range.end() {
        format!("{} bytes", range.start())
    } else {
        format!("{} to {} bytes", range.start(), range.end())
    };
    Err(RegistryError::invalid(field, format!("must be {wanted} ({what}), not {}", value.len())))
}

pub fn serial(field: &'static str, value: &str) -> Result<Serial, RegistryError> {
    Serial::from_hex(value).map_err(|e| RegistryError::invalid(field, e.to_string()))
}

pub fn der(field: &'static str, value: &[u8]) -> Result<(), RegistryError> {
    if value.is_empty() {
        return Err(RegistryError::invalid(field, "is required"));
    }
    if value.len() > MAX_DER_LEN {
        return Err(RegistryError::invalid(field, format!("is longer than {MAX_DER_LEN} bytes")));
    }
    Ok(())
}

/// A certificate's validity: `not_after_field` names the notAfter, which
/// must come after the notBefore.
pub fn validity(not_after_field: &'static str, not_before_unix: i64, not_after_unix: i64) -> Result<(), RegistryError> {
    if not_before_unix >= not_after_unix {
        return Err(RegistryError::invalid(not_after_field, "must be later than not_before_unix"));
    }
    Ok(())
}

pub fn kind(field: &'static str, value: i32) -> Result<CertificateKind, RegistryError> {
    use proto::registry::v1::CertificateKind as P;
    match P::try_from(value) {
        Ok(P::Signing) => Ok(CertificateKind::Signing),
        Ok(P::Authentication) => Ok(CertificateKind::Authentication),
        Ok(P::OcspResponder) => Ok(CertificateKind::OcspResponder),
        _ => Err(RegistryError::invalid(field, "must be SIGNING, AUTHENTICATION or OCSP_RESPONDER")),
    }
}

/// A CRLReason the CA uses (the proto's RevocationReason); UNSPECIFIED is
/// RFC 5280's "unspecified" (0), which CRLs carry as no reasonCode at all.
pub fn reason(field: &'static str, value: i32) -> Result<RevocationReason, RegistryError> {
    RevocationReason::try_from(value)
        .map_err(|_| RegistryError::invalid(field, format!("{value} is not a reason code the CA uses")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug, RegistryError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn ids_must_be_present_trimmed_short_and_printable() {
        assert_eq!(id("card_id", "C1").unwrap(), "C1");
        assert_eq!(message(id("card_id", "")), "card_id: is required");
        assert!(message(id("card_id", " C1")).contains("whitespace"));
        assert!(message(id("card_id", &"x".repeat(MAX_ID_LEN + 1))).contains("longer"));
        assert!(message(id("card_id", "C\u{0}1")).contains("control"));
    }

    #[test]
    fn json_may_be_empty_but_not_malformed() {
        assert_eq!(json("application_json", "").unwrap(), "");
        assert!(json("application_json", r#"{"a":[1]}"#).is_ok());
        assert!(message(json("application_json", "{")).starts_with("application_json: is not JSON"));
        // Deep nesting hits serde_json's recursion limit, an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(json("application_json", &deep).is_err());
    }

    #[test]
    fn dates_are_empty_or_real_calendar_dates() {
        assert_eq!(optional_date("d", "").unwrap(), "");
        for good in ["2026-01-05", "2024-02-29", "2000-02-29", "1999-12-31"] {
            assert_eq!(optional_date("d", good).unwrap(), good);
        }
        for bad in [
            "2026-1-05",
            "2026/01/05",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2023-02-29",
            "1900-02-29",
            "2026-01-00",
            "2026-01-05T00:00",
            "２０２６-01-05",
            "+026-01-05",
        ] {
            assert!(message(optional_date("d", bad)).starts_with("d: "), "{bad}");
        }
    }

    #[test]
    fn byte_lengths_name_the_field_and_the_bounds() {
        assert!(bytes_len("iv", &[0; 12], 12..=12, "GCM nonce").is_ok());
        assert_eq!(
            message(bytes_len("iv", &[0; 16], 12..=12, "GCM nonce")),
            "iv: must be 12 bytes (GCM nonce), not 16"
        );
        assert!(bytes_len("ciphertext", &[0; 16], 16..=1024, "x").is_ok());
        assert!(bytes_len("ciphertext", &[0; 1024], 16..=1024, "x").is_ok());
        assert_eq!(
            message(bytes_len("ciphertext", &[0; 15], 16..=1024, "x")),
            "ciphertext: must be 16 to 1024 bytes (x), not 15"
        );
        assert!(bytes_len("ciphertext", &[0; 1025], 16..=1024, "x").is_err());
    }

    #[test]
    fn serials_and_kinds() {
        assert_eq!(serial("serial", "0A").unwrap().to_hex(), "0a");
        assert_eq!(message(serial("serial", "")), "serial: is empty");
        assert!(message(serial("serial", "xyz")).starts_with("serial: is not hex"));
        assert!(kind("kind", 1).is_ok());
        assert_eq!(message(kind("kind", 0)), "kind: must be SIGNING, AUTHENTICATION or OCSP_RESPONDER");
        assert!(kind("kind", 99).is_err());
    }

    #[test]
    fn reasons_are_the_rfc_5280_codes() {
        for r in RevocationReason::ALL {
            assert_eq!(reason("reason", i32::from(r.code())).unwrap(), r);
        }
        // certificateHold (6) and removeFromCRL (8) do not exist here: revocation is final.
        for bad in [6, 7, 8, 10, -1] {
            assert!(message(reason("reason", bad)).starts_with("reason: "), "{bad}");
        }
    }
}
