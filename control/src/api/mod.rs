//! The gRPC edge, the only place wire messages meet the model: the admin service
//! ([`admin`]), collector sessions ([`session`]), who is calling and what they may do
//! ([`auth`]), the checks of signed resumes ([`signing`]), calls to peer replicas
//! ([`peers`]), reloading the replica's credentials ([`reload`]), and the one mapping of errors to
//! gRPC statuses ([`error`]); [`wire`] builds the admin API's messages from model values.
//!
//! **Layer:** below the replica. May import [`crate::model`], [`crate::store`],
//! [`crate::replica`] and the metrics counters.

pub mod admin;
pub mod auth;
pub mod error;
pub mod peers;
pub mod reload;
pub mod session;
pub mod signing;
pub mod wire;
