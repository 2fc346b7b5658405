//! End to end: the revocation time is the CA's, the time of compromise is the
//! operator's. A revoked_at backdated beyond `[revocation] max_backdate_seconds`
//! is refused naming the field; a compromise time given with `--compromised-at`
//! becomes the invalidityDate of the CRL entry and of the OCSP answer, while
//! the revocationDate / revocationTime stay the actual revocation time. openssl
//! shows both, and pkilint finds nothing at WARNING or above in the CRL and
//! the OCSP response.

mod common;

use std::time::{Duration, Instant};

use common::{http_get, openssl, write_pem, write_pem_label, Ca};
use testkit::pkilint;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `openssl crl -text` / `-resp_text` print times as "Jan  5 09:00:00 2026 GMT".
fn openssl_time(t: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// The text after `label` on the same line, trimmed.
fn after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.split(label).nth(1).and_then(|rest| rest.lines().next()).map(str::trim)
}

#[test]
fn a_compromise_time_is_the_invalidity_date_and_revoked_at_cannot_be_backdated() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["issuance", "revocation", "crl", "crl-http", "ocsp"]);
    let (iss, rev, crl_grpc, crl_http, ocsp) = (&addrs[0], &addrs[1], &addrs[2], &addrs[3], &addrs[4]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card = common::submit(&ca, &rt, iss, "t-1", "333333", &dir).expect("issue card");
    let cert = dir.join("sign.pem");
    write_pem(&cert, &card.signing_certificate);
    let serial = card.signing_serial.clone();
    let rev_url = ca.url(rev);
    let revoke = |extra: &[&str]| {
        let mut args = vec!["revoke", "--serial", serial.as_str(), "--reason", "key-compromise"];
        args.extend(["--url", rev_url.as_str()]);
        args.extend(extra);
        ca.cli(&args)
    };

    // Backdated by a day: refused, naming revoked_at; nothing is revoked.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let out = revoke(&["--revoked-at", &rfc3339(now - time::Duration::days(1))]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a revocation backdated by a day was accepted");
    assert!(stderr.contains("InvalidArgument") && stderr.contains("revoked_at: is more than 300 s"), "{stderr}");
    // A compromise time before the certificate existed: refused, naming compromised_at.
    let out = revoke(&["--compromised-at", "2001-01-01T00:00:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("compromised_at: is before the notBefore"), "{stderr}");

    // The card was lost an hour ago (or at its notBefore, if that is later: it is 00:00 JST of the day of issue).
    let not_before = {
        let (_, text) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-startdate"]);
        let t = text.trim().trim_start_matches("notBefore=").to_owned();
        let fmt = time::macros::format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
        );
        time::PrimitiveDateTime::parse(&t, &fmt).unwrap_or_else(|e| panic!("{t:?}: {e}")).assume_utc()
    };
    let compromised = (now - time::Duration::hours(1)).max(not_before);
    let out = revoke(&["--compromised-at", &rfc3339(compromised)]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "revoke: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("compromised {}", rfc3339(compromised))), "{stdout}");
    let revoked_after = OffsetDateTime::now_utc();

    // CRL: published on demand, fetched over HTTP.
    let out = ca.cli(&["publish-crl", "--issuer", "signing", "--kind", "full", "--url", &ca.url(crl_grpc)]);
    assert!(out.status.success(), "publish-crl: {}", String::from_utf8_lossy(&out.stderr));
    let (status, _, der) = http_get(crl_http, "/crl/sign.crl");
    assert_eq!(status, 200);
    let crl_der = dir.join("sign.crl");
    std::fs::write(&crl_der, &der).unwrap();
    let crl_pem = dir.join("sign.crl.pem");
    write_pem_label(&crl_pem, "X509 CRL", &der);
    let issuing = ca.cert_path("sign-ca.pem");
    let (ok, text) =
        openssl(&["crl", "-in", crl_pem.to_str().unwrap(), "-CAfile", issuing.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    let entry = text.split(&format!("Serial Number: {}", serial.to_ascii_uppercase())).nth(1).unwrap_or_else(|| {
        panic!("serial {serial} not on the CRL:\n{text}");
    });
    let entry = entry.split("Serial Number:").next().unwrap_or(entry);
    assert!(entry.contains("Key Compromise"), "{entry}");
    assert!(entry.contains("Invalidity Date:"), "{entry}");
    let shown = entry.split("Invalidity Date:").nth(1).and_then(|r| r.lines().map(str::trim).find(|l| !l.is_empty()));
    assert_eq!(shown, Some(openssl_time(compromised).as_str()), "{entry}");
    // revocationDate is when the CA revoked, not the compromise.
    let revocation_date = after(entry, "Revocation Date:").expect("Revocation Date");
    let in_window = (0..=(revoked_after - now).whole_seconds() + 1)
        .map(|s| openssl_time(now + time::Duration::seconds(s)))
        .any(|t| t == revocation_date);
    assert!(
        in_window,
        "Revocation Date {revocation_date} is not the time of the revocation ({now} .. {revoked_after})"
    );
    pkilint::assert_clean("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl_der);

    // OCSP: the responder follows the feed; -resp_text shows the invalidity date.
    let resp = dir.join("ocsp.der");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text =
            common::ocsp_query(&ca, ocsp, "sign-ca.pem", &cert, &["-resp_text", "-respout", resp.to_str().unwrap()]);
        if text.contains(": revoked") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.contains("Response verify OK") && text.contains(": revoked"), "{text}");
    assert!(text.contains("Invalidity Date"), "{text}");
    assert!(text.contains(&openssl_time(compromised)), "{text}");
    assert!(text.contains(&format!("Revocation Time: {revocation_date}")), "{text}");
    pkilint::assert_clean("lint_ocsp_response", &[], &resp);
}
