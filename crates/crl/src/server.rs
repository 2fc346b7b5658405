//! Running the service: CrlPublisher + health + reflection on the gRPC
//! listener, the distribution point on the HTTP listener, and the schedule,
//! all stopped by one shutdown future.

use std::future::Future;
use std::sync::Arc;

use proto::crl::v1::crl_publisher_server::CrlPublisherServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::CrlError;
use crate::grpc::CrlService;
use crate::issuer::CaKey;
use crate::published::CrlStore;
use crate::publisher::{served_urls, Publisher};
use crate::repository::Repository;
use crate::schedule::{self, Ticks};
use crate::source::{RegistrySource, RevocationSource};

/// Loads both issuing CAs and their keys, the CRLs published before, and
/// serves until `shutdown` resolves.
pub async fn serve(
    cfg: &config::Config,
    hsm: hsm::Hsm,
    kit: tls::GrpcKit,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CrlError> {
    let dir = cfg.cert_dir();
    let signing = CaKey::load(&hsm, &dir.join(&cfg.ca.signing.file_name), &cfg.ca.signing.key_label)?;
    let authentication =
        CaKey::load(&hsm, &dir.join(&cfg.ca.authentication.file_name), &cfg.ca.authentication.key_label)?;
    let store = Arc::new(CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &served_urls(cfg)?)?);
    let source = RegistrySource::connect_lazy(&kit, &cfg.crl.registry_url)?;
    let publisher = Arc::new(Publisher::new(cfg, source, store, signing, authentication)?);
    let repository = Repository::load(cfg)?.map(Arc::new);
    serve_publisher(publisher, repository, kit, grpc, http, Ticks::default(), shutdown).await
}

/// [`serve`] with a ready publisher (any revocation source), the repository
/// (if served here) and schedule ticks.
pub async fn serve_publisher<S: RevocationSource>(
    publisher: Arc<Publisher<S>>,
    repository: Option<Arc<Repository>>,
    kit: tls::GrpcKit,
    grpc: TcpListener,
    http: TcpListener,
    ticks: Ticks,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CrlError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let server = kit.server(CrlPublisherServer::new(CrlService::new(publisher.clone()))).await?;
    let arl_url = publisher.settings().arl_url.clone();
    let arl_watch = (!arl_url.is_empty())
        .then(|| crate::arl_watch::spawn(publisher.store().clone(), arl_url, server.health().clone(), ticks.check));
    let grpc_server = server.serve(grpc, stopped(stop_rx.clone()));
    let grpc_server = async { grpc_server.await.map_err(CrlError::GrpcServe) };
    let http_server = crate::http::serve(
        http,
        publisher.store().clone(),
        repository,
        publisher.settings().http,
        stopped(stop_rx.clone()),
    );
    let scheduler = tokio::spawn(schedule::run(publisher, ticks, stop_rx));

    let result = tokio::try_join!(grpc_server, http_server);
    if let Some(w) = arl_watch {
        w.abort();
    }
    scheduler.abort();
    let _ = scheduler.await;
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hsm::KeyAlgorithm;
    use proto::crl::v1 as pb;
    use proto::crl::v1::crl_publisher_client::CrlPublisherClient;
    use proto::registry::v1::RevocationReason;

    use super::*;
    use crate::source::memory::MemorySource;
    use crate::testutil::test_pki;

    async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// A client of the publisher, once its gRPC port answers.
    async fn publisher_client(addr: std::net::SocketAddr) -> CrlPublisherClient<tonic::transport::Channel> {
        loop {
            if let Ok(c) = CrlPublisherClient::connect(format!("http://{addr}")).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn schedule_grpc_and_http_together_then_shutdown() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        let mut cfg = pki.cfg.clone();
        cfg.profile.delta_crls = true;
        let store = Arc::new(CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &served_urls(&cfg).unwrap()).unwrap());
        let source = MemorySource::default();
        source.revoke(&cfg.ca.signing.key_label, "7001", RevocationReason::KeyCompromise);
        let publisher = Arc::new(Publisher::new(&cfg, source, store, pki.sign.clone(), pki.auth.clone()).unwrap());
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ticks = Ticks { check: Duration::from_millis(100), retry: Duration::from_millis(100) };
        let server =
            tokio::spawn(serve_publisher(publisher.clone(), None, tls::GrpcKit::default(), grpc, http, ticks, async {
                let _ = stopped.await;
            }));

        // The schedule publishes at start: full + delta for both CAs.
        let mut client = publisher_client(grpc_addr).await;
        let mut latest = Vec::new();
        for _ in 0..100 {
            latest = client.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner().latest;
            if latest.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(latest.len(), 4, "{latest:?}");
        assert!(latest.iter().all(|c| c.this_update.ends_with('Z') && c.sha256.len() == 64), "{latest:?}");

        // On demand: unspecified kind = a delta, with the new revocation.
        publisher.source().revoke(&cfg.ca.signing.key_label, "7002", RevocationReason::KeyCompromise);
        let resp = client
            .publish(pb::PublishRequest {
                issuer: "signing".into(),
                kind: pb::CrlKind::Unspecified as i32,
                actor: "op1".into(),
                reason: "emergency revocation of card C1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.crls.len(), 1);
        let delta = &resp.crls[0];
        assert_eq!((delta.kind, delta.entries), (pb::CrlKind::Delta as i32, 1));
        assert!(delta.crl_number > delta.base_crl_number && delta.base_crl_number > 0);
        assert_eq!(delta.url, "http://127.0.0.1:8081/crl/sign-delta.crl");
        let audit = publisher.source().audit_log();
        assert!(
            audit
                .iter()
                .any(|(actor, action, subject)| actor == "op1" && action == "crl-published" && subject == "signing"),
            "{audit:?}"
        );

        let err = client.publish(pb::PublishRequest { issuer: "root".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // An emergency: the delta at once, the full CRL's number reserved.
        publisher.source().revoke(&cfg.ca.authentication.key_label, "7003", RevocationReason::KeyCompromise);
        let urgent = pb::PublishRequest { full_after_delta: true, reason: "emergency".into(), ..Default::default() };
        let resp = client.publish(urgent.clone()).await.unwrap().into_inner();
        let kinds: Vec<(&str, i32)> = resp.crls.iter().map(|c| (c.issuer.as_str(), c.kind)).collect();
        let delta = pb::CrlKind::Delta as i32;
        assert_eq!(kinds, [("signing", delta), ("authentication", delta)]);
        let following: Vec<&str> = resp.following.iter().map(|f| f.issuer.as_str()).collect();
        assert_eq!(following, ["signing", "authentication"]);
        assert!(resp.following.iter().zip(&resp.crls).all(|(f, d)| f.crl_number > d.crl_number), "{resp:?}");
        let err = client.publish(pb::PublishRequest { kind: pb::CrlKind::Full as i32, ..urgent }).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("full_after_delta"), "{err:?}");

        let page = http_get(http_addr, "/crl/sign-delta.crl").await;
        assert!(
            page.starts_with("HTTP/1.1 200")
                && page.to_ascii_lowercase().contains("content-type: application/pkix-crl"),
            "{page}"
        );
        let page = http_get(http_addr, "/crl/auth.crl.pem").await;
        assert!(page.contains("-----BEGIN X509 CRL-----"), "{page}");

        // Health is SERVING.
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: "hpki.crl.v1.CrlPublisher".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

        // The root's ARL: NOT_SERVING while none is served, or a quarter or
        // less of its validity is left; SERVING once a fresh one is.
        use tonic_health::pb::health_check_response::ServingStatus as S;
        let arl_status = |want: S| {
            let mut health = health.clone();
            async move {
                let mut got = None;
                // Up to 10 s: on a loaded machine the watch's first look comes late.
                for _ in 0..200 {
                    let req = tonic_health::pb::HealthCheckRequest { service: crate::arl_watch::HEALTH_SERVICE.into() };
                    got = health.check(req).await.ok().map(|r| r.into_inner().status);
                    if got == Some(want as i32) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("ARL health {got:?}, wanted {want:?}");
            }
        };
        arl_status(S::NotServing).await;
        let arl_path = cfg.state_path(&cfg.crl.out_dir).join("arl.crl");
        let now = time::OffsetDateTime::now_utc();
        let write_arl = |this: time::OffsetDateTime, next: time::OffsetDateTime| {
            let spec = pki.root.spec(this, next, 1);
            let arl = crate::builder::build_crl(&spec, [], &pki.root.key).unwrap();
            crate::published::write_atomically(&arl_path, &arl.der).unwrap();
        };
        write_arl(now, now + time::Duration::days(90));
        arl_status(S::Serving).await;
        write_arl(now - time::Duration::days(80), now + time::Duration::days(20));
        arl_status(S::NotServing).await;
        write_arl(now - time::Duration::days(1), now + time::Duration::days(89));
        arl_status(S::Serving).await;
        write_arl(now - time::Duration::days(91), now - time::Duration::days(1));
        arl_status(S::NotServing).await;

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn serve_loads_the_cas_and_reports_an_absent_registry_as_unavailable() {
        let pki = test_pki(KeyAlgorithm::EcdsaP256);
        let mut cfg = pki.cfg.clone();
        // Nothing listens here.
        let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        cfg.crl.registry_url = format!("http://{}", unused.local_addr().unwrap());
        drop(unused);
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hsm = pki.hsm.clone();
        let server = tokio::spawn(async move {
            serve(&cfg, hsm, tls::GrpcKit::default(), grpc, http, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut client = publisher_client(grpc_addr).await;
        let err = client.publish(pb::PublishRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        let page = http_get(http_addr, "/crl/sign.crl").await;
        assert!(page.starts_with("HTTP/1.1 404"), "{page}");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();

        // A missing CA certificate stops it from starting, with a hint.
        let mut cfg = pki.cfg.clone();
        cfg.ca.signing.file_name = "missing.pem".into();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(&cfg, pki.hsm.clone(), tls::GrpcKit::default(), grpc, http, async {}).await.unwrap_err();
        assert!(err.to_string().contains("ceremony"), "{err}");
    }
}
