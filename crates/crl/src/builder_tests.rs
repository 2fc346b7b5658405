//! CRLs signed in the SoftHSM token, checked with the openssl command line:
//! signatures, extensions as openssl prints them, and `openssl verify
//! -crl_check` on certificates issued with the matching distribution points.

use std::path::Path;

use domain::RevocationReason;
use hsm::KeyAlgorithm;
use time::{Duration, OffsetDateTime};

use crate::builder::{build_crl, CrlSpec, IssuingDistributionPoint};
use crate::entry::{CrlEntry, SerialNumber};
use crate::issuer::CaKey;
use crate::testutil::{openssl, openssl_crl_text, pem, test_pki};
use crate::OnlyContains;

fn entry(serial: &[u8], reason: RevocationReason) -> CrlEntry {
    CrlEntry {
        user_certificate: SerialNumber::from_bytes(serial).unwrap(),
        revocation_date: OffsetDateTime::now_utc().unix_timestamp() - 60,
        reason,
        invalidity_date: None,
    }
}

fn spec(ca: &CaKey, number: u64) -> CrlSpec {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::minutes(1);
    ca.spec(now, now + Duration::hours(48), number)
}

/// Writes DER to `name` and PEM to `name.pem`.
fn write(dir: &Path, name: &str, der: &[u8]) {
    std::fs::write(dir.join(name), der).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), pem("X509 CRL", der)).unwrap();
}

fn verify(dir: &Path, crl_pems: &[&str], cert: &str, extra: &[&str]) -> (bool, String) {
    let bundle = dir.join("crls-bundle.pem");
    let text: String = crl_pems.iter().map(|f| std::fs::read_to_string(dir.join(f)).unwrap()).collect();
    std::fs::write(&bundle, text).unwrap();
    let mut args = vec!["verify", "-crl_check"];
    args.extend_from_slice(extra);
    let bundle = bundle.to_str().unwrap().to_owned();
    let chain = dir.join("chain.pem").to_str().unwrap().to_owned();
    let cert = dir.join(cert).to_str().unwrap().to_owned();
    args.extend_from_slice(&["-CRLfile", &bundle, "-CAfile", &chain, &cert]);
    openssl(&args)
}

/// A relying party's flags for a full CRL plus its delta. Without
/// `-extended_crl`, OpenSSL 3.0 scores a delta like a full CRL and takes the
/// newer of the two, so a delta published after its full CRL hides every
/// revocation only the full lists.
const DELTAS: &[&str] = &["-use_deltas", "-extended_crl"];

/// `openssl verify -crl_check` of `cert` fails, saying `because`.
fn refused(dir: &Path, crl_pems: &[&str], cert: &str, extra: &[&str], because: &str) {
    let (ok, out) = verify(dir, crl_pems, cert, extra);
    assert!(!ok && out.contains(because), "{cert} with {crl_pems:?} {extra:?}: {out}");
}

/// `openssl verify -crl_check` of `cert` succeeds, saying `says`.
fn verified(dir: &Path, crl_pems: &[&str], cert: &str, extra: &[&str], says: &str) {
    let (ok, out) = verify(dir, crl_pems, cert, extra);
    assert!(ok && out.contains(says), "{cert} with {crl_pems:?} {extra:?}: {out}");
}

fn write_cert(dir: &Path, name: &str, der: &[u8]) {
    std::fs::write(dir.join(name), pem("CERTIFICATE", der)).unwrap();
}

#[test]
fn full_crl_with_reasons_verifies_and_revokes_with_rsa() {
    let pki = test_pki(KeyAlgorithm::Rsa { bits: 2048 });
    let dir = pki.dir.path();
    pki.write_chain(&dir.join("chain.pem"));
    let profile_cfg = config::ProfileConfig::default();
    let revoked = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x01];
    let good = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x02];
    write_cert(dir, "revoked.pem", &pki.issue(&profile_cfg, profile::CertKind::Signing, &revoked));
    write_cert(dir, "good.pem", &pki.issue(&profile_cfg, profile::CertKind::Signing, &good));

    let entries = [
        entry(&revoked, RevocationReason::KeyCompromise),
        entry(&[0x0a, 0x01], RevocationReason::Superseded),
        entry(&[0x0a, 0x02], RevocationReason::CessationOfOperation),
        entry(&[0x0a, 0x03], RevocationReason::AffiliationChanged),
        entry(&[0x0a, 0x04], RevocationReason::PrivilegeWithdrawn),
        entry(&[0x8a, 0x05], RevocationReason::Unspecified),
    ];
    let crl = build_crl(&spec(&pki.sign, 42), entries, &pki.sign.key).unwrap();
    assert_eq!(crl.entries, 6);
    write(dir, "sign.crl", &crl.der);
    let text = openssl_crl_text(&dir.join("sign.crl"), &dir.join("chain.pem"));
    println!("{text}");
    assert!(text.contains("Version 2 (0x1)"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(text.contains("X509v3 CRL Number: \n                42"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    let ski = hex::encode_upper(pki.sign.ca.subject_key_identifier());
    let ski_colons: Vec<String> = ski.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    assert!(text.contains(&ski_colons.join(":")), "{text}");
    assert!(text.contains("Issuer: C = JP, O = Japan Medical Association, OU = JMA HPKI CA, CN = HPKI-01-JMACASignCA-forNonRepudiation"), "{text}");
    for serial in ["1122334455667701", "0A01", "0A02", "0A03", "0A04", "8A05"] {
        assert!(text.contains(&format!("Serial Number: {serial}")), "{serial}: {text}");
    }
    for reason in
        ["Key Compromise", "Superseded", "Cessation Of Operation", "Affiliation Changed", "Privilege Withdrawn"]
    {
        assert!(text.contains(reason), "{reason}: {text}");
    }
    assert_eq!(text.matches("X509v3 CRL Reason Code").count(), 5, "unspecified has none: {text}");
    assert!(!text.contains("Issuing Distribution Point"), "{text}");
    assert!(!text.contains("Freshest CRL"), "{text}");

    refused(dir, &["sign.crl.pem"], "revoked.pem", &[], "certificate revoked");
    verified(dir, &["sign.crl.pem"], "good.pem", &[], "good.pem: OK");
}

#[test]
fn delta_crl_revokes_with_use_deltas() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let dir = pki.dir.path();
    pki.write_chain(&dir.join("chain.pem"));
    let profile_cfg = config::ProfileConfig { delta_crls: true, ..Default::default() };
    let in_base = [0x21, 0x01];
    let in_delta = [0x21, 0x02];
    let good = [0x21, 0x03];
    for (name, serial) in [("base.pem", &in_base), ("delta.pem", &in_delta), ("good.pem", &good)] {
        write_cert(dir, name, &pki.issue(&profile_cfg, profile::CertKind::Signing, serial));
    }
    let base_url = &profile_cfg.signing_crl_url;
    let delta_url = config::delta_url(base_url);

    let mut full = spec(&pki.sign, 10);
    full.freshest_crl = Some(delta_url.clone());
    let crl = build_crl(&full, [entry(&in_base, RevocationReason::Superseded)], &pki.sign.key).unwrap();
    write(dir, "full.crl", &crl.der);
    let text = openssl_crl_text(&dir.join("full.crl"), &dir.join("chain.pem"));
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(text.contains("X509v3 Freshest CRL"), "{text}");
    assert!(!text.contains("X509v3 Freshest CRL: critical"), "{text}");
    assert!(text.contains(&format!("URI:{delta_url}")), "{text}");

    // Published after the full CRL, as deltas are.
    let mut delta = spec(&pki.sign, 11);
    delta.this_update = full.this_update + Duration::seconds(30);
    delta.delta_crl_indicator = Some(10);
    delta.next_update = delta.this_update + Duration::hours(24);
    let crl = build_crl(&delta, [entry(&in_delta, RevocationReason::KeyCompromise)], &pki.sign.key).unwrap();
    write(dir, "delta.crl", &crl.der);
    let text = openssl_crl_text(&dir.join("delta.crl"), &dir.join("chain.pem"));
    println!("{text}");
    assert!(text.contains("X509v3 Delta CRL Indicator: critical"), "{text}");
    assert!(text.contains("X509v3 CRL Number: \n                11"), "{text}");
    assert!(!text.contains("Freshest CRL"), "{text}");

    let both = ["full.crl.pem", "delta.crl.pem"];
    refused(dir, &both, "delta.pem", DELTAS, "certificate revoked");
    refused(dir, &both, "base.pem", DELTAS, "certificate revoked");
    verified(dir, &both, "good.pem", DELTAS, "OK");
    // Without -use_deltas openssl only has the base, where the serial is not
    // listed. (With neither flag, OpenSSL 3.0 takes the newer delta for the base.)
    verified(dir, &both, "delta.pem", &["-extended_crl"], "OK");
}

#[test]
fn partition_crls_cover_only_their_partition() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let dir = pki.dir.path();
    pki.write_chain(&dir.join("chain.pem"));
    let profile_cfg = config::ProfileConfig { crl_partitions: 4, delta_crls: true, ..Default::default() };
    let serial = [0x31, 0, 0, 0, 0, 0, 0, 0, 0x06]; // 6 % 4 + 1 = partition 3
    let late = [0x31, 0, 0, 0, 0, 0, 0, 0, 0x0a]; // 10 % 4 + 1 = partition 3
    assert_eq!(profile::crl_partition(&serial, 4), 3);
    assert_eq!(profile::crl_partition(&late, 4), 3);
    write_cert(dir, "ee.pem", &pki.issue(&profile_cfg, profile::CertKind::Signing, &serial));
    write_cert(dir, "late.pem", &pki.issue(&profile_cfg, profile::CertKind::Signing, &late));

    let url = |p| config::partition_url(&profile_cfg.signing_crl_url, p);
    let partition_spec = |p: u32, number: u64| {
        let mut s = spec(&pki.sign, number);
        s.issuing_distribution_point =
            Some(IssuingDistributionPoint { full_name: url(p), only_contains: OnlyContains::UserCerts });
        s
    };
    for p in [2u32, 3] {
        let mut s = partition_spec(p, 20);
        s.freshest_crl = Some(config::delta_url(&url(p)));
        let entries: Vec<CrlEntry> =
            if p == 3 { vec![entry(&serial, RevocationReason::KeyCompromise)] } else { vec![] };
        let crl = build_crl(&s, entries, &pki.sign.key).unwrap();
        write(dir, &format!("p{p}.crl"), &crl.der);
    }
    let text = openssl_crl_text(&dir.join("p3.crl"), &dir.join("chain.pem"));
    println!("{text}");
    assert!(text.contains("X509v3 Issuing Distribution Point: critical"), "{text}");
    assert!(text.contains(&format!("URI:{}", url(3))), "{text}");
    assert!(text.contains("Only User Certificates"), "{text}");
    assert!(text.contains(&format!("URI:{}", config::delta_url(&url(3)))), "{text}");

    refused(dir, &["p3.crl.pem"], "ee.pem", &[], "certificate revoked");
    // Partition 2's CRL does not cover the certificate's distribution point.
    refused(dir, &["p2.crl.pem"], "ee.pem", &[], "different CRL scope");

    // A partition delta with the same IDP: `late` is only in the delta.
    let mut d = partition_spec(3, 21);
    d.this_update += Duration::seconds(30);
    d.delta_crl_indicator = Some(20);
    let crl = build_crl(&d, [entry(&late, RevocationReason::KeyCompromise)], &pki.sign.key).unwrap();
    write(dir, "p3-delta.crl", &crl.der);
    let text = openssl_crl_text(&dir.join("p3-delta.crl"), &dir.join("chain.pem"));
    assert!(text.contains("X509v3 Delta CRL Indicator: critical"), "{text}");
    refused(dir, &["p3.crl.pem", "p3-delta.crl.pem"], "late.pem", DELTAS, "certificate revoked");
    refused(dir, &["p3.crl.pem", "p3-delta.crl.pem"], "ee.pem", DELTAS, "certificate revoked");
    verified(dir, &["p3.crl.pem"], "late.pem", &[], "");
}
