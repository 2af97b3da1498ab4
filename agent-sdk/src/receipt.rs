//! Receipts: what a collector did with a state change, signed with the private key of its
//! mTLS client certificate (see `Receipt` and `SignedReceipt` in the protocol).
//!
//! [`Signer::from_pem`] loads the key given to
//! [`ClientBuilder::tls`](crate::ClientBuilder::tls) once, at start; [`Receipts::seal`]
//! encodes a receipt and signs `killswitch_proto::receipt_signed_bytes` of it. A collector
//! without a client certificate seals its receipts unsigned, saying why.

use std::fmt;

use killswitch_proto::prost::Message;
use killswitch_proto::v1::{Receipt, SignedReceipt};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::warn;

use crate::error::BuildError;

/// The reason an unsigned receipt gives when the collector connects without `tls()`.
pub(crate) const NO_CLIENT_CERTIFICATE: &str =
    "the collector has no client certificate (it connects without TLS)";

/// How a collector seals its receipts: signed with its key, or unsigned and why.
#[derive(Debug)]
pub(crate) enum Receipts {
    /// Signed with the key of the collector's client certificate.
    Signed(Box<Signer>),
    /// Not signed, for this reason (e.g. [`NO_CLIENT_CERTIFICATE`]).
    Unsigned(String),
}

impl Receipts {
    /// Encodes `receipt` and signs it. Never fails: if signing does (it should not), the
    /// receipt goes unsigned with the reason, and a warning is logged.
    pub(crate) fn seal(&self, receipt: &Receipt) -> SignedReceipt {
        let encoded = receipt.encode_to_vec();
        let signer = match self {
            Self::Signed(signer) => signer,
            Self::Unsigned(reason) => return unsigned(encoded, reason.clone()),
        };
        match signer.sign(&killswitch_proto::receipt_signed_bytes(&encoded)) {
            Ok(signature) => SignedReceipt {
                receipt: encoded,
                signature,
                certificate: signer.certificate.clone(),
                algorithm: signer.key.algorithm().to_owned(),
                unsigned_reason: String::new(),
            },
            Err(ring::error::Unspecified) => {
                let reason = format!(
                    "signing with the collector's {} key failed",
                    signer.key.algorithm()
                );
                warn!(
                    program = %receipt.program,
                    generation = receipt.generation,
                    %reason,
                    "sending the receipt unsigned",
                );
                unsigned(encoded, reason)
            }
        }
    }
}

/// An unsigned receipt for the encoded `receipt`.
fn unsigned(receipt: Vec<u8>, reason: String) -> SignedReceipt {
    SignedReceipt {
        receipt,
        unsigned_reason: reason,
        ..SignedReceipt::default()
    }
}

/// The collector's private key and the certificate it belongs to.
pub(crate) struct Signer {
    key: SigningKey,
    /// The leaf certificate, DER: the first certificate of the PEM given to `tls()`.
    certificate: Vec<u8>,
    rng: SystemRandom,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.key.algorithm())
            .field(
                "certificate",
                &format_args!("{} bytes", self.certificate.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the signer from what was given to `tls()`: the collector's certificate (the
    /// first CERTIFICATE block is the leaf) and its private key, PKCS#8 (ECDSA P-256 or
    /// P-384, Ed25519, RSA), PKCS#1 (RSA) or SEC1 (ECDSA P-256 or P-384).
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidTls`] when either PEM holds no certificate or key (the TLS
    /// checks report that first), [`BuildError::ReceiptKey`] for a key of another type,
    /// naming it and how to convert it.
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, BuildError> {
        let certificate = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| BuildError::InvalidTls {
                reason: "the certificate (the second argument) holds no PEM certificate".to_owned(),
            })?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| BuildError::InvalidTls {
                reason: format!("the private key (the third argument) is not PEM ({error})"),
            })?;
        let rng = SystemRandom::new();
        let key = SigningKey::load(&key, &rng)?;
        Ok(Self {
            key,
            certificate: certificate.to_vec(),
            rng,
        })
    }

    /// The signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.key {
            SigningKey::EcdsaP256(pair) | SigningKey::EcdsaP384(pair) => {
                Ok(pair.sign(&self.rng, message)?.as_ref().to_vec())
            }
            SigningKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            SigningKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)?;
                Ok(signature)
            }
        }
    }
}

/// A private key ring signs receipts with.
enum SigningKey {
    /// "ecdsa-p256-sha256": an ASN.1 DER signature.
    EcdsaP256(EcdsaKeyPair),
    /// "ecdsa-p384-sha384": an ASN.1 DER signature.
    EcdsaP384(EcdsaKeyPair),
    /// "ed25519".
    Ed25519(Ed25519KeyPair),
    /// "rsa-pkcs1-sha256".
    Rsa(RsaKeyPair),
}

/// Object identifiers (DER contents) of the key types a PKCS#8 key may hold.
mod oid {
    pub(super) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub(super) const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub(super) const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub(super) const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    pub(super) const SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
    pub(super) const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub(super) const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    pub(super) const DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
    pub(super) const X25519: &[u8] = &[0x2b, 0x65, 0x6e];
    pub(super) const X448: &[u8] = &[0x2b, 0x65, 0x6f];
    pub(super) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    pub(super) const ED448: &[u8] = &[0x2b, 0x65, 0x71];
}

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0]` in an ECPrivateKey: the curve.
const EC_PARAMETERS: u8 = 0xa0;

impl SigningKey {
    /// Loads `key` for signing.
    fn load(key: &PrivateKeyDer<'_>, rng: &SystemRandom) -> Result<Self, BuildError> {
        match key {
            PrivateKeyDer::Pkcs8(der) => Self::from_pkcs8(der.secret_pkcs8_der(), rng),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(Self::Rsa)
                .map_err(|rejected| unusable("an RSA key (PKCS#1)", &rejected)),
            PrivateKeyDer::Sec1(der) => Self::from_sec1(der.secret_sec1_der(), rng),
            _ => Err(BuildError::ReceiptKey {
                key: "a key of a PEM type this SDK does not know".to_owned(),
            }),
        }
    }

    /// Loads a PKCS#8 key, by the algorithm it names.
    fn from_pkcs8(der: &[u8], rng: &SystemRandom) -> Result<Self, BuildError> {
        let Some((algorithm, parameter)) = pkcs8_algorithm(der) else {
            return Err(BuildError::ReceiptKey {
                key: "a PKCS#8 key whose algorithm cannot be read".to_owned(),
            });
        };
        match (algorithm, parameter) {
            (oid::EC_PUBLIC_KEY, Some(oid::P256)) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, rng)
                    .map(Self::EcdsaP256)
                    .map_err(|rejected| unusable("an ECDSA P-256 key (PKCS#8)", &rejected))
            }
            (oid::EC_PUBLIC_KEY, Some(oid::P384)) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der, rng)
                    .map(Self::EcdsaP384)
                    .map_err(|rejected| unusable("an ECDSA P-384 key (PKCS#8)", &rejected))
            }
            (oid::ED25519, _) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Self::Ed25519)
                .map_err(|rejected| unusable("an Ed25519 key (PKCS#8)", &rejected)),
            (oid::RSA, _) => RsaKeyPair::from_pkcs8(der)
                .map(Self::Rsa)
                .map_err(|rejected| unusable("an RSA key (PKCS#8)", &rejected)),
            (algorithm, parameter) => Err(BuildError::ReceiptKey {
                key: key_name(algorithm, parameter),
            }),
        }
    }

    /// Loads a SEC1 EC key (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey`
    /// writes), wrapped as the PKCS#8 key ring reads.
    fn from_sec1(der: &[u8], rng: &SystemRandom) -> Result<Self, BuildError> {
        type Make = fn(EcdsaKeyPair) -> SigningKey;
        let (signing, curve, name, make): (_, _, _, Make) = match sec1_curve(der) {
            Some(oid::P256) => (
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                oid::P256,
                "an ECDSA P-256 key (SEC1)",
                Self::EcdsaP256,
            ),
            Some(oid::P384) => (
                &ECDSA_P384_SHA384_ASN1_SIGNING,
                oid::P384,
                "an ECDSA P-384 key (SEC1)",
                Self::EcdsaP384,
            ),
            Some(curve) => {
                return Err(BuildError::ReceiptKey {
                    key: key_name(oid::EC_PUBLIC_KEY, Some(curve)).replace("PKCS#8", "SEC1"),
                });
            }
            None => {
                return Err(BuildError::ReceiptKey {
                    key: "an EC key (SEC1) whose curve cannot be read".to_owned(),
                });
            }
        };
        let algorithm_id = [
            der_encode(OBJECT_IDENTIFIER, oid::EC_PUBLIC_KEY),
            der_encode(OBJECT_IDENTIFIER, curve),
        ]
        .concat();
        let pkcs8 = der_encode(
            SEQUENCE,
            &[
                der_encode(INTEGER, &[0]),
                der_encode(SEQUENCE, &algorithm_id),
                der_encode(OCTET_STRING, der),
            ]
            .concat(),
        );
        EcdsaKeyPair::from_pkcs8(signing, &pkcs8, rng)
            .map(make)
            .map_err(|rejected| unusable(name, &rejected))
    }

    /// The algorithm as a `SignedReceipt` names it.
    fn algorithm(&self) -> &'static str {
        match self {
            Self::EcdsaP256(_) => "ecdsa-p256-sha256",
            Self::EcdsaP384(_) => "ecdsa-p384-sha384",
            Self::Ed25519(_) => "ed25519",
            Self::Rsa(_) => "rsa-pkcs1-sha256",
        }
    }
}

/// The error for a key of a supported type that ring still refuses (e.g. an RSA key
/// shorter than 2048 bits).
fn unusable(key: &str, rejected: &ring::error::KeyRejected) -> BuildError {
    BuildError::ReceiptKey {
        key: format!("{key} that ring rejects ({rejected})"),
    }
}

/// A key type's name for error messages, e.g. "an ECDSA P-521 key (PKCS#8)".
fn key_name(algorithm: &[u8], parameter: Option<&[u8]>) -> String {
    let name = match (algorithm, parameter) {
        (oid::EC_PUBLIC_KEY, Some(oid::P521)) => "an ECDSA P-521 key",
        (oid::EC_PUBLIC_KEY, Some(oid::SECP256K1)) => "an ECDSA secp256k1 key",
        (oid::EC_PUBLIC_KEY, Some(curve)) => {
            return format!("an EC key on the curve {} (PKCS#8)", dotted(curve));
        }
        (oid::EC_PUBLIC_KEY, None) => "an EC key that does not name its curve",
        (oid::RSA_PSS, _) => "an RSA-PSS key",
        (oid::DSA, _) => "a DSA key",
        (oid::X25519, _) => "an X25519 key (key agreement only)",
        (oid::X448, _) => "an X448 key (key agreement only)",
        (oid::ED448, _) => "an Ed448 key",
        (algorithm, _) => return format!("a key of algorithm {} (PKCS#8)", dotted(algorithm)),
    };
    format!("{name} (PKCS#8)")
}

/// An object identifier's DER contents in dotted form, e.g. `1.3.132.0.35`.
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.extend([first, value - 40 * first]);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The algorithm and its parameter (an EC key's curve), as object identifiers, of a
/// PKCS#8 `PrivateKeyInfo`.
fn pkcs8_algorithm(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let info = der_expect(der, SEQUENCE)?.0;
    let (_version, rest) = der_expect(info, INTEGER)?;
    let algorithm_id = der_expect(rest, SEQUENCE)?.0;
    let (algorithm, rest) = der_expect(algorithm_id, OBJECT_IDENTIFIER)?;
    let parameter = der_expect(rest, OBJECT_IDENTIFIER).map(|(oid, _)| oid);
    Some((algorithm, parameter))
}

/// The curve of a SEC1 `ECPrivateKey`, as an object identifier: its `[0]` parameters,
/// or, when absent, P-256 or P-384 by the length of the private key.
fn sec1_curve(der: &[u8]) -> Option<&[u8]> {
    let key = der_expect(der, SEQUENCE)?.0;
    let (_version, rest) = der_expect(key, INTEGER)?;
    let (private_key, rest) = der_expect(rest, OCTET_STRING)?;
    let named = der_expect(rest, EC_PARAMETERS)
        .and_then(|(parameters, _)| der_expect(parameters, OBJECT_IDENTIFIER))
        .map(|(curve, _)| curve);
    named.or(match private_key.len() {
        32 => Some(oid::P256),
        48 => Some(oid::P384),
        _ => None,
    })
}

/// Reads the DER element at the start of `input`, which must have the tag `tag`: its
/// contents and what follows it.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&actual, rest) = input.split_first()?;
    if actual != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0_usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// The DER element with `tag` and `contents`.
fn der_encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = contents.len().to_be_bytes();
    match u8::try_from(contents.len()) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let skip = length.iter().take_while(|&&byte| byte == 0).count();
            let count = length.len() - skip;
            // At most size_of::<usize>() bytes: fits in the low 7 bits.
            out.push(0x80 | u8::try_from(count).unwrap_or(0x7f));
            out.extend_from_slice(&length[skip..]);
        }
    }
    out.extend_from_slice(contents);
    out
}

/// Helpers for the benchmark in `benches/receipt.rs`. Only with the `bench` feature,
/// which no collector should enable.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub(crate) mod bench {
    use killswitch_proto::v1::{Receipt, RunState, SignedReceipt};

    use super::{Receipts, Signer};
    use crate::error::BuildError;

    /// Seals receipts as a collector with this certificate and key would.
    #[derive(Debug)]
    pub struct ReceiptSealer(Receipts);

    impl ReceiptSealer {
        /// Loads the key, as `ClientBuilder::tls` would.
        ///
        /// # Errors
        ///
        /// The certificate or key is one a collector could not start with.
        pub fn new(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, BuildError> {
            Signer::from_pem(cert_pem, key_pem)
                .map(|signer| Self(Receipts::Signed(Box::new(signer))))
        }

        /// Builds, encodes and signs the receipt of a typical pause at `generation`.
        #[must_use]
        pub fn seal_pause(&self, generation: u64) -> SignedReceipt {
            let now = killswitch_proto::timestamp(std::time::SystemTime::now());
            self.0.seal(&Receipt {
                collector_id: "laptop-4711".to_owned(),
                program: "keystrokes".to_owned(),
                generation,
                effective: RunState::Paused.into(),
                scope: "region=eu-west".to_owned(),
                cause: "update".to_owned(),
                gate_changed_at: Some(now),
                hook_returned_at: Some(now),
                error: String::new(),
                purged: true,
                committed_at: Some(now),
                sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{NO_CLIENT_CERTIFICATE, Receipts, Signer, dotted};
    use crate::error::BuildError;
    use killswitch_proto::prost::Message;
    use killswitch_proto::v1::{Receipt, RunState, SignedReceipt};
    use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
    use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};
    use std::time::{Duration, SystemTime};

    const RSA_PKCS1: &str = include_str!("../testdata/rsa-2048.pkcs1.pem");
    const RSA_PKCS8: &str = include_str!("../testdata/rsa-2048.pkcs8.pem");
    const P256_SEC1: &str = include_str!("../testdata/p256.sec1.pem");
    const P256_PKCS8: &str = include_str!("../testdata/p256.pkcs8.pem");
    const P521_PKCS8: &str = include_str!("../testdata/p521.pkcs8.pem");
    const ED448_PKCS8: &str = include_str!("../testdata/ed448.pkcs8.pem");
    const RSA_1024_PKCS8: &str = include_str!("../testdata/rsa-1024.pkcs8.pem");

    /// A self-signed certificate for `key`, PEM, and its DER.
    pub(crate) fn certificate(key: &KeyPair) -> (String, Vec<u8>) {
        let params = CertificateParams::new(vec!["c1".to_owned()]).expect("params");
        let cert = params.self_signed(key).expect("certificate");
        (cert.pem(), cert.der().to_vec())
    }

    /// A new key for `algorithm`, and a self-signed certificate for it: (cert PEM, cert
    /// DER, key PEM).
    pub(crate) fn generated(algorithm: &'static SignatureAlgorithm) -> (String, Vec<u8>, String) {
        let key = KeyPair::generate_for(algorithm).expect("key");
        let (pem, der) = certificate(&key);
        (pem, der, key.serialize_pem())
    }

    /// A receipt of a pause.
    fn receipt() -> Receipt {
        let now = killswitch_proto::timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
        );
        Receipt {
            collector_id: "c1".to_owned(),
            program: "keys".to_owned(),
            generation: 7,
            effective: RunState::Paused.into(),
            scope: "region=emea".to_owned(),
            cause: "update".to_owned(),
            gate_changed_at: Some(now),
            hook_returned_at: Some(now),
            error: String::new(),
            purged: true,
            committed_at: Some(now),
            sdk_version: "0.1.0".to_owned(),
        }
    }

    /// Checks `signed`'s signature against its certificate, as a verifier would.
    pub(crate) fn verify(
        signed: &SignedReceipt,
        algorithm: &dyn SignatureVerificationAlgorithm,
    ) -> Result<(), webpki::Error> {
        let der = CertificateDer::from(signed.certificate.as_slice());
        let certificate = webpki::EndEntityCert::try_from(&der)?;
        certificate.verify_signature(
            algorithm,
            &killswitch_proto::receipt_signed_bytes(&signed.receipt),
            &signed.signature,
        )
    }

    /// Signs a receipt with `key_pem`, then checks it names `name`, carries the leaf
    /// `cert_der`, verifies with `algorithm`, and no longer does once a byte changed.
    fn check_signs(
        cert_pem: &str,
        cert_der: &[u8],
        key_pem: &str,
        name: &str,
        algorithm: &dyn SignatureVerificationAlgorithm,
    ) {
        let signer = Signer::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect(name);
        let signed = Receipts::Signed(Box::new(signer)).seal(&receipt());
        assert_eq!(signed.algorithm, name);
        assert_eq!(signed.certificate, cert_der, "{name}");
        assert_eq!(signed.unsigned_reason, "", "{name}");
        assert_eq!(
            Receipt::decode(signed.receipt.as_slice()),
            Ok(receipt()),
            "{name}"
        );
        assert_eq!(verify(&signed, algorithm), Ok(()), "{name}");
        for edit in [0, signed.receipt.len() / 2, signed.receipt.len() - 1] {
            let mut edited = signed.clone();
            edited.receipt[edit] ^= 0x01;
            assert!(verify(&edited, algorithm).is_err(), "{name}, byte {edit}");
        }
        let mut edited = signed.clone();
        let last = edited.signature.len() - 1;
        edited.signature[last] ^= 0x01;
        assert!(verify(&edited, algorithm).is_err(), "{name}, signature");
    }

    #[test]
    fn signs_with_every_supported_key_type() {
        for (algorithm, name, verifier) in [
            (
                &rcgen::PKCS_ECDSA_P256_SHA256,
                "ecdsa-p256-sha256",
                webpki::ring::ECDSA_P256_SHA256,
            ),
            (
                &rcgen::PKCS_ECDSA_P384_SHA384,
                "ecdsa-p384-sha384",
                webpki::ring::ECDSA_P384_SHA384,
            ),
            (&rcgen::PKCS_ED25519, "ed25519", webpki::ring::ED25519),
        ] {
            let (cert_pem, cert_der, key_pem) = generated(algorithm);
            check_signs(&cert_pem, &cert_der, &key_pem, name, verifier);
        }

        let rsa =
            KeyPair::from_pem_and_sign_algo(RSA_PKCS8, &rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let (cert_pem, cert_der) = certificate(&rsa);
        for key_pem in [RSA_PKCS8, RSA_PKCS1] {
            check_signs(
                &cert_pem,
                &cert_der,
                key_pem,
                "rsa-pkcs1-sha256",
                webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            );
        }

        let p256 = KeyPair::from_pem(P256_PKCS8).expect("P-256 key");
        let (cert_pem, cert_der) = certificate(&p256);
        for key_pem in [P256_PKCS8, P256_SEC1] {
            check_signs(
                &cert_pem,
                &cert_der,
                key_pem,
                "ecdsa-p256-sha256",
                webpki::ring::ECDSA_P256_SHA256,
            );
        }
    }

    #[test]
    fn carries_the_leaf_of_a_chain() {
        let (leaf_pem, leaf_der, key_pem) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (issuer_pem, _, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let chain = format!("{leaf_pem}{issuer_pem}");
        let signer = Signer::from_pem(chain.as_bytes(), key_pem.as_bytes()).expect("signer");
        assert_eq!(
            Receipts::Signed(Box::new(signer))
                .seal(&receipt())
                .certificate,
            leaf_der
        );
    }

    #[test]
    fn without_a_certificate_receipts_are_unsigned_and_say_why() {
        let receipts = Receipts::Unsigned(NO_CLIENT_CERTIFICATE.to_owned());
        let signed = receipts.seal(&receipt());
        assert_eq!(Receipt::decode(signed.receipt.as_slice()), Ok(receipt()));
        assert!(signed.signature.is_empty());
        assert!(signed.certificate.is_empty());
        assert!(signed.algorithm.is_empty());
        assert_eq!(signed.unsigned_reason, NO_CLIENT_CERTIFICATE);
    }

    #[test]
    fn unusable_keys_are_refused_with_their_type_and_a_way_out() {
        let (cert_pem, _, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let refused =
            |key_pem: &str| match Signer::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()) {
                Ok(signer) => panic!("{signer:?} accepted"),
                Err(error @ BuildError::ReceiptKey { .. }) => error.to_string(),
                Err(error) => panic!("another error: {error}"),
            };
        for (key_pem, what) in [
            (P521_PKCS8, "it is an ECDSA P-521 key (PKCS#8)."),
            (ED448_PKCS8, "it is an Ed448 key (PKCS#8)."),
            (
                RSA_1024_PKCS8,
                "it is an RSA key (PKCS#8) that ring rejects (TooSmall).",
            ),
        ] {
            let message = refused(key_pem);
            assert!(
                message.starts_with(
                    "the private key (the third argument of `tls()`) cannot sign receipts: "
                ),
                "{message}"
            );
            assert!(message.contains(what), "{message}");
            assert!(
                message.contains("`openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY-pkcs8.pem`"),
                "{message}"
            );
        }
        let not_a_key = Signer::from_pem(cert_pem.as_bytes(), cert_pem.as_bytes());
        assert!(
            matches!(not_a_key, Err(BuildError::InvalidTls { .. })),
            "{not_a_key:?}"
        );
    }

    #[test]
    fn object_identifiers_read_as_dotted_numbers() {
        assert_eq!(dotted(super::oid::P521), "1.3.132.0.35");
        assert_eq!(dotted(super::oid::RSA), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(&[0x88, 0x37, 0x03]), "2.999.3");
    }
}
