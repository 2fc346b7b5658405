//! The registry on PostgreSQL (issue 14), against real throwaway clusters
//! (`store::testing`):
//!
//! - two registry processes on one database, issuing and revoking through
//!   both at once: no serial twice, CRL numbers without gap or reuse, one
//!   audit chain that verifies, and each registry's feed showing the other's
//!   changes;
//! - a primary with a synchronous standby, SIGKILLed under load and the
//!   standby promoted: every acknowledged card and revocation is still
//!   there, and the OCSP responder answers from the feed after the failover.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{application_with_csrs, fresh_csrs, write_pem, Ca};
use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;
use reg::registry_client::RegistryClient;
use store::testing::{PgCluster, USER};
use tonic::transport::Channel;

fn postgres_config(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\npostgres_pool_size = 8\n")
}

async fn registry_as(ca: &Ca, addr: &str, role: &str) -> RegistryClient<Channel> {
    RegistryClient::new(ca.grpc(addr, role).await.expect("connect to the registry"))
}

async fn issue(ca: &Ca, issuance: &str, id: &str, licence: &str) -> Result<iss::IssuedCard, tonic::Status> {
    let (s, a) = fresh_csrs();
    let mut client = ca.issuance(issuance).await;
    client.submit_application(application_with_csrs(id, licence, s, a)).await.map(|r| r.into_inner())
}

fn revoke_card(card_id: &str) -> reg::RevokeCardRequest {
    reg::RevokeCardRequest {
        card_id: card_id.into(),
        reason: reg::RevocationReason::KeyCompromise as i32,
        actor: "op-sato".into(),
        note: "postgres_e2e".into(),
        ..Default::default()
    }
}

#[test]
fn two_registries_on_one_database_share_serials_crl_numbers_feed_and_audit_chain() {
    let Some(pg) = PgCluster::start(&[]) else { return };
    let mut ca = Ca::new(&postgres_config(&pg.url(USER)));
    let a = ca.spawn(&["run"], &["registry", "issuance"]);
    let (reg_a, iss_a) = (a[0].clone(), a[1].clone());
    // A second registry process on the same database, and an issuance service recording through it.
    let reg_b = ca.spawn(&["registry"], &["registry"]).remove(0);
    let iss_b = ca.spawn(&["issuance", "--registry-url", &ca.url(&reg_b)], &["issuance"]).remove(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    const CARDS: usize = 16;
    const NUMBERS: usize = 20;

    rt.block_on(async {
        // Issue through both at once.
        let issued = futures_join(
            (0..CARDS)
                .map(|i| {
                    let (ca, via) = (&ca, if i % 2 == 0 { iss_a.clone() } else { iss_b.clone() });
                    async move {
                        issue(ca, &via, &format!("pg-two-{i}"), &format!("86{i:04}"))
                            .await
                            .unwrap_or_else(|e| panic!("card {i} through {via}: {e:?}"))
                    }
                })
                .collect(),
        )
        .await;
        let serials: BTreeSet<&str> =
            issued.iter().flat_map(|c| [c.signing_serial.as_str(), c.authentication_serial.as_str()]).collect();
        assert_eq!(serials.len(), 2 * CARDS, "a serial was given twice");

        // Revoke through both, and take CRL numbers from both, all at once.
        let revocations = futures_join(
            issued
                .iter()
                .enumerate()
                .map(|(i, card)| {
                    let (ca, via) = (&ca, if i % 2 == 0 { reg_b.clone() } else { reg_a.clone() });
                    async move {
                        let mut r = registry_as(ca, &via, "revocation").await;
                        r.revoke_card(revoke_card(&card.card_id)).await.expect("RevokeCard").into_inner()
                    }
                })
                .collect(),
        );
        let numbers = futures_join(
            (0..NUMBERS)
                .map(|i| {
                    let (ca, via) = (&ca, if i % 2 == 0 { reg_a.clone() } else { reg_b.clone() });
                    async move {
                        let mut r = registry_as(ca, &via, "crl").await;
                        let req = reg::NextCrlNumberRequest { scope: "pgtest".into() };
                        r.next_crl_number(req).await.expect("NextCrlNumber").into_inner().crl_number
                    }
                })
                .collect(),
        );
        let (revoked, mut numbers) = tokio::join!(revocations, numbers);
        assert_eq!(revoked.len(), CARDS);
        numbers.sort_unstable();
        let expected: Vec<u64> = (numbers[0]..numbers[0] + NUMBERS as u64).collect();
        assert_eq!(numbers, expected, "CRL numbers with a gap or taken twice");

        // Each registry's feed shows every change, whichever registry made it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (pos_a, pos_b) = loop {
            let mut ra = registry_as(&ca, &reg_a, "ocsp").await;
            let mut rb = registry_as(&ca, &reg_b, "ocsp").await;
            let pa = ra.get_feed_position(reg::FeedPositionRequest {}).await.unwrap().into_inner().last_sequence;
            let pb = rb.get_feed_position(reg::FeedPositionRequest {}).await.unwrap().into_inner().last_sequence;
            // Each card: two GOOD when stored, two REVOKED.
            if (pa == pb && pa >= 4 * CARDS as u64) || Instant::now() > deadline {
                break (pa, pb);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(pos_a, pos_b, "the registries' feeds disagree");
        for via in [&reg_a, &reg_b] {
            let mut r = registry_as(&ca, via, "ocsp").await;
            let mut stream = r.watch_status(reg::WatchStatusRequest { after_sequence: 0 }).await.unwrap().into_inner();
            let mut revoked_serials = BTreeSet::new();
            let mut sequences = Vec::new();
            while sequences.len() < pos_a as usize {
                let change = tokio::time::timeout(Duration::from_secs(5), stream.message())
                    .await
                    .expect("the feed stalled")
                    .expect("feed")
                    .expect("feed ended");
                sequences.push(change.sequence);
                if change.status == reg::CertificateStatus::Revoked as i32 {
                    revoked_serials.insert(change.serial.clone());
                }
            }
            let gapless: Vec<u64> = (1..=pos_a).collect();
            assert_eq!(sequences, gapless, "feed of {via}");
            let wanted: BTreeSet<String> = serials.iter().map(|s| s.to_string()).collect();
            assert_eq!(revoked_serials, wanted, "revocations in the feed of {via}");
        }
    });

    // One audit chain, verified through each registry.
    for via in [&reg_a, &reg_b] {
        let out = ca.cli(&["audit", "verify", "--url", &ca.url(via), "--without-record"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "audit verify via {via}: {text}");
    }
    // The records are rows in PostgreSQL, readable through the views.
    let (ok, count) = pg.psql(USER, "SELECT count(*) FROM certificates WHERE record->>'state' = 'REVOKED'");
    assert!(ok, "{count}");
    let (ok, distinct) = pg.psql(USER, "SELECT count(DISTINCT serial) = count(*) FROM certificates");
    assert!(ok && distinct == "t", "{distinct}");
    println!("PostgreSQL view: {count} revoked certificates");
}

/// Runs futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::with_capacity(futures.len());
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out = Vec::with_capacity(set.len());
    // join_all without the futures crate: poll them together.
    let results = std::future::poll_fn(|cx| {
        let mut pending = false;
        if out.is_empty() {
            out.resize_with(set.len(), || None);
        }
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(std::mem::take(&mut out))
        }
    })
    .await;
    results.into_iter().map(|v| v.expect("every future finished")).collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Revocation {
    NotAsked,
    /// Asked, but the answer was an error: it may or may not have been made.
    Unanswered,
    Acknowledged,
}

/// What a client was told succeeded, to look for after the failover.
#[derive(Default)]
struct Acknowledged {
    /// card id -> (signing serial, its revocation)
    cards: HashMap<String, (String, Revocation)>,
    /// the signing certificate (DER) of each card, for OCSP
    certs: HashMap<String, Vec<u8>>,
    /// cards whose revocation was acknowledged after the failover
    revoked_after_failover: Vec<String>,
}

#[test]
fn a_primary_killed_under_load_loses_no_acknowledged_write() {
    let t0 = Instant::now();
    let Some(primary) = PgCluster::start(&[]) else { return };
    let standby = PgCluster::standby_of(&primary, "standby1");
    // Synchronous from now on: a commit returns once the standby has it.
    for sql in ["ALTER SYSTEM SET synchronous_standby_names = 'standby1'", "SELECT pg_reload_conf()"] {
        let (ok, text) = primary.psql(USER, sql);
        assert!(ok, "{sql}: {text}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, state) = primary.psql(USER, "SELECT sync_state FROM pg_stat_replication");
        if state == "sync" {
            break;
        }
        assert!(Instant::now() < deadline, "the standby did not become synchronous: {state:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!(
        "host={},{} port=5432,5432 user={USER} dbname={USER} target_session_attrs=read-write connect_timeout=2",
        primary.socket_dir().display(),
        standby.socket_dir().display()
    );
    eprintln!("[{:?}] clusters up", t0.elapsed());
    let mut ca = Ca::new(&postgres_config(&url));
    eprintln!("[{:?}] ceremony done", t0.elapsed());
    let core = ca.spawn(&["run"], &["registry", "issuance", "ocsp"]);
    eprintln!("[{:?}] CA up", t0.elapsed());
    let (reg_addr, iss_addr, ocsp_addr) = (core[0].clone(), core[1].clone(), core[2].clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut primary = primary;
    const CLIENTS: usize = 4;

    let (acked_before, acked_total, outage) = rt.block_on(async {
        let stop_at = Arc::new(Mutex::new(None::<Instant>));
        let failover_at = Arc::new(Mutex::new(None::<Instant>));
        let first_after = Arc::new(Mutex::new(None::<Instant>));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (ca, acked, stop_at, failover_at, first_after) =
                (&ca, acked.clone(), stop_at.clone(), failover_at.clone(), first_after.clone());
            let (iss_addr, reg_addr) = (iss_addr.clone(), reg_addr.clone());
            tasks.push(async move {
                let mut n = 0;
                loop {
                    if stop_at.lock().unwrap().is_some_and(|t| Instant::now() > t) {
                        return;
                    }
                    n += 1;
                    let id = format!("pg-fo-{c}-{n}");
                    let licence = format!("87{c}{n:04}");
                    // A client retries the same application until it is answered (idempotent).
                    let card = loop {
                        match issue(ca, &iss_addr, &id, &licence).await {
                            Ok(card) => break card,
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                        if stop_at.lock().unwrap().is_some_and(|t| Instant::now() > t + Duration::from_secs(20)) {
                            panic!("{id} never issued after the failover");
                        }
                    };
                    note_first_after(&failover_at, &first_after);
                    acked
                        .lock()
                        .unwrap()
                        .cards
                        .insert(card.card_id.clone(), (card.signing_serial.clone(), Revocation::NotAsked));
                    acked.lock().unwrap().certs.insert(card.card_id.clone(), card.signing_certificate.clone());
                    if n % 2 == 0 {
                        let mut r = registry_as(ca, &reg_addr, "revocation").await;
                        let answer = r.revoke_card(revoke_card(&card.card_id)).await;
                        let mut acked = acked.lock().unwrap();
                        let entry = &mut acked.cards.get_mut(&card.card_id).expect("issued").1;
                        if answer.is_ok() {
                            note_first_after(&failover_at, &first_after);
                            *entry = Revocation::Acknowledged;
                            if failover_at.lock().unwrap().is_some() {
                                acked.revoked_after_failover.push(card.card_id.clone());
                            }
                        } else {
                            *entry = Revocation::Unanswered;
                        }
                    }
                }
            });
        }
        let driver = async {
            // Load before the kill.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before = acked.lock().unwrap().cards.len();
            primary.kill();
            let killed = Instant::now();
            standby.promote();
            *failover_at.lock().unwrap() = Some(killed);
            *stop_at.lock().unwrap() = Some(Instant::now() + Duration::from_secs(4));
            before
        };
        let (before, _) = tokio::join!(driver, futures_join(tasks));
        let outage = first_after.lock().unwrap().zip(*failover_at.lock().unwrap()).map(|(a, k)| a - k);
        (before, acked.lock().unwrap().cards.len(), outage)
    });
    eprintln!("[{:?}] load done", t0.elapsed());
    let outage = outage.expect("no write succeeded after the failover");
    assert!(acked_before > 0, "nothing was acknowledged before the kill");
    assert!(acked_total > acked_before, "nothing was acknowledged after the failover");

    // Every acknowledged card and revocation is on the promoted standby.
    let acked = acked.lock().unwrap();
    let mut lost = Vec::new();
    let mut revocations = 0;
    rt.block_on(async {
        let mut r = registry_as(&ca, &reg_addr, "revocation").await;
        for (card_id, (serial, revocation)) in &acked.cards {
            let req = reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(card_id.clone())) };
            let Ok(found) = r.get_card(req).await.map(|r| r.into_inner()) else {
                lost.push(format!("card {card_id}"));
                continue;
            };
            let cert = found.certificates.iter().find(|c| &c.serial == serial);
            let state = cert.map(|c| c.state);
            let (issued, revoked) = (reg::CertificateState::Issued as i32, reg::CertificateState::CertRevoked as i32);
            let fine = match revocation {
                Revocation::NotAsked => state == Some(issued),
                Revocation::Unanswered => state == Some(issued) || state == Some(revoked),
                Revocation::Acknowledged => {
                    revocations += 1;
                    state == Some(revoked)
                }
            };
            if !fine {
                lost.push(format!("card {card_id}: certificate {serial} is {state:?}, revocation {revocation:?}"));
            }
        }
    });
    println!(
        "failover: {} cards acknowledged ({acked_before} before the kill), {revocations} revocations acknowledged, \
         {} lost; service returned {outage:?} after the SIGKILL",
        acked.cards.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    eprintln!("[{:?}] checked", t0.elapsed());
    // The responder follows the feed across the failover: a card revoked after it answers `revoked`.
    let card_id = acked.revoked_after_failover.last().expect("a revocation acknowledged after the failover");
    let pem = ca.dir.path().join("fo-last.pem");
    write_pem(&pem, &acked.certs[card_id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = common::ocsp_query(&ca, &ocsp_addr, "sign-ca.pem", &pem, &[]);
        if text.contains(": revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "OCSP does not show {card_id} revoked: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn note_first_after(failover_at: &Mutex<Option<Instant>>, first_after: &Mutex<Option<Instant>>) {
    if failover_at.lock().unwrap().is_some() {
        first_after.lock().unwrap().get_or_insert_with(Instant::now);
    }
}
