//! HTTPS for the console: rustls with the service-identity CA's server
//! certificate; client certificates of that CA are verified in the handshake
//! but optional there, so a browser without one gets the refusal page (403)
//! rather than a broken connection. Each connection's certificate goes to
//! the handlers as [`PeerCert`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::StartError;

/// The leaf client certificate of the connection (DER), if any.
#[derive(Debug, Clone)]
pub struct PeerCert(pub Option<Arc<Vec<u8>>>);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn pem_blocks(path: &Path, tag: &str) -> Result<Vec<Vec<u8>>, StartError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))?;
    let blocks = pem::parse_many(text).map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))?;
    let found: Vec<Vec<u8>> = blocks.into_iter().filter(|b| b.tag() == tag).map(|b| b.into_contents()).collect();
    if found.is_empty() {
        return Err(StartError::Tls(format!("{}: no {tag}", path.display())));
    }
    Ok(found)
}

/// The server side: `server.pem`/`server.key` of `dir`, client certificates
/// from `ca.pem` verified when presented.
pub fn tls_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let pki = tls::LocalPki { dir: dir.to_owned() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_blocks(&pki.ca_cert(), "CERTIFICATE")? {
        roots.add(CertificateDer::from(der)).map_err(|e| StartError::Tls(format!("ca.pem: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| StartError::Tls(format!("client verifier: {e}")))?;
    let chain: Vec<CertificateDer<'static>> =
        pem_blocks(&pki.cert("server"), "CERTIFICATE")?.into_iter().map(CertificateDer::from).collect();
    let key = pem_blocks(&pki.key("server"), "PRIVATE KEY")?
        .into_iter()
        .next()
        .map(|k| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k)))
        .ok_or_else(|| StartError::Tls("server.key: no key".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| StartError::Tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts until `shutdown`; each connection is served on its own task.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tls::net::accepted(&tcp);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "console: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert =
                stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.as_ref().to_vec()));
            let peer_cert = PeerCert(cert);
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer_cert.clone());
                let mut router = router.clone();
                async move { router.call(req.map(axum::body::Body::new)).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "console: connection ended");
            }
        });
    }
}
