//! OCSP replicas behind nginx (issue 13): `deploy/nginx/ocsp-cache.conf` as
//! shipped, with Debian's nginx, in front of two `hpki-ca ocsp` processes
//! that each follow the registry's status feed.
//!
//! - a GET answer is cached (`X-Cache-Status: HIT`);
//! - a lost card is `revoked` through the cache within a second of
//!   EmergencyRevoke returning, over 20 rounds (the replicas refresh it);
//! - one replica killed mid-load: no client request fails.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{issue_card_pems, openssl, Ca};
use proto::revocation::v1 as rev;

const ROUNDS: usize = 20;

/// nginx with the shipped config, its addresses and cache folder replaced.
struct Nginx {
    child: Child,
    addr: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx (make setup installs it)")
}

/// nginx serving on `port`, with its refresh listener on `refresh_port`.
fn start_nginx(dir: &Path, port: u16, refresh_port: u16, replicas: &[&str]) -> Nginx {
    let addr = format!("127.0.0.1:{port}");
    let shipped = std::fs::read_to_string(common::repo().join("deploy/nginx/ocsp-cache.conf")).unwrap();
    let cache = dir.join("nginx-cache");
    let site = shipped
        .replace("/var/cache/nginx/hpki-ocsp", cache.to_str().unwrap())
        .replace("listen 127.0.0.1:8080;", &format!("listen {addr};"))
        .replace("listen 127.0.0.1:8079;", &format!("listen 127.0.0.1:{refresh_port};"))
        .replace("server 127.0.0.1:8082 ", &format!("server {} ", replicas[0]))
        .replace("server 127.0.0.1:8083 ", &format!("server {} ", replicas[1]));
    assert!(site.contains(replicas[0]) && site.contains(replicas[1]) && site.contains(&addr), "{site}");
    std::fs::write(dir.join("ocsp-cache.conf"), site).unwrap();
    let tmp = dir.join("nginx-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let main = format!(
        "user root;\nworker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\n\
         error_log {dir}/nginx-error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  \
         fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
         include {dir}/ocsp-cache.conf;\n}}\n",
        dir = dir.display(),
        tmp = tmp.display(),
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, main).unwrap();
    let check = Command::new(nginx_binary()).arg("-t").arg("-c").arg(&conf).arg("-p").arg(dir).output().unwrap();
    assert!(check.status.success(), "nginx -t: {}", String::from_utf8_lossy(&check.stderr));
    let child = Command::new(nginx_binary())
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, addr }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, headers, body).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    if method == "POST" {
        req.extend(format!("Content-Type: application/ocsp-request\r\nContent-Length: {}\r\n", body.len()).bytes());
    }
    req.extend(b"\r\n");
    req.extend(body);
    s.write_all(&req)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Ok((status, head, body))
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A DER OCSP request for `cert` without a nonce (RFC 5019), made by openssl.
fn request_der(ca: &Ca, cert: &Path, name: &str) -> Vec<u8> {
    testkit::openssl::ocsp_request_der(&ca.cert_path("sign-ca.pem"), cert, &ca.dir.path().join(format!("{name}.req")))
}

/// The certificate status in a DER OCSP response ("good", "revoked",
/// "unknown"), read in-process: the loops below poll every few milliseconds.
/// (Step 1 checks the same answers with openssl.)
fn cert_status(der: &[u8]) -> String {
    use der::Decode;
    use ocsp::asn1::{BasicOCSPResponse, CertStatus, OCSPResponse};
    let Ok(resp) = OCSPResponse::from_der(der) else { return "not an OCSPResponse".into() };
    let Some(bytes) = resp.response_bytes else { return format!("{:?}", resp.response_status) };
    let Ok(basic) = BasicOCSPResponse::from_der(bytes.response.as_bytes()) else { return "bad basic".into() };
    match basic.tbs_response_data.responses.first().map(|r| &r.cert_status) {
        Some(CertStatus::Good(_)) => "good".into(),
        Some(CertStatus::Revoked(_)) => "revoked".into(),
        Some(CertStatus::Unknown(_)) => "unknown".into(),
        None => "no response".into(),
    }
}

/// openssl's reading of the same answer.
fn openssl_status(ca: &Ca, der: &[u8]) -> String {
    let file = ca.dir.path().join("resp.der");
    std::fs::write(&file, der).unwrap();
    let (_, text) = openssl(&["ocsp", "-respin", file.to_str().unwrap(), "-resp_text", "-noverify"]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Cert Status: "))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("no status: {text}"))
}

fn b64(der: &[u8]) -> String {
    common::base64_encode(der)
}

#[test]
fn replicas_behind_nginx_are_refreshed_on_revocation_and_fail_over() {
    let mut ca = Ca::new("");
    // nginx's ports are chosen first: the replicas refresh through one.
    let (nginx_port, refresh_port) = (free_port(), free_port());
    let config = std::fs::read_to_string(&ca.config).unwrap().replace(
        "[ocsp]\n",
        &format!(
            "[ocsp]\ncache_refresh_urls = [\"http://127.0.0.1:{refresh_port}\"]\ntrusted_proxies = [\"127.0.0.1\"]\n"
        ),
    );
    std::fs::write(&ca.config, config).unwrap();
    let core = ca.spawn(&["run"], &["registry", "issuance", "revocation"]);
    let (registry_url, issuance_url) = (ca.url(&core[0]), ca.url(&core[1]));
    // Children 1 and 2: the replicas, each its own process with its own cache.
    let replica_args = ["ocsp", "--registry-url", &registry_url, "--issuance-url", &issuance_url];
    let replicas: Vec<String> = (0..2).map(|_| ca.spawn(&replica_args, &["ocsp"]).remove(0)).collect();
    let dir = ca.dir.path().to_owned();
    let nginx = start_nginx(&dir, nginx_port, refresh_port, &[&replicas[0], &replicas[1]]);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // 1. A GET answer is cached: MISS, then HIT, both good.
    let first = issue_card_pems(&ca, &rt, &core[1], "cache-0", "840000");
    let path = format!("/ocsp/{}", b64(&request_der(&ca, &first.1, "cache-0")));
    let (status, head, body) = http(&nginx.addr, "GET", &path, &[]).unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("X-Cache-Status: MISS"), "{head}");
    assert_eq!(cert_status(&body), "good");
    assert_eq!(openssl_status(&ca, &body), "good");
    let (_, head, body) = http(&nginx.addr, "GET", &path, &[]).unwrap();
    assert!(head.contains("X-Cache-Status: HIT"), "{head}");
    assert_eq!(cert_status(&body), "good");

    // 2. A lost card is revoked through the cache within a second, 20 rounds.
    let cards: Vec<(String, String)> = (0..ROUNDS)
        .map(|i| {
            let id = format!("cache-r{i}");
            let card = issue_card_pems(&ca, &rt, &core[1], &id, &format!("84{:04}", i + 1));
            (card.0, format!("/ocsp/{}", b64(&request_der(&ca, &card.1, &id))))
        })
        .collect();
    let mut took = Vec::new();
    for (card_id, path) in &cards {
        // Cached as good first (the second GET is a HIT).
        http(&nginx.addr, "GET", path, &[]).unwrap();
        let (_, head, body) = http(&nginx.addr, "GET", path, &[]).unwrap();
        assert!(head.contains("X-Cache-Status: HIT") && cert_status(&body) == "good", "{head}");
        rt.block_on(emergency_revoke(&ca, &core[2], card_id));
        let start = Instant::now();
        loop {
            let (_, _, body) = http(&nginx.addr, "GET", path, &[]).unwrap();
            if cert_status(&body) == "revoked" {
                assert_eq!(openssl_status(&ca, &body), "revoked");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{card_id} still good through the cache after 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        took.push(start.elapsed());
    }
    took.sort();
    let (median, max) = (took[ROUNDS / 2], took[ROUNDS - 1]);
    println!("revoked through the cache: median {median:?}, max {max:?} over {ROUNDS} rounds: {took:?}");
    assert!(max < Duration::from_secs(1), "revoked through the cache took up to {max:?} (median {median:?})");

    // 3. One replica killed while requests flow: POST is not cached, so each
    // request reaches a replica. None fails.
    let post = request_der(&ca, &first.1, "cache-post");
    let mut answered = 0;
    for i in 0..200 {
        if i == 50 {
            ca.kill_child(1);
        }
        let (status, head, body) = http(&nginx.addr, "POST", "/ocsp", &post)
            .unwrap_or_else(|e| panic!("request {i} failed after the replica was killed: {e}"));
        assert_eq!(status, 200, "request {i}: {head}");
        assert_eq!(cert_status(&body), "good", "request {i}");
        answered += 1;
    }
    assert_eq!(answered, 200);
    drop(nginx);
}

async fn emergency_revoke(ca: &Ca, revocation: &str, card_id: &str) {
    let req = rev::EmergencyRevokeRequest {
        card: Some(rev::emergency_revoke_request::Card::CardId(card_id.to_owned())),
        confirmation: Some(rev::IdentityConfirmation {
            confirmed_by: "op-ito".into(),
            method: rev::ConfirmationMethod::Phone as i32,
            confirmed_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            note: String::new(),
        }),
        // Empty: the caller's client certificate names the operator.
        operator: String::new(),
        note: "ocsp_cache_e2e".into(),
        compromised_at: String::new(),
    };
    ca.revocation(revocation).await.emergency_revoke(req).await.expect("EmergencyRevoke");
}
