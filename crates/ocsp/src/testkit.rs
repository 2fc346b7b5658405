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
use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::responder::{Responder, Settings};
use crate::responder_cert::{self, issuing_ca_certificate, RegistryState, ResponderAuthority};
use crate::source::{BoxFuture, CertificateSource};
use crate::status::CertState;

/// A CA on the process's shared test token, with its files in a temp folder.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub hsm: Hsm,
    leaf_key: HsmKey,
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
    let cas = cfg.ca.profiles().unwrap();
    for (n, (entity, ca)) in
        [(&cfg.ca.signing, &cas.signing), (&cfg.ca.authentication, &cas.authentication)].into_iter().enumerate()
    {
        let key = hsm.generate_key_pair(&entity.key_label, hsm::KeyAlgorithm::from(alg)).unwrap();
        let serial = [0x11, 0x22, n as u8 + 1];
        let params =
            profile::ca_params(ca, true, &serial, &key, now - Duration::hours(1), now + Duration::days(3650)).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
        std::fs::write(cert_dir.join(&entity.file_name), pem).unwrap();
    }
    // The responder keys and certificates, as issuance would make them.
    for (entity, label, file) in [
        (&cfg.ca.signing, &cfg.ocsp.signing_responder_key_label, &cfg.ocsp.signing_responder_file),
        (&cfg.ca.authentication, &cfg.ocsp.authentication_responder_key_label, &cfg.ocsp.authentication_responder_file),
    ] {
        let ca = issuing_ca_certificate(&cfg, entity).unwrap();
        let ca_key = hsm.key(&entity.key_label).unwrap();
        let key = hsm.generate_key_pair(label, hsm::KeyAlgorithm::from(alg)).unwrap();
        let der = responder_cert::issue_directly(&cfg, &ca, &ca_key, &key, now).unwrap();
        std::fs::write(cert_dir.join(file), pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    }
    let leaf_key = hsm.generate_key_pair(&hsm::testing::unique_label("leaf"), hsm::KeyAlgorithm::EcdsaP256).unwrap();
    TestCa { dir, cfg, hsm, leaf_key }
}

impl TestCa {
    /// Issuing CA `i` (0 signing, 1 authentication) and its key.
    pub fn issuing(&self, i: usize) -> (IssuingCa, HsmKey) {
        let entity = [&self.cfg.ca.signing, &self.cfg.ca.authentication][i];
        (issuing_ca_certificate(&self.cfg, entity).unwrap(), self.hsm.key(&entity.key_label).unwrap())
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
        let label = [&self.cfg.ocsp.signing_responder_key_label, &self.cfg.ocsp.authentication_responder_key_label][i];
        let (ca, ca_key) = self.issuing(i);
        let key = self.hsm.key(label).unwrap();
        let der = responder_cert::issue_directly(&short, &ca, &ca_key, &key, OffsetDateTime::now_utc()).unwrap();
        // Renamed into place: a running responder never reads half a file.
        let path = self.responder_path(i);
        let tmp = path.with_extension("pem.test.tmp");
        std::fs::write(&tmp, pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        der
    }
}

/// A real certificate under CA 0, issued the registry's way through `store`:
/// application `n` (`prefix` and `n` name it), the card's signing certificate
/// reserved valid from an hour ago for a year, its TBS recorded, the
/// certificate stored, all by `actor`. Returns its serial and PEM file.
pub fn issue_through_store(
    store: &store::Store,
    ca: &TestCa,
    prefix: &str,
    n: usize,
    actor: &str,
) -> (store::Serial, PathBuf) {
    let application = store::fixtures::application(&format!("{prefix}-{n}"), &format!("L{n:06}"));
    let card = store.begin_application(&application, "JMA").unwrap().view.card.card_id;
    let now = crate::responder::unix_now();
    let reservation = store::Reservation {
        card_id: card,
        kind: store::CertificateKind::Signing,
        issuer_label: ca.label(0),
        not_before_unix: now - 3600,
        not_after_unix: now + 86400 * 365,
    };
    let rec = store.reserve_serial(&reservation, actor).unwrap();
    let (der, path) = ca.issue_leaf(0, rec.serial.as_bytes());
    let tbs = profile::tbs_of_certificate(&der).unwrap();
    store.record_tbs(&rec.serial, &tbs, None, actor).unwrap();
    store.store_certificate(&rec.serial, &der, &tbs, actor).unwrap();
    (rec.serial, path)
}

/// How the tests and the load-test server serve a responder: at "/ocsp",
/// requests up to 8 KiB, no proxy trusted.
pub fn http_state(responder: Arc<Responder>) -> Arc<HttpState> {
    Arc::new(HttpState { responder, ocsp_path: "/ocsp".into(), max_request_bytes: 8192, trusted_proxies: Vec::new() })
}

/// The issuance service and registry as the responder sees them, in memory:
/// issues with the CA keys of a [`TestCa`] directly; every serial is good
/// unless `revoke`d or `forget`-ten.
pub struct DirectAuthority {
    cfg: Config,
    hsm: Hsm,
    states: Mutex<HashMap<String, RegistryState>>,
    issued: AtomicUsize,
    pub fail: AtomicBool,
}

impl DirectAuthority {
    pub fn new(ca: &TestCa) -> DirectAuthority {
        DirectAuthority {
            cfg: ca.cfg.clone(),
            hsm: ca.hsm.clone(),
            states: Mutex::new(HashMap::new()),
            issued: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
        }
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    pub fn revoke(&self, serial_hex: &str) {
        self.states.lock().unwrap().insert(serial_hex.to_owned(), RegistryState::Revoked);
    }

    pub fn forget(&self, serial_hex: &str) {
        self.states.lock().unwrap().insert(serial_hex.to_owned(), RegistryState::Unknown);
    }
}

impl ResponderAuthority for DirectAuthority {
    fn issue(&self, issuer: &'static str, csr: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, OcspError>> {
        let result = (|| {
            if self.fail.load(Ordering::SeqCst) {
                return Err(OcspError::Registry("issuance down (test)".into()));
            }
            let entity = if issuer == "signing" { &self.cfg.ca.signing } else { &self.cfg.ca.authentication };
            let csr = profile::csr::parse_and_verify(&csr, 2048).map_err(|e| OcspError::Certificates(e.to_string()))?;
            let ca = issuing_ca_certificate(&self.cfg, entity)?;
            let ca_key = self.hsm.key(&entity.key_label)?;
            let der = responder_cert::issue_directly(&self.cfg, &ca, &ca_key, &csr, OffsetDateTime::now_utc())?;
            self.issued.fetch_add(1, Ordering::SeqCst);
            Ok(der)
        })();
        Box::pin(async move { result })
    }

    fn state(&self, serial_hex: String) -> BoxFuture<'_, Result<RegistryState, OcspError>> {
        let result = if self.fail.load(Ordering::SeqCst) {
            Err(OcspError::Registry("registry down (test)".into()))
        } else {
            Ok(self.states.lock().unwrap().get(&serial_hex).copied().unwrap_or(RegistryState::Good))
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
