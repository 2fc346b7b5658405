//! End to end: the card's whole life through the issuance service with real
//! processes and SoftHSM: PIN escrow and disclosure, contact change, renewal,
//! reissue (loss, damage, membership change), cessation, fees, bulk import;
//! the CRL judged by `openssl`.

mod common;

use std::path::Path;

use common::{http_get, openssl, openssl_csr, verify_with_crl, write_pem, write_pem_label, Ca};
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::issuance::v1::*;
use testkit::openssl::crl_text;
use time::{Duration, OffsetDateTime, UtcOffset};
use tonic::transport::Channel;

fn today() -> time::Date {
    OffsetDateTime::now_utc().to_offset(UtcOffset::from_hms(9, 0, 0).unwrap()).date()
}

fn days_ago(n: i64) -> String {
    (today() - Duration::days(n)).to_string()
}

fn documents() -> DocumentChecks {
    DocumentChecks {
        photo_taken_on: days_ago(20),
        resident_record_issued_on: days_ago(20),
        photo_id: Some(PhotoId {
            r#type: PhotoIdType::DriversLicence as i32,
            expires_on: "2032-03-03".into(),
            issued_on: String::new(),
        }),
        licence_copy_checked: true,
        ..Default::default()
    }
}

fn applicant(family_latin: &str) -> Applicant {
    Applicant {
        family_name_kanji: "佐藤".into(),
        given_name_kanji: "一郎".into(),
        family_name_kana: "サトウ".into(),
        given_name_kana: "イチロウ".into(),
        family_name_latin: family_latin.into(),
        given_name_latin: "Ichiro".into(),
        date_of_birth: "1970-07-07".into(),
    }
}

fn new_card(id: &str, licence: &str, membership: Membership, pin: &str, dir: &Path) -> NewCardApplication {
    NewCardApplication {
        application_id: id.into(),
        applicant: Some(applicant("Sato")),
        licence: Some(MedicalLicence { licence_number: licence.into(), registered_on: "1996-05-01".into() }),
        membership: membership as i32,
        contact: Some(ContactAddress { address: "大阪府大阪市北区".into(), ..Default::default() }),
        documents: Some(documents()),
        signing_csr: openssl_csr(dir, &format!("{id}-s"), "rsa:2048"),
        authentication_csr: openssl_csr(dir, &format!("{id}-a"), "ec"),
        card_pin: pin.into(),
        ra_operator: "ra-7".into(),
        ..Default::default()
    }
}

fn confirmation() -> IdentityConfirmation {
    IdentityConfirmation {
        confirmed_by: "op-kato".into(),
        method: ConfirmationMethod::Phone as i32,
        confirmed_at: (OffsetDateTime::now_utc() - Duration::minutes(5))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        note: String::new(),
    }
}

struct Lab {
    ca: Ca,
    rt: tokio::runtime::Runtime,
    issuance: IssuanceClient<Channel>,
    crl_http: String,
    issuance_url: String,
}

fn lab() -> Lab {
    let mut ca = Ca::new("");
    let cfg = std::fs::read_to_string(&ca.config).unwrap().replace(
        "[issuance]\nlisten = \"127.0.0.1:0\"\n",
        "[issuance]\nlisten = \"127.0.0.1:0\"\nrenewal_window_days = 4000\npin_disclosures_per_window = 2\n",
    );
    std::fs::write(&ca.config, cfg).unwrap();
    let addrs = ca.spawn(&["run"], &["issuance", "crl-http"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuance_url = ca.url(&addrs[0]);
    let issuance = rt.block_on(ca.issuance(&addrs[0]));
    Lab { ca, rt, issuance, crl_http: addrs[1].clone(), issuance_url }
}

/// Fetches both CRLs; returns their `openssl crl -text` output, signatures verified.
fn crl_texts(lab: &Lab) -> String {
    let mut all = String::new();
    for (name, ca) in [("sign", "sign-ca.pem"), ("auth", "auth-ca.pem")] {
        let (status, _, body) = http_get(&lab.crl_http, &format!("/crl/{name}.crl"));
        assert_eq!(status, 200);
        let path = lab.ca.dir.path().join(format!("{name}-now.crl.pem"));
        write_pem_label(&path, "X509 CRL", &body);
        let (ok, text) = crl_text(&path, false, &lab.ca.cert_path(ca));
        assert!(ok && text.contains("verify OK"), "{text}");
        all.push_str(&text);
    }
    all
}

/// The reason openssl prints right after a serial in `crl -text`.
fn reason_of(text: &str, serial: &str) -> Option<String> {
    let serial = serial.to_ascii_uppercase();
    let at = text.find(&format!("Serial Number: {serial}"))?;
    let rest = &text[at..];
    let reason_at = rest.find("CRL Reason Code:")?;
    rest[reason_at..].lines().nth(1).map(|l| l.trim().to_owned())
}

fn sled_files_contain(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

#[test]
fn pin_escrow_disclosure_and_contact_change() {
    let mut lab = lab();
    let dir = lab.ca.dir.path().to_owned();
    let generated = lab
        .rt
        .block_on(lab.issuance.submit_application(new_card("p-1", "400001", Membership::Member, "", &dir)))
        .expect("issue")
        .into_inner();
    assert_eq!(generated.generated_pin.len(), 6, "a generated PIN is returned once");
    let pin = "73915204";
    let given = lab
        .rt
        .block_on(lab.issuance.submit_application(new_card("p-2", "400002", Membership::Member, pin, &dir)))
        .expect("issue")
        .into_inner();
    assert!(given.generated_pin.is_empty());
    // A replay never returns the PIN again.
    let replay = lab
        .rt
        .block_on(lab.issuance.submit_application(new_card("p-1", "400001", Membership::Member, "", &dir)))
        .expect("replay")
        .into_inner();
    assert!(replay.replayed && replay.generated_pin.is_empty());

    // Neither PIN is anywhere in the database files, in plaintext.
    let db = lab.ca.state().join("registry.sled");
    assert!(!sled_files_contain(&db, pin.as_bytes()), "the given PIN is stored in plaintext");
    assert!(!sled_files_contain(&db, generated.generated_pin.as_bytes()), "the generated PIN is stored in plaintext");

    let disclose = |lab: &mut Lab, request: &str| {
        lab.rt.block_on(lab.issuance.disclose_pin(PinDisclosureRequest {
            request_id: request.into(),
            card_id: given.card_id.clone(),
            confirmation: Some(confirmation()),
            ra_operator: "ra-7".into(),
        }))
    };
    let d = disclose(&mut lab, "req-1").expect("disclose").into_inner();
    assert_eq!(d.pin, pin);
    let again = disclose(&mut lab, "req-1").expect_err("same request twice");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    assert!(!again.message().contains(pin));
    disclose(&mut lab, "req-2").expect("second request within the limit");
    let limited = disclose(&mut lab, "req-3").expect_err("over the limit");
    assert_eq!(limited.code(), tonic::Code::ResourceExhausted, "{limited:?}");
    let bad = lab
        .rt
        .block_on(lab.issuance.disclose_pin(PinDisclosureRequest {
            request_id: "req-4".into(),
            card_id: given.card_id.clone(),
            confirmation: None,
            ra_operator: String::new(),
        }))
        .expect_err("no confirmation");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("confirmation"), "{}", bad.message());
    assert!(!sled_files_contain(&db, pin.as_bytes()), "disclosure left the PIN in the database");

    // Contact change: a new address needs a recent resident record.
    let change = |lab: &mut Lab, rr: &str| {
        lab.rt.block_on(lab.issuance.change_contact(ContactChange {
            card_id: given.card_id.clone(),
            contact: Some(ContactAddress {
                address: "京都府京都市左京区".into(),
                phone: "075-000-0000".into(),
                ..Default::default()
            }),
            resident_record_issued_on: rr.into(),
            ra_operator: "ra-7".into(),
            change_date: String::new(),
        }))
    };
    let err = change(&mut lab, "").expect_err("address change without resident record");
    assert!(err.message().starts_with("resident_record_issued_on"), "{}", err.message());
    let err = change(&mut lab, &days_ago(200)).expect_err("old resident record");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let ok = change(&mut lab, &days_ago(3)).expect("contact change").into_inner();
    assert!(ok.changed);
    assert_eq!(ok.previous.unwrap().address, "大阪府大阪市北区");
    assert!(!change(&mut lab, &days_ago(3)).expect("same again").into_inner().changed);
    // No certificate changed.
    let card = lab
        .rt
        .block_on(lab.issuance.get_card(CardRef { key: Some(card_ref::Key::CardId(given.card_id.clone())) }))
        .unwrap()
        .into_inner();
    assert_eq!(card.state, "active");
    assert!(card.certificates.iter().all(|c| c.status == "good"));
    assert_eq!(card.contact.unwrap().address, "京都府京都市左京区");
}

#[test]
fn renewal_reissue_and_cessation_show_in_the_crl_with_their_reasons() {
    let mut lab = lab();
    let dir = lab.ca.dir.path().to_owned();
    let issue = |lab: &mut Lab, id: &str, licence: &str, m: Membership| {
        lab.rt
            .block_on(lab.issuance.submit_application(new_card(id, licence, m, "1234", &dir)))
            .expect("issue")
            .into_inner()
    };
    let renewed = issue(&mut lab, "r-1", "500001", Membership::Member);
    let lost = issue(&mut lab, "l-1", "500002", Membership::NonMember);
    let moved = issue(&mut lab, "m-1", "500003", Membership::Member);
    let damaged = issue(&mut lab, "d-1", "500004", Membership::Member);
    let ceased = issue(&mut lab, "c-1", "500005", Membership::NonMember);

    // A new application for a holder with an active card is refused.
    let err = lab
        .rt
        .block_on(lab.issuance.submit_application(new_card("r-x", "500001", Membership::Member, "1234", &dir)))
        .expect_err("second card");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Renewal: a new card; the old one stays valid until it expires.
    let renewal = |lab: &mut Lab, app_id: &str| {
        lab.rt.block_on(lab.issuance.renew(RenewalApplication {
            application_id: app_id.into(),
            card_id: renewed.card_id.clone(),
            documents: Some(documents()),
            signing_csr: openssl_csr(&dir, &format!("{app_id}-s"), "rsa:2048"),
            authentication_csr: openssl_csr(&dir, &format!("{app_id}-a"), "rsa:2048"),
            ra_operator: "ra-7".into(),
            card_pin: "5678".into(),
            ..Default::default()
        }))
    };
    let new_r = renewal(&mut lab, "r-2").expect("renewal").into_inner();
    assert_eq!(new_r.replaces_card_id, renewed.card_id);
    assert_eq!(new_r.fee.clone().unwrap().due_now, 5_000, "member renewal fee");
    assert_ne!(new_r.signing_serial, renewed.signing_serial);
    let err = renewal(&mut lab, "r-3").expect_err("renewing twice");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    let reissue = |lab: &mut Lab,
                   id: &str,
                   card: &IssuedCard,
                   reason: ReissueReason,
                   m: Membership,
                   conf: Option<IdentityConfirmation>| {
        lab.rt.block_on(lab.issuance.reissue(ReissueApplication {
            application_id: id.into(),
            card_id: card.card_id.clone(),
            reason: reason as i32,
            applicant: Some(applicant("Sato")),
            membership: m as i32,
            documents: Some(documents()),
            signing_csr: openssl_csr(&dir, &format!("{id}-s"), "rsa:2048"),
            authentication_csr: openssl_csr(&dir, &format!("{id}-a"), "rsa:2048"),
            confirmation: conf,
            ra_operator: "ra-7".into(),
            card_pin: "9999".into(),
            ..Default::default()
        }))
    };
    let err = reissue(&mut lab, "l-2", &lost, ReissueReason::Loss, Membership::NonMember, None)
        .expect_err("loss needs a confirmation");
    assert!(err.message().starts_with("confirmation"), "{}", err.message());
    let new_l = reissue(&mut lab, "l-2", &lost, ReissueReason::Loss, Membership::NonMember, Some(confirmation()))
        .expect("loss reissue")
        .into_inner();
    assert!(!new_l.crl_numbers.is_empty(), "the emergency path publishes a CRL");
    assert_eq!(new_l.fee.clone().unwrap().due_now, 5_000, "non-member reissue");
    let new_m = reissue(&mut lab, "m-2", &moved, ReissueReason::MembershipChange, Membership::NonMember, None)
        .expect("membership reissue")
        .into_inner();
    assert_eq!(new_m.fee.clone().unwrap().due_now, 5_000, "the fee follows the membership after the change");
    let new_d = reissue(&mut lab, "d-2", &damaged, ReissueReason::Damage, Membership::Member, None)
        .expect("damage reissue")
        .into_inner();
    assert_eq!(new_d.fee.clone().unwrap().due_now, 0);
    let ceased_r = lab
        .rt
        .block_on(lab.issuance.cease_use(CessationRequest {
            card_id: ceased.card_id.clone(),
            ra_operator: "ra-7".into(),
            note: "retired".into(),
        }))
        .expect("cessation")
        .into_inner();
    assert_eq!(ceased_r.revoked_serials.len(), 2);

    let text = crl_texts(&lab);
    for (card, reason) in [
        (&lost, "Key Compromise"),
        (&moved, "Affiliation Changed"),
        (&damaged, "Superseded"),
        (&ceased, "Cessation Of Operation"),
    ] {
        for serial in [&card.signing_serial, &card.authentication_serial] {
            assert_eq!(reason_of(&text, serial).as_deref(), Some(reason), "{serial}:\n{text}");
        }
    }
    // The renewed card's certificates stay valid; the new cards verify under the CRLs.
    for serial in [&renewed.signing_serial, &new_r.signing_serial, &new_l.signing_serial, &new_m.signing_serial] {
        assert!(reason_of(&text, serial).is_none(), "{serial} must not be revoked");
    }
    let root = lab.ca.cert_path("root-ca.pem");
    for (i, card) in [&new_r, &new_l, &new_m, &new_d].into_iter().enumerate() {
        let cert = dir.join(format!("new-{i}.pem"));
        write_pem(&cert, &card.signing_certificate);
        let crl = dir.join("sign-now.crl.pem");
        let (ok, out) = verify_with_crl(&lab.ca, &lab.ca.cert_path("sign-ca.pem"), &crl, &cert);
        assert!(ok, "new card {i}: {out}");
    }
    let old = dir.join("old-lost.pem");
    write_pem(&old, &lost.signing_certificate);
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        lab.ca.cert_path("sign-ca.pem").to_str().unwrap(),
        "-CRLfile",
        dir.join("sign-now.crl.pem").to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The holder's history: the lost card, then its replacement.
    let h = lab
        .rt
        .block_on(
            lab.issuance.get_holder_history(HolderRef { key: Some(holder_ref::Key::LicenceNumber("500002".into())) }),
        )
        .unwrap()
        .into_inner();
    assert_eq!(h.cards.len(), 2);
    assert_eq!((h.cards[0].state.as_str(), h.cards[1].procedure.as_str()), ("revoked", "reissue"));
    assert_eq!(h.cards[0].superseded_by, h.cards[1].card_id);
}

#[test]
fn bulk_import_reports_each_failed_line_and_carries_on() {
    let lab = lab();
    let dir = lab.ca.dir.path().to_owned();
    let mut lines = String::new();
    for (i, licence) in ["600001", "", "600003"].iter().enumerate() {
        openssl_csr(&dir, &format!("bulk{i}-s"), "rsa:2048");
        openssl_csr(&dir, &format!("bulk{i}-a"), "rsa:2048");
        lines.push_str(&serde_json::json!({
            "application_id": format!("bulk-{i}"),
            "applicant": {"family_name_kanji": "高橋", "given_name_kanji": "三郎", "family_name_kana": "タカハシ",
                          "given_name_kana": "サブロウ", "family_name_latin": "Takahashi", "given_name_latin": "Saburo",
                          "date_of_birth": "1980-01-01"},
            "licence_number": licence, "licence_registered_on": "2005-05-01", "membership": "MEMBER",
            "contact": {"address": "福岡県福岡市"},
            "documents": {"photo_taken_on": days_ago(5), "resident_record_issued_on": days_ago(5),
                          "photo_id_type": "PASSPORT", "photo_id_expires_on": "2033-01-01", "licence_copy_checked": true},
            "signing_csr": format!("bulk{i}-s.csr"), "authentication_csr": format!("bulk{i}-a.csr"),
        }).to_string());
        lines.push('\n');
    }
    let file = dir.join("apps.jsonl");
    std::fs::write(&file, lines).unwrap();
    let issuance_url = lab.issuance_url.clone();
    let out = lab.ca.cli(&["import", file.to_str().unwrap(), "--url", &issuance_url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "one line failed, so the import reports failure");
    assert!(stderr.contains("line 2: InvalidArgument: licence.licence_number"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 2 of 3; 1 failed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = lab.ca.cli(&["--json", "card", "show", "--licence", "600003", "--url", &issuance_url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["state"], "active");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(v["fee"]["due_now"], 0);
}
