//! The operator console (issue 15) end to end: `hpki-ca run` with two-person
//! control, driven over HTTPS with `curl` and the people's client
//! certificates. Login per role (operators and auditors in; an RA's, a
//! service's and no certificate refused), finding a card by licence number
//! and by kana name, a loss report with a missing confirmation method
//! (rejected naming the field, nothing revoked) and without a CSRF token
//! (refused), the request by op-sato, op-sato's own approval refused, op-ito's
//! approval revoking the card, the result page's CRL number and live OCSP
//! answer, `openssl ocsp` and `openssl verify -crl_check` agreeing, and the
//! audit log naming both people.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Ca;

/// One person's browser: their client certificate (none: `None`) and a cookie jar.
struct Browser {
    base: String,
    cacert: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    /// A PKCS#12 file and its password instead (as `hpki-ca identity export` writes it).
    p12: Option<(PathBuf, String)>,
    jar: PathBuf,
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Browser {
    fn new(ca: &Ca, console: &str, who: Option<&str>) -> Browser {
        let tls = ca.state().join("tls");
        let name = who.unwrap_or("nobody");
        Browser {
            base: format!("https://{console}"),
            cacert: tls.join("ca.pem"),
            identity: who.map(|w| (tls.join(format!("{w}.pem")), tls.join(format!("{w}.key")))),
            p12: None,
            jar: ca.dir.path().join(format!("{name}.cookies")),
        }
    }

    /// A browser with the PKCS#12 file `p12` imported.
    fn with_p12(ca: &Ca, console: &str, who: &str, p12: &Path, password: &str) -> Browser {
        let mut b = Browser::new(ca, console, Some(who));
        b.identity = None;
        b.p12 = Some((p12.to_owned(), password.to_owned()));
        b
    }

    fn request(&self, path: &str, form: Option<&[(&str, &str)]>) -> Answer {
        let headers = self.jar.with_extension("headers");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "60", "--cacert"]).arg(&self.cacert);
        cmd.arg("-c").arg(&self.jar).arg("-b").arg(&self.jar).arg("-D").arg(&headers);
        if let Some((cert, key)) = &self.identity {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((p12, password)) = &self.p12 {
            cmd.args(["--cert-type", "P12", "--cert"]).arg(format!("{}:{password}", p12.display()));
        }
        if let Some(fields) = form {
            cmd.args(["-X", "POST", "--data", ""]);
            for (k, v) in fields {
                cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
            }
        }
        cmd.args(["-w", "\n%{http_code}"]).arg(format!("{}{path}", self.base));
        let out = cmd.output().expect("run curl");
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').expect("status line");
        Answer {
            status: code.trim().parse().expect("HTTP status"),
            headers: std::fs::read_to_string(&headers).unwrap_or_default().to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.request(path, None)
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.request(path, Some(form))
    }
}

/// The CSRF token in a page's forms.
fn csrf(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).unwrap_or_else(|| panic!("no CSRF field in:\n{body}")) + marker.len();
    body[start..].split('"').next().expect("token").to_owned()
}

/// The text of the element with `id`.
fn element(body: &str, id: &str) -> Option<String> {
    let start = body.find(&format!("id=\"{id}\""))?;
    let rest = &body[start..];
    let open = rest.find('>')? + 1;
    Some(rest[open..].split('<').next()?.to_owned())
}

fn card_state(b: &Browser, card_id: &str) -> String {
    let page = b.get(&format!("/cards/{card_id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let marker = "id=\"card-state\" data-state=\"";
    let start = page.body.find(marker).expect("card state") + marker.len();
    page.body[start..].split('"').next().expect("state").to_owned()
}

fn ocsp(ca: &Ca, responder: &str, cert: &Path) -> String {
    common::ocsp_query(ca, responder, "sign-ca.pem", cert, &[])
}

#[test]
fn loss_report_with_two_person_control_from_the_browser() {
    let mut ca = common::console_ca();
    let metrics = ["registry-metrics", "issuance-metrics", "revocation-metrics", "ocsp-metrics"];
    let mut wanted = vec!["issuance", "ocsp", "console", "crl-http", "registry"];
    wanted.extend(metrics);
    let addrs = ca.spawn(&["run"], &wanted);
    let (issuance, responder, console, crl_http, registry) = (&addrs[0], &addrs[1], &addrs[2], &addrs[3], &addrs[4]);
    let metrics_addrs = &addrs[5..];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (card_id, sign_pem, _auth_pem) = common::issue_card_pems(&ca, &rt, issuance, "console-1", "987654");

    // 7. No console without a person's operator or auditor certificate.
    for who in [None, Some("ra-tokyo"), Some("issuance")] {
        let page = Browser::new(&ca, console, who).get("/");
        assert_eq!(page.status, 403, "{who:?}: {}", page.body);
        assert!(page.body.contains("ログインできません"), "{who:?}: {}", page.body);
        assert!(!page.body.contains("name=\"csrf\""), "{who:?} got a form");
    }

    // The auditor gets in and sees the card, without a loss-report form.
    let kato = Browser::new(&ca, console, Some("audit-kato"));
    let page = kato.get(&format!("/cards/{card_id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&card_id) && !page.body.contains("loss-report"), "{}", page.body);

    // 1. op-sato logs in and finds the card by licence number and by kana name.
    let sato = Browser::new(&ca, console, Some("op-sato"));
    let home = sato.get("/");
    assert_eq!(home.status, 200, "{}", home.body);
    assert_eq!(element(&home.body, "whoami").as_deref(), Some("op-sato"));
    let csp = home.headers.lines().find(|l| l.starts_with("content-security-policy:")).expect("CSP header");
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(!home.body.contains("<script"), "no script in the pages");
    assert!(home.headers.contains("set-cookie: hpki_console_session="), "{}", home.headers);
    for q in ["987654", "ヤマダハナコ", "やまだ", "山田 花子"] {
        let found = sato.get(&format!("/search?q={}", urlencode(q)));
        assert_eq!(found.status, 200, "{q}: {}", found.body);
        assert!(found.body.contains(&format!("/cards/{card_id}")), "{q} does not find {card_id}: {}", found.body);
    }
    let none = sato.get("/search?q=%E9%88%B4%E6%9C%A8"); // 鈴木
    assert!(none.body.contains("id=\"none\""), "{}", none.body);
    let english = sato.get(&format!("/cards/{card_id}?lang=en"));
    assert!(english.body.contains("Loss report") && english.body.contains("<html lang=\"en\""), "{}", english.body);
    let card_page = sato.get(&format!("/cards/{card_id}?lang=ja"));
    assert!(card_page.body.contains("紛失届") && card_page.body.contains("ACTIVE"), "{}", card_page.body);
    // The fees, from issuance: the harness's holder is a member (the brochure's table).
    for (id, yen) in [("fee-issuance", "0"), ("fee-yearly", "0"), ("fee-renewal", "5000"), ("fee-due", "0")] {
        assert!(card_page.body.contains(&format!("id=\"{id}\" data-yen=\"{yen}\"")), "{id}: {}", card_page.body);
    }
    assert_eq!(element(&card_page.body, "fee-renewal").as_deref(), Some("¥5,000"));
    assert!(!card_page.body.contains("fees-unavailable"), "{}", card_page.body);
    let token = csrf(&card_page.body);
    let report = format!("/cards/{card_id}/loss-report");

    // 8. A missing confirmation method is named, and nothing is revoked.
    let bad = sato.post(&report, &[("csrf", &token), ("method", ""), ("confirmed_by", "op-sato")]);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("<code class=\"field\">method</code>"), "{}", bad.body);
    // No CSRF token, or another one: refused.
    let forged = sato.post(&report, &[("method", "phone"), ("confirmed_by", "op-sato")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = sato.post(&report, &[("csrf", "00"), ("method", "phone"), ("confirmed_by", "op-sato")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(card_state(&sato, &card_id), "ACTIVE");
    assert!(ocsp(&ca, responder, &sign_pem).contains(": good"), "still good");

    // 2. op-sato files the loss report: two-person control holds it.
    let filed = sato.post(
        &report,
        &[("csrf", &token), ("method", "phone"), ("confirmed_by", "op-sato"), ("note", "電話で紛失の連絡")],
    );
    assert_eq!(filed.status, 202, "{}", filed.body);
    let approval_id = element(&filed.body, "approval-id").expect("approval id");
    assert!(approval_id.starts_with('A'), "{approval_id}");
    assert_eq!(card_state(&sato, &card_id), "ACTIVE", "not revoked before the approval");

    // 3. op-sato's own approval is refused with a clear message.
    let queue = sato.get("/approvals");
    assert!(queue.body.contains(&approval_id), "{}", queue.body);
    let own = sato.post(&format!("/approvals/{approval_id}/approve"), &[("csrf", &csrf(&queue.body))]);
    assert_eq!(own.status, 409, "{}", own.body);
    assert!(
        own.body.contains("ご自身の申請は承認できません") && own.body.contains("two-person control"),
        "{}",
        own.body
    );
    assert_eq!(card_state(&sato, &card_id), "ACTIVE");

    // 4. op-ito approves from their own session (op-sato's token is not theirs),
    // logged in with the PKCS#12 file `hpki-ca identity export` wrote.
    let p12 = ca.dir.path().join("op-ito.p12");
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(&ca.config)
        .args(["identity", "export", "op-ito", "--p12", path(&p12)])
        .env("HPKI_P12_PASSWORD", "kagi-1234")
        .output()
        .expect("identity export");
    assert!(out.status.success(), "identity export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kagi-1234"), "the password is not printed");
    let again = ca.cli(&["identity", "export", "op-ito", "--p12", path(&p12)]);
    assert!(!again.status.success(), "an existing file is not overwritten");
    let ito = Browser::with_p12(&ca, console, "op-ito", &p12, "kagi-1234");
    let queue = ito.get("/approvals?lang=en");
    assert!(queue.body.contains(&approval_id), "{}", queue.body);
    let stolen = ito.post(&format!("/approvals/{approval_id}/approve"), &[("csrf", &token)]);
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    let done = ito.post(&format!("/approvals/{approval_id}/approve"), &[("csrf", &csrf(&queue.body))]);
    assert_eq!(done.status, 200, "{}", done.body);

    // 5. Revoked, with the CRL number, and our responder says so.
    assert!(done.body.contains("data-state=\"DONE\""), "{}", done.body);
    let numbers = element(&done.body, "crl-numbers").expect("CRL numbers");
    assert!(numbers.split(", ").all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)), "{numbers:?}");
    let live: Vec<&str> =
        done.body.match_indices("class=\"ocsp-status\">").map(|(i, m)| &done.body[i + m.len()..]).collect();
    assert_eq!(live.len(), 2, "{}", done.body);
    assert!(live.iter().all(|s| s.starts_with("revoked<")), "{}", done.body);
    assert_eq!(card_state(&sato, &card_id), "REVOKED");
    common::assert_revoked_by_ocsp_and_crl(&ca, responder, crl_http, &sign_pem);

    // 6. The audit log names both people.
    let entries = common::audit_log(&ca, &rt, registry);
    let by = |actor: &str| entries.iter().filter(|e| e.actor == actor).map(|e| e.action.clone()).collect::<Vec<_>>();
    assert!(!by("op-sato").is_empty() && !by("op-ito").is_empty(), "sato {:?}, ito {:?}", by("op-sato"), by("op-ito"));
    assert!(entries.iter().all(|e| e.actor != "console"), "an action audited under the console, not the person");

    // The operations view: every service SERVING, each published CRL with its
    // nextUpdate still ahead, the ARL among the served files, the OCSP rates.
    let ops = sato.get("/operations?lang=en");
    assert_eq!(ops.status, 200, "{}", ops.body);
    for service in ["registry", "issuance", "revocation", "crl"] {
        let row = format!("data-service=\"{service}\"><td>{service}</td><td class=\"health\" data-status=\"SERVING\">");
        assert!(ops.body.contains(&row), "{service} not SERVING: {}", ops.body);
    }
    let next_updates: Vec<&str> = ops
        .body
        .match_indices("data-next-update=\"")
        .filter_map(|(i, m)| ops.body[i + m.len()..].split('"').next())
        .collect();
    assert!(!next_updates.is_empty(), "no published CRL: {}", ops.body);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    for next in &next_updates {
        let at = time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("nextUpdate {next:?}: {e}"));
        assert!(at.unix_timestamp() > now, "nextUpdate {next} has passed");
    }
    assert!(ops.body.contains("data-arl=\"true\""), "the ARL is not among the served files: {}", ops.body);
    let answers: f64 = ops
        .body
        .split("id=\"ocsp-responses\" data-count=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no OCSP answer count: {}", ops.body));
    assert!(answers >= 1.0, "the OCSP queries above were counted: {answers}");
    // Every service's /metrics answers with its named metrics.
    for (name, addr) in metrics.iter().zip(metrics_addrs) {
        let (status, _, body) = common::http_get(addr, "/metrics");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{name}: {text}");
        let expected = match *name {
            "ocsp-metrics" => "ocsp_responses_total{status=\"revoked\"}".to_owned(),
            other => format!("hpki_up{{service=\"{}\"}} 1", other.trim_end_matches("-metrics")),
        };
        assert!(text.contains(&expected), "{name}: no {expected} in\n{text}");
    }
    let (_, _, registry_metrics) = common::http_get(&metrics_addrs[0], "/metrics");
    let registry_metrics = String::from_utf8_lossy(&registry_metrics);
    assert!(
        registry_metrics
            .contains("hpki_grpc_calls_total{service=\"registry\",method=\"/hpki.registry.v1.Registry/FindHolders\"}"),
        "the console's searches are counted: {registry_metrics}"
    );
    let (_, _, crl_metrics) = common::http_get(crl_http, "/metrics");
    let crl_metrics = String::from_utf8_lossy(&crl_metrics);
    assert!(crl_metrics.contains("hpki_crl_age_seconds{path=\"/crl/sign.crl\""), "{crl_metrics}");
    let (status, _, _) = common::http_get(&metrics_addrs[0], "/other");
    assert_eq!(status, 404);

    // 6. The audit view, for auditors only: filtered by actor, action and time.
    let refused = sato.get("/audit");
    assert_eq!(refused.status, 403, "an operator gets no audit view: {}", refused.body);
    assert!(!refused.body.contains("id=\"audit\""), "{}", refused.body);
    for person in ["op-sato", "op-ito"] {
        let view = kato.get(&format!("/audit?actor={person}&from=2000-01-01T00:00"));
        assert_eq!(view.status, 200, "{}", view.body);
        let shown = view.body.matches("class=\"actor\">").count();
        let theirs = view.body.matches(&format!("class=\"actor\">{person}<")).count();
        assert!(theirs > 0 && theirs == shown, "{person}: {theirs} of {shown} rows: {}", view.body);
        assert_eq!(theirs, by(person).len(), "{person}: the page shows every entry ListAudit has under them");
    }
    let action = &by("op-ito")[0];
    let view = kato.get(&format!("/audit?actor=op-ito&action={}", urlencode(action)));
    assert!(view.body.contains(&format!("class=\"action\">{action}<")), "{}", view.body);
    let future = kato.get("/audit?actor=op-sato&from=2999-01-01T00:00");
    assert_eq!(element(&future.body, "matched").as_deref().map(str::trim), Some("0 件が該当"), "{}", future.body);
    let bad_time = kato.get("/audit?from=yesterday");
    assert_eq!(bad_time.status, 400, "{}", bad_time.body);
    assert!(bad_time.body.contains("<code class=\"field\">from</code>"), "{}", bad_time.body);

    // "Verify chain": the verification of `hpki-ca audit verify`, the same verdict.
    let registry_url = ca.url(registry);
    let out = ca.cli(&["audit", "checkpoint", "--url", &registry_url, "--operator", "audit-kato"]);
    assert!(out.status.success(), "audit checkpoint: {}", String::from_utf8_lossy(&out.stderr));
    let view = kato.get("/audit");
    let no_token = kato.post("/audit/verify", &[]);
    assert_eq!(no_token.status, 403, "verify without the CSRF token: {}", no_token.body);
    let by_operator = sato.post("/audit/verify", &[]);
    assert_eq!(by_operator.status, 403, "an operator cannot verify: {}", by_operator.body);
    assert!(by_operator.body.contains("no auditor"), "{}", by_operator.body);
    let verified = kato.post("/audit/verify", &[("csrf", &csrf(&view.body))]);
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(verified.body.contains("data-verdict=\"OK\""), "{}", verified.body);
    let cli = ca.cli(&["--identity", "audit-kato", "audit", "verify", "--url", &registry_url]);
    let cli_out = String::from_utf8_lossy(&cli.stdout).to_string();
    assert!(cli.status.success(), "audit verify: {cli_out}{}", String::from_utf8_lossy(&cli.stderr));
    let console_entries: u64 = element(&verified.body, "verified-entries").expect("entries").parse().expect("a count");
    let head = element(&verified.body, "verified-head").expect("head");
    let cli_line = cli_out.lines().find(|l| l.starts_with("audit chain OK: ")).expect("OK line");
    let cli_entries: u64 =
        cli_line["audit chain OK: ".len()..].split(' ').next().and_then(|n| n.parse().ok()).expect("N");
    assert!(console_entries > 0 && console_entries <= cli_entries, "console {console_entries}, cli {cli_line}");
    if console_entries == cli_entries {
        assert!(cli_line.contains(&format!("head {head};")), "console head {head}, cli {cli_line}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
