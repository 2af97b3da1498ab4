//! `killswitch-control`: a stateless control replica. Program state and audit live in
//! etcd; the replica streams pause and resume to collectors and gathers their
//! acknowledgements.
//!
//! # Layout
//! - [`domain`]: validated domain types (program names, states, generations).
//! - [`store`]: etcd access; every mutation is one audited, compare-and-swap transaction.
//! - [`audit`]: the audit log's rules: verifying its hash chain, selecting entries to list.
//! - [`cache`]: the replica's in-memory state, kept current by one etcd watch.
//! - [`session`]: `CollectorService.Session`, one task per collector, fed from the cache.
//! - [`acks`]: which collectors are connected and what they acknowledged.
//! - [`publish`]: the replica's lease-bound registration and acknowledgement summaries.
//! - [`status`]: fleet-wide status from every replica's summary.
//! - [`latency`]: a small mergeable histogram of commit-to-ack times.
//! - [`admin`]: `AdminService`, the operator API.
//! - [`metrics`]: Prometheus metrics (`--metrics-listen`) and the admin-call layer.
//! - [`auth`]: who is calling (client certificate or bearer token) and the role table.
//! - [`signing`]: checking an operator's signed resume statement and key.
//! - [`error`]: the one mapping from failures to gRPC statuses.
//! - [`targeting`]: scoped rules, staged resumes and stop-all: a collector's effective
//!   state. [`rollout`]: the driver that moves staged resumes on, one replica at a time.
//! - [`server`]: wiring, health and reflection services, and graceful shutdown.
//! - [`config`]: the binary's settings: flags, `KILLSWITCH_*` variables and the
//!   `--config` TOML file, merged.
//! - [`logging`]: log format (`--log-format pretty|json`) and the `RUST_LOG` filter.
//! - `testing` (feature `testing`): start a real etcd and real replicas for tests.

pub mod acks;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod latency;
pub mod logging;
pub mod metrics;
pub mod publish;
pub mod rollout;
pub mod selector;
pub mod server;
pub mod session;
pub mod signing;
pub mod status;
pub mod store;
pub mod targeting;
#[cfg(feature = "testing")]
pub mod testing;

pub use server::{Config, ServerError, serve};
