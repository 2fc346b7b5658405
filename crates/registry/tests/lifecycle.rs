//! The card's life after issuance over real gRPC connections: renewal,
//! reissue, contact change, PIN escrow and disclosure, a holder's history.

use base64::Engine;
use proto::registry::v1::{self as pb, get_card_request, list_holder_cards_request, registry_client::RegistryClient};
use serde_json::Value;
use testkit::registry::*;
use tonic::transport::Channel;
use tonic::Code;

fn renewal(application_id: &str, licence: &str, replaces: &str) -> pb::BeginApplicationRequest {
    pb::BeginApplicationRequest {
        procedure: "renewal".into(),
        replaces_card_id: replaces.into(),
        ..begin_request(application_id, licence)
    }
}

fn reissue(application_id: &str, licence: &str, replaces: &str) -> pb::BeginApplicationRequest {
    pb::BeginApplicationRequest {
        procedure: "reissue".into(),
        replaces_card_id: replaces.into(),
        ..begin_request(application_id, licence)
    }
}

async fn card(c: &mut RegistryClient<Channel>, card_id: &str) -> pb::Card {
    let key = get_card_request::Key::CardId(card_id.into());
    c.get_card(pb::GetCardRequest { key: Some(key) }).await.unwrap().into_inner().card.unwrap()
}

fn detail(entry: &pb::AuditEntry) -> Value {
    serde_json::from_str(&entry.detail_json).unwrap()
}

#[tokio::test]
async fn a_renewal_supersedes_the_active_card_which_stays_valid() {
    let (server, mut c) = Server::start_with_client().await;
    let (old_id, old_serials) = issue_card(&mut c, "app-1", "555101").await;
    let old = card(&mut c, &old_id).await;
    assert_eq!((old.procedure.as_str(), old.replaces_card_id.as_str(), old.superseded_by.as_str()), ("new", "", ""));

    let begun = c.begin_application(renewal("app-2", "555101", &old_id)).await.unwrap().into_inner();
    assert!(!begun.existing);
    let new = begun.card.unwrap();
    assert_eq!(new.state, pb::CardState::Pending as i32);
    assert_eq!((new.procedure.as_str(), new.replaces_card_id.as_str()), ("renewal", old_id.as_str()));
    assert_eq!(new.superseded_by, "");
    assert_eq!(begun.holder.unwrap().holder_id, "JMA0000000001", "the same holder");

    let old = card(&mut c, &old_id).await;
    assert_eq!(old.state, pb::CardState::Active as i32);
    assert_eq!(old.superseded_by, new.card_id);
    for serial in &old_serials {
        let cert = c.get_certificate(pb::GetCertificateRequest { serial: serial.clone() }).await.unwrap();
        assert_eq!(cert.into_inner().state, pb::CertificateState::Issued as i32, "still valid");
    }

    // A retry of the same application returns the same card.
    let again = c.begin_application(renewal("app-2", "555101", &old_id)).await.unwrap().into_inner();
    assert!(again.existing);
    assert_eq!(again.card.unwrap(), new);

    // The old card cannot be renewed twice, and no new application starts
    // while the renewal is pending.
    let twice = c.begin_application(renewal("app-3", "555101", &old_id)).await;
    assert_status(
        twice,
        Code::FailedPrecondition,
        &format!("replaces_card_id: already renewed by card {}", new.card_id),
    );
    let fresh = c.begin_application(begin_request("app-3", "555101")).await;
    assert_status(
        fresh,
        Code::FailedPrecondition,
        &format!(
            "holder.licence_number: holder already has card {} still being issued for application app-2; \
             submit that application again",
            new.card_id
        ),
    );

    // The new card is issued like any other; every Card answer carries the links.
    let mut serials = Vec::new();
    for kind in [pb::CertificateKind::Signing, pb::CertificateKind::Authentication] {
        serials.push(issue_certificate(&mut c, reserve_request(&new.card_id, kind)).await);
    }
    let done = complete_application(&mut c, &new.card_id).await;
    assert_eq!(done.state, pb::CardState::Active as i32);
    assert_eq!((done.procedure.as_str(), done.replaces_card_id.as_str()), ("renewal", old_id.as_str()));
    let by_licence = c
        .get_card(pb::GetCardRequest { key: Some(get_card_request::Key::LicenceNumber("555101".into())) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_licence.card.unwrap().card_id, new.card_id, "the newest card");

    // The renewed card can itself be renewed later.
    let next = c.begin_application(renewal("app-4", "555101", &new.card_id)).await.unwrap().into_inner();
    assert_eq!(next.card.unwrap().replaces_card_id, new.card_id);

    let log = audit_log(&mut c).await;
    let supersede: Vec<_> = log.iter().filter(|e| e.action == "card.supersede").collect();
    assert_eq!(supersede.len(), 2);
    assert_eq!(supersede[0].subject, old_id);
    assert_eq!(detail(supersede[0])["superseded_by"], new.card_id.as_str());
    let begin = log.iter().find(|e| e.action == "application.begin" && e.subject == new.card_id).unwrap();
    assert_eq!(detail(begin)["procedure"], "renewal");
    assert_eq!(detail(begin)["replaces_card_id"], old_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn renewals_are_refused_with_the_reason_and_the_field() {
    let (server, mut c) = Server::start_with_client().await;
    let (mine, _) = issue_card(&mut c, "app-1", "555201").await;
    let (theirs, _) = issue_card(&mut c, "app-2", "555202").await;
    let pending = c.begin_application(begin_request("app-3", "555203")).await.unwrap().into_inner();
    let pending = pending.card.unwrap().card_id;
    let entries = audit_log(&mut c).await.len();

    let r = c.begin_application(renewal("app-9", "555201", "C0000000000000000")).await;
    assert_status(r, Code::NotFound, "replaces_card_id: no such card C0000000000000000");
    let r = c.begin_application(renewal("app-9", "555201", &theirs)).await;
    assert_status(r, Code::FailedPrecondition, "replaces_card_id: belongs to another holder");
    let r = c.begin_application(renewal("app-9", "555203", &pending)).await;
    assert_status(r, Code::FailedPrecondition, "replaces_card_id: is PENDING: a renewal needs an ACTIVE card");
    let r = c.begin_application(reissue("app-9", "555201", &mine)).await;
    assert_status(r, Code::FailedPrecondition, "replaces_card_id: must be revoked before a reissue");

    let r = c
        .begin_application(pb::BeginApplicationRequest {
            procedure: "renew".into(),
            ..renewal("app-9", "555201", &mine)
        })
        .await;
    assert_status(r, Code::InvalidArgument, "procedure: \"renew\" is not");
    let r = c.begin_application(renewal("app-9", "555201", "")).await;
    assert_status(r, Code::InvalidArgument, "replaces_card_id: is required for a renewal");
    let r = c.begin_application(reissue("app-9", "555201", "")).await;
    assert_status(r, Code::InvalidArgument, "replaces_card_id: is required for a reissue");
    let r = c
        .begin_application(pb::BeginApplicationRequest {
            replaces_card_id: mine.clone(),
            ..begin_request("app-9", "555201")
        })
        .await;
    assert_status(r, Code::InvalidArgument, "replaces_card_id: must be empty for a new application");
    let r = c.begin_application(renewal("app-9", "555201", " C1")).await;
    assert_status(r, Code::InvalidArgument, "replaces_card_id: has leading or trailing whitespace");
    // "new" spelled out is the default.
    let r = c
        .begin_application(pb::BeginApplicationRequest { procedure: "new".into(), ..begin_request("app-9", "555201") })
        .await;
    assert_status(r, Code::FailedPrecondition, "holder.licence_number: holder already has an active card");

    assert_eq!(audit_log(&mut c).await.len(), entries, "refusals write nothing");
    assert_eq!(card(&mut c, &mine).await.superseded_by, "");

    // A known application_id with another procedure is a client bug.
    c.begin_application(renewal("app-10", "555201", &mine)).await.unwrap();
    let r = c.begin_application(begin_request("app-10", "555201")).await;
    assert_status(
        r,
        Code::FailedPrecondition,
        &format!("application_id: application app-10 was made as a renewal of card {mine}"),
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reissue_follows_a_revocation_and_updates_the_holder() {
    let (server, mut c) = Server::start_with_client().await;
    let (old_id, _) = issue_card(&mut c, "app-1", "555301").await;
    let revoke = pb::RevokeCardRequest {
        card_id: old_id.clone(),
        reason: pb::RevocationReason::AffiliationChanged as i32,
        actor: "op-alice".into(),
        note: "退会".into(),
        ..Default::default()
    };
    c.revoke_card(revoke).await.unwrap();
    // A revoked card is reissued, not renewed.
    let r = c.begin_application(renewal("app-2", "555301", &old_id)).await;
    assert_status(r, Code::FailedPrecondition, "replaces_card_id: is REVOKED: a renewal needs an ACTIVE card");

    let mut req = reissue("app-2", "555301", &old_id);
    let holder = req.holder.as_mut().unwrap();
    holder.membership = pb::Membership::NonMember as i32;
    holder.family_name_kanji = "新姓".into();
    holder.holder_id = "JMA0000000001".into();
    let (new, _) = issue_card_from(&mut c, req).await;
    assert_eq!(new.state, pb::CardState::Active as i32);
    assert_eq!((new.procedure.as_str(), new.replaces_card_id.as_str()), ("reissue", old_id.as_str()));

    let old = c
        .get_card(pb::GetCardRequest { key: Some(get_card_request::Key::CardId(old_id.clone())) })
        .await
        .unwrap()
        .into_inner();
    let old_card = old.card.unwrap();
    assert_eq!(old_card.state, pb::CardState::Revoked as i32);
    assert_eq!(old_card.superseded_by, new.card_id);
    let holder = old.holder.unwrap();
    assert_eq!(holder.membership, pb::Membership::NonMember as i32);
    assert_eq!(holder.family_name_kanji, "新姓");
    assert!(old.certificates.iter().all(|c| c.revocation_reason == pb::RevocationReason::AffiliationChanged as i32));

    let r = c.begin_application(reissue("app-3", "555301", &old_id)).await;
    assert_status(r, Code::FailedPrecondition, &format!("replaces_card_id: already reissued as card {}", new.card_id));

    let log = audit_log(&mut c).await;
    let begin = log.iter().find(|e| e.action == "application.begin" && e.subject == new.card_id).unwrap();
    let changes = &detail(begin)["holder_changes"];
    assert_eq!(changes["membership"]["old"], "MEMBER");
    assert_eq!(changes["membership"]["new"], "NON_MEMBER");
    assert_eq!(changes["family_name_kanji"]["old"], "医師");
    assert_eq!(changes["family_name_kanji"]["new"], "新姓");
    assert_eq!(changes.as_object().unwrap().len(), 2, "{changes}");
    server.stop().await;
}

fn moved() -> pb::ContactAddress {
    pb::ContactAddress {
        postal_code: "530-0001".into(),
        address: "大阪府大阪市北区梅田1-1".into(),
        phone: "06-1234-5678".into(),
        email: "hanako@example.jp".into(),
    }
}

#[tokio::test]
async fn a_contact_change_is_audited_with_old_and_new_values_and_a_no_op_writes_nothing() {
    let (server, mut c) = Server::start_with_client().await;
    let begun = c.begin_application(begin_request("app-1", "555401")).await.unwrap().into_inner();
    let holder = begun.holder.unwrap();
    let update = |contact: Option<pb::ContactAddress>, date: &str| pb::UpdateContactRequest {
        holder_id: holder.holder_id.clone(),
        contact,
        resident_record_issued_on: date.into(),
        actor: "ra-2".into(),
    };

    let out = c.update_contact(update(Some(moved()), "2026-01-05")).await.unwrap().into_inner();
    assert!(out.changed);
    assert_eq!(out.previous, holder.contact);
    assert_eq!(out.holder.unwrap().contact, Some(moved()));
    let key = get_card_request::Key::LicenceNumber("555401".into());
    let got = c.get_card(pb::GetCardRequest { key: Some(key) }).await.unwrap().into_inner();
    assert_eq!(got.holder.unwrap().contact, Some(moved()));

    let log = audit_log(&mut c).await;
    let entry = log.last().unwrap();
    assert_eq!(
        (entry.action.as_str(), entry.subject.as_str(), entry.actor.as_str()),
        ("holder.contact", holder.holder_id.as_str(), "ra-2")
    );
    let d = detail(entry);
    assert_eq!(d["old"]["email"], "hanako@example.jp");
    assert_eq!(d["old"]["address"], "");
    assert_eq!(d["new"]["address"], "大阪府大阪市北区梅田1-1");
    assert_eq!(d["resident_record_issued_on"], "2026-01-05");

    let same = c.update_contact(update(Some(moved()), "2026-01-06")).await.unwrap().into_inner();
    assert!(!same.changed);
    assert_eq!(same.previous, Some(moved()));
    assert_eq!(audit_log(&mut c).await.len(), log.len(), "no entry for a no-op");

    assert_status(c.update_contact(update(None, "")).await, Code::InvalidArgument, "contact: is required");
    let r = c.update_contact(update(Some(moved()), "2026-02-30")).await;
    assert_status(r, Code::InvalidArgument, "resident_record_issued_on: \"2026-02-30\" is not a date");
    let bad = pb::ContactAddress { phone: "06\n1234".into(), ..moved() };
    assert_status(c.update_contact(update(Some(bad), "")).await, Code::InvalidArgument, "contact.phone: ");
    let unknown = pb::UpdateContactRequest { holder_id: "JMA0000000099".into(), ..update(Some(moved()), "") };
    assert_status(c.update_contact(unknown).await, Code::NotFound, "holder_id: no such holder JMA0000000099");
    assert_eq!(audit_log(&mut c).await.len(), log.len());
    server.stop().await;
}

/// Stand-in for what the issuance service sends: it encrypts in the HSM.
const CIPHERTEXT: &[u8] = b"\x91\x02CIPHERTEXT-MARKER\xfe\x10\x11gcm-tag-16bytes";

fn escrow(card_id: &str) -> pb::StorePinEscrowRequest {
    pb::StorePinEscrowRequest {
        card_id: card_id.into(),
        key_label: "pin-escrow".into(),
        iv: vec![0xA5; 12],
        ciphertext: CIPHERTEXT.to_vec(),
        actor: "issuance".into(),
    }
}

fn disclosure(card_id: &str, request_id: &str) -> pb::PinDisclosureRequest {
    pb::PinDisclosureRequest {
        card_id: card_id.into(),
        request_id: request_id.into(),
        confirmation_json: r#"{"method":"counter","documents":["licence"],"checked_by":"ra-op-7"}"#.into(),
        actor: "ra:op-7".into(),
        ra_identity: "ra-tokyo".into(),
    }
}

#[tokio::test]
async fn a_pin_escrow_is_stored_once_and_disclosed_once_per_request_within_the_limit() {
    let (_dir, store) = temp_store();
    // The limits are the server's (its [issuance] config): 2 per card and
    // hour, 3 per RA identity and day. Requests cannot carry any.
    let limits = registry::PinLimits {
        per_card: store::DisclosureLimit { max_per_window: 2, window_seconds: 3600 },
        per_ra_per_day: 3,
    };
    let server = Server::start_with_store_and_limits(store.clone(), limits).await;
    let mut c = server.client().await;
    let (card_id, _) = issue_card(&mut c, "app-1", "555501").await;

    let stored = c.store_pin_escrow(escrow(&card_id)).await.unwrap().into_inner();
    assert_eq!((stored.card_id.as_str(), stored.key_label.as_str()), (card_id.as_str(), "pin-escrow"));
    assert_eq!((stored.iv.as_slice(), stored.ciphertext.as_slice()), (&[0xA5; 12][..], CIPHERTEXT));
    assert!(stored.stored_at_unix > 1_700_000_000);
    let entries = audit_log(&mut c).await.len();
    assert_eq!(c.store_pin_escrow(escrow(&card_id)).await.unwrap().into_inner(), stored, "idempotent");
    assert_eq!(audit_log(&mut c).await.len(), entries);
    let other = pb::StorePinEscrowRequest { iv: vec![0x5A; 12], ..escrow(&card_id) };
    let r = c.store_pin_escrow(other).await;
    assert_status(r, Code::AlreadyExists, "card_id: a PIN is already escrowed for this card");

    let r = c.store_pin_escrow(pb::StorePinEscrowRequest { iv: vec![0; 16], ..escrow(&card_id) }).await;
    assert_status(r, Code::InvalidArgument, "iv: must be 12 bytes");
    let r = c.store_pin_escrow(pb::StorePinEscrowRequest { ciphertext: vec![0; 15], ..escrow(&card_id) }).await;
    assert_status(r, Code::InvalidArgument, "ciphertext: must be 16 to 1024 bytes");
    let r = c.store_pin_escrow(pb::StorePinEscrowRequest { ciphertext: vec![0; 1025], ..escrow(&card_id) }).await;
    assert_status(r, Code::InvalidArgument, "ciphertext: ");
    let r = c.store_pin_escrow(pb::StorePinEscrowRequest { key_label: String::new(), ..escrow(&card_id) }).await;
    assert_status(r, Code::InvalidArgument, "key_label: is required");
    let r = c.store_pin_escrow(escrow("C0000000000000000")).await;
    assert_status(r, Code::NotFound, "card_id: no such card");

    // Disclosure: at most 2 per hour here.
    let first = c.disclose_pin_escrow(disclosure(&card_id, "req-1")).await.unwrap().into_inner();
    assert_eq!(first, stored);
    let r = c.disclose_pin_escrow(disclosure(&card_id, "req-1")).await;
    assert_status(r, Code::FailedPrecondition, "request_id: the PIN was already disclosed for this request");
    c.disclose_pin_escrow(disclosure(&card_id, "req-2")).await.unwrap();
    let r = c.disclose_pin_escrow(disclosure(&card_id, "req-3")).await;
    assert_status(r, Code::ResourceExhausted, "card_id: disclosure limit reached, retry after 20");
    let escrow_now = store.get_pin_escrow(&card_id).unwrap();
    let ids: Vec<_> = escrow_now.disclosures.iter().map(|d| d.request_id.as_str()).collect();
    assert_eq!(ids, ["req-1", "req-2"]);
    assert_eq!(escrow_now.disclosures[0].actor, "ra:op-7");

    let r = c
        .disclose_pin_escrow(pb::PinDisclosureRequest {
            confirmation_json: String::new(),
            ..disclosure(&card_id, "req-4")
        })
        .await;
    assert_status(r, Code::InvalidArgument, "confirmation_json: is required");
    let r = c
        .disclose_pin_escrow(pb::PinDisclosureRequest {
            confirmation_json: "{".into(),
            ..disclosure(&card_id, "req-4")
        })
        .await;
    assert_status(r, Code::InvalidArgument, "confirmation_json: is not JSON");
    let r = c
        .disclose_pin_escrow(pb::PinDisclosureRequest { ra_identity: String::new(), ..disclosure(&card_id, "req-4") })
        .await;
    assert_status(r, Code::InvalidArgument, "ra_identity: is required");
    let r =
        c.disclose_pin_escrow(pb::PinDisclosureRequest { actor: String::new(), ..disclosure(&card_id, "req-4") }).await;
    assert_status(r, Code::InvalidArgument, "actor: is required");
    let r = c
        .disclose_pin_escrow(pb::PinDisclosureRequest { request_id: String::new(), ..disclosure(&card_id, "req-4") })
        .await;
    assert_status(r, Code::InvalidArgument, "request_id: is required");

    // Without an escrow there is nothing to disclose.
    let (bare, _) = issue_card(&mut c, "app-2", "555502").await;
    let r = c.disclose_pin_escrow(disclosure(&bare, "req-1")).await;
    assert_status(r, Code::NotFound, &format!("card_id: no PIN is escrowed for card {bare}"));
    // The RA's third disclosure today is allowed, its fourth is not (whatever the card) ...
    c.store_pin_escrow(escrow(&bare)).await.unwrap();
    c.disclose_pin_escrow(disclosure(&bare, "req-1")).await.unwrap();
    let status = c.disclose_pin_escrow(disclosure(&bare, "req-2")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with("ra_identity: daily PIN-disclosure cap of 3 reached for RA ra-tokyo on 20"),
        "{}",
        status.message()
    );
    // ... while another RA still may, until the card's own limit.
    let osaka =
        |request_id: &str| pb::PinDisclosureRequest { ra_identity: "ra-osaka".into(), ..disclosure(&bare, request_id) };
    c.disclose_pin_escrow(osaka("req-2")).await.unwrap();
    let status = c.disclose_pin_escrow(osaka("req-3")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().starts_with("card_id: disclosure limit reached, retry after 20"), "{}", status.message());
    assert!(status.message().ends_with("(at most 2 per 3600 s)"), "{}", status.message());

    // The log has each escrow and disclosure with its confirmation, and
    // never the ciphertext (nor the IV), in any encoding.
    let log = audit_log(&mut c).await;
    let pin: Vec<_> =
        log.iter().filter(|e| e.action.starts_with("pin.")).map(|e| (e.action.as_str(), e.subject.as_str())).collect();
    assert_eq!(
        pin,
        [
            ("pin.escrow", card_id.as_str()),
            ("pin.disclose", card_id.as_str()),
            ("pin.disclose", card_id.as_str()),
            ("pin.escrow", bare.as_str()),
            ("pin.disclose", bare.as_str()),
            ("pin.disclose", bare.as_str()),
        ]
    );
    let disclose = log.iter().find(|e| e.action == "pin.disclose").unwrap();
    assert_eq!(disclose.actor, "ra:op-7");
    assert_eq!(detail(disclose)["request_id"], "req-1");
    assert_eq!(detail(disclose)["confirmation"]["checked_by"], "ra-op-7");
    let forbidden = [
        hex_encode(CIPHERTEXT),
        hex_encode(&CIPHERTEXT[..6]),
        "CIPHERTEXT-MARKER".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(CIPHERTEXT),
        base64::engine::general_purpose::STANDARD.encode(&CIPHERTEXT[2..20]),
        hex_encode(&[0xA5; 12]),
    ];
    for entry in &log {
        let text = format!("{entry:?}");
        for f in &forbidden {
            assert!(!text.contains(f.as_str()), "{f} in {text}");
        }
    }

    // The escrow's own actions cannot be forged through AppendAudit.
    for action in ["pin.escrow", "pin.disclose", "holder.contact", "card.supersede"] {
        let forged = forged_audit(action, &card_id);
        assert_status(c.append_audit(forged).await, Code::InvalidArgument, "action: ");
    }
    assert_eq!(store.verify_audit_chain().unwrap(), log.len() as u64);
    server.stop().await;
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_holders_cards_are_listed_oldest_first_with_their_certificates() {
    let (_dir, store) = temp_store();
    let server = Server::start_with_store(store.clone()).await;
    let mut c = server.client().await;
    let (first, first_serials) = issue_card(&mut c, "app-1", "555601").await;
    issue_card(&mut c, "app-x", "555602").await;
    let (second, _) = issue_card_from(&mut c, renewal("app-2", "555601", &first)).await;
    let pending = c.begin_application(renewal("app-3", "555601", &second.card_id)).await.unwrap().into_inner();
    let third = pending.card.unwrap();

    let by_id = list_holder_cards_request::Key::HolderId("JMA0000000001".into());
    let listed = c.list_holder_cards(pb::ListHolderCardsRequest { key: Some(by_id) }).await.unwrap().into_inner();
    assert_eq!(listed.holder.as_ref().unwrap().licence_number, "555601");
    let summary: Vec<_> = listed
        .cards
        .iter()
        .map(|v| {
            let card = v.card.as_ref().unwrap();
            (card.card_id.as_str(), card.procedure.as_str(), card.superseded_by.as_str(), v.certificates.len())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (first.as_str(), "new", second.card_id.as_str(), 2),
            (second.card_id.as_str(), "renewal", third.card_id.as_str(), 2),
            (third.card_id.as_str(), "renewal", "", 0),
        ]
    );
    let serials: Vec<_> = listed.cards[0].certificates.iter().map(|c| c.serial.clone()).collect();
    assert_eq!(serials, first_serials);
    assert!(listed.cards.iter().all(|v| v.holder == listed.holder));

    let by_licence = list_holder_cards_request::Key::LicenceNumber("555601".into());
    let again = c.list_holder_cards(pb::ListHolderCardsRequest { key: Some(by_licence) }).await.unwrap().into_inner();
    assert_eq!(again, listed);

    let unknown = list_holder_cards_request::Key::HolderId("JMA0000000099".into());
    let r = c.list_holder_cards(pb::ListHolderCardsRequest { key: Some(unknown) }).await;
    assert_status(r, Code::NotFound, "holder_id: no such holder JMA0000000099");
    let unknown = list_holder_cards_request::Key::LicenceNumber("999999".into());
    let r = c.list_holder_cards(pb::ListHolderCardsRequest { key: Some(unknown) }).await;
    assert_status(r, Code::NotFound, "licence_number: ");
    let r = c.list_holder_cards(pb::ListHolderCardsRequest { key: None }).await;
    assert_status(r, Code::InvalidArgument, "key: ");
    assert!(store.verify_audit_chain().unwrap() > 0);
    server.stop().await;
}
