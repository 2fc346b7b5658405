//! The root and issuing CA certificates: made once, kept after while they
//! certify the HSM key.

use std::path::{Path, PathBuf};

use config::{CaEntity, Config};
use der::Decode;
use hsm::{Hsm, HsmKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::audit_log::{certificate_verb, key_verb, CeremonyLog};
use super::keys::{key_for, Outcome};
use crate::error::{io, CliError};

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
fn random_serial() -> [u8; 16] {
    let mut s: [u8; 16] = rand::random();
    s[0] = (s[0] & 0x7f) | 0x01; // positive, and 16 octets long
    s
}

fn validity(years: u32, clamp: Option<OffsetDateTime>) -> Result<(OffsetDateTime, OffsetDateTime), CliError> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let year = now.year() + years as i32;
    let end = now
        .replace_year(year)
        .or_else(|_| now.replace_day(28).and_then(|d| d.replace_year(year)))
        .map_err(|source| CliError::Validity { years, source })?;
    Ok((now, clamp.map_or(end, |c| end.min(c))))
}

/// Reads an existing CA certificate and checks it certifies `key`.
fn existing_cert(path: &Path, key: &HsmKey) -> Result<Option<Vec<u8>>, CliError> {
    let ca = match profile::IssuingCa::read_pem_file(path) {
        Ok(ca) => ca,
        Err(profile::CaFileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(profile::CaFileError::Read { source, .. }) => return Err(io(path)(source)),
        Err(profile::CaFileError::Invalid(e)) => return Err(CliError::Ceremony(format!("{}: {e}", path.display()))),
    };
    if !ca.certifies(&key.subject_public_key_info_der()) {
        return Err(CliError::Ceremony(format!(
            "{} exists but does not certify the HSM key {:?}; refusing to overwrite it (move it away to re-issue)",
            path.display(),
            key.label()
        )));
    }
    Ok(Some(ca.certificate_der().to_vec()))
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

/// Runs the ceremony for the three CAs, recording each key and certificate
/// in `log` as soon as it is there: the root key in the `root` token, the issuing
/// CA keys in the `issuing` token. Blocking (HSM key generation).
pub fn run(cfg: &Config, root_token: &Hsm, issuing: &Hsm, log: &mut CeremonyLog) -> Result<Vec<CaOutcome>, CliError> {
    let dir = cfg.cert_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let alg = cfg.ca.key_algorithm;
    // Names, policies and URLs checked before any key is made.
    let cas = cfg.ca.profiles()?;
    let mut out = Vec::new();

    let root = &cfg.ca.root;
    let (root_key, root_key_outcome) = key_for(root_token, root, alg)?;
    log.key("root", &root_key, key_verb(&root_key_outcome))?;
    let root_path = dir.join(&root.file_name);
    let (root_der, root_outcome) = match existing_cert(&root_path, &root_key)? {
        Some(der) => (der, Outcome::Kept),
        None => {
            let (nb, na) = validity(root.validity_years, None)?;
            let params = profile::ca_params(&cas.root, true, &random_serial(), &root_key, nb, na)?;
            let der = params.self_signed(&root_key)?.der().to_vec();
            write_pem(&root_path, &der)?;
            (der, Outcome::Created)
        }
    };
    log.certificate("root", &root.key_label, &root_path, &root_der, certificate_verb(&root_outcome))?;
    out.push(describe("root", root, root_key_outcome, root_outcome, root_path, &root_der));
    let root_ca = profile::IssuingCa::from_der(&root_der)?;

    for (name, entity, ca) in
        [("signing", &cfg.ca.signing, &cas.signing), ("authentication", &cfg.ca.authentication, &cas.authentication)]
    {
        let (key, key_outcome) = key_for(issuing, entity, alg)?;
        log.key(name, &key, key_verb(&key_outcome))?;
        let path = dir.join(&entity.file_name);
        let (der, outcome) = match existing_cert(&path, &key)? {
            Some(der) => (der, Outcome::Kept),
            None => {
                let (nb, na) = validity(entity.validity_years, Some(root_ca.not_after()))?;
                let params = profile::ca_params(ca, false, &random_serial(), &key, nb, na)?;
                let tbs = profile::tbs_certificate(&params, &key, &root_ca)?;
                let sig = root_key.sign(&tbs)?;
                let der = profile::assemble_certificate(&tbs, &sig)?;
                write_pem(&path, &der)?;
                (der, Outcome::Created)
            }
        };
        log.certificate(name, &entity.key_label, &path, &der, certificate_verb(&outcome))?;
        out.push(describe(name, entity, key_outcome, outcome, path, &der));
    }
    Ok(out)
}
