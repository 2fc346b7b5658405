//! The index of certified public keys, by SHA-256 of the SubjectPublicKeyInfo
//! DER: a key goes on one card only, ever. A key seen on any card (in any
//! state) is refused on another, so a key whose certificate was revoked for
//! keyCompromise is never certified again either.

use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::application::load_view;
use crate::error::StoreError;
use crate::records::{CardKey, CertificateKind, RevocationReason};
use crate::tx::{fail, Trees, Tx, TxResult};

/// Set in `meta` once every stored certificate's key is in the index.
const INDEXED_KEY: &[u8] = b"key_index_v1";

#[derive(Serialize, Deserialize)]
struct Owner {
    card_id: String,
    kind: CertificateKind,
}

/// Refuses the first of `keys` already certified on a card other than `card_id`.
pub(crate) fn check_unused(tx: &Tx<'_>, keys: &[CardKey], card_id: Option<&str>) -> TxResult<()> {
    for key in keys {
        let Some(owner) = tx.key_owner.get_json::<Owner>(&key.spki_sha256)? else { continue };
        if Some(owner.card_id.as_str()) == card_id {
            continue;
        }
        let view = load_view(tx, &owner.card_id)?;
        let compromised = view.certificates.iter().any(|c| {
            c.kind == owner.kind && c.revocation.as_ref().is_some_and(|r| r.reason == RevocationReason::KeyCompromise)
        });
        return fail(StoreError::KeyInUse { kind: key.kind, card_id: owner.card_id, compromised });
    }
    Ok(())
}

/// Records `keys` as `card_id`'s.
pub(crate) fn index(tx: &Tx<'_>, card_id: &str, keys: &[CardKey]) -> TxResult<()> {
    for key in keys {
        tx.key_owner.put_json(&key.spki_sha256, &Owner { card_id: card_id.to_owned(), kind: key.kind })?;
    }
    Ok(())
}

/// SHA-256 of the SubjectPublicKeyInfo of a TBSCertificate or a certificate.
pub fn spki_sha256_of(der: &[u8]) -> Option<[u8; 32]> {
    let spki = match x509_cert::TbsCertificate::from_der(der) {
        Ok(tbs) => tbs.subject_public_key_info().to_der().ok()?,
        Err(_) => {
            x509_cert::Certificate::from_der(der).ok()?.tbs_certificate().subject_public_key_info().to_der().ok()?
        }
    };
    Some(Sha256::digest(spki).into())
}

/// Once per database: puts the key of every certificate stored before the
/// index existed into it, so old cards' keys are refused too.
pub(crate) fn backfill(trees: &Trees) -> Result<bool, StoreError> {
    if trees.meta.contains_key(INDEXED_KEY)? {
        return Ok(false);
    }
    for item in trees.certificates.iter() {
        let (key, value) = item?;
        let record: crate::records::CertificateRecord = crate::tx::decode("certificates", &key, &value)?;
        if !record.kind.of_card() {
            // A responder certificate's key is on no card.
            continue;
        }
        let Some(der) = record.certificate_der.as_deref().or(record.tbs_der.as_deref()) else { continue };
        let Some(digest) = spki_sha256_of(der) else { continue };
        if !trees.key_owner.contains_key(digest)? {
            let owner = Owner { card_id: record.card_id.clone(), kind: record.kind };
            let bytes =
                serde_json::to_vec(&owner).map_err(|e| crate::tx::corrupt("key_owner", &digest, &e.to_string()))?;
            trees.key_owner.insert(digest, bytes)?;
        }
    }
    trees.meta.insert(INDEXED_KEY, &b"1"[..])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{CardKey, CertificateKind, RevocationReason};
    use crate::test_support::{application, reopened, reserved, revocation, temp_store};
    use crate::Store;

    fn keys(sign: u8, auth: u8) -> Vec<CardKey> {
        vec![
            CardKey { kind: CertificateKind::Signing, spki_sha256: [sign; 32] },
            CardKey { kind: CertificateKind::Authentication, spki_sha256: [auth; 32] },
        ]
    }

    fn begin(store: &Store, app: &str, licence: &str, k: Vec<CardKey>) -> Result<String, StoreError> {
        let a = crate::NewApplication { keys: k, ..application(app, licence) };
        store.begin_application(&a, "JMA").map(|o| o.view.card.card_id)
    }

    #[test]
    fn a_key_goes_on_one_card_only_and_a_replay_is_not_a_reuse() {
        let (_dir, store) = temp_store();
        let first = begin(&store, "app-1", "100001", keys(1, 2)).unwrap();
        assert_eq!(begin(&store, "app-1", "100001", keys(1, 2)).unwrap(), first, "the same application again");
        match begin(&store, "app-2", "100002", keys(1, 3)) {
            Err(StoreError::KeyInUse { kind: CertificateKind::Signing, card_id, compromised: false }) => {
                assert_eq!(card_id, first)
            }
            other => panic!("{other:?}"),
        }
        // Another holder's authentication key reused as a signing key is refused too.
        match begin(&store, "app-3", "100003", keys(2, 4)) {
            Err(StoreError::KeyInUse { kind: CertificateKind::Signing, card_id, .. }) => assert_eq!(card_id, first),
            other => panic!("{other:?}"),
        }
        // Nothing was written for the refused applications: their keys stay free.
        let second = begin(&store, "app-4", "100004", keys(3, 4)).unwrap();
        assert_ne!(second, first);
        let entry = store.list_audit(1, None).unwrap().into_iter().find(|e| e.subject == second).unwrap();
        assert!(entry.detail_json.contains(&hex::encode([3u8; 32])), "{}", entry.detail_json);
    }

    #[test]
    fn a_key_revoked_for_key_compromise_is_named_as_such() {
        let (_dir, store) = temp_store();
        let card = begin(&store, "app-1", "100001", keys(7, 8)).unwrap();
        let rec = reserved(&store, &card, CertificateKind::Signing, "sign-ca", 4_000_000_000);
        store.record_tbs(&rec.serial, b"tbs", None, "t").unwrap();
        store.store_certificate(&rec.serial, b"cert", b"tbs", "t").unwrap();
        store.revoke_certificate(&rec.serial, &revocation(RevocationReason::KeyCompromise)).unwrap();
        let err = begin(&store, "app-2", "100002", keys(7, 9)).unwrap_err();
        assert!(matches!(err, StoreError::KeyInUse { compromised: true, .. }), "{err:?}");
        assert!(err.to_string().contains("revoked for keyCompromise"), "{err}");
    }

    #[test]
    fn keys_of_certificates_stored_before_the_index_are_indexed_on_open() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()]).unwrap().self_signed(&key).unwrap();
        let digest = spki_sha256_of(cert.der()).unwrap();
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key))));
        let (_dir, store, card) = reopened(|store| {
            let card = begin(store, "app-1", "100001", Vec::new()).unwrap();
            let rec = reserved(store, &card, CertificateKind::Signing, "sign-ca", 4_000_000_000);
            store.record_tbs(&rec.serial, b"tbs", None, "t").unwrap();
            store.store_certificate(&rec.serial, cert.der(), b"tbs", "t").unwrap();
            // As a database from before the index: no entry, no marker.
            store.trees.meta.remove(INDEXED_KEY).unwrap();
            store.trees.key_owner.clear().unwrap();
            store.flush().unwrap();
            card
        });
        let k = vec![CardKey { kind: CertificateKind::Authentication, spki_sha256: digest }];
        match begin(&store, "app-2", "100002", k) {
            Err(StoreError::KeyInUse { card_id, .. }) => assert_eq!(card_id, card),
            other => panic!("{other:?}"),
        }
    }
}
