//! DER pieces of an RFC 5280 CertificateList. Entries are written by hand
//! straight into one buffer (no per-entry allocation); the CRL extensions
//! use x509-cert's types.

use der::asn1::{Ia5String, OctetString};
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::pkix::crl::dp::{DistributionPoint, IssuingDistributionPoint};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BaseCrlNumber, CrlNumber, FreshestCrl};
use x509_cert::ext::Extension;

use crate::entry::CrlEntry;
use crate::error::CrlError;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_UTC_TIME: u8 = 0x17;
pub(crate) const TAG_GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT` around crlExtensions.
pub(crate) const TAG_CRL_EXTENSIONS: u8 = 0xa0;

/// Longest header we write: tag, 0x84 and four length octets.
pub(crate) const MAX_HEADER: usize = 6;

pub(crate) mod oid {
    use der::asn1::ObjectIdentifier as Oid;
    // From const-oid's database, under the short names the encoder uses.
    // (x509-cert 0.3.0 gives the IssuingDistributionPoint type a wrong OID;
    // rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT is the right one, 2.5.29.28.)
    pub use const_oid::db::rfc5280::{
        ID_CE_AUTHORITY_KEY_IDENTIFIER as AUTHORITY_KEY_IDENTIFIER, ID_CE_CRL_NUMBER as CRL_NUMBER,
        ID_CE_DELTA_CRL_INDICATOR as DELTA_CRL_INDICATOR, ID_CE_FRESHEST_CRL as FRESHEST_CRL,
        ID_CE_ISSUING_DISTRIBUTION_POINT as ISSUING_DISTRIBUTION_POINT,
    };
    /// id-ce-expiredCertsOnCRL (X.509 2019, 9.6.2.9); const-oid has none.
    pub const EXPIRED_CERTS_ON_CRL: Oid = Oid::new_unwrap("2.5.29.60");
}

/// AlgorithmIdentifier sha256WithRSAEncryption with NULL parameters (RFC 4055).
const SHA256_WITH_RSA: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];
/// AlgorithmIdentifier ecdsa-with-SHA256, parameters absent (RFC 5758).
const ECDSA_WITH_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// The signature algorithm of a CRL, from the signing key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    Sha256WithRsaEncryption,
    EcdsaWithSha256,
}

impl SignatureAlgorithm {
    pub fn of_key(alg: hsm::KeyAlgorithm) -> SignatureAlgorithm {
        match alg {
            hsm::KeyAlgorithm::Rsa { .. } => SignatureAlgorithm::Sha256WithRsaEncryption,
            hsm::KeyAlgorithm::EcdsaP256 => SignatureAlgorithm::EcdsaWithSha256,
        }
    }

    /// The DER AlgorithmIdentifier.
    pub(crate) fn algorithm_identifier(self) -> &'static [u8] {
        match self {
            SignatureAlgorithm::Sha256WithRsaEncryption => SHA256_WITH_RSA,
            SignatureAlgorithm::EcdsaWithSha256 => ECDSA_WITH_SHA256,
        }
    }
}

/// Octets of a DER header for a value of `len` octets.
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=0x7f => 2,
        0x80..=0xff => 3,
        0x100..=0xffff => 4,
        0x1_0000..=0xff_ffff => 5,
        _ => 6,
    }
}

/// Writes tag and length into `out` (at most [`MAX_HEADER`] octets) and
/// returns how many were written. Lengths past 4 GiB are refused.
pub(crate) fn header(tag: u8, len: usize) -> Result<([u8; MAX_HEADER], usize), CrlError> {
    let len32 =
        u32::try_from(len).map_err(|_| CrlError::Encoding(format!("a DER value of {len} octets is too long")))?;
    let mut out = [0u8; MAX_HEADER];
    out[0] = tag;
    let n = header_len(len);
    if n == 2 {
        out[1] = len32 as u8;
    } else {
        let octets = n - 2;
        out[1] = 0x80 | octets as u8;
        let be = len32.to_be_bytes();
        out[2..n].copy_from_slice(&be[4 - octets..]);
    }
    Ok((out, n))
}

pub(crate) fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) -> Result<(), CrlError> {
    let (h, n) = header(tag, content.len())?;
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(content);
    Ok(())
}

/// Appends a Time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 5.1.2.4).
pub(crate) fn push_time(out: &mut Vec<u8>, unix: i64) -> Result<(), CrlError> {
    let t = OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| CrlError::Encoding(format!("time {unix} is out of range")))?;
    push_date_time(out, t)
}

pub(crate) fn push_date_time(out: &mut Vec<u8>, t: OffsetDateTime) -> Result<(), CrlError> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    if !(1950..=9999).contains(&year) {
        return Err(CrlError::Encoding(format!("year {year} cannot be encoded as an X.509 Time")));
    }
    let two = |out: &mut Vec<u8>, v: u8| {
        out.push(b'0' + v / 10);
        out.push(b'0' + v % 10);
    };
    // Checked to be 1950..=9999 above, so these fit in u8 / are four digits.
    let year = year as u16;
    if year < 2050 {
        out.extend_from_slice(&[TAG_UTC_TIME, 13]);
        two(out, (year % 100) as u8);
    } else {
        out.extend_from_slice(&[TAG_GENERALIZED_TIME, 15]);
        two(out, (year / 100) as u8);
        two(out, (year % 100) as u8);
    }
    two(out, u8::from(t.month()));
    two(out, t.day());
    two(out, t.hour());
    two(out, t.minute());
    two(out, t.second());
    out.push(b'Z');
    Ok(())
}

/// `Extensions` holding only reasonCode: SEQUENCE { SEQUENCE { id-ce-cRLReasons,
/// OCTET STRING { ENUMERATED } } }; the last octet is the reason.
const REASON_CODE_PREFIX: [u8; 13] = [0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01];

/// The start of an invalidityDate extension: SEQUENCE { id-ce-invalidityDate
/// (2.5.29.24), OCTET STRING { GeneralizedTime (15 octets) } }; the 15 octets
/// of the time follow.
const INVALIDITY_DATE_PREFIX: [u8; 11] =
    [0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, TAG_GENERALIZED_TIME, 15];

/// Appends a GeneralizedTime's 15 octets YYYYMMDDHHMMSSZ (RFC 5280 5.3.2: the
/// invalidityDate is always GeneralizedTime, in UTC, without fractions).
fn push_generalized_digits(out: &mut Vec<u8>, unix: i64) -> Result<(), CrlError> {
    let t = OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| CrlError::Encoding(format!("time {unix} is out of range")))?;
    let year = t.year();
    if !(1950..=9999).contains(&year) {
        return Err(CrlError::Encoding(format!("year {year} cannot be encoded as a GeneralizedTime here")));
    }
    let digits =
        format!("{year:04}{:02}{:02}{:02}{:02}{:02}Z", u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second());
    out.extend_from_slice(digits.as_bytes());
    Ok(())
}

/// Appends one `revokedCertificates` element. reasonCode is left out for
/// unspecified (RFC 5280 5.3.1: SHOULD be absent instead of unspecified);
/// invalidityDate (non-critical) follows it when the entry has one.
pub(crate) fn push_entry(out: &mut Vec<u8>, entry: &CrlEntry) -> Result<(), CrlError> {
    let serial = entry.user_certificate.magnitude();
    let pad = serial.first().is_some_and(|b| b & 0x80 != 0);
    let serial_len = serial.len() + usize::from(pad);
    let start = out.len();
    // The entry is at most 2 + 22 + 17 + 2 + 12 + 26 octets, so its length fits in one octet.
    out.extend_from_slice(&[TAG_SEQUENCE, 0, TAG_INTEGER, serial_len as u8]);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(serial);
    push_time(out, entry.revocation_date)?;
    let code = entry.reason.code();
    match (code, entry.invalidity_date) {
        (0, None) => {}
        (_, None) => {
            out.extend_from_slice(&REASON_CODE_PREFIX);
            out.push(code);
        }
        (code, Some(at)) => {
            let reason_len = if code == 0 { 0 } else { REASON_CODE_PREFIX.len() - 2 + 1 };
            let invalidity_len = INVALIDITY_DATE_PREFIX.len() + 15;
            // Extensions SEQUENCE: at most 12 + 26 octets of content.
            out.extend_from_slice(&[TAG_SEQUENCE, (reason_len + invalidity_len) as u8]);
            if code != 0 {
                out.extend_from_slice(&REASON_CODE_PREFIX[2..]);
                out.push(code);
            }
            out.extend_from_slice(&INVALIDITY_DATE_PREFIX);
            push_generalized_digits(out, at)?;
        }
    }
    out[start + 1] = (out.len() - start - 2) as u8;
    Ok(())
}

fn uri(url: &str) -> Result<GeneralName, CrlError> {
    let ia5 =
        Ia5String::new(url).map_err(|_| CrlError::Config(format!("CRL URL {url:?} must be ASCII (IA5String)")))?;
    Ok(GeneralName::UniformResourceIdentifier(ia5))
}

fn extension(extn_id: der::asn1::ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Extension, CrlError> {
    Ok(Extension { extn_id, critical, extn_value: OctetString::new(value.to_der()?)? })
}

pub(crate) fn authority_key_identifier(key_id: &[u8]) -> Result<Extension, CrlError> {
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(key_id)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    extension(oid::AUTHORITY_KEY_IDENTIFIER, false, &aki)
}

pub(crate) fn crl_number(n: u64) -> Result<Extension, CrlError> {
    extension(oid::CRL_NUMBER, false, &CrlNumber(der::asn1::Uint::new(&n.to_be_bytes())?))
}

/// deltaCRLIndicator (critical): the cRLNumber of the base CRL.
pub(crate) fn delta_crl_indicator(base: u64) -> Result<Extension, CrlError> {
    let value = BaseCrlNumber(der::asn1::Uint::new(&base.to_be_bytes())?);
    extension(oid::DELTA_CRL_INDICATOR, true, &value)
}

/// What an issuingDistributionPoint says the CRL covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlyContains {
    /// onlyContainsUserCerts TRUE (partitions of an issuing CA's CRL).
    UserCerts,
    /// onlyContainsCACerts TRUE (the root's ARL).
    CaCerts,
}

/// issuingDistributionPoint (critical) with fullName = `url`, or with no
/// distributionPoint when `url` is empty.
pub(crate) fn issuing_distribution_point(url: &str, only: OnlyContains) -> Result<Extension, CrlError> {
    let distribution_point = match url {
        "" => None,
        url => Some(DistributionPointName::FullName(vec![uri(url)?])),
    };
    let idp = IssuingDistributionPoint {
        distribution_point,
        only_contains_user_certs: only == OnlyContains::UserCerts,
        only_contains_ca_certs: only == OnlyContains::CaCerts,
        only_some_reasons: None,
        indirect_crl: false,
        only_contains_attribute_certs: false,
    };
    extension(oid::ISSUING_DISTRIBUTION_POINT, true, &idp)
}

/// ExpiredCertsOnCRL ::= GeneralizedTime (non-critical): certificates that
/// expired at or after `since` stay listed once revoked.
pub(crate) fn expired_certs_on_crl(since: OffsetDateTime) -> Result<Extension, CrlError> {
    let secs = u64::try_from(since.unix_timestamp())
        .map_err(|_| CrlError::Encoding(format!("ExpiredCertsOnCRL time {since} is before 1970")))?;
    let time = der::asn1::GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))?;
    extension(oid::EXPIRED_CERTS_ON_CRL, false, &time)
}

/// freshestCRL (non-critical) pointing at the delta CRL.
pub(crate) fn freshest_crl(url: &str) -> Result<Extension, CrlError> {
    let point = DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
        reasons: None,
        crl_issuer: None,
    };
    extension(oid::FRESHEST_CRL, false, &FreshestCrl(vec![point]))
}

/// A DER TLV split off the front of `input`: (tag, whole TLV, rest).
fn split_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CrlError> {
    let bad = || CrlError::Encoding("truncated or malformed DER".into());
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let end = head.checked_add(len).ok_or_else(bad)?;
    if input.len() < end {
        return Err(bad());
    }
    Ok((tag, &input[..end], &input[end..]))
}

fn content(tlv: &[u8]) -> Result<&[u8], CrlError> {
    let (_, whole, _) = split_tlv(tlv)?;
    let head = if whole.get(1).is_some_and(|b| *b >= 0x80) { 2 + usize::from(whole[1] & 0x7f) } else { 2 };
    Ok(&whole[head..])
}

fn time_of(tlv: &[u8]) -> Result<OffsetDateTime, CrlError> {
    let t = x509_cert::time::Time::from_der(tlv)?;
    let secs =
        i64::try_from(t.to_unix_duration().as_secs()).map_err(|_| CrlError::Encoding("time out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| CrlError::Encoding("time out of range".into()))
}

/// thisUpdate and nextUpdate of a DER CertificateList, read without
/// walking its entries (cheap even for a million of them).
pub(crate) fn crl_validity(der: &[u8]) -> Result<(OffsetDateTime, Option<OffsetDateTime>), CrlError> {
    let not_crl = || CrlError::Encoding("not a DER CertificateList".into());
    let (tag, _, _) = split_tlv(der)?;
    if tag != TAG_SEQUENCE {
        return Err(not_crl());
    }
    let (tag, tbs, _) = split_tlv(content(der)?)?;
    if tag != TAG_SEQUENCE {
        return Err(not_crl());
    }
    let mut rest = content(tbs)?;
    if rest.first() == Some(&TAG_INTEGER) {
        rest = split_tlv(rest)?.2; // version
    }
    rest = split_tlv(rest)?.2; // signature
    rest = split_tlv(rest)?.2; // issuer
    let (_, this_tlv, rest) = split_tlv(rest)?;
    let this_update = time_of(this_tlv)?;
    let next_update = match rest.first() {
        Some(&TAG_UTC_TIME) | Some(&TAG_GENERALIZED_TIME) => Some(time_of(split_tlv(rest)?.1)?),
        _ => None,
    };
    Ok((this_update, next_update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::SerialNumber;
    use domain::RevocationReason;

    /// The entry as [`push_entry`] writes it, read back by x509-cert.
    fn written_and_parsed(entry: &CrlEntry) -> x509_cert::crl::RevokedCert<x509_cert::certificate::Rfc5280> {
        let mut out = Vec::new();
        push_entry(&mut out, entry).unwrap();
        x509_cert::crl::RevokedCert::from_der(&out).unwrap()
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        for (len, expected) in [
            (0usize, vec![0x30, 0x00]),
            (0x7f, vec![0x30, 0x7f]),
            (0x80, vec![0x30, 0x81, 0x80]),
            (0x1234, vec![0x30, 0x82, 0x12, 0x34]),
            (0x12_3456, vec![0x30, 0x83, 0x12, 0x34, 0x56]),
            (0x1234_5678, vec![0x30, 0x84, 0x12, 0x34, 0x56, 0x78]),
        ] {
            let (h, n) = header(0x30, len).unwrap();
            assert_eq!(&h[..n], expected.as_slice(), "{len:#x}");
            assert_eq!(header_len(len), n);
        }
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let mut out = Vec::new();
        push_time(&mut out, 1_700_000_000).unwrap(); // 2023-11-14 22:13:20Z
        assert_eq!(out, b"\x17\x0d231114221320Z");
        out.clear();
        push_time(&mut out, 2_524_608_000).unwrap(); // 2050-01-01 00:00:00Z
        assert_eq!(out, b"\x18\x0f20500101000000Z");
        out.clear();
        push_time(&mut out, 2_524_607_999).unwrap(); // 2049-12-31 23:59:59Z
        assert_eq!(out, b"\x17\x0d491231235959Z");
        assert!(push_time(&mut out, i64::MAX).is_err());
        assert!(push_time(&mut out, -1_000_000_000_000).is_err());
    }

    #[test]
    fn entries_match_x509_cert_decoding() {
        let cases = [
            (&[0x01][..], RevocationReason::KeyCompromise),
            (&[0x80, 0x01][..], RevocationReason::Superseded),
            (&[0x7f; 20][..], RevocationReason::Unspecified),
            (&[0xff; 19][..], RevocationReason::PrivilegeWithdrawn),
        ];
        for (serial, reason) in cases {
            let entry = CrlEntry {
                user_certificate: SerialNumber::from_bytes(serial).unwrap(),
                revocation_date: 1_700_000_000,
                reason,
                invalidity_date: None,
            };
            let parsed = written_and_parsed(&entry);
            let magnitude: Vec<u8> = {
                let b = parsed.serial_number.as_bytes();
                b.iter().skip_while(|x| **x == 0).copied().collect()
            };
            assert_eq!(magnitude, serial);
            assert_eq!(parsed.revocation_date.to_unix_duration().as_secs(), 1_700_000_000);
            match reason {
                RevocationReason::Unspecified => assert!(parsed.crl_entry_extensions.is_none()),
                _ => {
                    let exts = parsed.crl_entry_extensions.unwrap();
                    assert_eq!(exts.len(), 1);
                    assert_eq!(exts[0].extn_id.to_string(), "2.5.29.21");
                    assert!(!exts[0].critical);
                    let r = x509_cert::ext::pkix::CrlReason::from_der(exts[0].extn_value.as_bytes()).unwrap();
                    assert_eq!(r as u32, u32::from(reason.code()));
                }
            }
        }
    }

    #[test]
    fn an_invalidity_date_is_a_non_critical_generalized_time_after_the_reason() {
        for reason in [RevocationReason::KeyCompromise, RevocationReason::Unspecified] {
            let entry = CrlEntry {
                user_certificate: SerialNumber::from_bytes(&[0x80, 0x01]).unwrap(),
                revocation_date: 1_700_000_000,
                reason,
                invalidity_date: Some(1_699_000_000),
            };
            let parsed = written_and_parsed(&entry);
            assert_eq!(parsed.revocation_date.to_unix_duration().as_secs(), 1_700_000_000, "revocationDate unchanged");
            let exts = parsed.crl_entry_extensions.unwrap();
            let ids: Vec<String> = exts.iter().map(|e| e.extn_id.to_string()).collect();
            let expected: &[&str] =
                if reason == RevocationReason::Unspecified { &["2.5.29.24"] } else { &["2.5.29.21", "2.5.29.24"] };
            assert_eq!(ids, expected);
            let inv = exts.last().unwrap();
            assert!(!inv.critical);
            let t = der::asn1::GeneralizedTime::from_der(inv.extn_value.as_bytes()).unwrap();
            assert_eq!(t.to_unix_duration().as_secs(), 1_699_000_000);
        }
        // Years past 2049 are GeneralizedTime too, with four digits.
        let mut digits = Vec::new();
        push_generalized_digits(&mut digits, 2_556_144_000).unwrap();
        assert_eq!(digits, b"20510101000000Z");
    }

    #[test]
    fn extensions_have_rfc_5280_oids_and_criticality() {
        let idp = issuing_distribution_point("http://h/p1.crl", OnlyContains::UserCerts).unwrap();
        assert_eq!(idp.extn_id.to_string(), "2.5.29.28");
        assert!(idp.critical);
        let parsed = IssuingDistributionPoint::from_der(idp.extn_value.as_bytes()).unwrap();
        assert!(parsed.only_contains_user_certs && !parsed.only_contains_ca_certs);
        let delta = delta_crl_indicator(7).unwrap();
        assert!(delta.critical);
        assert_eq!(delta.extn_value.as_bytes(), &[0x02, 0x01, 0x07]);
        assert_eq!(crl_number(0).unwrap().extn_value.as_bytes(), &[0x02, 0x01, 0x00]);
        assert_eq!(crl_number(128).unwrap().extn_value.as_bytes(), &[0x02, 0x02, 0x00, 0x80]);
        assert!(!freshest_crl("http://h/d.crl").unwrap().critical);
        assert!(matches!(freshest_crl("http://ü/"), Err(CrlError::Config(_))));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [&[][..], &[0x30], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x05, 0x30], &[0x04, 0x00]] {
            assert!(crl_validity(bad).is_err(), "{bad:?}");
        }
    }
}
