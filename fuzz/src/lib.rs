//! Fuzz harnesses for the inputs of the HPKI CA that come from outside.
//!
//! Each `pub fn <target>(data: &[u8])` is one libFuzzer target (see
//! `fuzz_targets/`) and is also replayed on stable by `tests/replay.rs` over
//! `seeds/` and `regressions/`. A harness calls only public functions of the
//! crates, exactly as the services do, and panics only when the code under
//! test panics or breaks an invariant checked here (`assert!`s below).
//!
//! | target               | what it drives                                                   |
//! |----------------------|------------------------------------------------------------------|
//! | ocsp_request_der     | `ocsp::request::parse` + `Responder::respond` (the POST body path) |
//! | ocsp_get_path        | `ocsp::http::router`, GET `/{url-encoded base64}` (and `/ocsp/…`)  |
//! | csr_reader           | `profile::csr::parse_and_verify` (DER and PEM)                    |
//! | issuance_validate    | prost-decoded `NewCardApplication` → `check_application` (+ CSRs) |
//! | revocation_validate  | prost-decoded revocation requests → `revocation::validate::*`     |
//! | serial_parsers       | serial parsers: crl `SerialNumber`/`CrlEntry`, store `Serial`,    |
//! |                      | ocsp `SerialKey`, revocation `validate::serial`, `RevocationReason`|

use der::oid::db::rfc6960;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use der::{Decode, Encode};
use ocsp::asn1::{BasicOCSPResponse, CRLReason, OCSPResponse, OCSPResponseStatus};
use ocsp::issuers::IssuerHashes;
use ocsp::metrics::{AnswerStatus, Metrics};
use ocsp::responder::{IssuerSlot, Settings};
use ocsp::signer::{ResponderIdentity, ResponseSigner};
use ocsp::source::{BoxFuture, CertificateSource};
use ocsp::status::CertState;
use ocsp::{OcspError, Responder};
use prost::Message;

/// The test CA of `seeds/fixtures` (the issuer the OCSP seeds ask about).
pub const CA_DER: &[u8] = include_bytes!("../seeds/fixtures/ca.der");
/// Its delegated OCSP responder certificate.
pub const RESPONDER_DER: &[u8] = include_bytes!("../seeds/fixtures/responder.der");

/// As in `config::OcspConfig::default()`.
pub const MAX_ITEMS: usize = 8;
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// The configured OCSP URL's path for the GET target.
pub const OCSP_PATH: &str = "/ocsp";
/// RSA floor the issuance service applies to CSRs.
pub const MIN_RSA_BITS: u32 = 2048;

// ---------------------------------------------------------------------------
// OCSP

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"))
}

fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// The hashes of the fixture CA, and of a second CA that is ours too (so
/// "mixed issuers" is reachable).
pub fn issuer_hashes() -> &'static [IssuerHashes; 2] {
    static H: OnceLock<[IssuerHashes; 2]> = OnceLock::new();
    H.get_or_init(|| {
        let ca = x509_cert::Certificate::from_der(CA_DER).expect("fixture CA");
        let tbs = ca.tbs_certificate();
        let subject = tbs.subject().to_der().expect("subject");
        let key = tbs.subject_public_key_info().subject_public_key.raw_bytes().to_vec();
        [IssuerHashes::new(&subject, &key), IssuerHashes::new(b"second CA name", b"second CA key")]
    })
}

/// Signs nothing: a fixed-length fake ECDSA signature (the encoding around it is what is fuzzed).
struct FakeSigner;

impl ResponseSigner for FakeSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, OcspError> {
        let mut sig = vec![0x30, 0x44, 0x02, 0x20];
        sig.extend(std::iter::repeat_n(msg.len() as u8 | 1, 32));
        sig.extend([0x02, 0x20]);
        sig.extend(std::iter::repeat_n(0x11, 32));
        Ok(sig)
    }
}

/// The registry, answering by the serial's last hex digit so that every
/// branch of the miss path is reachable: unknown, good, revoked (with and
/// without a reason), issued by our other CA, and the registry failing.
struct FakeRegistry;

impl CertificateSource for FakeRegistry {
    fn certificate(&self, serial_hex: String) -> BoxFuture<'_, Result<Option<(String, CertState)>, OcspError>> {
        Box::pin(async move {
            let last = serial_hex.bytes().last().unwrap_or(b'0');
            Ok(match last {
                b'0' | b'8' => None,
                b'1' | b'9' => return Err(OcspError::Registry("fake registry is down".into())),
                b'2' | b'a' | b'A' => {
                    Some(("ca-0".into(), CertState::Revoked { at_unix: 1_700_000_000, reason: None, invalidity_unix: None }))
                }
                b'3' | b'b' | b'B' => Some((
                    "ca-0".into(),
                    CertState::Revoked {
                        at_unix: 1_600_000_000,
                        reason: Some(CRLReason::KeyCompromise),
                        invalidity_unix: Some(1_599_000_000),
                    },
                )),
                b'4' => Some(("ca-1".into(), CertState::Good)),
                _ => Some(("ca-0".into(), CertState::Good)),
            })
        })
    }
}

/// A fresh responder (empty cache) for the fixture CA and the second CA.
pub fn responder() -> Arc<Responder> {
    let settings = Settings {
        next_update_secs: 24 * 3600,
        refresh_before_secs: 3600,
        negative_ttl_secs: 60,
        max_items: MAX_ITEMS,
        nonce: config::NonceMode::Echo,
        nonce_per_second: u32::MAX,
        max_inflight: 64,
        signing_threads: 1,
        // Fuzzing exercises the decoder and encoder, not the live-signing buckets.
        live_per_second: u32::MAX,
        live_burst: u32::MAX,
        client_live_per_second: u32::MAX,
        client_live_burst: u32::MAX,
    };
    let [h0, h1] = issuer_hashes().clone();
    let identity = || ResponderIdentity::new(RESPONDER_DER.to_vec(), Arc::new(FakeSigner)).expect("fixture responder");
    let issuers = vec![
        IssuerSlot::new("signing", "ca-0".into(), h0, identity()),
        IssuerSlot::new("authentication", "ca-1".into(), h1, identity()),
    ];
    Arc::new(Responder::new(settings, issuers, Arc::new(FakeRegistry), Arc::new(Metrics::default())))
}

/// What every OCSP answer must be: a decodable OCSPResponse whose status
/// matches the answer's, and for `successful` a basic response with one
/// SingleResponse per CertID asked about, naming the same serials.
fn check_ocsp_answer(der: &[u8], status: AnswerStatus, request: Option<&ocsp::request::Parsed<'_>>) {
    let resp = OCSPResponse::from_der(der)
        .unwrap_or_else(|e| panic!("the responder sent an undecodable OCSPResponse ({e}): {}", hex::encode(der)));
    let expected = match status {
        AnswerStatus::Good | AnswerStatus::Revoked | AnswerStatus::Unknown => OCSPResponseStatus::Successful,
        AnswerStatus::Malformed => OCSPResponseStatus::MalformedRequest,
        AnswerStatus::Unauthorized => OCSPResponseStatus::Unauthorized,
        AnswerStatus::TryLater => OCSPResponseStatus::TryLater,
        AnswerStatus::InternalError => OCSPResponseStatus::InternalError,
    };
    assert_eq!(resp.response_status, expected, "answer status {status:?} but the response says otherwise");
    if expected != OCSPResponseStatus::Successful {
        assert!(resp.response_bytes.is_none(), "an error response carries responseBytes");
        return;
    }
    let bytes = resp.response_bytes.expect("a successful response without responseBytes");
    assert_eq!(bytes.response_type, rfc6960::ID_PKIX_OCSP_BASIC);
    let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).expect("undecodable BasicOCSPResponse");
    if let Some(req) = request {
        let got: Vec<&[u8]> =
            basic.tbs_response_data.responses.iter().map(|r| r.cert_id.serial_number.as_bytes()).collect();
        let asked: Vec<&[u8]> = req.items.iter().map(|i| i.serial).collect();
        assert_eq!(got, asked, "the response names other serials than the request");
    }
}

/// An OCSP request body (POST, or a GET after base64): the decoder with
/// every limit, then the whole responder (miss → registry → sign → cache,
/// then the cached hot path).
pub fn ocsp_request_der(data: &[u8]) {
    let issuers = issuer_hashes();
    let parsed = ocsp::request::parse(data, MAX_ITEMS, issuers);
    match &parsed {
        Ok(p) => {
            assert!(!p.items.is_empty() && p.items.len() <= MAX_ITEMS, "{} items accepted", p.items.len());
            assert!(p.items.iter().all(|i| i.issuer == p.items[0].issuer && i.issuer < issuers.len()));
            if let Some(n) = p.nonce {
                let inner = <&der::asn1::OctetStringRef>::from_der(n).expect("accepted nonce is not an OCTET STRING");
                assert!((1..=ocsp::request::MAX_NONCE_LEN).contains(&inner.as_bytes().len()));
            }
            // Stricter limits only ever reject more.
            if p.items.len() > 1 {
                assert!(ocsp::request::parse(data, 1, issuers).is_err());
            }
        }
        Err(e) => {
            let s = e.response_status();
            assert!(
                matches!(s, Some(OCSPResponseStatus::MalformedRequest | OCSPResponseStatus::Unauthorized)),
                "a request error maps to {s:?}: {e}"
            );
            let answer = ocsp::Answer::error(e);
            check_ocsp_answer(&answer.der, answer.status, None);
        }
    }

    let responder = responder();
    for round in 0..2 {
        let answer = block_on(responder.respond(data));
        match &parsed {
            Err(_) => assert!(
                matches!(answer.status, AnswerStatus::Malformed | AnswerStatus::Unauthorized),
                "a request parse() refuses was answered {:?}",
                answer.status
            ),
            Ok(_) => assert!(
                !matches!(
                    answer.status,
                    AnswerStatus::Malformed | AnswerStatus::Unauthorized | AnswerStatus::InternalError
                ),
                "round {round}: a request parse() accepts was answered {:?}",
                answer.status
            ),
        }
        check_ocsp_answer(&answer.der, answer.status, parsed.as_ref().ok());
    }
}

/// The path of an HTTP GET request, as the server receives it (the fuzz
/// input is the request-target; inputs hyper would refuse as a URI are skipped).
pub fn ocsp_get_path(data: &[u8]) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, Uri};
    use tower::ServiceExt;

    let Ok(uri) = Uri::try_from(data) else { return };
    let state = Arc::new(ocsp::http::HttpState {
        responder: responder(),
        ocsp_path: OCSP_PATH.to_owned(),
        max_request_bytes: MAX_REQUEST_BYTES,
        trusted_proxies: Vec::new(),
    });
    let router = ocsp::http::router(state);
    let Ok(req) = Request::get(uri).body(Body::empty()) else { return };
    let (status, body) = block_on(async move {
        let resp = router.oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("response body");
        (status, body)
    });
    assert!(
        matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED),
        "GET answered HTTP {status} (OCSP errors travel with 200)"
    );
    if status == StatusCode::OK {
        let resp = OCSPResponse::from_der(&body)
            .unwrap_or_else(|e| panic!("GET answered an undecodable OCSPResponse ({e}): {}", hex::encode(&body)));
        if resp.response_status == OCSPResponseStatus::Successful {
            BasicOCSPResponse::from_der(resp.response_bytes.expect("responseBytes").response.as_bytes())
                .expect("undecodable BasicOCSPResponse");
        }
    }
}

// ---------------------------------------------------------------------------
// CSRs

/// A PKCS#10 request as the RA sends it (DER or PEM).
pub fn csr_reader(data: &[u8]) {
    if let Ok(csr) = profile::csr::parse_and_verify(data, MIN_RSA_BITS) {
        let spki = csr.subject_public_key_info_der();
        spki::SubjectPublicKeyInfoRef::from_der(spki).expect("accepted CSR: SPKI does not decode");
        x509_cert::name::Name::from_der(csr.requested_subject_der()).expect("accepted CSR: subject does not decode");
        assert!(!csr.key_description().is_empty());
        if let Some(bits) = csr.rsa_bits() {
            assert!(bits >= MIN_RSA_BITS, "accepted an RSA key of {bits} bits");
        }
    }
}

// ---------------------------------------------------------------------------
// gRPC request validators

/// "Today" (JST) for the issuance checks: fixed, so crashes reproduce.
pub const TODAY: time::Date = time::macros::date!(2025 - 06 - 15);
/// "Now" for the revocation checks.
pub const NOW_UNIX: i64 = 1_750_000_000;

/// SubmitApplication's request, decoded as tonic does, then checked as the
/// issuance service does (fields first, then the two CSRs).
pub fn issuance_validate(data: &[u8]) {
    use proto::issuance::v1::NewCardApplication;
    let Ok(app) = NewCardApplication::decode(data) else { return };
    for max_age_months in [0, 6, 1200] {
        if let Ok(checked) = issuance::validate::check_application(&app, TODAY, max_age_months) {
            assert!(checked.application_date <= TODAY, "application date {} after today", checked.application_date);
            for csr in [&app.signing_csr, &app.authentication_csr] {
                let _ = profile::csr::parse_and_verify(csr, MIN_RSA_BITS);
            }
        }
    }
    // The date helpers, on every date field the message carries.
    let dates = app
        .applicant
        .iter()
        .map(|a| a.date_of_birth.as_str())
        .chain(app.licence.iter().map(|l| l.registered_on.as_str()))
        .chain(app.documents.iter().flat_map(|d| [d.photo_taken_on.as_str(), d.resident_record_issued_on.as_str()]))
        .chain(
            app.documents
                .iter()
                .filter_map(|d| d.photo_id.as_ref())
                .flat_map(|p| [p.expires_on.as_str(), p.issued_on.as_str()]),
        )
        .chain([app.application_date.as_str()]);
    for d in dates {
        if let Ok(date) = issuance::validate::parse_date("f", d) {
            for months in [0, 1, 6, 12, 1200] {
                let before = issuance::validate::months_before(date, months);
                assert!(before <= date, "months_before({date}, {months}) = {before}");
            }
        }
    }
}

/// The revocation service's requests: the first byte picks the message, the
/// rest is its protobuf encoding; every validator the handler applies runs.
pub fn revocation_validate(data: &[u8]) {
    use proto::revocation::v1 as pb;
    use revocation::validate as v;
    let Some((&which, rest)) = data.split_first() else { return };
    let now = time::OffsetDateTime::from_unix_timestamp(NOW_UNIX).expect("now");
    let check_time = |field: &str, value: &str| {
        if let Ok(Some(t)) = v::optional_past_time(field, value, now) {
            assert!(t <= now + v::CLOCK_SKEW && t.unix_timestamp() > 0, "accepted time {t}");
            let back = v::rfc3339(t.unix_timestamp());
            assert!(!back.is_empty(), "rfc3339({}) is empty", t.unix_timestamp());
        }
    };
    let check_id = |field: &str, value: &str| {
        if let Ok(id) = v::id(field, value) {
            assert!(!id.is_empty() && id.len() <= v::MAX_ID_LEN && id.trim() == id);
        }
    };
    let check_note = |field: &str, value: &str| {
        if let Ok(n) = v::note(field, value) {
            assert!(n.len() <= v::MAX_NOTE_LEN);
        }
    };
    match which % 5 {
        0 => {
            let Ok(r) = pb::RevokeCertificateRequest::decode(rest) else { return };
            if let Ok(s) = v::serial("serial", &r.serial) {
                assert!(s.len() <= 2 * v::MAX_SERIAL_OCTETS && s.len() % 2 == 0 && !s.is_empty());
                assert_eq!(s, s.to_ascii_lowercase());
            }
            let _ = v::reason("reason", r.reason);
            check_id("operator", &r.operator);
            check_note("note", &r.note);
            check_time("revoked_at", &r.revoked_at);
            check_time("compromised_at", &r.compromised_at);
        }
        1 => {
            let Ok(r) = pb::RevokeCardRequest::decode(rest) else { return };
            check_id("card_id", &r.card_id);
            let _ = v::reason("reason", r.reason);
            check_id("operator", &r.operator);
            check_note("note", &r.note);
            check_time("revoked_at", &r.revoked_at);
        }
        2 => {
            let Ok(r) = pb::EmergencyRevokeRequest::decode(rest) else { return };
            match &r.card {
                Some(pb::emergency_revoke_request::Card::CardId(c)) => check_id("card_id", c),
                Some(pb::emergency_revoke_request::Card::LicenceNumber(l)) => check_id("licence_number", l),
                None => {}
            }
            if let Ok(c) = v::confirmation(r.confirmation.as_ref(), now) {
                assert!(!c.confirmed_at.is_empty(), "accepted confirmation without a time");
            }
            check_id("operator", &r.operator);
            check_note("note", &r.note);
        }
        3 => {
            let Ok(r) = pb::ApproveEmergencyRequest::decode(rest) else { return };
            check_id("approval_id", &r.approval_id);
            check_id("operator", &r.operator);
        }
        _ => {
            // rfc3339 over any i64 (revocation times read back from the registry).
            let mut b = [0u8; 8];
            let n = rest.len().min(8);
            b[..n].copy_from_slice(&rest[..n]);
            let _ = v::rfc3339(i64::from_le_bytes(b));
        }
    }
}

// ---------------------------------------------------------------------------
// Serial numbers and CRL entries

/// Every parser of a serial number (hex from gRPC, octets from DER), and the
/// CRL publisher's reading of a ListRevoked entry. The first byte picks the
/// mode; the parsers are compared with each other where they must agree.
pub fn serial_parsers(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            // Octets.
            if let Ok(s) = crl::entry::SerialNumber::from_bytes(rest) {
                let m = s.magnitude();
                assert!(!m.is_empty() && m[0] != 0 && m.len() <= crl::entry::MAX_SERIAL_OCTETS);
                assert_eq!(crl::entry::SerialNumber::from_hex(&s.to_hex()).ok(), Some(s), "hex round trip");
            }
            if let Ok(s) = store::Serial::from_bytes(rest) {
                assert_eq!(s.as_bytes(), rest);
                assert_eq!(store::Serial::from_hex(&s.to_hex()).ok(), Some(s));
            }
            if let Some(k) = ocsp::serial::SerialKey::new(0, rest) {
                assert_eq!(k.serial(), rest);
                assert_eq!(ocsp::serial::SerialKey::from_hex(0, &k.hex()), Some(k));
            }
        }
        1 => {
            // Hex, as every gRPC serial field carries it.
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let crl_s = crl::entry::SerialNumber::from_hex(text);
            let store_s = store::Serial::from_hex(text);
            let rev_s = revocation::validate::serial("serial", text);
            let ocsp_s = ocsp::serial::SerialKey::from_hex(0, text);
            if let Ok(s) = &store_s {
                // The revocation service and the registry accept the same serials.
                assert_eq!(
                    rev_s.as_deref().ok(),
                    Some(s.to_hex().as_str()),
                    "revocation and store disagree on {text:?}"
                );
                assert_eq!(ocsp_s.map(|k| k.hex()), Some(s.to_hex()), "ocsp and store disagree on {text:?}");
            }
            if let Ok(c) = &crl_s {
                // What the CRL lists is the same positive number.
                if let Ok(s) = &store_s {
                    let stripped: &[u8] = {
                        let b = s.as_bytes();
                        &b[b.iter().position(|x| *x != 0).unwrap_or(b.len())..]
                    };
                    assert_eq!(c.magnitude(), stripped, "crl and store disagree on {text:?}");
                }
            }
            let _ = domain::RevocationReason::from_str(text).map(|r| {
                assert_eq!(domain::RevocationReason::from_str(r.name()).ok(), Some(r));
            });
        }
        _ => {
            // A ListRevoked stream entry, decoded as tonic does.
            let Ok(e) = proto::registry::v1::RevokedEntry::decode(rest) else { return };
            if let Ok(entry) = crl::entry::CrlEntry::from_registry(&e) {
                assert_eq!(entry.revocation_date, e.revoked_at_unix);
                let _ = entry.reason.code();
            }
        }
    }
}
