//! Delegated responder certificates (RFC 6960 §4.2.2.2): one per issuing CA,
//! with id-kp-OCSPSigning, id-pkix-ocsp-nocheck, a critical keyUsage of
//! digitalSignature only and a short validity (the profile is
//! `profile::responder`).
//!
//! The responder keys are the OCSP process's own, in its `ocsp` token; it
//! never holds an issuing CA key. For a certificate it sends a CSR to the
//! issuance service (`IssueResponderCertificate`, a [`ResponderAuthority`]),
//! which issues it like a card's certificate: serial reserved in the registry,
//! to-be-signed bytes recorded, signed, stored. So the registry knows every
//! responder certificate (GetCertificate, `hpki-ca status`, the status feed,
//! revocation, the audit log).
//!
//! A certificate is (re)issued when it is missing, does not match its key or
//! CA, expires within the renewal window, or the registry does not know it. A
//! responder certificate the registry says is revoked is rolled over: a new key
//! (labelled `<label>.<unix time>`) and a new certificate.

use std::path::{Path, PathBuf};

use config::{CaEntity, Config};
use der::{Decode, Encode};
use hsm::{Hsm, HsmError, HsmKey};
use profile::IssuingCa;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::error::OcspError;
use crate::source::BoxFuture;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
    /// A certificate existed but was close to expiry (or no longer matched its key
    /// or CA, or the registry did not know it): a new one for the same key.
    Renewed,
    /// The registry said the certificate was revoked: a new key and a new certificate.
    RolledOver,
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
    /// Serial number, hex (as the registry names it).
    pub serial: String,
    /// The issuing CA's key label (the registry's issuer_label).
    pub issuer_label: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// What the registry says of a responder certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryState {
    /// Issued and not revoked.
    Good,
    Revoked,
    /// The registry has no such serial (e.g. made offline by an older version).
    Unknown,
}

/// Where responder certificates come from: the issuance service (and the
/// registry, for their state).
pub trait ResponderAuthority: Send + Sync + 'static {
    /// IssueResponderCertificate: `issuer` is "signing" or "authentication",
    /// `csr` a DER PKCS#10 signed by the responder key. Returns the certificate DER.
    fn issue(&self, issuer: &'static str, csr: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, OcspError>>;
    /// The registry's state of the certificate with this serial (hex).
    fn state(&self, serial_hex: String) -> BoxFuture<'_, Result<RegistryState, OcspError>>;
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
    IssuingCa::read_pem_file(&path).map_err(|e| e.at_start("issuing CA certificate", OcspError::Certificates))
}

/// The responder keys of `base` in the token: `base` itself and its rollovers
/// `base.<n>`, oldest first. Replicas sharing the token that generate a label at
/// the same moment can leave two keys under it: both are listed (ordered by
/// public key, so every replica picks the same newest one), and a certificate
/// finds its own by public key.
fn responder_keys(hsm: &Hsm, base: &str) -> Result<Vec<HsmKey>, OcspError> {
    let mut keys = Vec::new();
    for label in hsm.key_labels(base)? {
        let generation = label.strip_prefix(base);
        let ours = generation.is_some_and(|g| g.is_empty() || g.strip_prefix('.').is_some_and(is_digits));
        if ours {
            keys.extend(hsm.find_keys(&label)?);
        }
    }
    keys.sort_by_cached_key(|k| (generation_of(k.label(), base), k.subject_public_key_info_der()));
    Ok(keys)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn generation_of(label: &str, base: &str) -> u64 {
    label.strip_prefix(base).and_then(|g| g.strip_prefix('.')).and_then(|g| g.parse().ok()).unwrap_or(0)
}

/// The responder key whose public key is `spki`, among `base` and its rollovers.
fn key_for_spki(hsm: &Hsm, base: &str, spki: &[u8]) -> Result<Option<HsmKey>, OcspError> {
    Ok(responder_keys(hsm, base)?.into_iter().find(|k| k.subject_public_key_info_der() == spki))
}

/// The newest responder key of `base`, generated (with the CA key algorithm)
/// when there is none. Another replica may generate it at the same moment: then
/// we use theirs.
fn current_key(cfg: &Config, hsm: &Hsm, base: &str) -> Result<(HsmKey, Outcome), OcspError> {
    if let Some(k) = responder_keys(hsm, base)?.pop() {
        return Ok((k, Outcome::Kept));
    }
    generate(cfg, hsm, base)
}

fn generate(cfg: &Config, hsm: &Hsm, label: &str) -> Result<(HsmKey, Outcome), OcspError> {
    match hsm.generate_key_pair(label, hsm::KeyAlgorithm::from(cfg.ca.key_algorithm)) {
        Ok(k) => Ok((k, Outcome::Created)),
        // Another replica made it first (maybe twice): theirs, the same one every replica picks.
        Err(HsmError::KeyExists(_) | HsmError::Ambiguous(_)) => {
            let mut keys = hsm.find_keys(label)?;
            keys.sort_by_cached_key(|k| k.subject_public_key_info_der());
            let key = keys.pop().ok_or_else(|| HsmError::KeyNotFound(label.to_owned()))?;
            Ok((key, Outcome::Kept))
        }
        Err(e) => Err(e.into()),
    }
}

/// A certificate file as read: DER, notAfter, serial (hex), SPKI DER.
struct OnDisk {
    der: Vec<u8>,
    not_after: OffsetDateTime,
    serial: String,
    spki: Vec<u8>,
}

fn read_on_disk(path: &Path) -> Result<Option<OnDisk>, OcspError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OcspError::io(path)(e)),
    };
    let parsed = pem::parse(&text).ok().filter(|b| b.tag() == "CERTIFICATE").and_then(|b| {
        let der = b.contents().to_vec();
        let cert = Certificate::from_der(&der).ok()?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info().to_der().ok()?;
        let serial = hex::encode(tbs.serial_number().as_bytes());
        let not_after = not_after_of(&der).ok()?;
        Some(OnDisk { der, not_after, serial, spki })
    });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "unreadable responder certificate; asking for a new one");
    }
    Ok(parsed)
}

pub(crate) fn not_after_of(der: &[u8]) -> Result<OffsetDateTime, OcspError> {
    let cert = Certificate::from_der(der).map_err(|e| OcspError::Certificates(e.to_string()))?;
    let secs = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
    let secs = i64::try_from(secs).map_err(|_| OcspError::Certificates("notAfter out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| OcspError::Certificates(e.to_string()))
}

fn serial_of(der: &[u8]) -> Result<String, OcspError> {
    let cert = Certificate::from_der(der).map_err(|e| OcspError::Certificates(e.to_string()))?;
    Ok(hex::encode(cert.tbs_certificate().serial_number().as_bytes()))
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

/// A PKCS#10 request signed by `key` (proof of possession); issuance takes the
/// subject from the profile, not from here.
fn csr_for(key: &HsmKey) -> Result<Vec<u8>, OcspError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "OCSP Responder");
    let csr = params.serialize_request(key).map_err(|e| OcspError::Certificates(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// Runs `f` (token or file work) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OcspError> + Send + 'static,
) -> Result<T, OcspError> {
    tokio::task::spawn_blocking(f).await.map_err(OcspError::task("blocking"))?
}

/// Makes sure each issuing CA has a usable responder certificate for a key in
/// `hsm` (the `ocsp` token), asking `authority` for new ones (see the module
/// documentation for when). Each CA on its own: one that fails does not hide the
/// other's result.
pub async fn ensure_each(
    cfg: &Config,
    hsm: &Hsm,
    authority: &dyn ResponderAuthority,
    renew_within: Duration,
) -> Vec<Result<ResponderCertStatus, OcspError>> {
    let mut out = Vec::with_capacity(2);
    for slot in slots(cfg) {
        out.push(ensure_one(cfg, hsm, authority, slot, renew_within).await);
    }
    out
}

/// `ensure_each`, stopping at the first CA that fails.
pub async fn ensure_responder_certificates(
    cfg: &Config,
    hsm: &Hsm,
    authority: &dyn ResponderAuthority,
    renew_within: Duration,
) -> Result<Vec<ResponderCertStatus>, OcspError> {
    ensure_each(cfg, hsm, authority, renew_within).await.into_iter().collect()
}

async fn ensure_one(
    cfg: &Config,
    hsm: &Hsm,
    authority: &dyn ResponderAuthority,
    slot: Slot<'_>,
    renew_within: Duration,
) -> Result<ResponderCertStatus, OcspError> {
    let ca = issuing_ca_certificate(cfg, slot.entity)?;
    let base = slot.responder_key_label.to_owned();
    let path = slot.responder_path.clone();
    let (c, h, b) = (cfg.clone(), hsm.clone(), base.clone());
    let on_disk = read_on_disk(&path)?;
    let want = on_disk.as_ref().map(|d| d.spki.clone());
    // The key of the certificate on disk, if we hold it; else the newest (or a new) key.
    let (key, mut key_outcome, matched) = blocking(move || {
        if let Some(spki) = want {
            if let Some(k) = key_for_spki(&h, &b, &spki)? {
                return Ok((k, Outcome::Kept, true));
            }
        }
        let (k, o) = current_key(&c, &h, &b)?;
        Ok((k, o, false))
    })
    .await?;

    let now = OffsetDateTime::now_utc();
    let outcome = match on_disk {
        None => Outcome::Created,
        Some(d) if matched && ca.verify_issued(&d.der).is_ok() && d.not_after > now + renew_within => {
            match authority.state(d.serial.clone()).await {
                Ok(RegistryState::Good) => {
                    return Ok(status(&slot, &key, key_outcome, Outcome::Kept, d.der, d.not_after, d.serial));
                }
                Ok(RegistryState::Unknown) => {
                    tracing::warn!(ca = slot.name, serial = %d.serial, "the registry does not know the responder certificate; asking issuance for one it does");
                    Outcome::Renewed
                }
                Ok(RegistryState::Revoked) => {
                    tracing::warn!(ca = slot.name, serial = %d.serial, "the responder certificate was revoked; rolling over to a new key");
                    Outcome::RolledOver
                }
                Err(e) => {
                    // Availability first: a valid certificate is served while the registry is away.
                    tracing::warn!(ca = slot.name, error = %e, "cannot ask the registry about the responder certificate; keeping it");
                    return Ok(status(&slot, &key, key_outcome, Outcome::Kept, d.der, d.not_after, d.serial));
                }
            }
        }
        Some(_) => Outcome::Renewed,
    };
    let key = if outcome == Outcome::RolledOver {
        let label = format!("{base}.{}", now.unix_timestamp());
        let (c, h) = (cfg.clone(), hsm.clone());
        let (k, o) = blocking(move || generate(&c, &h, &label)).await?;
        key_outcome = o;
        k
    } else {
        key
    };
    let k = key.clone();
    let csr = blocking(move || csr_for(&k)).await?;
    let der = authority.issue(slot.name, csr).await?;
    let cert = Certificate::from_der(&der).map_err(|e| OcspError::Certificates(format!("issued certificate: {e}")))?;
    if cert.tbs_certificate().subject_public_key_info().to_der()? != key.subject_public_key_info_der() {
        return Err(OcspError::Certificates(format!(
            "issuance answered with a {} responder certificate for another key than {:?}",
            slot.name,
            key.label()
        )));
    }
    ca.verify_issued(&der)?;
    write_pem(&path, &der)?;
    let (not_after, serial) = (not_after_of(&der)?, serial_of(&der)?);
    tracing::info!(ca = slot.name, %serial, path = %path.display(), ?outcome, "responder certificate issued by the issuance service");
    Ok(status(&slot, &key, key_outcome, outcome, der, not_after, serial))
}

fn status(
    slot: &Slot<'_>,
    key: &HsmKey,
    key_outcome: Outcome,
    certificate: Outcome,
    der: Vec<u8>,
    not_after: OffsetDateTime,
    serial: String,
) -> ResponderCertStatus {
    ResponderCertStatus {
        ca: slot.name,
        key_label: key.label().to_owned(),
        key: key_outcome,
        certificate,
        path: slot.responder_path.clone(),
        not_after,
        fingerprint: hex::encode(Sha256::digest(&der)),
        serial,
        issuer_label: slot.entity.key_label.clone(),
        der,
    }
}

/// What the responder needs of one issuing CA.
pub(crate) struct LoadedIssuer {
    pub name: &'static str,
    pub label: String,
    pub ca: IssuingCa,
    pub responder_key: HsmKey,
    pub responder_cert: Vec<u8>,
}

/// Loads both issuing CAs and their current responder certificates with the
/// keys they certify (which `ensure_each` must have made). Blocking.
pub(crate) fn load(cfg: &Config, hsm: &Hsm) -> Result<Vec<LoadedIssuer>, OcspError> {
    let mut out = Vec::with_capacity(2);
    for slot in slots(cfg) {
        let ca = issuing_ca_certificate(cfg, slot.entity)?;
        let d = read_on_disk(&slot.responder_path)?.ok_or_else(|| {
            OcspError::Certificates(format!("{} is missing or not a PEM certificate", slot.responder_path.display()))
        })?;
        let key = key_for_spki(hsm, slot.responder_key_label, &d.spki)?.ok_or_else(|| {
            OcspError::Certificates(format!(
                "{} certifies no responder key {:?} (or its rollovers) in the ocsp token",
                slot.responder_path.display(),
                slot.responder_key_label
            ))
        })?;
        ca.verify_issued(&d.der)?;
        out.push(LoadedIssuer {
            name: slot.name,
            label: slot.entity.key_label.clone(),
            ca,
            responder_key: key,
            responder_cert: d.der,
        });
    }
    Ok(out)
}

/// Serials (hex) of the responder certificates `load` would use now.
pub(crate) fn serial_of_der(der: &[u8]) -> Option<String> {
    serial_of(der).ok()
}

/// The issuance service and the registry, over gRPC: production's
/// [`ResponderAuthority`].
pub struct IssuanceAuthority {
    issuance: proto::issuance::v1::issuance_client::IssuanceClient<tonic::transport::Channel>,
    registry: proto::registry::v1::registry_client::RegistryClient<tonic::transport::Channel>,
    timeout: std::time::Duration,
}

impl IssuanceAuthority {
    /// Lazily connecting clients for `[ocsp] issuance_url` and `registry_url`.
    pub fn from_config(cfg: &Config, kit: &tls::GrpcKit) -> Result<IssuanceAuthority, OcspError> {
        let url = &cfg.ocsp.issuance_url;
        let endpoint = kit
            .endpoint_as("ocsp", url)
            .map_err(|e| OcspError::Startup(format!("ocsp.issuance_url {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5));
        let issuance = kit.client(proto::issuance::v1::issuance_client::IssuanceClient::new(endpoint.connect_lazy()));
        let registry = crate::source::registry_client(kit, &cfg.ocsp.registry_url)?;
        Ok(IssuanceAuthority { issuance, registry, timeout: std::time::Duration::from_secs(30) })
    }
}

impl ResponderAuthority for IssuanceAuthority {
    fn issue(&self, issuer: &'static str, csr: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, OcspError>> {
        let mut client = self.issuance.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let call = client.issue_responder_certificate(proto::issuance::v1::ResponderCertificateRequest {
                issuer: issuer.to_owned(),
                csr,
            });
            match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(OcspError::Registry("IssueResponderCertificate timed out".into())),
                Ok(Ok(resp)) => Ok(resp.into_inner().certificate_der),
                Ok(Err(s)) => Err(OcspError::Registry(format!(
                    "IssueResponderCertificate ({issuer}): {:?}: {}",
                    s.code(),
                    s.message()
                ))),
            }
        })
    }

    fn state(&self, serial_hex: String) -> BoxFuture<'_, Result<RegistryState, OcspError>> {
        let mut client = self.registry.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let call = client.get_certificate(proto::registry::v1::GetCertificateRequest { serial: serial_hex });
            match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(OcspError::Registry("GetCertificate timed out".into())),
                Ok(Ok(resp)) => {
                    let rec = resp.into_inner();
                    Ok(if rec.state == proto::registry::v1::CertificateState::CertRevoked as i32 {
                        RegistryState::Revoked
                    } else if rec.state == proto::registry::v1::CertificateState::Issued as i32 {
                        RegistryState::Good
                    } else {
                        RegistryState::Unknown
                    })
                }
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(RegistryState::Unknown),
                Ok(Err(s)) => Err(s.into()),
            }
        })
    }
}

/// Issues a responder certificate for `key` under `ca` with `ca_key` directly,
/// as issuance does (tests and benchmarks, which run no issuance service).
#[cfg(any(test, feature = "bench"))]
pub(crate) fn issue_directly(
    cfg: &Config,
    ca: &IssuingCa,
    ca_key: &HsmKey,
    key: &impl rcgen::PublicKeyData,
    now: OffsetDateTime,
) -> Result<Vec<u8>, OcspError> {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| OcspError::Internal("no randomness for a serial number".into()))?;
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let not_before = now.replace_nanosecond(0).map_err(OcspError::Clock)?;
    let days = i64::from(cfg.ocsp.responder_validity_days.max(1));
    let not_after = (not_before + Duration::days(days)).min(ca.not_after());
    let params = profile::responder_params(ca, "CA", &serial, not_before, not_after)?;
    let tbs = profile::tbs_certificate(&params, key, ca)?;
    let signature = ca_key.sign(&tbs)?;
    let der = profile::assemble_certificate(&tbs, &signature)?;
    ca.verify_issued(&der)?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{test_ca, DirectAuthority};

    use testkit::openssl::openssl_ok as openssl;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_good_certificates_renews_expiring_unknown_and_foreign_ones_and_rolls_over_revoked_ones() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        let authority = DirectAuthority::new(&ca);
        // test_ca made both; the authority knows them as good.
        let kept = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert!(kept.iter().all(|s| s.key == Outcome::Kept && s.certificate == Outcome::Kept), "{kept:?}");
        assert_eq!(authority.issued(), 0, "nothing asked for");
        // Expiring within 60 days (validity is 30): renewed through the authority, same key.
        let renewed = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(60)).await.unwrap();
        assert!(renewed.iter().all(|s| s.key == Outcome::Kept && s.certificate == Outcome::Renewed), "{renewed:?}");
        assert_eq!(authority.issued(), 2);
        assert_eq!(renewed[0].key_label, kept[0].key_label);
        assert_ne!(renewed[0].serial, kept[0].serial);
        // Unknown to the registry (made elsewhere): replaced.
        authority.forget(&renewed[1].serial);
        let again = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert_eq!((again[0].certificate, again[1].certificate), (Outcome::Kept, Outcome::Renewed));
        // Revoked: a new key (a rollover label) and a new certificate; load() serves it.
        authority.revoke(&again[0].serial);
        let rolled = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert_eq!((rolled[0].key, rolled[0].certificate), (Outcome::Created, Outcome::RolledOver));
        assert!(rolled[0].key_label.starts_with(&format!("{}.", ca.cfg.ocsp.signing_responder_key_label)));
        assert_ne!(rolled[0].serial, again[0].serial);
        let loaded = load(&ca.cfg, &ca.hsm).unwrap();
        assert_eq!(loaded[0].responder_key.label(), rolled[0].key_label);
        assert_eq!(loaded[0].responder_cert, rolled[0].der);
        // Missing: created.
        std::fs::remove_file(ca.responder_path(1)).unwrap();
        let created = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert_eq!(created[1].certificate, Outcome::Created);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_keys_under_a_responder_label_from_racing_replicas_are_told_apart() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        let authority = DirectAuthority::new(&ca);
        let label = ca.cfg.ocsp.signing_responder_key_label.clone();
        let twin = hsm::testing::generate_duplicate(&ca.hsm, &label, hsm::KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(ca.hsm.find_keys(&label).unwrap().len(), 2);
        // The certificate on disk finds its own key among the two.
        let kept = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert_eq!((kept[0].key, kept[0].certificate), (Outcome::Kept, Outcome::Kept));
        let loaded = load(&ca.cfg, &ca.hsm).unwrap();
        assert_ne!(loaded[0].responder_key.subject_public_key_info_der(), twin.subject_public_key_info_der());
        // Without a certificate: one for the key every replica picks, and load() serves it.
        std::fs::remove_file(ca.responder_path(0)).unwrap();
        let made = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1)).await.unwrap();
        assert_eq!(made[0].certificate, Outcome::Created);
        let again = responder_keys(&ca.hsm, &label).unwrap().pop().unwrap();
        let loaded = load(&ca.cfg, &ca.hsm).unwrap();
        assert_eq!(loaded[0].responder_key.subject_public_key_info_der(), again.subject_public_key_info_der());
        assert_eq!(loaded[0].responder_cert, made[0].der);
    }

    #[tokio::test]
    async fn a_missing_issuing_ca_is_a_clear_error() {
        let ca = test_ca(config::KeyAlgorithm::EcdsaP256);
        let authority = DirectAuthority::new(&ca);
        std::fs::remove_file(ca.ca_path(1)).unwrap();
        let err = ensure_responder_certificates(&ca.cfg, &ca.hsm, &authority, Duration::days(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("hpki-ca ceremony"), "{err}");
    }
}
