//! The ceremony's own audit entries, and how they name keys and certificates.

use std::path::Path;

use config::{Config, TrustDomain};
use der::Decode;
use hsm::HsmKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::{actions, Store, StoreError};

use super::keys::Outcome;
use crate::error::{io, CliError};

pub(super) fn key_verb(o: &Outcome) -> &'static str {
    match o {
        Outcome::Created => "generated",
        Outcome::Kept => "found",
    }
}

pub(super) fn certificate_verb(o: &Outcome) -> &'static str {
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
        .and_then(timefmt::rfc3339_checked)
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
    /// "ceremony" or "arl".
    operation: &'static str,
    /// Where the entries go, for the summary line.
    pub(super) database: String,
    pub(super) first: Option<u64>,
    pub(super) last: u64,
    keys_generated: u32,
    keys_found: u32,
    certificates_written: u32,
    certificates_kept: u32,
}

impl CeremonyLog {
    pub fn open(cfg: &Config, operator: &str, operation: &'static str) -> Result<CeremonyLog, CliError> {
        let location = registry::store_location(cfg)?;
        let database = match &location {
            store::Location::Sled { path, .. } => {
                std::fs::create_dir_all(path).map_err(io(path))?;
                path.display().to_string()
            }
            store::Location::Postgres { .. } => "the PostgreSQL database of [store] postgres_url".to_owned(),
        };
        let store = match Store::open_at(&location) {
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
            database,
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
    pub(super) fn start(&mut self, cfg: &Config, config_path: Option<&Path>, request: Value) -> Result<(), CliError> {
        let source = registry::ConfigSource::read(config_path).map_err(CliError::CeremonyConfig)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned());
        let mut detail = json!({
            "operation": self.operation,
            "operator": self.operator,
            "host": host,
            "hpki_ca_version": env!("CARGO_PKG_VERSION"),
            "tokens": TrustDomain::ALL.iter().map(|d| (d.name().to_owned(), Value::from(cfg.token_label(*d)))).collect::<serde_json::Map<String, Value>>(),
            "hsm_module": cfg.hsm.module.display().to_string(),
            "key_algorithm": format!("{:?}", cfg.ca.key_algorithm),
            "cert_dir": cfg.cert_dir().display().to_string(),
            "config_path": source.path.as_ref().map(|p| p.display().to_string()),
            "config_sha256": source.sha256,
        });
        if let (Value::Object(d), Value::Object(r)) = (&mut detail, request) {
            d.extend(r);
        }
        self.append(actions::CEREMONY_START, self.operation, &detail)
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
    pub(super) fn aes_key(&mut self, role: &str, label: &str, bits: u32, outcome: &str) -> Result<(), CliError> {
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
    pub(super) fn arl(&mut self, arl: &crl::PublishedArl) -> Result<(), CliError> {
        let revocation = arl.revoked.as_ref().map(|r| {
            json!({
                "serial": r.serial,
                "reason": r.reason.name(),
                "revoked_at": timefmt::rfc3339_checked(r.revoked_at),
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

    pub(super) fn end(&mut self, result: &Result<(), CliError>) -> Result<(), CliError> {
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
