//! The revocation service over real gRPC, against a real registry (in-process,
//! temporary sled database) and a fake CRL publisher that records what it is
//! asked to publish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::crl::v1::{self as crl, crl_publisher_server::CrlPublisher, crl_publisher_server::CrlPublisherServer};
use proto::registry::v1::{self as reg, get_card_request::Key, registry_client::RegistryClient};
use proto::revocation::v1::{self as pb, revocation_client::RevocationClient};
use testkit::registry::{assert_status, begin_request, issue_card_from_cas};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Records every Publish call and answers with made-up CRL numbers 101, 102, ...
/// (and, when asked for a full CRL after the delta, that number plus 1000 for it).
#[derive(Clone, Default)]
struct FakeCrl {
    calls: Arc<Mutex<Vec<crl::PublishRequest>>>,
    next: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl CrlPublisher for FakeCrl {
    async fn publish(&self, request: Request<crl::PublishRequest>) -> Result<Response<crl::PublishResponse>, Status> {
        let req = request.into_inner();
        self.calls.lock().unwrap().push(req.clone());
        let issuers = if req.issuer.is_empty() { vec!["signing", "authentication"] } else { vec![req.issuer.as_str()] };
        let crls = issuers
            .into_iter()
            .map(|issuer| crl::PublishedCrl {
                issuer: issuer.into(),
                kind: crl::CrlKind::Delta as i32,
                crl_number: 101 + self.next.fetch_add(1, Ordering::SeqCst),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let following = match req.full_after_delta {
            true => crls
                .iter()
                .map(|c| crl::FollowingCrl { issuer: c.issuer.clone(), crl_number: c.crl_number + 1000 })
                .collect(),
            false => Vec::new(),
        };
        Ok(Response::new(crl::PublishResponse { crls, following }))
    }

    async fn get_status(
        &self,
        _request: Request<crl::GetStatusRequest>,
    ) -> Result<Response<crl::GetStatusResponse>, Status> {
        Ok(Response::new(crl::GetStatusResponse::default()))
    }
}

struct Harness {
    registry_server: Option<testkit::registry::Server>,
    registry: RegistryClient<Channel>,
    client: RevocationClient<Channel>,
    revocation_channel: Channel,
    publishes: Arc<Mutex<Vec<crl::PublishRequest>>>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

impl Harness {
    /// A registry, a fake CRL publisher (unless `crl_up` is false: then nothing
    /// listens at crl_url) and the revocation service.
    async fn start(requires_approval: bool, crl_up: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config::Config { state_dir: dir.path().join("state"), ..Default::default() };
        let mut stops = Vec::new();
        let mut tasks = Vec::new();

        let registry_server = testkit::registry::Server::start_in(cfg.state_dir.clone()).await;
        let registry_url = format!("http://{}", registry_server.addr);

        let fake = FakeCrl::default();
        let publishes = fake.calls.clone();
        let (crl_listener, crl_url) = listener().await;
        if crl_up {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tasks.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(CrlPublisherServer::new(fake))
                    .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(crl_listener), async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            }));
            stops.push(stop);
        } else {
            drop(crl_listener); // connection refused at crl_url
        }

        cfg.revocation.registry_url = registry_url.clone();
        cfg.revocation.crl_url = crl_url;
        cfg.revocation.emergency_requires_approval = requires_approval;
        let (rev_listener, revocation_url) = listener().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move {
            revocation::serve(&cfg, tls::GrpcKit::default(), rev_listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }));
        stops.push(stop);

        // The listeners are bound before the servers start, so connecting cannot race them.
        let registry = RegistryClient::connect(registry_url).await.unwrap();
        let revocation_channel = Channel::from_shared(revocation_url).unwrap().connect().await.unwrap();
        let client = RevocationClient::new(revocation_channel.clone());
        Harness {
            registry_server: Some(registry_server),
            registry,
            client,
            revocation_channel,
            publishes,
            stops,
            tasks,
            _dir: dir,
        }
    }

    fn publish_calls(&self) -> Vec<crl::PublishRequest> {
        self.publishes.lock().unwrap().clone()
    }

    async fn card(&self, card_id: &str) -> reg::GetCardResponse {
        let key = Key::CardId(card_id.into());
        self.registry.clone().get_card(reg::GetCardRequest { key: Some(key) }).await.unwrap().into_inner()
    }

    /// The registry's record of one of the card's certificates.
    async fn certificate(&self, card_id: &str, serial: &str) -> reg::CertificateRecord {
        self.card(card_id).await.certificates.into_iter().find(|x| x.serial == serial).unwrap()
    }

    /// The registry's whole audit log.
    async fn audit_log(&self) -> Vec<reg::AuditEntry> {
        testkit::registry::audit_log(&mut self.registry.clone()).await
    }

    /// An ACTIVE card with an issued signing and authentication certificate.
    async fn issue_card(&self, application_id: &str, licence: &str) -> IssuedCard {
        let begin = reg::BeginApplicationRequest {
            application_json: r#"{"documents":["licence"]}"#.into(),
            ..begin_request(application_id, licence)
        };
        let (card, serials) = issue_card_from_cas(&mut self.registry.clone(), begin, ["sign-ca", "auth-ca"]).await;
        IssuedCard { card_id: card.card_id, signing: serials[0].clone(), authentication: serials[1].clone() }
    }

    async fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        drop(self.client);
        drop(self.revocation_channel);
        drop(self.registry);
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        if let Some(registry) = self.registry_server.take() {
            registry.stop().await;
        }
    }
}

struct IssuedCard {
    card_id: String,
    signing: String,
    authentication: String,
}

fn confirmation() -> pb::IdentityConfirmation {
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    pb::IdentityConfirmation {
        confirmed_by: "op-desk".into(),
        method: pb::ConfirmationMethod::Phone as i32,
        confirmed_at: now.format(&time::format_description::well_known::Rfc3339).unwrap(),
        note: "called back on the registered number".into(),
    }
}

fn emergency(card: pb::emergency_revoke_request::Card, operator: &str) -> pb::EmergencyRevokeRequest {
    pb::EmergencyRevokeRequest {
        card: Some(card),
        confirmation: Some(confirmation()),
        operator: operator.into(),
        note: "lost on the train".into(),
        compromised_at: String::new(),
    }
}

fn by_card(card_id: &str) -> pb::emergency_revoke_request::Card {
    pb::emergency_revoke_request::Card::CardId(card_id.into())
}

fn revoke_request(serial: &str, reason: reg::RevocationReason) -> pb::RevokeCertificateRequest {
    pb::RevokeCertificateRequest {
        serial: serial.into(),
        reason: reason as i32,
        operator: "op-1".into(),
        note: "membership changed".into(),
        revoked_at: String::new(),
        compromised_at: String::new(),
    }
}

fn assert_card_revoked_for_key_compromise(card: &reg::GetCardResponse) {
    assert_eq!(card.card.as_ref().unwrap().state, reg::CardState::Revoked as i32);
    assert_eq!(card.certificates.len(), 2);
    for c in &card.certificates {
        assert_eq!(c.state, reg::CertificateState::CertRevoked as i32, "{}", c.serial);
        assert_eq!(c.revocation_reason, reg::RevocationReason::KeyCompromise as i32);
    }
}

#[tokio::test]
async fn revoking_a_certificate_is_final_and_idempotent() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600001").await;
    let mut c = h.client.clone();

    let first = c
        .revoke_certificate(revoke_request(&card.signing.to_uppercase(), reg::RevocationReason::AffiliationChanged))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.card_id, card.card_id);
    assert_eq!(first.certificates.len(), 1);
    let r = &first.certificates[0];
    assert_eq!((r.serial.as_str(), r.kind.as_str(), r.already_revoked), (card.signing.as_str(), "signing", false));
    assert_eq!(r.reason, reg::RevocationReason::AffiliationChanged as i32);
    assert!(!r.revoked_at.is_empty());

    // Again, with another reason: nothing changes, the first revocation stands.
    let again = c.revoke_certificate(revoke_request(&card.signing, reg::RevocationReason::Superseded)).await.unwrap();
    let r2 = &again.get_ref().certificates[0];
    assert!(r2.already_revoked);
    assert_eq!(r2.reason, reg::RevocationReason::AffiliationChanged as i32);
    assert_eq!(r2.revoked_at, r.revoked_at);

    for (serial, code, message) in [
        ("11".repeat(16), Code::NotFound, "serial: "),
        ("xyz".into(), Code::InvalidArgument, "serial: is not hex"),
        ("01".repeat(21), Code::InvalidArgument, "serial: is longer than 20 octets"),
    ] {
        assert_status(
            c.revoke_certificate(revoke_request(&serial, reg::RevocationReason::Superseded)).await,
            code,
            message,
        );
    }
    type Change = fn(&mut pb::RevokeCertificateRequest);
    let cases: [(&str, Change); 3] = [
        ("operator: is required", |r| r.operator.clear()),
        ("reason: 6 is not a revocation reason", |r| r.reason = 6), // certificateHold
        ("revoked_at: is in the future", |r| r.revoked_at = "2999-01-01T00:00:00Z".into()),
    ];
    for (message, change) in cases {
        let mut refused = revoke_request(&card.authentication, reg::RevocationReason::Superseded);
        change(&mut refused);
        assert_status(c.revoke_certificate(refused).await, Code::InvalidArgument, message);
    }

    // A given revocation time is kept; refused requests changed nothing.
    let auth = h.certificate(&card.card_id, &card.authentication).await;
    assert_eq!(auth.state, reg::CertificateState::Issued as i32);
    // Backdated beyond [revocation] max_backdate_seconds (300 s): refused, naming the field.
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for (revoked_at, compromised_at, message) in [
        (rfc(now - time::Duration::days(3)), "", "revoked_at: is more than 300 s before"),
        // A compromise before the certificate existed cannot be.
        (String::new(), "2000-01-01T00:00:00Z", "compromised_at: is before the notBefore"),
        (String::new(), "2999-01-01T00:00:00Z", "compromised_at: is in the future"),
    ] {
        let refused = pb::RevokeCertificateRequest {
            revoked_at,
            compromised_at: compromised_at.into(),
            ..revoke_request(&card.authentication, reg::RevocationReason::KeyCompromise)
        };
        assert_status(c.revoke_certificate(refused).await, Code::InvalidArgument, message);
    }
    // Within the skew the given time is kept, and the compromise (earlier) beside it.
    let auth_cert = h.certificate(&card.card_id, &card.authentication).await;
    let compromised = time::OffsetDateTime::from_unix_timestamp(auth_cert.not_before_unix)
        .unwrap()
        .max(now - time::Duration::hours(1));
    let mut dated = revoke_request(&card.authentication, reg::RevocationReason::Unspecified);
    dated.revoked_at = rfc(now - time::Duration::minutes(2));
    dated.compromised_at = rfc(compromised);
    let got = c.revoke_certificate(dated).await.unwrap().into_inner();
    assert_eq!(got.certificates[0].revoked_at, rfc(now - time::Duration::minutes(2)));
    assert_eq!(got.certificates[0].compromised_at, rfc(compromised));
    assert_eq!(got.certificates[0].reason, reg::RevocationReason::Unspecified as i32);
    let stored = h.certificate(&card.card_id, &card.authentication).await;
    assert_eq!(stored.invalidity_date_unix, compromised.unix_timestamp());
    assert!(h.publish_calls().is_empty(), "plain revocations leave CRLs to the schedule");
    h.stop().await;
}

#[tokio::test]
async fn revoking_a_card_revokes_every_certificate_once() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600002").await;
    let mut c = h.client.clone();
    let req = pb::RevokeCardRequest {
        card_id: card.card_id.clone(),
        reason: reg::RevocationReason::CessationOfOperation as i32,
        operator: "op-1".into(),
        note: "利用中止届".into(),
        revoked_at: String::new(),
        compromised_at: String::new(),
    };
    let first = c.revoke_card(req.clone()).await.unwrap().into_inner();
    assert_eq!(first.card_id, card.card_id);
    let kinds: Vec<_> = first.certificates.iter().map(|r| (r.kind.as_str(), r.already_revoked)).collect();
    assert_eq!(kinds, [("signing", false), ("authentication", false)]);
    let again = c.revoke_card(req.clone()).await.unwrap().into_inner();
    assert!(again.certificates.iter().all(|r| r.already_revoked));
    assert_eq!(again.certificates[0].revoked_at, first.certificates[0].revoked_at);

    for (card_id, code, message) in
        [("no-such-card", Code::NotFound, "card_id: "), ("", Code::InvalidArgument, "card_id: is required")]
    {
        let refused = c.revoke_card(pb::RevokeCardRequest { card_id: card_id.into(), ..req.clone() }).await;
        assert_status(refused, code, message);
    }
    h.stop().await;
}

#[tokio::test]
async fn emergency_by_card_id_revokes_both_for_key_compromise_and_publishes_once() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600003").await;
    let other = h.issue_card("app-2", "600004").await;
    let got = h.client.clone().emergency_revoke(emergency(by_card(&card.card_id), "op-1")).await.unwrap().into_inner();

    assert_eq!(got.state, pb::EmergencyState::Done as i32);
    assert_eq!(got.card_id, card.card_id);
    assert!(got.approval_id.is_empty());
    let serials: Vec<_> = got.certificates.iter().map(|r| r.serial.as_str()).collect();
    assert_eq!(serials, [card.signing.as_str(), card.authentication.as_str()]);
    for r in &got.certificates {
        assert_eq!(r.reason, reg::RevocationReason::KeyCompromise as i32);
        assert!(!r.already_revoked);
    }
    assert_eq!(got.crl_numbers, [101, 102]);
    assert_eq!(got.crl_kind, "delta");
    let per_ca: Vec<_> =
        got.crls.iter().map(|c| (c.issuer.as_str(), c.delta_crl_number, c.full_crl_number, c.full_pending)).collect();
    assert_eq!(per_ca, [("signing", 101, 1101, true), ("authentication", 102, 1102, true)]);

    let calls = h.publish_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].issuer, "", "both issuing CAs");
    assert_eq!(calls[0].kind, crl::CrlKind::Unspecified as i32);
    assert_eq!(calls[0].actor, "op-1");
    assert_eq!(calls[0].reason, format!("emergency revocation of card {}", card.card_id));
    assert!(calls[0].full_after_delta, "a full CRL follows the delta");

    let stored = h.card(&card.card_id).await;
    assert_card_revoked_for_key_compromise(&stored);
    assert!(stored.certificates.iter().all(|c| c.revoked_by == "op-1"));
    // The other physician's card is untouched.
    assert_eq!(h.card(&other.card_id).await.card.unwrap().state, reg::CardState::Active as i32);

    // Audited: the request (with the confirmation record) besides the registry's own entries.
    let log = h.audit_log().await;
    let requested: Vec<_> = log.iter().filter(|e| e.action == "emergency.requested").collect();
    assert_eq!(requested.len(), 1);
    assert_eq!((requested[0].actor.as_str(), requested[0].subject.as_str()), ("op-1", card.card_id.as_str()));
    let detail: serde_json::Value = serde_json::from_str(&requested[0].detail_json).unwrap();
    assert_eq!(detail["confirmation"]["method"], "PHONE");
    assert_eq!(detail["confirmation"]["confirmed_by"], "op-desk");
    h.stop().await;
}

#[tokio::test]
async fn emergency_by_licence_number_and_again_is_safe() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600005").await;
    let mut c = h.client.clone();
    let licence = pb::emergency_revoke_request::Card::LicenceNumber("600005".into());
    let first = c.emergency_revoke(emergency(licence.clone(), "op-1")).await.unwrap().into_inner();
    assert_eq!(first.state, pb::EmergencyState::Done as i32);
    assert_eq!(first.card_id, card.card_id);
    assert!(first.certificates.iter().all(|r| !r.already_revoked));
    let after_first = h.card(&card.card_id).await;
    assert_card_revoked_for_key_compromise(&after_first);

    // Again, by licence and by card id: DONE with the existing revocations, a CRL each time.
    let second = c.emergency_revoke(emergency(licence, "op-2")).await.unwrap().into_inner();
    let third = c.emergency_revoke(emergency(by_card(&card.card_id), "op-3")).await.unwrap().into_inner();
    for again in [&second, &third] {
        assert_eq!(again.state, pb::EmergencyState::Done as i32);
        assert_eq!(again.card_id, card.card_id);
        assert_eq!(again.certificates.len(), 2);
        for (r, f) in again.certificates.iter().zip(&first.certificates) {
            assert!(r.already_revoked);
            assert_eq!((&r.serial, &r.revoked_at, r.reason), (&f.serial, &f.revoked_at, f.reason));
        }
        assert_eq!(again.crl_numbers.len(), 2);
    }
    assert_eq!(first.crl_numbers, [101, 102]);
    assert_eq!(second.crl_numbers, [103, 104]);
    assert_eq!(h.publish_calls().len(), 3, "one Publish per call");

    let after = h.card(&card.card_id).await;
    for (a, b) in after.certificates.iter().zip(&after_first.certificates) {
        assert_eq!(a.revocation_sequence, b.revocation_sequence, "no second revocation");
        assert_eq!(a.revoked_by, "op-1", "the first revocation stands");
    }
    h.stop().await;
}

#[tokio::test]
async fn emergency_needs_the_card_and_a_complete_identity_confirmation() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600006").await;
    let mut c = h.client.clone();
    let good = emergency(by_card(&card.card_id), "op-1");

    type Change = fn(&mut pb::EmergencyRevokeRequest);
    let cases: [(Code, &str, Change); 11] = [
        (Code::InvalidArgument, "card: card_id or licence_number is required", |r| r.card = None),
        (Code::InvalidArgument, "card_id: is required", |r| r.card = Some(by_card(""))),
        (Code::InvalidArgument, "confirmation: is required", |r| r.confirmation = None),
        (Code::InvalidArgument, "confirmation.confirmed_by: is required", |r| {
            r.confirmation.as_mut().unwrap().confirmed_by.clear()
        }),
        (Code::InvalidArgument, "confirmation.method: is required", |r| r.confirmation.as_mut().unwrap().method = 0),
        (Code::InvalidArgument, "confirmation.method: 9 is not", |r| r.confirmation.as_mut().unwrap().method = 9),
        (Code::InvalidArgument, "confirmation.confirmed_at: is required", |r| {
            r.confirmation.as_mut().unwrap().confirmed_at.clear()
        }),
        (Code::InvalidArgument, "confirmation.confirmed_at: is not an RFC 3339 time", |r| {
            r.confirmation.as_mut().unwrap().confirmed_at = "2026-05-01 10:00".into()
        }),
        (Code::InvalidArgument, "confirmation.confirmed_at: is in the future", |r| {
            r.confirmation.as_mut().unwrap().confirmed_at = "2999-01-01T00:00:00Z".into()
        }),
        (Code::InvalidArgument, "operator: is required", |r| r.operator.clear()),
        (Code::NotFound, "licence_number: ", |r| {
            r.card = Some(pb::emergency_revoke_request::Card::LicenceNumber("999999".into()))
        }),
    ];
    for (code, message, change) in cases {
        let mut req = good.clone();
        change(&mut req);
        assert_status(c.emergency_revoke(req).await, code, message);
    }
    assert_status(c.emergency_revoke(emergency(by_card("C-none"), "op-1")).await, Code::NotFound, "card_id: ");
    assert_eq!(h.card(&card.card_id).await.card.unwrap().state, reg::CardState::Active as i32);
    assert!(h.publish_calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn emergency_on_a_card_revoked_for_another_reason_is_refused() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600007").await;
    let mut c = h.client.clone();
    c.revoke_card(pb::RevokeCardRequest {
        card_id: card.card_id.clone(),
        reason: reg::RevocationReason::Superseded as i32,
        operator: "op-1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let licence = pb::emergency_revoke_request::Card::LicenceNumber("600007".into());
    assert_status(
        c.emergency_revoke(emergency(licence, "op-1")).await,
        Code::FailedPrecondition,
        &format!("licence_number: card {} is already revoked (reason SUPERSEDED)", card.card_id),
    );
    assert!(h.publish_calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn concurrent_emergency_calls_give_one_set_of_revocations() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600008").await;
    let calls = (0..4).map(|i| {
        let mut c = h.client.clone();
        let req = emergency(by_card(&card.card_id), &format!("op-{i}"));
        tokio::spawn(async move { c.emergency_revoke(req).await })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap().unwrap().into_inner());
    }
    for a in &answers {
        assert_eq!(a.state, pb::EmergencyState::Done as i32);
        assert_eq!(a.certificates.len(), 2);
        assert_eq!(a.crl_numbers.len(), 2);
    }
    let newly: usize = answers.iter().map(|a| a.certificates.iter().filter(|r| !r.already_revoked).count()).sum();
    assert_eq!(newly, 2, "each certificate revoked by exactly one call");
    assert_eq!(h.publish_calls().len(), 4);

    let after = h.card(&card.card_id).await;
    assert_card_revoked_for_key_compromise(&after);
    // Every answer reports the one revocation that stands.
    for a in &answers {
        for (r, stored) in a.certificates.iter().zip(&after.certificates) {
            assert_eq!(r.serial, stored.serial);
            assert_eq!(r.revoked_at, revocation::validate::rfc3339(stored.revoked_at_unix));
        }
    }
    let again = h.client.clone().emergency_revoke(emergency(by_card(&card.card_id), "op-9")).await.unwrap();
    assert!(again.get_ref().certificates.iter().all(|r| r.already_revoked));
    let later = h.card(&card.card_id).await;
    let seqs = |v: &reg::GetCardResponse| v.certificates.iter().map(|c| c.revocation_sequence).collect::<Vec<_>>();
    assert_eq!(seqs(&later), seqs(&after));
    h.stop().await;
}

#[tokio::test]
async fn two_person_control_waits_for_a_second_operator() {
    let h = Harness::start(true, true).await;
    let card = h.issue_card("app-1", "600009").await;
    let mut c = h.client.clone();

    // The card was lost half an hour ago (or at its notBefore, if later): kept
    // with the approval until it is carried out.
    let not_before = h.card(&card.card_id).await.certificates.iter().map(|c| c.not_before_unix).max().unwrap();
    let lost = (time::OffsetDateTime::now_utc().unix_timestamp() - 1800).max(not_before);
    let rfc = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let future = pb::EmergencyRevokeRequest {
        compromised_at: "2999-01-01T00:00:00Z".into(),
        ..emergency(by_card(&card.card_id), "op-a")
    };
    assert_status(c.emergency_revoke(future).await, Code::InvalidArgument, "compromised_at: is in the future");
    let request = pb::EmergencyRevokeRequest { compromised_at: rfc(lost), ..emergency(by_card(&card.card_id), "op-a") };
    let asked = c.emergency_revoke(request).await.unwrap().into_inner();
    assert_eq!(asked.state, pb::EmergencyState::AwaitingApproval as i32);
    assert!(!asked.approval_id.is_empty());
    assert_eq!(asked.card_id, card.card_id);
    assert!(asked.certificates.is_empty() && asked.crl_numbers.is_empty());
    assert_eq!(h.card(&card.card_id).await.card.unwrap().state, reg::CardState::Active as i32, "nothing revoked yet");
    assert!(h.publish_calls().is_empty());

    let approve = |operator: &str| pb::ApproveEmergencyRequest {
        approval_id: asked.approval_id.clone(),
        operator: operator.into(),
    };
    for same in ["op-a", "OP-A"] {
        assert_status(c.approve_emergency_revocation(approve(same)).await, Code::FailedPrecondition, "operator: ");
    }
    assert_eq!(h.card(&card.card_id).await.card.unwrap().state, reg::CardState::Active as i32);
    assert_status(
        c.approve_emergency_revocation(pb::ApproveEmergencyRequest {
            approval_id: "no-such-approval".into(),
            operator: "op-b".into(),
        })
        .await,
        Code::NotFound,
        "approval_id: ",
    );
    assert_status(c.approve_emergency_revocation(approve("")).await, Code::InvalidArgument, "operator: is required");

    let done = c.approve_emergency_revocation(approve("op-b")).await.unwrap().into_inner();
    assert_eq!(done.state, pb::EmergencyState::Done as i32);
    assert_eq!(done.approval_id, asked.approval_id);
    assert_eq!(done.card_id, card.card_id);
    assert!(done.certificates.iter().all(|r| !r.already_revoked));
    assert_eq!(done.crl_numbers, [101, 102]);
    let stored = h.card(&card.card_id).await;
    assert_card_revoked_for_key_compromise(&stored);
    assert!(stored.certificates.iter().all(|c| c.revoked_by == "op-b"), "revoked under the approver's authority");
    assert!(stored.certificates.iter().all(|c| c.invalidity_date_unix == lost), "{:?}", stored.certificates);
    assert!(done.certificates.iter().all(|r| r.compromised_at == rfc(lost)), "{:?}", done.certificates);
    let approval = h
        .registry
        .clone()
        .get_approval(reg::GetApprovalRequest { approval_id: asked.approval_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approval.state, reg::ApprovalState::Executed as i32);
    assert_eq!((approval.requested_by.as_str(), approval.approved_by.as_str()), ("op-a", "op-b"));
    assert_eq!(approval.kind, revocation::EMERGENCY_APPROVAL_KIND);

    // Approving again returns the result; nothing is revoked a second time.
    let again = c.approve_emergency_revocation(approve("op-b")).await.unwrap().into_inner();
    assert_eq!(again.state, pb::EmergencyState::Done as i32);
    assert!(again.certificates.iter().all(|r| r.already_revoked));
    let third = c.approve_emergency_revocation(approve("op-c")).await.unwrap().into_inner();
    assert_eq!(third.state, pb::EmergencyState::Done as i32);
    assert!(third.certificates.iter().all(|r| r.already_revoked));
    assert_status(c.approve_emergency_revocation(approve("op-a")).await, Code::FailedPrecondition, "operator: ");
    let later = h.card(&card.card_id).await;
    for (a, b) in later.certificates.iter().zip(&stored.certificates) {
        assert_eq!(a.revocation_sequence, b.revocation_sequence);
        assert_eq!(a.revoked_by, "op-b");
    }
    // And an emergency request for the now revoked card needs no new approval.
    let repeat = c.emergency_revoke(emergency(by_card(&card.card_id), "op-a")).await.unwrap().into_inner();
    assert_eq!(repeat.state, pb::EmergencyState::Done as i32);

    let log = h.audit_log().await;
    let actions: Vec<_> = log.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert!(actions.contains(&("emergency.requested", "op-a")), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| a.0 == "emergency.approved").count(), 1, "{actions:?}");
    assert!(actions.contains(&("emergency.approved", "op-b")), "{actions:?}");
    h.stop().await;
}

#[tokio::test]
async fn with_the_crl_publisher_down_the_revocation_stands_and_the_call_says_so() {
    let h = Harness::start(false, false).await;
    let card = h.issue_card("app-1", "600010").await;
    let mut c = h.client.clone();
    let status = c.emergency_revoke(emergency(by_card(&card.card_id), "op-1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let m = status.message();
    assert!(m.contains(&card.card_id) && m.contains("revocation is recorded"), "{m}");
    assert!(m.contains("CRL could not be published") && m.contains("scheduled CRL"), "{m}");
    assert_card_revoked_for_key_compromise(&h.card(&card.card_id).await);

    // A retry is safe: still recorded once, still unavailable until the publisher is back.
    let before = h.card(&card.card_id).await;
    let retry = c.emergency_revoke(emergency(by_card(&card.card_id), "op-1")).await.unwrap_err();
    assert_eq!(retry.code(), Code::Unavailable);
    assert!(retry.message().contains("0 certificate(s) newly revoked"), "{}", retry.message());
    let after = h.card(&card.card_id).await;
    for (a, b) in after.certificates.iter().zip(&before.certificates) {
        assert_eq!(a.revocation_sequence, b.revocation_sequence);
    }
    h.stop().await;
}

#[tokio::test]
async fn status_by_serial_card_and_licence() {
    let h = Harness::start(false, true).await;
    let card = h.issue_card("app-1", "600011").await;
    let mut c = h.client.clone();
    c.revoke_certificate(revoke_request(&card.authentication, reg::RevocationReason::AffiliationChanged))
        .await
        .unwrap();
    use pb::status_request::Key as K;
    for key in [K::CardId(card.card_id.clone()), K::LicenceNumber("600011".into())] {
        let s = c.get_status(pb::StatusRequest { key: Some(key) }).await.unwrap().into_inner();
        assert_eq!(s.card_id, card.card_id);
        assert_eq!(s.holder_id, "JMA0000000001");
        assert_eq!(s.card_state, "active");
        let got: Vec<_> = s.certificates.iter().map(|x| (x.kind.as_str(), x.status.as_str())).collect();
        assert_eq!(got, [("signing", "good"), ("authentication", "revoked")]);
        let (sign, auth) = (&s.certificates[0], &s.certificates[1]);
        assert_eq!(sign.not_after, "2030-12-31T14:59:59Z");
        assert!(sign.revoked_at.is_empty() && sign.revoked_by.is_empty());
        assert_eq!(auth.reason, reg::RevocationReason::AffiliationChanged as i32);
        assert_eq!(auth.revoked_by, "op-1");
        assert!(!auth.revoked_at.is_empty());
    }
    let one = c.get_status(pb::StatusRequest { key: Some(K::Serial(card.signing.clone())) }).await.unwrap();
    let one = one.into_inner();
    assert_eq!(one.card_id, card.card_id);
    assert_eq!(one.certificates.len(), 1);
    assert_eq!(
        (one.certificates[0].serial.as_str(), one.certificates[0].status.as_str()),
        (card.signing.as_str(), "good")
    );

    for (key, code, message) in [
        (None, Code::InvalidArgument, "key: "),
        (Some(K::Serial("zz".into())), Code::InvalidArgument, "serial: "),
        (Some(K::Serial("7f".repeat(16))), Code::NotFound, "serial: "),
        (Some(K::LicenceNumber("000000".into())), Code::NotFound, "licence_number: "),
    ] {
        assert_status(c.get_status(pb::StatusRequest { key }).await, code, message);
    }
    h.stop().await;
}

#[tokio::test]
async fn health_answers_serving_and_reflection_lists_the_service() {
    let h = Harness::start(false, true).await;
    let listed =
        testkit::grpc::serving_and_listed(h.revocation_channel.clone(), &["hpki.revocation.v1.Revocation", ""]).await;
    let names: Vec<_> = listed.iter().map(String::as_str).collect();
    assert!(names.contains(&"hpki.revocation.v1.Revocation"), "{names:?}");
    // Only what this port serves: not the other services of our protos.
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(!names.contains(&"hpki.registry.v1.Registry") && !names.contains(&"hpki.crl.v1.CrlPublisher"), "{names:?}");
    h.stop().await;
}
