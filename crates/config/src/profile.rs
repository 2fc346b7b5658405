//! `[profile]`: the subscriber certificate profile.

use serde::{Deserialize, Serialize};

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

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-p3.crl`.
pub fn partition_url(base: &str, partition: u32) -> String {
    with_suffix(base, &format!("-p{partition}"))
}

/// `http://h/crl/sign.crl` -> `http://h/crl/sign-delta.crl`.
pub fn delta_url(base: &str) -> String {
    with_suffix(base, "-delta")
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let file_start = base.rfind('/').map_or(0, |i| i + 1);
    match base[file_start..].rfind('.') {
        Some(dot) => format!("{}{suffix}{}", &base[..file_start + dot], &base[file_start + dot..]),
        None => format!("{base}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_and_delta_urls() {
        assert_eq!(partition_url("http://h:1/crl/sign.crl", 3), "http://h:1/crl/sign-p3.crl");
        assert_eq!(delta_url("http://h:1/crl/sign.crl"), "http://h:1/crl/sign-delta.crl");
        assert_eq!(delta_url("http://h.example/crl/sign"), "http://h.example/crl/sign-delta");
    }
}
