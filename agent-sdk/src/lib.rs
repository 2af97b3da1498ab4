//! The Killswitch client for collectors: a per-program [`Gate`] that obeys the control plane.
//!
//! A collector (a program that captures keystrokes, mouse or screen data) builds one
//! [`Client`], registers the programs it runs, and checks [`Gate::is_active`] before
//! capturing each event. The client keeps a session open to a control replica; when an
//! operator pauses a program, the client closes its gate, runs the collector's pause hook
//! and acknowledges, so the operator can see that collection stopped.
//!
//! The rules it follows, in order of importance:
//!
//! - **Pause always wins.** A gate closes before the pause hook runs; a failed,
//!   panicking or timed-out resume hook keeps it closed; an unknown or unspecified state
//!   or failure policy means paused and fail-closed.
//! - **Default deny.** Every gate starts closed and opens only after the control plane
//!   sent RUNNING for its program and the resume hook succeeded.
//! - **Fail closed.** When nothing came from the control plane within a program's grace
//!   period (30 s unless its owner set another), its gate closes and its pause hook runs
//!   ([`Cause::LostContact`]); it reopens only on a fresh RUNNING from the control plane
//!   ([`Cause::ContactRestored`]). Only programs whose owner chose fail-open keep their
//!   state without contact.
//! - **Never go back in time.** A state older than the one applied is ignored, across
//!   reconnections and, with a [state file](ClientBuilder::state_file), restarts.
//! - **Cheap to obey.** [`Gate::is_active`] is one atomic load.
//!
//! `docs/sdk-guide.md` in the repository is the guide for collector authors: how to wire
//! the gate into a capture loop, what hooks must do, what happens offline and on restart.
//!
//! # Example
//!
//! ```no_run
//! use killswitch_sdk::Client;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::builder()
//!         .endpoint("http://control-1.internal:7070")
//!         .endpoint("http://control-2.internal:7070")
//!         .collector_id("host-42")
//!         .label("region", "eu-west")
//!         .program("keystrokes")
//!         .on_pause(|event| {
//!             if event.purge {
//!                 // delete events buffered but not uploaded yet, then:
//!                 event.confirm_purge();
//!             }
//!             Ok(())
//!         })
//!         .state_file("/var/lib/collector/killswitch.state")
//!         .start()?;
//!
//!     let gate = client.gate("keystrokes").ok_or("keystrokes is not registered")?;
//!     for _ in 0..1_000 {
//!         if gate.is_active() {
//!             // capture one event
//!         }
//!         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!     }
//!
//!     client.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - `builder.rs`: [`ClientBuilder`] (and [`Client::builder`]), validation and start.
//! - `client.rs`: [`Client`], the handle a collector keeps.
//! - `names.rs`: the syntax of program names, collector ids and labels, shared with the
//!   control plane.
//! - `gate.rs`: [`Gate`], the one-atomic-load switch.
//! - `event.rs`: [`StateEvent`], [`Cause`] and [`HookResult`], what hooks receive and
//!   return, and the purge confirmation.
//! - `backoff.rs`: [`Backoff`], reconnection delays and the stable-period reset.
//! - `error.rs`: [`BuildError`].
//! - `programs.rs`: the registered programs and their last applied state, shared by the
//!   client and its session task.
//! - `apply.rs`: the pure rules for applying a program state (stale, re-ack, pause,
//!   resume, contact restored) and where a hook's outcome leaves the gate.
//! - `policy.rs`: a program's failure policy and the pure lost-contact rule.
//! - `hook.rs`: running sync and async hooks with a timeout, catching panics, and moving
//!   the gate around them.
//! - `state_file.rs`: the state file's format, reading and atomic writing.
//! - `signing.rs`: the pure check of a signed resume against the trusted keys.
//! - `receipt.rs`: loading the client certificate's key and sealing receipts, signed
//!   with it (or unsigned, saying why).
//! - `session.rs`: the session task: connect, Hello, apply states, Acks, reconnect, and
//!   the lost-contact watchdog checked in every wait.
//!
//! `benches/gate.rs` measures [`Gate::is_active`] and `benches/receipt.rs` signing one
//! receipt (see `BENCHMARKS.md`); the `bench` feature exposes the hidden helpers they
//! need, and collectors never enable it. Likewise the `fuzzing` feature exposes the state
//! file parser to the fuzz targets in `fuzz/`.

mod apply;
mod backoff;
mod builder;
mod client;
mod error;
mod event;
mod gate;
mod hook;
mod names;
mod policy;
mod programs;
mod receipt;
mod session;
mod signing;
mod state_file;

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use client::Client;
pub use error::BuildError;
pub use event::{Cause, HookResult, StateEvent};
pub use gate::Gate;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub use receipt::bench::ReceiptSealer;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use state_file::fuzz_state_file;
