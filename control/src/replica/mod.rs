//! The replica's in-memory state and its loops: the state cache and its etcd watcher
//! ([`cache`]), the acknowledgement book ([`acks`]), publishing this replica and its
//! summaries ([`publish`]), and the staged-resume driver ([`rollout`]).
//!
//! **Layer:** below the store. May import [`crate::model`], [`crate::store`] and the
//! metrics counters ([`crate::metrics`]); never the gRPC edge.

pub mod acks;
pub mod cache;
pub mod publish;
pub mod rollout;
