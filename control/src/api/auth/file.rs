//! The auth file, `auth.toml`: the operators ([`Operator`]), which collectors may follow
//! which programs ([`CollectorRule`]), which labels certificates pin, parsing and checking it into an [`AuthConfig`],
//! and why it was refused ([`AuthFileError`], with the line).
//!
//! **Layer:** api. May import [`crate::model`] and its siblings' [`Role`], [`Action`]
//! and [`AuthError`]; never `crate::store` or `crate::replica`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use killswitch_proto::contract;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::revoked::{RawRevoked, Revoked, parse_revoked};
use super::{Action, AuthError, Role};
use crate::model::ProgramName;

/// An operator listed in `auth.toml`.
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name, recorded in the audit as the actor.
    pub name: String,
    /// What the operator may do.
    pub role: Role,
    /// The programs the operator may act on; empty means all. Always empty for an admin.
    pub programs: Vec<ProgramName>,
    /// Whether the operator may authenticate with a client certificate
    /// (`spiffe://TD/operator/NAME`).
    pub cert: bool,
    /// SHA-256 of the operator's bearer token, if they have one.
    pub(super) token_sha256: Option<[u8; 32]>,
    /// When the bearer token stops being accepted (`expires`); `None`: never.
    pub token_expires: Option<std::time::SystemTime>,
    /// The ed25519 public key that must sign this operator's resumes and approvals.
    pub signing_key: Option<[u8; 32]>,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("programs", &self.programs)
            .field("cert", &self.cert)
            .field("token", &self.token_sha256.map(|_| "<sha256>"))
            .field("token_expires", &self.token_expires)
            .field("signing_key", &self.signing_key.is_some())
            .finish()
    }
}

impl Operator {
    /// Whether the operator's scope includes `program`.
    #[must_use]
    pub fn covers(&self, program: &str) -> bool {
        self.programs.is_empty() || self.programs.iter().any(|p| p.as_str() == program)
    }

    /// Whether the operator may perform `action`, on `program` when it targets one.
    pub fn permits(&self, action: Action, program: Option<&str>) -> Result<(), AuthError> {
        let needed = action.required_role();
        if self.role < needed {
            return Err(AuthError::RoleTooLow {
                rpc: action.rpc(),
                needed,
                operator: self.name.clone(),
                has: self.role,
            });
        }
        match program {
            Some(program) if !self.covers(program) => Err(AuthError::OutOfScope {
                operator: self.name.clone(),
                role: self.role,
                covered: self
                    .programs
                    .iter()
                    .map(ProgramName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                program: program.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// A parsed and checked `auth.toml`.
///
/// ```toml
/// trust_domain = "killswitch.local"
/// pinned_labels = ["region", "team"]  # values only the collector's certificate sets
///
/// [[operator]]
/// name = "alice"
/// role = "admin"          # viewer | responder | owner | admin
/// cert = true             # may authenticate with spiffe://TD/operator/alice
///
/// [[operator]]
/// name = "carol"
/// role = "owner"
/// programs = ["demo"]     # empty or absent: every program (not allowed for admin)
/// token_sha256 = "9f86d0..."  # lowercase hex SHA-256 of the bearer token
/// expires = "2026-12-31T23:59:59Z"  # optional: the token is refused from then on
/// signing_key = "3b6a27..."   # ed25519 public key: carol's resumes must be signed
///
/// [revoked]                # see `revoked.rs`
/// collectors = ["laptop-17"]
/// serials = ["3A:5F:00:91"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The SPIFFE trust domain every client certificate must belong to.
    pub trust_domain: String,
    /// The operators, in file order.
    pub operators: Vec<Operator>,
    /// Which programs which collectors may follow, in file order; empty: any collector
    /// may follow any program.
    pub collectors: Vec<CollectorRule>,
    /// Label keys whose values come from the collector's certificate (its SPIFFE ID's
    /// query, `spiffe://TD/collector/ID?region=emea`), never from its Hello.
    pub pinned_labels: BTreeSet<String>,
    /// Collectors and certificates refused whatever else the file says (`[revoked]`).
    pub revoked: Revoked,
}

/// A `[[collector]]` entry of `auth.toml`: collectors whose id matches `id` may follow
/// the programs that match one of `programs`. Patterns are literal but for `*`, which
/// matches any run of characters (`laptop-*`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorRule {
    /// Pattern of collector ids.
    pub id: String,
    /// Patterns of program names.
    pub programs: Vec<String>,
}

impl AuthConfig {
    /// Whether collector `id` may follow `program`: always when the file has no
    /// `[[collector]]` entry, else when an entry matching `id` lists it.
    #[must_use]
    pub fn may_follow(&self, id: &str, program: &str) -> bool {
        self.collectors.is_empty()
            || self
                .collectors
                .iter()
                .any(|rule| glob(&rule.id, id) && rule.programs.iter().any(|p| glob(p, program)))
    }
}

/// Whether `text` matches `pattern`, in which `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A pattern of `[[collector]]`: the characters `valid` allows, and `*`.
fn valid_pattern(pattern: &str, valid: impl Fn(char) -> bool) -> bool {
    !pattern.is_empty() && pattern.len() <= 128 && pattern.chars().all(|c| c == '*' || valid(c))
}

/// Why `auth.toml` was refused: the file, the line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct AuthFileError {
    origin: String,
    line: Option<usize>,
    message: String,
}

impl AuthFileError {
    /// The 1-based line the problem is on, when known.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        self.line
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    trust_domain: toml::Spanned<String>,
    #[serde(default)]
    pinned_labels: Vec<toml::Spanned<String>>,
    #[serde(default)]
    operator: Vec<toml::Spanned<RawOperator>>,
    #[serde(default)]
    collector: Vec<toml::Spanned<RawCollector>>,
    #[serde(default)]
    revoked: RawRevoked,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    id: toml::Spanned<String>,
    programs: Vec<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    name: toml::Spanned<String>,
    role: toml::Spanned<Role>,
    #[serde(default)]
    programs: Vec<toml::Spanned<String>>,
    #[serde(default)]
    cert: bool,
    token_sha256: Option<toml::Spanned<String>>,
    /// When the bearer token stops being accepted, RFC 3339 (`2026-12-31T23:59:59Z`).
    expires: Option<toml::Spanned<String>>,
    signing_key: Option<toml::Spanned<String>>,
}

impl AuthConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| AuthFileError {
            origin: origin.clone(),
            line: None,
            message: format!("cannot read the auth file: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and checks `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let fail = |span: Option<Range<usize>>, message: String| AuthFileError {
            origin: origin.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| fail(e.span(), e.message().to_owned()))?;

        let trust_domain = raw.trust_domain.get_ref();
        if !valid_trust_domain(trust_domain) {
            return Err(fail(
                Some(raw.trust_domain.span()),
                format!(
                    "trust_domain {trust_domain:?} is invalid: use 1 to 255 lowercase letters, digits, '.', '-' and '_'"
                ),
            ));
        }
        let mut pinned_labels = BTreeSet::new();
        for key in raw.pinned_labels {
            if let Err(error) = contract::label_key(key.get_ref()) {
                return Err(fail(Some(key.span()), format!("pinned_labels: {error}")));
            }
            if !pinned_labels.insert(key.get_ref().clone()) {
                return Err(fail(
                    Some(key.span()),
                    format!("pinned_labels lists {:?} twice", key.get_ref()),
                ));
            }
        }
        let mut seen = Seen::default();
        let mut operators = Vec::with_capacity(raw.operator.len());
        for entry in raw.operator {
            operators.push(parse_operator(entry, &mut seen, &fail)?);
        }
        let mut collectors = Vec::with_capacity(raw.collector.len());
        for entry in raw.collector {
            collectors.push(parse_collector(entry, &fail)?);
        }
        let revoked = parse_revoked(raw.revoked, &fail)?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            operators,
            collectors,
            pinned_labels,
            revoked,
        })
    }

    /// The operator called `name`.
    #[must_use]
    pub fn operator(&self, name: &str) -> Option<&Operator> {
        self.operators.iter().find(|o| o.name == name)
    }

    /// The operator whose token this is. Every listed hash is compared, in constant time,
    /// so the time taken does not tell which (or whether one) matched.
    #[must_use]
    pub fn operator_by_token(&self, token: &str) -> Option<&Operator> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for operator in &self.operators {
            let matches = operator
                .token_sha256
                .as_ref()
                .is_some_and(|hash| bool::from(hash.ct_eq(&digest)));
            if matches {
                found = Some(operator);
            }
        }
        found
    }
}

/// What the `[[operator]]` entries before this one use, which it may not repeat.
#[derive(Default)]
struct Seen {
    names: HashSet<String>,
    tokens: HashSet<[u8; 32]>,
}

/// Checks one `[[operator]]` entry; `fail` makes an error at a span of the file.
fn parse_operator(
    entry: toml::Spanned<RawOperator>,
    seen: &mut Seen,
    fail: &impl Fn(Option<Range<usize>>, String) -> AuthFileError,
) -> Result<Operator, AuthFileError> {
    let at = entry.span();
    let raw = entry.into_inner();
    let name = raw.name.get_ref();
    if !valid_segment(name) {
        return Err(fail(
            Some(raw.name.span()),
            format!(
                "operator name {name:?} is invalid: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '-' and '_', starting with a letter or digit"
            ),
        ));
    }
    if !seen.names.insert(name.clone()) {
        return Err(fail(
            Some(raw.name.span()),
            format!("operator {name:?} is listed twice"),
        ));
    }
    let role = *raw.role.get_ref();
    let mut programs = Vec::with_capacity(raw.programs.len());
    for program in &raw.programs {
        let parsed = ProgramName::parse(program.get_ref())
            .map_err(|e| fail(Some(program.span()), format!("programs: {e}")))?;
        programs.push(parsed);
    }
    if role == Role::Admin && !programs.is_empty() {
        return Err(fail(
            Some(raw.role.span()),
            format!(
                "operator {name:?} is an admin, who covers every program: remove `programs` or choose role owner"
            ),
        ));
    }
    let token_sha256 = match &raw.token_sha256 {
        None => None,
        Some(hash) => {
            let parsed = parse_sha256_hex(hash.get_ref()).ok_or_else(|| {
                fail(
                    Some(hash.span()),
                    "token_sha256 must be 64 lowercase hex digits: the SHA-256 of the token, as `killswitch token new` prints it".to_owned(),
                )
            })?;
            if !seen.tokens.insert(parsed) {
                return Err(fail(
                    Some(hash.span()),
                    format!("operator {name:?} has the same token_sha256 as another operator"),
                ));
            }
            Some(parsed)
        }
    };
    if !raw.cert && token_sha256.is_none() {
        return Err(fail(
            Some(at),
            format!("operator {name:?} cannot authenticate: set cert = true or token_sha256"),
        ));
    }
    let signing_key = match &raw.signing_key {
        None => None,
        Some(key) => Some(parse_sha256_hex(key.get_ref()).ok_or_else(|| {
            fail(
                Some(key.span()),
                "signing_key must be 64 lowercase hex digits: the ed25519 public key `killswitch keys new` prints".to_owned(),
            )
        })?),
    };
    let token_expires = match &raw.expires {
        None => None,
        Some(_) if token_sha256.is_none() => {
            return Err(fail(
                Some(at),
                format!(
                    "operator {name:?} has `expires` but no token_sha256: `expires` applies to the bearer token"
                ),
            ));
        }
        Some(at) => Some(humantime::parse_rfc3339_weak(at.get_ref()).map_err(|_| {
            fail(
                Some(at.span()),
                format!(
                    "expires {:?} is not a time: use RFC 3339, e.g. 2026-12-31T23:59:59Z",
                    at.get_ref()
                ),
            )
        })?),
    };
    Ok(Operator {
        name: name.clone(),
        role,
        programs,
        cert: raw.cert,
        token_sha256,
        token_expires,
        signing_key,
    })
}

/// Checks one `[[collector]]` entry; `fail` makes an error at a span of the file.
fn parse_collector(
    entry: toml::Spanned<RawCollector>,
    fail: &impl Fn(Option<Range<usize>>, String) -> AuthFileError,
) -> Result<CollectorRule, AuthFileError> {
    let at = entry.span();
    let raw = entry.into_inner();
    let id = raw.id.get_ref();
    let id_char = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
    if !valid_pattern(id, id_char) {
        return Err(fail(
            Some(raw.id.span()),
            format!(
                "collector id pattern {id:?} is invalid: use collector id characters (A-Z, a-z, 0-9, '.', '_', ':', '-') and '*' for any run of them, at most 128"
            ),
        ));
    }
    if raw.programs.is_empty() {
        return Err(fail(
            Some(at),
            format!("[[collector]] {id:?} lists no programs: name at least one (or \"*\")"),
        ));
    }
    let mut programs = Vec::with_capacity(raw.programs.len());
    for program in &raw.programs {
        let pattern = program.get_ref();
        let name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !valid_pattern(pattern, name_char) {
            return Err(fail(
                Some(program.span()),
                format!(
                    "program pattern {pattern:?} is invalid: use program name characters (a-z, 0-9, '-') and '*' for any run of them"
                ),
            ));
        }
        programs.push(pattern.clone());
    }
    Ok(CollectorRule {
        id: id.clone(),
        programs,
    })
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_`.
fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

/// An operator or replica name: 1 to 64 of `A-Za-z0-9._-`, starting alphanumeric.
pub(super) fn valid_segment(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// 64 lowercase hex digits.
fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::fixtures::{TD, config, sha256_hex};

    #[test]
    fn collectors_follow_only_the_programs_their_entries_list() {
        assert!(config().may_follow("anyone", "anything"), "no entry: open");
        let text = format!(
            r#"
trust_domain = "{TD}"

[[collector]]
id = "laptop-*"
programs = ["mci", "keys-*"]

[[collector]]
id = "build-01"
programs = ["*"]
"#
        );
        let config = AuthConfig::parse(&text, "auth.toml").expect("valid");
        assert!(config.may_follow("laptop-7", "mci"));
        assert!(config.may_follow("laptop-7", "keys-eu"));
        assert!(!config.may_follow("laptop-7", "screen"));
        assert!(!config.may_follow("desktop-1", "mci"));
        assert!(config.may_follow("build-01", "screen"));
        assert!(!config.may_follow("build-011", "screen"));

        for (entry, problem) in [
            (
                "id = \"bad id\"\nprograms = [\"a\"]",
                "collector id pattern",
            ),
            ("id = \"c\"\nprograms = []", "lists no programs"),
            (
                "id = \"c\"\nprograms = [\"Bad\"]",
                "program pattern \"Bad\"",
            ),
        ] {
            let text = format!("trust_domain = \"{TD}\"\n[[collector]]\n{entry}\n");
            let error = AuthConfig::parse(&text, "auth.toml").expect_err(entry);
            assert!(error.to_string().contains(problem), "{error}");
        }
    }

    #[test]
    fn glob_patterns() {
        for (pattern, text, matches) in [
            ("*", "", true),
            ("*", "abc", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*", "a", true),
            ("a*c", "abbc", true),
            ("a*c", "ab", false),
            ("*b*", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn auth_file_errors_name_the_line() {
        let hash = sha256_hex("t");
        #[track_caller]
        fn check(text: &str, line: Option<usize>, message: &str) {
            let error = AuthConfig::parse(text, "auth.toml").expect_err("invalid");
            assert_eq!(error.line(), line, "{error}");
            assert!(
                error.to_string().contains(message),
                "{error} lacks {message:?}"
            );
        }
        let op = |body: &str| format!("trust_domain = \"td\"\n\n[[operator]]\n{body}");
        check("", Some(1), "missing field `trust_domain`");
        check(
            "trust_domain = \"Bad Domain\"\n",
            Some(1),
            "trust_domain \"Bad Domain\" is invalid",
        );
        check(
            &op("name = \"a\"\nrole = \"root\"\ncert = true\n"),
            Some(5),
            "unknown variant `root`",
        );
        check(
            &op("name = \"a\"\nrole = \"viewer\"\ncert = true\ncolour = 1\n"),
            Some(7),
            "unknown field `colour`",
        );
        check(
            &op("name = \"a b\"\nrole = \"viewer\"\ncert = true\n"),
            Some(4),
            "operator name \"a b\" is invalid",
        );
        check(
            &op("name = \"a\"\nrole = \"viewer\"\n"),
            Some(3),
            "cannot authenticate",
        );
        check(
            &op("name = \"a\"\nrole = \"owner\"\nprograms = [\"Demo\"]\ncert = true\n"),
            Some(6),
            "programs: invalid program name",
        );
        check(
            &op("name = \"a\"\nrole = \"admin\"\nprograms = [\"demo\"]\ncert = true\n"),
            Some(5),
            "is an admin",
        );
        check(
            &op("name = \"a\"\nrole = \"viewer\"\ntoken_sha256 = \"ABC\"\n"),
            Some(6),
            "64 lowercase hex digits",
        );
        check(
            &op(&format!(
                "name = \"a\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
                hash.to_uppercase()
            )),
            Some(6),
            "64 lowercase hex digits",
        );
        check(
            &op(&format!(
                "name = \"a\"\nrole = \"viewer\"\ntoken_sha256 = \"{hash}\"\n\n[[operator]]\nname = \"b\"\nrole = \"viewer\"\ntoken_sha256 = \"{hash}\"\n"
            )),
            Some(11),
            "same token_sha256",
        );
        check(
            &op(
                "name = \"a\"\nrole = \"viewer\"\ncert = true\n\n[[operator]]\nname = \"a\"\nrole = \"viewer\"\ncert = true\n",
            ),
            Some(9),
            "listed twice",
        );
        let error = AuthConfig::parse("x", "/etc/killswitch/auth.toml").expect_err("invalid");
        assert!(
            error
                .to_string()
                .starts_with("/etc/killswitch/auth.toml:1: "),
            "{error}"
        );
    }

    #[test]
    fn auth_file_parses() {
        let config = config();
        assert_eq!(config.trust_domain, TD);
        let names: Vec<_> = config
            .operators
            .iter()
            .map(|o| (o.name.as_str(), o.role, o.cert))
            .collect();
        assert_eq!(
            names,
            [
                ("alice", Role::Admin, true),
                ("bob", Role::Responder, true),
                ("carol", Role::Owner, false),
                ("vic", Role::Viewer, false)
            ]
        );
        let carol = config.operator("carol").expect("listed");
        assert!(carol.covers("demo") && carol.covers("other") && !carol.covers("payments"));
        assert!(config.operator("alice").expect("listed").covers("payments"));
        assert!(!format!("{carol:?}").contains(&sha256_hex("carol-token")));
    }
}
