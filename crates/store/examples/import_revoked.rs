//! Fills a store with revoked certificates for benchmarks and manual tests:
//!
//!     cargo run --release -p store --example import_revoked -- DB_DIR ISSUER_LABEL COUNT
//!
//! then lists them back once and prints how long each step took.

use std::time::Instant;

use store::{BenchImport, RevocationReason, RevokedQuery, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, label, count] = args.as_slice() else {
        return Err("usage: import_revoked DB_DIR ISSUER_LABEL COUNT".into());
    };
    let count: u64 = count.parse()?;
    let store = Store::open(std::path::Path::new(dir))?;

    let started = Instant::now();
    let report = store.bench_import_revoked(&BenchImport {
        issuer_label: label.clone(),
        count,
        not_before_unix: 1_767_193_200,
        not_after_unix: 1_924_959_599,
        revoked_at_unix: 1_780_000_000,
        reason: RevocationReason::KeyCompromise,
    })?;
    println!(
        "imported {} (feed {}..={}) in {:.1?}",
        report.count,
        report.first_sequence,
        report.last_sequence,
        started.elapsed()
    );

    let started = Instant::now();
    let query = RevokedQuery { issuer_label: label.clone(), after_sequence: 0, include_expired: false, at_unix: 0 };
    let mut listed = 0u64;
    for entry in store.revoked_entries(&query)? {
        entry?;
        listed += 1;
    }
    println!("listed {listed} in {:.1?}", started.elapsed());

    let started = Instant::now();
    let delta = RevokedQuery { after_sequence: report.last_sequence.saturating_sub(10), ..query };
    let n = store.revoked_entries(&delta)?.count();
    println!("delta of {n} in {:.1?}", started.elapsed());
    Ok(())
}
