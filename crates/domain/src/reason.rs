//! The revocation reason: RFC 5280 CRLReason as the CA uses it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// RFC 5280 CRLReason (5.3.1) codes the CA uses. There is no certificateHold
/// (6) and so no removeFromCRL (8): HPKI revocation is final; aACompromise
/// (10) is for attribute certificates, which the CA does not issue.
///
/// Its serde form is the store's (`"KEY_COMPROMISE"`, the proto's names);
/// [`rfc5280_name`] serialises it by its RFC 5280 name instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevocationReason {
    Unspecified,
    /// Loss or theft: the emergency path.
    KeyCompromise,
    CaCompromise,
    /// Name or membership change: reissue.
    AffiliationChanged,
    /// Renewal, or reissue after damage.
    Superseded,
    CessationOfOperation,
    /// Licence withdrawn.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 7] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    /// The CRLReason ENUMERATED value (RFC 5280 5.3.1): the DER value in CRL
    /// reasonCode and OCSP revocationReason, the store's byte, and the proto's
    /// number.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// The reason with this CRLReason value, or None for a value the CA does
    /// not use (certificateHold, removeFromCRL, aACompromise, unknown).
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        RevocationReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The RFC 5280 name, e.g. "keyCompromise", "cACompromise".
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    /// The operator CLI's spelling, e.g. "key-compromise", "ca-compromise".
    pub fn cli_name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }
}

/// A code from the wire (a proto enum number) that is not a reason the CA uses.
impl TryFrom<i32> for RevocationReason {
    type Error = i32;

    fn try_from(code: i32) -> Result<RevocationReason, i32> {
        u8::try_from(code).ok().and_then(RevocationReason::from_code).ok_or(code)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A revocation reason name that [`RevocationReason::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseReasonError(pub String);

impl fmt::Display for ParseReasonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = RevocationReason::ALL.iter().map(|r| r.name()).collect();
        write!(f, "unknown revocation reason {:?}; use one of {}", self.0, names.join(", "))
    }
}

impl std::error::Error for ParseReasonError {}

/// Accepts the RFC 5280 names in any case, with or without dashes, spaces or
/// underscores ("keyCompromise", "key-compromise", "CA_COMPROMISE").
impl FromStr for RevocationReason {
    type Err = ParseReasonError;

    fn from_str(s: &str) -> Result<RevocationReason, ParseReasonError> {
        let folded: String = s.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.name().to_lowercase() == folded)
            .ok_or_else(|| ParseReasonError(s.to_string()))
    }
}

/// `#[serde(with = "domain::reason::rfc5280_name")]`: the reason as its exact
/// RFC 5280 name ("keyCompromise"), as the ARL state and the audit log hold it.
pub mod rfc5280_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::RevocationReason;

    pub fn serialize<S: Serializer>(r: &RevocationReason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RevocationReason, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(&name), &"an RFC 5280 CRLReason name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rfc_5280s_and_round_trip() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 9]);
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(RevocationReason::try_from(i32::from(r.code())), Ok(r));
        }
        for hold_or_unknown in [6, 7, 8, 10, 255] {
            assert_eq!(RevocationReason::from_code(hold_or_unknown), None);
        }
        assert_eq!(RevocationReason::try_from(-1), Err(-1));
        assert_eq!(RevocationReason::try_from(257), Err(257));
    }

    #[test]
    fn names_parse_in_any_spelling() {
        assert_eq!("keyCompromise".parse::<RevocationReason>(), Ok(RevocationReason::KeyCompromise));
        assert_eq!("ca-compromise".parse::<RevocationReason>(), Ok(RevocationReason::CaCompromise));
        assert_eq!("SUPERSEDED".parse::<RevocationReason>(), Ok(RevocationReason::Superseded));
        assert_eq!("privilege_withdrawn".parse::<RevocationReason>(), Ok(RevocationReason::PrivilegeWithdrawn));
        let err = "hold".parse::<RevocationReason>().unwrap_err().to_string();
        assert!(err.starts_with("unknown revocation reason \"hold\"; use one of unspecified, keyCompromise,"), "{err}");
        assert_eq!(RevocationReason::CaCompromise.to_string(), "cACompromise");
        for r in RevocationReason::ALL {
            assert_eq!(r.cli_name().parse::<RevocationReason>(), Ok(r), "{r}");
        }
    }

    #[test]
    fn the_serde_forms_are_the_stored_ones() {
        // The store's records hold the proto-style names; do not change them.
        let stored = [
            "UNSPECIFIED",
            "KEY_COMPROMISE",
            "CA_COMPROMISE",
            "AFFILIATION_CHANGED",
            "SUPERSEDED",
            "CESSATION_OF_OPERATION",
            "PRIVILEGE_WITHDRAWN",
        ];
        for (r, name) in RevocationReason::ALL.into_iter().zip(stored) {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<RevocationReason>(serde_json::json!(name)).unwrap(), r);
        }

        // The ARL state and the ceremony's audit records hold RFC 5280 names.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Arl {
            #[serde(with = "rfc5280_name")]
            reason: RevocationReason,
        }
        let json = r#"{"reason":"cACompromise"}"#;
        let arl: Arl = serde_json::from_str(json).unwrap();
        assert_eq!(arl, Arl { reason: RevocationReason::CaCompromise });
        assert_eq!(serde_json::to_string(&arl).unwrap(), json);
        assert!(serde_json::from_str::<Arl>(r#"{"reason":"CA_COMPROMISE"}"#).is_err());
    }
}
