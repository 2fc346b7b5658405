//! A registry on 127.0.0.1:0 over a temporary database, and request builders,
//! for the registry's own gRPC tests and for the services that call it.

use der::{Decode, Encode};
use proto::registry::v1::{self as pb, registry_client::RegistryClient};
use tonic::transport::Channel;
use tonic::Code;

/// Resolves when [`Server::stop`] is called: the shutdown signal a serve takes.
type Stopped = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub struct Server {
    _dir: Option<tempfile::TempDir>,
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), registry::RegistryError>>,
}

impl Server {
    /// A registry over a fresh database in a temporary folder.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(dir.path().join("state")).await;
        server._dir = Some(dir);
        server
    }

    /// [`Server::start`], and a client of it.
    pub async fn start_with_client() -> (Server, RegistryClient<Channel>) {
        let server = Server::start().await;
        let client = server.client().await;
        (server, client)
    }

    /// A registry over the database under `state_dir`, which outlives it.
    pub async fn start_in(state_dir: std::path::PathBuf) -> Server {
        let cfg = config::Config { state_dir, ..Default::default() };
        Server::spawn(|listener, stopped| async move {
            registry::serve(&cfg, tls::GrpcKit::default(), listener, stopped).await
        })
        .await
    }

    /// A registry over a store the test also uses directly.
    pub async fn start_with_store(store: store::Store) -> Server {
        Server::start_with_store_and_limits(store, registry::PinLimits::default()).await
    }

    /// With the PIN-disclosure limits a config would give.
    pub async fn start_with_store_and_limits(store: store::Store, pin_limits: registry::PinLimits) -> Server {
        Server::spawn(|listener, stopped| {
            registry::serve_store_with(store, "JMA".into(), pin_limits, tls::GrpcKit::default(), listener, stopped)
        })
        .await
    }

    /// Runs `serve` on a free 127.0.0.1 port until [`Server::stop`]; the
    /// listener is bound first, so clients cannot race the start.
    async fn spawn<F>(serve: impl FnOnce(tokio::net::TcpListener, Stopped) -> F) -> Server
    where
        F: std::future::Future<Output = Result<(), registry::RegistryError>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        ));
        Server { _dir: None, addr, stop: Some(stop), task }
    }

    pub async fn channel(&self) -> Channel {
        // The listener is bound before serve starts, so connecting cannot race it.
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    pub async fn client(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel().await)
    }

    /// Stops the server and waits until it has; open streams must not hold it up.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), &mut self.task).await;
        stopped.expect("the server stops within 20 s").unwrap().unwrap();
    }
}

/// A fresh database in a temporary folder, which must outlive it.
pub fn temp_store() -> (tempfile::TempDir, store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

pub fn holder(licence: &str) -> pb::Holder {
    pb::Holder {
        family_name_kanji: "医師".into(),
        given_name_kanji: "花子".into(),
        family_name_latin: "ISHI".into(),
        given_name_latin: "HANAKO".into(),
        date_of_birth: "1985-01-02".into(),
        licence_number: licence.into(),
        licence_registered_on: "2010-04-01".into(),
        membership: pb::Membership::Member as i32,
        contact: Some(pb::ContactAddress { email: "hanako@example.jp".into(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn begin_request(application_id: &str, licence: &str) -> pb::BeginApplicationRequest {
    pb::BeginApplicationRequest {
        application_id: application_id.into(),
        holder: Some(holder(licence)),
        application_json: r#"{"documents":["licence","resident_record","passport"]}"#.into(),
        actor: "ra-1".into(),
        ..Default::default()
    }
}

pub fn reserve_request(card_id: &str, kind: pb::CertificateKind) -> pb::ReserveSerialRequest {
    reserve_request_from(card_id, kind, "sign-ca")
}

/// As `reserve_request`, from the issuing CA labelled `issuer_label`.
pub fn reserve_request_from(card_id: &str, kind: pb::CertificateKind, issuer_label: &str) -> pb::ReserveSerialRequest {
    pb::ReserveSerialRequest {
        card_id: card_id.into(),
        kind: kind as i32,
        issuer_label: issuer_label.into(),
        not_before_unix: 1_767_193_200,
        not_after_unix: 1_924_959_599,
    }
}

/// A real signed certificate with this serial, and its tbsCertificate bytes.
pub fn certificate(serial_hex: &str) -> (Vec<u8>, Vec<u8>) {
    let serial = hex_decode(serial_hex);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["doctor.example.jp".into()]).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let tbs = x509_cert::Certificate::from_der(&der).unwrap().tbs_certificate().to_der().unwrap();
    (der, tbs)
}

/// A RevokeCertificate of `serial` for `reason`, now, by "op-alice".
pub fn revoke_cert(serial: &str, reason: pb::RevocationReason) -> pb::RevokeCertificateRequest {
    pb::RevokeCertificateRequest {
        serial: serial.into(),
        reason: reason as i32,
        revoked_at_unix: 0,
        actor: "op-alice".into(),
        note: "written cessation report".into(),
        invalidity_date_unix: 0,
    }
}

/// An AppendAudit by "op" of `action` on `subject`, with an empty detail: for
/// the actions only the registry itself writes, which it must refuse.
pub fn forged_audit(action: &str, subject: &str) -> pb::AppendAuditRequest {
    pb::AppendAuditRequest {
        actor: "op".into(),
        action: action.into(),
        subject: subject.into(),
        detail_json: "{}".into(),
    }
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, message_start: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().starts_with(message_start),
        "{:?} does not start with {message_start:?}",
        status.message()
    );
}

/// Runs a whole application over gRPC: begin, both serials, TBS, certificates,
/// complete. Returns the card id and the serials (signing, authentication).
pub async fn issue_card(c: &mut RegistryClient<Channel>, application_id: &str, licence: &str) -> (String, Vec<String>) {
    let (card, serials) = issue_card_from(c, begin_request(application_id, licence)).await;
    (card.card_id, serials)
}

/// As `issue_card` for any BeginApplication (renewals, reissues); returns
/// the completed card and the serials (signing, authentication).
pub async fn issue_card_from(
    c: &mut RegistryClient<Channel>,
    begin: pb::BeginApplicationRequest,
) -> (pb::Card, Vec<String>) {
    issue_card_from_cas(c, begin, ["sign-ca", "sign-ca"]).await
}

/// As `issue_card_from`, with the signing certificate from the issuing CA
/// labelled `issuer_labels[0]` and the authentication one from `issuer_labels[1]`.
pub async fn issue_card_from_cas(
    c: &mut RegistryClient<Channel>,
    begin: pb::BeginApplicationRequest,
    issuer_labels: [&str; 2],
) -> (pb::Card, Vec<String>) {
    let card = c.begin_application(begin).await.unwrap().into_inner();
    let card_id = card.card.unwrap().card_id;
    let mut serials = Vec::new();
    for (kind, label) in
        [pb::CertificateKind::Signing, pb::CertificateKind::Authentication].into_iter().zip(issuer_labels)
    {
        serials.push(issue_certificate(c, reserve_request_from(&card_id, kind, label)).await);
    }
    (complete_application(c, &card_id).await, serials)
}

/// Completes the application of `card_id` (actor "ra-1"), which must succeed; the card.
pub async fn complete_application(c: &mut RegistryClient<Channel>, card_id: &str) -> pb::Card {
    let complete = pb::CompleteApplicationRequest { card_id: card_id.into(), actor: "ra-1".into() };
    c.complete_application(complete).await.unwrap().into_inner()
}

/// The whole audit log, oldest first, which must be readable.
pub async fn audit_log(c: &mut RegistryClient<Channel>) -> Vec<pb::AuditEntry> {
    let all = pb::ListAuditRequest { from_sequence: 0, limit: 0, newest_first: false };
    c.list_audit(all).await.unwrap().into_inner().entries
}

/// Reserves a serial, which must succeed; the serial.
pub async fn reserve_serial(c: &mut RegistryClient<Channel>, reserve: pb::ReserveSerialRequest) -> String {
    c.reserve_serial(reserve).await.unwrap().into_inner().serial
}

/// Reserves a serial, then records the TBS of a stand-in certificate for it
/// and stores the certificate, as issuance does; returns the serial.
pub async fn issue_certificate(c: &mut RegistryClient<Channel>, reserve: pb::ReserveSerialRequest) -> String {
    let serial = reserve_serial(c, reserve).await;
    let (der, tbs) = certificate(&serial);
    c.record_tbs(pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs, crl_scope: None }).await.unwrap();
    c.store_certificate(pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: der }).await.unwrap();
    serial
}
