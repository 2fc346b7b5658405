//! The registry over a real gRPC connection: the issuance flow, refusals with
//! the field named, health and reflection.

use proto::registry::v1::{self as pb, get_card_request::Key, registry_client::RegistryClient};
use testkit::registry::*;
use tonic::transport::Channel;
use tonic::Code;

/// A new card (application "app-1" of `licence`) and its signing serial,
/// reserved and nothing more.
async fn signing_serial_reserved(c: &mut RegistryClient<Channel>, licence: &str) -> (pb::Card, String) {
    let card = c.begin_application(begin_request("app-1", licence)).await.unwrap().into_inner().card.unwrap();
    let reserve = reserve_request(&card.card_id, pb::CertificateKind::Signing);
    let serial = reserve_serial(c, reserve).await;
    (card, serial)
}

#[tokio::test]
async fn an_application_goes_from_begin_to_an_active_card() {
    let (server, mut c) = Server::start_with_client().await;

    let begun = c.begin_application(begin_request("app-1", "555001")).await.unwrap().into_inner();
    assert!(!begun.existing);
    let card = begun.card.unwrap();
    assert_eq!(card.state, pb::CardState::Pending as i32);
    assert_eq!(begun.holder.unwrap().holder_id, "JMA0000000001");
    let again = c.begin_application(begin_request("app-1", "555001")).await.unwrap().into_inner();
    assert!(again.existing);
    assert_eq!(again.card.unwrap().card_id, card.card_id);

    let mut serials = Vec::new();
    for kind in [pb::CertificateKind::Signing, pb::CertificateKind::Authentication] {
        let serial = reserve_serial(&mut c, reserve_request(&card.card_id, kind)).await;
        assert_eq!(serial.len(), 32, "16 octets in hex");
        assert!(u8::from_str_radix(&serial[..2], 16).unwrap() < 0x80, "positive");
        serials.push(serial);
    }
    let certs: Vec<_> = serials.iter().map(|s| certificate(s)).collect();
    for (serial, (_, tbs)) in serials.iter().zip(&certs) {
        c.record_tbs(pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone(), crl_scope: None })
            .await
            .unwrap();
        // A retry with the same bytes is fine.
        c.record_tbs(pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone(), crl_scope: None })
            .await
            .unwrap();
    }

    let early = c
        .complete_application(pb::CompleteApplicationRequest { card_id: card.card_id.clone(), actor: "ra-1".into() })
        .await;
    assert_status(early, Code::FailedPrecondition, "card_id: ");

    for (serial, (der, _)) in serials.iter().zip(&certs) {
        let req = pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: der.clone() };
        c.store_certificate(req.clone()).await.unwrap();
        c.store_certificate(req).await.unwrap();
    }
    let done = complete_application(&mut c, &card.card_id).await;
    assert_eq!(done.state, pb::CardState::Active as i32);

    for key in
        [Key::CardId(card.card_id.clone()), Key::ApplicationId("app-1".into()), Key::LicenceNumber("555001".into())]
    {
        let got = c.get_card(pb::GetCardRequest { key: Some(key) }).await.unwrap().into_inner();
        let got_card = got.card.unwrap();
        assert_eq!(got_card.state, pb::CardState::Active as i32);
        assert_eq!(got_card.signing_serial, serials[0]);
        assert_eq!(got_card.authentication_serial, serials[1]);
        assert_eq!(got.certificates.len(), 2);
        for (record, (der, tbs)) in got.certificates.iter().zip(&certs) {
            assert_eq!(record.state, pb::CertificateState::Issued as i32);
            assert_eq!(&record.certificate_der, der);
            assert_eq!(&record.tbs_der, tbs);
        }
    }
    let cert = c.get_certificate(pb::GetCertificateRequest { serial: serials[1].to_uppercase() }).await.unwrap();
    assert_eq!(cert.into_inner().kind, pb::CertificateKind::Authentication as i32);

    let log = audit_log(&mut c).await;
    let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "application.begin",
            "serial.reserve",
            "serial.reserve",
            "tbs.record",
            "tbs.record",
            "certificate.store",
            "certificate.store",
            "application.complete"
        ]
    );
    assert_eq!(log[0].actor, "ra-1");
    assert!(log[1].actor.starts_with("peer:127.0.0.1:"), "{}", log[1].actor);
    assert!(log.windows(2).all(|w| w[1].prev_hash == w[0].hash));

    // Another application for the same physician while the card is active.
    let second = c.begin_application(begin_request("app-2", "555001")).await;
    assert_status(second, Code::FailedPrecondition, "holder.licence_number: holder already has an active card");
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_match_the_recorded_tbs_is_refused_and_nothing_changes() {
    let (server, mut c) = Server::start_with_client().await;
    let (_, serial) = signing_serial_reserved(&mut c, "555002").await;
    let (_, tbs) = certificate(&serial);
    c.record_tbs(pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone(), crl_scope: None }).await.unwrap();
    let before = c.get_certificate(pb::GetCertificateRequest { serial: serial.clone() }).await.unwrap().into_inner();

    // Same serial, other key: a different tbsCertificate.
    let (other_der, other_tbs) = certificate(&serial);
    let stored =
        c.store_certificate(pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: other_der }).await;
    assert_status(stored, Code::FailedPrecondition, "certificate_der: ");
    let recorded =
        c.record_tbs(pb::RecordTbsRequest { serial: serial.clone(), tbs_der: other_tbs, crl_scope: None }).await;
    assert_status(recorded, Code::FailedPrecondition, "tbs_der: ");

    let after = c.get_certificate(pb::GetCertificateRequest { serial: serial.clone() }).await.unwrap().into_inner();
    assert_eq!(after, before);
    assert_eq!(after.state, pb::CertificateState::Precert as i32);
    assert!(after.certificate_der.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_named() {
    let (server, mut c) = Server::start_with_client().await;
    let (card, serial) = signing_serial_reserved(&mut c, "555003").await;

    let mut req = begin_request("", "555004");
    assert_status(c.begin_application(req.clone()).await, Code::InvalidArgument, "application_id: ");
    req.application_id = "app-x".into();
    req.holder = None;
    assert_status(c.begin_application(req.clone()).await, Code::InvalidArgument, "holder: ");
    req = begin_request("app-x", "");
    assert_status(c.begin_application(req).await, Code::InvalidArgument, "holder.licence_number: ");
    req = begin_request("app-x", "555004");
    req.application_json = "{not json".into();
    assert_status(c.begin_application(req).await, Code::InvalidArgument, "application_json: ");
    req = begin_request("app-1", "555999");
    assert_status(c.begin_application(req).await, Code::FailedPrecondition, "application_id: ");

    let mut r = reserve_request(&card.card_id, pb::CertificateKind::Unspecified);
    assert_status(c.reserve_serial(r.clone()).await, Code::InvalidArgument, "kind: ");
    r = reserve_request("Cffffffffffffffff", pb::CertificateKind::Signing);
    assert_status(c.reserve_serial(r.clone()).await, Code::NotFound, "card_id: no such card");
    r = reserve_request(&card.card_id, pb::CertificateKind::Signing);
    r.not_after_unix = r.not_before_unix;
    assert_status(c.reserve_serial(r).await, Code::InvalidArgument, "not_after_unix: ");

    let (der, tbs) = certificate(&serial);
    let bad_hex = pb::RecordTbsRequest { serial: "xyz".into(), tbs_der: tbs.clone(), crl_scope: None };
    assert_status(c.record_tbs(bad_hex).await, Code::InvalidArgument, "serial: ");
    let unknown = "01".repeat(16);
    let (_, unknown_tbs) = certificate(&unknown);
    let req = pb::RecordTbsRequest { serial: unknown.clone(), tbs_der: unknown_tbs, crl_scope: None };
    assert_status(c.record_tbs(req).await, Code::NotFound, "serial: no such certificate");
    let req = pb::RecordTbsRequest { serial: serial.clone(), tbs_der: b"not der".to_vec(), crl_scope: None };
    assert_status(c.record_tbs(req).await, Code::InvalidArgument, "tbs_der: ");
    let (_, tbs_of_other_serial) = certificate(&unknown);
    let req = pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs_of_other_serial, crl_scope: None };
    assert_status(c.record_tbs(req).await, Code::InvalidArgument, "tbs_der: its serial number is not");
    // A CRL scope whose URL the TBS does not name would be published for years.
    let scope = pb::CrlScope { crl_url: "http://h/crl/sign.crl".into(), partitions: 0, delta_crls: false };
    let req = pb::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone(), crl_scope: Some(scope) };
    assert_status(c.record_tbs(req).await, Code::InvalidArgument, "crl_scope.crl_url: ");

    let req = pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: der.clone() };
    assert_status(c.store_certificate(req).await, Code::FailedPrecondition, "serial: ");
    let req = pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: vec![0x30, 0x03, 0x02, 0x01] };
    assert_status(c.store_certificate(req).await, Code::InvalidArgument, "certificate_der: ");
    let req = pb::StoreCertificateRequest { serial: serial.clone(), certificate_der: vec![] };
    assert_status(c.store_certificate(req).await, Code::InvalidArgument, "certificate_der: is required");
    let req = pb::StoreCertificateRequest { serial: unknown.clone(), certificate_der: der.clone() };
    assert_status(c.store_certificate(req).await, Code::InvalidArgument, "certificate_der: its serial number is not");

    assert_status(c.get_card(pb::GetCardRequest { key: None }).await, Code::InvalidArgument, "key: ");
    let by_licence = pb::GetCardRequest { key: Some(Key::LicenceNumber("000".into())) };
    assert_status(c.get_card(by_licence).await, Code::NotFound, "licence_number: ");
    let by_app = pb::GetCardRequest { key: Some(Key::ApplicationId("nope".into())) };
    assert_status(c.get_card(by_app).await, Code::NotFound, "application_id: ");
    let cert = c.get_certificate(pb::GetCertificateRequest { serial: unknown }).await;
    assert_status(cert, Code::NotFound, "serial: ");
    let complete = pb::CompleteApplicationRequest { card_id: String::new(), actor: String::new() };
    assert_status(c.complete_application(complete).await, Code::InvalidArgument, "card_id: is required");

    let forged = forged_audit("certificate.store", &serial);
    assert_status(c.append_audit(forged).await, Code::InvalidArgument, "action: ");
    // Checkpoints come only through AppendCheckpoint (the checkpointer's identity).
    let checkpoint = forged_audit("audit.checkpoint", "audit-checkpoint");
    assert_status(c.append_audit(checkpoint).await, Code::InvalidArgument, "action: audit.checkpoint is written only");
    let entry = c
        .append_checkpoint(pb::AppendCheckpointRequest {
            actor: "op".into(),
            subject: "audit-checkpoint".into(),
            detail_json: "{}".into(),
        })
        .await
        .expect("AppendCheckpoint")
        .into_inner();
    assert_eq!((entry.action.as_str(), entry.actor.as_str()), ("audit.checkpoint", "op"));
    // No actor: the caller is named (its certificate's identity; the peer without TLS).
    let no_actor = pb::AppendAuditRequest { actor: String::new(), action: "ra.note".into(), ..Default::default() };
    let entry = c.append_audit(no_actor).await.expect("append without an actor").into_inner();
    assert!(entry.actor.starts_with("peer:127.0.0.1:"), "{entry:?}");
    server.stop().await;
}

#[tokio::test]
async fn audit_entries_can_be_appended_and_paged() {
    let (server, mut c) = Server::start_with_client().await;
    for i in 0..5 {
        let req = pb::AppendAuditRequest {
            actor: "operator-1".into(),
            action: "ra.note".into(),
            subject: format!("JMA{i:010}"),
            detail_json: r#"{"by":"post"}"#.into(),
        };
        let entry = c.append_audit(req).await.unwrap().into_inner();
        assert_eq!(entry.sequence, i + 1);
        assert_eq!(entry.hash.len(), 32);
    }
    let page = c
        .list_audit(pb::ListAuditRequest { from_sequence: 2, limit: 2, newest_first: false })
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<_> = page.entries.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [2, 3]);
    let rest = c
        .list_audit(pb::ListAuditRequest { from_sequence: 4, limit: 0, newest_first: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 2);
    assert_eq!(rest.entries[0].prev_hash, page.entries[1].hash);

    // Newest first: from the head (0), and from a sequence down.
    let back = |from_sequence, limit| {
        let mut c = c.clone();
        async move {
            let req = pb::ListAuditRequest { from_sequence, limit, newest_first: true };
            c.list_audit(req).await.unwrap().into_inner().entries.iter().map(|e| e.sequence).collect::<Vec<_>>()
        }
    };
    assert_eq!(back(0, 0).await, [5, 4, 3, 2, 1]);
    assert_eq!(back(0, 2).await, [5, 4]);
    assert_eq!(back(3, 0).await, [3, 2, 1]);
    assert_eq!(back(99, 1).await, [5]);
    server.stop().await;
}

#[tokio::test]
async fn health_answers_serving_and_reflection_lists_the_service() {
    let server = Server::start().await;
    let listed = testkit::grpc::serving_and_listed(server.channel().await, &["hpki.registry.v1.Registry", ""]).await;
    let names: Vec<_> = listed.iter().map(String::as_str).collect();
    assert!(names.contains(&"hpki.registry.v1.Registry"), "{names:?}");
    // Only what this port serves: not the other services of our protos.
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(!names.contains(&"hpki.issuance.v1.Issuance") && !names.contains(&"hpki.crl.v1.CrlPublisher"), "{names:?}");
    server.stop().await;
}

#[tokio::test]
async fn data_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::Config { state_dir: dir.path().to_owned(), ..Default::default() };
    let mut card_id = String::new();
    for round in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_cfg = cfg.clone();
        let task = tokio::spawn(async move {
            registry::serve(&serve_cfg, tls::GrpcKit::default(), listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut c = RegistryClient::connect(format!("http://{addr}")).await.unwrap();
        if round == 0 {
            card_id =
                c.begin_application(begin_request("app-1", "555005")).await.unwrap().into_inner().card.unwrap().card_id;
        } else {
            let got = c.get_card(pb::GetCardRequest { key: Some(Key::ApplicationId("app-1".into())) }).await.unwrap();
            assert_eq!(got.into_inner().card.unwrap().card_id, card_id);
        }
        drop(c);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    assert!(cfg.db_path().is_dir());
}

/// A serial as issuance chooses one for PrepareCard: 16 octets, positive.
fn fresh_serial(first: u8) -> String {
    let mut bytes = [first; 16];
    bytes[15] = bytes[15].wrapping_add(1);
    hex::encode(bytes)
}

/// A card certificate of `kind` for PrepareCard, its TBS carrying `serial`.
fn prepared_certificate(serial: &str, tbs_der: &[u8], kind: pb::CertificateKind) -> pb::PreparedCertificate {
    pb::PreparedCertificate {
        kind: kind as i32,
        serial: serial.to_owned(),
        issuer_label: "sign-ca".into(),
        not_before_unix: 1_700_000_000,
        not_after_unix: 1_857_000_000,
        tbs_der: tbs_der.to_vec(),
        crl_scope: None,
    }
}

/// Each serial with its certificate from [`certificate`], for FinishCard.
fn signed_certificates(serials: &[String], certs: &[(Vec<u8>, Vec<u8>)]) -> Vec<pb::SignedCertificate> {
    serials
        .iter()
        .zip(certs)
        .map(|(serial, (der, _))| pb::SignedCertificate { serial: serial.clone(), certificate_der: der.clone() })
        .collect()
}

#[tokio::test]
async fn prepare_card_and_finish_card_make_an_active_card_in_two_calls() {
    let (_server, mut c) = Server::start_with_client().await;
    let card = c.begin_application(begin_request("app-1", "555011")).await.unwrap().into_inner().card.unwrap();
    let serials = [fresh_serial(0x11), fresh_serial(0x22)];
    let certs: Vec<_> = serials.iter().map(|s| certificate(s)).collect();
    let prepared = |i: usize, kind: pb::CertificateKind| prepared_certificate(&serials[i], &certs[i].1, kind);
    let both = vec![prepared(0, pb::CertificateKind::Signing), prepared(1, pb::CertificateKind::Authentication)];
    // The PIN escrow goes in the same write; a retry keeps the first one.
    let escrow = pb::StorePinEscrowRequest {
        card_id: String::new(),
        key_label: "pin-escrow".into(),
        iv: vec![0xA5; 12],
        ciphertext: vec![0x5A; 22],
        actor: "issuance".into(),
    };
    let req = pb::PrepareCardRequest {
        card_id: card.card_id.clone(),
        certificates: both.clone(),
        pin_escrow: Some(escrow.clone()),
    };
    assert!(c.prepare_card(req.clone()).await.unwrap().into_inner().pin_escrow_stored);
    assert!(!c.prepare_card(req).await.unwrap().into_inner().pin_escrow_stored);
    let short = pb::PrepareCardRequest {
        card_id: card.card_id.clone(),
        certificates: both.clone(),
        pin_escrow: Some(pb::StorePinEscrowRequest { iv: vec![0; 3], ..escrow }),
    };
    assert_status(c.prepare_card(short).await, Code::InvalidArgument, "pin_escrow.iv: ");
    let view = c.get_card(pb::GetCardRequest { key: Some(Key::CardId(card.card_id.clone())) }).await.unwrap();
    let states: Vec<_> = view.into_inner().certificates.iter().map(|r| (r.serial.clone(), r.state)).collect();
    assert_eq!(
        states,
        [
            (serials[0].clone(), pb::CertificateState::Precert as i32),
            (serials[1].clone(), pb::CertificateState::Precert as i32)
        ]
    );

    // Refusals name the field; nothing of a refused request is kept.
    let other = c.begin_application(begin_request("app-2", "555012")).await.unwrap().into_inner().card.unwrap();
    let reuse = pb::PrepareCardRequest { card_id: other.card_id.clone(), certificates: both.clone(), pin_escrow: None };
    assert_status(c.prepare_card(reuse).await, Code::FailedPrecondition, "serial: ");
    let mut wrong_tbs = prepared(0, pb::CertificateKind::Signing);
    wrong_tbs.serial = fresh_serial(0x33);
    let req =
        pb::PrepareCardRequest { card_id: other.card_id.clone(), certificates: vec![wrong_tbs], pin_escrow: None };
    assert_status(c.prepare_card(req).await, Code::InvalidArgument, "certificates.tbs_der: its serial number is not");
    let twice = vec![prepared(0, pb::CertificateKind::Signing), prepared(0, pb::CertificateKind::Signing)];
    let req = pb::PrepareCardRequest { card_id: other.card_id.clone(), certificates: twice, pin_escrow: None };
    assert_status(c.prepare_card(req).await, Code::InvalidArgument, "certificates.kind: ");
    let req = pb::PrepareCardRequest { card_id: other.card_id.clone(), certificates: Vec::new(), pin_escrow: None };
    assert_status(c.prepare_card(req).await, Code::InvalidArgument, "certificates: ");
    let view = c.get_card(pb::GetCardRequest { key: Some(Key::CardId(other.card_id.clone())) }).await.unwrap();
    assert!(view.into_inner().certificates.is_empty());

    let signed = signed_certificates(&serials, &certs);
    let mut swapped = signed.clone();
    swapped[0].serial = serials[1].clone();
    let req = pb::FinishCardRequest { card_id: card.card_id.clone(), certificates: swapped, actor: "ra-1".into() };
    assert_status(c.finish_card(req).await, Code::InvalidArgument, "certificates.certificate_der: its serial");
    let req = pb::FinishCardRequest { card_id: card.card_id.clone(), certificates: signed, actor: "ra-1".into() };
    let done = c.finish_card(req.clone()).await.unwrap().into_inner();
    assert_eq!(done.state, pb::CardState::Active as i32);
    assert_eq!(c.finish_card(req).await.unwrap().into_inner(), done, "a retry changes nothing");
    let feed = c.get_feed_position(pb::FeedPositionRequest {}).await.unwrap().into_inner();
    assert_eq!(feed.last_sequence, 2, "both certificates GOOD in the feed");
}

/// One step's answer of a CardSteps call, or its error as the step's own call would end.
fn step_answer(a: &pb::CardStepAnswer) -> Result<&pb::card_step_answer::Answer, tonic::Status> {
    match a.answer.as_ref() {
        Some(pb::card_step_answer::Answer::Error(e)) => Err(tonic::Status::new(Code::from(e.code), e.message.clone())),
        Some(answer) => Ok(answer),
        None => panic!("a step without an answer"),
    }
}

fn steps(steps: Vec<pb::card_step::Step>) -> pb::CardStepsRequest {
    pb::CardStepsRequest { steps: steps.into_iter().map(|s| pb::CardStep { step: Some(s) }).collect() }
}

#[tokio::test]
async fn card_steps_answers_each_step_in_its_place_as_its_own_call_would() {
    use pb::card_step::Step;
    use pb::card_step_answer::Answer;
    let (server, mut c) = Server::start_with_client().await;

    // Two cards begun in one call; a step of no kind and a bad one are refused in their places.
    let mut nameless = begin_request("app-x", "555099");
    nameless.application_id = String::new();
    let mut call = steps(vec![
        Step::Begin(Box::new(begin_request("app-a", "555021"))),
        Step::Begin(Box::new(nameless)),
        Step::Begin(Box::new(begin_request("app-b", "555022"))),
    ]);
    call.steps.insert(1, pb::CardStep { step: None });
    let answers = c.card_steps(call).await.unwrap().into_inner().answers;
    assert_eq!(answers.len(), 4);
    let card_of = |a: &pb::CardStepAnswer| match step_answer(a) {
        Ok(Answer::Begun(b)) => b.card.clone().unwrap(),
        other => panic!("not begun: {other:?}"),
    };
    let (a, b) = (card_of(&answers[0]), card_of(&answers[3]));
    assert_ne!(a.card_id, b.card_id);
    assert_status(step_answer(&answers[1]), Code::InvalidArgument, "steps.step: ");
    assert_status(step_answer(&answers[2]), Code::InvalidArgument, "application_id: ");
    // The same as BeginApplication: a replay finds the card, a second application is refused.
    let again = c.begin_application(begin_request("app-a", "555021")).await.unwrap().into_inner();
    assert!(again.existing);
    assert_eq!(again.card.unwrap().card_id, a.card_id);
    let answers = c.card_steps(steps(vec![Step::Begin(Box::new(begin_request("app-c", "555021")))])).await.unwrap();
    assert_status(
        step_answer(&answers.into_inner().answers[0]),
        Code::FailedPrecondition,
        "holder.licence_number: holder already has card",
    );

    // Card a prepared and finished in one call (in order); card b's bad TBS refused beside it.
    let serials = [fresh_serial(0x44), fresh_serial(0x66)];
    let certs: Vec<_> = serials.iter().map(|s| certificate(s)).collect();
    let prepared = |i: usize, kind: pb::CertificateKind| prepared_certificate(&serials[i], &certs[i].1, kind);
    let both = vec![prepared(0, pb::CertificateKind::Signing), prepared(1, pb::CertificateKind::Authentication)];
    let mut wrong = prepared(0, pb::CertificateKind::Signing);
    wrong.serial = fresh_serial(0x55);
    let signed = signed_certificates(&serials, &certs);
    let answers = c
        .card_steps(steps(vec![
            Step::Prepare(pb::PrepareCardRequest { card_id: a.card_id.clone(), certificates: both, pin_escrow: None }),
            Step::Prepare(pb::PrepareCardRequest {
                card_id: b.card_id.clone(),
                certificates: vec![wrong],
                pin_escrow: None,
            }),
            Step::Finish(pb::FinishCardRequest {
                card_id: a.card_id.clone(),
                certificates: signed,
                actor: "ra-1".into(),
            }),
        ]))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert!(matches!(step_answer(&answers[0]), Ok(Answer::Prepared(_))), "{:?}", answers[0]);
    assert_status(step_answer(&answers[1]), Code::InvalidArgument, "certificates.tbs_der: its serial number is not");
    let Ok(Answer::Finished(card)) = step_answer(&answers[2]) else { panic!("not finished: {:?}", answers[2]) };
    assert_eq!((card.card_id.as_str(), card.state), (a.card_id.as_str(), pb::CardState::Active as i32));
    let view = c.get_card(pb::GetCardRequest { key: Some(Key::CardId(a.card_id.clone())) }).await.unwrap().into_inner();
    let states: Vec<_> = view.certificates.iter().map(|r| (r.serial.clone(), r.state)).collect();
    let issued = pb::CertificateState::Issued as i32;
    assert_eq!(states, [(serials[0].clone(), issued), (serials[1].clone(), issued)]);
    let view = c.get_card(pb::GetCardRequest { key: Some(Key::CardId(b.card_id.clone())) }).await.unwrap().into_inner();
    assert!(view.certificates.is_empty(), "nothing of a refused step is kept");

    // Only the call as a whole: none, or more than 64 steps.
    assert_status(c.card_steps(steps(Vec::new())).await, Code::InvalidArgument, "steps: 0 steps");
    let many = (0..65).map(|i| Step::Begin(Box::new(begin_request(&format!("app-{i}"), "555030")))).collect();
    assert_status(c.card_steps(steps(many)).await, Code::InvalidArgument, "steps: 65 steps");
    server.stop().await;
}
