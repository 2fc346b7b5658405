//! Writes the protobuf seed corpora (run by `fuzz/gen-seeds.sh`, after the
//! CSR seeds exist): `cargo run --example gen_proto_seeds -- fuzz/seeds`.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;

fn hpki_fuzz_issuers() -> [ocsp::issuers::IssuerHashes; 2] {
    hpki_fuzz::issuer_hashes().clone()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn valid_application(seeds: &Path) -> iss::NewCardApplication {
    let csr = |n: &str| fs::read(seeds.join("csr_reader").join(n)).expect("run the CSR part of gen-seeds.sh first");
    iss::NewCardApplication {
        application_id: "ra-2025-0001".into(),
        applicant: Some(iss::Applicant {
            family_name_kanji: "神楽坂".into(),
            given_name_kanji: "三十四".into(),
            family_name_kana: "カグラザカ".into(),
            given_name_kana: "サンジュウシ".into(),
            family_name_latin: "Kagurazaka".into(),
            given_name_latin: "Sanjushi".into(),
            date_of_birth: "1980-04-01".into(),
        }),
        licence: Some(iss::MedicalLicence { licence_number: "123456".into(), registered_on: "2006-05-01".into() }),
        membership: iss::Membership::Member as i32,
        contact: Some(iss::ContactAddress {
            postal_code: "162-0825".into(),
            address: "東京都新宿区神楽坂1-1".into(),
            phone: "03-0000-0000".into(),
            email: "s@example.jp".into(),
        }),
        documents: Some(iss::DocumentChecks {
            photo_taken_on: "2025-05-01".into(),
            resident_record_issued_on: "2025-04-20".into(),
            photo_id: Some(iss::PhotoId {
                r#type: iss::PhotoIdType::Passport as i32,
                expires_on: "2030-01-01".into(),
                issued_on: String::new(),
            }),
            licence_copy_checked: true,
            licence_back_endorsed: false,
            licence_back_copied: false,
        }),
        signing_csr: csr("rsa2048.der"),
        authentication_csr: csr("p256.pem"),
        application_date: "2025-06-10".into(),
        institution: "Kagurazaka Clinic".into(),
        institution_kanji: "神楽坂クリニック".into(),
        ra_operator: "ra-op-1".into(),
        card_pin: "1234".into(),
    }
}

fn main() {
    let seeds = PathBuf::from(std::env::args().nth(1).expect("usage: gen_proto_seeds SEEDS_DIR"));

    // ocsp_request_der: what openssl cannot make (nonces of the edge sizes),
    // from the crate's own request encoder, for the fixture CA.
    let d = seeds.join("ocsp_request_der");
    let [h, _] = hpki_fuzz_issuers();
    for (name, nonce) in [("nonce_0", &[][..]), ("nonce_32", &[0x5a; 32][..]), ("nonce_33", &[0xa5; 33][..])] {
        let der =
            ocsp::request::encode_request(&h, ocsp::issuers::HashAlg::Sha256, &[&[0x12, 0x35]], Some(nonce)).unwrap();
        write(&d, &format!("{name}.der"), &der);
    }
    let der = ocsp::request::encode_request(&h, ocsp::issuers::HashAlg::Sha1, &[&[0x80], &[0xff, 0x01]], None).unwrap();
    write(&d, "negative_serials.der", &der);

    // issuance_validate: NewCardApplication encodings.
    let d = seeds.join("issuance_validate");
    let _ = fs::remove_dir_all(&d);
    let ok = valid_application(&seeds);
    write(&d, "valid_passport", &ok.encode_to_vec());
    let mut a = ok.clone();
    a.application_date.clear();
    a.institution.clear();
    a.institution_kanji.clear();
    write(&d, "valid_today_no_institution", &a.encode_to_vec());
    let mut a = ok.clone();
    let docs = a.documents.as_mut().unwrap();
    docs.photo_id = Some(iss::PhotoId {
        r#type: iss::PhotoIdType::DrivingHistoryCertificate as i32,
        expires_on: String::new(),
        issued_on: "2012-04-01".into(),
    });
    docs.licence_back_endorsed = true;
    docs.licence_back_copied = true;
    a.membership = iss::Membership::NonMember as i32;
    write(&d, "valid_driving_history", &a.encode_to_vec());
    let mut a = ok.clone();
    a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().r#type = iss::PhotoIdType::GovernmentEmployeeId as i32;
    a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().expires_on.clear();
    write(&d, "valid_government_id", &a.encode_to_vec());
    let mut a = ok.clone();
    a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().r#type = iss::PhotoIdType::MyNumberNotificationCard as i32;
    write(&d, "notification_card", &a.encode_to_vec());
    let mut a = ok.clone();
    a.documents.as_mut().unwrap().photo_taken_on = "2024-06-10".into();
    write(&d, "old_photo", &a.encode_to_vec());
    let mut a = ok.clone();
    a.applicant.as_mut().unwrap().family_name_latin = "神楽坂".into();
    a.applicant.as_mut().unwrap().given_name_kana = "ｻﾝｼﾞｭｳｼ".into();
    write(&d, "bad_latin_halfwidth_kana", &a.encode_to_vec());
    let mut a = ok.clone();
    a.signing_csr = b"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n".to_vec();
    write(&d, "bad_csr", &a.encode_to_vec());
    write(&d, "empty", &[]);

    // revocation_validate: first byte picks the message (see the harness).
    let d = seeds.join("revocation_validate");
    let _ = fs::remove_dir_all(&d);
    let tagged = |tag: u8, m: &dyn Fn() -> Vec<u8>| [vec![tag], m()].concat();
    write(
        &d,
        "0_revoke_certificate",
        &tagged(0, &|| {
            rev::RevokeCertificateRequest {
                serial: "7F0011223344556677889900AABBCCDD".into(),
                reason: reg::RevocationReason::KeyCompromise as i32,
                operator: "op-1".into(),
                note: "lost card".into(),
                revoked_at: "2025-06-01T09:00:00+09:00".into(),
                compromised_at: "2025-05-31T20:00:00+09:00".into(),
            }
            .encode_to_vec()
        }),
    );
    write(
        &d,
        "1_revoke_card",
        &tagged(1, &|| {
            rev::RevokeCardRequest {
                card_id: "card-0001".into(),
                reason: reg::RevocationReason::Superseded as i32,
                operator: "op-1".into(),
                note: String::new(),
                revoked_at: String::new(),
                compromised_at: String::new(),
            }
            .encode_to_vec()
        }),
    );
    for (name, card) in [
        ("2_emergency_card_id", rev::emergency_revoke_request::Card::CardId("card-0001".into())),
        ("2_emergency_licence", rev::emergency_revoke_request::Card::LicenceNumber("123456".into())),
    ] {
        write(
            &d,
            name,
            &tagged(2, &|| {
                rev::EmergencyRevokeRequest {
                    card: Some(card.clone()),
                    confirmation: Some(rev::IdentityConfirmation {
                        confirmed_by: "op-2".into(),
                        method: rev::ConfirmationMethod::Phone as i32,
                        confirmed_at: "2025-06-14T23:59:59Z".into(),
                        note: "called back on the registered number".into(),
                    }),
                    operator: "op-1".into(),
                    note: "紛失届".into(),
                    compromised_at: String::new(),
                }
                .encode_to_vec()
            }),
        );
    }
    write(
        &d,
        "3_approve",
        &tagged(3, &|| {
            rev::ApproveEmergencyRequest { approval_id: "appr-1".into(), operator: "op-3".into() }.encode_to_vec()
        }),
    );
    write(&d, "4_rfc3339", &[4, 0x80, 0x5e, 0x4f, 0x68, 0, 0, 0, 0]);

    // serial_parsers: 0 = octets, 1 = hex text, 2 = RevokedEntry.
    let d = seeds.join("serial_parsers");
    let _ = fs::remove_dir_all(&d);
    write(&d, "0_octets", &[0, 0x7f, 0x00, 0x11, 0x22, 0x33]);
    write(&d, "0_octets_leading_zero", &[0, 0x00, 0x80, 0x01]);
    write(&d, "1_hex", b"\x017F0011223344556677889900AABBCCDD");
    write(&d, "1_hex_21_octets", b"\x0100ff0102030405060708090a0b0c0d0e0f10111213");
    write(&d, "1_reason", b"\x01key-compromise");
    let entry = reg::RevokedEntry {
        serial: "0a1b2c3d".into(),
        revoked_at_unix: 1_750_000_000,
        reason: reg::RevocationReason::CessationOfOperation as i32,
        not_after_unix: 1_900_000_000,
        sequence: 42,
        // 0: none (not encoded, so the seed keeps its bytes).
        invalidity_date_unix: 0,
    };
    write(&d, "2_revoked_entry", &[vec![2], entry.encode_to_vec()].concat());
}
