//! Checking signed resumes: a pure function of the state, the trusted keys and the clock.
//!
//! A collector configured with trusted operator keys opens a gate only for a RUNNING
//! state whose `authorization` carries a statement for this very program, replacing a
//! generation older than the state and no older than the last pause this collector
//! applied, unexpired, signed by enough distinct trusted keys, and whose scope includes
//! this collector: its labels match the statement's selector, and for a staged resume its
//! stage (from its bucket) may open by now: no earlier than the signing time plus one
//! interval per earlier stage, and the statement's expiry moves as much later. Whoever
//! controls etcd or a control replica can then make collectors stop, never make them
//! collect, and never more of them, or sooner, than the operators signed for.

use std::collections::{BTreeMap, BTreeSet};

use killswitch_proto::contract;
use killswitch_proto::prost::Message;
use killswitch_proto::selector::Selector;
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
    /// This collector, for the scope the statement names.
    pub(crate) collector: Collector<'a>,
    /// Whether to refuse a staged statement before this collector's stage may open:
    /// always for a RUNNING state; not for a PAUSED one that carries the statement while
    /// the collector waits for its stage.
    pub(crate) check_stage: bool,
}

/// Who this collector is, for the scope a signed statement names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Collector<'a> {
    /// Its id, whose bucket places it in a staged resume's stages.
    pub(crate) id: &'a str,
    /// The labels it declared, which a statement's selector must match.
    pub(crate) labels: &'a BTreeMap<String, String>,
}

/// How far behind the signer's clock this collector's may be when a stage opens.
const STAGE_CLOCK_SKEW_SECS: i64 = 60;

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
    let expires_at = statement
        .expires_at_unix
        .saturating_add(check_scope(&statement, context)?);
    if context.check_expiry && expires_at <= context.now_unix {
        return Err(format!(
            "resume statement expired {} s ago by this collector's clock",
            context.now_unix.saturating_sub(expires_at)
        ));
    }
    let lifetime = expires_at.saturating_sub(context.now_unix);
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

/// Checks that this collector is inside the scope `statement` names: its labels match the
/// selector, and, for a staged resume, its stage may open now (no earlier than the
/// signing time plus one interval per stage before it). Returns how much later the
/// statement expires for this collector: its stage's delay.
fn check_scope(statement: &ResumeStatement, context: Context<'_>) -> Result<i64, String> {
    if !statement.selector.is_empty() {
        let selector = Selector::parse(&statement.selector).map_err(|error| {
            format!(
                "resume statement's selector {:?} cannot be read: {error}",
                truncate(&statement.selector)
            )
        })?;
        if !selector.matches(context.collector.labels) {
            return Err(format!(
                "resume statement is for the collectors matching {:?}, which this collector's \
                 labels do not",
                truncate(&statement.selector)
            ));
        }
    }
    if statement.stages_percent.is_empty() {
        return Ok(0);
    }
    let Some(stage) = contract::stage_of(context.collector.id, &statement.stages_percent) else {
        return Err("resume statement's stages never reach this collector".to_owned());
    };
    let stage_ms = u64::try_from(stage)
        .unwrap_or(u64::MAX)
        .saturating_mul(statement.stage_interval_ms);
    let delay = i64::try_from(stage_ms / 1000).unwrap_or(i64::MAX);
    let opens_at = statement.issued_at_unix.saturating_add(delay);
    if context.check_stage && context.now_unix.saturating_add(STAGE_CLOCK_SKEW_SECS) < opens_at {
        return Err(format!(
            "resume statement opens this collector's stage ({} of {}) in {} s by this \
             collector's clock: too early",
            stage + 1,
            statement.stages_percent.len(),
            opens_at.saturating_sub(context.now_unix)
        ));
    }
    Ok(delay)
}

/// A program name or selector from a statement, cut short for an error message.
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
        scoped_statement(program, replaces, expires, "", &[], 0)
    }

    /// A [`statement`] that names a scope: a `selector` (empty: every collector), and
    /// `stages` `interval_ms` apart (empty: not staged), signed at [`NOW`].
    pub(crate) fn scoped_statement(
        program: &str,
        replaces: u64,
        expires: i64,
        selector: &str,
        stages: &[u32],
        interval_ms: u64,
    ) -> Vec<u8> {
        ResumeStatement {
            program: program.to_owned(),
            replaces_generation: replaces,
            expires_at_unix: expires,
            nonce: vec![7; 16],
            selector: selector.to_owned(),
            stages_percent: stages.to_vec(),
            stage_interval_ms: interval_ms,
            issued_at_unix: NOW,
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

    use super::fixtures::{NOW, key_pair, public, scoped_statement, sign, statement};
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
        let labels = BTreeMap::new();
        let context = Context {
            program: "demo",
            generation: 10,
            last_paused,
            now_unix: NOW,
            check_expiry: true,
            collector: Collector {
                id: "c1",
                labels: &labels,
            },
            check_stage: true,
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
    fn a_statement_opens_only_the_collectors_and_stages_it_names() {
        let alice = key_pair();
        let trust = Trust {
            keys: [public(&alice)].into(),
            required: 1,
            ..Trust::default()
        };
        let emea: BTreeMap<String, String> = [("region".to_owned(), "emea".to_owned())].into();
        let us: BTreeMap<String, String> = [("region".to_owned(), "us".to_owned())].into();
        // c2 (bucket 989) is in the first stage of 10%,50%,100%; c1 (bucket 1755) in the
        // second, which opens one interval (600 s) after the statement was signed.
        let check = |statement: Vec<u8>, id: &str, labels: &BTreeMap<String, String>, at: i64| {
            let authorization = ResumeAuthorization {
                signatures: vec![sign(&alice, &statement)],
                statement,
            };
            let context = Context {
                program: "demo",
                generation: 10,
                last_paused: Some(9),
                now_unix: at,
                check_expiry: true,
                collector: Collector { id, labels },
                check_stage: true,
            };
            check_resume(&trust, Some(&authorization), context)
        };
        let scoped = || scoped_statement("demo", 9, NOW + 900, "region=emea", &[], 0);
        let staged = || scoped_statement("demo", 9, NOW + 900, "", &[10, 50, 100], 600_000);
        assert_eq!(check(scoped(), "c1", &emea, NOW), Ok(()));
        let outside = check(scoped(), "c1", &us, NOW).expect_err("outside the selector");
        assert!(outside.contains("matching \"region=emea\""), "{outside}");
        let unlabelled = BTreeMap::new();
        assert!(check(scoped(), "c1", &unlabelled, NOW).is_err());
        // The first stage opens at once; the second not before its time (a minute of
        // clock difference allowed), and its expiry moves as much later.
        assert_eq!(check(staged(), "c2", &us, NOW), Ok(()));
        let early = check(staged(), "c1", &us, NOW).expect_err("too early");
        assert!(early.contains("stage (2 of 3) in 600 s"), "{early}");
        assert!(check(staged(), "c1", &us, NOW + 539).is_err());
        assert_eq!(check(staged(), "c1", &us, NOW + 540), Ok(()));
        assert_eq!(check(staged(), "c1", &us, NOW + 1499), Ok(()));
        assert!(check(staged(), "c2", &us, NOW + 900).is_err(), "expired");
        let short = scoped_statement("demo", 9, NOW + 900, "", &[10], 600_000);
        let unreached = check(short, "c1", &us, NOW + 600).expect_err("no stage");
        assert!(unreached.contains("never reach"), "{unreached}");
        let unreadable = scoped_statement("demo", 9, NOW + 900, "region=", &[], 0);
        assert!(check(unreadable, "c1", &emea, NOW).is_err());
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
