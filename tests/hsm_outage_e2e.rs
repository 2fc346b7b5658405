//! End to end: the HSM goes away under the running CA and comes back.
//!
//! The SoftHSM token folder of a running `hpki-ca run` is moved aside (what the
//! process sees when the token's storage disappears) and later moved back. While
//! it is away: issuance reports NOT_SERVING and refuses applications with
//! UNAVAILABLE, recording nothing; an emergency revocation is recorded, and the
//! OCSP responder never calls the lost card good (it says tryLater until it can
//! sign). When it returns, without restarting anything: issuance serves again, the
//! refused application succeeds on retry, OCSP says revoked and the CRL lists the
//! card, all verified with openssl.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{application, http_get, ocsp_query, openssl, verify_chain, write_pem, write_pem_label, Ca};
use proto::issuance::v1 as iss;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::registry::v1 as reg;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ISSUANCE: &str = "hpki.issuance.v1.Issuance";

/// A progress line straight to stderr, past libtest's capture, so `make test` shows it.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "hsm_outage_e2e: {}", format_args!($($t)*));
    }};
}

struct TokenFolder {
    tokens: PathBuf,
    aside: PathBuf,
}

impl TokenFolder {
    fn of(ca: &Ca) -> TokenFolder {
        let hsm = ca.state().join("hsm");
        TokenFolder { tokens: hsm.join("tokens"), aside: hsm.join("tokens-away") }
    }

    fn remove(&self) {
        std::fs::rename(&self.tokens, &self.aside).expect("move the token folder aside");
        std::fs::create_dir(&self.tokens).expect("empty token folder");
    }

    fn restore(&self) {
        std::fs::remove_dir_all(&self.tokens).expect("remove the empty token folder");
        std::fs::rename(&self.aside, &self.tokens).expect("move the token folder back");
    }
}

async fn health(ca: &Ca, addr: &str) -> ServingStatus {
    let channel = ca.grpc(addr, "ra").await.expect("connect for health");
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: ISSUANCE.into() })
        .await
        .expect("health check")
        .into_inner();
    ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown)
}

async fn wait_health(ca: &Ca, addr: &str, want: ServingStatus, limit: Duration) {
    let start = Instant::now();
    loop {
        let now = health(ca, addr).await;
        if now == want {
            return;
        }
        assert!(start.elapsed() < limit, "issuance health stayed {now:?}, expected {want:?} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `openssl ocsp` for a certificate of the signing CA; the whole output.
fn ocsp(ca: &Ca, responder: &str, cert: &Path) -> String {
    ocsp_query(ca, responder, "sign-ca.pem", cert, &["-no_nonce"])
}

/// The running CA of the test, and the token folder it uses.
struct Scene {
    ca: Ca,
    rt: tokio::runtime::Runtime,
    registry: String,
    issuance: String,
    revocation: String,
    crl_http: String,
    responder: String,
    dir: PathBuf,
    folder: TokenFolder,
}

fn by_application(id: &str) -> reg::GetCardRequest {
    reg::GetCardRequest { key: Some(reg::get_card_request::Key::ApplicationId(id.into())) }
}

#[test]
fn the_hsm_goes_away_and_comes_back_without_a_restart() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation", "crl-http", "ocsp"]);
    let [registry, issuance, revocation, crl_http, responder] = <[String; 5]>::try_from(addrs).expect("five addresses");
    let dir = ca.dir.path().to_owned();
    let folder = TokenFolder::of(&ca);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Scene { ca, rt, registry, issuance, revocation, crl_http, responder, dir, folder };

    let (lost, lost_sign) = issue_before_the_outage(&s);
    first_outage(&s, &lost, &lost_sign);
    let card = token_back(&s, &lost, &lost_sign);
    outage_mid_request(&s, &card);
    s.ca.take_children();
}

/// A card issued while all is well; OCSP calls it good.
fn issue_before_the_outage(s: &Scene) -> (iss::IssuedCard, PathBuf) {
    let Scene { ca, rt, issuance, responder, dir, .. } = s;
    let lost = common::submit(ca, rt, issuance, "h-1", "810001", dir).expect("issue before the outage");
    let lost_sign = dir.join("lost-sign.pem");
    write_pem(&lost_sign, &lost.signing_certificate);
    let out = ocsp(ca, responder, &lost_sign);
    assert!(out.contains("Response verify OK") && out.contains(": good"), "{out}");
    rt.block_on(wait_health(ca, issuance, ServingStatus::Serving, Duration::from_secs(5)));

    (lost, lost_sign)
}

/// The token goes away: issuance refuses with UNAVAILABLE and records nothing;
/// an emergency revocation is recorded but its CRL must wait; OCSP never calls
/// the lost card good.
fn first_outage(s: &Scene, lost: &iss::IssuedCard, lost_sign: &Path) {
    let Scene { ca, rt, registry, issuance, revocation, responder, dir, folder, .. } = s;
    folder.remove();
    let gone = Instant::now();
    rt.block_on(wait_health(ca, issuance, ServingStatus::NotServing, Duration::from_secs(5)));
    say!("issuance NOT_SERVING {:?} after the token went away", gone.elapsed());

    // An application now is refused with UNAVAILABLE, fast, and leaves no trace.
    let started = Instant::now();
    let refused = common::submit(ca, rt, issuance, "h-2", "810002", dir).expect_err("no issuance without the HSM");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("HSM"), "{}", refused.message());
    assert!(started.elapsed() < Duration::from_secs(3), "refused in {:?}", started.elapsed());
    let missing = rt.block_on(async { ca.registry(registry).await.get_card(by_application("h-2")).await });
    assert_eq!(missing.expect_err("nothing recorded").code(), Code::NotFound);
    let unresolved = rt.block_on(async {
        ca.registry(registry).await.list_unresolved(reg::ListUnresolvedRequest {}).await.unwrap().into_inner()
    });
    assert!(unresolved.entries.is_empty(), "half-done records: {:?}", unresolved.entries);

    // The card is lost meanwhile: the revocation is recorded, the CRL must wait.
    let out = ca.emergency_revoke(&lost.card_id, revocation);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("revocation is recorded") && text.contains("CRL could not be published"), "{text}");
    // OCSP cannot sign "revoked" now, and must not answer "good" from its cache.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ocsp(ca, responder, lost_sign);
        assert!(!out.contains(": good"), "OCSP called a revoked card good during the outage: {out}");
        if out.to_lowercase().contains("trylater") {
            break;
        }
        assert!(Instant::now() < deadline, "expected tryLater from the responder: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The token comes back: issuance serves again, the refused application goes
/// through, OCSP says revoked and the CRL lists the lost card, unasked.
fn token_back(s: &Scene, lost: &iss::IssuedCard, lost_sign: &Path) -> iss::IssuedCard {
    let Scene { ca, rt, issuance, responder, crl_http, dir, folder, .. } = s;
    folder.restore();
    let back = Instant::now();
    rt.block_on(wait_health(ca, issuance, ServingStatus::Serving, Duration::from_secs(10)));
    say!("issuance SERVING {:?} after the token came back", back.elapsed());

    // The refused application goes through on retry; the card verifies.
    let card = common::submit(ca, rt, issuance, "h-2", "810002", dir).expect("issue after the HSM came back");
    let sign = dir.join("after-sign.pem");
    write_pem(&sign, &card.signing_certificate);
    let (ok, out) = verify_chain(ca, &ca.cert_path("sign-ca.pem"), &sign);
    assert!(ok, "{out}");

    // OCSP now signs "revoked"; the CRL publisher paid what it owed, unasked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ocsp(ca, responder, lost_sign);
        if out.contains("Response verify OK") && out.contains(": revoked") {
            assert!(out.contains("keyCompromise"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "OCSP did not say revoked after the HSM returned: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let serial = lost.signing_serial.to_uppercase();
    let deadline = Instant::now() + Duration::from_secs(20);
    let crl = dir.join("sign.crl.pem");
    loop {
        let (status, _, body) = http_get(crl_http, "/crl/sign.crl");
        assert_eq!(status, 200);
        write_pem_label(&crl, "X509 CRL", &body);
        let (ok, text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"]);
        assert!(ok, "{text}");
        if text.replace(':', "").to_uppercase().contains(&serial) {
            break;
        }
        assert!(Instant::now() < deadline, "the CRL still lacks {serial} after the HSM returned:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    }
    say!("CRL lists the lost card {:?} after the token came back", back.elapsed());

    card
}

fn outage_mid_request(s: &Scene, card: &iss::IssuedCard) {
    let Scene { ca, rt, registry, issuance, dir, folder, .. } = s;
    // A second outage, this time caught mid-request: the token goes away and an
    // application arrives before the watcher (1 s ping) notices. The request fails
    // at its first HSM call (the PIN escrow, then the signatures); what it recorded
    // before is never a signed-but-unrecorded certificate, and whatever it left
    // unresolved (RESERVED, PRECERT) is resolved when the token returns, unasked.
    let mut client = rt.block_on(ca.issuance(issuance)); // connected beforehand: no handshake in the window
    let third = application("h-3", "810003", dir);
    folder.remove();
    let caught = rt.block_on(client.submit_application(third)).expect_err("no issuance without the HSM");
    assert_eq!(caught.code(), Code::Unavailable, "{caught:?}");
    assert!(caught.message().contains("HSM"), "{}", caught.message());
    // A PIN disclosure now is refused before the registry counts it, so the same
    // request id still works once the HSM is back.
    let disclose = |client: &mut IssuanceClient<tonic::transport::Channel>| {
        rt.block_on(
            client.disclose_pin(iss::PinDisclosureRequest {
                request_id: "outage-req-1".into(),
                card_id: card.card_id.clone(),
                confirmation: Some(iss::IdentityConfirmation {
                    confirmed_by: "op-kato".into(),
                    method: iss::ConfirmationMethod::Phone as i32,
                    confirmed_at: (time::OffsetDateTime::now_utc() - time::Duration::minutes(5))
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap(),
                    note: String::new(),
                }),
                ra_operator: "ra-7".into(),
            }),
        )
    };
    let refused_pin = disclose(&mut client).expect_err("no disclosure without the HSM");
    assert_eq!(refused_pin.code(), Code::Unavailable, "{refused_pin:?}");
    let recorded = rt.block_on(async { ca.registry(registry).await.get_card(by_application("h-3")).await });
    let issued = reg::CertificateState::Issued as i32;
    match &recorded {
        Ok(view) => {
            let view = view.get_ref();
            assert_eq!(view.card.as_ref().map(|c| c.state), Some(reg::CardState::Pending as i32), "{view:?}");
            assert!(view.certificates.iter().all(|c| c.state != issued), "nothing signed: {:?}", view.certificates);
            say!("the request was caught mid-way: pending card, {} certificate record(s)", view.certificates.len());
        }
        Err(status) => {
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            say!("the watcher noticed first: nothing recorded");
        }
    }
    folder.restore();
    rt.block_on(wait_health(ca, issuance, ServingStatus::Serving, Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = rt.block_on(async {
            ca.registry(registry).await.list_unresolved(reg::ListUnresolvedRequest {}).await.unwrap().into_inner()
        });
        if left.entries.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left unresolved after the HSM returned: {:?}", left.entries);
        std::thread::sleep(Duration::from_millis(200));
    }
    // UNAVAILABLE means nothing was recorded, so the RA may simply retry: the first
    // call after the return can still fall in the HSM's reconnect back-off.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pin = loop {
        match disclose(&mut client) {
            Ok(d) => break d.into_inner().pin,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("the same disclosure request after the return: {e:?}"),
        }
    };
    assert_eq!(pin, card.generated_pin, "the escrowed PIN of the card issued after the first outage");

    // The RA's retry returns the card either way; its certificates verify.
    let card = common::submit(ca, rt, issuance, "h-3", "810003", dir).expect("retry after the HSM came back");
    let auth = dir.join("h3-auth.pem");
    write_pem(&auth, &card.authentication_certificate);
    let (ok, out) = verify_chain(ca, &ca.cert_path("auth-ca.pem"), &auth);
    assert!(ok, "{out}");
}
