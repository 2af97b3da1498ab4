//! Names and limits: program names, collector ids, labels and free-text fields, validated
//! where they enter the control plane, so an invalid one cannot exist past the edge. The
//! syntax shared with the SDK and the CLI is `killswitch_proto::contract`'s; this module
//! wraps its violations in [`InvalidInput`] and adds the control plane's own fields.

use std::fmt;
use std::time::Duration;

use killswitch_proto::contract::{self, Violation};

/// Longest reason accepted, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest description accepted, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest owner, incident id, actor or collector id accepted, in bytes.
pub const MAX_SHORT_FIELD_BYTES: usize = 128;
/// Longest label key accepted, in bytes (Kubernetes' limit for a label name).
pub const MAX_LABEL_KEY_BYTES: usize = contract::MAX_LABEL_KEY_BYTES;
/// Longest label value accepted, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = contract::MAX_LABEL_VALUE_BYTES;

/// Input that breaks a rule of the API. Each message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A staged resume's stages are not ascending percentages ending at 100.
    #[error("invalid stages: {0}")]
    Stages(String),
    /// A label selector does not parse.
    #[error(transparent)]
    Selector(#[from] crate::model::selector::SelectorError),
    /// A change that cannot be combined with the program's current state or another field.
    #[error("{0}")]
    Conflict(String),
    /// An operator name does not match `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    #[error(
        "invalid operator name {0:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '-' and '_', starting with a letter or digit"
    )]
    OperatorName(String),
    /// The program name does not match `^[a-z][a-z0-9-]{0,62}$`.
    #[error(
        "invalid program name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter"
    )]
    ProgramName(String),
    /// A required field is empty.
    #[error("{field} is required: {hint}")]
    Missing {
        /// The field's name as the user knows it.
        field: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// A field is longer than allowed.
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The field's name as the user knows it.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A list holds more items than allowed.
    #[error("{count} {field}; at most {max} are allowed")]
    TooMany {
        /// What the list holds, plural, as the user knows it ("labels").
        field: &'static str,
        /// How many it holds.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds control characters.
    #[error("{field} must not contain control characters")]
    ControlCharacters {
        /// The field's name as the user knows it.
        field: &'static str,
    },
    /// The collector id does not match `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
    #[error(
        "invalid collector id {0:?}: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', starting with a letter or digit"
    )]
    CollectorId(String),
    /// A grace period outside the accepted range.
    #[error("grace {} is out of range: use 1s to 24h", humantime::format_duration(*.0))]
    Grace(Duration),
    /// A label key does not match `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`.
    #[error(
        "invalid label key {0:?}: use 1 to 63 characters of a-z, 0-9, '.', '_', '/' and '-', starting and ending with a letter or digit"
    )]
    LabelKey(String),
    /// A number of resume approvals other than 1 or 2.
    #[error("resume approvals must be 1 or 2, not {0}")]
    ResumeApprovals(u32),
    /// An approval request lifetime outside the accepted range.
    #[error("approval request ttl {} is out of range: use 2s to 24h", humantime::format_duration(*.0))]
    ApprovalTtl(Duration),
    /// An approval request id that is not 8 lowercase hex digits.
    #[error("invalid approval request id {0:?}: use the 8 hex digits `killswitch resume` printed")]
    ApprovalId(String),
    /// An enum field holds a value this version does not know.
    #[error("unknown {field} value {value}: {hint}")]
    UnknownValue {
        /// The field's name as the user knows it.
        field: &'static str,
        /// The value received.
        value: i32,
        /// The values accepted.
        hint: &'static str,
    },
}

/// Shortest and longest life of an approval request, and the default.
pub const APPROVAL_TTL_MIN: Duration = Duration::from_secs(2);
/// See [`APPROVAL_TTL_MIN`].
pub const APPROVAL_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// See [`APPROVAL_TTL_MIN`].
pub const APPROVAL_TTL_DEFAULT: Duration = Duration::from_secs(15 * 60);

/// How many operators a resume needs, from an operator: 1 or 2; `None` for 0 (unset).
pub fn resume_approvals(value: u32) -> Result<Option<u32>, InvalidInput> {
    match value {
        0 => Ok(None),
        1 | 2 => Ok(Some(value)),
        other => Err(InvalidInput::ResumeApprovals(other)),
    }
}

/// The life of an approval request, from milliseconds; 0 is the default (15 minutes).
pub fn approval_ttl(ms: u64) -> Result<Duration, InvalidInput> {
    if ms == 0 {
        return Ok(APPROVAL_TTL_DEFAULT);
    }
    let ttl = Duration::from_millis(ms);
    if (APPROVAL_TTL_MIN..=APPROVAL_TTL_MAX).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(InvalidInput::ApprovalTtl(ttl))
    }
}

/// An approval request id: 8 lowercase hex digits.
pub fn approval_id(value: &str) -> Result<String, InvalidInput> {
    if value.len() == 8
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(InvalidInput::ApprovalId(quoted(value)))
    }
}

/// A program's name, `^[a-z][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgramName(String);

impl ProgramName {
    /// Validates a program name.
    pub fn parse(name: &str) -> Result<Self, InvalidInput> {
        contract::program_name(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A collector's identity, `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectorId(String);

impl CollectorId {
    /// Validates a collector id.
    pub fn parse(id: &str) -> Result<Self, InvalidInput> {
        contract::collector_id(id)?;
        Ok(Self(id.to_owned()))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A label key, `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$` (Kubernetes-like, without the
/// optional prefix): what `killswitch collectors` shows and selects on.
pub fn label_key(key: &str) -> Result<String, InvalidInput> {
    contract::label_key(key)?;
    Ok(key.to_owned())
}

/// A label value: may be empty, at most [`MAX_LABEL_VALUE_BYTES`], printable (no control
/// characters, not even newlines: values are shown one per table cell).
pub fn label_value(value: &str) -> Result<String, InvalidInput> {
    contract::label_value(value)?;
    Ok(value.to_owned())
}

/// The start of a rejected input, to quote back in an error.
fn quoted(input: &str) -> String {
    contract::quoted(input)
}

impl From<Violation> for InvalidInput {
    fn from(violation: Violation) -> Self {
        match violation {
            Violation::ProgramName(name) => Self::ProgramName(name),
            Violation::CollectorId(id) => Self::CollectorId(id),
            Violation::LabelKey(key) => Self::LabelKey(key),
            Violation::OperatorName(name) => Self::OperatorName(name),
            Violation::TooLong { field, len, max } => Self::TooLong { field, len, max },
            Violation::ControlCharacters { field } => Self::ControlCharacters { field },
        }
    }
}

/// Checks a free-text field: optional or required, bounded, no control characters
/// (newlines are allowed in long text, which is shown in tables one line at a time).
fn text(
    field: &'static str,
    value: &str,
    required: Option<&'static str>,
    max: usize,
) -> Result<String, InvalidInput> {
    if let Some(hint) = required
        && value.trim().is_empty()
    {
        return Err(InvalidInput::Missing { field, hint });
    }
    if value.len() > max {
        return Err(InvalidInput::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(InvalidInput::ControlCharacters { field });
    }
    Ok(value.to_owned())
}

/// Why a change is made: required, at most [`MAX_REASON_BYTES`].
pub fn reason(value: &str) -> Result<String, InvalidInput> {
    text(
        "reason",
        value,
        Some("say why you are making this change (--reason)"),
        MAX_REASON_BYTES,
    )
}

/// An optional incident identifier, at most [`MAX_SHORT_FIELD_BYTES`].
pub fn incident_id(value: &str) -> Result<String, InvalidInput> {
    text("incident id", value, None, MAX_SHORT_FIELD_BYTES)
}

/// The owning team of a program: required, at most [`MAX_SHORT_FIELD_BYTES`].
pub fn owner(value: &str) -> Result<String, InvalidInput> {
    text(
        "owner",
        value,
        Some("name the team that owns the program (--owner)"),
        MAX_SHORT_FIELD_BYTES,
    )
}

/// A program's description: optional, at most [`MAX_DESCRIPTION_BYTES`].
pub fn description(value: &str) -> Result<String, InvalidInput> {
    text("description", value, None, MAX_DESCRIPTION_BYTES)
}

/// Who asks for a change: required, at most [`MAX_SHORT_FIELD_BYTES`].
pub fn actor(value: &str) -> Result<String, InvalidInput> {
    text(
        "actor",
        value,
        Some("identify yourself (--actor or KILLSWITCH_ACTOR)"),
        MAX_SHORT_FIELD_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_ttls_and_request_ids() {
        assert_eq!(resume_approvals(0), Ok(None));
        assert_eq!(resume_approvals(1), Ok(Some(1)));
        assert_eq!(resume_approvals(2), Ok(Some(2)));
        assert_eq!(resume_approvals(3), Err(InvalidInput::ResumeApprovals(3)));
        assert_eq!(approval_ttl(0), Ok(APPROVAL_TTL_DEFAULT));
        assert_eq!(approval_ttl(2_000), Ok(Duration::from_secs(2)));
        assert!(approval_ttl(1_999).is_err());
        assert!(approval_ttl(24 * 3600 * 1000 + 1).is_err());
        assert_eq!(approval_id("0badcafe"), Ok("0badcafe".to_owned()));
        for bad in [
            "",
            "0BADCAFE",
            "0badcaf",
            "0badcafe0",
            "0badcafg",
            "../x/abc",
        ] {
            assert!(approval_id(bad).is_err(), "{bad:?}");
        }
    }

    fn check(name: &str, ok: bool) {
        assert_eq!(
            ProgramName::parse(name).is_ok(),
            ok,
            "program name {name:?}"
        );
    }

    #[test]
    fn program_names() {
        for name in [
            "a",
            "mci",
            "screen-capture-2",
            &format!("a{}", "b".repeat(62)),
        ] {
            check(name, true);
        }
        for name in [
            "",
            "A",
            "1abc",
            "-a",
            "a_b",
            "a.b",
            "ab ",
            "é",
            &format!("a{}", "b".repeat(63)),
        ] {
            check(name, false);
        }
    }

    #[test]
    fn collector_ids() {
        for (id, ok) in [
            ("c1", true),
            ("host-1.emea:7", true),
            ("", false),
            ("-x", false),
            ("a b", false),
        ] {
            assert_eq!(CollectorId::parse(id).is_ok(), ok, "collector id {id:?}");
        }
        assert!(CollectorId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn label_keys() {
        let max = "a".repeat(MAX_LABEL_KEY_BYTES);
        for key in [
            "a",
            "7",
            "region",
            "app.kubernetes.io/name",
            "a_b-c.d",
            &max,
        ] {
            assert_eq!(label_key(key).as_deref(), Ok(key), "label key {key:?}");
        }
        for key in [
            "", "Region", "-a", "a-", "a.", "/a", "_a", "a b", "a:b", "é", "a\u{7}", "a\n",
        ] {
            assert!(
                matches!(label_key(key), Err(InvalidInput::LabelKey(_))),
                "label key {key:?}"
            );
        }
        assert!(matches!(
            label_key(&format!("{max}a")),
            Err(InvalidInput::TooLong {
                len: 64,
                max: 63,
                ..
            })
        ));
        let message = InvalidInput::LabelKey("Region".into()).to_string();
        assert!(message.contains("\"Region\""), "{message}");
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value("").as_deref(), Ok(""));
        assert_eq!(label_value("eu-west 1/é").as_deref(), Ok("eu-west 1/é"));
        assert!(label_value(&"x".repeat(MAX_LABEL_VALUE_BYTES)).is_ok());
        assert!(matches!(
            label_value(&"x".repeat(MAX_LABEL_VALUE_BYTES + 1)),
            Err(InvalidInput::TooLong { .. })
        ));
        for value in ["a\nb", "a\u{0}", "\u{9b}"] {
            assert!(
                matches!(
                    label_value(value),
                    Err(InvalidInput::ControlCharacters { .. })
                ),
                "label value {value:?}"
            );
        }
    }

    #[test]
    fn errors_quote_only_the_start_of_long_input() {
        let long = "é".repeat(10_000);
        for error in [
            ProgramName::parse(&long).map(|_| ()),
            CollectorId::parse(&long).map(|_| ()),
            label_key(&format!("A{long}")).map(|_| ()),
        ] {
            let message = error.expect_err("invalid").to_string();
            assert!(message.len() < 400, "{} bytes: {message}", message.len());
        }
        let Err(InvalidInput::ProgramName(quoted)) = ProgramName::parse(&long) else {
            panic!("not a program name error");
        };
        assert_eq!(quoted, format!("{}...", "é".repeat(64)));
        // Cut before a character that would cross the limit.
        assert_eq!(
            CollectorId::parse(&format!("a{long}")),
            Err(InvalidInput::CollectorId(format!("a{}...", "é".repeat(63))))
        );
        let short = "Bad";
        assert_eq!(
            ProgramName::parse(short),
            Err(InvalidInput::ProgramName(short.into()))
        );
    }

    #[test]
    fn reasons() {
        assert!(matches!(reason(""), Err(InvalidInput::Missing { .. })));
        assert!(matches!(reason("   "), Err(InvalidInput::Missing { .. })));
        assert!(matches!(
            reason(&"x".repeat(1025)),
            Err(InvalidInput::TooLong { len: 1025, .. })
        ));
        assert!(matches!(
            reason("a\u{7}b"),
            Err(InvalidInput::ControlCharacters { .. })
        ));
        assert_eq!(reason("leak in\nemea").as_deref(), Ok("leak in\nemea"));
        assert!(incident_id("").is_ok());
    }
}
