//! The Killswitch wire and storage schema, generated from `killswitch/v1/*.proto`.
//!
//! # Layout
//! - [`v1`]: the `CollectorService` and `AdminService` APIs and the types they share.
//! - [`v1::store`]: the protobuf messages stored as etcd values.
//! - [`codec`]: the codec of every generated client and server (small buffers).
//!
//! This crate holds no logic beyond small conversions: validation and domain types live
//! at the edges that receive these messages (`killswitch-control`, `killswitch-sdk`).

pub mod codec;

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
