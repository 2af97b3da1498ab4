//! `killswitch report verify FILE --ca CA.pem`: checks a report's evidence offline, with
//! nothing but the file and the CA that issued the collectors' certificates.
//!
//! - The audit chain segment: every entry's stored bytes hash to its `hash`, each entry's
//!   `prev_hash` is the hash of the one before (32 zero bytes for entry 1), and the
//!   sequence numbers run without a gap.
//! - Every signed receipt: its certificate chains to the CA for client authentication at
//!   the time its hook returned, names the receipt's collector as its SPIFFE id
//!   (`spiffe://TD/collector/ID`, with an optional `?labels` query), and its key made the
//!   signature, with the algorithm the receipt names; and its generation is one an entry of
//!   the segment produced.
//!
//! Unsigned receipts are counted, and fail only with `--require-signed`.

use std::collections::BTreeSet;
use std::fmt;

use killswitch_proto::prost::Message as _;
use killswitch_proto::v1;
use killswitch_proto::v1::store;
use ring::digest;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{EndEntityCert, KeyUsage};

use super::{Evidence, FORMAT};

/// Where an HTML report embeds the report JSON.
pub const EVIDENCE_SCRIPT: &str = r#"<script type="application/json" id="evidence">"#;

/// The signature algorithms a CA's certificates may use.
const CHAIN_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The part of a report file `report verify` reads.
#[derive(Debug, Deserialize)]
struct EvidenceFile {
    format: String,
    evidence: Evidence,
}

/// The evidence of a report file: the JSON report, or the HTML one (its embedded JSON).
/// The error says why it cannot be read.
pub fn read_evidence(bytes: &[u8]) -> Result<Evidence, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let json = match text.find(EVIDENCE_SCRIPT) {
        Some(start) => {
            let rest = &text[start + EVIDENCE_SCRIPT.len()..];
            let end = rest.find("</script>").ok_or_else(|| {
                "its evidence block (<script id=\"evidence\">) is not closed".to_owned()
            })?;
            &rest[..end]
        }
        None if text.trim_start().starts_with('{') => text,
        None => {
            return Err(
                "it is neither a JSON report nor an HTML report with an evidence block".to_owned(),
            );
        }
    };
    let file: EvidenceFile = serde_json::from_str(json)
        .map_err(|err| format!("it is not a killswitch report: {err}"))?;
    if file.format != FORMAT {
        return Err(format!(
            "its format is {:?}, not {FORMAT:?}: make it again with this version",
            file.format
        ));
    }
    Ok(file.evidence)
}

/// The trust anchors of a PEM file (a CA, or a bundle of them); the error says why it
/// holds none.
pub fn read_ca(pem: &[u8]) -> Result<Vec<TrustAnchor<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("it is not PEM: {err}"))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".to_owned());
    }
    certs
        .iter()
        .map(|cert| webpki::anchor_from_trusted_cert(cert).map(|anchor| anchor.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("a certificate in it cannot be a trust anchor: {err:?}"))
}

/// A report whose evidence verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Receipts checked.
    pub receipts: usize,
    /// Of which signed, and verified.
    pub signed: usize,
    /// The unsigned ones.
    pub unsigned: Vec<Unsigned>,
    /// Audit entries in the segment.
    pub audit_entries: usize,
    /// Its first seq.
    pub first_seq: u64,
    /// Its last seq.
    pub last_seq: u64,
}

/// A receipt its collector did not sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsigned {
    /// Collector id.
    pub collector_id: String,
    /// Generation.
    pub generation: u64,
    /// Why, as the collector said.
    pub reason: String,
}

/// The first thing in a report's evidence that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The report embeds no audit entry.
    NoAudit,
    /// An audit entry of the segment (or one missing from it).
    Entry {
        /// Its seq.
        seq: u64,
        /// What is wrong, in words.
        problem: String,
    },
    /// A receipt.
    Receipt {
        /// Its collector and generation; `None` when it cannot be decoded.
        who: Option<(String, u64)>,
        /// Its place in the evidence, from 1.
        number: usize,
        /// What is wrong, in words.
        problem: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoAudit => f.write_str("the report embeds no audit entry"),
            Failure::Entry { seq, problem } => write!(f, "audit entry {seq}: {problem}"),
            Failure::Receipt {
                who: Some((collector, generation)),
                problem,
                ..
            } => write!(
                f,
                "the receipt of collector {collector} for generation {generation}: {problem}"
            ),
            Failure::Receipt {
                who: None,
                number,
                problem,
            } => write!(f, "receipt {number}: {problem}"),
        }
    }
}

/// Verifies `evidence` against the trust anchors `anchors` (from [`read_ca`]); with `require_signed`, an
/// unsigned receipt fails too.
pub fn verify(
    evidence: &Evidence,
    anchors: &[TrustAnchor<'_>],
    require_signed: bool,
) -> Result<Verified, Failure> {
    let generations = verify_chain(evidence)?;
    let mut unsigned = Vec::new();
    for (index, evidence) in evidence.receipts.iter().enumerate() {
        let receipt =
            v1::Receipt::decode(evidence.receipt.0.as_slice()).map_err(|err| Failure::Receipt {
                who: None,
                number: index + 1,
                problem: format!("it cannot be decoded: {err}"),
            })?;
        let fail = |problem: String| Failure::Receipt {
            who: Some((receipt.collector_id.clone(), receipt.generation)),
            number: index + 1,
            problem,
        };
        if evidence.signature.0.is_empty() {
            if require_signed {
                return Err(fail(format!(
                    "it is unsigned ({}), and --require-signed was given",
                    or_unknown(&evidence.unsigned_reason)
                )));
            }
        } else {
            verify_signed(evidence, &receipt, anchors).map_err(fail)?;
        }
        if !generations.contains(&receipt.generation) {
            return Err(fail(format!(
                "no audit entry of the report produced generation {}: the receipt is not \
                 for a change the report records",
                receipt.generation
            )));
        }
        if evidence.signature.0.is_empty() {
            unsigned.push(Unsigned {
                collector_id: receipt.collector_id,
                generation: receipt.generation,
                reason: evidence.unsigned_reason.clone(),
            });
        }
    }
    let (first_seq, last_seq) = match (evidence.audit.first(), evidence.audit.last()) {
        (Some(first), Some(last)) => (first.seq, last.seq),
        _ => return Err(Failure::NoAudit),
    };
    Ok(Verified {
        receipts: evidence.receipts.len(),
        signed: evidence.receipts.len() - unsigned.len(),
        unsigned,
        audit_entries: evidence.audit.len(),
        first_seq,
        last_seq,
    })
}

/// Checks the audit segment; returns the generations its entries produced.
fn verify_chain(evidence: &Evidence) -> Result<BTreeSet<u64>, Failure> {
    if evidence.audit.is_empty() {
        return Err(Failure::NoAudit);
    }
    let mut generations = BTreeSet::new();
    let mut previous: Option<(u64, Vec<u8>)> = None;
    for listed in &evidence.audit {
        let seq = listed.seq;
        let fail = |problem: String| Failure::Entry { seq, problem };
        if let Some((before, _)) = &previous {
            let expected = before + 1;
            if seq > expected {
                return Err(Failure::Entry {
                    seq: expected,
                    problem: format!(
                        "it is missing: the segment goes from entry {before} to entry {seq}"
                    ),
                });
            }
            if seq < expected {
                return Err(fail(format!(
                    "it comes after entry {before}: the segment is out of order"
                )));
            }
        }
        let entry = store::AuditEntry::decode(listed.stored.0.as_slice())
            .map_err(|err| fail(format!("its stored bytes cannot be decoded: {err}")))?;
        if entry.seq != seq {
            return Err(fail(format!(
                "its stored bytes say it is entry {}",
                entry.seq
            )));
        }
        if audit_hash(&entry) != entry.hash {
            return Err(fail(
                "its hash does not match its contents: it was changed after it was written"
                    .to_owned(),
            ));
        }
        match &previous {
            Some((before, hash)) if &entry.prev_hash != hash => {
                return Err(fail(format!(
                    "its prev_hash is not the hash of entry {before}: the chain is broken \
                     there"
                )));
            }
            None if seq == 1 && entry.prev_hash != [0; 32] => {
                return Err(fail(
                    "its prev_hash is not 32 zero bytes, as the first entry's must be".to_owned(),
                ));
            }
            _ => {}
        }
        generations.insert(listed.generation);
        previous = Some((seq, entry.hash));
    }
    Ok(generations)
}

/// SHA-256 over the entry encoded with an empty `hash`: the control plane's rule.
pub(crate) fn audit_hash(entry: &store::AuditEntry) -> Vec<u8> {
    let unhashed = store::AuditEntry {
        hash: Vec::new(),
        ..entry.clone()
    };
    digest::digest(&digest::SHA256, &unhashed.encode_to_vec())
        .as_ref()
        .to_vec()
}

/// Checks a signed receipt's certificate, identity and signature.
fn verify_signed(
    evidence: &super::ReceiptEvidence,
    receipt: &v1::Receipt,
    anchors: &[TrustAnchor<'_>],
) -> Result<(), String> {
    let algorithm: &dyn SignatureVerificationAlgorithm = match evidence.algorithm.as_str() {
        "ecdsa-p256-sha256" => webpki::ring::ECDSA_P256_SHA256,
        "ecdsa-p384-sha384" => webpki::ring::ECDSA_P384_SHA384,
        "ed25519" => webpki::ring::ED25519,
        "rsa-pkcs1-sha256" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        other => {
            return Err(format!(
                "its signature algorithm {other:?} is not one of ecdsa-p256-sha256, \
                 ecdsa-p384-sha384, ed25519, rsa-pkcs1-sha256"
            ));
        }
    };
    if evidence.certificate.0.is_empty() {
        return Err("it is signed but carries no certificate".to_owned());
    }
    let der = CertificateDer::from(evidence.certificate.0.as_slice());
    let cert = EndEntityCert::try_from(&der)
        .map_err(|err| format!("its certificate cannot be parsed: {err:?}"))?;
    let at = receipt
        .hook_returned_at
        .as_ref()
        .and_then(super::system_time)
        .ok_or_else(|| {
            "it has no valid hook_returned_at, the time its certificate must be valid at".to_owned()
        })?;
    let since_epoch = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "its hook_returned_at is before 1970".to_owned())?;
    cert.verify_for_usage(
        CHAIN_ALGORITHMS,
        anchors,
        &[],
        UnixTime::since_unix_epoch(since_epoch),
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|err| {
        format!(
            "its certificate does not chain to the CA in --ca for client authentication at \
             {} (when its hook returned): {err:?}",
            super::stamp(at)
        )
    })?;
    let named = collector_of(&evidence.certificate.0)?;
    if named != receipt.collector_id {
        return Err(format!(
            "its certificate is collector {named:?}'s, not {:?}'s",
            receipt.collector_id
        ));
    }
    let signed = killswitch_proto::receipt_signed_bytes(&evidence.receipt.0);
    cert.verify_signature(algorithm, &signed, &evidence.signature.0)
        .map_err(|err| {
            format!(
                "its signature does not verify with {} and its certificate's key ({err:?}): \
                 the receipt or the signature was changed",
                evidence.algorithm
            )
        })
}

/// The collector id of a certificate's SPIFFE URI SAN, `spiffe://TD/collector/ID` with an
/// optional `?labels` query.
fn collector_of(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|err| format!("its certificate cannot be parsed: {err}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|err| format!("its certificate's subject alternative names are invalid: {err}"))?;
    let uris = san
        .iter()
        .flat_map(|san| &san.value.general_names)
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let mut ids = uris.filter_map(|uri| {
        let (domain, path) = uri.strip_prefix("spiffe://")?.split_once('/')?;
        let id = path.strip_prefix("collector/")?;
        let id = id.split_once('?').map_or(id, |(id, _)| id);
        (!domain.is_empty() && !id.is_empty() && !id.contains('/')).then(|| id.to_owned())
    });
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        (Some(_), Some(_)) => {
            Err("its certificate names more than one collector SPIFFE id".to_owned())
        }
        (None, _) => Err(
            "its certificate names no collector (a spiffe://TD/collector/ID URI SAN)".to_owned(),
        ),
    }
}

fn or_unknown(reason: &str) -> &str {
    if reason.is_empty() {
        "no reason given"
    } else {
        reason
    }
}
