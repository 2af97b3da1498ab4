//! Domain types: validated at the edge, so an invalid name or reason cannot exist past it.
//!
//! Wire (`killswitch_proto::v1`) and storage (`killswitch_proto::v1::store`) messages are
//! converted into these types where they enter the control plane, and back where they leave.

use std::fmt;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1;

use crate::targeting::Targeting;

/// Longest reason accepted, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest description accepted, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest owner, incident id, actor or collector id accepted, in bytes.
pub const MAX_SHORT_FIELD_BYTES: usize = 128;
/// Longest label key accepted, in bytes (Kubernetes' limit for a label name).
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value accepted, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;
/// Most bytes of a rejected name, id or key quoted back in an error message: enough to
/// recognise it, and the message stays small enough for a gRPC status header however
/// long the input was.
const MAX_QUOTED_BYTES: usize = 128;

/// Input that breaks a rule of the API. Each message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A staged resume's stages are not ascending percentages ending at 100.
    #[error("invalid stages: {0}")]
    Stages(String),
    /// A label selector does not parse.
    #[error(transparent)]
    Selector(#[from] crate::selector::SelectorError),
    /// A change that cannot be combined with the program's current state or another field.
    #[error("{0}")]
    Conflict(String),
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
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && name.len() <= 63 {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidInput::ProgramName(quoted(name)))
        }
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
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok =
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if first_ok && rest_ok && id.len() <= MAX_SHORT_FIELD_BYTES {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidInput::CollectorId(quoted(id)))
        }
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
    if key.len() > MAX_LABEL_KEY_BYTES {
        return Err(InvalidInput::TooLong {
            field: "label key",
            len: key.len(),
            max: MAX_LABEL_KEY_BYTES,
        });
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| edge(b) || matches!(b, b'.' | b'_' | b'/' | b'-');
    let bytes = key.as_bytes();
    let valid = match bytes {
        [] => false,
        [only] => edge(*only),
        [first, middle @ .., last] => {
            edge(*first) && edge(*last) && middle.iter().all(|&b| inner(b))
        }
    };
    if valid {
        Ok(key.to_owned())
    } else {
        Err(InvalidInput::LabelKey(quoted(key)))
    }
}

/// A label value: may be empty, at most [`MAX_LABEL_VALUE_BYTES`], printable (no control
/// characters, not even newlines: values are shown one per table cell).
pub fn label_value(value: &str) -> Result<String, InvalidInput> {
    let field = "label value";
    if value.len() > MAX_LABEL_VALUE_BYTES {
        return Err(InvalidInput::TooLong {
            field,
            len: value.len(),
            max: MAX_LABEL_VALUE_BYTES,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacters { field });
    }
    Ok(value.to_owned())
}

/// The start of a rejected input, to quote back in an error: at most [`MAX_QUOTED_BYTES`]
/// (cut at a character boundary), with `...` when cut.
fn quoted(input: &str) -> String {
    if input.len() <= MAX_QUOTED_BYTES {
        return input.to_owned();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
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

/// Whether a program may collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Collectors may collect.
    Running,
    /// Collectors must not collect.
    Paused,
}

impl RunState {
    /// Reads a stored or received state; anything but RUNNING is PAUSED (pause always wins).
    #[must_use]
    pub fn from_wire(value: i32) -> Self {
        if value == v1::RunState::Running as i32 {
            Self::Running
        } else {
            Self::Paused
        }
    }

    /// The wire value.
    #[must_use]
    pub fn to_wire(self) -> v1::RunState {
        match self {
            Self::Running => v1::RunState::Running,
            Self::Paused => v1::RunState::Paused,
        }
    }

    /// The audit action that moves a program into this state.
    #[must_use]
    pub fn action(self) -> &'static str {
        match self {
            Self::Running => "resume",
            Self::Paused => "pause",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
        })
    }
}

/// Shortest grace accepted.
pub const MIN_GRACE: Duration = Duration::from_secs(1);
/// Longest grace accepted.
pub const MAX_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// Grace when the owner chose none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What a collector does when it loses contact with the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostContact {
    /// Fail closed: pause after the grace period.
    Pause,
    /// Fail open: keep the last authoritative state.
    Keep,
}

/// A program's failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// What collectors do offline.
    pub on_lost_contact: LostContact,
    /// How long they wait for a heartbeat before pausing (fail-closed programs).
    pub grace: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            on_lost_contact: LostContact::Pause,
            grace: DEFAULT_GRACE,
        }
    }
}

impl FailurePolicy {
    /// Whether moving from `self` to `new` lets collectors collect in more situations:
    /// fail open instead of closed, or a longer grace while failing closed.
    #[must_use]
    pub fn weakened_by(self, new: Self) -> bool {
        match (self.on_lost_contact, new.on_lost_contact) {
            (LostContact::Pause, LostContact::Keep) => true,
            (LostContact::Pause, LostContact::Pause) => new.grace > self.grace,
            (LostContact::Keep, _) => false,
        }
    }

    /// Validates a policy from an operator; unset fields take the defaults.
    pub fn parse(wire: Option<&v1::FailurePolicy>) -> Result<Self, InvalidInput> {
        let Some(wire) = wire else {
            return Ok(Self::default());
        };
        let on_lost_contact = match v1::LostContact::try_from(wire.on_lost_contact) {
            Ok(v1::LostContact::Unspecified | v1::LostContact::Pause) => LostContact::Pause,
            Ok(v1::LostContact::Keep) => LostContact::Keep,
            Err(_) => {
                return Err(InvalidInput::UnknownValue {
                    field: "on-lost-contact",
                    value: wire.on_lost_contact,
                    hint: "use pause or keep",
                });
            }
        };
        let grace = match wire.grace_ms {
            0 => DEFAULT_GRACE,
            ms => Duration::from_millis(ms),
        };
        if !(MIN_GRACE..=MAX_GRACE).contains(&grace) {
            return Err(InvalidInput::Grace(grace));
        }
        Ok(Self {
            on_lost_contact,
            grace,
        })
    }

    /// Reads a stored policy; anything unreadable is the fail-closed default.
    #[must_use]
    pub fn from_store(wire: Option<&v1::FailurePolicy>) -> Self {
        Self::parse(wire).unwrap_or_default()
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(self) -> v1::FailurePolicy {
        v1::FailurePolicy {
            on_lost_contact: match self.on_lost_contact {
                LostContact::Pause => v1::LostContact::Pause,
                LostContact::Keep => v1::LostContact::Keep,
            } as i32,
            grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.on_lost_contact {
            LostContact::Pause => {
                write!(f, "pause after {}", humantime::format_duration(self.grace))
            }
            LostContact::Keep => f.write_str("keep"),
        }
    }
}

/// The etcd mod_revision of a program's state key: grows with every change.
pub type Generation = u64;

/// The authoritative state of one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramState {
    /// The program.
    pub program: ProgramName,
    /// Running or paused.
    pub state: RunState,
    /// The state key's mod_revision.
    pub generation: Generation,
    /// Why it was last changed.
    pub reason: String,
    /// Incident given with the change, empty when none.
    pub incident_id: String,
    /// Who changed it.
    pub actor: String,
    /// When the change was committed (the replica's clock at commit time).
    pub changed_at: Option<SystemTime>,
    /// The pause asks collectors to delete buffered, not yet uploaded data.
    pub purge: bool,
    /// What collectors do offline.
    pub policy: FailurePolicy,
    /// The signed resume that made it RUNNING, carried to collectors unchanged.
    pub authorization: Option<Authorization>,
    /// Scoped rules, a staged resume and the stop-all: which collectors the state is for.
    pub targeting: Targeting,
}

/// A signed resume as stored: the encoded statement and its signatures, opaque to the
/// control plane once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The encoded `ResumeStatement`, exactly as signed.
    pub statement: Vec<u8>,
    /// (public key, signature) pairs.
    pub signatures: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Authorization {
    /// From the wire (or stored) form.
    #[must_use]
    pub fn from_wire(wire: &v1::ResumeAuthorization) -> Self {
        Self {
            statement: wire.statement.clone(),
            signatures: wire
                .signatures
                .iter()
                .map(|s| (s.public_key.clone(), s.signature.clone()))
                .collect(),
        }
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(&self) -> v1::ResumeAuthorization {
        v1::ResumeAuthorization {
            statement: self.statement.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|(public_key, signature)| v1::Signature {
                    public_key: public_key.clone(),
                    signature: signature.clone(),
                })
                .collect(),
        }
    }
}

impl ProgramState {
    /// Builds the domain state from its stored value and the key's mod_revision.
    #[must_use]
    pub fn from_store(
        program: ProgramName,
        generation: Generation,
        stored: &v1::store::ProgramState,
    ) -> Self {
        Self {
            program,
            state: RunState::from_wire(stored.state),
            generation,
            reason: stored.reason.clone(),
            incident_id: stored.incident_id.clone(),
            actor: stored.actor.clone(),
            changed_at: stored.changed_at.and_then(|t| SystemTime::try_from(t).ok()),
            purge: stored.purge,
            policy: FailurePolicy::from_store(stored.policy.as_ref()),
            authorization: stored.authorization.as_ref().map(Authorization::from_wire),
            targeting: Targeting::from_store(stored),
        }
    }

    /// The wire form operators see: the base state with its targeting.
    #[must_use]
    pub fn to_wire(&self) -> v1::ProgramState {
        let mut wire = self.to_collector_base();
        self.targeting.wire_into(&mut wire);
        wire
    }

    /// What the collector `id` with `labels` receives: its effective state, without the
    /// rules (a collector needs only its own outcome).
    #[must_use]
    pub fn to_collector_wire(
        &self,
        id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> v1::ProgramState {
        let mut wire = self.to_collector_base();
        if !self.targeting.is_plain() {
            wire.state = self.targeting.effective(self.state, id, labels).to_wire() as i32;
            if let Some(stop_all) = &self.targeting.stop_all {
                wire.reason = format!("stop-all: {}", stop_all.reason);
                wire.stop_all = Some(stop_all.to_wire());
            }
        }
        wire
    }

    fn to_collector_base(&self) -> v1::ProgramState {
        v1::ProgramState {
            program: self.program.to_string(),
            state: self.state.to_wire() as i32,
            generation: self.generation,
            reason: self.reason.clone(),
            incident_id: self.incident_id.clone(),
            actor: self.actor.clone(),
            changed_at: self.changed_at.map(killswitch_proto::timestamp),
            purge: self.purge,
            policy: Some(self.policy.to_wire()),
            authorization: self.authorization.as_ref().map(Authorization::to_wire),
            ..v1::ProgramState::default()
        }
    }
}

/// A program definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Its name.
    pub name: ProgramName,
    /// The owning team.
    pub owner: String,
    /// What it collects and why.
    pub description: String,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// Who created it.
    pub created_by: String,
    /// What its collectors do offline.
    pub policy: FailurePolicy,
    /// How many different operators a resume needs: 1 or 2.
    pub resume_approvals: u32,
}

impl Program {
    /// Builds the domain program from its stored value.
    #[must_use]
    pub fn from_store(name: ProgramName, stored: &v1::store::Program) -> Self {
        Self {
            name,
            owner: stored.owner.clone(),
            description: stored.description.clone(),
            created_at: stored.created_at.and_then(|t| SystemTime::try_from(t).ok()),
            created_by: stored.created_by.clone(),
            policy: FailurePolicy::from_store(stored.policy.as_ref()),
            resume_approvals: stored.resume_approvals.clamp(1, 2),
        }
    }

    /// The wire form sent to operators.
    #[must_use]
    pub fn to_wire(&self) -> v1::Program {
        v1::Program {
            name: self.name.to_string(),
            owner: self.owner.clone(),
            description: self.description.clone(),
            created_at: self.created_at.map(killswitch_proto::timestamp),
            created_by: self.created_by.clone(),
            policy: Some(self.policy.to_wire()),
            resume_approvals: self.resume_approvals,
        }
    }
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

    #[test]
    fn failure_policies() {
        let wire = |on_lost_contact: i32, grace_ms: u64| v1::FailurePolicy {
            on_lost_contact,
            grace_ms,
        };
        assert_eq!(FailurePolicy::parse(None), Ok(FailurePolicy::default()));
        let keep = FailurePolicy::parse(Some(&wire(2, 5000))).expect("valid");
        assert_eq!(
            (keep.on_lost_contact, keep.grace),
            (LostContact::Keep, Duration::from_secs(5))
        );
        assert_eq!(
            FailurePolicy::parse(Some(&wire(0, 0))),
            Ok(FailurePolicy::default())
        );
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(1, 999))),
            Err(InvalidInput::Grace(_))
        ));
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(1, 86_400_001))),
            Err(InvalidInput::Grace(_))
        ));
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(7, 0))),
            Err(InvalidInput::UnknownValue { .. })
        ));
        assert_eq!(
            FailurePolicy::from_store(Some(&wire(7, 0))),
            FailurePolicy::default(),
            "unreadable: fail closed"
        );
        assert_eq!(FailurePolicy::parse(Some(&keep.to_wire())), Ok(keep));
    }

    #[test]
    fn unknown_wire_state_is_paused() {
        assert_eq!(RunState::from_wire(0), RunState::Paused);
        assert_eq!(RunState::from_wire(99), RunState::Paused);
        assert_eq!(
            RunState::from_wire(v1::RunState::Running as i32),
            RunState::Running
        );
    }
}
