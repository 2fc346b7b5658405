//! Delegated responder certificates (RFC 6960 §4.2.2.2): one per issuing CA,
//! issued by it, with id-kp-OCSPSigning, id-pkix-ocsp-nocheck, a critical
//! keyUsage of digitalSignature only and a short validity. Keys stay in the HSM.

use std::path::{Path, PathBuf};

use config::{CaEntity, Config};
use der::{Decode, Encode};
use hsm::{Hsm, HsmError, HsmKey};
use profile::IssuingCa;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::asn1::ID_PKIX_OCSP_NOCHECK;
use crate::error::OcspError;
use crate::source::AuditEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
    /// A certificate existed but was close to expiry (or no longer matched its key or CA).
    Renewed,
}

/// What `ensure_responder_certificates` did for one issuing CA.
#[derive(Debug, Clone)]
pub struct ResponderCertStatus {
    /// "signing" or "authentication".
    pub ca: &'static str,
    pub key_label: String,
    pub key: Outcome,
    pub certificate: Outcome,
    pub path: PathBuf,
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate DER, hex.
    pub fingerprint: String,
    /// The issuing CA's key label (the registry's issuer_label).
    pub issuer_label: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// One issuing CA and where its responder lives.
pub(crate) struct Slot<'a> {
    pub name: &'static str,
    pub entity: &'a CaEntity,
    pub responder_key_label: &'a str,
    pub responder_path: PathBuf,
}

pub(crate) fn slots(cfg: &Config) -> [Slot<'_>; 2] {
    let dir = cfg.cert_dir();
    [
        Slot {
            name: "signing",
            entity: &cfg.ca.signing,
            responder_key_label: &cfg.ocsp.signing_responder_key_label,
            responder_path: dir.join(&cfg.ocsp.signing_responder_file),
        },
        Slot {
            name: "authentication",
            entity: &cfg.ca.authentication,
            responder_key_label: &cfg.ocsp.authentication_responder_key_label,
            responder_path: dir.join(&cfg.ocsp.authentication_responder_file),
        },
    ]
}

/// An issuing CA certificate (no key: the responder checks what it serves against it).
pub(crate) fn issuing_ca_certificate(cfg: &Config, entity: &CaEntity) -> Result<IssuingCa, OcspError> {
    let path = cfg.cert_dir().join(&entity.file_name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        OcspError::Certificates(format!(
            "cannot read issuing CA certificate {}: {e} (run the key ceremony first: hpki-ca ceremony)",
            path.display()
        ))
    })?;
    Ok(IssuingCa::from_pem(&text)?)
}

/// An issuing CA certificate with its HSM key, checked to match.
pub(crate) fn load_issuing_ca(cfg: &Config, hsm: &Hsm, entity: &CaEntity) -> Result<(IssuingCa, HsmKey), OcspError> {
    let path = cfg.cert_dir().join(&entity.file_name);
    let ca = issuing_ca_certificate(cfg, entity)?;
    let key = hsm.key(&entity.key_label)?;
    if ca.subject_public_key_info_der() != key.subject_public_key_info_der().as_slice() {
        return Err(OcspError::Certificates(format!(
            "{} does not certify the HSM key labelled {:?}",
            path.display(),
            entity.key_label
        )));
    }
    Ok((ca, key))
}

fn key_algorithm(a: config::KeyAlgorithm) -> hsm::KeyAlgorithm {
    match a {
        config::KeyAlgorithm::Rsa2048 => hsm::KeyAlgorithm::Rsa { bits: 2048 },
        config::KeyAlgorithm::Rsa3072 => hsm::KeyAlgorithm::Rsa { bits: 3072 },
        config::KeyAlgorithm::Rsa4096 => hsm::KeyAlgorithm::Rsa { bits: 4096 },
        config::KeyAlgorithm::EcdsaP256 => hsm::KeyAlgorithm::EcdsaP256,
    }
}

/// The responder key, generated (with the CA key algorithm) when missing. Another
/// replica may generate it at the same moment: then we use theirs.
fn responder_key(cfg: &Config, hsm: &Hsm, label: &str) -> Result<(HsmKey, Outcome), OcspError> {
    if let Some(k) = hsm.find_key(label)? {
        return Ok((k, Outcome::Kept));
    }
    match hsm.generate_key_pair(label, key_algorithm(cfg.ca.key_algorithm)) {
        Ok(k) => Ok((k, Outcome::Created)),
        Err(HsmError::KeyExists(_)) => Ok((hsm.key(label)?, Outcome::Kept)),
        Err(e) => Err(e.into()),
    }
}

/// The PEM certificate at `path`, if it certifies `key`, was issued by `ca` and
/// is valid beyond `renew_after`. Ok(None) when it must be (re)issued.
fn usable_existing(
    path: &Path,
    key: &HsmKey,
    ca: &IssuingCa,
    renew_after: OffsetDateTime,
) -> Result<Option<(Vec<u8>, OffsetDateTime)>, OcspError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OcspError::io(path)(e)),
    };
    let Some((der, not_after)) = parse_pem_cert(&text) else {
        tracing::warn!(path = %path.display(), "unreadable responder certificate; issuing a new one");
        return Ok(None);
    };
    let Ok(cert) = Certificate::from_der(&der) else { return Ok(None) };
    let spki = cert.tbs_certificate().subject_public_key_info().to_der()?;
    if spki != key.subject_public_key_info_der() || ca.verify_issued(&der).is_err() {
        tracing::warn!(path = %path.display(), "responder certificate does not match its key or CA; issuing a new one");
        return Ok(None);
    }
    if not_after <= renew_after {
        return Ok(None);
    }
    Ok(Some((der, not_after)))
}

fn parse_pem_cert(text: &str) -> Option<(Vec<u8>, OffsetDateTime)> {
    let block = pem::parse(text).ok()?;
    if block.tag() != "CERTIFICATE" {
        return None;
    }
    let der = block.contents().to_vec();
    let not_after = not_after_of(&der).ok()?;
    Some((der, not_after))
}

pub(crate) fn not_after_of(der: &[u8]) -> Result<OffsetDateTime, OcspError> {
    let cert = Certificate::from_der(der).map_err(|e| OcspError::Certificates(e.to_string()))?;
    let secs = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
    let secs = i64::try_from(secs).map_err(|_| OcspError::Certificates("notAfter out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| OcspError::Certificates(e.to_string()))
}

fn random_serial() -> Result<[u8; 16], OcspError> {
    let mut s = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .map_err(|_| OcspError::Internal("no randomness for a serial number".into()))?;
    s[0] = (s[0] & 0x7f) | 0x01; // positive, 16 octets
    Ok(s)
}

/// Issues a responder certificate for `key` under `ca` (signed by `ca_key`).
pub(crate) fn issue(
    cfg: &Config,
    entity: &CaEntity,
    ca: &IssuingCa,
    ca_key: &HsmKey,
    key: &impl rcgen::PublicKeyData,
    now: OffsetDateTime,
) -> Result<Vec<u8>, OcspError> {
    let mut params = CertificateParams::default();
    let mut dn = ca.distinguished_name().clone();
    let ca_cn = entity.subject.iter().find(|a| a.attr.eq_ignore_ascii_case("CN")).map(|a| a.value.as_str());
    let cn = match ca_cn {
        Some(cn) => format!("{cn} OCSP Responder"),
        None => format!("{} OCSP Responder", entity.key_label),
    };
    dn.push(DnType::CommonName, rcgen::DnValue::Utf8String(cn));
    params.distinguished_name = dn;
    params.serial_number = Some(profile::serial_number(&random_serial()?)?);
    let not_before = now.replace_nanosecond(0).map_err(|e| OcspError::Internal(e.to_string()))?;
    let days = i64::from(cfg.ocsp.responder_validity_days.max(1));
    params.not_before = not_before;
    params.not_after = (not_before + Duration::days(days)).min(ca.not_after());
    if params.not_after <= params.not_before {
        return Err(OcspError::Certificates(format!("issuing CA {:?} has expired", entity.key_label)));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    // rcgen writes keyUsage critical.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions.push(profile::extensions::custom(ID_PKIX_OCSP_NOCHECK, vec![0x05, 0x00], false));
    let tbs = profile::tbs_certificate(&params, key, ca)?;
    let signature = ca_key.sign(&tbs)?;
    let der = profile::assemble_certificate(&tbs, &signature)?;
    ca.verify_issued(&der)?;
    Ok(der)
}

fn write_pem(path: &Path, der: &[u8]) -> Result<(), OcspError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(OcspError::io(dir))?;
    }
    let text = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    // A name of our own, so two replicas renewing at once do not clobber each other's temp file.
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(OcspError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(OcspError::io(path))
}

/// Creates the responder keys (keeping existing ones) and (re)issues a
/// responder certificate for each issuing CA when it is missing or expires
/// within `renew_within`. Blocking (HSM key generation and signing). Stops at
/// the first CA that fails.
pub fn ensure_responder_certificates(
    cfg: &Config,
    ca_hsm: &Hsm,
    hsm: &Hsm,
    renew_within: Duration,
) -> Result<Vec<ResponderCertStatus>, OcspError> {
    let now = OffsetDateTime::now_utc();
    slots(cfg).into_iter().map(|slot| ensure_one(cfg, ca_hsm, hsm, slot, now, renew_within)).collect()
}

/// The same for every issuing CA, each on its own: one CA that fails does not
/// hide a certificate issued for the other (the running responder audits each).
pub(crate) fn ensure_each(
    cfg: &Config,
    ca_hsm: &Hsm,
    hsm: &Hsm,
    renew_within: Duration,
) -> Vec<Result<ResponderCertStatus, OcspError>> {
    let now = OffsetDateTime::now_utc();
    slots(cfg).into_iter().map(|slot| ensure_one(cfg, ca_hsm, hsm, slot, now, renew_within)).collect()
}

fn ensure_one(
    cfg: &Config,
    ca_hsm: &Hsm,
    hsm: &Hsm,
    slot: Slot<'_>,
    now: OffsetDateTime,
    renew_within: Duration,
) -> Result<ResponderCertStatus, OcspError> {
    let (ca, ca_key) = load_issuing_ca(cfg, ca_hsm, slot.entity)?;
    let (key, key_outcome) = responder_key(cfg, hsm, slot.responder_key_label)?;
    let existed = slot.responder_path.exists();
    let (der, not_after, outcome) = match usable_existing(&slot.responder_path, &key, &ca, now + renew_within)? {
        Some((der, not_after)) => (der, not_after, Outcome::Kept),
        None => {
            let der = issue(cfg, slot.entity, &ca, &ca_key, &key, now)?;
            write_pem(&slot.responder_path, &der)?;
            let outcome = if existed { Outcome::Renewed } else { Outcome::Created };
            tracing::info!(ca = slot.name, path = %slot.responder_path.display(), ?outcome, "responder certificate issued");
            let not_after = not_after_of(&der)?;
            (der, not_after, outcome)
        }
    };
    Ok(ResponderCertStatus {
        ca: slot.name,
        key_label: slot.responder_key_label.to_owned(),
        key: key_outcome,
        certificate: outcome,
        path: slot.responder_path,
        not_after,
        fingerprint: hex::encode(Sha256::digest(&der)),
        issuer_label: slot.entity.key_label.clone(),
        der,
    })
}

/// Who the running responder's audit entries name.
pub(crate) const AUDIT_ACTOR: &str = "ocsp-responder";
/// `store::actions::OCSP_RESPONDER_CERTIFICATE` (a test checks they agree;
/// the store is no dependency of the responder).
pub(crate) const AUDIT_ACTION: &str = "ocsp.responder_certificate";

fn rfc3339_of(t: x509_cert::time::Time) -> String {
    i64::try_from(t.to_unix_duration().as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unrepresentable".into())
}

/// The "ocsp.responder_certificate" entry for a certificate this process
/// issued or renewed at `issued_at`: subject the issuing CA's label; detail
/// the serial, subject, issuer, validity, SHA-256, the key and the file.
/// `issued_at` is kept apart from the entry's own time, which is later when
/// the registry was away.
pub(crate) fn audit_event(done: &ResponderCertStatus, issued_at: OffsetDateTime) -> Result<AuditEvent, OcspError> {
    let cert = Certificate::from_der(&done.der).map_err(|e| OcspError::Certificates(e.to_string()))?;
    let tbs = cert.tbs_certificate();
    let outcome = match done.certificate {
        Outcome::Created => "created",
        Outcome::Renewed => "renewed",
        Outcome::Kept => "kept",
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned());
    let detail = serde_json::json!({
        "ca": done.ca,
        "issuer_label": done.issuer_label,
        "outcome": outcome,
        "serial": hex::encode(tbs.serial_number().as_bytes()),
        "subject": tbs.subject().to_string(),
        "issuer": tbs.issuer().to_string(),
        "not_before": rfc3339_of(tbs.validity().not_before),
        "not_after": rfc3339_of(tbs.validity().not_after),
        "sha256": done.fingerprint,
        "key_label": done.key_label,
        "key": if done.key == Outcome::Created { "generated" } else { "found" },
        "file": done.path.display().to_string(),
        "issued_at": issued_at.format(&Rfc3339).unwrap_or_else(|_| "unrepresentable".into()),
        "host": host,
        "pid": std::process::id(),
    });
    Ok(AuditEvent {
        actor: AUDIT_ACTOR.into(),
        action: AUDIT_ACTION.into(),
        subject: done.issuer_label.clone(),
        detail_json: detail.to_string(),
    })
}

/// What the responder needs of one issuing CA.
pub(crate) struct LoadedIssuer {
    pub name: &'static str,
    pub label: String,
    pub ca: IssuingCa,
    pub responder_key: HsmKey,
    pub responder_cert: Vec<u8>,
}

/// Loads both issuing CAs and their current responder certificates and keys
/// (which `ensure_responder_certificates` must have made).
pub(crate) fn load(cfg: &Config, hsm: &Hsm) -> Result<Vec<LoadedIssuer>, OcspError> {
    let mut out = Vec::with_capacity(2);
    for slot in slots(cfg) {
        let ca = issuing_ca_certificate(cfg, slot.entity)?;
        let key = hsm.key(slot.responder_key_label)?;
        let text = std::fs::read_to_string(&slot.responder_path).map_err(OcspError::io(&slot.responder_path))?;
        let (der, _) = parse_pem_cert(&text).ok_or_else(|| {
            OcspError::Certificates(format!("{} is not a PEM certificate", slot.responder_path.display()))
        })?;
        let cert = Certificate::from_der(&der).map_err(|e| OcspError::Certificates(e.to_string()))?;
        if cert.tbs_certificate().subject_public_key_info().to_der()? != key.subject_public_key_info_der() {
            return Err(OcspError::Certificates(format!(
                "{} does not certify the HSM key {:?}",
                slot.responder_path.display(),
                slot.responder_key_label
            )));
        }
        ca.verify_issued(&der)?;
        out.push(LoadedIssuer {
            name: slot.name,
            label: slot.entity.key_label.clone(),
            ca,
            responder_key: key,
            responder_cert: der,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::test_ca;
    use std::process::Command;

    fn openssl(args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn responder_certificates_have_the_ocsp_profile_and_chain_to_their_ca() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        for i in 0..2 {
            let path = ca.responder_path(i);
            let text = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"]);
            for want in [
                "X509v3 Key Usage: critical",
                "Digital Signature",
                "X509v3 Extended Key Usage: \n                OCSP Signing",
                "OCSP No Check",
                "CA:FALSE",
                "X509v3 Authority Key Identifier",
                "X509v3 Subject Key Identifier",
                "OCSP Responder",
            ] {
                let norm = text.replace(" \n", "\n");
                assert!(norm.contains(&want.replace(" \n", "\n")), "missing {want:?} in\n{text}");
            }
            assert!(!text.contains("Certificate Sign"), "{text}");
            let verified = openssl(&[
                "verify",
                "-CAfile",
                ca.ca_path(i).to_str().unwrap(),
                "-purpose",
                "ocsphelper",
                path.to_str().unwrap(),
            ]);
            assert!(verified.contains(": OK"), "{verified}");
            let not_after =
                not_after_of(&pem::parse(std::fs::read_to_string(&path).unwrap()).unwrap().into_contents()).unwrap();
            let days = (not_after - OffsetDateTime::now_utc()).whole_days();
            assert!((29..=30).contains(&days), "validity {days} days");
        }
    }

    #[test]
    fn ensuring_keeps_valid_certificates_and_renews_expiring_ones() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        // test_ca already ran it once: everything exists now.
        let kept = ensure_responder_certificates(&ca.cfg, &ca.hsm, &ca.hsm, Duration::days(1)).unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|s| s.key == Outcome::Kept && s.certificate == Outcome::Kept), "{kept:?}");
        assert_eq!(kept[0].ca, "signing");
        assert_eq!(kept[1].key_label, ca.cfg.ocsp.authentication_responder_key_label);
        // Expiring within 60 days (validity is 30): renewed, same key.
        let renewed = ensure_responder_certificates(&ca.cfg, &ca.hsm, &ca.hsm, Duration::days(60)).unwrap();
        assert!(renewed.iter().all(|s| s.key == Outcome::Kept && s.certificate == Outcome::Renewed), "{renewed:?}");
        assert_ne!(renewed[0].fingerprint, kept[0].fingerprint);
        // A certificate from elsewhere (not for our key) is replaced.
        std::fs::copy(ca.ca_path(0), ca.responder_path(0)).unwrap();
        let replaced = ensure_responder_certificates(&ca.cfg, &ca.hsm, &ca.hsm, Duration::days(1)).unwrap();
        assert_eq!(replaced[0].certificate, Outcome::Renewed);
        assert_eq!(replaced[1].certificate, Outcome::Kept);
        // Missing: created.
        std::fs::remove_file(ca.responder_path(1)).unwrap();
        let created = ensure_responder_certificates(&ca.cfg, &ca.hsm, &ca.hsm, Duration::days(1)).unwrap();
        assert_eq!(created[1].certificate, Outcome::Created);
        let loaded = load(&ca.cfg, &ca.hsm).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[1].label, ca.cfg.ca.authentication.key_label);
    }

    #[test]
    fn a_missing_issuing_ca_is_a_clear_error() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        std::fs::remove_file(ca.ca_path(1)).unwrap();
        let err = ensure_responder_certificates(&ca.cfg, &ca.hsm, &ca.hsm, Duration::days(1)).unwrap_err().to_string();
        assert!(err.contains("hpki-ca ceremony"), "{err}");
    }
}
