//! A bulk loader for benchmarks and tests: fills the store with many revoked
//! certificates of one issuer quickly, so CRL building can be measured at
//! 10k, 100k and 1M entries without issuing that many real certificates.

use serde_json::json;

use crate::audit::{self, actions, Event};
use crate::error::StoreError;
use crate::feed;
use crate::records::{
    CertificateKind, CertificateRecord, CertificateState, CertificateStatus, Revocation, RevocationReason,
    RevokedEntry, StatusChange,
};
use crate::revocation::{encode_index_value, index_key};
use crate::Store;
use domain::Serial;

/// What `Store::bench_import_revoked` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchImport {
    pub issuer_label: String,
    pub count: u64,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub revoked_at_unix: i64,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchImportReport {
    pub count: u64,
    /// Feed sequences of the first and last REVOKED change written (0 and 0
    /// when `count` is 0).
    pub first_sequence: u64,
    pub last_sequence: u64,
}

/// Certificates per transaction: large enough to amortise the commit, small
/// enough that a transaction's write set stays a few MB.
const CHUNK: u64 = 5_000;

impl Store {
    /// **Benchmark and test aid; never use it on a production database.**
    ///
    /// Writes `count` certificates of `issuer_label` that were issued and then
    /// revoked: random serials, minimal records (no DER, card id "bench",
    /// kind SIGNING, state CERT_REVOKED), each with its REVOKED change on the
    /// status feed (no GOOD change before it) and its entry in the per-issuer
    /// revocation index, exactly as `revoke_certificate` leaves them, so
    /// `revoked_entries`, `feed_after` and `get_certificate` see them like
    /// real revocations. It writes in transactions of 5,000 certificates
    /// with ONE audit entry ("bench.import-revoked") per transaction instead
    /// of one per certificate, flushing after each. In a release build,
    /// 100,000 take about 2.5 s and 200 MB of disk, 1,000,000 40 to 60 s and
    /// 2 GB (sled's log; its page cache, 1 GB by default, also counts in the
    /// process's resident memory). `examples/import_revoked.rs` runs it.
    ///
    /// Safe to run while the store is in use (every batch is an ordinary
    /// transaction), but its audit trail is deliberately thin.
    pub fn bench_import_revoked(&self, spec: &BenchImport) -> Result<BenchImportReport, StoreError> {
        let mut report = BenchImportReport { count: 0, first_sequence: 0, last_sequence: 0 };
        if spec.issuer_label.is_empty() || spec.issuer_label.contains('\0') {
            return Err(StoreError::IssuerLabel {
                issuer_label: spec.issuer_label.clone(),
                reason: "must be non-empty and contain no NUL",
            });
        }
        let mut left = spec.count;
        while left > 0 {
            let n = left.min(CHUNK);
            let (first, last) = self.trees.transact(|tx| {
                let before = feed::last_in_tx(tx)?;
                let at = crate::clock::now_unix_micros();
                let mut sequence = before;
                for _ in 0..n {
                    let serial = loop {
                        let s = Serial::random();
                        if !tx.certificates.contains(s.as_bytes())? {
                            break s;
                        }
                    };
                    sequence += 1;
                    let record = CertificateRecord {
                        serial: serial.clone(),
                        card_id: "bench".into(),
                        kind: CertificateKind::Signing,
                        issuer_label: spec.issuer_label.clone(),
                        state: CertificateState::Revoked,
                        tbs_der: None,
                        certificate_der: None,
                        not_before_unix: spec.not_before_unix,
                        not_after_unix: spec.not_after_unix,
                        reserved_at_unix: spec.not_before_unix,
                        revocation: Some(Revocation {
                            revoked_at_unix: spec.revoked_at_unix,
                            reason: spec.reason,
                            revoked_by: "bench".into(),
                            note: String::new(),
                            sequence,
                            invalidity_date_unix: 0,
                        }),
                    };
                    tx.certificates.put_json(serial.as_bytes(), &record)?;
                    let change = StatusChange {
                        sequence,
                        serial: serial.clone(),
                        issuer_label: spec.issuer_label.clone(),
                        status: CertificateStatus::Revoked,
                        revoked_at_unix: spec.revoked_at_unix,
                        reason: Some(spec.reason),
                        not_after_unix: spec.not_after_unix,
                        card_id: "bench".into(),
                        at_unix_micros: at,
                        invalidity_date_unix: 0,
                    };
                    tx.feed.put_json(&sequence.to_be_bytes(), &change)?;
                    let entry = RevokedEntry {
                        serial: serial.clone(),
                        revoked_at_unix: spec.revoked_at_unix,
                        reason: spec.reason,
                        not_after_unix: spec.not_after_unix,
                        sequence,
                        invalidity_date_unix: 0,
                    };
                    tx.revoked_by_issuer
                        .put_raw(&index_key(&spec.issuer_label, &serial), &encode_index_value(&entry))?;
                }
                tx.meta.put_json(feed::FEED_LAST_KEY, &sequence)?;
                let detail = json!({
                    "count": n,
                    "first_sequence": before + 1,
                    "last_sequence": sequence,
                    "reason": spec.reason,
                    "revoked_at_unix": spec.revoked_at_unix,
                    "not_after_unix": spec.not_after_unix,
                });
                audit::append(
                    tx,
                    &Event {
                        actor: "bench",
                        action: actions::BENCH_IMPORT,
                        subject: &spec.issuer_label,
                        detail_json: detail.to_string(),
                    },
                )?;
                Ok((before + 1, sequence))
            })?;
            feed::flush_and_raise(self, Some(last))?;
            if report.count == 0 {
                report.first_sequence = first;
            }
            report.last_sequence = last;
            report.count += n;
            left -= n;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RevokedQuery;
    use crate::test_support::temp_store;

    #[test]
    fn imported_revocations_look_like_real_ones() {
        let (_dir, store) = temp_store();
        let spec = BenchImport {
            issuer_label: "sign-ca".into(),
            count: 12_345,
            not_before_unix: 1_700_000_000,
            not_after_unix: 4_000_000_000,
            revoked_at_unix: 1_750_000_000,
            reason: RevocationReason::Superseded,
        };
        let report = store.bench_import_revoked(&spec).unwrap();
        assert_eq!(report, BenchImportReport { count: 12_345, first_sequence: 1, last_sequence: 12_345 });
        assert_eq!(store.feed_position(), 12_345);
        let query =
            RevokedQuery { issuer_label: "sign-ca".into(), after_sequence: 0, include_expired: false, at_unix: 0 };
        let entries: Vec<_> = store.revoked_entries(&query).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 12_345);
        assert!(entries.windows(2).all(|w| w[0].serial < w[1].serial), "ordered by serial");
        let record = store.get_certificate(&entries[0].serial).unwrap();
        assert_eq!(record.state, CertificateState::Revoked);
        assert_eq!(record.revocation.unwrap().sequence, entries[0].sequence);
        assert_eq!(store.feed_after(12_340, 100).unwrap().len(), 5);
        assert_eq!(store.verify_audit_chain().unwrap(), 3, "one entry per 5,000");

        // Sequences continue gaplessly with ordinary changes afterwards.
        let more = store.bench_import_revoked(&BenchImport { count: 1, ..spec }).unwrap();
        assert_eq!((more.first_sequence, more.last_sequence), (12_346, 12_346));
    }
}
