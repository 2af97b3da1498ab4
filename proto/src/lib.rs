//! The Killswitch wire and storage schema, generated from `killswitch/v1/*.proto`.
//!
//! # Layout
//! - [`v1`]: the `CollectorService` and `AdminService` APIs and the types they share.
//! - [`v1::store`]: the protobuf messages stored as etcd values.
//! - [`codec`]: the codec of every generated client and server (small buffers).
//! - [`contract`]: what every side must agree on: name, id and label syntax and limits,
//!   the grace bounds, the actor metadata key.
//!
//! This crate holds no logic beyond small conversions and the contract's pure checks:
//! domain types live at the edges that receive these messages (`killswitch-control`,
//! `killswitch-sdk`, the CLI), each wrapping a contract violation in its own error.

pub mod codec;
pub mod contract;
pub mod selector;

/// `killswitch.v1`: services and messages.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("killswitch.v1");

    /// `killswitch.v1.store`: values stored in etcd.
    pub mod store {
        tonic::include_proto!("killswitch.v1.store");
    }
}

/// The encoded `FileDescriptorSet` of every `killswitch/v1/*.proto`, for gRPC server
/// reflection (`tonic-reflection`).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("killswitch_descriptor");

pub use prost;
pub use prost_types;

/// Converts a [`std::time::SystemTime`] to a protobuf timestamp.
#[must_use]
pub fn timestamp(at: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// The largest generation that can exist: a generation is an etcd `mod_revision`, a
/// signed 64-bit integer. A state claiming more was forged, and peers refuse it.
pub const MAX_GENERATION: u64 = i64::MAX as u64;

/// How far a state's generation may lie beyond everything a collector has heard (the
/// revisions in heartbeats, the generations applied) before it is refused as forged:
/// 2^40 etcd revisions, 35 years of 1,000 writes a second.
pub const MAX_GENERATION_LEAP: u64 = 1 << 40;

/// What every resume signature covers before the encoded `ResumeStatement`: a signature
/// made for anything else can never pass for a resume.
pub const RESUME_SIGNING_CONTEXT: &[u8] = b"killswitch-resume-v1\0";

/// The bytes an operator signs for an encoded `ResumeStatement`:
/// [`RESUME_SIGNING_CONTEXT`] followed by the statement.
#[must_use]
pub fn resume_signed_bytes(statement: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RESUME_SIGNING_CONTEXT.len() + statement.len());
    bytes.extend_from_slice(RESUME_SIGNING_CONTEXT);
    bytes.extend_from_slice(statement);
    bytes
}

/// What every receipt signature covers before the encoded `Receipt`: a signature made
/// for anything else (a TLS handshake, a resume) can never pass for a receipt.
pub const RECEIPT_SIGNING_CONTEXT: &[u8] = b"killswitch-receipt-v1\0";

/// The bytes a collector signs for an encoded `Receipt`: [`RECEIPT_SIGNING_CONTEXT`]
/// followed by the receipt.
#[must_use]
pub fn receipt_signed_bytes(receipt: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECEIPT_SIGNING_CONTEXT.len() + receipt.len());
    bytes.extend_from_slice(RECEIPT_SIGNING_CONTEXT);
    bytes.extend_from_slice(receipt);
    bytes
}

/// Characters shown on each side of the column [`pointer`] marks.
pub const POINTER_CONTEXT: usize = 30;

/// Two lines that show `text` around 1-based character `column` with a caret under it,
/// e.g. for an invalid label selector. Shared by the control plane, which knows the
/// column, and the CLI, which reads it back from the control plane's message, so both
/// draw the same picture. Whitespace and control characters show as spaces; text more
/// than [`POINTER_CONTEXT`] characters away is cut and marked `...`.
#[must_use]
pub fn pointer(text: &str, column: usize) -> String {
    let at = column.saturating_sub(1);
    let from = at.saturating_sub(POINTER_CONTEXT);
    let mut line = String::new();
    if from > 0 {
        line.push_str("...");
    }
    let caret = line.len() + (at - from);
    let mut shown = text.chars().skip(from);
    for c in shown.by_ref().take(at - from + POINTER_CONTEXT + 1) {
        line.push(if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        });
    }
    if shown.next().is_some() {
        line.push_str("...");
    }
    let shown = format!("  {line}");
    format!("{}\n  {}^", shown.trim_end(), " ".repeat(caret))
}
