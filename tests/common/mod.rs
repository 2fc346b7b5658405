//! Harness for end-to-end tests: a private state folder with its own SoftHSM
//! token, the real `hpki-ca` binary started as child processes on loopback
//! port 0, and the `openssl` command line to judge the output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
use proto::issuance::v1 as iss;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::registry::v1::registry_client::RegistryClient;
use proto::revocation::v1::revocation_client::RevocationClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_hpki-ca");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A CA instance under a temp folder.
pub struct Ca {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// gRPC over mTLS (the default); false only when the test's config says
    /// `[tls] enabled = false`.
    pub tls: bool,
    children: Vec<Child>,
}

impl Ca {
    /// Writes a config (all listeners on port 0), creates the token and runs the ceremony.
    ///
    /// gRPC is mutual TLS, as in production: the ceremony writes the role
    /// certificates under `state/tls`, and tests connect with [`Ca::grpc`] or
    /// the typed helpers ([`Ca::issuance`] as `ra`, [`Ca::revocation`] and
    /// [`Ca::crl_publisher`] as `operator`, [`Ca::registry`] as `issuance`) and
    /// give the CLI [`Ca::url`]s. A test that needs plain text says
    /// `[tls]\nenabled = false` in `extra_config`, with a comment on why.
    pub fn new(extra_config: &str) -> Ca {
        let tls = !plain_text_configured(extra_config);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ca.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"state\"\n{extra_config}\n[registry]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 [issuance]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 [crl]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
                 [revocation]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 [ocsp]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n[console]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
        .expect("write config");
        let out = Command::new(repo().join("hsm-config/init-token.sh"))
            .arg(dir.path().join("state"))
            .output()
            .expect("run init-token.sh");
        assert!(out.status.success(), "init-token.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let ca = Ca { dir, config, tls, children: Vec::new() };
        let out = ca.cli(&["ceremony", "--yes"]);
        assert!(out.status.success(), "ceremony failed: {}", String::from_utf8_lossy(&out.stderr));
        if ca.tls {
            assert!(ca.state().join("tls/ra.pem").exists(), "the ceremony wrote no role certificates");
        }
        ca
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.state().join("ca").join(name)
    }

    /// The URL of a gRPC service for the CLI (`--url`, `--registry-url`):
    /// `https://` over mTLS, `http://` when the test chose plain text.
    pub fn url(&self, addr: &str) -> String {
        format!("{}://{addr}", if self.tls { "https" } else { "http" })
    }

    /// An endpoint for `addr` with the client certificate of the identity
    /// `role` (ra, operator, auditor, a service such as issuance, or one made
    /// with `hpki-ca identity add`) from the state folder; plain text only when
    /// the test configured it. For lazy channels (`.connect_lazy()`).
    pub fn endpoint(&self, addr: &str, role: &str) -> tonic::transport::Endpoint {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let endpoint = Endpoint::from_shared(self.url(addr)).unwrap_or_else(|e| panic!("endpoint {addr}: {e}"));
        if !self.tls {
            return endpoint;
        }
        let dir = self.state().join("tls");
        let read = |name: String| std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
            .identity(Identity::from_pem(read(format!("{role}.pem")), read(format!("{role}.key"))));
        endpoint.tls_config(tls).unwrap_or_else(|e| panic!("TLS for {role}: {e}"))
    }

    /// A gRPC channel to `addr` over mTLS with the client certificate of `role`
    /// (ra, operator, auditor, service) from the state folder.
    pub async fn grpc(&self, addr: &str, role: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        self.endpoint(addr, role).connect().await
    }

    async fn channel(&self, addr: &str, role: &str) -> tonic::transport::Channel {
        self.grpc(addr, role).await.unwrap_or_else(|e| panic!("{role} connects to {addr}: {e:?}"))
    }

    /// The Issuance service as an RA system calls it (role `ra`).
    pub async fn issuance(&self, addr: &str) -> IssuanceClient<tonic::transport::Channel> {
        IssuanceClient::new(self.channel(addr, "ra").await)
    }

    /// The registry as the issuance service calls it (identity `issuance`,
    /// which holds most registry rights; see `tls::policy::POLICY`).
    pub async fn registry(&self, addr: &str) -> RegistryClient<tonic::transport::Channel> {
        RegistryClient::new(self.channel(addr, "issuance").await)
    }

    /// The registry's audit log as an auditor reads it (role `auditor`: ListAudit only).
    pub async fn audit_reader(&self, addr: &str) -> RegistryClient<tonic::transport::Channel> {
        RegistryClient::new(self.channel(addr, "auditor").await)
    }

    /// The Revocation service as an operator calls it (role `operator`).
    pub async fn revocation(&self, addr: &str) -> RevocationClient<tonic::transport::Channel> {
        RevocationClient::new(self.channel(addr, "operator").await)
    }

    /// The CRL publisher as an operator calls it (role `operator`).
    pub async fn crl_publisher(&self, addr: &str) -> CrlPublisherClient<tonic::transport::Channel> {
        CrlPublisherClient::new(self.channel(addr, "operator").await)
    }

    /// Issues the client certificate `name` with `role` (`hpki-ca identity add`)
    /// unless it exists; a no-op with plain-text gRPC.
    pub fn ensure_identity(&self, name: &str, role: &str) {
        if !self.tls || self.state().join("tls").join(format!("{name}.pem")).exists() {
            return;
        }
        let out = self.cli(&["identity", "add", name, "--role", role]);
        assert!(out.status.success(), "identity add {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `hpki-ca emergency-revoke` of `card_id` through the Revocation service at
    /// `revocation`: loss reported by phone and confirmed by op-ito, revoked by
    /// op-sato, who presents their own certificate (made here when missing).
    pub fn emergency_revoke(&self, card_id: &str, revocation: &str) -> std::process::Output {
        self.ensure_identity("op-sato", "operator");
        let url = self.url(revocation);
        self.cli(&[
            "emergency-revoke",
            "--card",
            card_id,
            "--confirmed-by",
            "op-ito",
            "--method",
            "phone",
            "--operator",
            "op-sato",
            "--url",
            &url,
        ])
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN).arg("--config").arg(&self.config).args(args).output().expect("run hpki-ca")
    }

    /// Starts `hpki-ca <args>` and returns the addresses it announces, by service name.
    pub fn spawn(&mut self, args: &[&str], services: &[&str]) -> Vec<String> {
        let config =
            self.config.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", self.config.display())).to_owned();
        let args: Vec<&str> = ["--config", config.as_str()].into_iter().chain(args.iter().copied()).collect();
        self.spawn_command(&args, services)
    }

    /// Starts `hpki-ca <args>` as given (no `--config` added: a process with a
    /// config file of its own) and returns the addresses it announces, by service name.
    pub fn spawn_command(&mut self, args: &[&str], services: &[&str]) -> Vec<String> {
        self.spawn_via(Command::new(BIN), args, services)
    }

    /// Starts `hpki-ca <args>` (with this CA's config) under libfaketime,
    /// its clock `offset` ahead (e.g. "+3d", "+6y"): the test clock of the
    /// tests that let months or years pass.
    pub fn spawn_later(&mut self, offset: &str, args: &[&str], services: &[&str]) -> Vec<String> {
        let mut cmd = later(offset);
        cmd.arg("--config").arg(&self.config);
        self.spawn_via(cmd, args, services)
    }

    /// `hpki-ca <args>` with this CA's config, its clock `offset` ahead (see [`Ca::spawn_later`]).
    pub fn cli_later(&self, offset: &str, args: &[&str]) -> std::process::Output {
        later(offset).arg("--config").arg(&self.config).args(args).output().expect("run hpki-ca")
    }

    fn spawn_via(&mut self, mut cmd: Command, args: &[&str], services: &[&str]) -> Vec<String> {
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the addresses are found: a closed pipe would
            // make the child's next println fail.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut found = vec![String::new(); services.len()];
        while found.iter().any(String::is_empty) {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("hpki-ca {args:?} did not announce {services:?}"));
            let mut words = line.split_whitespace();
            let (Some(name), Some("listening"), Some("on"), Some(addr)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            if let Some(i) = services.iter().position(|s| *s == name) {
                found[i] = addr.to_owned();
            }
        }
        found
    }
}

/// `hpki-ca` with libfaketime preloaded (not the `faketime` wrapper, which
/// stays the parent: killing it would leave the CA running). The
/// multi-threaded variant, for tokio.
fn later(offset: &str) -> Command {
    let lib = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(Result::ok)
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .expect("libfaketimeMT.so.1 under /usr/lib/*/faketime (make setup installs faketime)");
    let mut cmd = Command::new(BIN);
    cmd.env("LD_PRELOAD", lib).env("FAKETIME", offset).env("FAKETIME_NO_CACHE", "1");
    cmd
}

/// Whether `extra_config` turns gRPC TLS off (`enabled = false` in its `[tls]` section).
fn plain_text_configured(extra_config: &str) -> bool {
    let mut in_tls = false;
    for line in extra_config.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
        if line.starts_with('[') {
            in_tls = line == "[tls]";
        } else if in_tls {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "enabled" {
                    return value.trim() == "false";
                }
            }
        }
    }
    false
}

impl Ca {
    /// Kills the `n`-th child started (0 first), as a crash would (SIGKILL).
    pub fn kill_child(&mut self, n: usize) {
        let child = self.children.get_mut(n).unwrap_or_else(|| panic!("no child {n}"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process ids of the children spawned so far, oldest first.
    #[allow(dead_code)] // only benches read it
    pub fn child_pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops every child started so far (SIGKILL) and waits for it.
    pub fn take_children(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Ca {
    /// A CA whose state folder (`dir/state`: token, ceremony) the test sets up
    /// itself; `config` is the file [`Ca::cli`] and [`Ca::spawn`] use. gRPC is mTLS.
    pub fn adopt(dir: tempfile::TempDir, config: PathBuf) -> Ca {
        Ca { dir, config, tls: true, children: Vec::new() }
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A key pair and PKCS#10 request made by openssl; returns the DER request.
pub fn openssl_csr(dir: &Path, name: &str, newkey: &str) -> Vec<u8> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-nodes", "-subj", "/CN=card key", "-outform", "DER"]);
    if newkey.starts_with("ec") {
        cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    } else {
        cmd.args(["-newkey", newkey]);
    }
    let out = cmd.arg("-keyout").arg(&key).arg("-out").arg(&csr).output().expect("openssl req");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&csr).expect("read csr")
}

/// `openssl verify` of the certificate file `cert` against the CA's root and the
/// issuing CA certificate file `issuing`; (verified, openssl's output).
pub fn verify_chain(ca: &Ca, issuing: &Path, cert: &Path) -> (bool, String) {
    let root = ca.cert_path("root-ca.pem");
    let path = |p: &Path| p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned();
    openssl(&["verify", "-CAfile", &path(&root), "-untrusted", &path(issuing), &path(cert)])
}

/// `openssl verify -crl_check` of `cert` with the CA's root, the issuing CA
/// certificate file `issuing` and the CRL file `crl` (PEM); (verified, output).
pub fn verify_with_crl(ca: &Ca, issuing: &Path, crl: &Path, cert: &Path) -> (bool, String) {
    let root = ca.cert_path("root-ca.pem");
    let path = |p: &Path| p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned();
    openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &path(&root),
        "-untrusted",
        &path(issuing),
        "-CRLfile",
        &path(crl),
        &path(cert),
    ])
}

/// `openssl ocsp` (POST) for `cert`, issued by the CA certificate `issuer` (a
/// file name under state/ca), against the responder at `responder`, checked
/// against the root; `extra` adds options (e.g. `-no_nonce`). openssl's output.
pub fn ocsp_query(ca: &Ca, responder: &str, issuer: &str, cert: &Path, extra: &[&str]) -> String {
    let (issuer, root) = (ca.cert_path(issuer), ca.cert_path("root-ca.pem"));
    let path = |p: &Path| p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned();
    let url = format!("http://{responder}/ocsp");
    let mut args = vec!["ocsp".to_owned(), "-issuer".into(), path(&issuer), "-cert".into(), path(cert)];
    args.extend(["-url".into(), url, "-CAfile".into(), path(&root)]);
    args.extend(extra.iter().map(|e| (*e).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args).1
}

pub fn write_pem(path: &Path, der: &[u8]) {
    let b64 = base64_encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("ascii"));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    std::fs::write(path, s).expect("write pem");
}

pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub use testkit::openssl::openssl;

/// A plain HTTP/1.1 GET over loopback: (status, lower-cased headers, body).
pub fn http_get(addr: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// Writes DER as PEM with the given label.
pub fn write_pem_label(path: &Path, label: &str, der: &[u8]) {
    write_pem(path, der);
    let text = std::fs::read_to_string(path).expect("read pem").replace("CERTIFICATE", label);
    std::fs::write(path, text).expect("write pem");
}

/// Days before today in JST, as YYYY-MM-DD.
pub fn days_ago(n: i64) -> String {
    (time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap()).date()
        - time::Duration::days(n))
    .to_string()
}

/// A member's new-card application that passes every check, with fresh openssl CSRs.
pub fn application(id: &str, licence: &str, dir: &Path) -> iss::NewCardApplication {
    let signing_csr = openssl_csr(dir, &format!("{id}-s"), "rsa:2048");
    let authentication_csr = openssl_csr(dir, &format!("{id}-a"), "rsa:2048");
    application_with_csrs(id, licence, signing_csr, authentication_csr)
}

/// A fresh P-256 key pair per certificate, as CSRs (DER), made in memory: a
/// key goes on one card only, and openssl is slow for hundreds of cards.
pub fn fresh_csrs() -> (Vec<u8>, Vec<u8>) {
    let csr = || {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CSR params");
        params.serialize_request(&key).expect("CSR").der().to_vec()
    };
    (csr(), csr())
}

/// `id`'s new-card application (CSRs made under `dir`) submitted to the
/// Issuance service at `issuance`: the issued card, or the refusal.
pub fn submit(
    ca: &Ca,
    rt: &tokio::runtime::Runtime,
    issuance: &str,
    id: &str,
    licence: &str,
    dir: &Path,
) -> Result<iss::IssuedCard, tonic::Status> {
    let card =
        rt.block_on(async { ca.issuance(issuance).await.submit_application(application(id, licence, dir)).await });
    card.map(tonic::Response::into_inner)
}

/// A card issued through the Issuance service at `issuance` for `id`, with
/// both certificates written as PEM to `<id>-sign.pem` and `<id>-auth.pem`
/// in the CA's folder: (card id, signing PEM path, authentication PEM path).
pub fn issue_card_pems(
    ca: &Ca,
    rt: &tokio::runtime::Runtime,
    issuance: &str,
    id: &str,
    licence: &str,
) -> (String, PathBuf, PathBuf) {
    let dir = ca.dir.path();
    let card = submit(ca, rt, issuance, id, licence, dir).unwrap_or_else(|e| panic!("issue card {id}: {e:?}"));
    let (sign, auth) = (dir.join(format!("{id}-sign.pem")), dir.join(format!("{id}-auth.pem")));
    write_pem(&sign, &card.signing_certificate);
    write_pem(&auth, &card.authentication_certificate);
    (card.card_id, sign, auth)
}

/// The same application, with CSRs the caller made (DER or PEM).
pub fn application_with_csrs(
    id: &str,
    licence: &str,
    signing_csr: Vec<u8>,
    authentication_csr: Vec<u8>,
) -> iss::NewCardApplication {
    iss::NewCardApplication {
        application_id: id.into(),
        applicant: Some(iss::Applicant {
            family_name_kanji: "山田".into(),
            given_name_kanji: "花子".into(),
            family_name_kana: "ヤマダ".into(),
            given_name_kana: "ハナコ".into(),
            family_name_latin: "Yamada".into(),
            given_name_latin: "Hanako".into(),
            date_of_birth: "1975-01-31".into(),
        }),
        licence: Some(iss::MedicalLicence { licence_number: licence.into(), registered_on: "2001-05-01".into() }),
        membership: iss::Membership::Member as i32,
        contact: Some(iss::ContactAddress { address: "東京都千代田区".into(), ..Default::default() }),
        documents: Some(iss::DocumentChecks {
            photo_taken_on: days_ago(10),
            resident_record_issued_on: days_ago(10),
            photo_id: Some(iss::PhotoId {
                r#type: iss::PhotoIdType::Passport as i32,
                expires_on: "2031-01-01".into(),
                issued_on: String::new(),
            }),
            licence_copy_checked: true,
            ..Default::default()
        }),
        signing_csr,
        authentication_csr,
        ..Default::default()
    }
}

/// The signing CA key in this CA's issuing token, opened apart from the CA
/// (before it runs): the benches' raw SoftHSM baseline.
pub fn signing_ca_key(ca: &Ca, sessions: usize) -> hsm::HsmKey {
    let cfg = config::Config::load(&ca.config).expect("config");
    if let Some(conf) = cfg.softhsm2_conf() {
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
    let pin = cfg.read_token_pin(config::TrustDomain::Issuing).expect("PIN of the issuing token");
    let hsm = hsm::Hsm::open(&cfg.hsm.module, &cfg.token_label(config::TrustDomain::Issuing), &pin, sessions)
        .expect("open the issuing token");
    let key = hsm.key(&cfg.ca.signing.key_label).expect("signing CA key");
    assert_eq!(key.algorithm(), hsm::KeyAlgorithm::Rsa { bits: 2048 }, "the baseline is an RSA-2048 signature");
    key
}

/// The TBS of `from` with its 16-octet serial replaced by `serial` (hex): a
/// crash's leftovers made on purpose.
pub fn with_serial(tbs: &[u8], from: &str, serial: &str) -> Vec<u8> {
    let (old, new) = (hex::decode(from).expect("hex"), hex::decode(serial).expect("hex"));
    assert_eq!((old.len(), new.len()), (16, 16), "serials are 16 octets");
    let mut needle = vec![0x02, 0x10];
    needle.extend_from_slice(&old);
    let at = tbs.windows(needle.len()).position(|w| w == needle.as_slice()).expect("serial in the TBS");
    let mut out = tbs.to_vec();
    out[at + 2..at + 18].copy_from_slice(&new);
    out
}

/// `openssl verify -purpose ocsphelper` of a responder certificate, chained
/// through the signing CA to the root: (verified, openssl's output).
pub fn verify_responder_cert(ca: &Ca, cert: &Path) -> (bool, String) {
    let path = |p: &Path| p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned();
    openssl(&[
        "verify",
        "-CAfile",
        &path(&ca.cert_path("root-ca.pem")),
        "-untrusted",
        &path(&ca.cert_path("sign-ca.pem")),
        "-purpose",
        "ocsphelper",
        &path(cert),
    ])
}

/// The console's CA: two-person control for emergency revocations, and the
/// people at the console: operators op-sato and op-ito, auditor audit-kato,
/// and the RA ra-tokyo.
pub fn console_ca() -> Ca {
    let ca = Ca::new("");
    // Two-person control on (the harness writes the [revocation] section).
    let config = std::fs::read_to_string(&ca.config).expect("config");
    let config = config.replace("[revocation]\n", "[revocation]\nemergency_requires_approval = true\n");
    assert!(config.contains("emergency_requires_approval = true"), "{config}");
    std::fs::write(&ca.config, config).expect("config");
    for (name, role) in [("op-sato", "operator"), ("op-ito", "operator"), ("audit-kato", "auditor"), ("ra-tokyo", "ra")]
    {
        ca.ensure_identity(name, role);
    }
    ca
}

/// A program the test ran must have succeeded: else the failure names it
/// (`what`) and shows its stdout and stderr.
pub fn assert_success(out: &std::process::Output, what: &str) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
}

/// What relying parties see of the card whose signing certificate is `cert`:
/// OCSP at `responder` says revoked, and `openssl verify -crl_check` against
/// the signing CA's CRL served at `crl_http` refuses it as revoked.
pub fn assert_revoked_by_ocsp_and_crl(ca: &Ca, responder: &str, crl_http: &str, cert: &Path) {
    let answer = ocsp_query(ca, responder, "sign-ca.pem", cert, &[]);
    assert!(answer.contains(": revoked"), "{answer}");
    let (verified, out) = verify_with_served_crl(ca, crl_http, cert);
    assert!(!verified && out.contains("revoked"), "openssl verify -crl_check: {out}");
}

/// The whole audit log, read as the auditor from the registry at `registry`.
pub fn audit_log(ca: &Ca, rt: &tokio::runtime::Runtime, registry: &str) -> Vec<proto::registry::v1::AuditEntry> {
    rt.block_on(async {
        ca.audit_reader(registry).await.list_audit(proto::registry::v1::ListAuditRequest::default()).await
    })
    .expect("ListAudit")
    .into_inner()
    .entries
}

/// The signing CA's full CRL as served at `crl_http`, then `openssl verify
/// -crl_check` of `cert` against it: (verified, openssl's output).
pub fn verify_with_served_crl(ca: &Ca, crl_http: &str, cert: &Path) -> (bool, String) {
    let (crl, pem) = (ca.dir.path().join("sign.crl"), ca.dir.path().join("sign-crl.pem"));
    let (_, _, der) = http_get(crl_http, "/crl/sign.crl");
    std::fs::write(&crl, &der).expect("write CRL");
    let path = |p: &Path| p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_owned();
    let (ok, out) = openssl(&["crl", "-inform", "DER", "-in", &path(&crl), "-out", &path(&pem)]);
    assert!(ok, "{out}");
    verify_with_crl(ca, &ca.cert_path("sign-ca.pem"), &pem, cert)
}
