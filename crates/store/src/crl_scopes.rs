//! The CRL scopes certificates were issued under: the CRL URL of the issuing
//! CA, its partition count and whether deltas were on. A certificate names its
//! distribution point (and freshestCRL) for life, so the CRL publisher keeps
//! publishing every scope a certificate still names, after the config moved on.
//! Kept in `meta` under `crl_scope\0<issuer>\0<url>\0<partitions><delta>`,
//! with the latest notAfter of the certificates recorded under it.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::tx::{decode, fail, Tx, TxResult};
use crate::Store;

const PREFIX: &[u8] = b"crl_scope\0";
/// At most this many partitions in a recorded scope (the publisher refuses more).
pub const MAX_SCOPE_PARTITIONS: u32 = 1024;

/// How a certificate's CRL distribution point was chosen at issuance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlScope {
    /// The issuing CA's full-CRL URL (`[profile] *_crl_url` then).
    pub crl_url: String,
    /// `[profile] crl_partitions` then; 0 = not partitioned.
    pub partitions: u32,
    /// `[profile] delta_crls` then: the certificate names a freshestCRL.
    pub delta_crls: bool,
}

/// A recorded scope of one issuer and the latest notAfter under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlScopeRecord {
    pub issuer_label: String,
    pub scope: CrlScope,
    pub not_after_unix: i64,
}

fn prefix(issuer_label: &str) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(issuer_label.as_bytes());
    key.push(0);
    key
}

fn key(issuer_label: &str, scope: &CrlScope) -> Vec<u8> {
    let mut key = prefix(issuer_label);
    key.extend_from_slice(scope.crl_url.as_bytes());
    key.push(0);
    key.extend_from_slice(&scope.partitions.to_be_bytes());
    key.push(u8::from(scope.delta_crls));
    key
}

/// Checks a scope from a caller before anything is written.
pub(crate) fn check(scope: &CrlScope) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidCrlScope { reason };
    let url = scope.crl_url.as_str();
    if url.is_empty() || url.len() > 2048 || url.contains('\0') || url.chars().any(char::is_control) {
        return Err(bad(format!("crl_url {url:?} is empty, too long or has control characters")));
    }
    if scope.partitions > MAX_SCOPE_PARTITIONS {
        return Err(bad(format!("partitions = {} (at most {MAX_SCOPE_PARTITIONS})", scope.partitions)));
    }
    Ok(())
}

/// Records `scope` for a certificate of `issuer_label` valid until `not_after_unix`.
pub(crate) fn record(tx: &Tx<'_>, issuer_label: &str, scope: &CrlScope, not_after_unix: i64) -> TxResult<()> {
    if let Err(e) = check(scope) {
        return fail(e);
    }
    let key = key(issuer_label, scope);
    let latest = match tx.meta.get_json::<CrlScopeRecord>(&key)? {
        Some(r) if r.not_after_unix >= not_after_unix => return Ok(()),
        _ => not_after_unix,
    };
    let record = CrlScopeRecord { issuer_label: issuer_label.to_owned(), scope: scope.clone(), not_after_unix: latest };
    tx.meta.put_json(&key, &record)
}

impl Store {
    /// Every scope recorded for `issuer_label`, in key order.
    pub fn crl_scopes(&self, issuer_label: &str) -> Result<Vec<CrlScopeRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees.meta.scan_prefix(prefix(issuer_label)) {
            let (key, value) = item?;
            out.push(decode("meta", &key, &value)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::CertificateKind;
    use crate::test_support::{application, reserved, temp_store};

    fn scope(partitions: u32, delta_crls: bool) -> CrlScope {
        CrlScope { crl_url: "http://h/crl/sign.crl".into(), partitions, delta_crls }
    }

    #[test]
    fn each_scope_keeps_the_latest_not_after_per_issuer() {
        let (_dir, store) = temp_store();
        let card = store.begin_application(&application("app-1", "100001"), "JMA").unwrap().view.card.card_id;
        let record = |kind, label: &str, not_after, s: &CrlScope| {
            let rec = reserved(&store, &card, kind, label, not_after);
            store.record_tbs(&rec.serial, b"tbs", Some(s), "t").unwrap();
        };
        record(CertificateKind::Signing, "sign-ca", 2_000_000_000, &scope(0, false));
        record(CertificateKind::Authentication, "sign-ca", 1_900_000_000, &scope(0, false));
        let scopes = store.crl_scopes("sign-ca").unwrap();
        assert_eq!(scopes.len(), 1);
        assert_eq!((scopes[0].scope.clone(), scopes[0].not_after_unix), (scope(0, false), 2_000_000_000));
        assert!(store.crl_scopes("auth-ca").unwrap().is_empty());
        assert!(store.crl_scopes("sign").unwrap().is_empty(), "a label is not a prefix of another");

        let card2 = store.begin_application(&application("app-2", "100002"), "JMA").unwrap().view.card.card_id;
        let rec = reserved(&store, &card2, CertificateKind::Signing, "sign-ca", 2_100_000_000);
        store.record_tbs(&rec.serial, b"tbs-2", Some(&scope(4, true)), "t").unwrap();
        let scopes: Vec<_> =
            store.crl_scopes("sign-ca").unwrap().into_iter().map(|r| (r.scope, r.not_after_unix)).collect();
        assert_eq!(scopes, [(scope(0, false), 2_000_000_000), (scope(4, true), 2_100_000_000)]);
    }

    #[test]
    fn a_bad_scope_is_refused_and_nothing_is_recorded() {
        let (_dir, store) = temp_store();
        let card = store.begin_application(&application("app-1", "100001"), "JMA").unwrap().view.card.card_id;
        let rec = reserved(&store, &card, CertificateKind::Signing, "sign-ca", 2_000_000_000);
        for bad in [CrlScope { crl_url: String::new(), ..scope(0, false) }, scope(MAX_SCOPE_PARTITIONS + 1, false)] {
            let err = store.record_tbs(&rec.serial, b"tbs", Some(&bad), "t").unwrap_err();
            assert!(matches!(err, StoreError::InvalidCrlScope { .. }), "{err:?}");
        }
        assert!(store.get_certificate(&rec.serial).unwrap().tbs_der.is_none());
        assert!(store.crl_scopes("sign-ca").unwrap().is_empty());
    }
}
