//! Distinguished names: one neutral list of (type, string type, text) turned
//! into an rcgen `DistinguishedName` (subject, issuer) or an x509-cert `Name`
//! (subjectAltName directoryName), and CA cert names read back into rcgen.

use const_oid::db::rfc4519;
use der::asn1::{Any, ObjectIdentifier, PrintableStringRef, SetOfVec};
use der::{Decode, Encode, Tag, Tagged};
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString};
use rcgen::{DistinguishedName, DnType, DnValue};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

/// What is wrong with a name or one of its attributes; `what` is the field
/// or config key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("{what} has {chars} characters, at most {max} are allowed")]
    TooLong { what: String, chars: usize, max: usize },
    #[error("{what} must be a two-letter country code such as JP")]
    Country { what: String },
    #[error("{what} ({value:?}) must use only PrintableString characters: A-Z a-z 0-9 space ' ( ) + , - . / : = ?")]
    NotPrintable { what: String, value: String },
    #[error("{what} contains control characters")]
    Control { what: String },
    #[error("attribute {0:?} is not C, O, OU, CN, L, ST, serialNumber or a dotted OID")]
    UnknownAttribute(String),
    #[error("attribute {0} appears too often (at most two each of C, L, ST, O, OU, CN and one of any other type)")]
    TooOften(ObjectIdentifier),
    #[error("multi-valued or empty RDNs are not supported")]
    MultiValued,
    #[error("attribute {oid} has unsupported string type {tag}")]
    UnsupportedType { oid: ObjectIdentifier, tag: Tag },
    /// rcgen or UTF-8 refused a value (its own message).
    #[error("{0}")]
    Value(String),
    #[error("attribute {oid}: {message}")]
    Attribute { oid: ObjectIdentifier, message: String },
}

/// The two string types RFC 5280 lets a new CA use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    Printable,
    Utf8,
}

/// One single-valued RDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub oid: ObjectIdentifier,
    pub kind: StringKind,
    pub value: String,
}

impl NameEntry {
    pub fn printable(oid: ObjectIdentifier, value: &str) -> Self {
        NameEntry { oid, kind: StringKind::Printable, value: value.to_owned() }
    }
    pub fn utf8(oid: ObjectIdentifier, value: &str) -> Self {
        NameEntry { oid, kind: StringKind::Utf8, value: value.to_owned() }
    }
}

/// Upper bounds from RFC 5280 Appendix A (in characters); None when unbounded here.
fn upper_bound(oid: ObjectIdentifier) -> Option<usize> {
    match oid {
        o if o == rfc4519::COUNTRY_NAME => Some(2),
        o if o == rfc4519::COMMON_NAME
            || o == rfc4519::SERIAL_NUMBER
            || o == rfc4519::ORGANIZATION_NAME
            || o == rfc4519::ORGANIZATIONAL_UNIT_NAME =>
        {
            Some(64)
        }
        o if o == rfc4519::LOCALITY_NAME || o == rfc4519::ST => Some(128),
        _ => None,
    }
}

/// Checks emptiness, length and character set; the message names `what`.
pub fn check_entry(entry: &NameEntry, what: &str) -> Result<(), NameError> {
    let what = what.to_owned();
    if entry.value.trim().is_empty() {
        return Err(NameError::Empty { what });
    }
    let chars = entry.value.chars().count();
    if let Some(max) = upper_bound(entry.oid) {
        if chars > max {
            return Err(NameError::TooLong { what, chars, max });
        }
    }
    if entry.oid == rfc4519::COUNTRY_NAME && (chars != 2 || !entry.value.chars().all(|c| c.is_ascii_uppercase())) {
        return Err(NameError::Country { what });
    }
    if entry.kind == StringKind::Printable && PrintableStringRef::new(&entry.value).is_err() {
        return Err(NameError::NotPrintable { what, value: entry.value.clone() });
    }
    if entry.value.chars().any(char::is_control) {
        return Err(NameError::Control { what });
    }
    Ok(())
}

/// Maps a config attribute name (C, O, OU, CN, L, ST, serialNumber or a
/// dotted OID) to its type and string kind. countryName and serialNumber are
/// PrintableString by their X.520 syntax; everything else UTF8String.
pub fn config_attribute(attr: &str) -> Result<(ObjectIdentifier, StringKind), NameError> {
    let oid = match attr {
        "C" => rfc4519::COUNTRY_NAME,
        "O" => rfc4519::ORGANIZATION_NAME,
        "OU" => rfc4519::ORGANIZATIONAL_UNIT_NAME,
        "CN" => rfc4519::COMMON_NAME,
        "L" => rfc4519::LOCALITY_NAME,
        "ST" => rfc4519::ST,
        "serialNumber" => rfc4519::SERIAL_NUMBER,
        dotted => ObjectIdentifier::new(dotted).map_err(|_| NameError::UnknownAttribute(dotted.to_owned()))?,
    };
    let kind = if oid == rfc4519::COUNTRY_NAME || oid == rfc4519::SERIAL_NUMBER {
        StringKind::Printable
    } else {
        StringKind::Utf8
    };
    Ok((oid, kind))
}

pub fn oid_arcs(oid: ObjectIdentifier) -> Vec<u64> {
    oid.arcs().map(u64::from).collect()
}

/// rcgen keeps a DN in a map keyed by `DnType`, so a second attribute of the
/// same type (two OUs, as in the MHLW root) would overwrite the first. The
/// named variant and `CustomDnType` with the same OID are different keys that
/// encode identically, which gives each type two slots.
fn free_dn_type(dn: &DistinguishedName, oid: ObjectIdentifier) -> Option<DnType> {
    let arcs = oid_arcs(oid);
    let named = DnType::from_oid(&arcs);
    let custom = DnType::CustomDnType(arcs);
    let slots = if named == custom { vec![named] } else { vec![named, custom] };
    slots.into_iter().find(|ty| dn.get(ty).is_none())
}

fn push(dn: &mut DistinguishedName, oid: ObjectIdentifier, value: DnValue) -> Result<(), NameError> {
    let ty = free_dn_type(dn, oid).ok_or(NameError::TooOften(oid))?;
    dn.push(ty, value);
    Ok(())
}

pub fn to_rcgen_dn(entries: &[NameEntry]) -> Result<DistinguishedName, NameError> {
    let mut dn = DistinguishedName::new();
    for e in entries {
        let value = match e.kind {
            StringKind::Printable => DnValue::PrintableString(
                PrintableString::try_from(e.value.as_str()).map_err(|err| NameError::Value(err.to_string()))?,
            ),
            StringKind::Utf8 => DnValue::Utf8String(e.value.clone()),
        };
        push(&mut dn, e.oid, value)?;
    }
    Ok(dn)
}

pub fn to_x509_name(entries: &[NameEntry]) -> Result<Name, der::Error> {
    let mut rdns = Vec::with_capacity(entries.len());
    for e in entries {
        let tag = match e.kind {
            StringKind::Printable => {
                PrintableStringRef::new(&e.value)?;
                Tag::PrintableString
            }
            StringKind::Utf8 => Tag::Utf8String,
        };
        let atv = AttributeTypeAndValue { oid: e.oid, value: Any::new(tag, e.value.as_bytes())? };
        rdns.push(RelativeDistinguishedName::from(SetOfVec::try_from(vec![atv])?));
    }
    // Name has no public constructor from an RdnSequence; go through DER.
    Name::from_der(&RdnSequence::from(rdns).to_der()?)
}

/// Converts a certificate's Name into an rcgen DN that re-encodes to the same
/// bytes: same order, same string types. Multi-valued RDNs and values rcgen
/// cannot represent are refused rather than silently changed.
pub fn rcgen_dn_from_x509(name: &Name) -> Result<DistinguishedName, NameError> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter_rdn() {
        let mut atvs = rdn.iter();
        let (Some(atv), None) = (atvs.next(), atvs.next()) else {
            return Err(NameError::MultiValued);
        };
        let bytes = atv.value.value();
        let text = || String::from_utf8(bytes.to_vec()).map_err(|e| NameError::Value(e.to_string()));
        let bad = |e: rcgen::Error| NameError::Attribute { oid: atv.oid, message: e.to_string() };
        let value = match atv.value.tag() {
            Tag::PrintableString => DnValue::PrintableString(PrintableString::try_from(text()?).map_err(bad)?),
            Tag::Utf8String => DnValue::Utf8String(text()?),
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(bad)?),
            Tag::TeletexString => DnValue::TeletexString(TeletexString::try_from(text()?).map_err(bad)?),
            Tag::BmpString => DnValue::BmpString(BmpString::from_utf16be(bytes.to_vec()).map_err(bad)?),
            other => return Err(NameError::UnsupportedType { oid: atv.oid, tag: other }),
        };
        push(&mut dn, atv.oid, value)?;
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<NameEntry> {
        vec![
            NameEntry::printable(rfc4519::COUNTRY_NAME, "JP"),
            NameEntry::utf8(rfc4519::ORGANIZATION_NAME, "医療情報大学病院"),
            NameEntry::utf8(rfc4519::ORGANIZATIONAL_UNIT_NAME, "A"),
            NameEntry::utf8(rfc4519::ORGANIZATIONAL_UNIT_NAME, "B"),
            NameEntry::utf8(rfc4519::COMMON_NAME, "神楽坂\u{3000}三十四"),
            NameEntry::printable(rfc4519::SERIAL_NUMBER, "Test117120"),
        ]
    }

    #[test]
    fn x509_name_keeps_order_and_string_types() {
        let name = to_x509_name(&entries()).unwrap();
        let tags: Vec<Tag> = name.iter().map(|a| a.value.tag()).collect();
        assert_eq!(
            tags,
            [
                Tag::PrintableString,
                Tag::Utf8String,
                Tag::Utf8String,
                Tag::Utf8String,
                Tag::Utf8String,
                Tag::PrintableString
            ]
        );
        assert_eq!(
            name.to_string(),
            "SERIALNUMBER=Test117120,CN=神楽坂\u{3000}三十四,OU=B,OU=A,O=医療情報大学病院,C=JP"
        );
    }

    #[test]
    fn two_attributes_of_one_type_survive_the_rcgen_map() {
        let dn = to_rcgen_dn(&entries()).unwrap();
        assert_eq!(dn.iter().count(), 6);
        let back = rcgen_dn_from_x509(&to_x509_name(&entries()).unwrap()).unwrap();
        assert_eq!(back, dn);
        let mut three = entries();
        three.push(NameEntry::utf8(rfc4519::ORGANIZATIONAL_UNIT_NAME, "C"));
        assert!(to_rcgen_dn(&three).unwrap_err().to_string().contains("2.5.4.11"));
    }

    #[test]
    fn checks_name_the_field() {
        let e = NameEntry::printable(rfc4519::SERIAL_NUMBER, "医師");
        assert!(check_entry(&e, "holder_id").unwrap_err().to_string().contains("holder_id"));
        let e = NameEntry::utf8(rfc4519::COMMON_NAME, &"x".repeat(65));
        assert!(check_entry(&e, "CN").unwrap_err().to_string().contains("64"));
        let e = NameEntry::printable(rfc4519::COUNTRY_NAME, "jp");
        assert!(check_entry(&e, "C").is_err());
        assert!(check_entry(&NameEntry::utf8(rfc4519::COMMON_NAME, "  "), "CN").is_err());
        assert!(check_entry(&NameEntry::utf8(rfc4519::COMMON_NAME, "a\nb"), "CN").is_err());
    }

    #[test]
    fn config_attribute_names() {
        assert_eq!(config_attribute("C").unwrap(), (rfc4519::COUNTRY_NAME, StringKind::Printable));
        assert_eq!(config_attribute("serialNumber").unwrap(), (rfc4519::SERIAL_NUMBER, StringKind::Printable));
        assert_eq!(config_attribute("2.5.4.97").unwrap().1, StringKind::Utf8);
        assert!(config_attribute("Org").unwrap_err().to_string().contains("Org"));
    }
}
