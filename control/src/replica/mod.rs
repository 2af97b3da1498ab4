//! The replica's in-memory state and its loops: the state cache and its etcd watcher
//! ([`cache`]), the acknowledgement book ([`acks`]), publishing this replica and its
//! summaries ([`publish`]), the staged-resume driver ([`rollout`]) and the threads that
//! verify receipts' signatures ([`verify`]).
//!
//! **Layer:** below the store. May import [`crate::model`], [`crate::store`] and the
//! metrics counters ([`crate::metrics`]); never the gRPC edge.

pub mod acks;
pub mod cache;
pub mod publish;
pub mod rollout;
pub mod verify;
