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
