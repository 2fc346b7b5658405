//! Subscriber (physician) certificates: hpki-profile.md §2 (signing) and §3
//! (authentication).

use const_oid::db::{rfc4519, rfc5280};
use der::asn1::Ia5String;
use rcgen::{CertificateParams, CrlDistributionPoint, IsCa, KeyUsagePurpose};
use time::OffsetDateTime;

use crate::ca::{check_period, IssuingCa};
use crate::distribution;
use crate::error::ProfileError;
use crate::extensions;
use crate::names::{self, NameEntry};
use crate::policy::{eku_purpose, Policy};
use crate::serial::serial_number;
use crate::CertKind;

/// The subscriber as the certificate names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Registry-assigned unique id, the subject serialNumber (PrintableString).
    pub holder_id: String,
    pub given_name_latin: String,
    pub family_name_latin: String,
    pub given_name_kanji: String,
    pub family_name_kanji: String,
    /// Medical institution in Latin letters (English or romaji), subject O;
    /// omitted when None.
    pub institution: Option<String>,
    /// The institution's Japanese name, the O of the SAN directoryName
    /// (hpki-profile.md); the Latin name is used there when None.
    pub institution_kanji: Option<String>,
}

/// Full-width space between family and given name, as in real HPKI certificates.
const IDEOGRAPHIC_SPACE: char = '\u{3000}';

impl Subscriber {
    /// subject: C=JP, O=institution, CN="Given Family" (romaji), serialNumber=holder_id.
    pub fn subject_entries(&self) -> Vec<NameEntry> {
        let cn = format!("{} {}", self.given_name_latin.trim(), self.family_name_latin.trim());
        self.entries(self.institution.as_deref(), &cn)
    }

    /// subjectAltName directoryName: the same, with CN = family + U+3000 + given
    /// in kanji, and O = the institution's kanji name where there is one.
    pub fn alt_name_entries(&self) -> Vec<NameEntry> {
        let cn = format!("{}{IDEOGRAPHIC_SPACE}{}", self.family_name_kanji.trim(), self.given_name_kanji.trim());
        let org = self.institution.as_ref().map(|latin| self.institution_kanji.as_deref().unwrap_or(latin));
        self.entries(org, &cn)
    }

    fn entries(&self, org: Option<&str>, cn: &str) -> Vec<NameEntry> {
        let mut out = vec![NameEntry::printable(rfc4519::COUNTRY_NAME, "JP")];
        if let Some(org) = org {
            out.push(NameEntry::utf8(rfc4519::ORGANIZATION_NAME, org.trim()));
        }
        out.push(NameEntry::utf8(rfc4519::COMMON_NAME, cn));
        out.push(NameEntry::printable(rfc4519::SERIAL_NUMBER, self.holder_id.trim()));
        out
    }

    /// Checks every field on its own, so the message can name it.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let invalid = ProfileError::InvalidSubscriber;
        let bad_name = |e: names::NameError| ProfileError::InvalidSubscriber(e.to_string());
        let fields = [
            ("given_name_latin", &self.given_name_latin),
            ("family_name_latin", &self.family_name_latin),
            ("given_name_kanji", &self.given_name_kanji),
            ("family_name_kanji", &self.family_name_kanji),
        ];
        for (field, value) in fields {
            names::check_entry(&NameEntry::utf8(rfc4519::COMMON_NAME, value), field).map_err(bad_name)?;
        }
        names::check_entry(&NameEntry::printable(rfc4519::SERIAL_NUMBER, &self.holder_id), "holder_id")
            .map_err(bad_name)?;
        if let Some(org) = &self.institution {
            names::check_entry(&NameEntry::utf8(rfc4519::ORGANIZATION_NAME, org), "institution").map_err(bad_name)?;
            if let Some(bad) = org.chars().find(|c| !(' '..='~').contains(c)) {
                return Err(invalid(format!(
                    "institution: {bad:?} is not printable ASCII; the subject O holds the Latin (English or romaji) \
                     name, the kanji name goes in institution_kanji"
                )));
            }
        }
        if let Some(org) = &self.institution_kanji {
            if self.institution.is_none() {
                return Err(invalid(
                    "institution_kanji: needs institution too (the Latin name for the subject O)".into(),
                ));
            }
            names::check_entry(&NameEntry::utf8(rfc4519::ORGANIZATION_NAME, org), "institution_kanji")
                .map_err(bad_name)?;
        }
        for (cn, what) in [
            (&self.subject_entries(), "common name \"given family\" in Latin letters"),
            (&self.alt_name_entries(), "kanji common name"),
        ] {
            for entry in cn.iter().filter(|e| e.oid == rfc4519::COMMON_NAME) {
                names::check_entry(entry, what).map_err(bad_name)?;
            }
        }
        Ok(())
    }
}

/// rcgen params of a subscriber certificate. The subjectKeyIdentifier needs
/// the subscriber's key, so [`crate::tbs_certificate`] adds it (see
/// [`crate::add_subject_key_identifier`] when signing with rcgen directly).
/// `policy` was checked when it was built; nothing here parses config text.
pub fn subscriber_params(
    policy: &Policy,
    kind: CertKind,
    who: &Subscriber,
    serial: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: &IssuingCa,
) -> Result<CertificateParams, ProfileError> {
    who.validate()?;
    check_period(not_before, not_after)?;
    if not_after > issuer.not_after() {
        return Err(ProfileError::InvalidValidity(format!(
            "not_after {not_after} is later than the issuing CA's not_after {}",
            issuer.not_after()
        )));
    }

    let mut params = CertificateParams::default();
    params.distinguished_name =
        names::to_rcgen_dn(&who.subject_entries()).map_err(|e| ProfileError::InvalidSubscriber(e.to_string()))?;
    params.serial_number = Some(serial_number(serial)?);
    params.not_before = not_before;
    params.not_after = not_after;
    // No basicConstraints at all, as in the real MEDIS certificate.
    params.is_ca = IsCa::NoCa;
    if policy.authority_key_identifier_issuer_serial {
        params.use_authority_key_identifier_extension = false;
        let aki = extensions::authority_key_identifier_with_issuer_serial(
            issuer.subject_key_identifier(),
            issuer.certificate_der(),
        )?;
        params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER, aki, false));
    } else {
        params.use_authority_key_identifier_extension = true;
    }

    match kind {
        CertKind::Signing => params.key_usages = vec![KeyUsagePurpose::ContentCommitment],
        CertKind::Authentication => {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = policy.authentication_eku.iter().copied().map(eku_purpose).collect();
        }
    }
    let kind_policy = policy.kind(kind);

    // With partitions, the partition's CRL; with deltas, freshestCRL points at
    // the delta CRL of that same CRL (its scope must match the full CRL's).
    let crl_dp = distribution::crl_distribution_url(kind_policy.crl_url.as_str(), serial, policy.crl_partitions);
    if policy.delta_crls {
        let delta = ascii(distribution::freshest_crl_url(&crl_dp))?;
        params.custom_extensions.push(extensions::custom(
            rfc5280::ID_CE_FRESHEST_CRL,
            extensions::freshest_crl(delta)?,
            false,
        ));
    }
    params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![crl_dp] }];

    let alt_name = names::to_x509_name(&who.alt_name_entries())?;
    let san = extensions::subject_alt_name_directory(alt_name)?;
    params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_SUBJECT_ALT_NAME, san, false));

    let cps = policy.cps_uri.as_ref().map(|u| u.ia5().clone());
    let policies = extensions::certificate_policies(kind_policy.policy_oid, cps)?;
    params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_CERTIFICATE_POLICIES, policies, true));

    let sda = policy.hc_role.extension_value().to_vec();
    params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_SUBJECT_DIRECTORY_ATTRIBUTES, sda, false));

    if let Some(url) = &policy.ocsp_url {
        let aia = extensions::authority_info_access_ocsp(url.ia5().clone())?;
        params.custom_extensions.push(extensions::custom(rfc5280::ID_PE_AUTHORITY_INFO_ACCESS, aia, false));
    }
    Ok(params)
}

/// A URL derived from a checked one (a partition's or delta CRL's: ASCII
/// suffixes on an IA5 URL), as an IA5String.
fn ascii(url: String) -> Result<Ia5String, ProfileError> {
    Ia5String::new(&url).map_err(|e| ProfileError::Der(format!("derived URL {url:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test physician with these institution names.
    fn who(latin: Option<&str>, kanji: Option<&str>) -> Subscriber {
        Subscriber {
            institution: latin.map(Into::into),
            institution_kanji: kanji.map(Into::into),
            ..crate::testutil::doctor()
        }
    }

    fn org(entries: &[NameEntry]) -> Option<String> {
        entries.iter().find(|e| e.oid == rfc4519::ORGANIZATION_NAME).map(|e| e.value.clone())
    }

    #[test]
    fn subject_has_the_latin_institution_and_the_san_the_kanji_one() {
        let w = who(Some("MEDIS Hospital"), Some("医療情報大学病院"));
        w.validate().unwrap();
        assert_eq!(org(&w.subject_entries()).as_deref(), Some("MEDIS Hospital"));
        assert_eq!(org(&w.alt_name_entries()).as_deref(), Some("医療情報大学病院"));
        // Without a kanji name the SAN repeats the Latin one; without either, no O.
        assert_eq!(org(&who(Some("MEDIS"), None).alt_name_entries()).as_deref(), Some("MEDIS"));
        assert_eq!(org(&who(None, None).alt_name_entries()), None);
    }

    #[test]
    fn kanji_in_the_latin_field_or_a_kanji_name_alone_is_refused() {
        let e = who(Some("医療情報大学病院"), None).validate().unwrap_err().to_string();
        assert!(e.contains("institution:") && e.contains("institution_kanji"), "{e}");
        let e = who(None, Some("医療情報大学病院")).validate().unwrap_err().to_string();
        assert!(e.contains("institution_kanji: needs institution"), "{e}");
    }
}
