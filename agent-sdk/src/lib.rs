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
//! - **Pause always wins.** A gate closes before the pause hook runs; a failed or
//!   panicking resume hook keeps it closed; an unknown or unspecified state means paused.
//! - **Default deny.** Every gate starts closed and opens only after the control plane
//!   sent RUNNING for its program and the resume hook succeeded.
//! - **Never go back in time.** A state older than the one applied is ignored, across
//!   reconnections.
//! - **Cheap to obey.** [`Gate::is_active`] is one atomic load.
//!
//! In this version gates keep their state while the client is disconnected; a later
//! version closes them after a grace period without contact.
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
//!                 // delete events buffered but not uploaded yet
//!             }
//!             Ok(())
//!         })
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
//! - `builder.rs`: [`ClientBuilder`], validation and start.
//! - `client.rs`: [`Client`], the handle a collector keeps.
//! - `gate.rs`: [`Gate`], the one-atomic-load switch.
//! - `event.rs`: [`StateEvent`] and [`HookResult`], what hooks receive and return.
//! - `backoff.rs`: [`Backoff`], reconnection delays.
//! - `error.rs`: [`BuildError`].
//! - `programs.rs`: the registered programs, shared by the client and its session task.
//! - `apply.rs`: the pure rules for applying a program state (stale, re-ack, pause,
//!   resume) and where a hook's outcome leaves the gate.
//! - `session.rs`: the session task: connect, Hello, apply states, Acks, reconnect.

mod apply;
mod backoff;
mod builder;
mod client;
mod error;
mod event;
mod gate;
mod programs;
mod session;

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use client::Client;
pub use error::BuildError;
pub use event::{HookResult, StateEvent};
pub use gate::Gate;
