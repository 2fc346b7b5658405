//! Test and benchmark fixtures (feature `bench`, and unit tests): a SoftHSM
//! token with two self-signed issuing CAs, their responder certificates,
//! leaf certificates with chosen serials, and an in-memory registry stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use config::Config;
use hsm::{Hsm, HsmKey};
use profile::IssuingCa;
use rcgen::{CertificateParams, DnType, IsCa};
use time::{Duration, OffsetDateTime};

use crate::error::OcspError;
use crate::metrics::Metrics;
use crate::responder::{Responder, Settings};
use crate::responder_cert::{self, ensure_responder_certificates, load_issuing_ca};
use crate::source::{AuditError, AuditEvent, AuditSink, BoxFuture, CertificateSource};
use crate::status::CertState;

/// A CA on the process's shared test token, with its files in a temp folder.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub hsm: Hsm,
    leaf_key: HsmKey,
}

fn key_algorithm(a: config::KeyAlgorithm) -> hsm::KeyAlgorithm {
    match a {
        config::KeyAlgorithm::EcdsaP256 => hsm::KeyAlgorithm::EcdsaP256,
        config::KeyAlgorithm::Rsa2048 => hsm::KeyAlgorithm::Rsa { bits: 2048 },
        config::KeyAlgorithm::Rsa3072 => hsm::KeyAlgorithm::Rsa { bits: 3072 },
        config::KeyAlgorithm::Rsa4096 => hsm::KeyAlgorithm::Rsa { bits: 4096 },
    }
}

/// Makes two self-signed issuing CAs (keys in the HSM) and their responder certificates.
pub fn test_ca(alg: config::KeyAlgorithm) -> TestCa {
    let hsm = hsm::testing::shared_hsm();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { state_dir: dir.path().to_owned(), ..Config::default() };
    cfg.ca.key_algorithm = alg;
    cfg.ca.signing.key_label = hsm::testing::unique_label("sign-ca");
    cfg.ca.authentication.key_label = hsm::testing::unique_label("auth-ca");
    cfg.ocsp.signing_responder_key_label = hsm::testing::unique_label("ocsp-sign");
    cfg.ocsp.authentication_responder_key_label = hsm::testing::unique_label("ocsp-auth");
    let cert_dir = cfg.cert_dir();
    std::fs::create_dir_all(&cert_dir).unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for (n, entity) in [&cfg.ca.signing, &cfg.ca.authentication].into_iter().enumerate() {
        let key = hsm.generate_key_pair(&entity.key_label, key_algorithm(alg)).unwrap();
        let serial = [0x11, 0x22, n as u8 + 1];
        let params =
            profile::ca_params(entity, true, &serial, &key, now - Duration::hours(1), now + Duration::days(3650))
                .unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
        std::fs::write(cert_dir.join(&entity.file_name), pem).unwrap();
    }
    ensure_responder_certificates(&cfg, &hsm, &hsm, Duration::days(1)).unwrap();
    let leaf_key = hsm.generate_key_pair(&hsm::testing::unique_label("leaf"), hsm::KeyAlgorithm::EcdsaP256).unwrap();
    TestCa { dir, cfg, hsm, leaf_key }
}

impl TestCa {
    /// Issuing CA `i` (0 signing, 1 authentication) and its key.
    pub fn issuing(&self, i: usize) -> (IssuingCa, HsmKey) {
        let entity = [&self.cfg.ca.signing, &self.cfg.ca.authentication][i];
        load_issuing_ca(&self.cfg, &self.hsm, entity).unwrap()
    }

    pub fn ca_path(&self, i: usize) -> PathBuf {
        let entity = [&self.cfg.ca.signing, &self.cfg.ca.authentication][i];
        self.cfg.cert_dir().join(&entity.file_name)
    }

    pub fn responder_path(&self, i: usize) -> PathBuf {
        let f = [&self.cfg.ocsp.signing_responder_file, &self.cfg.ocsp.authentication_responder_file][i];
        self.cfg.cert_dir().join(f)
    }

    /// The registry's issuer_label of CA `i`.
    pub fn label(&self, i: usize) -> String {
        [&self.cfg.ca.signing, &self.cfg.ca.authentication][i].key_label.clone()
    }

    /// A leaf certificate with `serial` under CA `i`, written as PEM; returns (DER, path).
    pub fn issue_leaf(&self, i: usize, serial: &[u8]) -> (Vec<u8>, PathBuf) {
        let (ca, ca_key) = self.issuing(i);
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("leaf {}", hex::encode(serial)));
        params.serial_number = Some(profile::serial_number(serial).unwrap());
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        params.is_ca = IsCa::NoCa;
        let tbs = profile::tbs_certificate(&params, &self.leaf_key, &ca).unwrap();
        let sig = ca_key.sign(&tbs).unwrap();
        let der = profile::assemble_certificate(&tbs, &sig).unwrap();
        let path = self.dir.path().join(format!("leaf-{}.pem", hex::encode(serial)));
        std::fs::write(&path, pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()))).unwrap();
        (der, path)
    }

    /// A responder over this CA's issuers, with `source` as the registry.
    pub fn responder(&self, settings: Settings, source: Arc<dyn CertificateSource>) -> Responder {
        let loaded = responder_cert::load(&self.cfg, &self.hsm).unwrap();
        let slots = crate::serve::slots(loaded).unwrap();
        Responder::new(settings, slots, source, Arc::new(Metrics::default()))
    }

    pub fn settings(&self) -> Settings {
        Settings::from_config(&self.cfg.ocsp)
    }

    /// Replaces responder certificate `i` with one for the same key and CA
    /// that expires within a day, so the next renewal check renews it.
    /// Returns its DER.
    pub fn make_responder_due(&self, i: usize) -> Vec<u8> {
        let mut short = self.cfg.clone();
        short.ocsp.responder_validity_days = 1;
        let entity = [&self.cfg.ca.signing, &self.cfg.ca.authentication][i];
        let label = [&self.cfg.ocsp.signing_responder_key_label, &self.cfg.ocsp.authentication_responder_key_label][i];
        let (ca, ca_key) = self.issuing(i);
        let key = self.hsm.key(label).unwrap();
        let der = responder_cert::issue(&short, entity, &ca, &ca_key, &key, OffsetDateTime::now_utc()).unwrap();
        // Renamed into place: a running responder never reads half a file.
        let path = self.responder_path(i);
        let tmp = path.with_extension("pem.test.tmp");
        std::fs::write(&tmp, pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        der
    }
}

/// An in-memory audit log standing in for the registry's AppendAudit:
/// records every entry taken; `down` answers as a registry that is away,
/// `refuse` as one that rejects the entry.
#[derive(Default)]
pub struct RecordingAudit {
    pub entries: Mutex<Vec<AuditEvent>>,
    pub attempts: AtomicUsize,
    pub down: AtomicBool,
    pub refuse: AtomicBool,
}

impl RecordingAudit {
    pub fn entries(&self) -> Vec<AuditEvent> {
        self.entries.lock().unwrap().clone()
    }
}

impl AuditSink for RecordingAudit {
    fn append_audit(&self, event: AuditEvent) -> BoxFuture<'_, Result<u64, AuditError>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let result = if self.down.load(Ordering::SeqCst) {
            Err(AuditError::Unavailable("registry down (test)".into()))
        } else if self.refuse.load(Ordering::SeqCst) {
            Err(AuditError::Refused("InvalidArgument (test)".into()))
        } else {
            let mut entries = self.entries.lock().unwrap();
            entries.push(event);
            Ok(entries.len() as u64)
        };
        Box::pin(async move { result })
    }
}

/// An in-memory registry: serial hex → (issuer label, state).
#[derive(Default)]
pub struct MapSource {
    map: Mutex<HashMap<String, (String, CertState)>>,
    pub calls: AtomicUsize,
    pub fail: AtomicBool,
}

impl MapSource {
    pub fn set(&self, serial: &[u8], label: &str, state: CertState) {
        self.map.lock().unwrap().insert(hex::encode(serial), (label.to_owned(), state));
    }
}

impl CertificateSource for MapSource {
    fn certificate(&self, serial_hex: String) -> BoxFuture<'_, Result<Option<(String, CertState)>, OcspError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let result = if self.fail.load(Ordering::SeqCst) {
            Err(OcspError::Registry("registry down (test)".into()))
        } else {
            Ok(self.map.lock().unwrap().get(&serial_hex).cloned())
        };
        Box::pin(async move { result })
    }
}
