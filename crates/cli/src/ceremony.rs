//! The key ceremony: CA keys are generated inside the token (never outside),
//! then the root certificate and the two issuing CA certificates are made and
//! written as PEM. Re-running it keeps every existing key and certificate.
//!
//! Every run is audited (see [`CeremonyLog`]): "ceremony.start" (who, the
//! token, the config digest), one "ceremony.key" per key generated or found
//! (label, algorithm, SPKI SHA-256), one "ceremony.certificate" per CA or OCSP
//! responder certificate written or kept (serial, subject, issuer, validity,
//! SHA-256), "ceremony.arl" for the root's first ARL and "ceremony.end" with
//! the outcome, "ok" or the error.
//!
//! The other operations that sign with CA keys outside the running CA are
//! audited the same way, each "ceremony.start" naming its operation:
//! `hpki-ca arl` (the root's ARL, maybe revoking an issuing CA certificate;
//! [`arl`]) and `hpki-ca ocsp-certs` (the delegated OCSP responder
//! certificates; [`ocsp_certs`]).

use std::path::{Path, PathBuf};

use config::{CaEntity, Config};
use der::{Decode, Encode};
use hsm::{Hsm, HsmKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::{actions, Store, StoreError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{io, CliError};
use crate::launcher::say;

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

/// Runs the ceremony for the three CAs, recording each key and certificate
/// in `log` as soon as it is there. Blocking (HSM key generation).
pub fn run(cfg: &Config, hsm: &Hsm, log: &mut CeremonyLog) -> Result<Vec<CaOutcome>, CliError> {
    let dir = cfg.cert_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let alg = cfg.ca.key_algorithm;
    let mut out = Vec::new();

    let root = &cfg.ca.root;
    let (root_key, root_key_outcome) = key_for(hsm, root, alg)?;
    log.key("root", &root_key, key_verb(&root_key_outcome))?;
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
    log.certificate("root", &root.key_label, &root_path, &root_der, certificate_verb(&root_outcome))?;
    out.push(describe("root", root, root_key_outcome, root_outcome, root_path, &root_der));
    let root_ca = profile::IssuingCa::from_der(&root_der)?;

    for (name, entity) in [("signing", &cfg.ca.signing), ("authentication", &cfg.ca.authentication)] {
        let (key, key_outcome) = key_for(hsm, entity, alg)?;
        log.key(name, &key, key_verb(&key_outcome))?;
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
        log.certificate(name, &entity.key_label, &path, &der, certificate_verb(&outcome))?;
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
pub fn audit_checkpoint_key(cfg: &Config, hsm: &Hsm) -> Result<(HsmKey, Outcome, PathBuf), CliError> {
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
    Ok((key, outcome, path))
}

// ---------------------------------------------------------------------------
// The command and its audit trail

/// `hpki-ca ceremony`: the keys and certificates, each step audited. The
/// database is opened (and "ceremony.start" written) before the HSM is
/// touched, so no key is made that the log cannot show; a failure is recorded
/// as "ceremony.end" with the error before it is returned.
pub fn execute(cfg: &Config, config_path: Option<&Path>, operator: Option<String>) -> Result<(), CliError> {
    audited(cfg, config_path, operator, "ceremony", json!({}), steps)
}

/// `hpki-ca arl`: publishes the root's next ARL, first revoking `revoke`
/// (serial hex, reason) when given, as an audited operation: "ceremony.start"
/// (operation "arl", the request), "ceremony.arl" (number, entries, SHA-256,
/// file and URL, and for a revocation the serial, reason and whether it was
/// newly revoked) and "ceremony.end". The root key signs only here and in
/// the ceremony, with the services stopped.
pub fn arl(
    cfg: &Config,
    config_path: Option<&Path>,
    operator: Option<String>,
    revoke: Option<(String, crl::CrlReason)>,
) -> Result<(), CliError> {
    let request = match &revoke {
        Some((serial, reason)) => json!({ "revoke_serial": serial, "reason": reason }),
        None => json!({}),
    };
    audited(cfg, config_path, operator, "arl", request, |cfg, log| {
        let hsm = crate::open_hsm(cfg)?;
        let wanted = revoke.as_ref().map(|(serial, reason)| (serial.as_str(), *reason));
        let arl = crl::publish_arl(cfg, &hsm, wanted).map_err(|e| CliError::Crl(e.to_string()))?;
        log.arl(&arl)?;
        say(format_args!(
            "ARL number {}  entries {}  next update {}\n    {}  ->  {}\n    sha256 {}",
            arl.crl_number,
            arl.entries,
            arl.next_update,
            arl.path.display(),
            arl.url,
            arl.sha256
        ));
        if revoke.is_some() && !arl.newly_revoked {
            say(format_args!("(already revoked; the first time and reason stand)"));
        }
        Ok(())
    })
}

/// `hpki-ca ocsp-certs`: issues or renews the delegated OCSP responder
/// certificates with the issuing CA keys, as an audited operation:
/// "ceremony.start" (operation "ocsp-certs"), one "ceremony.key" and one
/// "ceremony.certificate" per responder, as the ceremony logs them, and
/// "ceremony.end".
pub fn ocsp_certs(cfg: &Config, config_path: Option<&Path>, operator: Option<String>) -> Result<(), CliError> {
    audited(cfg, config_path, operator, "ocsp-certs", json!({}), |cfg, log| {
        let hsm = crate::open_hsm(cfg)?;
        responders(cfg, &hsm, log)
    })
}

/// Runs `work` between "ceremony.start" (naming `operation`, with `request`
/// merged into its detail) and "ceremony.end" (ok, or its error). The log is
/// opened first: while a registry holds the database nothing else happens.
fn audited(
    cfg: &Config,
    config_path: Option<&Path>,
    operator: Option<String>,
    operation: &'static str,
    request: Value,
    work: impl FnOnce(&Config, &mut CeremonyLog) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let operator = operator_name(operator, std::env::var("USER").ok().or_else(|| std::env::var("LOGNAME").ok()))?;
    let mut log = CeremonyLog::open(cfg, &operator, operation)?;
    log.start(cfg, config_path, request)?;
    let result = work(cfg, &mut log);
    let ended = log.end(&result);
    // The operation's own error first; a log that failed to close is reported otherwise.
    result?;
    ended?;
    say(format_args!(
        "{:<15} entries {}..{} written to {} (operator {operator})",
        "audit log",
        log.first.unwrap_or(0),
        log.last,
        log.db_path.display()
    ));
    Ok(())
}

fn steps(cfg: &Config, log: &mut CeremonyLog) -> Result<(), CliError> {
    let hsm = crate::open_hsm(cfg)?;
    for ca in run(cfg, &hsm, log)? {
        println!(
            "{:<15} key {:<8} ({:?})  certificate {:<7} {}\n{:<15} subject {}\n{:<15} sha256 {}",
            ca.name,
            format!("{:?}", ca.key).to_lowercase(),
            ca.key_label,
            format!("{:?}", ca.certificate).to_lowercase(),
            ca.path.display(),
            "",
            ca.subject,
            "",
            ca.fingerprint
        );
    }
    let escrow = pin_escrow_key(cfg, &hsm)?;
    log.aes_key("pin-escrow", &cfg.issuance.pin_escrow_key_label, 256, key_verb(&escrow))?;
    say(format_args!(
        "{:<15} key {:<8} ({:?})  AES-256, PIN escrow",
        "pin-escrow",
        format!("{escrow:?}").to_lowercase(),
        cfg.issuance.pin_escrow_key_label
    ));
    let (key, checkpoint, pub_path) = audit_checkpoint_key(cfg, &hsm)?;
    log.key("audit-checkpoint", &key, key_verb(&checkpoint))?;
    say(format_args!(
        "{:<15} key {:<8} ({:?})  audit checkpoints, public key {}",
        "audit",
        format!("{checkpoint:?}").to_lowercase(),
        AUDIT_CHECKPOINT_KEY_LABEL,
        pub_path.display()
    ));
    responders(cfg, &hsm, log)?;
    // The root's first ARL comes with the ceremony; `hpki-ca arl` makes the next ones.
    if !cfg.cert_dir().join("arl.json").exists() {
        let arl = crl::publish_arl(cfg, &hsm, None).map_err(|e| CliError::Crl(e.to_string()))?;
        log.arl(&arl)?;
        say(format_args!("{:<15} ARL number {} written to {}", "root", arl.crl_number, arl.path.display()));
    }
    Ok(())
}

/// The OCSP responder keys and certificates (issued, renewed or kept), each
/// logged: its key as "ceremony.key", its certificate as "ceremony.certificate".
fn responders(cfg: &Config, hsm: &Hsm, log: &mut CeremonyLog) -> Result<(), CliError> {
    for r in crate::print_responders(cfg, hsm)? {
        let role = format!("ocsp-{}", r.ca);
        let key = hsm.find_key(&r.key_label)?.ok_or_else(|| {
            CliError::Ceremony(format!("the OCSP responder key {:?} vanished from the HSM", r.key_label))
        })?;
        let key_word = if r.key == ocsp::Outcome::Created { "generated" } else { "found" };
        log.key(&role, &key, key_word)?;
        let word = match r.certificate {
            ocsp::Outcome::Created => "written",
            ocsp::Outcome::Kept => "kept",
            ocsp::Outcome::Renewed => "renewed",
        };
        log.certificate(&role, &r.key_label, &r.path, &r.der, word)?;
    }
    Ok(())
}

/// Who the entries name: `--operator` (or HPKI_OPERATOR), else the OS user,
/// else "ceremony". Printable, trimmed, at most 128 characters.
fn operator_name(given: Option<String>, os_user: Option<String>) -> Result<String, CliError> {
    let name = given.or(os_user.filter(|u| !u.trim().is_empty())).unwrap_or_else(|| "ceremony".into());
    let bad = |why: &str| Err(CliError::Ceremony(format!("--operator {name:?} {why}")));
    if name.trim().is_empty() {
        return bad("is empty");
    }
    if name.trim() != name || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return bad("must be trimmed, printable and at most 128 characters");
    }
    Ok(name)
}

fn key_verb(o: &Outcome) -> &'static str {
    match o {
        Outcome::Created => "generated",
        Outcome::Kept => "found",
    }
}

fn certificate_verb(o: &Outcome) -> &'static str {
    match o {
        Outcome::Created => "written",
        Outcome::Kept => "kept",
    }
}

/// "rsa-2048" or "ecdsa-p256", as entries name key algorithms.
fn algorithm_name(alg: hsm::KeyAlgorithm) -> String {
    match alg {
        hsm::KeyAlgorithm::Rsa { bits } => format!("rsa-{bits}"),
        hsm::KeyAlgorithm::EcdsaP256 => "ecdsa-p256".into(),
    }
}

fn rfc3339(t: x509_cert::time::Time) -> String {
    i64::try_from(t.to_unix_duration().as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unrepresentable".into())
}

/// The detail of a "ceremony.certificate" entry (without role and outcome),
/// and the serial (hex) that is its subject.
fn certificate_detail(der: &[u8]) -> Result<(String, Value), CliError> {
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| CliError::Ceremony(format!("certificate to record does not parse: {e}")))?;
    let tbs = cert.tbs_certificate();
    let serial = hex::encode(tbs.serial_number().as_bytes());
    let validity = tbs.validity();
    let detail = json!({
        "serial": serial,
        "subject": tbs.subject().to_string(),
        "issuer": tbs.issuer().to_string(),
        "not_before": rfc3339(validity.not_before),
        "not_after": rfc3339(validity.not_after),
        "sha256": hex::encode(Sha256::digest(der)),
    });
    Ok((serial, detail))
}

/// The ceremony's audit trail, written straight into the registry database.
///
/// Why directly: the ceremony runs while the services are down (`make run`:
/// init-token, ceremony, then run), and the registry, the database's only
/// writer, is not there to ask. sled locks the database folder, so while a
/// registry holds it this open fails and the ceremony stops before it
/// touches the HSM (stop the CA first) instead of making keys the log does not
/// show. Entries are appended through the same store call (transaction, hash
/// chain) as every other entry, with actions AppendAudit refuses, so no gRPC
/// client can forge a ceremony entry.
pub struct CeremonyLog {
    store: Store,
    operator: String,
    /// "ceremony", "arl" or "ocsp-certs".
    operation: &'static str,
    db_path: PathBuf,
    first: Option<u64>,
    last: u64,
    keys_generated: u32,
    keys_found: u32,
    certificates_written: u32,
    certificates_kept: u32,
}

impl CeremonyLog {
    pub fn open(cfg: &Config, operator: &str, operation: &'static str) -> Result<CeremonyLog, CliError> {
        let db_path = cfg.db_path();
        std::fs::create_dir_all(&db_path).map_err(io(&db_path))?;
        let store = match Store::open(&db_path) {
            Ok(s) => s,
            Err(StoreError::Locked { path }) => {
                return Err(CliError::Ceremony(format!(
                    "the registry database {} is in use (is the CA running?): stop it before `hpki-ca {operation}`, \
                     which records its audit entries in that database itself",
                    path.display()
                )))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(CeremonyLog {
            store,
            operator: operator.to_owned(),
            operation,
            db_path,
            first: None,
            last: 0,
            keys_generated: 0,
            keys_found: 0,
            certificates_written: 0,
            certificates_kept: 0,
        })
    }

    fn append(&mut self, action: &str, subject: &str, detail: &Value) -> Result<(), CliError> {
        let record = self.store.append_ceremony_audit(&self.operator, action, subject, &detail.to_string())?;
        self.first.get_or_insert(record.sequence);
        self.last = record.sequence;
        Ok(())
    }

    /// `request`'s fields (what the operation was asked to do) join the detail.
    fn start(&mut self, cfg: &Config, config_path: Option<&Path>, request: Value) -> Result<(), CliError> {
        let source = registry::ConfigSource::read(config_path).map_err(|e| CliError::Ceremony(e.to_string()))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned());
        let mut detail = json!({
            "operation": self.operation,
            "operator": self.operator,
            "host": host,
            "hpki_ca_version": env!("CARGO_PKG_VERSION"),
            "token_label": cfg.hsm.token_label,
            "hsm_module": cfg.hsm.module.display().to_string(),
            "key_algorithm": format!("{:?}", cfg.ca.key_algorithm),
            "cert_dir": cfg.cert_dir().display().to_string(),
            "config_path": source.path.as_ref().map(|p| p.display().to_string()),
            "config_sha256": source.sha256,
        });
        if let (Value::Object(d), Value::Object(r)) = (&mut detail, request) {
            d.extend(r);
        }
        self.append(actions::CEREMONY_START, &cfg.hsm.token_label, &detail)
    }

    /// A key pair generated in, or found in, the HSM.
    pub fn key(&mut self, role: &str, key: &HsmKey, outcome: &str) -> Result<(), CliError> {
        self.count_key(outcome);
        let detail = json!({
            "role": role,
            "label": key.label(),
            "algorithm": algorithm_name(key.algorithm()),
            "outcome": outcome,
            "spki_sha256": hex::encode(Sha256::digest(key.subject_public_key_info_der())),
        });
        self.append(actions::CEREMONY_KEY, key.label(), &detail)
    }

    /// A secret key (no public half to fingerprint).
    fn aes_key(&mut self, role: &str, label: &str, bits: u32, outcome: &str) -> Result<(), CliError> {
        self.count_key(outcome);
        let detail = json!({ "role": role, "label": label, "algorithm": format!("aes-{bits}"), "outcome": outcome });
        self.append(actions::CEREMONY_KEY, label, &detail)
    }

    fn count_key(&mut self, outcome: &str) {
        match outcome {
            "generated" => self.keys_generated += 1,
            _ => self.keys_found += 1,
        }
    }

    /// A certificate written (or renewed) or kept, with the key it certifies.
    pub fn certificate(
        &mut self,
        role: &str,
        key_label: &str,
        path: &Path,
        der: &[u8],
        outcome: &str,
    ) -> Result<(), CliError> {
        match outcome {
            "kept" => self.certificates_kept += 1,
            _ => self.certificates_written += 1,
        }
        let (serial, mut detail) = certificate_detail(der)?;
        if let Value::Object(map) = &mut detail {
            map.insert("role".into(), role.into());
            map.insert("key_label".into(), key_label.into());
            map.insert("file".into(), path.display().to_string().into());
            map.insert("outcome".into(), outcome.into());
        }
        self.append(actions::CEREMONY_CERTIFICATE, &serial, &detail)
    }

    /// An ARL published; with a revocation requested, the serial, the reason
    /// and revocation time that stand (the first ones when it was already
    /// listed) and whether this run added it.
    fn arl(&mut self, arl: &crl::PublishedArl) -> Result<(), CliError> {
        let revocation = arl.revoked.as_ref().map(|r| {
            json!({
                "serial": r.serial,
                "reason": r.reason,
                "revoked_at": OffsetDateTime::from_unix_timestamp(r.revoked_at).ok().and_then(|t| t.format(&Rfc3339).ok()),
                "newly_revoked": arl.newly_revoked,
            })
        });
        let detail = json!({
            "crl_number": arl.crl_number,
            "entries": arl.entries,
            "this_update": arl.this_update,
            "next_update": arl.next_update,
            "url": arl.url,
            "file": arl.path.display().to_string(),
            "sha256": arl.sha256,
            "revocation": revocation,
        });
        self.append(actions::CEREMONY_ARL, &arl.crl_number.to_string(), &detail)
    }

    fn end(&mut self, result: &Result<(), CliError>) -> Result<(), CliError> {
        let (outcome, error) = match result {
            Ok(()) => ("ok", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        let detail = json!({
            "operation": self.operation,
            "outcome": outcome,
            "error": error,
            "keys_generated": self.keys_generated,
            "keys_found": self.keys_found,
            "certificates_written": self.certificates_written,
            "certificates_kept": self.certificates_kept,
        });
        self.append(actions::CEREMONY_END, outcome, &detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_flag_else_the_os_user_else_ceremony() {
        assert_eq!(operator_name(Some("op-ito".into()), Some("root".into())).unwrap(), "op-ito");
        assert_eq!(operator_name(None, Some("alice".into())).unwrap(), "alice");
        assert_eq!(operator_name(None, Some("  ".into())).unwrap(), "ceremony");
        assert_eq!(operator_name(None, None).unwrap(), "ceremony");
        for bad in ["", " op", "op\n", &"x".repeat(129)] {
            assert!(operator_name(Some(bad.into()), None).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_certificate_entry_names_serial_subject_issuer_validity_and_fingerprint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Test Root");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
        params.not_before = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        params.not_after = time::macros::datetime!(2046-01-02 03:04:05 UTC);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let (serial, d) = certificate_detail(&der).unwrap();
        assert_eq!(serial, "01abcd");
        assert_eq!(d["serial"], "01abcd");
        assert_eq!(d["subject"], "CN=Test Root");
        assert_eq!(d["issuer"], "CN=Test Root");
        assert_eq!(d["not_before"], "2026-01-02T03:04:05Z");
        assert_eq!(d["not_after"], "2046-01-02T03:04:05Z");
        assert_eq!(d["sha256"], hex::encode(Sha256::digest(&der)));
        assert!(certificate_detail(&der[..der.len() - 1]).is_err());
    }

    #[test]
    fn key_algorithms_and_outcomes_have_stable_names() {
        assert_eq!(algorithm_name(hsm::KeyAlgorithm::Rsa { bits: 2048 }), "rsa-2048");
        assert_eq!(algorithm_name(hsm::KeyAlgorithm::EcdsaP256), "ecdsa-p256");
        assert_eq!((key_verb(&Outcome::Created), key_verb(&Outcome::Kept)), ("generated", "found"));
        assert_eq!((certificate_verb(&Outcome::Created), certificate_verb(&Outcome::Kept)), ("written", "kept"));
    }

    #[test]
    fn the_ceremony_log_refuses_a_database_another_process_holds_and_chains_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { state_dir: dir.path().to_owned(), ..Config::default() };
        let held = Store::open(&cfg.db_path()).unwrap();
        let err = CeremonyLog::open(&cfg, "op", "arl").err().expect("a held database must be refused");
        assert!(err.to_string().contains("is in use") && err.to_string().contains("`hpki-ca arl`"), "{err}");
        drop(held);

        let mut log = CeremonyLog::open(&cfg, "op-ito", "ceremony").unwrap();
        log.start(&cfg, None, json!({ "revoke_serial": "01ab" })).unwrap();
        log.aes_key("pin-escrow", "pin-escrow", 256, "generated").unwrap();
        log.end(&Err(CliError::Ceremony("HSM gone".into()))).unwrap();
        let entries = log.store.list_audit(1, None).unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["ceremony.start", "ceremony.key", "ceremony.end"]);
        assert!(entries.iter().all(|e| e.actor == "op-ito"));
        let start: Value = serde_json::from_str(&entries[0].detail_json).unwrap();
        assert_eq!((start["operation"].as_str(), start["revoke_serial"].as_str()), (Some("ceremony"), Some("01ab")));
        assert_eq!(start["operator"], "op-ito");
        let end: Value = serde_json::from_str(&entries[2].detail_json).unwrap();
        assert_eq!((end["outcome"].as_str(), end["error"].as_str()), (Some("failed"), Some("HSM gone")));
        assert_eq!(end["operation"], "ceremony");
        assert_eq!(end["keys_generated"], 1);
        assert_eq!((log.first, log.last), (Some(1), 3));
        assert_eq!(log.store.verify_audit_chain().unwrap(), 3);
    }
}
