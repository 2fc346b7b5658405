//! Revocation, the status feed, revoked listings, CRL numbers and approvals
//! over real gRPC connections.

use std::time::Duration;

use proto::registry::v1::{self as pb, registry_client::RegistryClient};
use store::{BenchImport, RevocationReason, Store};
use testkit::registry::*;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

fn revoke_card(card_id: &str, actor: &str) -> pb::RevokeCardRequest {
    pb::RevokeCardRequest {
        card_id: card_id.into(),
        reason: pb::RevocationReason::KeyCompromise as i32,
        revoked_at_unix: 0,
        actor: actor.into(),
        note: "紛失届".into(),
        confirmation_json: r#"{"confirmed_by":"op-alice","method":"phone"}"#.into(),
        invalidity_date_unix: 0,
    }
}

async fn audit_actions(c: &mut RegistryClient<Channel>) -> Vec<String> {
    audit_log(c).await.into_iter().map(|e| e.action).collect()
}

async fn watch(c: &mut RegistryClient<Channel>, after: u64) -> Streaming<pb::StatusChange> {
    c.watch_status(pb::WatchStatusRequest { after_sequence: after }).await.unwrap().into_inner()
}

/// The next `n` changes, failing the test if they take more than 10 s.
async fn next_changes(stream: &mut Streaming<pb::StatusChange>, n: usize) -> Vec<pb::StatusChange> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        let change = next.expect("a change within 10 s").unwrap().expect("the stream is open");
        out.push(change);
    }
    out
}

/// Nothing more arrives for a moment.
async fn assert_quiet(stream: &mut Streaming<pb::StatusChange>) {
    let next = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(next.is_err(), "unexpected change {next:?}");
}

async fn list_revoked(c: &mut RegistryClient<Channel>, req: pb::ListRevokedRequest) -> Vec<pb::RevokedEntry> {
    let mut stream = c.list_revoked(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(entry) = stream.message().await.unwrap() {
        out.push(entry);
    }
    out
}

fn summary(changes: &[pb::StatusChange]) -> Vec<(u64, String, i32)> {
    changes.iter().map(|c| (c.sequence, c.serial.clone(), c.status)).collect()
}

const GOOD: i32 = pb::CertificateStatus::Good as i32;
const REVOKED: i32 = pb::CertificateStatus::Revoked as i32;

#[tokio::test]
async fn revoking_a_certificate_is_final_and_idempotent() {
    let (server, mut c) = Server::start_with_client().await;
    let (_, serials) = issue_card(&mut c, "app-1", "600001").await;
    let before = c.get_feed_position(pb::FeedPositionRequest {}).await.unwrap().into_inner().last_sequence;
    assert_eq!(before, 2, "two GOOD changes");

    let first = c.revoke_certificate(revoke_cert(&serials[0], pb::RevocationReason::CessationOfOperation));
    let first = first.await.unwrap().into_inner();
    assert!(!first.already_revoked);
    let cert = first.certificate.unwrap();
    assert_eq!(cert.state, pb::CertificateState::CertRevoked as i32);
    assert_eq!(cert.revocation_reason, pb::RevocationReason::CessationOfOperation as i32);
    assert_eq!(cert.revoked_by, "op-alice");
    assert_eq!(cert.revocation_note, "written cessation report");
    assert_eq!(cert.revocation_sequence, 3);
    assert!(cert.revoked_at_unix > 1_700_000_000);
    assert!(!cert.certificate_der.is_empty());

    let mut again = revoke_cert(&serials[0].to_uppercase(), pb::RevocationReason::KeyCompromise);
    again.actor = "op-bob".into();
    let again = c.revoke_certificate(again).await.unwrap().into_inner();
    assert!(again.already_revoked);
    assert_eq!(again.certificate.unwrap(), cert, "the first time and reason stand");
    let got = c.get_certificate(pb::GetCertificateRequest { serial: serials[0].clone() }).await.unwrap();
    assert_eq!(got.into_inner(), cert);
    let position = c.get_feed_position(pb::FeedPositionRequest {}).await.unwrap().into_inner();
    assert_eq!(position.last_sequence, 3, "one feed entry");
    let actions = audit_actions(&mut c).await;
    assert_eq!(actions.iter().filter(|a| *a == "certificate.revoke").count(), 1, "one audit entry");

    let unknown = revoke_cert(&"01".repeat(16), pb::RevocationReason::KeyCompromise);
    assert_status(c.revoke_certificate(unknown).await, Code::NotFound, "serial: no such certificate");
    let mut future = revoke_cert(&serials[1], pb::RevocationReason::KeyCompromise);
    future.revoked_at_unix = 4_000_000_000;
    assert_status(c.revoke_certificate(future).await, Code::InvalidArgument, "revoked_at_unix: ");
    let hold =
        pb::RevokeCertificateRequest { reason: 6, ..revoke_cert(&serials[1], pb::RevocationReason::KeyCompromise) };
    assert_status(c.revoke_certificate(hold).await, Code::InvalidArgument, "reason: ");
    let no_actor = pb::RevokeCertificateRequest {
        actor: String::new(),
        ..revoke_cert(&serials[1], pb::RevocationReason::KeyCompromise)
    };
    assert_status(c.revoke_certificate(no_actor).await, Code::InvalidArgument, "actor: is required");
    let bad_serial = revoke_cert("xyz", pb::RevocationReason::KeyCompromise);
    assert_status(c.revoke_certificate(bad_serial).await, Code::InvalidArgument, "serial: ");
    let got = c.get_certificate(pb::GetCertificateRequest { serial: serials[1].clone() }).await.unwrap();
    assert_eq!(got.into_inner().state, pb::CertificateState::Issued as i32, "refusals change nothing");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_card_revocations_give_one_set_of_revocations() {
    let (_dir, store) = temp_store();
    let server = Server::start_with_store(store.clone()).await;
    let mut c = server.client().await;
    let (card_id, serials) = issue_card(&mut c, "app-1", "600002").await;
    let before = store.feed_position();

    let calls: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr;
            let card_id = card_id.clone();
            tokio::spawn(async move {
                let mut c = RegistryClient::connect(format!("http://{addr}")).await.unwrap();
                c.revoke_card(revoke_card(&card_id, &format!("op-{i}"))).await.unwrap().into_inner()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert_eq!(answers.iter().map(|a| a.newly_revoked).sum::<u32>(), 2);
    for a in &answers {
        assert_eq!(a.card.as_ref().unwrap().state, pb::CardState::Revoked as i32);
        assert_eq!(a.certificates.len(), 2);
        assert!(a.certificates.iter().all(|cert| cert.state == pb::CertificateState::CertRevoked as i32));
        assert_eq!(a.certificates, answers[0].certificates, "everyone sees the one set");
    }

    let mut feed = watch(&mut c, before).await;
    let changes = next_changes(&mut feed, 2).await;
    assert_quiet(&mut feed).await;
    let mut revoked: Vec<_> = changes.iter().map(|ch| (ch.serial.clone(), ch.status)).collect();
    revoked.sort();
    let mut expected: Vec<_> = serials.iter().map(|s| (s.clone(), REVOKED)).collect();
    expected.sort();
    assert_eq!(revoked, expected, "exactly one REVOKED per certificate");
    assert!(changes.iter().all(|ch| ch.reason == pb::RevocationReason::KeyCompromise as i32));

    let listed =
        list_revoked(&mut c, pb::ListRevokedRequest { issuer_label: "sign-ca".into(), ..Default::default() }).await;
    assert_eq!(listed.len(), 2);
    let actions = audit_actions(&mut c).await;
    assert_eq!(actions.iter().filter(|a| *a == "card.revoke").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "certificate.revoke").count(), 2);
    let log = audit_log(&mut c).await;
    let card_entry = log.iter().find(|e| e.action == "card.revoke").unwrap();
    assert!(card_entry.detail_json.contains(r#""method":"phone""#), "{}", card_entry.detail_json);

    assert_status(c.revoke_card(revoke_card("Cffffffffffffffff", "op-1")).await, Code::NotFound, "card_id: ");
    let bad = pb::RevokeCardRequest { confirmation_json: "{oops".into(), ..revoke_card(&card_id, "op-1") };
    assert_status(c.revoke_card(bad).await, Code::InvalidArgument, "confirmation_json: ");
    drop(feed);
    server.stop().await;
    store.verify_audit_chain().unwrap();
}

#[tokio::test]
async fn a_resuming_subscriber_gets_exactly_the_changes_it_missed() {
    let (server, mut c) = Server::start_with_client().await;

    let mut feed = watch(&mut c, 0).await;
    let (card_a, serials_a) = issue_card(&mut c, "app-1", "600003").await;
    c.revoke_card(revoke_card(&card_a, "op-alice")).await.unwrap();
    let seen = next_changes(&mut feed, 4).await;
    assert_eq!(
        summary(&seen),
        [
            (1, serials_a[0].clone(), GOOD),
            (2, serials_a[1].clone(), GOOD),
            (3, serials_a[0].clone(), REVOKED),
            (4, serials_a[1].clone(), REVOKED),
        ]
    );
    assert_eq!(seen[2].reason, pb::RevocationReason::KeyCompromise as i32);
    assert_eq!(seen[0].issuer_label, "sign-ca");
    assert_eq!(seen[0].card_id, card_a);
    assert_eq!(seen[0].not_after_unix, 1_924_959_599);
    assert!(seen[2].revoked_at_unix > 0 && seen[0].revoked_at_unix == 0);
    assert_quiet(&mut feed).await;
    let last = seen.last().unwrap().sequence;
    drop(feed); // the subscriber goes away

    let (_, serials_b) = issue_card(&mut c, "app-2", "600004").await;
    c.revoke_certificate(revoke_cert(&serials_b[1], pb::RevocationReason::Superseded)).await.unwrap();

    let mut feed = watch(&mut c, last).await;
    let missed = next_changes(&mut feed, 3).await;
    assert_eq!(
        summary(&missed),
        [(5, serials_b[0].clone(), GOOD), (6, serials_b[1].clone(), GOOD), (7, serials_b[1].clone(), REVOKED)]
    );
    assert_quiet(&mut feed).await;

    // Then live changes follow on the same stream.
    c.revoke_certificate(revoke_cert(&serials_b[0], pb::RevocationReason::Superseded)).await.unwrap();
    let live = next_changes(&mut feed, 1).await;
    assert_eq!(summary(&live), [(8, serials_b[0].clone(), REVOKED)]);
    // A repeated revocation is not a change.
    c.revoke_certificate(revoke_cert(&serials_b[0], pb::RevocationReason::KeyCompromise)).await.unwrap();
    assert_quiet(&mut feed).await;

    let ahead = c.watch_status(pb::WatchStatusRequest { after_sequence: 9 }).await;
    assert_status(ahead, Code::OutOfRange, "after_sequence: ");
    let position = c.get_feed_position(pb::FeedPositionRequest {}).await.unwrap().into_inner();
    assert_eq!(position.last_sequence, 8);

    // Stopping the server ends the open stream instead of waiting for it.
    let stop = tokio::spawn(server.stop());
    let end = tokio::time::timeout(Duration::from_secs(10), feed.message()).await.expect("the stream ends");
    match end {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(None) => {}
        Ok(Some(change)) => panic!("unexpected change {change:?}"),
    }
    stop.await.unwrap();
}

#[tokio::test]
async fn a_subscriber_sees_every_change_of_concurrent_writers_in_order() {
    let (server, mut c) = Server::start_with_client().await;
    let mut feed = watch(&mut c, 0).await;
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut c = RegistryClient::connect(format!("http://{addr}")).await.unwrap();
                let (card_id, _) = issue_card(&mut c, &format!("app-{i}"), &format!("61000{i}")).await;
                c.revoke_card(revoke_card(&card_id, "op-alice")).await.unwrap();
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let changes = next_changes(&mut feed, 24).await;
    let seqs: Vec<_> = changes.iter().map(|ch| ch.sequence).collect();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
    assert_eq!(changes.iter().filter(|ch| ch.status == GOOD).count(), 12);
    assert_quiet(&mut feed).await;
    drop(feed);
    server.stop().await;
}

#[tokio::test]
async fn revoked_lists_stream_fully_and_filter() {
    let (_dir, store) = temp_store();
    let server = Server::start_with_store(store.clone()).await;
    let mut c = server.client().await;
    let import = |label: &str, count: u64, not_after_unix: i64| BenchImport {
        issuer_label: label.into(),
        count,
        not_before_unix: 1_500_000_000,
        not_after_unix,
        revoked_at_unix: 1_700_000_000,
        reason: RevocationReason::Superseded,
    };
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        s.bench_import_revoked(&import("sign-ca", 10_000, 4_000_000_000)).unwrap();
    })
    .await
    .unwrap();
    let mark = store.feed_position();
    store.bench_import_revoked(&import("sign-ca", 7, 1_600_000_000)).unwrap(); // expired
    store.bench_import_revoked(&import("auth-ca", 3, 4_000_000_000)).unwrap();

    let req = |after_sequence, include_expired, at_unix| pb::ListRevokedRequest {
        issuer_label: "sign-ca".into(),
        after_sequence,
        include_expired,
        at_unix,
    };
    let all = list_revoked(&mut c, req(0, false, 0)).await;
    assert_eq!(all.len(), 10_000, "expired entries are left out by default");
    assert!(all.windows(2).all(|w| hex_decode(&w[0].serial) < hex_decode(&w[1].serial)), "ordered by serial");
    assert!(all.iter().all(|e| e.reason == pb::RevocationReason::Superseded as i32
        && e.revoked_at_unix == 1_700_000_000
        && e.sequence <= mark));
    assert_eq!(list_revoked(&mut c, req(0, true, 0)).await.len(), 10_007);
    assert_eq!(list_revoked(&mut c, req(0, false, 1_550_000_000)).await.len(), 10_007, "not expired then");

    let delta = list_revoked(&mut c, req(mark, true, 0)).await;
    assert_eq!(delta.len(), 7);
    assert!(delta.windows(2).all(|w| w[0].sequence < w[1].sequence), "deltas come in sequence order");
    assert!(delta.iter().all(|e| e.sequence > mark && e.not_after_unix == 1_600_000_000));
    assert!(list_revoked(&mut c, req(mark, false, 0)).await.is_empty());

    let auth = list_revoked(&mut c, pb::ListRevokedRequest { issuer_label: "auth-ca".into(), ..req(0, false, 0) });
    assert_eq!(auth.await.len(), 3);
    let none = pb::ListRevokedRequest { issuer_label: "root-ca".into(), ..req(0, true, 0) };
    assert!(list_revoked(&mut c, none).await.is_empty());
    let missing = pb::ListRevokedRequest { issuer_label: String::new(), ..req(0, false, 0) };
    assert_status(c.list_revoked(missing).await, Code::InvalidArgument, "issuer_label: is required");
    let negative = req(0, false, -1);
    assert_status(c.list_revoked(negative).await, Code::InvalidArgument, "at_unix: ");

    // A client that stops reading early does not hold anything up.
    let mut partial = c.list_revoked(req(0, false, 0)).await.unwrap().into_inner();
    assert!(partial.message().await.unwrap().is_some());
    drop(partial);
    server.stop().await;
    store.verify_audit_chain().unwrap();
}

#[tokio::test]
async fn crl_numbers_increase_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut last = 0;
    for round in 0..3 {
        let server = Server::start_in(state.clone()).await;
        let mut c = server.client().await;
        if round == 1 {
            issue_card(&mut c, "app-1", "600005").await;
        }
        for _ in 0..2 {
            let n = c.next_crl_number(pb::NextCrlNumberRequest { scope: "sign".into() }).await.unwrap();
            let n = n.into_inner();
            assert!(n.crl_number > last, "{} after {last}", n.crl_number);
            last = n.crl_number;
            let position = c.get_feed_position(pb::FeedPositionRequest {}).await.unwrap().into_inner();
            assert_eq!(n.feed_sequence, position.last_sequence);
            assert_eq!(n.feed_sequence, if round == 0 { 0 } else { 2 });
        }
        let other = c.next_crl_number(pb::NextCrlNumberRequest { scope: "auth".into() }).await.unwrap();
        assert_eq!(other.into_inner().crl_number, round + 1, "scopes count separately");
        for bad in ["", "Sign", "sign ca", "sign/1"] {
            let r = c.next_crl_number(pb::NextCrlNumberRequest { scope: bad.into() }).await;
            assert_status(r, Code::InvalidArgument, "scope: ");
        }
        drop(c);
        server.stop().await;
    }
    assert_eq!(last, 6);
    let store = Store::open(&config::Config { state_dir: state, ..Default::default() }.db_path()).unwrap();
    let entries = store.verify_audit_chain().unwrap();
    assert!(entries >= 9, "{entries}");
}

#[tokio::test]
async fn approvals_need_a_second_operator() {
    let (server, mut c) = Server::start_with_client().await;
    let created = c
        .create_approval(pb::CreateApprovalRequest {
            kind: "emergency-revocation".into(),
            subject: "C0123456789abcdef".into(),
            payload_json: r#"{"reason":"KEY_COMPROMISE"}"#.into(),
            requested_by: "op-alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.state, pb::ApprovalState::Awaiting as i32);
    assert_eq!(created.requested_by, "op-alice");
    let id = created.approval_id.clone();

    let approve = |approver: &str| pb::ApproveRequest { approval_id: id.clone(), approver: approver.into() };
    assert_status(
        c.approve(approve("op-alice")).await,
        Code::FailedPrecondition,
        "approver: must differ from the requesting operator",
    );
    assert_status(c.approve(approve("")).await, Code::InvalidArgument, "approver: is required");
    let early = c.mark_approval_executed(pb::MarkApprovalExecutedRequest { approval_id: id.clone() }).await;
    assert_status(early, Code::FailedPrecondition, "approval_id: ");

    let approved = c.approve(approve("op-bob")).await.unwrap().into_inner();
    assert_eq!(approved.state, pb::ApprovalState::Approved as i32);
    assert_eq!(approved.approved_by, "op-bob");
    assert_eq!(c.approve(approve("op-bob")).await.unwrap().into_inner(), approved, "idempotent");
    assert_status(c.approve(approve("op-carol")).await, Code::FailedPrecondition, "approval_id: ");

    let executed = c.mark_approval_executed(pb::MarkApprovalExecutedRequest { approval_id: id.clone() });
    let executed = executed.await.unwrap().into_inner();
    assert_eq!(executed.state, pb::ApprovalState::Executed as i32);
    let again = c.mark_approval_executed(pb::MarkApprovalExecutedRequest { approval_id: id.clone() });
    assert_eq!(again.await.unwrap().into_inner(), executed);
    let got = c.get_approval(pb::GetApprovalRequest { approval_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, executed);
    assert_eq!(got.payload_json, r#"{"reason":"KEY_COMPROMISE"}"#);

    let unknown = c.get_approval(pb::GetApprovalRequest { approval_id: "Anope".into() }).await;
    assert_status(unknown, Code::NotFound, "approval_id: ");
    let bad = pb::CreateApprovalRequest { requested_by: String::new(), ..Default::default() };
    assert_status(c.create_approval(bad).await, Code::InvalidArgument, "kind: ");
    let actions = audit_actions(&mut c).await;
    assert_eq!(actions, ["approval.create", "approval.approve", "approval.execute"]);
    let forged = forged_audit("card.revoke", "C1");
    assert_status(c.append_audit(forged).await, Code::InvalidArgument, "action: ");
    server.stop().await;
}
