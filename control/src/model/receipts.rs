//! Collectors' signed receipts: the checks the receipt of an Ack must pass before the Ack
//! is counted, how receipts are packed into the chunks kept in etcd (and into responses),
//! and the deduplication of a listing. No I/O.
//!
//! A receipt is consistent with its Ack when it decodes and names the session's collector
//! and the Ack's program, generation and gate. Over TLS it must also be signed with the
//! key of the session's own client certificate: the receipt's `certificate` is byte-equal
//! to the peer's leaf, and the signature over
//! [`receipt_signed_bytes`](killswitch_proto::receipt_signed_bytes) verifies with that
//! certificate's public key. Without a client certificate (`--insecure-dev`) an unsigned
//! receipt is accepted; a signed one is still verified against its own certificate.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use killswitch_proto::prost::{self, Message};
use killswitch_proto::v1;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::state::Generation;

/// Largest encoded chunk of receipts stored under one etcd key: 1 MiB, under etcd's
/// default request limit (`--max-request-bytes`, 1.5 MiB) with room for the key and the
/// request's framing.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Largest batch of receipts in one `ListReceiptsResponse`: half the replica's gRPC
/// message limit, so a response never nears it. A receipt alone is always smaller (it
/// arrived in an Ack under the same limit).
pub const RESPONSE_BYTES: usize = 32 * 1024;

/// Largest receipt a replica accepts, in bytes (the encoded `SignedReceipt`): a receipt
/// with a leaf certificate of a 4096-bit RSA key needs under 3 KiB. Bounds what each
/// session's entry holds until the receipt is written.
pub const MAX_RECEIPT_BYTES: usize = 8 * 1024;

/// One day: receipts are kept under one etcd lease per replica per day.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The signature algorithms a receipt may name.
pub const ALGORITHMS: [&str; 4] = [
    "ecdsa-p256-sha256",
    "ecdsa-p384-sha384",
    "ed25519",
    "rsa-pkcs1-sha256",
];

/// What the Ack that carries a receipt says, and who sent it: the receipt must say the
/// same.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The session's collector id (its certificate's under TLS).
    pub collector: &'a str,
    /// The program acknowledged.
    pub program: &'a str,
    /// The generation acknowledged.
    pub generation: Generation,
    /// The gate the Ack reports (its wire value).
    pub effective: i32,
}

/// Why the receipt of an Ack was refused; the Ack is then refused too, and not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptRefusal {
    /// The receipt does not decode, is larger than [`MAX_RECEIPT_BYTES`], or names some
    /// but not all of signature, certificate and algorithm.
    Malformed(String),
    /// A field of the receipt differs from the Ack or the session.
    Mismatch {
        /// The receipt's field.
        field: &'static str,
    },
    /// The session has a client certificate but the receipt is unsigned.
    Unsigned,
    /// The receipt was signed with a certificate other than the session's.
    Certificate,
    /// The signature does not verify: a wrong signature, an unknown algorithm, or a
    /// certificate whose key cannot be read for it.
    Signature(String),
}

impl ReceiptRefusal {
    /// The `reason` label of `killswitch_refused_acks_total`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "receipt-malformed",
            Self::Mismatch { .. } => "receipt-mismatch",
            Self::Unsigned => "receipt-unsigned",
            Self::Certificate => "receipt-certificate",
            Self::Signature(_) => "receipt-signature",
        }
    }
}

impl fmt::Display for ReceiptRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "its receipt is malformed: {why}"),
            Self::Mismatch { field } => write!(
                f,
                "its receipt's {field} differs from the acknowledgement's (or the session's \
                 collector id)"
            ),
            Self::Unsigned => f.write_str(
                "its receipt is unsigned, but this session has a client certificate: sign \
                 receipts with its key",
            ),
            Self::Certificate => f.write_str(
                "its receipt was signed with a certificate other than this session's client \
                 certificate",
            ),
            Self::Signature(why) => write!(f, "its receipt's signature does not verify: {why}"),
        }
    }
}

impl std::error::Error for ReceiptRefusal {}

/// A session's client certificate, its public key read once when the session opens, so
/// that checking each of its receipts does not parse the certificate again.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// The DER of the leaf certificate.
    der: Arc<[u8]>,
    /// The subject public key's bytes, or why the certificate does not parse.
    key: Result<Arc<[u8]>, String>,
}

impl PeerCertificate {
    /// Reads the public key of `der`, a leaf certificate. A certificate that does not parse
    /// is kept: every signed receipt of the session is then refused with the reason.
    #[must_use]
    pub fn parse(der: Arc<[u8]>) -> Self {
        let key = public_key(&der);
        Self { der, key }
    }

    /// The certificate's DER.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// The subject public key of the certificate `der`.
fn public_key(der: &[u8]) -> Result<Arc<[u8]>, String> {
    let (_, certificate) = X509Certificate::from_der(der)
        .map_err(|error| format!("the certificate does not parse: {error}"))?;
    Ok(Arc::from(
        certificate.public_key().subject_public_key.data.as_ref(),
    ))
}

/// A receipt whose every cheap check passed and whose signature is still to be verified:
/// the costly part of checking a receipt (about 49 µs for an ECDSA P-256 key, 32 µs for
/// Ed25519: `benches/receipt.rs`), which a replica runs off its session tasks. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct PendingSignature {
    receipt: Arc<v1::SignedReceipt>,
    algorithm: &'static dyn VerificationAlgorithm,
    /// The public key to verify with, or why there is none.
    key: Result<Arc<[u8]>, String>,
}

impl PendingSignature {
    /// Verifies the signature over the receipt with the key.
    ///
    /// # Errors
    ///
    /// The certificate's key could not be read, or the signature does not verify
    /// (including a key of another type than the algorithm's).
    pub fn verify(&self) -> Result<(), ReceiptRefusal> {
        let key = self
            .key
            .as_ref()
            .map_err(|why| ReceiptRefusal::Signature(why.clone()))?;
        UnparsedPublicKey::new(self.algorithm, key.as_ref())
            .verify(
                &killswitch_proto::receipt_signed_bytes(&self.receipt.receipt),
                &self.receipt.signature,
            )
            .map_err(|_| {
                ReceiptRefusal::Signature(format!(
                    "not a valid {} signature by the certificate's key",
                    self.receipt.algorithm
                ))
            })
    }
}

/// What the cheap checks of a receipt ([`precheck`]) leave to do.
#[derive(Debug)]
pub enum Checked {
    /// Nothing: an unsigned receipt on a session without a client certificate.
    Unsigned,
    /// The signature, still to be verified with [`PendingSignature::verify`].
    Signed(PendingSignature),
}

/// Checks the receipt of an Ack against the Ack (`expected`) and, when the session has a
/// client certificate, against that certificate (`peer`): everything but the signature
/// itself, which the returned [`Checked::Signed`] verifies. A receipt passes when this
/// passes and its signature, if any, verifies.
///
/// # Errors
///
/// The first problem found, in this order: size, decoding, each field (collector id, program,
/// generation, effective), the signing fields' consistency, the certificate, the
/// algorithm.
pub fn precheck(
    signed: &Arc<v1::SignedReceipt>,
    expected: &Expected<'_>,
    peer: Option<&PeerCertificate>,
) -> Result<Checked, ReceiptRefusal> {
    let size = signed.encoded_len();
    if size > MAX_RECEIPT_BYTES {
        return Err(ReceiptRefusal::Malformed(format!(
            "{size} bytes; at most {MAX_RECEIPT_BYTES} are accepted"
        )));
    }
    let receipt = v1::Receipt::decode(signed.receipt.as_slice())
        .map_err(|error| ReceiptRefusal::Malformed(error.to_string()))?;
    let fields = [
        ("collector_id", receipt.collector_id == expected.collector),
        ("program", receipt.program == expected.program),
        ("generation", receipt.generation == expected.generation),
        ("effective", receipt.effective == expected.effective),
    ];
    if let Some((field, _)) = fields.into_iter().find(|(_, equal)| !equal) {
        return Err(ReceiptRefusal::Mismatch { field });
    }
    let signed_parts = [
        !signed.signature.is_empty(),
        !signed.certificate.is_empty(),
        !signed.algorithm.is_empty(),
    ];
    let is_signed = signed_parts.iter().any(|present| *present);
    match peer {
        Some(_) if !is_signed => return Err(ReceiptRefusal::Unsigned),
        Some(leaf) if signed.certificate != leaf.der() => {
            return Err(ReceiptRefusal::Certificate);
        }
        None if !is_signed => return Ok(Checked::Unsigned),
        _ => {}
    }
    if !signed_parts.iter().all(|present| *present) {
        return Err(ReceiptRefusal::Malformed(
            "a signed receipt needs a signature, a certificate and an algorithm".into(),
        ));
    }
    let algorithm = algorithm(&signed.algorithm)?;
    // The session's certificate was read once; a signed receipt on a session without one
    // (`--insecure-dev`) is verified against its own certificate.
    let key = match peer {
        Some(leaf) => leaf.key.clone(),
        None => public_key(&signed.certificate),
    };
    Ok(Checked::Signed(PendingSignature {
        receipt: Arc::clone(signed),
        algorithm,
        key,
    }))
}

/// Verifies a signed receipt's signature with its own certificate's public key (what an
/// auditor does with a stored receipt; an Ack's receipt goes through [`precheck`]).
///
/// # Errors
///
/// An unknown algorithm, a certificate that does not parse, or a signature that does not
/// verify (including a key of another type than the algorithm's).
pub fn verify(signed: &v1::SignedReceipt) -> Result<(), ReceiptRefusal> {
    PendingSignature {
        receipt: Arc::new(signed.clone()),
        algorithm: algorithm(&signed.algorithm)?,
        key: public_key(&signed.certificate),
    }
    .verify()
}

/// The verification algorithm a receipt names.
fn algorithm(name: &str) -> Result<&'static dyn VerificationAlgorithm, ReceiptRefusal> {
    Ok(match name {
        "ecdsa-p256-sha256" => &signature::ECDSA_P256_SHA256_ASN1,
        "ecdsa-p384-sha384" => &signature::ECDSA_P384_SHA384_ASN1,
        "ed25519" => &signature::ED25519,
        "rsa-pkcs1-sha256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        other => {
            return Err(ReceiptRefusal::Signature(format!(
                "unknown algorithm {:?}; expected one of {}",
                other.chars().take(32).collect::<String>(),
                ALGORITHMS.join(", ")
            )));
        }
    })
}

/// How many bytes `receipt` adds to an encoded `ReceiptChunk` (or `ListReceiptsResponse`):
/// its tag, length and body.
#[must_use]
pub fn packed_len(receipt: &v1::SignedReceipt) -> usize {
    let body = receipt.encoded_len();
    1 + prost::length_delimiter_len(body) + body
}

/// Splits `receipts`, in order, into batches whose encoding is at most `max_bytes` each
/// (a receipt larger than that alone is a batch of its own). No batch is empty.
#[must_use]
pub fn pack(receipts: Vec<v1::SignedReceipt>, max_bytes: usize) -> Vec<Vec<v1::SignedReceipt>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for receipt in receipts {
        let len = packed_len(&receipt);
        if !batch.is_empty() && bytes + len > max_bytes {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += len;
        batch.push(receipt);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The day a receipt is written on (days since the Unix epoch): the replica's lease of
/// that day holds it.
#[must_use]
pub fn day(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / DAY.as_secs())
}

/// Drops the repeats of a listing read in generation order: the same receipt stored by
/// two replicas (a collector that reconnected and acknowledged again) is listed once.
/// Remembers one generation at a time, so memory is bounded by the receipts of one
/// generation.
#[derive(Debug, Default)]
pub struct Dedup {
    generation: Generation,
    seen: HashSet<[u8; 32]>,
}

impl Dedup {
    /// Whether `receipt` of `generation` is listed for the first time. Generations must
    /// come in ascending order.
    pub fn first(&mut self, generation: Generation, receipt: &v1::SignedReceipt) -> bool {
        if generation != self.generation {
            self.generation = generation;
            self.seen.clear();
        }
        self.seen.insert(Sha256::digest(&receipt.receipt).into())
    }
}

/// Signed receipts for the tests of this module and of the replica's verification pool.
#[cfg(test)]
pub(crate) mod fixtures {
    use killswitch_proto::prost::Message as _;
    use killswitch_proto::v1;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    /// A P-256 key and a self-signed certificate for collector `c1`.
    pub(crate) struct Signer {
        /// The key.
        pub(crate) pair: EcdsaKeyPair,
        /// Its certificate's DER.
        pub(crate) certificate: Vec<u8>,
    }

    /// A new [`Signer`].
    pub(crate) fn new_signer() -> Signer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let certificate = rcgen::CertificateParams::new(vec!["c1".into()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("pkcs8");
        Signer { pair, certificate }
    }

    /// An encoded receipt of `collector` for demo at `generation`, PAUSED.
    pub(crate) fn receipt(collector: &str, generation: u64) -> Vec<u8> {
        v1::Receipt {
            collector_id: collector.into(),
            program: "demo".into(),
            generation,
            effective: v1::RunState::Paused as i32,
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// `receipt` signed by `signer`.
    pub(crate) fn sign(signer: &Signer, receipt: Vec<u8>) -> v1::SignedReceipt {
        let signature = signer
            .pair
            .sign(
                &SystemRandom::new(),
                &killswitch_proto::receipt_signed_bytes(&receipt),
            )
            .expect("sign");
        v1::SignedReceipt {
            receipt,
            signature: signature.as_ref().to_vec(),
            certificate: signer.certificate.clone(),
            algorithm: "ecdsa-p256-sha256".into(),
            unsigned_reason: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{new_signer, receipt, sign};
    use super::*;

    /// The whole check: [`precheck`], then the signature.
    fn check(
        signed: &v1::SignedReceipt,
        expected: &Expected<'_>,
        peer: Option<&[u8]>,
    ) -> Result<(), ReceiptRefusal> {
        let peer = peer.map(|der| PeerCertificate::parse(Arc::from(der)));
        match precheck(&Arc::new(signed.clone()), expected, peer.as_ref())? {
            Checked::Unsigned => Ok(()),
            Checked::Signed(signature) => signature.verify(),
        }
    }

    const EXPECTED: Expected<'static> = Expected {
        collector: "c1",
        program: "demo",
        generation: 7,
        effective: v1::RunState::Paused as i32,
    };

    #[test]
    fn a_signed_receipt_must_match_the_ack_and_the_session_certificate() {
        let signer = new_signer();
        let leaf = signer.certificate.as_slice();
        let good = sign(&signer, receipt("c1", 7));
        assert_eq!(check(&good, &EXPECTED, Some(leaf)), Ok(()));
        assert_eq!(
            check(&good, &EXPECTED, None),
            Ok(()),
            "verified without TLS too"
        );

        let other = new_signer();
        assert_eq!(
            check(&good, &EXPECTED, Some(&other.certificate)),
            Err(ReceiptRefusal::Certificate)
        );
        let mut forged = sign(&other, receipt("c1", 7));
        forged.certificate = signer.certificate.clone();
        assert!(matches!(
            check(&forged, &EXPECTED, Some(leaf)),
            Err(ReceiptRefusal::Signature(_))
        ));

        let mut edited = good.clone();
        let last = edited.receipt.len() - 1;
        edited.receipt[last] ^= 1;
        let refused = check(&edited, &EXPECTED, Some(leaf)).expect_err("edited");
        assert!(
            matches!(
                refused,
                ReceiptRefusal::Mismatch { .. } | ReceiptRefusal::Signature(_)
            ),
            "{refused}"
        );
        let mut edited = good.clone();
        edited.signature[10] ^= 1;
        assert_eq!(
            check(&edited, &EXPECTED, Some(leaf)).map_err(|r| r.reason()),
            Err("receipt-signature")
        );

        let theirs = sign(&signer, receipt("c2", 7));
        assert_eq!(
            check(&theirs, &EXPECTED, Some(leaf)),
            Err(ReceiptRefusal::Mismatch {
                field: "collector_id"
            })
        );
        let older = sign(&signer, receipt("c1", 6));
        assert_eq!(
            check(&older, &EXPECTED, Some(leaf)),
            Err(ReceiptRefusal::Mismatch {
                field: "generation"
            })
        );

        let mut unknown = good.clone();
        unknown.algorithm = "ecdsa-p384-sha384".into();
        assert!(matches!(
            check(&unknown, &EXPECTED, Some(leaf)),
            Err(ReceiptRefusal::Signature(_))
        ));
        unknown.algorithm = "md5".into();
        assert!(
            check(&unknown, &EXPECTED, Some(leaf))
                .expect_err("unknown")
                .to_string()
                .contains("unknown algorithm \"md5\"")
        );
    }

    #[test]
    fn unsigned_receipts_pass_only_without_a_client_certificate() {
        let unsigned = v1::SignedReceipt {
            receipt: receipt("c1", 7),
            unsigned_reason: "no certificate".into(),
            ..Default::default()
        };
        assert_eq!(check(&unsigned, &EXPECTED, None), Ok(()));
        assert_eq!(
            check(&unsigned, &EXPECTED, Some(b"leaf")),
            Err(ReceiptRefusal::Unsigned)
        );
        let mut half = unsigned.clone();
        half.algorithm = "ed25519".into();
        assert!(matches!(
            check(&half, &EXPECTED, None),
            Err(ReceiptRefusal::Malformed(_))
        ));
        let huge = v1::SignedReceipt {
            receipt: receipt("c1", 7),
            unsigned_reason: "x".repeat(MAX_RECEIPT_BYTES),
            ..Default::default()
        };
        assert!(matches!(
            check(&huge, &EXPECTED, None),
            Err(ReceiptRefusal::Malformed(_))
        ));
        let garbage = v1::SignedReceipt {
            receipt: vec![0xff, 0xff, 0xff],
            ..Default::default()
        };
        assert_eq!(
            check(&garbage, &EXPECTED, None).map_err(|r| r.reason()),
            Err("receipt-malformed")
        );
    }

    #[test]
    fn packing_respects_the_byte_limit_and_the_order() {
        // Generations of one varint byte each: receipts of the same size.
        let receipts: Vec<v1::SignedReceipt> = (1..=10)
            .map(|g| v1::SignedReceipt {
                receipt: receipt("c1", g),
                ..Default::default()
            })
            .collect();
        let one = packed_len(&receipts[0]);
        let batches = pack(receipts.clone(), 3 * one);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(batches.concat(), receipts);
        for batch in &batches {
            let chunk = v1::store::ReceiptChunk {
                receipts: batch.clone(),
            };
            assert!(chunk.encoded_len() <= 3 * one);
        }
        assert_eq!(
            pack(receipts.clone(), 1).len(),
            10,
            "one per batch at least"
        );
        assert!(pack(Vec::new(), CHUNK_BYTES).is_empty());
    }

    #[test]
    fn a_listing_drops_repeats_within_a_generation() {
        let mut dedup = Dedup::default();
        let a = v1::SignedReceipt {
            receipt: receipt("c1", 7),
            ..Default::default()
        };
        assert!(dedup.first(7, &a));
        assert!(!dedup.first(7, &a), "stored by another replica too");
        let mut resigned = a.clone();
        resigned.signature = vec![1];
        assert!(!dedup.first(7, &resigned), "the same receipt, signed again");
        assert!(dedup.first(8, &a));
    }

    #[test]
    fn days_since_the_epoch() {
        assert_eq!(day(SystemTime::UNIX_EPOCH), 0);
        assert_eq!(day(SystemTime::UNIX_EPOCH + DAY * 3 + DAY / 2), 3);
    }
}
