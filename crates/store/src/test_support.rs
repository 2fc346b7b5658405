//! Fixtures shared by the unit tests.

pub use crate::fixtures::application;
use crate::Store;

/// A fresh store on the backend `HPKI_TEST_STORE` names: sled (the
/// default) or `postgres` (a new database in this process's throwaway
/// cluster), so the same tests are the conformance suite of both.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_at(&location(&dir)).unwrap();
    (dir, store)
}

/// What survives a reopen: a store at a fresh `location` that `fill` writes to,
/// closed and opened again. Returns the reopened store with `fill`'s answer.
pub fn reopened<T>(fill: impl FnOnce(&Store) -> T) -> (tempfile::TempDir, Store, T) {
    let dir = tempfile::tempdir().unwrap();
    let path = location(&dir);
    let filled = {
        let store = Store::open_at(&path).unwrap();
        fill(&store)
    };
    let store = Store::open_at(&path).unwrap();
    (dir, store, filled)
}

/// Where `temp_store` puts a store: reopen it with `Store::open_at`.
pub fn location(dir: &tempfile::TempDir) -> crate::Location {
    match std::env::var("HPKI_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let url = crate::testing::shared_database().expect("PostgreSQL for HPKI_TEST_STORE=postgres");
            crate::Location::Postgres { url, password: None, pool_size: 4 }
        }
        Ok("sled") | Err(_) => {
            crate::Location::Sled { path: dir.path().join("db"), cache_bytes: crate::DEFAULT_SLED_CACHE_BYTES }
        }
        Ok(other) => panic!("HPKI_TEST_STORE={other}: sled or postgres"),
    }
}

/// A card with both certificates reserved, recorded and stored (stand-in
/// bytes) under `issuer_label`, valid until `not_after_unix`; returns the
/// card id and the serials (signing, authentication).
pub fn issued_card(
    store: &Store,
    application_id: &str,
    licence_number: &str,
    issuer_label: &str,
    not_after_unix: i64,
) -> (String, Vec<crate::Serial>) {
    let card_id =
        store.begin_application(&application(application_id, licence_number), "JMA").unwrap().view.card.card_id;
    let mut serials = Vec::new();
    for kind in crate::CertificateKind::ALL {
        let rec = reserved(store, &card_id, kind, issuer_label, not_after_unix);
        let tbs = [b"tbs-".as_slice(), rec.serial.as_bytes()].concat();
        store.record_tbs(&rec.serial, &tbs, None, "t").unwrap();
        store.store_certificate(&rec.serial, b"cert", &tbs, "t").unwrap();
        serials.push(rec.serial);
    }
    (card_id, serials)
}

pub fn reserved(
    store: &Store,
    card_id: &str,
    kind: crate::CertificateKind,
    issuer_label: &str,
    not_after_unix: i64,
) -> crate::CertificateRecord {
    let req = crate::Reservation {
        card_id: card_id.into(),
        kind,
        issuer_label: issuer_label.into(),
        not_before_unix: 1_700_000_000,
        not_after_unix,
    };
    store.reserve_serial(&req, "t").unwrap()
}

pub fn revocation(reason: crate::RevocationReason) -> crate::RevocationRequest {
    crate::RevocationRequest {
        reason,
        revoked_at_unix: 0,
        actor: "op-alice".into(),
        note: "reported lost by phone".into(),
        invalidity_date_unix: 0,
    }
}

/// A card certificate for `prepare_card`, its TBS "tbs-" + the serial.
pub fn prepared(kind: crate::CertificateKind, serial: &crate::Serial) -> crate::PreparedCertificate {
    crate::PreparedCertificate {
        kind,
        serial: serial.clone(),
        issuer_label: "sign-ca".into(),
        not_before_unix: 1_700_000_000,
        not_after_unix: 1_857_000_000,
        tbs_der: [b"tbs-".as_slice(), serial.as_bytes()].concat(),
        scope: None,
    }
}

/// The signed certificate of `prepared(.., serial)` for `finish_card`.
pub fn signed(serial: &crate::Serial) -> crate::SignedCertificate {
    crate::SignedCertificate {
        serial: serial.clone(),
        certificate_der: [b"cert-".as_slice(), serial.as_bytes()].concat(),
        tbs_of_cert: [b"tbs-".as_slice(), serial.as_bytes()].concat(),
    }
}
