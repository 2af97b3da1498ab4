//! Measures what a replica pays to check the receipt of one Ack on a mutual-TLS session:
//! the cheap checks against the Ack and the session's certificate
//! (`receipts::precheck`), then the signature (`PendingSignature::verify`), for each key
//! type a collector's certificate may have.
//!
//! ```text
//! cargo bench -p killswitch-control --bench receipt -- --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use killswitch_control::model::receipts::{Checked, Expected, PeerCertificate, precheck};
use killswitch_proto::prost::Message as _;
use killswitch_proto::v1;
use rcgen::SigningKey as _;

/// The collector, program and generation of every receipt checked here.
const COLLECTOR: &str = "collector-1";
const PROGRAM: &str = "demo";
const GENERATION: u64 = 7;

/// A signed pause receipt of [`COLLECTOR`] and its certificate, made with a new key of
/// `algorithm`, named in the receipt as `name`.
fn signed(
    algorithm: &'static rcgen::SignatureAlgorithm,
    name: &str,
) -> (Arc<v1::SignedReceipt>, PeerCertificate) {
    let key = match rcgen::KeyPair::generate_for(algorithm) {
        Ok(key) => key,
        Err(error) => panic!("cannot generate a {name} key: {error}"),
    };
    let certificate = rcgen::CertificateParams::new(vec![COLLECTOR.to_owned()])
        .and_then(|params| params.self_signed(&key));
    let certificate = match certificate {
        Ok(certificate) => certificate.der().to_vec(),
        Err(error) => panic!("cannot make a certificate: {error}"),
    };
    let receipt = v1::Receipt {
        collector_id: COLLECTOR.into(),
        program: PROGRAM.into(),
        generation: GENERATION,
        effective: v1::RunState::Paused as i32,
        ..Default::default()
    }
    .encode_to_vec();
    let signature = match key.sign(&killswitch_proto::receipt_signed_bytes(&receipt)) {
        Ok(signature) => signature,
        Err(error) => panic!("cannot sign with the {name} key: {error}"),
    };
    let peer = PeerCertificate::parse(Arc::from(certificate.as_slice()));
    let signed = v1::SignedReceipt {
        receipt,
        signature,
        certificate,
        algorithm: name.into(),
        unsigned_reason: String::new(),
    };
    (Arc::new(signed), peer)
}

/// One Ack's receipt checked as a session does, for each key type.
fn check(c: &mut Criterion) {
    let expected = Expected {
        collector: COLLECTOR,
        program: PROGRAM,
        generation: GENERATION,
        effective: v1::RunState::Paused as i32,
    };
    let keys = [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256, "ecdsa-p256-sha256"),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384, "ecdsa-p384-sha384"),
        ("ed25519", &rcgen::PKCS_ED25519, "ed25519"),
    ];
    for (short, algorithm, name) in keys {
        let (receipt, peer) = signed(algorithm, name);
        match precheck(&receipt, &expected, Some(&peer)) {
            Ok(Checked::Signed(pending)) if pending.verify().is_ok() => {}
            other => panic!("the {name} receipt does not pass its checks: {other:?}"),
        }
        c.bench_function(&format!("receipt/check_{short}"), |b| {
            b.iter(
                || match precheck(black_box(&receipt), &expected, Some(&peer)) {
                    Ok(Checked::Signed(pending)) => black_box(pending.verify()),
                    other => panic!("the {name} receipt did not reach its signature: {other:?}"),
                },
            );
        });
    }
}

/// Short runs: a check takes tens of microseconds, so a few seconds give stable numbers.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Runs every benchmark in this file (what `criterion_group!` would generate, written out
/// so that it can carry documentation).
fn benches() {
    let mut criterion = config().configure_from_args();
    check(&mut criterion);
}

criterion_main!(benches);
