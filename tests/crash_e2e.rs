//! Crash safety, end to end: a client issues cards (distinct licences) and
//! revokes some while the registry or the issuance process is SIGKILLed at
//! seeded random moments and restarted on the same state folder and port.
//! Clients retry each application with its application_id until it succeeds.
//! Afterwards: every certificate a client received is in the registry, no
//! serial appears twice, nothing is left RESERVED or PRECERT once issuance has
//! restarted, CRL numbers only grew, and the audit chain verifies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{openssl_csr, Ca, BIN};
use proto::issuance::v1 as iss;
use proto::issuance::v1::issuance_client::IssuanceClient;
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;
use proto::revocation::v1::revocation_client::RevocationClient;

const SEED: u64 = 0x5eed_c0de_2026;
const KILLS: u32 = 10;
/// The whole kill phase ends by then, whatever happened.
const KILL_PHASE: Duration = Duration::from_secs(60);
/// One application may take this long, retries included.
const PER_CARD: Duration = Duration::from_secs(60);

/// xorshift64*: enough randomness for kill timing, and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A free loopback port: bound, read, released (the services bind it with SO_REUSEADDR).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child killed when dropped: a failing test leaves no process behind (an
/// orphan holding the output pipe would keep `make test` waiting for ever).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// Starts `hpki-ca <args>` and waits until it announces `service`.
fn start(config: &Path, args: &[&str], service: &str) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn,issuance::recovery=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hpki-ca");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            kill(&mut child);
            panic!("{args:?} did not announce {service}");
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [name, "listening", "on", addr, ..] = words.as_slice() {
            if *name == service {
                return (Proc(child), (*addr).to_owned());
            }
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// Card `i`'s application: the shared member application, numbered.
fn application(i: u32, signing_csr: &[u8], authentication_csr: &[u8]) -> iss::NewCardApplication {
    common::application_with_csrs(
        &format!("crash-{i}"),
        &format!("{}", 700_000 + i),
        signing_csr.to_vec(),
        authentication_csr.to_vec(),
    )
}

/// What the client got back for one card.
#[derive(Debug, Clone)]
struct Received {
    licence: String,
    card_id: String,
    certs: Vec<(String, Vec<u8>)>,
}

/// Retries `f` (a gRPC call) until it succeeds or `within` has passed; counts the retries.
async fn retry<T, F, Fut>(what: &str, within: Duration, retries: &Mutex<u32>, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Internal
                            | tonic::Code::Unknown
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                    ),
                    "{what}: unexpected {e:?}"
                );
                assert!(start.elapsed() < within, "{what}: no success within {within:?}; last error {e:?}");
                *retries.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a crash in the middle of issuance leaves behind, made on purpose:
/// one card with a RESERVED signing serial, and one card whose two
/// certificates are PRECERT (the recorded bytes are a real issued TBS with the
/// serial swapped, so the issuing CA can sign them). Returns the RESERVED
/// serial, its card and the PRECERT card.
async fn stage_leftovers(ca: &Ca, reg_addr: &str, seed: &iss::IssuedCard) -> (String, String, String) {
    let mut registry = ca.registry(reg_addr).await;
    let view = registry
        .get_card(reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(seed.card_id.clone())) })
        .await
        .expect("GetCard seed")
        .into_inner();
    let holder = view.holder.clone().expect("holder");
    let begin = |application_id: &str, licence: &str| {
        let req = reg::BeginApplicationRequest {
            application_id: application_id.into(),
            holder: Some(reg::Holder { holder_id: String::new(), licence_number: licence.into(), ..holder.clone() }),
            application_json: "{}".into(),
            actor: "crash-test".into(),
            procedure: String::new(),
            replaces_card_id: String::new(),
            keys: Vec::new(),
        };
        let mut registry = registry.clone();
        async move {
            registry.begin_application(req).await.expect("BeginApplication").into_inner().card.expect("card").card_id
        }
    };
    let reserved_card = begin("crash-left-reserved", "690001").await;
    let precert_card = begin("crash-left-precert", "690002").await;
    let reserve = |card_id: &str, cert: &reg::CertificateRecord| reg::ReserveSerialRequest {
        card_id: card_id.into(),
        kind: cert.kind,
        issuer_label: cert.issuer_label.clone(),
        not_before_unix: cert.not_before_unix,
        not_after_unix: cert.not_after_unix,
    };
    let reserved = registry
        .reserve_serial(reserve(&reserved_card, &view.certificates[0]))
        .await
        .expect("reserve")
        .into_inner()
        .serial;
    for cert in &view.certificates {
        let serial = registry.reserve_serial(reserve(&precert_card, cert)).await.expect("reserve").into_inner().serial;
        let tbs_der = common::with_serial(&cert.tbs_der, &cert.serial, &serial);
        registry.record_tbs(reg::RecordTbsRequest { serial, tbs_der, crl_scope: None }).await.expect("RecordTbs");
    }
    let left =
        registry.list_unresolved(reg::ListUnresolvedRequest {}).await.expect("ListUnresolved").into_inner().entries;
    assert_eq!(left.len(), 3, "one RESERVED and two PRECERT staged: {left:?}");
    (reserved, reserved_card, precert_card)
}

fn publish_crl_numbers(ca: &Ca, crl: &str) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let out = ca.cli(&["publish-crl", "--url", &ca.url(crl)]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            let numbers: Vec<u64> = text
                .lines()
                .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "number").nth(1).and_then(|n| n.parse().ok()))
                .collect();
            assert_eq!(numbers.len(), 2, "one CRL per issuing CA: {text}");
            return numbers;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "publish-crl: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigkilled_registry_and_issuance_lose_nothing_and_leave_nothing_half_done() {
    crash_run(Ca::new(""));
}

/// The same on PostgreSQL: the registry process is killed, the database is not.
#[test]
fn on_postgres_sigkilled_registry_and_issuance_lose_nothing_and_leave_nothing_half_done() {
    let Some(pg) = store::testing::PgCluster::start(&[]) else { return };
    let url = pg.url(store::testing::USER);
    crash_run(Ca::new(&format!("[store]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n")));
}

/// What the client thread shares with the test.
#[derive(Clone, Default)]
struct Shared {
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    revoked: Arc<Mutex<Vec<String>>>,
    retries: Arc<Mutex<u32>>,
}

/// The client: one application after another, every third card's signing
/// certificate revoked, until told to stop (or a bound is reached).
fn start_client(
    ca: &Ca,
    iss_addr: &str,
    rev_addr: &str,
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    shared: &Shared,
) -> std::thread::JoinHandle<()> {
    let Shared { stop, received, revoked, retries } = shared.clone();
    // As a real RA system and operator would: ra for issuance, operator for revocation.
    let iss_endpoint = ca.endpoint(iss_addr, "ra").timeout(Duration::from_secs(20));
    let rev_endpoint = ca.endpoint(rev_addr, "operator").timeout(Duration::from_secs(20));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let iss_ch = iss_endpoint.connect_lazy();
            let rev_ch = rev_endpoint.connect_lazy();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) && i < 400 {
                let (sign, auth) = &keys[i as usize];
                let app = application(i, sign, auth);
                let card = retry(&format!("application {i}"), PER_CARD, &retries, || {
                    let mut c = IssuanceClient::new(iss_ch.clone());
                    let app = app.clone();
                    async move { c.submit_application(app).await.map(|r| r.into_inner()) }
                })
                .await;
                let licence = format!("{}", 700_000 + i);
                if i % 3 == 2 {
                    let serial = card.signing_serial.clone();
                    retry(&format!("revoke {serial}"), PER_CARD, &retries, || {
                        let mut c = RevocationClient::new(rev_ch.clone());
                        let req = rev::RevokeCertificateRequest {
                            serial: serial.clone(),
                            reason: reg::RevocationReason::CessationOfOperation as i32,
                            // The identity of the operator certificate (or empty).
                            operator: "operator".into(),
                            note: "crash test".into(),
                            revoked_at: String::new(),
                            compromised_at: String::new(),
                        };
                        async move { c.revoke_certificate(req).await }
                    })
                    .await;
                    revoked.lock().unwrap().push(serial);
                }
                received.lock().unwrap().push(Received {
                    licence,
                    card_id: card.card_id.clone(),
                    certs: vec![
                        (card.signing_serial.clone(), card.signing_certificate.clone()),
                        (card.authentication_serial.clone(), card.authentication_certificate.clone()),
                    ],
                });
                i += 1;
            }
        });
    })
}

type Registry = proto::registry::v1::registry_client::RegistryClient<tonic::transport::Channel>;

/// Waits until issuance's recovery has resolved every RESERVED and PRECERT record.
async fn wait_until_resolved(registry_client: &mut Registry) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = registry_client
            .list_unresolved(reg::ListUnresolvedRequest {})
            .await
            .expect("ListUnresolved")
            .into_inner()
            .entries;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still unresolved after the restart: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The staged leftovers: the RESERVED serial abandoned and its card's slot
/// freed; the PRECERT certificates signed and stored, their card completed.
/// The serials recovery stored.
async fn check_staged_leftovers(
    registry_client: &mut Registry,
    left_reserved: &str,
    left_reserved_card: &str,
    left_precert_card: &str,
) -> BTreeSet<String> {
    let mut seen_all = BTreeSet::new();
    let rec = registry_client
        .get_certificate(reg::GetCertificateRequest { serial: left_reserved.to_owned() })
        .await
        .expect("GetCertificate")
        .into_inner();
    assert_eq!(rec.state, reg::CertificateState::Abandoned as i32, "{rec:?}");
    let card_of =
        |card_id: &str| reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(card_id.to_owned())) };
    let view = registry_client.get_card(card_of(left_reserved_card)).await.expect("GetCard").into_inner();
    assert_eq!(view.card.as_ref().expect("card").signing_serial, "", "slot freed");
    assert!(view.certificates.is_empty(), "{view:?}");
    let view = registry_client.get_card(card_of(left_precert_card)).await.expect("GetCard").into_inner();
    assert_eq!(view.card.as_ref().expect("card").state, reg::CardState::Active as i32, "{view:?}");
    assert_eq!(view.certificates.len(), 2);
    for cert in &view.certificates {
        assert_eq!(cert.state, reg::CertificateState::Issued as i32, "{cert:?}");
        assert!(cert.certificate_der.windows(cert.tbs_der.len()).any(|w| w == cert.tbs_der.as_slice()));
        assert!(seen_all.insert(cert.serial.clone()));
    }

    seen_all
}

/// Every certificate a client received is stored, byte for byte, in the state it should be.
async fn check_received_stored(registry_client: &mut Registry, received: &[Received], revoked: &BTreeSet<String>) {
    for card in received {
        for (serial, der) in &card.certs {
            let rec = registry_client
                .get_certificate(reg::GetCertificateRequest { serial: serial.clone() })
                .await
                .expect("GetCertificate")
                .into_inner();
            assert_eq!(&rec.certificate_der, der, "certificate {serial} of card {}", card.card_id);
            assert_eq!(rec.card_id, card.card_id);
            let want = if revoked.contains(serial) {
                reg::CertificateState::CertRevoked
            } else {
                reg::CertificateState::Issued
            };
            assert_eq!(rec.state, want as i32, "state of {serial}");
        }
    }
}

/// One card per licence, and no serial twice across all cards: every serial seen.
async fn check_one_card_per_licence(
    registry_client: &mut Registry,
    received: &[Received],
    seen_all: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut seen = seen_all.clone();
    for card in received {
        let list = registry_client
            .list_holder_cards(reg::ListHolderCardsRequest {
                key: Some(reg::list_holder_cards_request::Key::LicenceNumber(card.licence.clone())),
            })
            .await
            .expect("ListHolderCards")
            .into_inner();
        assert_eq!(list.cards.len(), 1, "one card for licence {}: {list:?}", card.licence);
        let view = &list.cards[0];
        let c = view.card.as_ref().expect("card");
        assert_eq!(c.card_id, card.card_id);
        assert_eq!(c.state, reg::CardState::Active as i32, "card {} is complete", c.card_id);
        assert_eq!(view.certificates.len(), 2);
        for cert in &view.certificates {
            assert!(seen.insert(cert.serial.clone()), "serial {} appears twice", cert.serial);
        }
    }

    seen
}

/// The audit log: each serial reserved once and stored at most once, every
/// serial seen stored, and recovery's abandonment recorded.
async fn check_audit_reservations(auditor: &mut Registry, seen: &BTreeSet<String>) {
    let mut reserved = BTreeSet::new();
    let mut stored = BTreeSet::new();
    let mut abandoned = 0;
    let mut from = 1;
    loop {
        let page = auditor
            .list_audit(reg::ListAuditRequest { from_sequence: from, limit: 1000, newest_first: false })
            .await
            .expect("ListAudit")
            .into_inner()
            .entries;
        let Some(last) = page.last() else { break };
        from = last.sequence + 1;
        for e in page {
            match e.action.as_str() {
                "serial.reserve" => {
                    assert!(reserved.insert(e.subject.clone()), "serial {} reserved twice", e.subject)
                }
                "certificate.store" => {
                    assert!(stored.insert(e.subject.clone()), "serial {} stored twice", e.subject)
                }
                "serial.abandon" => abandoned += 1,
                _ => {}
            }
        }
    }
    for serial in seen {
        assert!(stored.contains(serial), "no audit entry stores {serial}");
    }
    assert!(abandoned >= 1, "the staged RESERVED serial was abandoned");
    println!("audit: {} serials reserved, {} stored, {abandoned} abandoned by recovery", reserved.len(), stored.len());
}

fn crash_run(ca: Ca) {
    let config = ca.config.clone();
    let (reg_port, iss_port, rev_port, crl_port) = (free_port(), free_port(), free_port(), free_port());
    let reg_addr = format!("127.0.0.1:{reg_port}");
    let iss_addr = format!("127.0.0.1:{iss_port}");
    let rev_addr = format!("127.0.0.1:{rev_port}");
    let crl_addr = format!("127.0.0.1:{crl_port}");
    let reg_url = ca.url(&reg_addr);
    let crl_url = ca.url(&crl_addr);
    let registry_args = ["registry", "--listen", reg_addr.as_str()];
    let issuance_args = ["issuance", "--listen", iss_addr.as_str(), "--registry-url", reg_url.as_str()];

    let (mut registry, _) = start(&config, &registry_args, "registry");
    let (mut issuance, _) = start(&config, &issuance_args, "issuance");
    let (mut crl, _) = start(
        &config,
        &["crl", "--listen", &crl_addr, "--http-listen", "127.0.0.1:0", "--registry-url", &reg_url],
        "crl",
    );
    let (mut revocation, _) = start(
        &config,
        &["revocation", "--listen", &rev_addr, "--registry-url", &reg_url, "--crl-url", &crl_url],
        "revocation",
    );
    let mut crl_numbers = vec![publish_crl_numbers(&ca, &crl_addr)];

    let work = ca.dir.path().to_owned();
    let signing_csr = openssl_csr(&work, "sign", "rsa:2048");
    let authentication_csr = openssl_csr(&work, "auth", "ec");
    // Every card after the seed has keys of its own: a key goes on one card only.
    let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..400).map(|_| common::fresh_csrs()).collect();

    // A crash's leftovers, staged, then a kill of issuance: its recovery resolves them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed = rt.block_on(async {
        ca.issuance(&iss_addr)
            .await
            .submit_application(application(9000, &signing_csr, &authentication_csr))
            .await
            .expect("seed card")
            .into_inner()
    });
    let (left_reserved, left_reserved_card, left_precert_card) = rt.block_on(stage_leftovers(&ca, &reg_addr, &seed));
    kill(&mut issuance.0);
    issuance = start(&config, &issuance_args, "issuance").0;
    let staged_kills = 1;

    // The client: one application after another, every third card's signing
    // certificate revoked, until told to stop (or a bound is reached).
    let shared = Shared::default();
    shared.received.lock().unwrap().push(Received {
        licence: "709000".into(),
        card_id: seed.card_id.clone(),
        certs: vec![
            (seed.signing_serial.clone(), seed.signing_certificate.clone()),
            (seed.authentication_serial.clone(), seed.authentication_certificate.clone()),
        ],
    });
    let client = start_client(&ca, &iss_addr, &rev_addr, keys, &shared);

    // The killer: seeded random pauses, then SIGKILL one of the two and restart it.
    let mut rng = Rng(SEED);
    let began = Instant::now();
    let mut kills = staged_kills;
    let mut victims = BTreeMap::<&str, u32>::new();
    while kills < KILLS + staged_kills && began.elapsed() < KILL_PHASE && !client.is_finished() {
        std::thread::sleep(Duration::from_millis(200 + rng.below(1800)));
        if rng.below(2) == 0 {
            kill(&mut registry.0);
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            registry = start(&config, &registry_args, "registry").0;
            *victims.entry("registry").or_default() += 1;
            crl_numbers.push(publish_crl_numbers(&ca, &crl_addr));
        } else {
            kill(&mut issuance.0);
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            issuance = start(&config, &issuance_args, "issuance").0;
            *victims.entry("issuance").or_default() += 1;
        }
        kills += 1;
    }
    // Let the client finish the application in hand on a healthy system.
    std::thread::sleep(Duration::from_millis(500));
    shared.stop.store(true, Ordering::SeqCst);
    client.join().expect("client thread");
    let received = shared.received.lock().unwrap().clone();
    let revoked: BTreeSet<String> = shared.revoked.lock().unwrap().iter().cloned().collect();
    let retries = *shared.retries.lock().unwrap();
    // Straight to stderr, past libtest's capture, so `make test` and CI show it.
    let _ = writeln!(
        std::io::stderr(),
        "crash_e2e: survived {kills} kills ({staged_kills} after staged leftovers, then {victims:?}) in {:.1?}: {} cards issued, {} revoked, {retries} client retries",
        began.elapsed(),
        received.len(),
        revoked.len()
    );
    assert!(kills >= 5, "only {kills} kills happened");
    assert!(received.len() >= 3, "too few cards issued: {}", received.len());

    // Restart issuance once more: its recovery resolves whatever is left.
    kill(&mut issuance.0);
    issuance = start(&config, &issuance_args, "issuance").0;
    rt.block_on(async {
        let mut registry_client = ca.registry(&reg_addr).await;
        let mut auditor = ca.audit_reader(&reg_addr).await;
        wait_until_resolved(&mut registry_client).await;
        let seen_all =
            check_staged_leftovers(&mut registry_client, &left_reserved, &left_reserved_card, &left_precert_card).await;
        check_received_stored(&mut registry_client, &received, &revoked).await;
        let seen = check_one_card_per_licence(&mut registry_client, &received, &seen_all).await;
        check_audit_reservations(&mut auditor, &seen).await;
    });

    // CRL numbers only grew, across every registry restart.
    crl_numbers.push(publish_crl_numbers(&ca, &crl_addr));
    for pair in crl_numbers.windows(2) {
        for (a, b) in pair[0].iter().zip(&pair[1]) {
            assert!(b > a, "CRL numbers must grow: {crl_numbers:?}");
        }
    }

    // The audit chain verifies on the database itself.
    kill(&mut issuance.0);
    kill(&mut revocation.0);
    kill(&mut crl.0);
    kill(&mut registry.0);
    let cfg = config::Config::load(&ca.config).expect("the test's config");
    let location = registry::store_location(&cfg).expect("[store]");
    let store = store::Store::open_at(&location).expect("open the registry database");
    let entries = store.verify_audit_chain().expect("audit chain verifies");
    // Each card is several entries (begin, reservations, records, stores, completion).
    assert!(entries as usize > 4 * received.len(), "the audit chain has only {entries} entries");
    println!("audit chain of {entries} entries verifies");
}
