//! The repository that every certificate's CPS qualifier names
//! (`profile.cps_uri`), served by the distribution point when that URL's path
//! is one of its own: an index page, the three CA certificates (DER `.crt`,
//! PEM `.pem`), and whatever documents the operator puts in
//! `[crl] repository_dir` (the CPS, the subscriber agreement), read from there
//! on each request so that a new document needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::CrlError;

/// Operator documents larger than this are not served.
const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;

/// A file the repository always holds (a CA certificate, in one encoding).
struct Fixed {
    name: String,
    content_type: &'static str,
    bytes: Vec<u8>,
}

pub struct Repository {
    /// The URL path of the index, ending in `/` (e.g. `/repository/`).
    path: String,
    /// Where the operator's documents are.
    dir: PathBuf,
    certificates: Vec<Fixed>,
}

impl Repository {
    /// The repository of `cfg`, or `None` when `profile.cps_uri` is empty or is
    /// not an `http://` URL (its host is then the operator's own web server).
    pub fn load(cfg: &config::Config) -> Result<Option<Repository>, CrlError> {
        let Some(path) = served_path(&cfg.profile.cps_uri) else { return Ok(None) };
        let mut certificates = Vec::new();
        for (stem, entity) in
            [("root-ca", &cfg.ca.root), ("signing-ca", &cfg.ca.signing), ("authentication-ca", &cfg.ca.authentication)]
        {
            let file = cfg.cert_dir().join(&entity.file_name);
            let ca = profile::IssuingCa::read_pem_file(&file)
                .map_err(|e| e.at_start("CA certificate", CrlError::FailedPrecondition))?;
            let der = ca.certificate_der().to_vec();
            let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())).into_bytes();
            certificates.push(Fixed { name: format!("{stem}.crt"), content_type: "application/pkix-cert", bytes: der });
            certificates.push(Fixed {
                name: format!("{stem}.pem"),
                content_type: "application/x-pem-file",
                bytes: pem,
            });
        }
        Ok(Some(Repository { path, dir: cfg.state_path(&cfg.crl.repository_dir), certificates }))
    }

    /// The index at the repository's path and each file below it.
    pub fn router(self: Arc<Self>) -> Router {
        let files = format!("{}{{name}}", self.path);
        Router::new()
            .route(&self.path, axum::routing::any(index))
            .route(&files, axum::routing::any(file))
            .with_state(self)
    }

    /// The operator's documents: regular files with plain names, sorted.
    async fn documents(&self) -> Vec<(String, u64)> {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else { return Vec::new() };
        let mut found = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let Ok(meta) = tokio::fs::symlink_metadata(entry.path()).await else { continue };
            if plain_name(&name) && meta.is_file() && meta.len() <= MAX_DOCUMENT_BYTES && !self.is_certificate(&name) {
                found.push((name, meta.len()));
            }
        }
        found.sort();
        found
    }

    fn is_certificate(&self, name: &str) -> bool {
        self.certificates.iter().any(|c| c.name == name)
    }
}

/// The path of `cps_uri` when it is an `http://` URL whose path ends in `/`
/// and has only plain characters (the router takes it as a route).
fn served_path(cps_uri: &str) -> Option<String> {
    let rest = cps_uri.strip_prefix("http://")?;
    let path = &rest[rest.find('/')?..];
    let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~'));
    (plain && path.len() > 1 && path.ends_with('/') && !path.contains("//")).then(|| path.to_owned())
}

/// A file name the repository serves: letters, digits, `.`, `-`, `_`, not
/// starting with a dot (so no `..`, no hidden files, no separators).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("pdf") => "application/pdf",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("crt" | "cer" | "der") => "application/pkix-cert",
        Some("crl") => "application/pkix-crl",
        Some("pem") => "application/x-pem-file",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.to_owned()).into_response()
}

fn only_get(method: &Method) -> Option<Response> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

fn ok(content_type: &'static str, bytes: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response\n"))
}

async fn index(State(repo): State<Arc<Repository>>, method: Method) -> Response {
    if let Some(refused) = only_get(&method) {
        return refused;
    }
    let link = |name: &str, what: &str| format!("<li><a href=\"{name}\">{name}</a> {what}</li>\n");
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Repository</title></head><body>\n\
         <h1>Repository</h1>\n<h2>CA certificates</h2>\n<ul>\n",
    );
    for c in &repo.certificates {
        let what = if c.name.ends_with(".crt") { "(DER)" } else { "(PEM)" };
        html.push_str(&link(&c.name, what));
    }
    html.push_str("</ul>\n<h2>Documents</h2>\n");
    let documents = repo.documents().await;
    if documents.is_empty() {
        html.push_str("<p>None published yet.</p>\n");
    } else {
        html.push_str("<ul>\n");
        for (name, len) in &documents {
            html.push_str(&link(name, &format!("({len} bytes)")));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body></html>\n");
    ok("text/html; charset=utf-8", html.into_bytes())
}

async fn file(State(repo): State<Arc<Repository>>, method: Method, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(refused) = only_get(&method) {
        return refused;
    }
    if let Some(c) = repo.certificates.iter().find(|c| c.name == name) {
        return ok(c.content_type, c.bytes.clone());
    }
    let not_found = || plain(StatusCode::NOT_FOUND, "no such document\n");
    // The name first: only then is it joined to the folder at all.
    if !plain_name(&name) {
        return not_found();
    }
    let path = repo.dir.join(&name);
    match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_DOCUMENT_BYTES => {}
        _ => return not_found(),
    }
    let opened = match tokio::fs::File::open(&path).await {
        Ok(f) => f.metadata().await.map(|meta| (f, meta.len())),
        Err(e) => Err(e),
    };
    match opened {
        // Streamed: a large document never sits whole in memory per request.
        Ok((f, len)) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type(&name))
            .header(header::CONTENT_LENGTH, len)
            .header(header::CACHE_CONTROL, "public, max-age=3600")
            .body(Body::from_stream(tokio_util::io::ReaderStream::new(f)))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response\n")),
        Err(e) => {
            tracing::warn!(name, error = %e, "cannot read repository document");
            not_found()
        }
    }
}

#[cfg(test)]
mod tests {
    use hsm::KeyAlgorithm;

    use super::*;
    use crate::published::CrlStore;
    use crate::publisher::served_urls;
    use crate::testutil::test_pki;

    /// (status line + headers, body) of one raw HTTP/1.1 request.
    async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, Vec<u8>) {
        crate::http::tests::request(addr, method, path, "Content-Length: 0\r\n").await
    }

    #[tokio::test]
    async fn the_cps_uri_serves_an_index_the_ca_certificates_and_the_operators_documents() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        let cfg = &pki.cfg;
        assert_eq!(cfg.profile.cps_uri, "http://127.0.0.1:8081/repository/", "the default this test serves");
        let repository = Arc::new(Repository::load(cfg).unwrap().expect("an http:// cps_uri is served"));
        let store = Arc::new(CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &served_urls(cfg).unwrap()).unwrap());
        let router = crate::http::router_with_limits(store, Some(repository), crate::http::HttpLimits::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let (head, body) = request(addr, "GET", "/repository/").await;
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/html"), "{head}");
        let page = String::from_utf8(body).unwrap();
        for name in ["root-ca.crt", "root-ca.pem", "signing-ca.crt", "signing-ca.pem", "authentication-ca.crt"] {
            assert!(page.contains(&format!("href=\"{name}\"")), "{name} in {page}");
        }
        assert!(page.contains("None published yet"), "{page}");

        let (head, body) = request(addr, "GET", "/repository/root-ca.crt").await;
        assert!(head.contains("application/pkix-cert"), "{head}");
        assert_eq!(body, pki.root.ca.certificate_der(), "the root certificate, DER");
        let (_, body) = request(addr, "GET", "/repository/signing-ca.pem").await;
        let parsed = pem::parse(&body).unwrap();
        assert_eq!(parsed.contents(), pki.sign.ca.certificate_der(), "the signing CA certificate, PEM");

        // The operator publishes a document, and a link that must not be followed.
        let dir = cfg.state_path(&cfg.crl.repository_dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cps.txt"), "Certification Practice Statement\n").unwrap();
        std::fs::write(dir.join(".hidden"), "not published").unwrap();
        std::fs::write(pki.dir.path().join("outside.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(pki.dir.path().join("outside.txt"), dir.join("link.txt")).unwrap();

        let (_, body) = request(addr, "GET", "/repository/").await;
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("href=\"cps.txt\"") && !page.contains("None published yet"), "{page}");
        assert!(!page.contains(".hidden") && !page.contains("link.txt"), "{page}");
        let (head, body) = request(addr, "GET", "/repository/cps.txt").await;
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/plain"), "{head}");
        assert_eq!(body, b"Certification Practice Statement\n");

        for path in
            ["/repository/.hidden", "/repository/link.txt", "/repository/..%2Foutside.txt", "/repository/nope.pdf"]
        {
            let (head, _) = request(addr, "GET", path).await;
            assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
        }
        let (head, _) = request(addr, "POST", "/repository/").await;
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        // CRL paths still reach the distribution point.
        let (head, body) = request(addr, "GET", "/crl/sign.crl").await;
        assert!(head.starts_with("HTTP/1.1 404") && body == b"no such CRL\n", "{head}");
    }

    #[test]
    fn an_unreadable_ca_certificate_stops_the_start() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        std::fs::remove_file(pki.cfg.cert_dir().join(&pki.cfg.ca.root.file_name)).unwrap();
        let err = Repository::load(&pki.cfg).err().expect("no root certificate");
        assert!(err.to_string().contains("run the key ceremony first"), "{err}");
    }

    #[test]
    fn a_cps_uri_elsewhere_is_not_served_here() {
        let mut cfg = config::Config::default();
        cfg.profile.cps_uri = "https://www.example.jp/repository/".into();
        assert!(Repository::load(&cfg).unwrap().is_none());
    }

    #[test]
    fn only_an_http_url_with_a_directory_path_is_served() {
        assert_eq!(served_path("http://127.0.0.1:8081/repository/").as_deref(), Some("/repository/"));
        assert_eq!(served_path("http://ca.example/a/b/").as_deref(), Some("/a/b/"));
        for other in
            ["", "https://ca.example/repository/", "http://ca.example", "http://ca.example/", "http://x/cps.pdf"]
        {
            assert_eq!(served_path(other), None, "{other}");
        }
    }

    #[test]
    fn plain_names_only() {
        for good in ["cps.pdf", "CPS-1.2_ja.html", "a"] {
            assert!(plain_name(good), "{good}");
        }
        for bad in ["", ".hidden", "..", "../x", "a/b", "a b", "é.pdf", &"x".repeat(129)] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
