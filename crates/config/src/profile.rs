//! `[profile]`: the subscriber certificate profile.

use ::profile::policy::parse_eku;
use ::profile::{CertUrl, HcRole, KindPolicy, Policy};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The subscriber certificate profile (hpki-profile.md sections 2 to 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    pub signing_policy_oid: String,
    pub authentication_policy_oid: String,
    /// CPS URI qualifier on both policies; empty for none.
    pub cps_uri: String,
    /// Full CRL of each issuing CA. With partitions, partition `p` is served at
    /// this URL with `-p{p}` before the extension (see `partition_url`), and with
    /// deltas the delta CRL at `-delta` (see `delta_url`).
    pub signing_crl_url: String,
    pub authentication_crl_url: String,
    /// Number of CRL partitions per issuing CA; 0 = one full CRL.
    pub crl_partitions: u32,
    /// Publish delta CRLs and point at them with freshestCRL.
    pub delta_crls: bool,
    /// AIA OCSP URL; real HPKI CAs publish CRLs only, so it can be turned off.
    pub ocsp_enabled: bool,
    pub ocsp_url: String,
    /// ExtendedKeyUsage of the authentication certificate: "clientAuth",
    /// "emailProtection" or dotted OIDs; empty for no EKU.
    pub authentication_eku: Vec<String>,
    /// ISO 17090 hcRole carried in subjectDirectoryAttributes.
    pub hc_role: String,
    /// Validity in years (00:00 JST on the day of issue to 23:59:59 JST this many years later).
    pub validity_years: u32,
    /// Prefix of registry-assigned holder ids (subject serialNumber).
    pub holder_id_prefix: String,
    /// Smallest accepted RSA modulus in bits.
    pub min_rsa_bits: u32,
    /// Maximum age of the ID photo and the resident record, in months.
    pub document_max_age_months: u32,
    /// authorityKeyIdentifier of card certificates also names the issuing CA
    /// certificate's issuer and serial (authorityCertIssuer,
    /// authorityCertSerialNumber), as the real MEDIS certificates do; false:
    /// keyIdentifier only (RFC 5280's recommendation).
    pub authority_key_identifier_issuer_serial: bool,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            signing_policy_oid: "1.2.392.100495.1.5.1.1.0.1".into(),
            authentication_policy_oid: "1.2.392.100495.1.5.1.2.0.1".into(),
            cps_uri: "http://127.0.0.1:8081/repository/".into(),
            signing_crl_url: "http://127.0.0.1:8081/crl/sign.crl".into(),
            authentication_crl_url: "http://127.0.0.1:8081/crl/auth.crl".into(),
            crl_partitions: 0,
            delta_crls: false,
            ocsp_enabled: true,
            ocsp_url: "http://127.0.0.1:8082/ocsp".into(),
            authentication_eku: vec!["clientAuth".into()],
            hc_role: "Medical Doctor".into(),
            validity_years: 5,
            holder_id_prefix: "JMA".into(),
            min_rsa_bits: 2048,
            document_max_age_months: 6,
            authority_key_identifier_issuer_serial: false,
        }
    }
}

impl ProfileConfig {
    /// The typed policy issuance signs with: built once at start, every value
    /// checked, the error naming its key.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let keyed = |key: &'static str| move |e| ConfigError::profile(key, e);
        let kind = |oid: (&str, &'static str), crl: (&str, &'static str)| -> Result<KindPolicy, ConfigError> {
            Ok(KindPolicy {
                policy_oid: KindPolicy::parse_policy_oid(oid.0, oid.1).map_err(keyed(oid.1))?,
                crl_url: KindPolicy::parse_crl_url(crl.0, crl.1).map_err(keyed(crl.1))?,
            })
        };
        let ocsp_url = match self.ocsp_enabled {
            true => Some(CertUrl::parse(&self.ocsp_url, "profile.ocsp_url").map_err(keyed("profile.ocsp_url"))?),
            false => None,
        };
        let eku_key = "profile.authentication_eku";
        Ok(Policy {
            signing: kind(
                (&self.signing_policy_oid, "profile.signing_policy_oid"),
                (&self.signing_crl_url, "profile.signing_crl_url"),
            )?,
            authentication: kind(
                (&self.authentication_policy_oid, "profile.authentication_policy_oid"),
                (&self.authentication_crl_url, "profile.authentication_crl_url"),
            )?,
            cps_uri: CertUrl::optional(&self.cps_uri, "profile.cps_uri").map_err(keyed("profile.cps_uri"))?,
            crl_partitions: self.crl_partitions,
            delta_crls: self.delta_crls,
            ocsp_url,
            authentication_eku: self
                .authentication_eku
                .iter()
                .map(|name| parse_eku(name, eku_key).map_err(keyed(eku_key)))
                .collect::<Result<_, _>>()?,
            hc_role: HcRole::new(&self.hc_role).map_err(keyed("profile.hc_role"))?,
            validity_years: self.validity_years,
            min_rsa_bits: self.min_rsa_bits,
            authority_key_identifier_issuer_serial: self.authority_key_identifier_issuer_serial,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{delta_url, partition_url};

    #[test]
    fn partition_and_delta_urls() {
        assert_eq!(partition_url("http://h:1/crl/sign.crl", 3), "http://h:1/crl/sign-p3.crl");
        assert_eq!(delta_url("http://h:1/crl/sign.crl"), "http://h:1/crl/sign-delta.crl");
        assert_eq!(delta_url("http://h.example/crl/sign"), "http://h.example/crl/sign-delta");
    }
}
