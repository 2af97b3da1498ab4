//! Measures what a collector adds to acknowledging a state change: building, encoding and
//! signing one receipt with an ECDSA P-256 key, the key `killswitch certs` issues.
//!
//! ```text
//! cargo bench -p killswitch-sdk --features bench --bench receipt -- --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use killswitch_sdk::ReceiptSealer;

/// One receipt of a pause, sealed with a P-256 key and its self-signed certificate.
fn seal_p256(c: &mut Criterion) {
    let key = match rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256) {
        Ok(key) => key,
        Err(error) => panic!("cannot generate a P-256 key: {error}"),
    };
    let certificate = rcgen::CertificateParams::new(vec!["collector-1".to_owned()])
        .and_then(|params| params.self_signed(&key));
    let certificate = match certificate {
        Ok(certificate) => certificate,
        Err(error) => panic!("cannot make a certificate: {error}"),
    };
    let sealer =
        match ReceiptSealer::new(certificate.pem().as_bytes(), key.serialize_pem().as_bytes()) {
            Ok(sealer) => sealer,
            Err(error) => panic!("{error}"),
        };
    let mut generation = 0_u64;
    c.bench_function("receipt/build_and_sign_p256", |b| {
        b.iter(|| {
            generation += 1;
            black_box(sealer.seal_pause(black_box(generation)))
        });
    });
}

/// Short runs: a signature takes tens of microseconds, so a few seconds give stable
/// numbers.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Runs every benchmark in this file (what `criterion_group!` would generate, written out
/// so that it can carry documentation).
fn benches() {
    let mut criterion = config().configure_from_args();
    seal_p256(&mut criterion);
}

criterion_main!(benches);
