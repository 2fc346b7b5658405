//! Revocation data that relying parties can check for years (issue 12): the
//! CA runs, its config changes, and time passes for its processes under
//! libfaketime, while `openssl verify -crl_check_all` (with `-attime` the
//! faked time, and `-use_deltas` where deltas are on) judges what it serves:
//!
//! - certificates issued before a partition/delta config change are still
//!   checkable at the distribution points they name;
//! - after the first ARL's nextUpdate, `hpki-ca arl` has re-signed it and the
//!   chain check passes again, where the old ARL fails;
//! - years later a revoked certificate that expired is still listed, with
//!   ExpiredCertsOnCRL;
//! - pkilint finds nothing at WARNING or above in any CRL or ARL served.

mod common;

use std::path::{Path, PathBuf};

use common::{http_get, issue_card_pems, openssl, write_pem_label, Ca};

const DAY: i64 = 86_400;

/// Saves the CRL served at `path` as PEM under `name`.
fn fetch_crl(ca: &Ca, http: &str, path: &str, name: &str) -> PathBuf {
    let (status, _, body) = http_get(http, path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let file = ca.dir.path().join(name);
    write_pem_label(&file, "X509 CRL", &body);
    file
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `openssl verify -crl_check_all` of `cert` under the signing CA, with the
/// ARL and `crls`, at Unix time `at` (None: now).
fn verify(ca: &Ca, arl: &Path, crls: &[&Path], cert: &Path, at: Option<i64>, deltas: bool) -> (bool, String) {
    let root = ca.cert_path("root-ca.pem");
    let issuing = ca.cert_path("sign-ca.pem");
    let at = at.map(|t| t.to_string());
    let mut args = vec!["verify", "-crl_check_all", "-CAfile", s(&root), "-untrusted", s(&issuing), "-CRLfile", s(arl)];
    for crl in crls {
        args.extend(["-CRLfile", s(crl)]);
    }
    if deltas {
        args.extend(["-use_deltas", "-extended_crl"]);
    }
    if let Some(at) = &at {
        args.extend(["-attime", at.as_str()]);
    }
    args.push(s(cert));
    openssl(&args)
}

fn crl_text(crl: &Path) -> String {
    let (ok, text) = openssl(&["crl", "-noout", "-text", "-in", s(crl)]);
    assert!(ok, "{text}");
    text
}

fn pkilint(crl: &Path, kind: &str) {
    testkit::pkilint::assert_clean("lint_crl", &["-t", kind, "-p", "PKIX", "--document-format", "PEM"], crl);
}

/// The certificate's serial as `openssl x509 -serial` prints it (upper-case hex).
fn serial_of(cert: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-noout", "-serial", "-in", s(cert)]);
    assert!(ok, "{text}");
    text.trim().trim_start_matches("serial=").to_owned()
}

/// The CRL distribution point's path (`/crl/sign-p3.crl`).
fn distribution_point(cert: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-noout", "-ext", "crlDistributionPoints", "-in", s(cert)]);
    assert!(ok, "{text}");
    let url = text.lines().find_map(|l| l.trim().strip_prefix("URI:")).unwrap_or_else(|| panic!("no CRL DP: {text}"));
    url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned())).expect("URL path")
}

#[test]
fn old_certificates_stay_checkable_across_config_changes_and_years() {
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    // An ARL valid for 2 days, so the test can outlive it (re-signed now with
    // that validity); expired entries are kept (the default).
    let mut ca = Ca::new("");
    let config = std::fs::read_to_string(&ca.config).unwrap().replace("[crl]\n", "[crl]\narl_validity_days = 2\n");
    std::fs::write(&ca.config, config).unwrap();
    let out = ca.cli(&["arl"]);
    assert!(out.status.success(), "hpki-ca arl: {}", String::from_utf8_lossy(&out.stderr));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // 1. Unpartitioned, no deltas: a card that stays good and one lost.
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl-http"]);
    let good = issue_card_pems(&ca, &rt, &addrs[0], "lt-good", "830001");
    let lost = issue_card_pems(&ca, &rt, &addrs[0], "lt-lost", "830002");
    let out = ca.emergency_revoke(&lost.0, &addrs[1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(distribution_point(&good.1), "/crl/sign.crl");
    let first_arl = fetch_crl(&ca, &addrs[2], "/crl/arl.crl", "arl-0.pem");
    ca.take_children();

    // 2. The operator turns on four partitions and delta CRLs.
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str("\n[profile]\ncrl_partitions = 4\ndelta_crls = true\n");
    std::fs::write(&ca.config, config).unwrap();
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl-http"]);
    let fresh = issue_card_pems(&ca, &rt, &addrs[0], "lt-fresh", "830003");
    let out = ca.emergency_revoke(&fresh.0, &addrs[1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fresh_dp = distribution_point(&fresh.1);
    assert!(fresh_dp.starts_with("/crl/sign-p"), "{fresh_dp}");
    let fresh_delta = fresh_dp.replace(".crl", "-delta.crl");
    let arl = fetch_crl(&ca, &addrs[2], "/crl/arl.crl", "arl-1.pem");
    // The old distribution point is still published, and lists the old loss.
    let old_full = fetch_crl(&ca, &addrs[2], "/crl/sign.crl", "sign-2.pem");
    let part_full = fetch_crl(&ca, &addrs[2], &fresh_dp, "part-2.pem");
    let part_delta = fetch_crl(&ca, &addrs[2], &fresh_delta, "part-delta-2.pem");
    let (ok, text) = verify(&ca, &arl, &[&old_full], &good.1, None, false);
    assert!(ok && text.contains(": OK"), "old good card at its old DP: {text}");
    let (ok, text) = verify(&ca, &arl, &[&old_full], &lost.1, None, false);
    assert!(!ok && text.contains("certificate revoked"), "old lost card at its old DP: {text}");
    let (ok, text) = verify(&ca, &arl, &[&part_full, &part_delta], &fresh.1, None, true);
    assert!(!ok && text.contains("certificate revoked"), "new card, partition + delta: {text}");
    for crl in [&old_full, &part_full, &part_delta] {
        pkilint(crl, "CRL");
    }
    pkilint(&arl, "ARL");
    ca.take_children();

    // 3. Three days on, the first ARL is past its nextUpdate: openssl fails the
    // chain with it. `hpki-ca arl` re-signs it, and the chain passes again.
    let later = t0 + 3 * DAY;
    let (ok, text) = verify(&ca, &first_arl, &[&old_full], &good.1, Some(later), false);
    assert!(!ok && text.contains("CRL has expired"), "the first ARL is stale by then: {text}");
    let out = ca.cli_later("+3d", &["arl"]);
    assert!(out.status.success(), "hpki-ca arl: {}", String::from_utf8_lossy(&out.stderr));
    let addrs = ca.spawn_later("+3d", &["run"], &["crl-http"]);
    let arl = fetch_crl(&ca, &addrs[0], "/crl/arl.crl", "arl-3.pem");
    // The CRLs of step 2 are valid for a day; the restarted publisher renews them.
    let old_full = wait_for_crl_after(&ca, &addrs[0], "/crl/sign.crl", "sign-3.pem", later - 60);
    // The faked clock has moved on since `later` was taken.
    let faked_now = time::OffsetDateTime::now_utc().unix_timestamp() + 3 * DAY;
    let (ok, text) = verify(&ca, &arl, &[&old_full], &good.1, Some(faked_now), false);
    assert!(ok && text.contains(": OK"), "chain check after the first ARL's nextUpdate: {text}");
    pkilint(&arl, "ARL");
    pkilint(&old_full, "CRL");
    ca.take_children();

    // 4. Six years on, the lost card's certificate has expired: it is still
    // listed, and the CRL says expired certificates are kept (ExpiredCertsOnCRL).
    let years = t0 + 6 * 365 * DAY;
    let addrs = ca.spawn_later("+6y", &["run"], &["crl-http"]);
    let old_full = wait_for_crl_after(&ca, &addrs[0], "/crl/sign.crl", "sign-6y.pem", years - 60);
    let text = crl_text(&old_full);
    let lost_serial = serial_of(&lost.1);
    assert!(text.contains(&format!("Serial Number: {lost_serial}")), "expired lost card still listed: {text}");
    assert!(text.contains("2.5.29.60"), "ExpiredCertsOnCRL: {text}");
    // It has indeed expired by then (5-year validity).
    let six_years = (6 * 365 * DAY).to_string();
    let (ok, text) = openssl(&["x509", "-noout", "-checkend", &six_years, "-in", s(&lost.1)]);
    assert!(!ok && text.contains("will expire"), "{text}");
    pkilint(&old_full, "CRL");
}

/// The CRL at `path` once its thisUpdate is at or after `after` (the
/// restarted publisher renews a stale one within seconds).
fn wait_for_crl_after(ca: &Ca, http: &str, path: &str, name: &str, after: i64) -> PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let file = fetch_crl(ca, http, path, name);
        let (ok, text) = openssl(&["crl", "-noout", "-lastupdate", "-dateopt", "iso_8601", "-in", s(&file)]);
        let this_update = text
            .trim()
            .strip_prefix("lastUpdate=")
            .and_then(|t| {
                time::OffsetDateTime::parse(&t.replace(' ', "T"), &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| t.unix_timestamp());
        if ok && this_update.is_some_and(|t| t >= after) {
            return file;
        }
        assert!(std::time::Instant::now() < deadline, "{path} not renewed after {after}: {text}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
