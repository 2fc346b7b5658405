//! Asking our own OCSP responder, live, what it answers for a certificate:
//! the proof for the caller that relying parties already see the card revoked.
//! A plain RFC 5019 GET (SHA-1 CertID), as relying parties send it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use der::{Decode, Encode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use ocsp::asn1::{BasicOCSPResponse, CertStatus, OCSPResponse, OCSPResponseStatus};
use ocsp::issuers::IssuerHashes;

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
    fn issuer(&self, kind: &str) -> Result<IssuerHashes, String> {
        let file = if kind == "authentication" { "auth-ca.pem" } else { "sign-ca.pem" };
        let path = self.cert_dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = tls::pem_to_der(&text).ok_or_else(|| format!("{}: no certificate", path.display()))?;
        let cert = x509_cert::Certificate::from_der(&der).map_err(|e| format!("{file}: {e}"))?;
        let tbs = cert.tbs_certificate();
        let subject = tbs.subject().to_der().map_err(|e| format!("{file}: {e}"))?;
        let key = tbs.subject_public_key_info().subject_public_key.raw_bytes();
        Ok(IssuerHashes::new(&subject, key))
    }

    /// One query: the status of serial `serial_hex` of a certificate of `kind`.
    pub async fn status(&self, kind: &str, serial_hex: &str) -> Result<String, String> {
        let hashes = self.issuer(kind)?;
        let serial = hex_bytes(serial_hex).ok_or_else(|| format!("serial {serial_hex:?} is not hex"))?;
        let path = ocsp::cache_refresh::get_paths("", &hashes, &serial)
            .into_iter()
            .next()
            .ok_or("no OCSP request could be encoded")?;
        let body =
            tokio::time::timeout(TIMEOUT, self.get(&path)).await.map_err(|_| "no answer in 3 s".to_owned())??;
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

    async fn get(&self, path: &str) -> Result<Bytes, String> {
        http_get(&self.url, path).await
    }
}

/// A plain HTTP/1.1 GET of `base` (`http://host:port[/prefix]`) + `path`:
/// the body of a 2xx answer.
pub async fn http_get(base_url: &str, path: &str) -> Result<Bytes, String> {
    let rest =
        base_url.trim_end_matches('/').strip_prefix("http://").ok_or_else(|| format!("{base_url}: not http://"))?;
    let (authority, base) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("{authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("{base}{path}"))
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    Ok(resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes())
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s.to_owned() };
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The certStatus of the first SingleResponse ("good", "revoked", "unknown"),
/// or the response status when it is not successful.
fn decode_status(body: &[u8]) -> Result<String, String> {
    let resp = OCSPResponse::from_der(body).map_err(|e| format!("not an OCSP response: {e}"))?;
    if resp.response_status != OCSPResponseStatus::Successful {
        return Ok(format!("{:?}", resp.response_status));
    }
    let bytes = resp.response_bytes.ok_or("no responseBytes")?;
    let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).map_err(|e| format!("basic response: {e}"))?;
    let single = basic.tbs_response_data.responses.first().ok_or("no SingleResponse")?;
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
