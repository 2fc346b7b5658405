//! Asking our own OCSP responder, live, what it answers for a certificate:
//! the proof for the caller that relying parties already see the card revoked.
//! A plain RFC 5019 GET (SHA-1 CertID), as relying parties send it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use der::{Decode, Encode};
use http_body_util::{BodyExt, Empty};

use ocsp::asn1::{BasicOCSPResponse, CertStatus, OCSPResponse, OCSPResponseStatus};
use ocsp::issuers::IssuerHashes;

/// Why a live OCSP query (or a plain GET of a metrics page) got no answer;
/// shown on the page as it is.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{file}: {source}")]
    Certificate { file: &'static str, source: der::Error },
    #[error("serial {0:?} is not hex")]
    Serial(String),
    #[error("no OCSP request could be encoded")]
    NoRequest,
    #[error("no answer in {0} s")]
    Timeout(u64),
    #[error("{0}: not http://")]
    NotHttp(String),
    #[error(transparent)]
    Dial(#[from] tls::net::DialError),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("HTTP {0}")]
    Status(hyper::StatusCode),
    #[error("not an OCSP response: {0}")]
    NotOcsp(#[source] der::Error),
    #[error("no responseBytes")]
    NoResponseBytes,
    #[error("basic response: {0}")]
    Basic(#[source] der::Error),
    #[error("no SingleResponse")]
    NoSingleResponse,
}

pub struct OcspLive {
    /// `http://host:port[/path]`
    url: String,
    cert_dir: PathBuf,
}

/// What the responder answered, and how long after the start it said so.
#[derive(Debug, Clone)]
pub struct Live {
    /// "good", "revoked", "unknown", or the error ("tryLater", no answer...).
    pub status: String,
    pub after: Duration,
}

const TIMEOUT: Duration = Duration::from_secs(3);

impl OcspLive {
    pub fn new(url: &str, cert_dir: &Path) -> OcspLive {
        OcspLive { url: url.trim_end_matches('/').to_owned(), cert_dir: cert_dir.to_owned() }
    }

    /// The issuing CA certificate of a certificate of `kind` ("signing" / "authentication").
    fn issuer(&self, kind: &str) -> Result<IssuerHashes, FetchError> {
        let file = if kind == "authentication" { "auth-ca.pem" } else { "sign-ca.pem" };
        let path = self.cert_dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(FetchError::Read { path, source }),
        };
        let der = tls::pem_to_der(&text).ok_or(FetchError::NoCertificate(path))?;
        let bad = |source| FetchError::Certificate { file, source };
        let cert = x509_cert::Certificate::from_der(&der).map_err(bad)?;
        let tbs = cert.tbs_certificate();
        let subject = tbs.subject().to_der().map_err(bad)?;
        let key = tbs.subject_public_key_info().subject_public_key.raw_bytes();
        Ok(IssuerHashes::new(&subject, key))
    }

    /// One query: the status of serial `serial_hex` of a certificate of `kind`.
    pub async fn status(&self, kind: &str, serial_hex: &str) -> Result<String, FetchError> {
        let hashes = self.issuer(kind)?;
        let serial = hex_bytes(serial_hex).ok_or_else(|| FetchError::Serial(serial_hex.to_owned()))?;
        let path =
            ocsp::cache_refresh::get_paths("", &hashes, &serial).into_iter().next().ok_or(FetchError::NoRequest)?;
        let body = tokio::time::timeout(TIMEOUT, self.get(&path))
            .await
            .map_err(|_| FetchError::Timeout(TIMEOUT.as_secs()))??;
        decode_status(&body)
    }

    /// Asks until the answer is `revoked` or `within` has passed since
    /// `start` (when the revocation was answered); the last answer and how
    /// long after `start` it came.
    pub async fn until_revoked(&self, kind: &str, serial_hex: &str, start: Instant, within: Duration) -> Live {
        loop {
            let status = self.status(kind, serial_hex).await.unwrap_or_else(|e| format!("error: {e}"));
            if status == "revoked" || start.elapsed() >= within {
                return Live { status, after: start.elapsed() };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, FetchError> {
        http_get(&self.url, path).await
    }
}

/// A plain HTTP/1.1 GET of `base` (`http://host:port[/prefix]`) + `path`:
/// the body of a 2xx answer.
pub async fn http_get(base_url: &str, path: &str) -> Result<Bytes, FetchError> {
    let rest = base_url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| FetchError::NotHttp(base_url.to_owned()))?;
    let (authority, base) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    let mut sender = tls::net::dial_http1(authority, "OCSP live query").await?;
    let req = hyper::Request::get(format!("{base}{path}"))
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    Ok(resp.into_body().collect().await?.to_bytes())
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s.to_owned() };
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The certStatus of the first SingleResponse ("good", "revoked", "unknown"),
/// or the response status when it is not successful.
fn decode_status(body: &[u8]) -> Result<String, FetchError> {
    let resp = OCSPResponse::from_der(body).map_err(FetchError::NotOcsp)?;
    if resp.response_status != OCSPResponseStatus::Successful {
        return Ok(format!("{:?}", resp.response_status));
    }
    let bytes = resp.response_bytes.ok_or(FetchError::NoResponseBytes)?;
    let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).map_err(FetchError::Basic)?;
    let single = basic.tbs_response_data.responses.first().ok_or(FetchError::NoSingleResponse)?;
    Ok(match single.cert_status {
        CertStatus::Good(_) => "good",
        CertStatus::Revoked(_) => "revoked",
        CertStatus::Unknown(_) => "unknown",
    }
    .to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_serials() {
        assert_eq!(super::hex_bytes("0a1b"), Some(vec![0x0a, 0x1b]));
        assert_eq!(super::hex_bytes("a1b"), Some(vec![0x0a, 0x1b]));
        assert_eq!(super::hex_bytes("zz"), None);
    }
}
