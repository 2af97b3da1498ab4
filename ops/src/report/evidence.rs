//! The evidence a report embeds: the contiguous audit chain segment, each entry's stored
//! bytes, and every receipt exactly as its collector signed it. Bytes are base64
//! (standard alphabet, padded) in JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use killswitch_proto::v1;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes shown as base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Base64(pub Vec<u8>);

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Base64)
            .map_err(|err| serde::de::Error::custom(format!("invalid base64: {err}")))
    }
}

/// What `report verify` checks (the JSON `evidence` object).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Every audit entry from the first relevant one to the last, oldest first, with no
    /// gap.
    pub audit: Vec<AuditEvidence>,
    /// Every receipt the report counts, as signed.
    pub receipts: Vec<ReceiptEvidence>,
}

/// One audit entry as stored in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvidence {
    /// Its sequence number.
    pub seq: u64,
    /// The generation it produced: the etcd revision of its transaction, which the
    /// control plane reads from the entry's key. Not covered by the entry's hash.
    pub generation: u64,
    /// The encoded `killswitch.v1.store.AuditEntry`, whose `hash` covers everything else
    /// in it.
    pub stored: Base64,
}

/// One receipt as its collector signed it (a `killswitch.v1.SignedReceipt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvidence {
    /// The encoded `killswitch.v1.Receipt`, exactly as signed.
    pub receipt: Base64,
    /// The signature over `killswitch-receipt-v1\0` and `receipt`; empty when unsigned.
    pub signature: Base64,
    /// The collector's certificate (DER); empty when unsigned.
    pub certificate: Base64,
    /// `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `ed25519` or `rsa-pkcs1-sha256`; empty
    /// when unsigned.
    pub algorithm: String,
    /// Why the receipt is unsigned; empty when signed.
    pub unsigned_reason: String,
}

impl ReceiptEvidence {
    /// A receipt as the control plane returned it.
    #[must_use]
    pub fn from_wire(signed: &v1::SignedReceipt) -> Self {
        Self {
            receipt: Base64(signed.receipt.clone()),
            signature: Base64(signed.signature.clone()),
            certificate: Base64(signed.certificate.clone()),
            algorithm: signed.algorithm.clone(),
            unsigned_reason: signed.unsigned_reason.clone(),
        }
    }
}
