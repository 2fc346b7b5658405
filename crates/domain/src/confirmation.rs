//! How the holder's identity was confirmed before a loss reissue, a PIN
//! disclosure or an emergency revocation.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize};

/// How the holder's identity was confirmed. The proto
/// (`hpki.common.v1.ConfirmationMethod`) numbers it 1 to 3; 0 there is
/// "unspecified", which is no method and so no value here.
///
/// Its serde form is the proto's name (`"PHONE"`). It also reads the
/// lower-case names (`"phone"`, `"written_report"`, `"in_person"`) that the
/// issuance service stored before the method was an enum on its wire, so PIN
/// disclosure records written then still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfirmationMethod {
    /// The holder phoned the centre.
    Phone,
    /// A written loss report (紛失届) was received.
    WrittenReport,
    /// The holder came in person.
    InPerson,
}

impl ConfirmationMethod {
    pub const ALL: [ConfirmationMethod; 3] =
        [ConfirmationMethod::Phone, ConfirmationMethod::WrittenReport, ConfirmationMethod::InPerson];

    /// The proto enum number.
    pub fn code(self) -> i32 {
        match self {
            ConfirmationMethod::Phone => 1,
            ConfirmationMethod::WrittenReport => 2,
            ConfirmationMethod::InPerson => 3,
        }
    }

    /// The proto's name and the serde form, e.g. "WRITTEN_REPORT".
    pub fn name(self) -> &'static str {
        match self {
            ConfirmationMethod::Phone => "PHONE",
            ConfirmationMethod::WrittenReport => "WRITTEN_REPORT",
            ConfirmationMethod::InPerson => "IN_PERSON",
        }
    }

    /// The lower-case spelling of forms and of the issuance records stored
    /// before the enum, e.g. "written_report".
    pub fn form_name(self) -> &'static str {
        match self {
            ConfirmationMethod::Phone => "phone",
            ConfirmationMethod::WrittenReport => "written_report",
            ConfirmationMethod::InPerson => "in_person",
        }
    }

    /// The operator CLI's spelling, e.g. "written-report".
    pub fn cli_name(self) -> &'static str {
        match self {
            ConfirmationMethod::Phone => "phone",
            ConfirmationMethod::WrittenReport => "written-report",
            ConfirmationMethod::InPerson => "in-person",
        }
    }
}

/// A proto enum number that is no method: 0 (unspecified) or unknown.
impl TryFrom<i32> for ConfirmationMethod {
    type Error = i32;

    fn try_from(code: i32) -> Result<ConfirmationMethod, i32> {
        ConfirmationMethod::ALL.into_iter().find(|m| m.code() == code).ok_or(code)
    }
}

impl fmt::Display for ConfirmationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that [`ConfirmationMethod::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMethodError(pub String);

impl fmt::Display for ParseMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not PHONE, WRITTEN_REPORT or IN_PERSON", self.0)
    }
}

impl std::error::Error for ParseMethodError {}

/// Accepts the names in any case, with dashes, underscores or spaces between
/// the words ("PHONE", "written_report", "in-person"), trimmed.
impl FromStr for ConfirmationMethod {
    type Err = ParseMethodError;

    fn from_str(s: &str) -> Result<ConfirmationMethod, ParseMethodError> {
        let folded: String =
            s.trim().chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
        ConfirmationMethod::ALL
            .into_iter()
            .find(|m| m.form_name().replace('_', "") == folded)
            .ok_or_else(|| ParseMethodError(s.to_string()))
    }
}

/// Reads exactly the two stored spellings, the proto's and the lower-case
/// one; anything else is an error rather than a guess.
impl<'de> Deserialize<'de> for ConfirmationMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConfirmationMethod, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ConfirmationMethod::ALL
            .into_iter()
            .find(|m| m.name() == s || m.form_name() == s)
            .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(&s), &"PHONE, WRITTEN_REPORT or IN_PERSON"))
    }
}

/// An identity-confirmation record as checked: who confirmed the holder's
/// identity, how and when. Stored as JSON (these field names) with a PIN
/// disclosure, an emergency revocation and its pending approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityConfirmation {
    pub confirmed_by: String,
    pub method: ConfirmationMethod,
    /// RFC 3339.
    pub confirmed_at: String,
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_protos() {
        let codes: Vec<i32> = ConfirmationMethod::ALL.iter().map(|m| m.code()).collect();
        assert_eq!(codes, [1, 2, 3]);
        for m in ConfirmationMethod::ALL {
            assert_eq!(ConfirmationMethod::try_from(m.code()), Ok(m));
        }
        assert_eq!(ConfirmationMethod::try_from(0), Err(0));
        assert_eq!(ConfirmationMethod::try_from(4), Err(4));
    }

    #[test]
    fn names_parse_in_any_spelling() {
        for s in ["phone", "PHONE", " Phone "] {
            assert_eq!(s.parse(), Ok(ConfirmationMethod::Phone), "{s:?}");
        }
        for s in ["written_report", "WRITTEN_REPORT", "written-report", "written report"] {
            assert_eq!(s.parse(), Ok(ConfirmationMethod::WrittenReport), "{s:?}");
        }
        assert_eq!("in-person".parse(), Ok(ConfirmationMethod::InPerson));
        for m in ConfirmationMethod::ALL {
            for name in [m.name(), m.form_name(), m.cli_name()] {
                assert_eq!(name.parse(), Ok(m), "{name}");
            }
        }
        let err = "fax".parse::<ConfirmationMethod>().unwrap_err();
        assert_eq!(err.to_string(), r#""fax" is not PHONE, WRITTEN_REPORT or IN_PERSON"#);
        assert!("".parse::<ConfirmationMethod>().is_err());
    }

    /// Records stored before the method was one type still load: the issuance
    /// service wrote "phone", the revocation service "PHONE". Do not change.
    #[test]
    fn old_records_decode() {
        let issuance = r#"{"confirmed_by":"op-ito","method":"written_report","confirmed_at":"2026-05-01T11:00:00+09:00","note":""}"#;
        let c: IdentityConfirmation = serde_json::from_str(issuance).unwrap();
        assert_eq!(c.method, ConfirmationMethod::WrittenReport);
        assert_eq!(c.confirmed_by, "op-ito");
        let revocation = r#"{"confirmed_by":"op-a","method":"PHONE","confirmed_at":"2026-05-01T02:30:00Z","note":"n"}"#;
        let c: IdentityConfirmation = serde_json::from_str(revocation).unwrap();
        assert_eq!(c.method, ConfirmationMethod::Phone);
        for m in ConfirmationMethod::ALL {
            assert_eq!(serde_json::from_value::<ConfirmationMethod>(m.form_name().into()).unwrap(), m);
            assert_eq!(serde_json::from_value::<ConfirmationMethod>(m.name().into()).unwrap(), m);
            // New records use the proto's name.
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.name()));
        }
        assert!(serde_json::from_str::<ConfirmationMethod>(r#""Phone""#).is_err());
        assert!(serde_json::from_str::<ConfirmationMethod>(r#""""#).is_err());
    }
}
