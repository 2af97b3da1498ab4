//! What every side of Killswitch must agree on, in one place: the syntax and limits of
//! program names, collector ids, operator names and labels, the failure policy's grace,
//! generations, and the metadata key that names the actor.
//!
//! The control plane, the SDK and the CLI each check their input with these functions
//! and wrap a [`Violation`] in their own error type; the fuzz targets check this one
//! implementation. Pure: no I/O, no allocation on success.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Longest program name, in bytes.
pub const MAX_PROGRAM_NAME_BYTES: usize = 63;
/// Longest collector id, in bytes.
pub const MAX_COLLECTOR_ID_BYTES: usize = 128;
/// Longest operator name, in bytes.
pub const MAX_OPERATOR_NAME_BYTES: usize = 64;
/// Longest label key, in bytes (Kubernetes' limit for a label name).
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;
/// Most labels one collector may carry.
pub const MAX_LABELS: usize = 32;
/// Most programs one collector session may follow.
pub const MAX_PROGRAMS_PER_SESSION: usize = 64;

/// Buckets a collector id falls into for staged resumes: a stage of `p`% covers buckets
/// below `p * 100`.
pub const BUCKETS: u32 = 10_000;

/// A fail-closed program's grace when its owner chose none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Shortest grace accepted.
pub const MIN_GRACE: Duration = Duration::from_secs(1);
/// Longest grace accepted.
pub const MAX_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The gRPC metadata key naming who makes an admin call under `--insecure-dev` (with TLS
/// the credential names the caller, and this key is ignored).
pub const ACTOR_METADATA: &str = "killswitch-actor";

/// Most bytes of a rejected name, id or key quoted back in an error: enough to recognise
/// it, and the message stays small enough for a gRPC status header however long the
/// input was.
pub const MAX_QUOTED_BYTES: usize = 128;

/// A rule of the contract that a value breaks. Each message says what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Not `^[a-z][a-z0-9-]{0,62}$`.
    #[error(
        "invalid program name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter"
    )]
    ProgramName(String),
    /// Not `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
    #[error(
        "invalid collector id {0:?}: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', starting with a letter or digit"
    )]
    CollectorId(String),
    /// Not `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    #[error(
        "invalid operator name {0:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '-' and '_', starting with a letter or digit"
    )]
    OperatorName(String),
    /// Not `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`.
    #[error(
        "invalid label key {0:?}: use 1 to 63 characters of a-z, 0-9, '.', '_', '/' and '-', starting and ending with a letter or digit"
    )]
    LabelKey(String),
    /// Longer than allowed.
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The field's name as the user knows it.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Holds control characters.
    #[error("{field} must not contain control characters")]
    ControlCharacters {
        /// The field's name as the user knows it.
        field: &'static str,
    },
}

/// Checks a program name: `^[a-z][a-z0-9-]{0,62}$`.
pub fn program_name(name: &str) -> Result<(), Violation> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && name.len() <= MAX_PROGRAM_NAME_BYTES {
        Ok(())
    } else {
        Err(Violation::ProgramName(quoted(name)))
    }
}

/// Checks a collector id: `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
pub fn collector_id(id: &str) -> Result<(), Violation> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if first_ok && rest_ok && id.len() <= MAX_COLLECTOR_ID_BYTES {
        Ok(())
    } else {
        Err(Violation::CollectorId(quoted(id)))
    }
}

/// Checks an operator name: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`, the same in `auth.toml`,
/// in an operator certificate's SPIFFE id and in `killswitch token new`.
pub fn operator_name(name: &str) -> Result<(), Violation> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if first_ok && rest_ok && name.len() <= MAX_OPERATOR_NAME_BYTES {
        Ok(())
    } else {
        Err(Violation::OperatorName(quoted(name)))
    }
}

/// Checks a label key: `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$` (Kubernetes-like,
/// without the optional prefix).
pub fn label_key(key: &str) -> Result<(), Violation> {
    if key.len() > MAX_LABEL_KEY_BYTES {
        return Err(Violation::TooLong {
            field: "label key",
            len: key.len(),
            max: MAX_LABEL_KEY_BYTES,
        });
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| edge(b) || matches!(b, b'.' | b'_' | b'/' | b'-');
    let valid = match key.as_bytes() {
        [] => false,
        [only] => edge(*only),
        [first, middle @ .., last] => {
            edge(*first) && edge(*last) && middle.iter().all(|&b| inner(b))
        }
    };
    if valid {
        Ok(())
    } else {
        Err(Violation::LabelKey(quoted(key)))
    }
}

/// Checks a label value: may be empty, at most [`MAX_LABEL_VALUE_BYTES`], printable (no
/// control characters, not even newlines: values are shown one per table cell).
pub fn label_value(value: &str) -> Result<(), Violation> {
    let field = "label value";
    if value.len() > MAX_LABEL_VALUE_BYTES {
        return Err(Violation::TooLong {
            field,
            len: value.len(),
            max: MAX_LABEL_VALUE_BYTES,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Violation::ControlCharacters { field });
    }
    Ok(())
}

/// The start of a rejected input, to quote back in an error: at most
/// [`MAX_QUOTED_BYTES`] (cut at a character boundary), with `...` when cut.
#[must_use]
pub fn quoted(input: &str) -> String {
    if input.len() <= MAX_QUOTED_BYTES {
        return input.to_owned();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
}

/// A collector's stable bucket in `0..BUCKETS`: SHA-256 of its id, the first 8 bytes as
/// a big-endian integer, modulo [`BUCKETS`]. The same id lands in the same bucket on every
/// replica, SDK and version, so a stage never picks different collectors.
#[must_use]
pub fn bucket(id: &str) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u32::try_from(u64::from_be_bytes(first) % u64::from(BUCKETS)).unwrap_or(0)
}

/// The stage of a staged resume with ascending `stages_percent` that first covers the
/// collector `id`: the first `k` with `bucket(id) < stages_percent[k] * 100`; `None` when
/// no stage covers it (the stages do not reach 100%).
#[must_use]
pub fn stage_of(id: &str, stages_percent: &[u32]) -> Option<usize> {
    let bucket = bucket(id);
    stages_percent
        .iter()
        .position(|&percent| bucket < percent.saturating_mul(BUCKETS / 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable() {
        // Pinned (computed independently with Python's hashlib), so that a change of
        // hash, which would reshuffle every stage, is noticed.
        assert_eq!((bucket("c1"), bucket("c2")), (1755, 989));
        assert_eq!(stage_of("c1", &[10, 17, 18, 100]), Some(2));
        assert_eq!(stage_of("c2", &[10, 17, 18, 100]), Some(0));
        assert_eq!(stage_of("c1", &[10, 17]), None);
    }

    #[test]
    fn program_names() {
        for ok in ["a", "demo", "mouse-clicks-2", &"a".repeat(63)] {
            assert_eq!(program_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "1demo",
            "-x",
            "a_b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(program_name(bad), Err(Violation::ProgramName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn collector_ids() {
        for ok in ["c1", "Laptop-7.corp:eu_1", &"a".repeat(128)] {
            assert_eq!(collector_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".c", "a b", "a/b", &"a".repeat(129)] {
            assert!(
                matches!(collector_id(bad), Err(Violation::CollectorId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn operator_names() {
        for ok in ["alice", "Alice", "svc.ci-bot_1", "7ops", &"a".repeat(64)] {
            assert_eq!(operator_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-alice", "a b", "a/b", "a:b", &"a".repeat(65)] {
            assert!(
                matches!(operator_name(bad), Err(Violation::OperatorName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn labels() {
        for ok in ["region", "a", "app.kubernetes.io/name", "x-1"] {
            assert_eq!(label_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Region", "-a", "a-", "a b"] {
            assert!(
                matches!(label_key(bad), Err(Violation::LabelKey(_))),
                "{bad}"
            );
        }
        assert_eq!(
            label_key(&"k".repeat(64)).map_err(|e| e.to_string()),
            Err("label key is 64 bytes long; at most 63 are allowed".to_owned())
        );
        assert_eq!(label_value(""), Ok(()));
        assert_eq!(label_value("eu west/1"), Ok(()));
        assert_eq!(
            label_value("a\nb"),
            Err(Violation::ControlCharacters {
                field: "label value"
            })
        );
        assert!(matches!(
            label_value(&"v".repeat(129)),
            Err(Violation::TooLong { len: 129, .. })
        ));
    }

    #[test]
    fn errors_quote_only_the_start_of_long_input() {
        let long = "é".repeat(1000);
        let Err(Violation::ProgramName(quoted)) = program_name(&long) else {
            panic!("not refused");
        };
        assert!(quoted.len() <= MAX_QUOTED_BYTES + 3 && quoted.ends_with("..."));
        assert!(DEFAULT_GRACE >= MIN_GRACE && DEFAULT_GRACE <= MAX_GRACE);
    }
}
