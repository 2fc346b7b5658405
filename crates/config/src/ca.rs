//! `[ca]`, `[ca.root]`, `[ca.signing]`, `[ca.authentication]`: the key ceremony.

use std::path::PathBuf;

use ::profile::CaProfile;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ConfigError;

/// Key algorithm of a CA key in the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
}

/// The key ceremony: CA keys, names and validity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    pub key_algorithm: KeyAlgorithm,
    /// Folder for the CA certificates (PEM), relative to `state_dir`.
    pub cert_dir: PathBuf,
    #[serde(deserialize_with = "root_entity")]
    pub root: CaEntity,
    #[serde(deserialize_with = "signing_entity")]
    pub signing: CaEntity,
    #[serde(deserialize_with = "authentication_entity")]
    pub authentication: CaEntity,
}

impl Default for CaConfig {
    fn default() -> Self {
        let o = |v: &str| DnAttribute { attr: "O".into(), value: v.into() };
        let ou = |v: &str| DnAttribute { attr: "OU".into(), value: v.into() };
        let cn = |v: &str| DnAttribute { attr: "CN".into(), value: v.into() };
        let c = DnAttribute { attr: "C".into(), value: "JP".into() };
        CaConfig {
            key_algorithm: KeyAlgorithm::Rsa2048,
            cert_dir: PathBuf::from("ca"),
            root: CaEntity {
                key_label: "root-ca".into(),
                subject: vec![c.clone(), o("Japan Medical Association"), ou("JMA HPKI Root CA")],
                validity_years: 30,
                policy_oid: String::new(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "root-ca.pem".into(),
            },
            signing: CaEntity {
                key_label: "sign-ca".into(),
                subject: vec![
                    c.clone(),
                    o("Japan Medical Association"),
                    ou("JMA HPKI CA"),
                    cn("HPKI-01-JMACASignCA-forNonRepudiation"),
                ],
                validity_years: 20,
                policy_oid: "1.2.392.100495.1.5.1.1.3.1".into(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "sign-ca.pem".into(),
            },
            authentication: CaEntity {
                key_label: "auth-ca".into(),
                subject: vec![
                    c,
                    o("Japan Medical Association"),
                    ou("JMA HPKI CA"),
                    cn("HPKI-01-JMACAAuthCA-forAuthentication-forIndividual"),
                ],
                validity_years: 20,
                policy_oid: "1.2.392.100495.1.5.1.2.3.1".into(),
                crl_url: "http://127.0.0.1:8081/crl/arl.crl".into(),
                file_name: "auth-ca.pem".into(),
            },
        }
    }
}

/// The three CAs' certificate content, typed.
#[derive(Debug, Clone)]
pub struct CaProfiles {
    pub root: CaProfile,
    pub signing: CaProfile,
    pub authentication: CaProfile,
}

impl CaConfig {
    /// What the ceremony puts in the CA certificates, checked at start; the
    /// error names the `[ca.*]` table.
    pub fn profiles(&self) -> Result<CaProfiles, ConfigError> {
        Ok(CaProfiles {
            // The root certificate carries no CRL distribution point: its
            // crl_url is not used, so not checked either.
            root: self.root.profile("ca.root", false)?,
            signing: self.signing.profile("ca.signing", true)?,
            authentication: self.authentication.profile("ca.authentication", true)?,
        })
    }
}

impl CaEntity {
    fn profile(&self, key: &str, with_crl_url: bool) -> Result<CaProfile, ConfigError> {
        let subject = self.subject.iter().map(|a| (a.attr.as_str(), a.value.as_str()));
        let crl_url = if with_crl_url { self.crl_url.as_str() } else { "" };
        CaProfile::new(&self.key_label, subject, &self.policy_oid, crl_url).map_err(|e| ConfigError::profile(key, e))
    }
}

/// One CA of the hierarchy. In the file each `[ca.*]` table may give any
/// subset of these keys; the others keep that CA's default.
#[derive(Debug, Clone, Serialize)]
pub struct CaEntity {
    /// CKA_LABEL of the key pair in the token.
    pub key_label: String,
    /// Subject DN in order, e.g. `[{attr="C", value="JP"}, {attr="O", value="..."}]`.
    pub subject: Vec<DnAttribute>,
    pub validity_years: u32,
    /// certificatePolicies OID of the CA certificate (critical, as in HPKI); empty for none.
    pub policy_oid: String,
    /// CRL distribution point of the CA certificate (the root's ARL); empty for
    /// none; absent: `{public.crl_base_url}/crl/arl.crl`.
    pub crl_url: String,
    /// Certificate file name in `cert_dir`.
    pub file_name: String,
}

/// A `[ca.*]` table as written: every key optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaEntityPatch {
    key_label: Option<String>,
    subject: Option<Vec<DnAttribute>>,
    validity_years: Option<u32>,
    policy_oid: Option<String>,
    crl_url: Option<String>,
    file_name: Option<String>,
}

impl CaEntityPatch {
    fn over(self, d: CaEntity) -> CaEntity {
        CaEntity {
            key_label: self.key_label.unwrap_or(d.key_label),
            subject: self.subject.unwrap_or(d.subject),
            validity_years: self.validity_years.unwrap_or(d.validity_years),
            policy_oid: self.policy_oid.unwrap_or(d.policy_oid),
            crl_url: self.crl_url.unwrap_or(d.crl_url),
            file_name: self.file_name.unwrap_or(d.file_name),
        }
    }
}

fn root_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().root))
}

fn signing_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().signing))
}

fn authentication_entity<'de, D: Deserializer<'de>>(d: D) -> Result<CaEntity, D::Error> {
    Ok(CaEntityPatch::deserialize(d)?.over(CaConfig::default().authentication))
}

/// One attribute of a DN. `attr` is C, O, OU, CN, serialNumber or a dotted OID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnAttribute {
    pub attr: String,
    pub value: String,
}
