//! Checking signed resumes: a pure function of the state, the trusted keys and the clock.
//!
//! A collector configured with trusted operator keys opens a gate only for a RUNNING
//! state whose `authorization` carries a statement for this very program, replacing a
//! generation older than the state and no older than the last pause this collector
//! applied, unexpired, and signed by enough distinct trusted keys. Whoever controls etcd
//! or a control replica can then make collectors stop, never make them collect.

use std::collections::BTreeSet;

use killswitch_proto::prost::Message;
use killswitch_proto::v1::{ResumeAuthorization, ResumeStatement};
use ring::signature::{ED25519, UnparsedPublicKey};

/// An ed25519 public key, 32 bytes.
pub(crate) type PublicKey = [u8; 32];

/// Default for [`Trust::max_lifetime_secs`]: one hour.
pub(crate) const DEFAULT_MAX_LIFETIME_SECS: i64 = 3600;

/// Which operator keys a collector trusts, and how many must sign a resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trust {
    /// The trusted public keys.
    pub(crate) keys: BTreeSet<PublicKey>,
    /// Signatures a resume needs; 0: resumes are not checked.
    pub(crate) required: usize,
    /// A statement that expires further than this from now (by this machine's clock) is
    /// refused, so a statement cannot be made to open gates for long.
    pub(crate) max_lifetime_secs: i64,
}

impl Default for Trust {
    fn default() -> Self {
        Self {
            keys: BTreeSet::new(),
            required: 0,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// What the collector knows when it checks a RUNNING state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context<'a> {
    /// The program the state is for (the collector registered it).
    pub(crate) program: &'a str,
    /// The state's generation.
    pub(crate) generation: u64,
    /// The last PAUSED generation this collector applied, if any.
    pub(crate) last_paused: Option<u64>,
    /// Now, by the collector's clock, in Unix seconds.
    pub(crate) now_unix: i64,
    /// Whether to refuse an expired statement: always when the statement would open the
    /// gate; not for one this collector accepted before while its gate is still open (a
    /// later generation carrying the same resume, e.g. after a policy change).
    pub(crate) check_expiry: bool,
}

/// Whether a RUNNING state may open the gate; `Err` says why not, for the Ack.
pub(crate) fn check_resume(
    trust: &Trust,
    authorization: Option<&ResumeAuthorization>,
    context: Context<'_>,
) -> Result<(), String> {
    if trust.required == 0 {
        return Ok(());
    }
    let not_enough = |valid: usize| {
        format!(
            "resume not signed by enough trusted operators ({valid} of {})",
            trust.required
        )
    };
    let Some(authorization) = authorization else {
        return Err(not_enough(0));
    };
    let statement = ResumeStatement::decode(authorization.statement.as_slice())
        .map_err(|error| format!("resume statement cannot be decoded: {error}"))?;
    if statement.program != context.program {
        return Err(format!(
            "resume statement is for program {:?}, not {}",
            truncate(&statement.program),
            context.program
        ));
    }
    if statement.replaces_generation >= context.generation {
        return Err(format!(
            "resume statement replaces generation {}, not one before this state's {}",
            statement.replaces_generation, context.generation
        ));
    }
    if let Some(paused) = context.last_paused {
        if statement.replaces_generation < paused {
            return Err(format!(
                "resume statement replaces generation {}, older than the pause at generation \
                 {paused} this collector applied: a replayed resume",
                statement.replaces_generation
            ));
        }
    }
    if context.check_expiry && statement.expires_at_unix <= context.now_unix {
        return Err(format!(
            "resume statement expired {} s ago by this collector's clock",
            context.now_unix.saturating_sub(statement.expires_at_unix)
        ));
    }
    let lifetime = statement.expires_at_unix.saturating_sub(context.now_unix);
    if lifetime > trust.max_lifetime_secs {
        return Err(format!(
            "resume statement expires in {lifetime} s, beyond the {} s this collector accepts \
             (max_statement_lifetime)",
            trust.max_lifetime_secs
        ));
    }
    let signed = killswitch_proto::resume_signed_bytes(&authorization.statement);
    let mut valid = BTreeSet::new();
    for signature in &authorization.signatures {
        let Ok(key) = PublicKey::try_from(signature.public_key.as_slice()) else {
            continue;
        };
        if !trust.keys.contains(&key) || valid.contains(&key) {
            continue;
        }
        if UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed, &signature.signature)
            .is_ok()
        {
            valid.insert(key);
        }
    }
    if valid.len() < trust.required {
        return Err(not_enough(valid.len()));
    }
    Ok(())
}

/// A program name from a statement, cut short for an error message.
fn truncate(name: &str) -> &str {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Parses a trusted key given as 32 raw bytes or 64 hex digits.
pub(crate) fn parse_key(key: &[u8]) -> Option<PublicKey> {
    if let Ok(raw) = PublicKey::try_from(key) {
        return Some(raw);
    }
    if key.len() != 64 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16);
    let mut out = [0u8; 32];
    for (i, pair) in key.chunks_exact(2).enumerate() {
        let high = nibble(pair[0])?;
        let low = nibble(pair[1])?;
        out[i] = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// Keys, statements and signatures for the tests of this module and of `apply.rs`.
#[cfg(test)]
pub(crate) mod fixtures {
    use killswitch_proto::prost::Message;
    use killswitch_proto::v1::{ResumeStatement, Signature};
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::PublicKey;

    /// The time the tests check statements at, in Unix seconds.
    pub(crate) const NOW: i64 = 1_800_000_000;

    /// A fresh ed25519 key pair.
    pub(crate) fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate a key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse the key")
    }

    /// The public key of `pair`.
    pub(crate) fn public(pair: &Ed25519KeyPair) -> PublicKey {
        PublicKey::try_from(pair.public_key().as_ref()).expect("32 bytes")
    }

    /// An encoded statement resuming `program`, replacing generation `replaces`,
    /// expiring at `expires` (Unix seconds).
    pub(crate) fn statement(program: &str, replaces: u64, expires: i64) -> Vec<u8> {
        ResumeStatement {
            program: program.to_owned(),
            replaces_generation: replaces,
            expires_at_unix: expires,
            nonce: vec![7; 16],
        }
        .encode_to_vec()
    }

    /// `pair`'s signature of `statement`.
    pub(crate) fn sign(pair: &Ed25519KeyPair, statement: &[u8]) -> Signature {
        Signature {
            public_key: pair.public_key().as_ref().to_vec(),
            signature: pair
                .sign(&killswitch_proto::resume_signed_bytes(statement))
                .as_ref()
                .to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::Ed25519KeyPair;

    use super::fixtures::{NOW, key_pair, public, sign, statement};
    use super::*;

    /// One case: the authorization, what the collector knows, and the expected result
    /// (`Ok(())` or a fragment of the error).
    fn check(
        name: &str,
        trust: &Trust,
        authorization: Option<ResumeAuthorization>,
        last_paused: Option<u64>,
        expected: Result<(), &str>,
    ) {
        let context = Context {
            program: "demo",
            generation: 10,
            last_paused,
            now_unix: NOW,
            check_expiry: true,
        };
        let actual = check_resume(trust, authorization.as_ref(), context);
        match (&actual, expected) {
            (Ok(()), Ok(())) => {}
            (Err(error), Err(fragment)) if error.contains(fragment) => {}
            _ => panic!("{name}: expected {expected:?}, got {actual:?}"),
        }
    }

    #[test]
    fn resumes_open_gates_only_when_signed_for_this_program_and_generation() {
        let (alice, bob, mallory) = (key_pair(), key_pair(), key_pair());
        let one = Trust {
            keys: [public(&alice), public(&bob)].into(),
            required: 1,
            ..Trust::default()
        };
        let two = Trust {
            required: 2,
            ..one.clone()
        };
        let good = statement("demo", 9, NOW + 600);
        let signed = |statement: &[u8], by: &[&Ed25519KeyPair]| {
            Some(ResumeAuthorization {
                statement: statement.to_vec(),
                signatures: by.iter().map(|pair| sign(pair, statement)).collect(),
            })
        };
        let mut forged = signed(&good, &[&alice]);
        if let Some(auth) = forged.as_mut() {
            auth.signatures[0].signature[0] ^= 1;
        }
        let mut swapped = signed(&good, &[&alice]);
        if let Some(auth) = swapped.as_mut() {
            // A valid signature over other bytes does not count for these.
            auth.statement = statement("demo", 9, NOW + 601);
        }

        check("unchecked", &Trust::default(), None, None, Ok(()));
        check("signed", &one, signed(&good, &[&alice]), Some(9), Ok(()));
        check("unsigned", &one, None, None, Err("(0 of 1)"));
        check("forged", &one, forged, None, Err("(0 of 1)"));
        check("other bytes", &one, swapped, None, Err("(0 of 1)"));
        check(
            "other program",
            &one,
            signed(&statement("other", 9, NOW + 600), &[&alice]),
            None,
            Err("is for program \"other\", not demo"),
        );
        check(
            "replaces this generation",
            &one,
            signed(&statement("demo", 10, NOW + 600), &[&alice]),
            None,
            Err("replaces generation 10, not one before"),
        );
        check(
            "replayed from an older generation",
            &one,
            signed(&statement("demo", 5, NOW + 600), &[&alice]),
            Some(8),
            Err("a replayed resume"),
        );
        check(
            "expired",
            &one,
            signed(&statement("demo", 9, NOW), &[&alice]),
            None,
            Err("expired 0 s ago"),
        );
        check(
            "too long a life",
            &one,
            signed(&statement("demo", 9, NOW + 3601), &[&alice]),
            Some(9),
            Err("expires in 3601 s, beyond the 3600 s"),
        );
        check(
            "untrusted key",
            &one,
            signed(&good, &[&mallory]),
            None,
            Err("(0 of 1)"),
        );
        check(
            "duplicate key counted once",
            &two,
            signed(&good, &[&alice, &alice]),
            None,
            Err("(1 of 2)"),
        );
        check(
            "two keys",
            &two,
            signed(&good, &[&alice, &bob]),
            None,
            Ok(()),
        );
        check(
            "garbage statement",
            &one,
            Some(ResumeAuthorization {
                statement: vec![0xff; 3],
                signatures: Vec::new(),
            }),
            None,
            Err("cannot be decoded"),
        );
    }

    #[test]
    fn keys_parse_from_raw_bytes_or_hex() {
        let raw = [0xabu8; 32];
        assert_eq!(parse_key(&raw), Some(raw));
        assert_eq!(parse_key("ab".repeat(32).as_bytes()), Some(raw));
        assert_eq!(parse_key("AB".repeat(32).as_bytes()), Some(raw));
        assert_eq!(parse_key(b"abc"), None);
        assert_eq!(parse_key("zz".repeat(32).as_bytes()), None);
    }
}
