//! Test helpers: a CA hierarchy with keys in the SoftHSM test token, issued
//! end-entity certificates, and the openssl command line.

use std::path::{Path, PathBuf};

use hsm::testing::{shared_hsm, unique_label};
use hsm::{Hsm, HsmKey, KeyAlgorithm};
use time::OffsetDateTime;

use crate::issuer::CaKey;

pub(crate) struct TestPki {
    pub dir: tempfile::TempDir,
    pub cfg: config::Config,
    pub hsm: Hsm,
    pub root: CaKey,
    pub sign: CaKey,
    pub auth: CaKey,
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap()
}

fn ca_cert(
    hsm: &Hsm,
    entity: &config::CaEntity,
    ca_profile: &profile::CaProfile,
    alg: KeyAlgorithm,
    serial: u8,
    issuer: Option<(&profile::IssuingCa, &HsmKey)>,
) -> (HsmKey, Vec<u8>) {
    let key = hsm.generate_key_pair(&entity.key_label, alg).unwrap();
    let now = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let (nb, na) = profile::validity::ca_validity(now, entity.validity_years, None);
    let params = profile::ca_params(ca_profile, issuer.is_none(), &[serial], &key, nb, na).unwrap();
    let der = match issuer {
        None => params.self_signed(&key).unwrap().der().to_vec(),
        Some((ca, ca_key)) => {
            let tbs = profile::tbs_certificate(&params, &key, ca).unwrap();
            profile::assemble_certificate(&tbs, &ca_key.sign(&tbs).unwrap()).unwrap()
        }
    };
    (key, der)
}

/// Root, signing and authentication CAs with fresh keys; config pointing at
/// them (cert files written to `cfg.cert_dir()`), state in a temp folder.
pub(crate) fn test_pki(alg: KeyAlgorithm) -> TestPki {
    let hsm = shared_hsm();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config::Config { state_dir: dir.path().join("state"), ..Default::default() };
    cfg.ca.root.key_label = unique_label("root");
    cfg.ca.signing.key_label = unique_label("sign");
    cfg.ca.authentication.key_label = unique_label("auth");
    let cert_dir = cfg.cert_dir();
    std::fs::create_dir_all(&cert_dir).unwrap();

    let cas = cfg.ca.profiles().unwrap();
    let (root_key, root_der) = ca_cert(&hsm, &cfg.ca.root, &cas.root, alg, 1, None);
    let root_ca = profile::IssuingCa::from_der(&root_der).unwrap();
    let (sign_key, sign_der) = ca_cert(&hsm, &cfg.ca.signing, &cas.signing, alg, 2, Some((&root_ca, &root_key)));
    let (auth_key, auth_der) =
        ca_cert(&hsm, &cfg.ca.authentication, &cas.authentication, alg, 3, Some((&root_ca, &root_key)));
    for (entity, der) in [(&cfg.ca.root, &root_der), (&cfg.ca.signing, &sign_der), (&cfg.ca.authentication, &auth_der)]
    {
        std::fs::write(cert_dir.join(&entity.file_name), pem("CERTIFICATE", der)).unwrap();
    }
    let ca = |der: &[u8], key: HsmKey| CaKey::new(profile::IssuingCa::from_der(der).unwrap(), key).unwrap();
    TestPki {
        dir,
        hsm,
        root: ca(&root_der, root_key),
        sign: ca(&sign_der, sign_key),
        auth: ca(&auth_der, auth_key),
        cfg,
    }
}

impl TestPki {
    /// A subscriber certificate with `serial` from `ca` under `profile_cfg`
    /// (built into its policy, as issuance does at start).
    pub fn issue(&self, profile_cfg: &config::ProfileConfig, kind: profile::CertKind, serial: &[u8]) -> Vec<u8> {
        let ca = match kind {
            profile::CertKind::Signing => &self.sign,
            profile::CertKind::Authentication => &self.auth,
        };
        let who = profile::Subscriber {
            holder_id: "JMA0000001".into(),
            given_name_latin: "Taro".into(),
            family_name_latin: "Yamada".into(),
            given_name_kanji: "太郎".into(),
            family_name_kanji: "山田".into(),
            institution: None,
            institution_kanji: None,
        };
        let (nb, na) = profile::validity::subscriber_validity(profile::validity::today_jst(), 5, ca.ca.not_after());
        let policy = profile_cfg.policy().unwrap();
        let params = profile::subscriber_params(&policy, kind, &who, serial, nb, na, &ca.ca).unwrap();
        let subject_key = rcgen::KeyPair::generate().unwrap();
        let tbs = profile::tbs_certificate(&params, &subject_key, &ca.ca).unwrap();
        profile::assemble_certificate(&tbs, &ca.key.sign(&tbs).unwrap()).unwrap()
    }

    /// root + signing CA + authentication CA, PEM, for -CAfile.
    pub fn write_chain(&self, path: &Path) {
        let text: String =
            [&self.root, &self.sign, &self.auth].iter().map(|c| pem("CERTIFICATE", c.ca.certificate_der())).collect();
        std::fs::write(path, text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub(crate) use testkit::openssl::openssl;

/// `openssl crl -inform DER -in <der> -CAfile <ca> -noout -verify`, then `-text`.
pub(crate) fn openssl_crl_text(der_path: &Path, ca_pem: &Path) -> String {
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-CAfile",
        ca_pem.to_str().unwrap(),
        "-noout",
        "-verify",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");
    let (ok, text) = openssl(&["crl", "-inform", "DER", "-in", der_path.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    text
}

/// Copies `files` to `$CRL_KEEP_DIR/<prefix>-<name>` when that is set, for a
/// manual pkilint run (`lint_crl lint -t CRL -p PKIX <file>`).
pub(crate) fn keep(prefix: &str, files: &[&Path]) {
    let Some(keep) = std::env::var_os("CRL_KEEP_DIR") else {
        return;
    };
    let keep = Path::new(&keep);
    std::fs::create_dir_all(keep).unwrap();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy();
        std::fs::copy(f, keep.join(format!("{prefix}-{name}"))).unwrap();
    }
}
