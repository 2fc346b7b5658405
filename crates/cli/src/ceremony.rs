//! The key ceremony: CA keys are generated inside the token (never outside),
//! then the root certificate and the two issuing CA certificates are made and
//! written as PEM. Re-running it keeps every existing key and certificate.

use std::path::{Path, PathBuf};

use config::{CaEntity, Config};
use der::{Decode, Encode};
use hsm::{Hsm, HsmKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{io, CliError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
}

#[derive(Debug, Clone)]
pub struct CaOutcome {
    pub name: &'static str,
    pub key_label: String,
    pub key: Outcome,
    pub certificate: Outcome,
    pub path: PathBuf,
    /// SHA-256 of the certificate DER, hex.
    pub fingerprint: String,
    pub subject: String,
}

fn key_algorithm(a: config::KeyAlgorithm) -> hsm::KeyAlgorithm {
    match a {
        config::KeyAlgorithm::Rsa2048 => hsm::KeyAlgorithm::Rsa { bits: 2048 },
        config::KeyAlgorithm::Rsa3072 => hsm::KeyAlgorithm::Rsa { bits: 3072 },
        config::KeyAlgorithm::Rsa4096 => hsm::KeyAlgorithm::Rsa { bits: 4096 },
        config::KeyAlgorithm::EcdsaP256 => hsm::KeyAlgorithm::EcdsaP256,
    }
}

fn key_for(hsm: &Hsm, entity: &CaEntity, alg: config::KeyAlgorithm) -> Result<(HsmKey, Outcome), CliError> {
    match hsm.find_key(&entity.key_label)? {
        Some(k) => Ok((k, Outcome::Kept)),
        None => Ok((hsm.generate_key_pair(&entity.key_label, key_algorithm(alg))?, Outcome::Created)),
    }
}

fn random_serial() -> [u8; 16] {
    let mut s: [u8; 16] = rand::random();
    s[0] = (s[0] & 0x7f) | 0x01; // positive, and 16 octets long
    s
}

fn validity(years: u32, clamp: Option<OffsetDateTime>) -> Result<(OffsetDateTime, OffsetDateTime), CliError> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).map_err(|e| CliError::Ceremony(e.to_string()))?;
    let year = now.year() + years as i32;
    let end = now
        .replace_year(year)
        .or_else(|_| now.replace_day(28).and_then(|d| d.replace_year(year)))
        .map_err(|e| CliError::Ceremony(format!("validity_years {years}: {e}")))?;
    Ok((now, clamp.map_or(end, |c| end.min(c))))
}

/// Reads an existing certificate and checks it certifies `key`.
fn existing_cert(path: &Path, key: &HsmKey) -> Result<Option<Vec<u8>>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let block = pem::parse(&text).map_err(|e| CliError::Ceremony(format!("{}: {e}", path.display())))?;
    let der = block.contents().to_vec();
    let cert =
        x509_cert::Certificate::from_der(&der).map_err(|e| CliError::Ceremony(format!("{}: {e}", path.display())))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| CliError::Ceremony(format!("{}: {e}", path.display())))?;
    if spki != key.subject_public_key_info_der() {
        return Err(CliError::Ceremony(format!(
            "{} exists but does not certify the HSM key {:?}; refusing to overwrite it (move it away to re-issue)",
            path.display(),
            key.label()
        )));
    }
    Ok(Some(der))
}

fn write_pem(path: &Path, der: &[u8]) -> Result<(), CliError> {
    let text = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn describe(
    name: &'static str,
    entity: &CaEntity,
    key: Outcome,
    certificate: Outcome,
    path: PathBuf,
    der: &[u8],
) -> CaOutcome {
    let subject =
        x509_cert::Certificate::from_der(der).map(|c| c.tbs_certificate().subject().to_string()).unwrap_or_default();
    CaOutcome {
        name,
        key_label: entity.key_label.clone(),
        key,
        certificate,
        path,
        fingerprint: hex::encode(Sha256::digest(der)),
        subject,
    }
}

/// Runs the ceremony. Blocking (HSM key generation).
pub fn run(cfg: &Config, hsm: &Hsm) -> Result<Vec<CaOutcome>, CliError> {
    let dir = cfg.cert_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let alg = cfg.ca.key_algorithm;
    let mut out = Vec::new();

    let root = &cfg.ca.root;
    let (root_key, root_key_outcome) = key_for(hsm, root, alg)?;
    let root_path = dir.join(&root.file_name);
    let (root_der, root_outcome) = match existing_cert(&root_path, &root_key)? {
        Some(der) => (der, Outcome::Kept),
        None => {
            let (nb, na) = validity(root.validity_years, None)?;
            let params = profile::ca_params(root, true, &random_serial(), &root_key, nb, na)?;
            let der = params.self_signed(&root_key)?.der().to_vec();
            write_pem(&root_path, &der)?;
            (der, Outcome::Created)
        }
    };
    out.push(describe("root", root, root_key_outcome, root_outcome, root_path, &root_der));
    let root_ca = profile::IssuingCa::from_der(&root_der)?;

    for (name, entity) in [("signing", &cfg.ca.signing), ("authentication", &cfg.ca.authentication)] {
        let (key, key_outcome) = key_for(hsm, entity, alg)?;
        let path = dir.join(&entity.file_name);
        let (der, outcome) = match existing_cert(&path, &key)? {
            Some(der) => (der, Outcome::Kept),
            None => {
                let (nb, na) = validity(entity.validity_years, Some(root_ca.not_after()))?;
                let params = profile::ca_params(entity, false, &random_serial(), &key, nb, na)?;
                let tbs = profile::tbs_certificate(&params, &key, &root_ca)?;
                let sig = root_key.sign(&tbs)?;
                let der = profile::assemble_certificate(&tbs, &sig)?;
                write_pem(&path, &der)?;
                (der, Outcome::Created)
            }
        };
        out.push(describe(name, entity, key_outcome, outcome, path, &der));
    }
    Ok(out)
}

/// The AES key that encrypts escrowed card PINs; created once, kept after.
pub fn pin_escrow_key(cfg: &Config, hsm: &Hsm) -> Result<Outcome, CliError> {
    let label = &cfg.issuance.pin_escrow_key_label;
    if hsm.find_aes_key(label)?.is_some() {
        return Ok(Outcome::Kept);
    }
    hsm.generate_aes_key(label, 256)?;
    Ok(Outcome::Created)
}

/// HSM label of the key that signs audit-log checkpoints (`hpki-ca audit checkpoint`).
pub const AUDIT_CHECKPOINT_KEY_LABEL: &str = "audit-checkpoint";
/// Its public half, SubjectPublicKeyInfo PEM in the certificate folder, for `hpki-ca audit verify`.
pub const AUDIT_CHECKPOINT_PUB_FILE: &str = "audit-checkpoint.pub.pem";

/// The key pair that signs audit checkpoints (the CA key algorithm); created
/// once, kept after. Its public key is written next to the CA certificates so
/// checkpoints verify without the HSM; an existing file for another key is
/// refused rather than overwritten (it may be needed for older checkpoints).
pub fn audit_checkpoint_key(cfg: &Config, hsm: &Hsm) -> Result<(Outcome, PathBuf), CliError> {
    let (key, outcome) = match hsm.find_key(AUDIT_CHECKPOINT_KEY_LABEL)? {
        Some(k) => (k, Outcome::Kept),
        None => {
            let alg = key_algorithm(cfg.ca.key_algorithm);
            (hsm.generate_key_pair(AUDIT_CHECKPOINT_KEY_LABEL, alg)?, Outcome::Created)
        }
    };
    let dir = cfg.cert_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(AUDIT_CHECKPOINT_PUB_FILE);
    let spki = key.subject_public_key_info_der();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let block = pem::parse(&text).map_err(|e| CliError::Ceremony(format!("{}: {e}", path.display())))?;
            if block.tag() != "PUBLIC KEY" || block.contents() != spki.as_slice() {
                return Err(CliError::Ceremony(format!(
                    "{} exists but is not the public key of the HSM key {AUDIT_CHECKPOINT_KEY_LABEL:?}; refusing to \
                     overwrite it (older checkpoints may need it: move it away)",
                    path.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
            let tmp = path.with_extension("pem.tmp");
            std::fs::write(&tmp, text).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        Err(e) => return Err(io(&path)(e)),
    }
    Ok((outcome, path))
}
