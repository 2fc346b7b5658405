//! The root CA's ARL (revocation list for CA certificates), made by the
//! operator CLI: signed by the root key, critical issuingDistributionPoint
//! with onlyContainsCACerts and the ARL URL. Its state (number, revoked CA
//! serials) is kept in `cert_dir/arl.json`; the DER goes to `out_dir` where
//! the HTTP distribution point picks it up.

use std::path::PathBuf;

use der::Decode;
use domain::RevocationReason;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Duration;

use crate::builder::{build_crl, IssuingDistributionPoint};
use crate::entry::{CrlEntry, SerialNumber};
use crate::error::CrlError;
use crate::issuer::CaKey;
use crate::published::{file_name, write_atomically};
use crate::{timefmt, OnlyContains};

/// A revoked CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCa {
    /// Lower-case hex, minimal.
    pub serial: String,
    pub revoked_at: i64,
    /// By its RFC 5280 name ("cACompromise"), as `arl.json` has always held it.
    #[serde(with = "domain::reason::rfc5280_name")]
    pub reason: RevocationReason,
}

/// `arl.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArlState {
    /// The last cRLNumber used.
    pub crl_number: u64,
    pub revoked: Vec<RevokedCa>,
}

/// What `publish_arl` did.
#[derive(Debug, Clone)]
pub struct PublishedArl {
    pub crl_number: u64,
    /// RFC 3339.
    pub this_update: String,
    pub next_update: String,
    pub url: String,
    /// Where the DER was written.
    pub path: PathBuf,
    pub entries: u64,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// False when the requested serial was already listed (the first time and reason stand).
    pub newly_revoked: bool,
    /// The ARL's entry for the requested serial (new, or the one already
    /// listed), so callers can record what stands; None without a request.
    pub revoked: Option<RevokedCa>,
    pub der: Vec<u8>,
}

fn load_state(path: &std::path::Path) -> Result<ArlState, CrlError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CrlError::FailedPrecondition(format!("{} is not valid ARL state: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ArlState::default()),
        Err(e) => Err(CrlError::io(path)(e)),
    }
}

/// Every distinct URL at which an issuing CA certificate names the ARL
/// (`[ca.signing]` first, then `[ca.authentication]`), empty ones left out.
pub fn arl_urls(cfg: &config::Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in [&cfg.ca.signing.crl_url, &cfg.ca.authentication.crl_url] {
        let url = url.trim();
        if !url.is_empty() && !out.iter().any(|u| u == url) {
            out.push(url.to_owned());
        }
    }
    out
}

/// Publishes a new ARL, first adding `revoke` (serial hex, reason) when given.
/// Revoking a listed serial again changes nothing but the ARL's number and
/// dates. Blocking (HSM, files). Run one at a time.
pub fn publish_arl(
    cfg: &config::Config,
    hsm: &hsm::Hsm,
    revoke: Option<(&str, RevocationReason)>,
) -> Result<PublishedArl, CrlError> {
    let url = cfg.ca.signing.crl_url.trim();
    if url.is_empty() {
        return Err(CrlError::Config("ca.signing.crl_url (the ARL URL) is empty".into()));
    }
    let out_name = file_name(url)?;
    if cfg.crl.arl_validity_days == 0 {
        return Err(CrlError::Config("crl.arl_validity_days must be at least 1".into()));
    }
    let cert_dir = cfg.cert_dir();
    let root = CaKey::load(hsm, &cert_dir.join(&cfg.ca.root.file_name), &cfg.ca.root.key_label)?;
    let state_path = cert_dir.join("arl.json");
    let mut state = load_state(&state_path)?;
    let now = timefmt::now();

    let mut newly_revoked = false;
    let mut requested = None;
    if let Some((serial_hex, reason)) = revoke {
        let serial = SerialNumber::from_hex(serial_hex.trim())?;
        let root_cert = x509_cert::Certificate::from_der(root.ca.certificate_der())?;
        let root_serial = SerialNumber::from_bytes(root_cert.tbs_certificate().serial_number().as_bytes())?;
        if serial == root_serial {
            return Err(CrlError::InvalidArgument(
                "that is the root certificate's own serial; the ARL lists CA certificates under it".into(),
            ));
        }
        let hex = serial.to_hex();
        let listed = match state.revoked.iter().find(|r| r.serial == hex) {
            Some(r) => r.clone(),
            None => {
                let r = RevokedCa { serial: hex, revoked_at: now.unix_timestamp(), reason };
                state.revoked.push(r.clone());
                newly_revoked = true;
                r
            }
        };
        requested = Some(listed);
    }
    state.crl_number = state
        .crl_number
        .checked_add(1)
        .ok_or_else(|| CrlError::FailedPrecondition("the ARL number cannot grow any further".into()))?;

    let mut spec = root.spec(now, now + Duration::days(i64::from(cfg.crl.arl_validity_days)), state.crl_number);
    // No distributionPoint name: the ARL is then in scope for the root itself
    // (which names no CRL DP) and for every issuing CA whatever URL it names;
    // with the URL, `openssl verify -crl_check_all` refused the chain at the
    // root ("different CRL scope"). onlyContainsCACerts still keeps it from
    // standing in for an issuing CA's CRL.
    spec.issuing_distribution_point =
        Some(IssuingDistributionPoint { full_name: String::new(), only_contains: OnlyContains::CaCerts });
    let entries = state
        .revoked
        .iter()
        .map(|r| {
            Ok(CrlEntry {
                user_certificate: SerialNumber::from_hex(&r.serial)?,
                revocation_date: r.revoked_at,
                reason: r.reason,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CrlError>>()?;
    let signed = build_crl(&spec, entries, &root.key)?;

    // The number is stored before the ARL is out, so it is never reused.
    let json = serde_json::to_vec_pretty(&state).map_err(CrlError::json("ARL state"))?;
    write_atomically(&state_path, &json)?;
    let out_dir = cfg.state_path(&cfg.crl.out_dir);
    std::fs::create_dir_all(&out_dir).map_err(CrlError::io(&out_dir))?;
    let path = out_dir.join(out_name);
    write_atomically(&path, &signed.der)?;
    // The authentication CA's certificate may name another URL for the ARL:
    // the same ARL is served there too.
    for other in arl_urls(cfg).into_iter().skip(1) {
        let copy = out_dir.join(file_name(&other)?);
        if copy != path {
            write_atomically(&copy, &signed.der)?;
        }
    }
    tracing::info!(crl_number = state.crl_number, entries = signed.entries, path = %path.display(), "ARL published");
    Ok(PublishedArl {
        crl_number: state.crl_number,
        this_update: timefmt::rfc3339(spec.this_update.unix_timestamp()),
        next_update: timefmt::rfc3339(spec.next_update.unix_timestamp()),
        url: url.to_owned(),
        path,
        entries: signed.entries,
        sha256: hex::encode(Sha256::digest(&signed.der)),
        newly_revoked,
        revoked: requested,
        der: signed.der,
    })
}

#[cfg(test)]
mod tests {
    use hsm::KeyAlgorithm;

    use super::*;
    use crate::builder::build_crl;
    use crate::testutil::{keep, openssl, openssl_crl_text, pem, test_pki};

    #[test]
    fn arl_is_signed_by_the_root_scoped_to_ca_certs_and_numbers_grow() {
        let pki = test_pki(KeyAlgorithm::Rsa { bits: 2048 });
        let cfg = &pki.cfg;
        let first = publish_arl(cfg, &pki.hsm, None).unwrap();
        assert_eq!((first.crl_number, first.entries, first.newly_revoked), (1, 0, false));
        assert_eq!(first.path, cfg.state_path(&cfg.crl.out_dir).join("arl.crl"));

        let sign_serial = {
            let c = x509_cert::Certificate::from_der(pki.sign.ca.certificate_der()).unwrap();
            hex::encode(c.tbs_certificate().serial_number().as_bytes())
        };
        let second = publish_arl(cfg, &pki.hsm, Some((&sign_serial, RevocationReason::CaCompromise))).unwrap();
        assert_eq!((second.crl_number, second.entries, second.newly_revoked), (2, 1, true));
        let listed = second.revoked.clone().expect("the requested serial's entry");
        assert_eq!(
            (listed.serial.as_str(), listed.reason),
            (sign_serial.trim_start_matches("00"), RevocationReason::CaCompromise)
        );
        let third =
            publish_arl(cfg, &pki.hsm, Some((&sign_serial.to_uppercase(), RevocationReason::Superseded))).unwrap();
        assert_eq!((third.crl_number, third.entries, third.newly_revoked), (3, 1, false));
        assert_eq!(third.revoked, Some(listed), "the entry already listed, with its first time and reason");
        assert_eq!(first.revoked, None);
        let state = load_state(&cfg.cert_dir().join("arl.json")).unwrap();
        assert_eq!(state.revoked[0].reason, RevocationReason::CaCompromise, "the first reason stands");

        let root_pem = pki.path("root.pem");
        std::fs::write(&root_pem, pem("CERTIFICATE", pki.root.ca.certificate_der())).unwrap();
        keep("root", &[&third.path]);
        let text = openssl_crl_text(&third.path, &root_pem);
        println!("{text}");
        assert!(text.contains("X509v3 Issuing Distribution Point: critical"), "{text}");
        assert!(text.contains("Only CA Certificates"), "{text}");
        assert!(!text.contains("arl.crl"), "no distributionPoint name, so the root is in scope too: {text}");
        assert!(text.contains("X509v3 CRL Number: \n                3"), "{text}");
        let (this, next) = crate::asn1::crl_validity(&third.der).unwrap();
        assert_eq!(
            next.unwrap() - this,
            Duration::days(i64::from(cfg.crl.arl_validity_days)),
            "[crl] arl_validity_days"
        );
        assert!(text.contains("CA Compromise"), "{text}");
        assert!(text.contains("Issuer: C = JP, O = Japan Medical Association, OU = JMA HPKI Root CA"), "{text}");

        // With -crl_check_all, a certificate under the revoked signing CA fails.
        let ee = pki.issue(&cfg.profile, profile::CertKind::Signing, &[0x51, 0x01]);
        std::fs::write(pki.path("ee.pem"), pem("CERTIFICATE", &ee)).unwrap();
        pki.write_chain(&pki.path("chain.pem"));
        let now = timefmt::now();
        let sign_crl = build_crl(&pki.sign.spec(now, now + Duration::hours(1), 1), [], &pki.sign.key).unwrap();
        let bundle = pem("X509 CRL", &sign_crl.der) + &pem("X509 CRL", &third.der);
        std::fs::write(pki.path("crls.pem"), bundle).unwrap();
        let (ok, out) = openssl(&[
            "verify",
            "-crl_check_all",
            "-CRLfile",
            pki.path("crls.pem").to_str().unwrap(),
            "-CAfile",
            pki.path("chain.pem").to_str().unwrap(),
            pki.path("ee.pem").to_str().unwrap(),
        ]);
        assert!(!ok && out.contains("certificate revoked"), "{out}");

        assert!(matches!(
            publish_arl(cfg, &pki.hsm, Some(("zz", RevocationReason::KeyCompromise))),
            Err(CrlError::InvalidArgument(_))
        ));
        let root_serial = {
            let c = x509_cert::Certificate::from_der(pki.root.ca.certificate_der()).unwrap();
            hex::encode(c.tbs_certificate().serial_number().as_bytes())
        };
        assert!(matches!(
            publish_arl(cfg, &pki.hsm, Some((&root_serial, RevocationReason::KeyCompromise))),
            Err(CrlError::InvalidArgument(_))
        ));
    }

    #[test]
    fn corrupt_state_is_refused_not_reset() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        std::fs::write(pki.cfg.cert_dir().join("arl.json"), b"{not json").unwrap();
        let err = publish_arl(&pki.cfg, &pki.hsm, None).unwrap_err();
        assert!(matches!(err, CrlError::FailedPrecondition(_)), "{err}");
    }

    #[test]
    fn an_authentication_ca_naming_another_arl_url_gets_the_same_arl_there() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        let mut cfg = pki.cfg.clone();
        cfg.ca.authentication.crl_url = "http://127.0.0.1:8081/crl/arl-auth.crl".into();
        assert_eq!(
            arl_urls(&cfg),
            [cfg.ca.signing.crl_url.clone(), "http://127.0.0.1:8081/crl/arl-auth.crl".to_owned()]
        );
        let served = crate::publisher::served_urls(&cfg).unwrap();
        for url in arl_urls(&cfg) {
            assert!(served.contains(&(url.clone(), true)), "{url} is served: {served:?}");
        }
        let arl = publish_arl(&cfg, &pki.hsm, None).unwrap();
        let out = cfg.state_path(&cfg.crl.out_dir);
        assert_eq!(std::fs::read(out.join("arl.crl")).unwrap(), arl.der);
        assert_eq!(std::fs::read(out.join("arl-auth.crl")).unwrap(), arl.der);
        // One URL for both (the default): one file, one route.
        assert_eq!(arl_urls(&pki.cfg).len(), 1);
    }
}

#[cfg(test)]
mod state_form_tests {
    use super::*;

    /// An entry of `arl.json` as written before the reason moved to `domain`.
    #[test]
    fn old_arl_entries_keep_their_form() {
        let old = r#"{"serial":"0a","revoked_at":1750000000,"reason":"cACompromise"}"#;
        let r: RevokedCa = serde_json::from_str(old).unwrap();
        assert_eq!(r.reason, RevocationReason::CaCompromise);
        assert_eq!(serde_json::to_string(&r).unwrap(), old);
    }
}
