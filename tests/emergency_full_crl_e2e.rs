//! End to end with delta CRLs on: an emergency revocation reaches relying
//! parties that read only the full CRL at the distribution point (`openssl
//! verify -crl_check` without `-use_deltas`, Java's built-in checker, many
//! appliances) within 5 s of the revocation returning.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{http_get, openssl, verify_with_crl, write_pem, write_pem_label, Ca};

/// The full CRL at `path` of the HTTP distribution point, as a PEM file, if served.
fn fetch_full(http: &str, path: &str, out: &Path) -> bool {
    let (status, _, body) = http_get(http, path);
    if status != 200 {
        return false;
    }
    write_pem_label(out, "X509 CRL", &body);
    true
}

/// The cRLNumber of a CRL file.
fn crl_number(crl: &Path) -> u64 {
    let (ok, out) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-crlnumber"]);
    assert!(ok, "{out}");
    let hex = out.trim().rsplit('=').next().unwrap_or_default().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("no CRL number in {out:?}"))
}

/// "full CRLs: signing CA number 8, authentication CA number 6 ..." -> [("signing", 8), ("authentication", 6)].
fn full_numbers(text: &str) -> Vec<(String, u64)> {
    let fulls = text.split("full CRLs: ").nth(1).unwrap_or_else(|| panic!("no full CRL numbers in {text}"));
    let fulls = fulls.lines().next().unwrap_or_default();
    fulls
        .split(", ")
        .map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            assert!(words.len() >= 4 && words[1] == "CA" && words[2] == "number", "{part:?} in {text}");
            (words[0].to_owned(), words[3].parse().unwrap_or_else(|_| panic!("{part:?} in {text}")))
        })
        .collect()
}

#[test]
fn emergency_revocation_reaches_the_full_crl_within_five_seconds_with_deltas_on() {
    let mut ca = Ca::new("[profile]\ndelta_crls = true\n");
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl", "crl-http"]);
    let (iss, rev, crl_http) = (&addrs[0], &addrs[1], &addrs[3]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut certs = Vec::new();
    let mut lost_card = String::new();
    for (id, licence) in [("lost", "121212"), ("kept", "343434")] {
        let card = common::submit(&ca, &rt, iss, id, licence, &dir).expect("issue card");
        for (name, der) in [("sign", &card.signing_certificate), ("auth", &card.authentication_certificate)] {
            let path = dir.join(format!("{id}-{name}.pem"));
            write_pem(&path, der);
            certs.push((id, name, path));
        }
        if id == "lost" {
            lost_card = card.card_id;
        }
    }

    // The schedule's first full and delta CRLs are served; they do not list the card.
    let deadline = Instant::now() + Duration::from_secs(30);
    for path in ["/crl/sign.crl", "/crl/auth.crl", "/crl/sign-delta.crl", "/crl/auth-delta.crl"] {
        while http_get(crl_http, path).0 != 200 {
            assert!(Instant::now() < deadline, "{path} not served");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let full_path = |name: &str| dir.join(format!("{name}.crl.pem"));
    for (id, name, cert) in &certs {
        assert!(fetch_full(crl_http, &format!("/crl/{name}.crl"), &full_path(name)));
        let issuing = ca.cert_path(&format!("{name}-ca.pem"));
        let (ok, out) = verify_with_crl(&ca, &issuing, &full_path(name), cert);
        assert!(ok, "{id} {name} before the emergency: {out}");
    }

    let out = ca.emergency_revoke(&lost_card, rev);
    let returned = Instant::now();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "emergency-revoke: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("delta CRL published: signing CA number "), "{text}");
    assert!(text.contains("(being published)"), "the full CRLs follow the deltas: {text}");
    let reported = full_numbers(&text);
    assert_eq!(reported.iter().map(|(ca, _)| ca.as_str()).collect::<Vec<_>>(), ["signing", "authentication"]);

    // Only the full CRLs, as a CRL-only relying party reads them: the lost card
    // is revoked within 5 s.
    let bound = Duration::from_secs(5);
    let mut last = String::new();
    let revoked_after = loop {
        let mut revoked = 0;
        for (id, name, cert) in certs.iter().filter(|(id, _, _)| *id == "lost") {
            if !fetch_full(crl_http, &format!("/crl/{name}.crl"), &full_path(name)) {
                continue;
            }
            let (ok, out) = verify_with_crl(&ca, &ca.cert_path(&format!("{name}-ca.pem")), &full_path(name), cert);
            if !ok && out.contains("certificate revoked") {
                revoked += 1;
            } else {
                last = format!("{id} {name}: {out}");
            }
        }
        if revoked == 2 {
            break returned.elapsed();
        }
        assert!(returned.elapsed() < bound, "the full CRLs still pass the lost card after {bound:?}: {last}");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("lost card revoked in the full CRLs {revoked_after:?} after emergency-revoke returned");
    assert!(revoked_after < bound, "{revoked_after:?}");

    // They are the full CRLs the CLI reported, and the other card stays good.
    for (name, (ca_name, number)) in ["sign", "auth"].iter().zip(&reported) {
        assert_eq!(crl_number(&full_path(name)), *number, "{ca_name} full CRL number");
    }
    for (_, name, cert) in certs.iter().filter(|(id, _, _)| *id == "kept") {
        let (ok, out) = verify_with_crl(&ca, &ca.cert_path(&format!("{name}-ca.pem")), &full_path(name), cert);
        assert!(ok, "kept {name}: {out}");
    }
}
