//! `killswitch-control`: a stateless control replica. Program state and audit live in
//! etcd; the replica streams pause and resume to collectors and gathers their
//! acknowledgements.
//!
//! # Layout
//! Layers, each importing only from those above it (a check in CI keeps it so):
//! - [`model`]: what the control plane knows and decides, without I/O: names and limits,
//!   program state and failure policy, selectors and targeting, the audit chain's rules,
//!   fleet status aggregation, the latency histogram.
//! - [`metrics`]: the event counters every layer may bump (a leaf), and, apart, the
//!   scrape-time view of the replica and the HTTP endpoint.
//! - [`store`]: etcd, and only etcd: every mutation one audited compare-and-swap
//!   transaction.
//! - [`replica`]: the in-memory state and its loops: cache and watcher, acknowledgement
//!   book, publishing, the staged-resume driver.
//! - [`api`]: the gRPC edge: admin and collector services, authentication and roles,
//!   signature checks, the one error-to-status mapping. The only place wire types meet
//!   the model.
//! - [`server`]: builds a replica from its [`Config`] and runs it until shutdown;
//!   [`security`]: TLS, the auth file and etcd access; [`tls`]: the TLS acceptor and
//!   reloading credentials; [`config`] and [`logging`]: the binary's settings and log
//!   format.

pub mod api;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod replica;
pub mod security;
pub mod server;
pub mod store;
pub mod tls;

pub use server::{Config, Replica, ServerError, serve};
