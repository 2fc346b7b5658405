//! The publisher against an in-memory registry and the SoftHSM token.

use std::sync::Arc;

use hsm::KeyAlgorithm;
use proto::registry::v1::RevocationReason;

use crate::published::{CrlKind, CrlStore};
use crate::publisher::{served_urls, Issuer, Publisher};
use crate::source::memory::MemorySource;
use crate::testutil::{keep, openssl, openssl_crl_text, pem, test_pki, TestPki};

fn publisher(pki: &TestPki, cfg: &config::Config) -> Publisher<MemorySource> {
    publisher_with(pki, cfg, MemorySource::default())
}

fn publisher_with(pki: &TestPki, cfg: &config::Config, source: MemorySource) -> Publisher<MemorySource> {
    let store = CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &served_urls(cfg).unwrap()).unwrap();
    Publisher::new(cfg, source, Arc::new(store), pki.sign.clone(), pki.auth.clone()).unwrap()
}

/// A publisher (with delta CRLs on if `deltas`) after its first publication:
/// full CRLs of both CAs. Its configuration and itself.
async fn first_published(pki: &TestPki, deltas: bool) -> (config::Config, Arc<Publisher<MemorySource>>) {
    let mut cfg = pki.cfg.clone();
    if deltas {
        cfg.profile.delta_crls = true;
    }
    let p = Arc::new(publisher(pki, &cfg));
    p.publish(None, None).await.unwrap();
    (cfg, p)
}

fn out_file(cfg: &config::Config, name: &str) -> std::path::PathBuf {
    cfg.state_path(&cfg.crl.out_dir).join(name)
}

#[tokio::test]
async fn full_crls_for_both_cas_with_increasing_numbers() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let cfg = pki.cfg.clone();
    let p = publisher(&pki, &cfg);
    assert_eq!(p.due(time::OffsetDateTime::now_utc()).len(), 2);
    let sign_label = &cfg.ca.signing.key_label;
    p.source().revoke(sign_label, "1001", RevocationReason::KeyCompromise);
    p.source().revoke(sign_label, "1002", RevocationReason::Superseded);
    p.source().revoke(&cfg.ca.authentication.key_label, "2001", RevocationReason::CessationOfOperation);

    let infos = p.publish(None, None).await.unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(
        (infos[0].issuer.as_str(), infos[0].kind, infos[0].crl_number, infos[0].entries),
        ("signing", CrlKind::Full, 1, 2)
    );
    assert_eq!((infos[1].issuer.as_str(), infos[1].crl_number, infos[1].entries), ("authentication", 1, 1));
    assert!(p.due(time::OffsetDateTime::now_utc()).is_empty());

    pki.write_chain(&pki.path("chain.pem"));
    keep("plain", &[&out_file(&cfg, "sign.crl")]);
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    assert!(text.contains("Serial Number: 1001") && text.contains("Serial Number: 1002"), "{text}");
    let text = openssl_crl_text(&out_file(&cfg, "auth.crl"), &pki.path("chain.pem"));
    assert!(text.contains("Serial Number: 2001") && text.contains("Cessation Of Operation"), "{text}");

    let again = p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].crl_number, 2);
    let err = p.publish(None, Some(CrlKind::Delta)).await.unwrap_err();
    assert!(matches!(err, crate::CrlError::FailedPrecondition(_)), "{err}");
}

#[tokio::test]
async fn deltas_list_only_revocations_after_the_base_and_survive_a_restart() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let mut cfg = pki.cfg.clone();
    cfg.profile.delta_crls = true;
    let profile_cfg = cfg.profile.clone();
    let early = [0x40, 0x01];
    let late = [0x40, 0x02];
    let good = [0x40, 0x03];
    for (name, serial) in [("early.pem", &early[..]), ("late.pem", &late), ("good.pem", &good)] {
        let der = pki.issue(&profile_cfg, profile::CertKind::Signing, serial);
        std::fs::write(pki.path(name), pem("CERTIFICATE", &der)).unwrap();
    }
    let label = cfg.ca.signing.key_label.clone();
    let p = publisher(&pki, &cfg);
    p.source().revoke(&label, "4001", RevocationReason::KeyCompromise);
    let infos = p.publish(Some(Issuer::Signing), None).await.unwrap();
    // No base yet: a full CRL, then a delta on top of it.
    let kinds: Vec<(CrlKind, u64, u64, u64)> =
        infos.iter().map(|i| (i.kind, i.crl_number, i.base_crl_number, i.entries)).collect();
    assert_eq!(kinds, [(CrlKind::Full, 1, 0, 1), (CrlKind::Delta, 2, 1, 0)]);
    assert!(p.due(time::OffsetDateTime::now_utc()).iter().all(|(i, _)| *i == Issuer::Authentication));

    // Restart: a new store and publisher over the same folder find the base;
    // the registry (and its CRL numbers) carries on.
    p.source().revoke(&label, "4002", RevocationReason::KeyCompromise);
    let p = publisher_with(&pki, &cfg, p.into_source());
    let infos = p.publish(Some(Issuer::Signing), None).await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (infos[0].kind, infos[0].crl_number, infos[0].base_crl_number, infos[0].entries),
        (CrlKind::Delta, 3, 1, 1)
    );

    pki.write_chain(&pki.path("chain.pem"));
    let delta = out_file(&cfg, "sign-delta.crl");
    let text = openssl_crl_text(&delta, &pki.path("chain.pem"));
    assert!(text.contains("X509v3 Delta CRL Indicator: critical") && text.contains("Serial Number: 4002"), "{text}");
    assert!(!text.contains("Serial Number: 4001"), "{text}");
    let full = out_file(&cfg, "sign.crl");
    keep("deltas", &[&full, &delta]);
    let text = openssl_crl_text(&full, &pki.path("chain.pem"));
    assert!(text.contains("X509v3 Freshest CRL"), "{text}");

    let bundle = pki.path("crls.pem");
    let crl_pem = |f: &std::path::Path| pem("X509 CRL", &std::fs::read(f).unwrap());
    std::fs::write(&bundle, crl_pem(&full) + &crl_pem(&delta)).unwrap();
    let verify = |cert: &str| {
        openssl(&[
            "verify",
            "-crl_check",
            "-use_deltas",
            "-extended_crl",
            "-CRLfile",
            bundle.to_str().unwrap(),
            "-CAfile",
            pki.path("chain.pem").to_str().unwrap(),
            pki.path(cert).to_str().unwrap(),
        ])
    };
    // early = 0x4001: listed in the full CRL; late = 0x4002: only in the delta.
    let (ok, out) = verify("early.pem");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify("late.pem");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify("good.pem");
    assert!(ok, "{out}");
}

#[tokio::test]
async fn partitions_split_entries_and_carry_their_distribution_point() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let mut cfg = pki.cfg.clone();
    cfg.profile.delta_crls = true;
    cfg.profile.crl_partitions = 3;
    let p = publisher(&pki, &cfg);
    let label = cfg.ca.signing.key_label.clone();
    for i in 1..=30u32 {
        p.source().revoke(&label, &format!("{:04x}", 0x5000 + i), RevocationReason::KeyCompromise);
    }
    let infos = p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    let full: Vec<_> = infos.iter().filter(|i| i.kind == CrlKind::Full).collect();
    let deltas: Vec<_> = infos.iter().filter(|i| i.kind == CrlKind::Delta).collect();
    assert_eq!(full.len(), 3);
    assert_eq!(deltas.len(), 3);
    assert_eq!(full.iter().map(|i| i.entries).sum::<u64>(), 30);
    assert!(full.iter().all(|i| i.entries == 10), "{full:?}");
    assert!(
        full.iter().all(|i| i.crl_number == 1) && deltas.iter().all(|i| i.crl_number == 2 && i.base_crl_number == 1)
    );
    pki.write_chain(&pki.path("chain.pem"));
    keep("partitions", &[&out_file(&cfg, "sign-p1.crl"), &out_file(&cfg, "sign-p1-delta.crl")]);
    for part in 1..=3 {
        let text = openssl_crl_text(&out_file(&cfg, &format!("sign-p{part}.crl")), &pki.path("chain.pem"));
        assert!(text.contains("X509v3 Issuing Distribution Point: critical"), "{text}");
        assert!(text.contains(&format!("URI:http://127.0.0.1:8081/crl/sign-p{part}.crl")), "{text}");
        assert!(text.contains(&format!("URI:http://127.0.0.1:8081/crl/sign-p{part}-delta.crl")), "{text}");
        assert!(text.contains("Only User Certificates"), "{text}");
        let text = openssl_crl_text(&out_file(&cfg, &format!("sign-p{part}-delta.crl")), &pki.path("chain.pem"));
        assert!(text.contains("X509v3 Delta CRL Indicator: critical"), "{text}");
        assert!(text.contains(&format!("URI:http://127.0.0.1:8081/crl/sign-p{part}.crl")), "{text}");
        // Every serial in partition `part` is one whose partition is `part`.
        for line in text.lines().filter(|l| l.contains("Serial Number:")) {
            let hex = line.rsplit(' ').next().unwrap();
            assert_eq!(profile::crl_partition(&hex::decode(hex).unwrap(), 3), part, "{line}");
        }
    }
}

#[tokio::test]
async fn files_of_an_older_scope_stay_published_after_the_config_changes() {
    use crate::layout::{RecordedScope, Scope};
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let mut cfg = pki.cfg.clone();
    // Today: two partitions, no deltas. Earlier certificates were issued
    // unpartitioned with deltas, and one batch under three partitions that
    // expired long ago (past the 30 days of retention).
    cfg.profile.crl_partitions = 2;
    cfg.crl.expired_retention_days = 30;
    let label = cfg.ca.signing.key_label.clone();
    let source = MemorySource::default();
    let base = cfg.profile.signing_crl_url.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let scope = |partitions, deltas, not_after_unix| RecordedScope {
        scope: Scope { crl_url: base.clone(), partitions, deltas },
        not_after_unix,
    };
    source.record_scope(&label, scope(0, true, now + 86_400 * 365));
    source.record_scope(&label, scope(3, false, now - 86_400 * 60));
    for i in 1..=10u32 {
        source.revoke(&label, &format!("{:04x}", 0x6000 + i), RevocationReason::KeyCompromise);
    }
    let p = publisher_with(&pki, &cfg, source);
    let infos = p.publish(Some(Issuer::Signing), None).await.unwrap();
    let urls: Vec<(&str, CrlKind, u64)> = infos.iter().map(|i| (i.url.as_str(), i.kind, i.entries)).collect();
    // The two partitions get their share, the old whole CRL gets every entry
    // and keeps its delta, and the expired three-partition files are gone.
    let (p1, p2) = (urls[0].2, urls[1].2);
    assert_eq!(p1 + p2, 10, "{urls:?}");
    assert_eq!(
        urls,
        [
            ("http://127.0.0.1:8081/crl/sign-p1.crl", CrlKind::Full, p1),
            ("http://127.0.0.1:8081/crl/sign-p2.crl", CrlKind::Full, p2),
            ("http://127.0.0.1:8081/crl/sign.crl", CrlKind::Full, 10),
            ("http://127.0.0.1:8081/crl/sign-delta.crl", CrlKind::Delta, 0),
        ]
    );
    pki.write_chain(&pki.path("chain.pem"));
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    assert!(text.contains("Freshest CRL") && text.contains("sign-delta.crl"), "{text}");
    let text = openssl_crl_text(&out_file(&cfg, "sign-p1.crl"), &pki.path("chain.pem"));
    assert!(!text.contains("Freshest CRL"), "{text}");
    assert!(!out_file(&cfg, "sign-p3.crl").exists());
    // Served now, and again after a restart, before any new publication.
    assert!(p.store().get("/crl/sign.crl").unwrap().is_some());
    let store = CrlStore::open(cfg.state_path(&cfg.crl.out_dir), &served_urls(&cfg).unwrap()).unwrap();
    assert!(store.get("/crl/sign-delta.crl").unwrap().is_some());
    // A delta now goes to the old scope only; nothing of this CA is due.
    assert!(!p.due(time::OffsetDateTime::now_utc()).iter().any(|(i, _)| *i == Issuer::Signing));
    let delta = p.publish(Some(Issuer::Signing), Some(CrlKind::Delta)).await.unwrap();
    assert_eq!(delta.iter().map(|i| i.url.as_str()).collect::<Vec<_>>(), ["http://127.0.0.1:8081/crl/sign-delta.crl"]);
}

#[tokio::test]
async fn concurrent_publications_are_serialised_per_ca() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let (cfg, p) = first_published(&pki, true).await;
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        let p = p.clone();
        let label = cfg.ca.signing.key_label.clone();
        tasks.push(tokio::spawn(async move {
            p.source().revoke(&label, &format!("{:04x}", 0x6000 + i), RevocationReason::KeyCompromise);
            p.publish(Some(Issuer::Signing), None).await.unwrap()
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.extend(t.await.unwrap().into_iter().map(|i| i.crl_number));
    }
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 6, "{numbers:?}");
    // The delta served last holds every revocation since the base.
    let latest = p.store().latest();
    let delta = latest.iter().find(|i| i.url.ends_with("sign-delta.crl")).unwrap();
    assert_eq!(delta.entries, 6);
    assert_eq!(delta.crl_number, *numbers.last().unwrap());
}

#[tokio::test]
async fn registry_failures_are_errors_and_nothing_is_written() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let cfg = pki.cfg.clone();
    let p = publisher(&pki, &cfg);
    p.source().set_failing(true);
    let err = p.publish(None, None).await.unwrap_err();
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);
    assert!(!out_file(&cfg, "sign.crl").exists());
    // A bad serial from the registry is refused, not panicked on.
    p.source().set_failing(false);
    p.source().revoke(&cfg.ca.signing.key_label, "not-hex", RevocationReason::KeyCompromise);
    let err = p.publish(Some(Issuer::Signing), None).await.unwrap_err();
    assert!(matches!(err, crate::CrlError::BadEntry(_)), "{err}");
}

#[tokio::test]
async fn a_failed_publication_is_owed_until_one_succeeds() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let (_, p) = first_published(&pki, false).await;
    let now = time::OffsetDateTime::now_utc();
    assert!(p.due(now).is_empty(), "fresh CRLs: nothing due");
    // An emergency revocation's publication fails (registry or HSM down).
    p.source().set_failing(true);
    p.publish(Some(Issuer::Signing), None).await.unwrap_err();
    assert_eq!(p.due(now), vec![(Issuer::Signing, CrlKind::Full)], "the failed publication is owed");
    // The schedule is woken at once rather than at its next tick.
    tokio::time::timeout(std::time::Duration::from_secs(1), p.owed()).await.expect("owed() wakes");
    p.source().set_failing(false);
    p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    assert!(p.due(now).is_empty(), "paid: nothing due");
}

#[tokio::test]
async fn the_schedule_retries_an_owed_publication_soon_after_the_failure_ends() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let (_, p) = first_published(&pki, false).await;
    let before = p.store().latest().iter().map(|i| i.crl_number).max().unwrap();
    p.source().set_failing(true);
    p.publish(Some(Issuer::Signing), None).await.unwrap_err();
    // A schedule that would otherwise look only once an hour.
    let ticks = crate::schedule::Ticks {
        check: std::time::Duration::from_secs(3600),
        retry: std::time::Duration::from_millis(200),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(crate::schedule::run(p.clone(), ticks, stop));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    p.source().set_failing(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while p.due(time::OffsetDateTime::now_utc()).contains(&(Issuer::Signing, CrlKind::Full)) {
        assert!(std::time::Instant::now() < deadline, "owed publication not retried");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = p.store().latest().iter().map(|i| i.crl_number).max().unwrap();
    assert!(after > before, "a new CRL was published: {before} -> {after}");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// The full CRL served at `url` once its number reaches `crl_number`.
async fn wait_for_full(p: &Publisher<MemorySource>, url: &str, crl_number: u64) -> crate::CrlInfo {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(info) = p.store().by_url(url).and_then(|f| f.info.clone()) {
            if info.crl_number >= crl_number {
                return info;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no full CRL {crl_number} at {url}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_urgent_delta_is_followed_by_a_full_crl_under_the_reserved_number() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    pki.write_chain(&pki.path("chain.pem"));
    let (cfg, p) = first_published(&pki, true).await;
    let label = cfg.ca.signing.key_label.clone();
    let full_url = cfg.profile.signing_crl_url.clone();
    let base = p.store().by_url(&full_url).unwrap().info.clone().unwrap();
    p.source().revoke(&label, "5001", RevocationReason::KeyCompromise);

    let urgent = p.publish_urgent(Some(Issuer::Signing), None).await.unwrap();
    let delta: Vec<(CrlKind, u64, u64)> = urgent.crls.iter().map(|i| (i.kind, i.base_crl_number, i.entries)).collect();
    assert_eq!(delta, [(CrlKind::Delta, base.crl_number, 1)]);
    let reserved = urgent.following.clone();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].issuer, Issuer::Signing);
    assert!(reserved[0].crl_number > urgent.crls[0].crl_number, "{reserved:?}");
    // One runtime thread: the full CRL has not started, so the delta listing
    // the card is what is served first.
    let text = openssl_crl_text(&out_file(&cfg, "sign-delta.crl"), &pki.path("chain.pem"));
    assert!(text.contains("Serial Number: 5001") && text.contains("Delta CRL Indicator"), "{text}");
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    assert!(!text.contains("Serial Number: 5001"), "{text}");

    // Then the full CRL, under the reserved number, listing the card, and a
    // delta on top of it; nothing is owed.
    let full = wait_for_full(&p, &full_url, reserved[0].crl_number).await;
    assert_eq!((full.kind, full.crl_number, full.entries), (CrlKind::Full, reserved[0].crl_number, 1));
    // Waits for the CA's lock, so for the background delta on top of the full.
    let delta = p.publish(Some(Issuer::Signing), Some(CrlKind::Delta)).await.unwrap();
    assert_eq!((delta[0].base_crl_number, delta[0].entries), (reserved[0].crl_number, 0));
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    assert!(text.contains("Serial Number: 5001") && text.contains("Key Compromise"), "{text}");
    assert!(p.due(time::OffsetDateTime::now_utc()).is_empty());

    // The CA stays locked from the delta to the end of the full CRL: a
    // publication asked for meanwhile comes after it.
    p.source().revoke(&label, "5002", RevocationReason::KeyCompromise);
    let urgent = p.publish_urgent(Some(Issuer::Signing), None).await.unwrap();
    let next = p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    assert!(next[0].crl_number > urgent.following[0].crl_number, "{next:?} after {:?}", urgent.following);
}

#[tokio::test]
async fn a_failed_full_crl_after_an_urgent_delta_is_owed_and_without_deltas_nothing_follows() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let (cfg, p) = first_published(&pki, true).await;
    p.source().revoke(&cfg.ca.authentication.key_label, "6001", RevocationReason::KeyCompromise);
    let urgent = p.publish_urgent(None, Some(CrlKind::Delta)).await.unwrap();
    let kinds: Vec<(&str, CrlKind)> = urgent.crls.iter().map(|i| (i.issuer.as_str(), i.kind)).collect();
    assert_eq!(kinds, [("signing", CrlKind::Delta), ("authentication", CrlKind::Delta)]);
    let issuers: Vec<Issuer> = urgent.following.iter().map(|f| f.issuer).collect();
    assert_eq!(issuers, Issuer::ALL);
    // The registry goes away before the full CRLs start (one runtime thread).
    p.source().set_failing(true);
    tokio::time::timeout(std::time::Duration::from_secs(5), p.owed()).await.expect("owed() wakes the schedule");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while p.due(time::OffsetDateTime::now_utc()).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", p.due(time::OffsetDateTime::now_utc()));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        p.due(time::OffsetDateTime::now_utc()),
        [(Issuer::Signing, CrlKind::Full), (Issuer::Authentication, CrlKind::Full)]
    );

    // Without deltas the CRL published at once is full: nothing follows.
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let p = Arc::new(publisher(&pki, &pki.cfg));
    let urgent = p.publish_urgent(Some(Issuer::Authentication), None).await.unwrap();
    assert_eq!(urgent.crls.len(), 1);
    assert_eq!(urgent.crls[0].kind, CrlKind::Full);
    assert!(urgent.following.is_empty());
    let err = p.publish_urgent(None, Some(CrlKind::Delta)).await.unwrap_err();
    assert!(matches!(err, crate::CrlError::FailedPrecondition(_)), "{err}");
}

/// RFC 5280 3.3 and long-term signature validation: by default a revoked
/// certificate stays listed after it expires, and the CRL says so with
/// ExpiredCertsOnCRL; with `expired_retention_days` it leaves that many days
/// after expiry, and the extension is absent.
#[tokio::test]
async fn expired_revoked_certificates_stay_listed_by_default_or_for_the_configured_days() {
    let pki = test_pki(KeyAlgorithm::EcdsaP256);
    let label = pki.cfg.ca.signing.key_label.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let day = 86_400;
    let fill = |source: &MemorySource| {
        source.revoke_expiring(&label, "3001", RevocationReason::KeyCompromise, now - 400 * day);
        source.revoke_expiring(&label, "3002", RevocationReason::KeyCompromise, now - 5 * day);
        source.revoke_expiring(&label, "3003", RevocationReason::KeyCompromise, now + 365 * day);
    };
    pki.write_chain(&pki.path("chain.pem"));

    let cfg = pki.cfg.clone();
    assert_eq!(cfg.crl.expired_retention_days, 0, "the default keeps expired entries");
    let p = publisher(&pki, &cfg);
    fill(p.source());
    p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    keep("expired-kept", &[&out_file(&cfg, "sign.crl")]);
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    for serial in ["3001", "3002", "3003"] {
        assert!(text.contains(&format!("Serial Number: {serial}")), "{serial}: {text}");
    }
    assert!(text.contains("2.5.29.60"), "ExpiredCertsOnCRL: {text}");

    let mut cfg = pki.cfg.clone();
    cfg.crl.expired_retention_days = 30;
    cfg.crl.out_dir = "crl-retained".into();
    let p = publisher(&pki, &cfg);
    fill(p.source());
    p.publish(Some(Issuer::Signing), Some(CrlKind::Full)).await.unwrap();
    let text = openssl_crl_text(&out_file(&cfg, "sign.crl"), &pki.path("chain.pem"));
    assert!(!text.contains("Serial Number: 3001"), "expired 400 days ago: gone after 30: {text}");
    assert!(text.contains("Serial Number: 3002") && text.contains("Serial Number: 3003"), "{text}");
    assert!(!text.contains("2.5.29.60"), "{text}");

    // A retention shorter than the publication interval could skip the CRL after expiry.
    cfg.crl.expired_retention_days = 1;
    cfg.crl.interval_minutes = 2 * 24 * 60;
    let err = crate::publisher::Settings::from_config(&cfg).unwrap_err().to_string();
    assert!(err.contains("crl.expired_retention_days = 1"), "{err}");
}
