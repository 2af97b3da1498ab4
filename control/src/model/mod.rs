//! The model: what the control plane knows and decides, without I/O. No tonic, no etcd:
//! names and limits ([`names`]), a program's state and failure policy ([`state`]), label
//! selectors ([`selector`]) and targeting ([`targeting`]), the audit chain's rules and hash
//! ([`audit`]), fleet status aggregation ([`status`]) and the mergeable latency histogram
//! ([`latency`]), and the checks and packing of collectors' receipts ([`receipts`]).
//!
//! **Layer:** the top one. Its modules may import each other (a state holds targeting,
//! targeting holds selectors) and `killswitch_proto`, nothing else of the crate.

pub mod audit;
pub mod latency;
pub mod names;
pub mod receipts;
/// Label selectors, shared with the SDK (`killswitch_proto::selector`).
pub use killswitch_proto::selector;
pub mod state;
pub mod status;
pub mod targeting;

pub use names::*;
pub use state::*;
