//! Measures `ks_gate_is_active`, the C ABI's gate check, called through the extern
//! function as a C collector calls it (compare with the SDK's `benches/gate.rs`).
//!
//! ```text
//! cargo bench -p killswitch-ffi --bench gate
//! ```

#![allow(unsafe_code)]

use std::ffi::CString;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use killswitch::{
    ks_client, ks_client_gate, ks_client_start, ks_client_stop, ks_gate, ks_gate_is_active,
    ks_options_add_endpoint, ks_options_add_program, ks_options_free, ks_options_new,
    ks_options_set_collector_id, ks_result,
};

/// A client with a gate for `demo`, against a replica that does not exist (the gate stays
/// closed: the check costs the same either way).
fn client() -> (*mut ks_client, *const ks_gate) {
    let text = |s: &str| CString::new(s).expect("no NUL");
    let (endpoint, id, program) = (text("http://127.0.0.1:1"), text("bench"), text("demo"));
    let options = ks_options_new();
    let mut client = std::ptr::null_mut();
    let mut gate = std::ptr::null();
    // SAFETY: valid options and NUL-terminated strings; outputs are writable.
    unsafe {
        assert_eq!(
            ks_options_add_endpoint(options, endpoint.as_ptr()),
            ks_result::KS_OK
        );
        assert_eq!(
            ks_options_set_collector_id(options, id.as_ptr()),
            ks_result::KS_OK
        );
        assert_eq!(
            ks_options_add_program(options, program.as_ptr()),
            ks_result::KS_OK
        );
        assert_eq!(ks_client_start(options, &mut client), ks_result::KS_OK);
        assert_eq!(
            ks_client_gate(client, program.as_ptr(), &mut gate),
            ks_result::KS_OK
        );
        ks_options_free(options);
    }
    (client, gate)
}

/// `ks_gate_is_active` on a gate nobody changes.
fn single_thread(c: &mut Criterion) {
    let (client, gate) = client();
    c.bench_function("ks_gate_is_active/single_thread", |b| {
        // SAFETY: the gate of a live client.
        b.iter(|| unsafe { ks_gate_is_active(black_box(gate)) });
    });
    // SAFETY: started above, stopped once.
    unsafe { ks_client_stop(client) };
}

/// Runs every benchmark in this file.
fn benches() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    single_thread(&mut criterion);
}

criterion_main!(benches);
