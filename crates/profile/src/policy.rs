//! The certificate policy as typed values, checked once when the CA starts
//! (the config builds it), so that issuing a certificate parses nothing: OIDs
//! are OIDs, URLs are IA5 URLs, EKU names are OIDs, the hcRole is encoded.
//! Constructors take text and the config key it comes from, and every error
//! names that key.

use const_oid::db::rfc5280;
use der::asn1::Ia5String;
pub use der::asn1::ObjectIdentifier;
use rcgen::ExtendedKeyUsagePurpose;

use crate::error::ProfileError;
use crate::names::{self, NameEntry};
use crate::{extensions, hcrole, CertKind};

/// A URL that certificates carry (CRL distribution point, AIA OCSP, CPS):
/// ASCII, with a scheme, without white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUrl(Ia5String);

impl CertUrl {
    /// `value` (trimmed) as a URL; the error names `key`.
    pub fn parse(value: &str, key: &str) -> Result<CertUrl, ProfileError> {
        extensions::parse_url(value.trim(), key).map(CertUrl)
    }

    /// An optional URL: empty (after trimming) is none.
    pub fn optional(value: &str, key: &str) -> Result<Option<CertUrl>, ProfileError> {
        match value.trim() {
            "" => Ok(None),
            url => Self::parse(url, key).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub(crate) fn ia5(&self) -> &Ia5String {
        &self.0
    }
}

impl std::fmt::Display for CertUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ExtendedKeyUsage purpose from its config name ("clientAuth",
/// "emailProtection") or a dotted OID.
pub fn parse_eku(name: &str, key: &str) -> Result<ObjectIdentifier, ProfileError> {
    match name.trim() {
        "clientAuth" => Ok(rfc5280::ID_KP_CLIENT_AUTH),
        "emailProtection" => Ok(rfc5280::ID_KP_EMAIL_PROTECTION),
        dotted => extensions::parse_oid(dotted, key),
    }
}

/// The rcgen purpose of an EKU OID (clientAuth by name, others by OID: the
/// same DER either way).
pub(crate) fn eku_purpose(oid: ObjectIdentifier) -> ExtendedKeyUsagePurpose {
    if oid == rfc5280::ID_KP_CLIENT_AUTH {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::Other(names::oid_arcs(oid))
    }
}

/// ISO 17090 hcRole text, with its subjectDirectoryAttributes value encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcRole {
    text: String,
    extension_value: Vec<u8>,
}

impl HcRole {
    /// Refuses an empty role ("profile.hc_role is empty").
    pub fn new(text: &str) -> Result<HcRole, ProfileError> {
        let extension_value = hcrole::subject_directory_attributes(text)?;
        Ok(HcRole { text: text.to_owned(), extension_value })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// DER of the subjectDirectoryAttributes extension value.
    pub fn extension_value(&self) -> &[u8] {
        &self.extension_value
    }
}

/// What differs between the signing and the authentication certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindPolicy {
    /// certificatePolicies (critical).
    pub policy_oid: ObjectIdentifier,
    /// The issuing CA's full CRL; with partitions, partition `p` is at this
    /// URL with `-p{p}` before the extension, and the delta CRL at `-delta`.
    pub crl_url: CertUrl,
}

impl KindPolicy {
    /// The certificatePolicies OID; required.
    pub fn parse_policy_oid(value: &str, key: &str) -> Result<ObjectIdentifier, ProfileError> {
        if value.trim().is_empty() {
            return Err(ProfileError::InvalidConfig(format!("{key} is empty")));
        }
        extensions::parse_oid(value, key)
    }

    /// The CRL URL; required: HPKI certificates rely on CRLs.
    pub fn parse_crl_url(value: &str, key: &str) -> Result<CertUrl, ProfileError> {
        if value.trim().is_empty() {
            return Err(ProfileError::InvalidConfig(format!("{key} is empty; HPKI certificates rely on CRLs")));
        }
        CertUrl::parse(value, key)
    }
}

/// The subscriber certificate profile (hpki-profile.md §2–§4), as issuance uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub signing: KindPolicy,
    pub authentication: KindPolicy,
    /// CPS URI qualifier on both policies.
    pub cps_uri: Option<CertUrl>,
    /// CRL partitions per issuing CA; 0: one full CRL.
    pub crl_partitions: u32,
    /// freshestCRL points at the delta CRL.
    pub delta_crls: bool,
    /// AIA OCSP; none: no authorityInfoAccess.
    pub ocsp_url: Option<CertUrl>,
    /// ExtendedKeyUsage of the authentication certificate; empty: no EKU.
    pub authentication_eku: Vec<ObjectIdentifier>,
    pub hc_role: HcRole,
    /// Validity in years (00:00 JST on the day of issue to 23:59:59 JST that many years later).
    pub validity_years: u32,
    /// Smallest accepted RSA modulus in bits.
    pub min_rsa_bits: u32,
    /// authorityKeyIdentifier also names the issuing CA certificate's issuer and serial.
    pub authority_key_identifier_issuer_serial: bool,
}

impl Policy {
    pub fn kind(&self, kind: CertKind) -> &KindPolicy {
        match kind {
            CertKind::Signing => &self.signing,
            CertKind::Authentication => &self.authentication,
        }
    }
}

/// A CA certificate's content at the key ceremony: subject, policy and CRL
/// distribution point. Validity and keys are the ceremony's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaProfile {
    /// The CA's key label, which messages name it by.
    pub label: String,
    pub subject: Vec<NameEntry>,
    /// certificatePolicies (critical, as on the real MEDIS issuing CAs).
    pub policy_oid: Option<ObjectIdentifier>,
    /// CRL distribution point (the root's ARL); never on the root itself.
    pub crl_url: Option<CertUrl>,
}

impl CaProfile {
    /// `subject` is (attribute, value) in order; attributes are C, O, OU, CN,
    /// L, ST, serialNumber or dotted OIDs. An empty `policy_oid` or `crl_url`
    /// is none.
    pub fn new<'a>(
        label: &str,
        subject: impl IntoIterator<Item = (&'a str, &'a str)>,
        policy_oid: &str,
        crl_url: &str,
    ) -> Result<CaProfile, ProfileError> {
        let mut entries = Vec::new();
        for (attr, value) in subject {
            let what = format!("CA {label:?} subject attribute {attr}");
            let (oid, kind) =
                names::config_attribute(attr).map_err(|e| ProfileError::InvalidConfig(format!("{what}: {e}")))?;
            let entry = NameEntry { oid, kind, value: value.to_owned() };
            names::check_entry(&entry, &what).map_err(|e| ProfileError::InvalidConfig(e.to_string()))?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(ProfileError::InvalidConfig(format!("CA {label:?} subject is empty")));
        }
        // rcgen's name must be buildable too; checked here rather than at signing.
        names::to_rcgen_dn(&entries).map_err(|e| ProfileError::InvalidConfig(format!("CA {label:?} subject: {e}")))?;
        let policy_oid = match policy_oid.trim() {
            "" => None,
            oid => Some(extensions::parse_oid(oid, &format!("CA {label:?} policy_oid"))?),
        };
        let crl_url = CertUrl::optional(crl_url, &format!("CA {label:?} crl_url"))?;
        Ok(CaProfile { label: label.to_owned(), subject: entries, policy_oid, crl_url })
    }
}
