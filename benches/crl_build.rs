//! Time and peak memory to build and sign a CRL with 10k, 100k and 1M
//! entries, the entries arriving as the registry streams them (hex serials,
//! reasons) and the TBSCertList signed by an RSA-2048 key in SoftHSM.
//!
//! `cargo bench --bench crl_build` (needs softhsm2). Prints criterion's timings,
//! then a table of time and peak heap per size and how both grow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::registry::v1::{RevocationReason, RevokedEntry};
use time::OffsetDateTime;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

/// The i-th entry as the registry streams it: a 16-octet positive serial in hex.
fn registry_entry(i: u64) -> RevokedEntry {
    let mut serial = [0u8; 16];
    let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    serial[..8].copy_from_slice(&mixed.to_be_bytes());
    serial[8..].copy_from_slice(&i.to_be_bytes());
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let reason = match i % 4 {
        0 => RevocationReason::KeyCompromise,
        1 => RevocationReason::Superseded,
        2 => RevocationReason::CessationOfOperation,
        _ => RevocationReason::AffiliationChanged,
    };
    RevokedEntry {
        serial: hex::encode(serial),
        revoked_at_unix: 1_700_000_000 + i as i64,
        reason: reason as i32,
        not_after_unix: 1_900_000_000,
        sequence: i + 1,
    }
}

struct Fixture {
    key: hsm::HsmKey,
    spec: crl::CrlSpec,
}

fn fixture() -> Fixture {
    let key = hsm::testing::shared_hsm()
        .generate_key_pair(&hsm::testing::unique_label("bench-ca"), hsm::KeyAlgorithm::Rsa { bits: 2048 })
        .expect("SoftHSM key");
    // A plausible issuer Name: SEQUENCE { SET { SEQUENCE { C=JP } } ... }.
    let issuer = vec![
        0x30, 0x1d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'J', b'P', 0x31, 0x0e, 0x30,
        0x0c, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x05, b'H', b'P', b'K', b'I', b'!',
    ];
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("time");
    let spec = crl::CrlSpec {
        issuer,
        authority_key_identifier: vec![0x42; 20],
        this_update: now,
        next_update: now + time::Duration::hours(48),
        crl_number: 1,
        delta_crl_indicator: None,
        issuing_distribution_point: None,
        freshest_crl: None,
    };
    Fixture { key, spec }
}

/// Streams `n` registry entries into the encoder, then signs: what one full
/// CRL publication costs apart from the network. `hint` sizes the buffer up
/// front, as the publisher does from the previous CRL's entry count.
fn build(f: &Fixture, n: u64, hint: bool) -> crl::SignedCrl {
    let expected = if hint { n as usize } else { 0 };
    let mut encoder = crl::CrlEncoder::with_capacity(&f.spec, crl::CrlSigner::signature_algorithm(&f.key), expected)
        .expect("encoder");
    for i in 0..n {
        let entry = crl::CrlEntry::from_registry(&registry_entry(i)).expect("entry");
        encoder.push(&entry).expect("push");
    }
    encoder.finish(&f.key).expect("sign")
}

fn bench_build(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("crl_build");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| b.iter(|| black_box(build(&f, n, true))));
    }
    group.finish();
    report(&f);
}

/// One more run per size outside criterion: best-of-3 time and peak heap,
/// with the buffer sized from a hint (as the publisher does) and without.
fn report(f: &Fixture) {
    let mut rows = Vec::new();
    for n in SIZES {
        let mut best = Duration::MAX;
        let mut peaks = [0usize; 2];
        let mut size = 0;
        for (slot, hint) in [(0, true), (1, false)] {
            for _ in 0..3 {
                let base = LIVE.load(Ordering::Relaxed);
                PEAK.store(base, Ordering::Relaxed);
                let start = Instant::now();
                let crl = build(f, n, hint);
                if hint {
                    best = best.min(start.elapsed());
                }
                peaks[slot] = peaks[slot].max(PEAK.load(Ordering::Relaxed) - base);
                size = crl.der.len();
                drop(black_box(crl));
            }
        }
        rows.push((n, best, peaks, size));
    }
    println!("\nCRL build + sign (RSA-2048 in SoftHSM), entries streamed as the registry sends them:");
    println!(
        "{:>10} {:>10} {:>10} {:>16} {:>16} {:>10}",
        "entries", "time", "ns/entry", "peak heap (hint)", "peak (no hint)", "CRL size"
    );
    for (n, t, peaks, size) in &rows {
        println!(
            "{:>10} {:>8.1}ms {:>10.0} {:>14.1}MB {:>14.1}MB {:>8.1}MB",
            n,
            t.as_secs_f64() * 1e3,
            t.as_nanos() as f64 / *n as f64,
            peaks[0] as f64 / 1e6,
            peaks[1] as f64 / 1e6,
            *size as f64 / 1e6
        );
    }
    for w in rows.windows(2) {
        let ((n0, t0, p0, _), (n1, t1, p1, _)) = (w[0], w[1]);
        println!(
            "{}k -> {}k entries (x{}): time x{:.1}, peak heap x{:.1} (no hint x{:.1})",
            n0 / 1000,
            n1 / 1000,
            n1 / n0,
            t1.as_secs_f64() / t0.as_secs_f64(),
            p1[0] as f64 / p0[0] as f64,
            p1[1] as f64 / p0[1] as f64
        );
    }
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
