//! Benchmark fixtures (feature `bench`); never for production.
//!
//! `populate` builds a responder the way the benchmarks need it: a throw-away
//! SoftHSM token (hsm's `testing` module, in a temp folder), two issuing CAs
//! with responder certificates, and a cache filled *directly* (statuses set
//! with `Responder::set_state`, responses really signed with `presign`) rather
//! than through a registry, so 10,000 certificates take seconds. The rest
//! writes the files `openssl ocsp` needs to answer for the same serials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use der::Decode;
use time::OffsetDateTime;

use crate::cache::Signed;
use crate::error::OcspError;
use crate::issuers::HashAlg;
use crate::request::encode_request;
use crate::responder::Responder;
use crate::serial::SerialKey;
use crate::status::CertState;
use crate::testkit::{test_ca, MapSource, TestCa};

pub use crate::testkit::TestCa as BenchCa;

/// Registry-like serials: 16 random octets, positive, minimal.
pub fn random_serial() -> Vec<u8> {
    let mut s = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s).expect("randomness");
    s[0] = (s[0] & 0x7f).max(1);
    s.to_vec()
}

#[derive(Debug, Clone)]
pub struct BenchCert {
    pub serial: Vec<u8>,
    pub revoked: bool,
}

pub struct Populated {
    pub ca: TestCa,
    pub responder: Arc<Responder>,
    pub certs: Vec<BenchCert>,
    /// One DER request per certificate (SHA-1 CertID, no nonce: what most clients send).
    pub requests: Vec<Vec<u8>>,
}

/// The revocation time written for revoked bench certificates.
pub const REVOKED_AT: i64 = 1_750_000_000;

/// `n` certificates of issuing CA 0, `revoked_percent` % of them revoked
/// (keyCompromise), each with a signed SHA-1 response in the cache.
pub async fn populate(n: usize, revoked_percent: usize, alg: config::KeyAlgorithm) -> Result<Populated, OcspError> {
    let ca = test_ca(alg);
    let responder = Arc::new(ca.responder(ca.settings(), Arc::new(MapSource::default())));
    responder.cache().reserve(n);
    let certs: Vec<BenchCert> =
        (0..n).map(|i| BenchCert { serial: random_serial(), revoked: i * 100 < n * revoked_percent }).collect();
    fill(&responder, &certs).await?;
    let hashes = responder.issuers()[0].hashes.clone();
    let requests = certs
        .iter()
        .map(|c| encode_request(&hashes, HashAlg::Sha1, &[&c.serial], None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Populated { ca, responder, certs, requests })
}

/// Sets the status of each of `certs` (issuing CA 0) and signs its SHA-1 response into the cache.
async fn fill(responder: &Arc<Responder>, certs: &[BenchCert]) -> Result<(), OcspError> {
    let mut set = tokio::task::JoinSet::new();
    for c in certs {
        let key = SerialKey::new(0, &c.serial).ok_or_else(|| OcspError::Internal("serial".into()))?;
        let state = if c.revoked {
            CertState::Revoked {
                at_unix: REVOKED_AT,
                reason: Some(crate::asn1::CRLReason::KeyCompromise),
                invalidity_unix: None,
            }
        } else {
            CertState::Good
        };
        responder.set_state(key, state);
        while set.len() >= 16 {
            if let Some(r) = set.join_next().await {
                r.map_err(|e| OcspError::Internal(e.to_string()))??;
            }
        }
        let r = responder.clone();
        set.spawn(async move { r.presign(key, HashAlg::Sha1).await });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| OcspError::Internal(e.to_string()))??;
    }
    Ok(())
}

/// Writes what a second responder process needs to answer for the same CAs
/// and certificates as `p` (`populate_replica`): the SoftHSM token (this
/// process's test token, which lives as long as this process), the state
/// folder with the CA and responder certificates, the key labels, and each
/// certificate's serial and status. One `key value` per line.
pub fn write_replica_spec(p: &Populated, path: &Path) -> Result<(), OcspError> {
    let t = hsm::testing::shared_token();
    let c = &p.ca.cfg;
    let mut s = String::new();
    let _ = writeln!(s, "softhsm2_conf {}", t.conf.display());
    let _ = writeln!(s, "module {}", t.module.display());
    let _ = writeln!(s, "token {}", t.label);
    let _ = writeln!(s, "pin {}", t.user_pin);
    let _ = writeln!(s, "state_dir {}", c.state_dir.display());
    let _ = writeln!(s, "signing_ca {}", c.ca.signing.key_label);
    let _ = writeln!(s, "authentication_ca {}", c.ca.authentication.key_label);
    let _ = writeln!(s, "signing_responder {}", c.ocsp.signing_responder_key_label);
    let _ = writeln!(s, "authentication_responder {}", c.ocsp.authentication_responder_key_label);
    for cert in &p.certs {
        let _ = writeln!(s, "cert {} {}", hex::encode(&cert.serial), if cert.revoked { "R" } else { "G" });
    }
    std::fs::write(path, s).map_err(OcspError::io(path))
}

/// A second responder over the CAs and certificates `write_replica_spec`
/// described (the process that wrote it must still run: it owns the token):
/// the same responder key and certificate, a cache of its own, each response
/// signed again here. Call before anything else opens the PKCS#11 module in
/// this process (SoftHSM reads `SOFTHSM2_CONF` once).
pub async fn populate_replica(
    spec: &Path,
    alg: config::KeyAlgorithm,
) -> Result<(Arc<Responder>, Vec<BenchCert>), OcspError> {
    let text = std::fs::read_to_string(spec).map_err(OcspError::io(spec))?;
    let mut kv = std::collections::HashMap::new();
    let mut certs = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(' ').ok_or_else(|| OcspError::Startup(format!("replica spec line {line:?}")))?;
        if k == "cert" {
            let (serial, st) = v.split_once(' ').ok_or_else(|| OcspError::Startup(format!("cert line {v:?}")))?;
            let serial = hex::decode(serial).map_err(|e| OcspError::Startup(format!("serial {serial}: {e}")))?;
            certs.push(BenchCert { serial, revoked: st == "R" });
        } else {
            kv.insert(k.to_owned(), v.to_owned());
        }
    }
    let get = |k: &str| kv.get(k).cloned().ok_or_else(|| OcspError::Startup(format!("replica spec without {k}")));
    std::env::set_var("SOFTHSM2_CONF", get("softhsm2_conf")?);
    let hsm = hsm::Hsm::open(Path::new(&get("module")?), &get("token")?, &get("pin")?, 4)
        .map_err(|e| OcspError::Startup(format!("opening the token: {e}")))?;
    let mut cfg = config::Config { state_dir: get("state_dir")?.into(), ..config::Config::default() };
    cfg.ca.key_algorithm = alg;
    cfg.ca.signing.key_label = get("signing_ca")?;
    cfg.ca.authentication.key_label = get("authentication_ca")?;
    cfg.ocsp.signing_responder_key_label = get("signing_responder")?;
    cfg.ocsp.authentication_responder_key_label = get("authentication_responder")?;
    let slots = crate::serve::slots(crate::responder_cert::load(&cfg, &hsm)?)?;
    let responder = Arc::new(Responder::new(
        crate::responder::Settings::from_config(&cfg.ocsp),
        slots,
        Arc::new(MapSource::default()),
        Arc::new(crate::metrics::Metrics::default()),
    ));
    responder.cache().reserve(certs.len());
    fill(&responder, &certs).await?;
    Ok((responder, certs))
}

/// A responder for the cold-path benchmark: CA 0 knows `n` certificates (all
/// good, as the status feed would have told it) but has signed nothing, so
/// each first request for one is a live signature. The live-signing token
/// buckets (`[ocsp] live_signs_per_second` and the per-client ones, 200 and 20
/// a second by default) are raised out of the way, and the signatures in
/// flight allowed to `max_inflight`: the benchmark measures signing through
/// the responder, not the buckets. Returns the responder and one GET path
/// per certificate.
pub fn cold_responder(ca: &TestCa, n: usize, max_inflight: usize) -> Result<(Arc<Responder>, Vec<String>), OcspError> {
    let mut settings = ca.settings();
    settings.live_per_second = 1_000_000;
    settings.live_burst = 1_000_000;
    settings.client_live_per_second = 1_000_000;
    settings.client_live_burst = 1_000_000;
    settings.max_inflight = max_inflight.max(settings.max_inflight);
    let responder = Arc::new(ca.responder(settings, Arc::new(MapSource::default())));
    responder.cache().reserve(n);
    let hashes = responder.issuers()[0].hashes.clone();
    let mut paths = Vec::with_capacity(n);
    for _ in 0..n {
        let serial = random_serial();
        let key = SerialKey::new(0, &serial).ok_or_else(|| OcspError::Internal("serial".into()))?;
        responder.set_state(key, CertState::Good);
        paths.push(get_path(&encode_request(&hashes, HashAlg::Sha1, &[&serial], None)?));
    }
    Ok((responder, paths))
}

/// The GET path of a request: `/` + URL-encoded base64 (RFC 6960 A.1).
pub fn get_path(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 16);
    out.push('/');
    for b in b64.bytes() {
        match b {
            b'+' => out.push_str("%2B"),
            b'/' => out.push_str("%2F"),
            b'=' => out.push_str("%3D"),
            _ => out.push(char::from(b)),
        }
    }
    out
}

fn utc_time(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).expect("time");
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An OpenSSL CA database (`index.txt`) for `certs`.
pub fn openssl_index(certs: &[BenchCert]) -> String {
    let expiry = utc_time(crate::responder::unix_now() + 365 * 86400);
    let mut out = String::new();
    for c in certs {
        let serial = hex::encode_upper(&c.serial);
        if c.revoked {
            let _ = writeln!(out, "R\t{expiry}\t{},keyCompromise\t{serial}\tunknown\t/CN=bench", utc_time(REVOKED_AT));
        } else {
            let _ = writeln!(out, "V\t{expiry}\t\t{serial}\tunknown\t/CN=bench");
        }
    }
    out
}

/// A public key given as an SPKI, for rcgen.
struct SpkiKey {
    key_bytes: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for SpkiKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bytes
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, OcspError> {
    let out = cmd.output().map_err(|e| OcspError::Startup(format!("running {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(OcspError::Startup(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(out.stdout)
}

/// Files for `openssl ocsp -index index.txt -CA ca.pem -rsigner rsigner.pem -rkey rkey.pem`:
/// an RSA-2048 responder key made by openssl (its key must be in a file) with a
/// responder certificate issued by CA 0 like ours, the CA and the index.
pub fn write_openssl_files(p: &Populated, dir: &Path) -> Result<(), OcspError> {
    std::fs::create_dir_all(dir).map_err(OcspError::io(dir))?;
    let rkey = dir.join("rkey.pem");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&rkey))?;
    let spki_der = run(Command::new("openssl").args(["pkey", "-pubout", "-outform", "DER", "-in"]).arg(&rkey))?;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der)?;
    let key = SpkiKey {
        key_bytes: spki.subject_public_key.as_bytes().unwrap_or_default().to_vec(),
        alg: &rcgen::PKCS_RSA_SHA256,
    };
    let (ca, ca_key) = p.ca.issuing(0);
    let cert = crate::responder_cert::issue_directly(&p.ca.cfg, &ca, &ca_key, &key, OffsetDateTime::now_utc())?;
    let write = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).map_err(OcspError::io(dir.join(name)));
    write("rsigner.pem", pem::encode(&pem::Pem::new("CERTIFICATE", cert)).as_bytes())?;
    write("ca.pem", pem::encode(&pem::Pem::new("CERTIFICATE", ca.certificate_der().to_vec())).as_bytes())?;
    write("index.txt", openssl_index(&p.certs).as_bytes())?;
    write("index.txt.attr", b"unique_subject = no\n")?;
    Ok(())
}

/// Memory measurement aid: adds `n` cache entries, each a copy (its own heap
/// allocation) of the signed response of `template`, under fresh random serials.
/// The bytes are not valid signatures for those serials, but their size and
/// layout are exactly those of real cached responses.
pub fn fill_copies(responder: &Responder, template: &[u8], n: usize) -> Result<(), OcspError> {
    let key = SerialKey::new(0, template).ok_or_else(|| OcspError::Internal("template serial".into()))?;
    let crate::cache::Found::Hit(t) = responder.cache().get(&key, HashAlg::Sha1, crate::responder::unix_now()) else {
        return Err(OcspError::Internal("the template has no cached response".into()));
    };
    responder.cache().reserve(n);
    for _ in 0..n {
        let serial = random_serial();
        let k = SerialKey::new(0, &serial).ok_or_else(|| OcspError::Internal("serial".into()))?;
        let copy = Signed {
            body: t.body.to_vec().into_boxed_slice(),
            responder: t.responder.clone(),
            state: t.state,
            this_update: t.this_update,
            next_update: t.next_update,
            refresh_at: t.refresh_at,
            etag: t.etag,
        };
        responder.cache().insert_signed(k, HashAlg::Sha1, Arc::new(copy));
    }
    Ok(())
}

/// Resident set size of this process, from /proc.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// (entries, cached responses) in the cache.
pub fn cache_len(responder: &Responder) -> (usize, usize) {
    responder.cache().len()
}
