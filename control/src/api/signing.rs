//! Checking an operator's signed resume statement before it is stored.
//!
//! The control plane is not what collectors trust (they check the signatures
//! themselves), but it refuses what collectors would refuse, with a message a person can
//! act on, and it binds each signature to the operator who sent it: the key must be the
//! `signing_key` that `auth.toml` registers for the caller.

use std::time::{Duration, SystemTime};

use killswitch_proto::prost::Message;
use killswitch_proto::v1::{ResumeAuthorization, ResumeStatement, Signature};
use ring::signature::{ED25519, UnparsedPublicKey};

use crate::api::auth::Signing;
use crate::model::{Generation, ProgramName};

/// Longest a signed statement may stay valid, from now.
pub const MAX_STATEMENT_LIFETIME: Duration = Duration::from_secs(25 * 3600);

/// Why a signed resume is refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The caller has a signing key but sent no signature.
    #[error(
        "operator {0} has a signing_key in auth.toml, so their resumes and approvals must be signed: add --signing-key FILE (or set KILLSWITCH_SIGNING_KEY)"
    )]
    Unsigned(String),
    /// The caller has no signing key but sent a signature.
    #[error(
        "operator {0} has no signing_key in auth.toml: add the line `killswitch keys new` printed to their entry, or run the command without --signing-key"
    )]
    Unregistered(String),
    /// The statement bytes are not a `ResumeStatement`.
    #[error("the signed resume statement cannot be decoded: {0}")]
    Undecodable(String),
    /// A resume carries one signature, the caller's.
    #[error("a resume carries exactly one signature, the caller's; it has {0}")]
    SignatureCount(usize),
    /// The statement names another program.
    #[error("the signed statement is for program {statement:?}, not {program}")]
    OtherProgram {
        /// In the statement.
        statement: String,
        /// Being resumed.
        program: ProgramName,
    },
    /// The statement replaces another generation.
    #[error(
        "the signed statement replaces generation {statement}, but the program is at generation {current}: run the command again"
    )]
    OtherGeneration {
        /// In the statement.
        statement: Generation,
        /// The program's.
        current: Generation,
    },
    /// The statement expired, or expires too far ahead.
    #[error("the signed statement {0}: run the command again")]
    Expiry(&'static str),
    /// The key is not the caller's registered one.
    #[error("the statement is signed with a key that is not the signing_key registered for {0}")]
    WrongKey(String),
    /// The signature does not verify.
    #[error("the signature over the resume statement is not valid")]
    BadSignature,
    /// An approver must sign, but the request carries no statement.
    #[error(
        "the resume request was not signed, so there is nothing to sign: the requester must resume with --signing-key"
    )]
    NothingToSign,
}

impl SignatureError {
    /// Whether the request itself is malformed (as opposed to not acceptable now).
    #[must_use]
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::Undecodable(_) | Self::SignatureCount(_))
    }
}

/// Checks the statement of a resume: for `program`, replacing `current`, valid now.
pub fn check_statement(
    statement: &[u8],
    program: &ProgramName,
    current: Generation,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let decoded = ResumeStatement::decode(statement)
        .map_err(|e| SignatureError::Undecodable(e.to_string()))?;
    if decoded.program != program.as_str() {
        let mut shown = decoded.program;
        shown.truncate(shown.floor_char_boundary_compat(64));
        return Err(SignatureError::OtherProgram {
            statement: shown,
            program: program.clone(),
        });
    }
    if decoded.replaces_generation != current {
        return Err(SignatureError::OtherGeneration {
            statement: decoded.replaces_generation,
            current,
        });
    }
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if decoded.expires_at_unix <= now_unix {
        return Err(SignatureError::Expiry("has expired"));
    }
    let max = i64::try_from(MAX_STATEMENT_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    if decoded.expires_at_unix - now_unix > max {
        return Err(SignatureError::Expiry(
            "expires more than 25 hours from now",
        ));
    }
    Ok(())
}

/// Checks `signature` over `statement` as `actor`'s, given what `signing` requires.
pub fn check_signature(
    statement: &[u8],
    signature: &Signature,
    actor: &str,
    signing: Signing,
) -> Result<(), SignatureError> {
    match signing {
        Signing::Unregistered => return Err(SignatureError::Unregistered(actor.to_owned())),
        Signing::Required(key) if signature.public_key != key => {
            return Err(SignatureError::WrongKey(actor.to_owned()));
        }
        Signing::Required(_) | Signing::Optional => {}
    }
    UnparsedPublicKey::new(&ED25519, &signature.public_key)
        .verify(
            &killswitch_proto::resume_signed_bytes(statement),
            &signature.signature,
        )
        .map_err(|_| SignatureError::BadSignature)
}

/// Checks a resume's authorization (statement and the caller's one signature) for
/// `program` at generation `current`; `None` when it carries none and none is required.
pub fn check_resume(
    authorization: Option<&ResumeAuthorization>,
    program: &ProgramName,
    current: Generation,
    actor: &str,
    signing: Signing,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let Some(authorization) = authorization else {
        return match signing {
            Signing::Required(_) => Err(SignatureError::Unsigned(actor.to_owned())),
            Signing::Optional | Signing::Unregistered => Ok(()),
        };
    };
    let [signature] = authorization.signatures.as_slice() else {
        return Err(SignatureError::SignatureCount(
            authorization.signatures.len(),
        ));
    };
    check_statement(&authorization.statement, program, current, now)?;
    check_signature(&authorization.statement, signature, actor, signing)
}

/// Checks an approver's `signature` over the request's `authorization`, which replaces
/// `replaces` of `program`.
pub fn check_approval(
    request: Option<&ResumeAuthorization>,
    signature: Option<&Signature>,
    program: &ProgramName,
    replaces: Generation,
    actor: &str,
    signing: Signing,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let Some(signature) = signature else {
        return match signing {
            Signing::Required(_) => Err(SignatureError::Unsigned(actor.to_owned())),
            Signing::Optional | Signing::Unregistered => Ok(()),
        };
    };
    let request = request.ok_or(SignatureError::NothingToSign)?;
    check_statement(&request.statement, program, replaces, now)?;
    check_signature(&request.statement, signature, actor, signing)
}

/// `str::floor_char_boundary`, which is not stable yet.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, index: usize) -> usize {
        let mut end = index.min(self.len());
        while !self.is_char_boundary(end) {
            end -= 1;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse")
    }

    fn key(pair: &Ed25519KeyPair) -> [u8; 32] {
        <[u8; 32]>::try_from(pair.public_key().as_ref()).expect("32 bytes")
    }

    fn signed(
        pair: &Ed25519KeyPair,
        program: &str,
        replaces: u64,
        expires_in: i64,
    ) -> ResumeAuthorization {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let statement = ResumeStatement {
            program: program.to_owned(),
            replaces_generation: replaces,
            expires_at_unix: i64::try_from(now).expect("fits") + expires_in,
            nonce: vec![1; 16],
        }
        .encode_to_vec();
        let signature = pair.sign(&killswitch_proto::resume_signed_bytes(&statement));
        ResumeAuthorization {
            statement,
            signatures: vec![Signature {
                public_key: pair.public_key().as_ref().to_vec(),
                signature: signature.as_ref().to_vec(),
            }],
        }
    }

    #[test]
    fn resumes_are_checked_against_program_generation_expiry_and_key() {
        let (alice, mallory) = (key_pair(), key_pair());
        let demo = ProgramName::parse("demo").expect("valid");
        let now = SystemTime::now();
        let check = |auth: Option<ResumeAuthorization>, signing: Signing| {
            check_resume(auth.as_ref(), &demo, 7, "alice", signing, now)
        };
        let required = Signing::Required(key(&alice));
        assert_eq!(
            check(Some(signed(&alice, "demo", 7, 900)), required),
            Ok(())
        );
        assert_eq!(check(None, Signing::Optional), Ok(()));
        assert_eq!(check(None, Signing::Unregistered), Ok(()));
        assert_eq!(
            check(None, required),
            Err(SignatureError::Unsigned("alice".into()))
        );
        assert_eq!(
            check(Some(signed(&alice, "demo", 7, 900)), Signing::Unregistered),
            Err(SignatureError::Unregistered("alice".into()))
        );
        assert!(matches!(
            check(Some(signed(&alice, "other", 7, 900)), required),
            Err(SignatureError::OtherProgram { .. })
        ));
        assert!(matches!(
            check(Some(signed(&alice, "demo", 6, 900)), required),
            Err(SignatureError::OtherGeneration {
                statement: 6,
                current: 7
            })
        ));
        assert!(matches!(
            check(Some(signed(&alice, "demo", 7, -1)), required),
            Err(SignatureError::Expiry(_))
        ));
        assert_eq!(
            check(Some(signed(&mallory, "demo", 7, 900)), required),
            Err(SignatureError::WrongKey("alice".into()))
        );
        let mut forged = signed(&alice, "demo", 7, 900);
        forged.signatures[0].signature[5] ^= 0x10;
        assert_eq!(
            check(Some(forged), required),
            Err(SignatureError::BadSignature)
        );
        let mut two = signed(&alice, "demo", 7, 900);
        two.signatures.push(two.signatures[0].clone());
        assert_eq!(
            check(Some(two), required),
            Err(SignatureError::SignatureCount(2))
        );
    }
}
