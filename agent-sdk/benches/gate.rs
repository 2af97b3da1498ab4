//! Measures [`Gate::is_active`], the check a collector makes before capturing each event:
//! alone, and while another thread flips the gate open and closed as fast as it can (the
//! worst case for the cache line the check reads).
//!
//! ```text
//! cargo bench -p killswitch-sdk --features bench --bench gate
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use killswitch_sdk::Gate;

/// `is_active()` on an open gate that nobody changes.
fn single_thread(c: &mut Criterion) {
    let gate = Gate::new_closed();
    gate.set_for_bench(true);
    c.bench_function("is_active/single_thread", |b| {
        b.iter(|| black_box(&gate).is_active());
    });
}

/// `is_active()` while a second thread flips the same gate in a loop.
fn while_flipping(c: &mut Criterion) {
    let gate = Gate::new_closed();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let gate = gate.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut open = false;
            while !stop.load(Ordering::Relaxed) {
                open = !open;
                gate.set_for_bench(open);
            }
        })
    };
    c.bench_function("is_active/while_another_thread_flips", |b| {
        b.iter(|| black_box(&gate).is_active());
    });
    stop.store(true, Ordering::Relaxed);
    if flipper.join().is_err() {
        eprintln!("the flipping thread panicked");
    }
}

/// Short runs: the operation takes nanoseconds, so a few seconds give stable numbers.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Runs every benchmark in this file (what `criterion_group!` would generate, written out
/// so that it can carry documentation).
fn benches() {
    let mut criterion = config().configure_from_args();
    single_thread(&mut criterion);
    while_flipping(&mut criterion);
}

criterion_main!(benches);
