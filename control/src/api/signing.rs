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
    /// The statement names another scope (selector, stages) than the request.
    #[error(
        "the signed statement's {what} is {statement}, but the request's is {request}: a statement opens only the scope it names (run the command again)"
    )]
    OtherScope {
        /// `selector`, `stages` or `stage interval`.
        what: &'static str,
        /// In the statement.
        statement: String,
        /// In the request.
        request: String,
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

/// What a resume opens, which its signed statement must name exactly: collectors open
/// their gates only inside the scope the statement names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The canonical selector of a scoped resume; empty for every collector.
    pub selector: &'a str,
    /// A staged resume's stages; empty when not staged.
    pub stages_percent: &'a [u32],
    /// A staged resume's least time between stages, in milliseconds.
    pub stage_interval_ms: u64,
}

/// How far ahead of this replica's clock a statement may say it was signed.
const CLOCK_SKEW_SECS: i64 = 60;

/// The resume a signed statement must describe.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// The program resumed.
    pub program: &'a ProgramName,
    /// The generation the resume replaces: the program's current one.
    pub replaces: Generation,
    /// Which collectors it opens.
    pub scope: Scope<'a>,
}

/// Checks the statement of `resume`: for its program, replacing its generation, for
/// exactly its scope, valid now.
pub fn check_statement(
    statement: &[u8],
    resume: Resume<'_>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let Resume {
        program,
        replaces: current,
        scope,
    } = resume;
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
    check_scope(&decoded, scope)?;
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if decoded.issued_at_unix > now_unix.saturating_add(CLOCK_SKEW_SECS) {
        return Err(SignatureError::Expiry(
            "says it was signed more than a minute from now (check the signer's clock)",
        ));
    }
    if !decoded.stages_percent.is_empty() && decoded.issued_at_unix <= 0 {
        return Err(SignatureError::Expiry(
            "has no signing time, which a staged resume needs to time its stages",
        ));
    }
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

/// Checks that `statement` names exactly `scope`.
fn check_scope(statement: &ResumeStatement, scope: Scope<'_>) -> Result<(), SignatureError> {
    let shown = |selector: &str| {
        if selector.is_empty() {
            "every collector".to_owned()
        } else {
            format!("{:?}", killswitch_proto::contract::quoted(selector))
        }
    };
    if statement.selector != scope.selector {
        return Err(SignatureError::OtherScope {
            what: "selector",
            statement: shown(&statement.selector),
            request: shown(scope.selector),
        });
    }
    let stages = |stages: &[u32]| {
        if stages.is_empty() {
            "none (not staged)".to_owned()
        } else {
            stages
                .iter()
                .map(|p| format!("{p}%"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    if statement.stages_percent != scope.stages_percent {
        return Err(SignatureError::OtherScope {
            what: "stages",
            statement: stages(&statement.stages_percent),
            request: stages(scope.stages_percent),
        });
    }
    if !scope.stages_percent.is_empty() && statement.stage_interval_ms != scope.stage_interval_ms {
        return Err(SignatureError::OtherScope {
            what: "stage interval",
            statement: format!("{} ms", statement.stage_interval_ms),
            request: format!("{} ms", scope.stage_interval_ms),
        });
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
/// `resume`; `None` when it carries none and none is required.
pub fn check_resume(
    authorization: Option<&ResumeAuthorization>,
    resume: Resume<'_>,
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
    check_statement(&authorization.statement, resume, now)?;
    check_signature(&authorization.statement, signature, actor, signing)
}

/// Checks an approver's `signature` over the request's `authorization`, which is for
/// `resume`.
pub fn check_approval(
    request: Option<&ResumeAuthorization>,
    signature: Option<&Signature>,
    resume: Resume<'_>,
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
    check_statement(&request.statement, resume, now)?;
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
        sign_statement(pair, |_| {}, program, replaces, expires_in)
    }

    /// A statement as `signed` makes it, changed by `edit` before it is signed.
    fn sign_statement(
        pair: &Ed25519KeyPair,
        edit: impl FnOnce(&mut ResumeStatement),
        program: &str,
        replaces: u64,
        expires_in: i64,
    ) -> ResumeAuthorization {
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("fits");
        let mut statement = ResumeStatement {
            program: program.to_owned(),
            replaces_generation: replaces,
            expires_at_unix: now + expires_in,
            nonce: vec![1; 16],
            issued_at_unix: now,
            ..ResumeStatement::default()
        };
        edit(&mut statement);
        let statement = statement.encode_to_vec();
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
            let resume = Resume {
                program: &demo,
                replaces: 7,
                scope: Scope::default(),
            };
            check_resume(auth.as_ref(), resume, "alice", signing, now)
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

    #[test]
    fn a_statement_opens_only_the_scope_it_names() {
        let alice = key_pair();
        let demo = ProgramName::parse("demo").expect("valid");
        let now = SystemTime::now();
        let required = Signing::Required(key(&alice));
        let scoped = |selector: &str, stages: &[u32], interval: u64| {
            let stages = stages.to_vec();
            sign_statement(
                &alice,
                |s| {
                    s.selector = selector.to_owned();
                    s.stages_percent = stages;
                    s.stage_interval_ms = interval;
                },
                "demo",
                7,
                900,
            )
        };
        let check = |auth: ResumeAuthorization, scope: Scope<'_>| {
            let resume = Resume {
                program: &demo,
                replaces: 7,
                scope,
            };
            check_resume(Some(&auth), resume, "alice", required, now)
        };
        let emea = Scope {
            selector: "region=emea",
            ..Scope::default()
        };
        let staged = Scope {
            stages_percent: &[10, 100],
            stage_interval_ms: 60_000,
            ..Scope::default()
        };
        assert_eq!(check(scoped("region=emea", &[], 0), emea), Ok(()));
        assert_eq!(check(scoped("", &[10, 100], 60_000), staged), Ok(()));
        // A whole-program statement does not stand for a scoped or staged request, nor
        // the other way round, nor one scope for another.
        for (auth, scope, what) in [
            (scoped("", &[], 0), emea, "selector"),
            (scoped("region=emea", &[], 0), Scope::default(), "selector"),
            (scoped("region=us", &[], 0), emea, "selector"),
            (scoped("", &[], 0), staged, "stages"),
            (scoped("", &[50, 100], 60_000), staged, "stages"),
            (scoped("", &[10, 100], 1_000), staged, "stage interval"),
        ] {
            match check(auth, scope) {
                Err(SignatureError::OtherScope { what: got, .. }) => assert_eq!(got, what),
                other => panic!("{scope:?}: {other:?}"),
            }
        }
        let future = sign_statement(&alice, |s| s.issued_at_unix += 3600, "demo", 7, 900);
        assert!(matches!(
            check(future, Scope::default()),
            Err(SignatureError::Expiry(_))
        ));
        let undated = sign_statement(
            &alice,
            |s| {
                s.issued_at_unix = 0;
                s.stages_percent = vec![10, 100];
                s.stage_interval_ms = 60_000;
            },
            "demo",
            7,
            900,
        );
        assert!(matches!(
            check(undated, staged),
            Err(SignatureError::Expiry(_))
        ));
    }
}
