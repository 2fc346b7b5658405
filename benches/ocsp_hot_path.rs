//! The OCSP hot path: decode a request, find the pre-signed response in the
//! cache, return the encoded OCSPResponse. No signature and no I/O happen here;
//! that is the point of the design.
//!
//! `cargo bench -p ocsp --features bench --bench ocsp_hot_path` (needs softhsm2:
//! the 1,000 cached responses are really signed with an RSA-2048 key in SoftHSM).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocsp::bench_support::{get_path, populate};
use ocsp::Step;

const CERTS: usize = 1_000;

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let p = rt.block_on(populate(CERTS, 10, config::KeyAlgorithm::Rsa2048)).expect("populate");
    let hashes: Vec<_> = p.responder.issuers().iter().map(|s| s.hashes.clone()).collect();
    let size = match p.responder.lookup(&p.requests[0]) {
        Step::Done(a) => a.der.len(),
        Step::Work(_) => panic!("not cached"),
    };
    println!("{CERTS} cached responses of {size} bytes (RSA-2048, responder certificate included)");

    let mut group = c.benchmark_group("ocsp_hot_path");
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("decode+lookup+encode (cached)", |b| {
        b.iter(|| {
            i = (i + 1) % CERTS;
            match p.responder.lookup(black_box(&p.requests[i])) {
                Step::Done(a) => black_box(a.der.len()),
                Step::Work(_) => panic!("miss"),
            }
        })
    });

    let mut i = 0;
    group.bench_function("decode only", |b| {
        b.iter(|| {
            i = (i + 1) % CERTS;
            black_box(ocsp::request::parse(black_box(&p.requests[i]), 8, &hashes).map(|r| r.items.len()).ok())
        })
    });

    let paths: Vec<String> = p.requests.iter().map(|r| get_path(r)).collect();
    println!("GET path of a request: {} bytes", paths[0].len());
    group.finish();
    drop(rt);
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
