//! ISO 17090 hcRole as carried by Japanese HPKI certificates in the
//! subjectDirectoryAttributes extension (hpki-profile.md §4).
//!
//! ```text
//! HCActorData ::= SET OF HCActor
//! HCActor ::= SEQUENCE {
//!   codedData            [0] CodedData,
//!   regionalHCActorData  [1] SEQUENCE OF RegionalData OPTIONAL }
//! CodedData ::= SET {
//!   codingSchemeReference [0] OBJECT IDENTIFIER,
//!   codeDataValue         [1] NumericString OPTIONAL,
//!   codeDataFreeText      [2] DirectoryString }
//! ```
//! The tags are EXPLICIT: the real MEDIS certificates encode them that way.

use der::asn1::{Any, ObjectIdentifier, SetOfVec};
use der::{Decode, DecodeValue, Encode, EncodeValue, FixedTag, Sequence, Tag, ValueOrd};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::DirectoryString;
use x509_cert::ext::pkix::SubjectDirectoryAttributes;

use crate::error::ProfileError;

/// id-hcpki-at-healthcareactor: the attribute type in subjectDirectoryAttributes.
pub const ID_HCPKI_AT_HEALTHCAREACTOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.0.17090.0.1");

/// id-jhpki-cdata: the Japanese coding scheme seen in real certificates.
pub const ID_JHPKI_CDATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.392.100495.1.6.1.1");

/// `CodedData ::= SET { ... }`. The three fields have distinct ascending tags,
/// so declaration order is also the DER canonical SET order; only the outer
/// tag differs from a SEQUENCE, hence the manual `FixedTag`.
#[derive(Clone, Debug, Eq, PartialEq, EncodeValue, DecodeValue, ValueOrd)]
pub struct CodedData {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub coding_scheme_reference: ObjectIdentifier,
    /// NumericString in the standard; unused in Japan, kept opaque.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub code_data_value: Option<Any>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    pub code_data_free_text: DirectoryString,
}

impl FixedTag for CodedData {
    const TAG: Tag = Tag::Set;
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence, ValueOrd)]
pub struct HcActor {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub coded_data: CodedData,
    /// `SEQUENCE OF RegionalData`; not used in Japan, kept opaque.
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub regional_hc_actor_data: Option<Any>,
}

pub type HcActorData = SetOfVec<HcActor>;

/// DER of the subjectDirectoryAttributes extension value carrying one
/// HCActor whose free text is `role` (e.g. "Medical Doctor").
pub fn subject_directory_attributes(role: &str) -> Result<Vec<u8>, ProfileError> {
    if role.trim().is_empty() {
        return Err(ProfileError::InvalidConfig("profile.hc_role is empty".into()));
    }
    let actor = HcActor {
        coded_data: CodedData {
            coding_scheme_reference: ID_JHPKI_CDATA,
            code_data_value: None,
            code_data_free_text: DirectoryString::Utf8String(role.to_owned()),
        },
        regional_hc_actor_data: None,
    };
    let mut actors = HcActorData::new();
    actors.insert(actor)?;
    let mut values = SetOfVec::new();
    values.insert(Any::encode_from(&actors)?)?;
    let attrs = SubjectDirectoryAttributes(vec![Attribute { oid: ID_HCPKI_AT_HEALTHCAREACTOR, values }]);
    Ok(attrs.to_der()?)
}

/// The hcRole free texts in a subjectDirectoryAttributes extension value,
/// in encoding order. Attributes other than healthcareActor are skipped.
pub fn roles(extension_value: &[u8]) -> Result<Vec<String>, ProfileError> {
    let attrs = SubjectDirectoryAttributes::from_der(extension_value)?;
    let mut out = Vec::new();
    for attr in attrs.0.iter().filter(|a| a.oid == ID_HCPKI_AT_HEALTHCAREACTOR) {
        for value in attr.values.iter() {
            let actors: HcActorData = value.decode_as()?;
            for actor in actors.iter() {
                out.push(actor.coded_data.code_data_free_text.value().into_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extension value of a real MEDIS test certificate (hpki-profile.md §4).
    const MEDICAL_DOCTOR: [u8; 54] = {
        let head: [u8; 40] = [
            0x30, 0x34, 0x30, 0x32, 0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01, 0x31, 0x28, 0x31, 0x26, 0x30, 0x24,
            0xa0, 0x22, 0x31, 0x20, 0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01,
            0xa2, 0x10, 0x0c, 0x0e,
        ];
        let text = *b"Medical Doctor";
        let mut out = [0u8; 54];
        let mut i = 0;
        while i < 40 {
            out[i] = head[i];
            i += 1;
        }
        while i < 54 {
            out[i] = text[i - 40];
            i += 1;
        }
        out
    };

    #[test]
    fn medical_doctor_matches_real_certificate_bytes() {
        let der = subject_directory_attributes("Medical Doctor").unwrap();
        assert_eq!(der, MEDICAL_DOCTOR.to_vec());
    }

    #[test]
    fn real_bytes_decode_to_the_role() {
        assert_eq!(roles(&MEDICAL_DOCTOR).unwrap(), vec!["Medical Doctor".to_string()]);
    }

    #[test]
    fn other_roles_round_trip_including_non_ascii() {
        for role in ["Pharmacist", "Dentist", "医師"] {
            let der = subject_directory_attributes(role).unwrap();
            assert_eq!(roles(&der).unwrap(), vec![role.to_string()]);
        }
    }

    #[test]
    fn empty_role_is_a_config_error_naming_the_field() {
        let err = subject_directory_attributes(" ").unwrap_err().to_string();
        assert!(err.contains("profile.hc_role"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for n in 0..MEDICAL_DOCTOR.len() {
            assert!(roles(&MEDICAL_DOCTOR[..n]).is_err());
        }
    }
}
