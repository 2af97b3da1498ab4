//! `killswitch`, the runbook CLI an incident responder uses to pause and resume
//! data-collection programs across the fleet through the control plane's `AdminService`.
//!
//! The binary (`src/main.rs`) only parses the command line, calls [`run`] with stdout as
//! its [`Sink`], prints `killswitch: error: MESSAGE` (or `warning:`) if it fails, and exits
//! with the code [`Exit`] decides.
//!
//! # Layout
//! - [`cli`]: clap definitions of the commands and global flags.
//! - [`input`]: validated argument types (program name, reason, actor, endpoint, timeout,
//!   failure policy, label selector, staged-resume stages).
//! - [`commands`]: one function per command, and [`run`] to dispatch.
//! - [`client`]: the connection; sends the actor, converts responses and statuses.
//! - [`wait`]: `--wait`, following `WatchStatus` until a change is acknowledged fleet-wide,
//!   or a staged resume has gone through its stages.
//! - [`progress`]: the `--wait` progress bar or lines on stderr.
//! - [`view`]: what commands show; its serde structs are the `--output json` contract.
//! - [`output`]: pure table and JSON rendering of the views.
//! - [`sink`]: stdout, tolerating a reader that goes away.
//! - [`exit`]: exit codes and the [`Error`] type that carries one.
//! - [`certs`]: `certs init`, a development PKI and the control plane's `auth.toml`, and
//!   `certs collector`, a collector certificate that pins labels (local: no control plane
//!   involved).
//! - [`token`]: `token new`, operator bearer tokens and `auth.toml` entries (local).
//! - [`keys`]: `keys new`, operator ed25519 signing keys (local), and signing resume
//!   statements for `resume` and `approve --signing-key`.
//! - [`report`]: `report`, an incident's timeline and who confirmed each change, from the
//!   audit log and the receipts collectors signed, with that evidence embedded; and
//!   `report verify`, which checks the evidence offline.
//! - [`console`]: `console`, the web console: an HTTP server on the responder's machine
//!   that renders the same views as pages, follows `WatchStatus` live and makes the
//!   changes the operator's role allows, through the same [`client::Session`].
//!
//! *Invariant*: exit codes come from typed information (a `tonic::Code`, a failed
//! connection, a clap error), never from matching message text.

pub mod certs;
pub mod cli;
pub mod client;
pub mod commands;
pub mod console;
pub mod exit;
pub mod input;
pub mod keys;
pub mod output;
pub mod progress;
pub mod report;
pub mod sink;
pub mod token;
pub mod view;
pub mod wait;

pub use commands::run;
pub use exit::{Error, Exit};
pub use sink::Sink;
