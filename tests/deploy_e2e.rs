//! The split deployment shipped in `deploy/` (docs/deploy.md): its systemd
//! units, per-process configs, users and folders agree with each other;
//! `systemd-analyze verify` accepts the units (where it is installed); and the
//! five processes started as the units start them, from the shipped configs
//! with only the listeners and the `[public]` base URLs moved to free loopback
//! ports (and the paths moved into a temp folder), issue a card, revoke it in
//! an emergency, and publish that through the CRL distribution point and OCSP.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_get, ocsp_query, verify_chain, verify_with_crl, write_pem, write_pem_label, Ca};

/// The services, each with a unit `hpki-ca-<name>.service` and a config `<name>.toml`.
const SERVICES: [&str; 5] = ["registry", "issuance", "revocation", "crl", "ocsp"];
/// The services that log in to HSM tokens, and the trust domains whose token
/// each opens (and gets the PIN of as a credential): no other.
const HSM_SERVICES: [(&str, &[&str]); 3] =
    [("issuance", &["issuing", "escrow"]), ("crl", &["issuing", "audit"]), ("ocsp", &["ocsp"])];

fn token_domains(service: &str) -> Option<&'static [&'static str]> {
    HSM_SERVICES.iter().find(|(s, _)| *s == service).map(|(_, d)| *d)
}
/// Every config shipped: one per service and the administrator's.
const CONFIGS: [&str; 6] = ["registry", "issuance", "revocation", "crl", "ocsp", "admin"];
const STATE_DIR: &str = "/srv/hpki-ca";
const BINARY: &str = "/usr/local/bin/hpki-ca";

fn deploy() -> PathBuf {
    common::repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unit_names() -> Vec<String> {
    SERVICES.iter().map(|s| format!("hpki-ca-{s}.service")).chain(["hpki-ca.target".to_owned()]).collect()
}

/// `(section, key, value)` of every setting of a unit file, in order.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
        } else {
            panic!("not a unit file line: {line:?}");
        }
    }
    out
}

/// Every value of `key` in `[section]`, split on whitespace.
fn words(settings: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .flat_map(|(_, _, v)| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn one(settings: &[(String, String, String)], section: &str, key: &str) -> String {
    let values: Vec<&String> =
        settings.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v).collect();
    assert_eq!(values.len(), 1, "[{section}] {key} must be set once, is {values:?}");
    values[0].clone()
}

/// The `key = value` lines of a TOML text, as `(table, key)`.
fn toml_keys(text: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(|l| l.trim()) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.trim().to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            keys.push((table.clone(), key.trim().to_owned()));
        }
    }
    keys
}

/// Sets `key` of `[table]` ("" for the top level) to the string `value` in a
/// TOML text that already has it there; false when it has not.
fn set_key(text: &mut String, table: &str, key: &str, value: &str) -> bool {
    let mut current = String::new();
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim();
            if let Some(name) = t.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.trim().to_owned();
            } else if current == table && !t.starts_with('#') {
                if let Some((k, _)) = t.split_once('=') {
                    if k.trim() == key {
                        done = true;
                        return format!("{key} = {value:?}");
                    }
                }
            }
            line.to_owned()
        })
        .collect();
    *text = lines.join("\n") + "\n";
    done
}

/// The shipped units, configs, users and folders say the same thing.
#[test]
fn shipped_units_configs_users_and_folders_agree() {
    let sysusers = read(&deploy().join("sysusers.d/hpki-ca.conf"));
    let declared_users: BTreeSet<String> = sysusers
        .lines()
        .filter(|l| l.starts_with("u ") || l.starts_with("g "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    let tmpfiles = read(&deploy().join("tmpfiles.d/hpki-ca.conf"));
    let created_dirs: BTreeSet<String> = tmpfiles
        .lines()
        .filter(|l| l.starts_with("d "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();

    for service in SERVICES {
        let unit_path = deploy().join(format!("systemd/hpki-ca-{service}.service"));
        let settings = unit_settings(&read(&unit_path));
        let u = unit_path.display();
        assert_eq!(
            one(&settings, "Service", "ExecStart"),
            format!("{BINARY} --config /etc/hpki-ca/{service}.toml {service}"),
            "{u}"
        );
        let user = one(&settings, "Service", "User");
        assert_eq!(user, format!("hpki-{service}"), "{u}: a dedicated user per service");
        for name in std::iter::once(user).chain(words(&settings, "Service", "SupplementaryGroups")) {
            assert!(declared_users.contains(&name), "{u}: {name} is not declared in sysusers.d/hpki-ca.conf");
        }
        for (key, value) in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes")] {
            assert_eq!(one(&settings, "Service", key), value, "{u}");
        }
        assert_eq!(one(&settings, "Install", "WantedBy"), "hpki-ca.target", "{u}");
        if service != "registry" {
            let registry = "hpki-ca-registry.service".to_owned();
            assert!(words(&settings, "Unit", "After").contains(&registry), "{u}: starts after the registry");
            assert!(words(&settings, "Unit", "Wants").contains(&registry), "{u}: pulls in the registry");
        }
        for path in words(&settings, "Service", "ReadWritePaths") {
            assert!(created_dirs.contains(&path), "{u}: ReadWritePaths {path} is not made by tmpfiles.d/hpki-ca.conf");
        }

        // The config the unit runs with.
        let config_path = deploy().join(format!("config/{service}.toml"));
        let cfg = config::Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.state_dir, Path::new(STATE_DIR), "{}", config_path.display());
        let credentials = words(&settings, "Service", "LoadCredential");
        if let Some(domains) = token_domains(service) {
            let want: Vec<String> =
                domains.iter().map(|d| format!("{d}.pin:/etc/hpki-ca/credentials/{d}.pin")).collect();
            assert_eq!(credentials, want, "{u}: the PINs of its domains' tokens, no other");
            for domain in config::TrustDomain::ALL {
                let configured =
                    toml_keys(&read(&config_path)).contains(&(format!("hsm.tokens.{domain}"), "pin_file".to_owned()));
                if domains.contains(&domain.name()) {
                    assert_eq!(
                        cfg.token_pin_path(domain),
                        PathBuf::from(format!("/run/credentials/hpki-ca-{service}.service/{domain}.pin")),
                        "{}: the {domain} PIN is the unit's credential",
                        config_path.display()
                    );
                } else {
                    assert!(!configured, "{}: names a PIN of the {domain} token", config_path.display());
                }
            }
            assert!(words(&settings, "Service", "ReadWritePaths").contains(&format!("{STATE_DIR}/hsm/tokens")), "{u}");
        } else {
            assert!(credentials.is_empty(), "{u}: no HSM, no PIN");
            let hidden = words(&settings, "Service", "InaccessiblePaths");
            assert!(hidden.contains(&format!("-{STATE_DIR}/hsm")), "{u}: the token is hidden from it: {hidden:?}");
        }
    }
    let registry = unit_settings(&read(&deploy().join("systemd/hpki-ca-registry.service")));
    assert_eq!(words(&registry, "Service", "ReadWritePaths"), [format!("{STATE_DIR}/registry.sled")]);
    let target = unit_settings(&read(&deploy().join("systemd/hpki-ca.target")));
    let wanted: BTreeSet<String> = words(&target, "Unit", "Wants").into_iter().collect();
    let units: BTreeSet<String> = unit_names().into_iter().filter(|u| u.ends_with(".service")).collect();
    assert_eq!(wanted, units, "hpki-ca.target starts every service");

    // Ports move through the listeners and [public] only: no URL is written out.
    let url_keys = ["registry_url", "revocation_url", "crl_url", "ocsp_url", "cps_uri", "signing_crl_url"];
    for name in CONFIGS {
        let path = deploy().join(format!("config/{name}.toml"));
        let cfg = config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.state_dir, Path::new(STATE_DIR), "{}", path.display());
        for (table, key) in toml_keys(&read(&path)) {
            assert!(
                table == "public" || (!url_keys.contains(&key.as_str()) && !key.ends_with("_url")),
                "{}: [{table}] {key} is written out; it should be derived from a listener or [public]",
                path.display()
            );
        }
    }
}

/// `systemd-analyze verify` on every shipped unit, with the binary path
/// pointed at the one under test (verify checks that it is executable).
#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    let analyze =
        ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].into_iter().map(PathBuf::from).find(|p| p.exists());
    let analyze = analyze.or_else(|| {
        let out = Command::new("sh").args(["-c", "command -v systemd-analyze"]).output().ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    });
    let Some(analyze) = analyze else {
        println!("systemd-analyze not found: `systemd-analyze verify` of deploy/systemd skipped (scripts/setup.sh installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for unit in unit_names() {
        let text = read(&deploy().join("systemd").join(&unit));
        let text = text.replace(BINARY, common::BIN);
        let path = dir.path().join(&unit);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new(&analyze).arg("verify").args(&paths).output().expect("run systemd-analyze verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // verify exits 0 on most problems (an unknown key, a bad value): every
    // line about our units or their folder is one.
    let ours = |line: &&str| {
        line.contains(dir.path().to_str().unwrap()) || unit_names().iter().any(|u| line.contains(u.as_str()))
    };
    let problems: Vec<&str> = text.lines().filter(ours).collect();
    assert!(out.status.success() && problems.is_empty(), "systemd-analyze verify: {:?}\n{text}", out.status);
    if !text.trim().is_empty() {
        println!("systemd-analyze verify said, of other units:\n{text}");
    }
    println!("systemd-analyze verify: {} units OK", paths.len());
}

/// A free loopback port (the listener is closed again at once).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// The argv of the unit's ExecStart after the binary, with `/etc/hpki-ca/`
/// pointed at `etc`.
fn exec_start_args(service: &str, etc: &Path) -> Vec<String> {
    let settings = unit_settings(&read(&deploy().join(format!("systemd/hpki-ca-{service}.service"))));
    let exec = one(&settings, "Service", "ExecStart");
    let mut argv = exec.split_whitespace();
    assert_eq!(argv.next(), Some(BINARY));
    argv.map(|a| match a.strip_prefix("/etc/hpki-ca/") {
        Some(file) => etc.join(file).to_str().unwrap().to_owned(),
        None => a.to_owned(),
    })
    .collect()
}

#[test]
fn split_set_boots_from_the_shipped_configs_and_publishes_an_emergency_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let out =
        Command::new(common::repo().join("hsm-config/init-token.sh")).arg(&state).output().expect("init-token.sh");
    assert!(out.status.success(), "init-token.sh: {}", String::from_utf8_lossy(&out.stderr));

    let ports = free_ports(10);
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let listeners = [
        ("registry", "listen", addr(0)),
        ("issuance", "listen", addr(1)),
        ("revocation", "listen", addr(2)),
        ("crl", "listen", addr(3)),
        ("crl", "http_listen", addr(4)),
        ("ocsp", "listen", addr(5)),
        ("ocsp", "metrics_listen", addr(6)),
        ("registry", "metrics_listen", addr(7)),
        ("issuance", "metrics_listen", addr(8)),
        ("revocation", "metrics_listen", addr(9)),
    ];
    let (crl_base, ocsp_base) = (format!("http://{}", addr(4)), format!("http://{}", addr(5)));
    for name in CONFIGS {
        let mut text = read(&deploy().join(format!("config/{name}.toml")));
        // Paths into the temp folder: the state and, for the HSM services, the
        // PIN that systemd would hand over as a credential.
        assert!(set_key(&mut text, "", "state_dir", state.to_str().unwrap()), "{name}.toml: state_dir");
        for domain in token_domains(name).unwrap_or_default() {
            let pin = state.join(format!("hsm/{domain}.pin"));
            let table = format!("hsm.tokens.{domain}");
            assert!(set_key(&mut text, &table, "pin_file", pin.to_str().unwrap()), "{name}.toml: [{table}] pin_file");
        }
        // Ports: the listeners and the public base URLs, nothing else.
        for (table, key, value) in &listeners {
            set_key(&mut text, table, key, value);
        }
        if ["issuance", "crl", "ocsp", "admin"].contains(&name) {
            assert!(set_key(&mut text, "public", "crl_base_url", &crl_base), "{name}.toml: [public] crl_base_url");
            assert!(set_key(&mut text, "public", "ocsp_base_url", &ocsp_base), "{name}.toml: [public] ocsp_base_url");
        }
        std::fs::write(etc.join(format!("{name}.toml")), text).unwrap();
    }

    // The administrator's config runs the ceremony, then the units' commands.
    let mut ca = Ca::adopt(dir, etc.join("admin.toml"));
    let out = ca.cli(&["ceremony", "--yes"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ceremony with the shipped admin.toml: {said}");
    let mut start = |service: &str, announces: &[&str]| {
        let args = exec_start_args(service, &etc);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ca.spawn_command(&args, announces)
    };
    let registry = start("registry", &["registry"]);
    let crl = start("crl", &["crl", "crl-http"]);
    let revocation = start("revocation", &["revocation"]);
    let issuance = start("issuance", &["issuance"]);
    let ocsp = start("ocsp", &["ocsp", "ocsp-metrics"]);
    let announced = [&registry[0], &issuance[0], &revocation[0], &crl[0], &crl[1], &ocsp[0], &ocsp[1]];
    for ((service, key, want), got) in listeners.iter().zip(announced) {
        assert_eq!(got, want, "{service} ({key}) listens where its shipped config, ports moved, says");
    }
    let (issuance, revocation, crl_http, responder) = (&issuance[0], &revocation[0], &crl[1], &ocsp[0]);

    // The CA certificates point at the moved CRL distribution point.
    let state = ca.state();
    let sign_ca = ca.cert_path("sign-ca.pem");
    let (_, ca_text) = common::openssl(&["x509", "-in", sign_ca.to_str().unwrap(), "-noout", "-text"]);
    assert!(ca_text.contains(&format!("{crl_base}/crl/arl.crl")), "sign-ca.pem: {ca_text}");
    let (status, _, _) = http_get(crl_http, "/crl/arl.crl");
    assert_eq!(status, 200, "the ARL at the URL the CA certificates carry");

    // A card, issued over gRPC by the RA.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let card =
        common::submit(&ca, &rt, issuance, "d-1", "920001", &state).expect("issue through the deployed services");
    let sign = state.join("d-sign.pem");
    write_pem(&sign, &card.signing_certificate);
    let auth = state.join("d-auth.pem");
    write_pem(&auth, &card.authentication_certificate);
    let auth_ca = ca.cert_path("auth-ca.pem");
    for (cert, issuer) in [(&sign, &sign_ca), (&auth, &auth_ca)] {
        let (ok, out) = verify_chain(&ca, issuer, cert);
        assert!(ok, "{out}");
    }
    let (_, text) = common::openssl(&["x509", "-in", sign.to_str().unwrap(), "-noout", "-text"]);
    for url in [format!("{crl_base}/crl/sign.crl"), format!("{ocsp_base}/ocsp"), format!("{crl_base}/repository/")] {
        assert!(text.contains(&url), "the signing certificate carries {url} (from [public]): {text}");
    }

    // Lost: emergency revocation through the revocation process.
    let out = ca.emergency_revoke(&card.card_id, revocation);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "emergency-revoke: {said}");

    // The CRL distribution point, as a relying party reads it.
    for (path, cert, issuer) in [("/crl/sign.crl", &sign, &sign_ca), ("/crl/auth.crl", &auth, &auth_ca)] {
        let (status, _, body) = http_get(crl_http, path);
        assert_eq!(status, 200, "GET {path}");
        let pem = state.join(format!("{}.pem", path.trim_start_matches("/crl/")));
        write_pem_label(&pem, "X509 CRL", &body);
        let (ok, out) = verify_with_crl(&ca, issuer, &pem, cert);
        assert!(!ok && out.contains("certificate revoked"), "{path}: {out}");
    }

    // OCSP, as openssl asks it: revoked, soon.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (cert, issuer) in [(&sign, "sign-ca.pem"), (&auth, "auth-ca.pem")] {
        loop {
            let out = ocsp_query(&ca, responder, issuer, cert, &[]);
            if out.contains("Response verify OK") && out.contains(": revoked") {
                break;
            }
            assert!(Instant::now() < deadline, "OCSP did not say revoked: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    ca.take_children();
}

/// Every metric the shipped Grafana dashboard queries is one our services
/// export (its name appears where the metrics are written), and the file is JSON.
#[test]
fn grafana_dashboard_queries_only_metrics_we_export() {
    let text = read(&deploy().join("grafana/hpki-ca.json"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("deploy/grafana/hpki-ca.json is JSON");
    let sources = ["crates/tls/src/metrics.rs", "crates/ocsp/src/metrics.rs", "crates/crl/src/http.rs"]
        .map(|p| read(&common::repo().join(p)))
        .join("\n");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut names = std::collections::BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("hpki_") || word.starts_with("ocsp_") {
                    names.insert(word.trim_end_matches("_bucket").to_owned());
                }
            }
        }
    }
    for wanted in ["hpki_up", "hpki_grpc_calls_total", "hpki_crl_seconds_to_next_update", "ocsp_cache_hits_total"] {
        assert!(names.contains(wanted), "the dashboard has no panel on {wanted}: {names:?}");
    }
    for name in &names {
        assert!(sources.contains(name.as_str()), "the dashboard queries {name}, which no service exports");
    }
}
