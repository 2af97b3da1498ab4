//! Who is calling, and whether they may: the operator list in `auth.toml`, identities
//! taken from client certificates or bearer tokens, and the role table.
//!
//! Every admin handler calls [`Auth::authorize`] before it reads or writes anything, and
//! every collector session calls [`Auth::collector`] before it reads Hello, so a denied
//! call never touches etcd.
//!
//! - A client certificate (already verified against `--client-ca` by TLS) names its
//!   holder with a SPIFFE URI SAN: `spiffe://TD/collector/ID` is collector `ID`,
//!   `spiffe://TD/operator/NAME` is operator `NAME` (who must be listed with
//!   `cert = true`), `spiffe://TD/replica/NAME` is a peer replica. `TD` must be the trust
//!   domain of `auth.toml`. A certificate without a URI SAN names a collector by its
//!   common name. A peer replica may also present this replica's own certificate.
//! - Otherwise `authorization: Bearer TOKEN` names the operator whose `token_sha256` is the
//!   token's SHA-256 (compared in constant time; only hashes are stored).
//! - Collectors may open a session and nothing else; operators may call the admin API and
//!   not open a session; peer replicas may only list collectors.
//!
//! Under `--insecure-dev` ([`Auth::insecure_dev`]) every caller is an admin named by its
//! `killswitch-actor` metadata, and collectors are who their Hello says.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::ClientTlsConfig;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::metrics::Metrics;
use crate::model::{self, CollectorId, InvalidInput, ProgramName};

/// The actor recorded under `--insecure-dev` when a request names none.
const ANONYMOUS: &str = "anonymous";

/// How to authenticate, for the `UNAUTHENTICATED` message.
const HOW_TO_AUTHENTICATE: &str = "operators pass --token (KILLSWITCH_TOKEN) or --cert and \
    --key (KILLSWITCH_CERT, KILLSWITCH_KEY) issued for this control plane; collectors use \
    a client certificate from its CA (ClientBuilder::tls)";

/// What an operator may do, from least to most. Each role may do everything the roles
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: programs, status, collectors, the audit log.
    Viewer,
    /// Also pauses: stopping collection is deliberately easy.
    Responder,
    /// Also resumes, creates programs and sets their policy, for the programs it covers.
    Owner,
    /// Everything, on every program.
    Admin,
}

impl Role {
    /// The role's name as written in `auth.toml`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `AdminService` call, as far as authorization cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GetProgram`.
    GetProgram,
    /// `ListPrograms`.
    ListPrograms,
    /// `Status`.
    Status,
    /// `WatchStatus`.
    WatchStatus,
    /// `ListCollectors`.
    ListCollectors,
    /// `ListAudit`.
    ListAudit,
    /// `VerifyAudit`.
    VerifyAudit,
    /// `Pause`.
    Pause,
    /// `Resume`.
    Resume,
    /// `Approve`: another operator's resume request.
    Approve,
    /// `GetApproval`: read a resume request.
    GetApproval,
    /// `CreateProgram`.
    CreateProgram,
    /// `SetPolicy`.
    SetPolicy,
    /// `StopAll` and `ClearStopAll`: every program at once.
    StopAll,
}

impl Action {
    /// Every action, for tables and tests.
    pub const ALL: [Action; 14] = [
        Action::GetProgram,
        Action::ListPrograms,
        Action::Status,
        Action::WatchStatus,
        Action::ListCollectors,
        Action::ListAudit,
        Action::VerifyAudit,
        Action::GetApproval,
        Action::Pause,
        Action::Resume,
        Action::Approve,
        Action::CreateProgram,
        Action::SetPolicy,
        Action::StopAll,
    ];

    /// The least role that may perform the action: the role table.
    #[must_use]
    pub fn required_role(self) -> Role {
        match self {
            Action::GetProgram
            | Action::ListPrograms
            | Action::Status
            | Action::WatchStatus
            | Action::ListCollectors
            | Action::ListAudit
            | Action::VerifyAudit
            | Action::GetApproval => Role::Viewer,
            Action::Pause => Role::Responder,
            Action::Resume | Action::Approve | Action::CreateProgram | Action::SetPolicy => {
                Role::Owner
            }
            Action::StopAll => Role::Admin,
        }
    }

    /// The RPC's name, for messages.
    #[must_use]
    pub fn rpc(self) -> &'static str {
        match self {
            Action::GetProgram => "GetProgram",
            Action::ListPrograms => "ListPrograms",
            Action::Status => "Status",
            Action::WatchStatus => "WatchStatus",
            Action::ListCollectors => "ListCollectors",
            Action::ListAudit => "ListAudit",
            Action::VerifyAudit => "VerifyAudit",
            Action::Pause => "Pause",
            Action::Resume => "Resume",
            Action::Approve => "Approve",
            Action::GetApproval => "GetApproval",
            Action::CreateProgram => "CreateProgram",
            Action::SetPolicy => "SetPolicy",
            Action::StopAll => "StopAll",
        }
    }
}

/// Why a caller is refused. [`AuthError::is_unauthenticated`] tells `UNAUTHENTICATED`
/// (who are you?) from `PERMISSION_DENIED` (not you); `error.rs` maps them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither a client certificate nor a bearer token came with the request.
    #[error("no credentials: {HOW_TO_AUTHENTICATE}")]
    NoCredentials,
    /// The `authorization` metadata is not `Bearer TOKEN`.
    #[error("the authorization metadata must be `Bearer TOKEN`")]
    MalformedAuthorization,
    /// No operator has this token.
    #[error(
        "unknown bearer token: check --token (KILLSWITCH_TOKEN); its SHA-256 must be listed in the control plane's auth file"
    )]
    UnknownToken,
    /// The client certificate cannot be read or names nobody.
    #[error("unusable client certificate: {0}")]
    BadCertificate(String),
    /// The certificate's SPIFFE ID belongs to another trust domain.
    #[error(
        "the certificate belongs to trust domain {found:?}; this control plane trusts {expected:?}"
    )]
    ForeignTrustDomain {
        /// The trust domain in the certificate.
        found: String,
        /// The trust domain in `auth.toml`.
        expected: String,
    },
    /// The certificate names an operator `auth.toml` does not list.
    #[error("the certificate names operator {0:?}, who is not in the control plane's auth file")]
    UnknownOperator(String),
    /// The operator is listed without `cert = true`.
    #[error(
        "operator {0:?} may not authenticate by certificate (cert = false in the auth file); use a token"
    )]
    CertificateNotAllowed(String),
    /// A collector called the admin API.
    #[error("collector credentials cannot call the admin API")]
    CollectorOnAdmin,
    /// An operator (or peer replica) tried to open a collector session.
    #[error(
        "{0} credentials cannot open a collector session; collectors use their own certificate"
    )]
    NotACollector(&'static str),
    /// A peer replica's credentials were used for something other than listing collectors.
    #[error("replica credentials can only list collectors, not call {0}")]
    ReplicaOnAdmin(&'static str),
    /// The operator's role is below what the call needs.
    #[error("{rpc} needs role {needed} or higher; operator {operator:?} has role {has}")]
    RoleTooLow {
        /// The RPC called.
        rpc: &'static str,
        /// The least role that may call it.
        needed: Role,
        /// Who called.
        operator: String,
        /// Their role.
        has: Role,
    },
    /// The operator's `programs` do not include the program.
    #[error(
        "operator {operator:?} (role {role}) may act only on {covered}; {program:?} is out of scope: ask an admin or an operator who covers it"
    )]
    OutOfScope {
        /// Who called.
        operator: String,
        /// Their role.
        role: Role,
        /// The programs they cover, comma-separated.
        covered: String,
        /// The program asked for.
        program: String,
    },
    /// A collector's Hello claims another id than its certificate.
    #[error(
        "certificate says {certified}, Hello claims {claimed}: a collector can only speak for itself"
    )]
    HelloMismatch {
        /// The id in the certificate.
        certified: CollectorId,
        /// The id in Hello.
        claimed: CollectorId,
    },
    /// The auth file's `[[collector]]` entries do not let this collector follow a program.
    #[error(
        "collector {collector} may not follow program {program:?}: no [[collector]] entry of the control plane's auth file that matches its id lists it; ask an admin to add it"
    )]
    ProgramNotAllowed {
        /// The collector.
        collector: CollectorId,
        /// The program it asked for.
        program: String,
    },
    /// `--insecure-dev` only: the `killswitch-actor` metadata is invalid.
    #[error(transparent)]
    InvalidActor(#[from] InvalidInput),
}

impl AuthError {
    /// Whether the caller is unknown (`UNAUTHENTICATED`) rather than known and refused
    /// (`PERMISSION_DENIED`).
    #[must_use]
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::NoCredentials
                | AuthError::MalformedAuthorization
                | AuthError::UnknownToken
                | AuthError::BadCertificate(_)
        )
    }

    /// A short, fixed name for the kind of refusal, the `reason` label of
    /// `killswitch_auth_failures_total` (see [`crate::metrics`]).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NoCredentials => "no_credentials",
            AuthError::MalformedAuthorization => "malformed_authorization",
            AuthError::UnknownToken => "unknown_token",
            AuthError::BadCertificate(_) => "bad_certificate",
            AuthError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            AuthError::UnknownOperator(_) => "unknown_operator",
            AuthError::CertificateNotAllowed(_) => "certificate_not_allowed",
            AuthError::CollectorOnAdmin => "collector_on_admin",
            AuthError::NotACollector(_) => "not_a_collector",
            AuthError::ReplicaOnAdmin(_) => "replica_on_admin",
            AuthError::RoleTooLow { .. } => "role_too_low",
            AuthError::OutOfScope { .. } => "out_of_scope",
            AuthError::HelloMismatch { .. } => "hello_mismatch",
            AuthError::ProgramNotAllowed { .. } => "program_not_allowed",
            AuthError::InvalidActor(_) => "invalid_actor",
        }
    }
}

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
    token_sha256: Option<[u8; 32]>,
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
/// signing_key = "3b6a27..."   # ed25519 public key: carol's resumes must be signed
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
    operator: Vec<toml::Spanned<RawOperator>>,
    #[serde(default)]
    collector: Vec<toml::Spanned<RawCollector>>,
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
        let fail = |span: Option<std::ops::Range<usize>>, message: String| AuthFileError {
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
        let mut names = HashSet::new();
        let mut tokens = HashSet::new();
        let mut operators = Vec::with_capacity(raw.operator.len());
        for entry in raw.operator {
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
            if !names.insert(name.clone()) {
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
                    if !tokens.insert(parsed) {
                        return Err(fail(
                            Some(hash.span()),
                            format!(
                                "operator {name:?} has the same token_sha256 as another operator"
                            ),
                        ));
                    }
                    Some(parsed)
                }
            };
            if !raw.cert && token_sha256.is_none() {
                return Err(fail(
                    Some(at),
                    format!(
                        "operator {name:?} cannot authenticate: set cert = true or token_sha256"
                    ),
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
            operators.push(Operator {
                name: name.clone(),
                role,
                programs,
                cert: raw.cert,
                token_sha256,
                signing_key,
            });
        }
        let mut collectors = Vec::with_capacity(raw.collector.len());
        for entry in raw.collector {
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
            collectors.push(CollectorRule {
                id: id.clone(),
                programs,
            });
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            operators,
            collectors,
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
fn valid_segment(name: &str) -> bool {
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

/// Whom a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSubject {
    /// `spiffe://TD/collector/ID`, or a certificate without URI SAN whose CN is `ID`.
    Collector(CollectorId),
    /// `spiffe://TD/operator/NAME`.
    Operator(String),
    /// `spiffe://TD/replica/NAME`.
    Replica(String),
}

/// Reads a SPIFFE ID `spiffe://TD/KIND/NAME` whose trust domain must be `trust_domain`.
pub fn parse_spiffe_id(uri: &str, trust_domain: &str) -> Result<CertSubject, AuthError> {
    let bad = |why: &str| AuthError::BadCertificate(format!("SPIFFE ID {uri:?} {why}"));
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("does not start with spiffe://"))?;
    let (td, path) = rest.split_once('/').ok_or_else(|| {
        bad("has no path: expected spiffe://TD/collector/ID or spiffe://TD/operator/NAME")
    })?;
    if td != trust_domain {
        return Err(AuthError::ForeignTrustDomain {
            found: td.to_owned(),
            expected: trust_domain.to_owned(),
        });
    }
    let Some((kind, name)) = path.split_once('/') else {
        return Err(bad(
            "has no name: expected spiffe://TD/collector/ID or spiffe://TD/operator/NAME",
        ));
    };
    match kind {
        "collector" => CollectorId::parse(name)
            .map(CertSubject::Collector)
            .map_err(|e| bad(&format!("has an invalid collector id: {e}"))),
        "operator" if valid_segment(name) => Ok(CertSubject::Operator(name.to_owned())),
        "replica" if valid_segment(name) => Ok(CertSubject::Replica(name.to_owned())),
        "operator" | "replica" => Err(bad(&format!("has an invalid {kind} name"))),
        _ => Err(bad(&format!(
            "names a {kind:?}: expected collector, operator or replica"
        ))),
    }
}

/// Whom the DER certificate `der` names: its one `spiffe://` URI SAN, or without any URI
/// SAN, its common name as a collector id.
pub fn subject_of(der: &[u8], trust_domain: &str) -> Result<CertSubject, AuthError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| AuthError::BadCertificate(format!("cannot parse it: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| AuthError::BadCertificate(format!("bad subject alternative names: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => {
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .ok_or_else(|| {
                    AuthError::BadCertificate(
                        "it has neither a spiffe:// URI SAN nor a common name".to_owned(),
                    )
                })?;
            CollectorId::parse(cn)
                .map(CertSubject::Collector)
                .map_err(|e| {
                    AuthError::BadCertificate(format!("its common name is not a collector id: {e}"))
                })
        }
        [uri] => parse_spiffe_id(uri, trust_domain),
        more => Err(AuthError::BadCertificate(format!(
            "it has {} URI SANs; expected one spiffe:// ID",
            more.len()
        ))),
    }
}

/// What an operator's resumes and approvals must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// `--insecure-dev`: a signature is optional, from any key.
    Optional,
    /// Signed, with this ed25519 public key.
    Required([u8; 32]),
    /// The operator has no `signing_key`: their resumes cannot be signed.
    Unregistered,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// `--insecure-dev`: anyone, named by the `killswitch-actor` metadata.
    Developer(String),
    /// An operator listed in `auth.toml`.
    Operator(&'a Operator),
    /// A collector, by its certificate.
    Collector(CollectorId),
    /// A peer replica asking for this replica's collectors.
    Replica(String),
}

impl Caller<'_> {
    /// May this caller perform `action` (on `program`)? Returns the actor to record.
    pub fn authorize(&self, action: Action, program: Option<&str>) -> Result<String, AuthError> {
        match self {
            Caller::Developer(actor) => Ok(actor.clone()),
            Caller::Operator(operator) => {
                operator.permits(action, program)?;
                Ok(operator.name.clone())
            }
            Caller::Collector(_) => Err(AuthError::CollectorOnAdmin),
            Caller::Replica(name) if action == Action::ListCollectors => {
                Ok(format!("replica {name}"))
            }
            Caller::Replica(_) => Err(AuthError::ReplicaOnAdmin(action.rpc())),
        }
    }
}

/// Identifies the caller of a TLS replica from the leaf of its verified certificate
/// chain, else its `authorization` metadata. `own_cert` is this replica's certificate: a
/// peer replica presenting it is a [`Caller::Replica`].
pub fn identify<'a>(
    config: &'a AuthConfig,
    own_cert: &[u8],
    leaf: Option<&[u8]>,
    authorization: Option<&AsciiMetadataValue>,
) -> Result<Caller<'a>, AuthError> {
    if let Some(der) = leaf {
        if der == own_cert {
            return Ok(Caller::Replica("peer".to_owned()));
        }
        return match subject_of(der, &config.trust_domain)? {
            CertSubject::Collector(id) => Ok(Caller::Collector(id)),
            CertSubject::Replica(name) => Ok(Caller::Replica(name)),
            CertSubject::Operator(name) => match config.operator(&name) {
                None => Err(AuthError::UnknownOperator(name)),
                Some(operator) if !operator.cert => Err(AuthError::CertificateNotAllowed(name)),
                Some(operator) => Ok(Caller::Operator(operator)),
            },
        };
    }
    let Some(value) = authorization else {
        return Err(AuthError::NoCredentials);
    };
    let token = bearer_token(value).ok_or(AuthError::MalformedAuthorization)?;
    config
        .operator_by_token(token)
        .map(Caller::Operator)
        .ok_or(AuthError::UnknownToken)
}

/// `TOKEN` from `Bearer TOKEN` (the scheme is case-insensitive).
fn bearer_token(value: &AsciiMetadataValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks the id a collector's Hello claims against the one its certificate proves, if
/// any (none under `--insecure-dev`).
pub fn check_hello(
    certified: Option<&CollectorId>,
    claimed: &CollectorId,
) -> Result<(), AuthError> {
    match certified {
        Some(certified) if certified != claimed => Err(AuthError::HelloMismatch {
            certified: certified.clone(),
            claimed: claimed.clone(),
        }),
        _ => Ok(()),
    }
}

/// The replica's authentication and authorization: either `--insecure-dev` or TLS with
/// an `auth.toml`.
#[derive(Debug, Clone)]
pub struct Auth {
    mode: Mode,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone)]
enum Mode {
    InsecureDev,
    Tls {
        config: AuthConfig,
        own_cert: Vec<u8>,
        peer_tls: Box<ClientTlsConfig>,
    },
}

impl Auth {
    /// Everyone is an admin named by `killswitch-actor`; collectors are trusted by Hello.
    #[must_use]
    pub fn insecure_dev() -> Self {
        Self {
            mode: Mode::InsecureDev,
            metrics: Arc::default(),
        }
    }

    /// Callers identified by certificate or token against `config`. `own_cert` is the DER
    /// leaf this replica presents; `peer_tls` is how it connects to its peers (trusting
    /// their CA and presenting that certificate).
    #[must_use]
    pub fn tls(config: AuthConfig, own_cert: Vec<u8>, peer_tls: ClientTlsConfig) -> Self {
        Self {
            mode: Mode::Tls {
                config,
                own_cert,
                peer_tls: Box::new(peer_tls),
            },
            metrics: Arc::default(),
        }
    }

    /// Counts refusals in `metrics` (`killswitch_auth_failures_total`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How to connect to a peer replica: `None` for plain text.
    #[must_use]
    pub fn peer_tls(&self) -> Option<&ClientTlsConfig> {
        match &self.mode {
            Mode::InsecureDev => None,
            Mode::Tls { peer_tls, .. } => Some(peer_tls),
        }
    }

    /// Who sent `request`.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller<'_>, AuthError> {
        match &self.mode {
            Mode::InsecureDev => Ok(Caller::Developer(dev_actor(request.metadata())?)),
            Mode::Tls {
                config, own_cert, ..
            } => {
                let chain = request.peer_certs();
                let leaf = chain.as_deref().and_then(|c| c.first()).map(AsRef::as_ref);
                identify(
                    config,
                    own_cert,
                    leaf,
                    request.metadata().get("authorization"),
                )
            }
        }
    }

    /// Checks that the caller of `request` may perform `action` (on `program`, when it
    /// targets one, as the request spells it); returns the actor to record in the audit.
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        action: Action,
        program: Option<&str>,
    ) -> Result<String, AuthError> {
        let result = self
            .caller(request)
            .and_then(|caller| caller.authorize(action, program));
        if let Err(error) = &result {
            tracing::info!(rpc = action.rpc(), program, %error, "denied");
            self.metrics.auth_failure(error.reason());
        }
        result
    }

    /// Whether `actor`'s resumes and approvals must be signed, and with which key.
    #[must_use]
    pub fn signing(&self, actor: &str) -> Signing {
        match &self.mode {
            Mode::InsecureDev => Signing::Optional,
            Mode::Tls { config, .. } => match config.operator(actor).and_then(|o| o.signing_key) {
                Some(key) => Signing::Required(key),
                None => Signing::Unregistered,
            },
        }
    }

    /// Checks that the caller of `request` may open a collector session; returns the
    /// collector id its certificate proves, `None` under `--insecure-dev`.
    pub fn collector<T>(&self, request: &Request<T>) -> Result<Option<CollectorId>, AuthError> {
        if matches!(self.mode, Mode::InsecureDev) {
            return Ok(None);
        }
        let result = match self.caller(request) {
            Ok(Caller::Collector(id)) => Ok(Some(id)),
            Ok(Caller::Developer(_)) => Ok(None),
            Ok(Caller::Operator(_)) => Err(AuthError::NotACollector("operator")),
            Ok(Caller::Replica(_)) => Err(AuthError::NotACollector("replica")),
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            self.metrics.auth_failure(error.reason());
        }
        result
    }

    /// [`check_hello`], then whether the collector may follow each of `programs` (the
    /// auth file's `[[collector]]` entries; anything under `--insecure-dev`), counting a
    /// refusal in the metrics.
    pub fn check_hello(
        &self,
        certified: Option<&CollectorId>,
        claimed: &CollectorId,
        programs: &[ProgramName],
    ) -> Result<(), AuthError> {
        let result = check_hello(certified, claimed).and_then(|()| match &self.mode {
            Mode::InsecureDev => Ok(()),
            Mode::Tls { config, .. } => programs
                .iter()
                .find(|p| !config.may_follow(claimed.as_str(), p.as_str()))
                .map_or(Ok(()), |p| {
                    Err(AuthError::ProgramNotAllowed {
                        collector: claimed.clone(),
                        program: p.to_string(),
                    })
                }),
        });
        if let Err(error) = &result {
            self.metrics.auth_failure(error.reason());
        }
        result
    }
}

/// `--insecure-dev`: the actor named by the request, `anonymous` when absent.
fn dev_actor(metadata: &MetadataMap) -> Result<String, AuthError> {
    match metadata.get(killswitch_proto::contract::ACTOR_METADATA) {
        None => Ok(ANONYMOUS.to_owned()),
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| InvalidInput::ControlCharacters { field: "actor" })?;
            Ok(model::actor(value)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "killswitch.test";

    fn sha256_hex(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn config() -> AuthConfig {
        let text = format!(
            r#"
trust_domain = "{TD}"

[[operator]]
name = "alice"
role = "admin"
cert = true

[[operator]]
name = "bob"
role = "responder"
cert = true
token_sha256 = "{bob}"

[[operator]]
name = "carol"
role = "owner"
programs = ["demo", "other"]
token_sha256 = "{carol}"

[[operator]]
name = "vic"
role = "viewer"
token_sha256 = "{vic}"
"#,
            bob = sha256_hex("bob-token"),
            carol = sha256_hex("carol-token"),
            vic = sha256_hex("vic-token"),
        );
        AuthConfig::parse(&text, "auth.toml").expect("valid auth file")
    }

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
    fn role_table() {
        use Action::*;
        // (action, viewer, responder, owner, admin)
        let table = [
            (GetProgram, true, true, true, true),
            (ListPrograms, true, true, true, true),
            (Status, true, true, true, true),
            (WatchStatus, true, true, true, true),
            (ListCollectors, true, true, true, true),
            (ListAudit, true, true, true, true),
            (VerifyAudit, true, true, true, true),
            (Pause, false, true, true, true),
            (Resume, false, false, true, true),
            (Approve, false, false, true, true),
            (GetApproval, true, true, true, true),
            (CreateProgram, false, false, true, true),
            (SetPolicy, false, false, true, true),
            (StopAll, false, false, false, true),
        ];
        assert_eq!(table.len(), Action::ALL.len());
        for (action, viewer, responder, owner, admin) in table {
            for (role, allowed) in [
                (Role::Viewer, viewer),
                (Role::Responder, responder),
                (Role::Owner, owner),
                (Role::Admin, admin),
            ] {
                let operator = Operator {
                    name: "x".into(),
                    role,
                    programs: Vec::new(),
                    cert: true,
                    token_sha256: None,
                    signing_key: None,
                };
                let result = operator.permits(action, Some("demo"));
                assert_eq!(result.is_ok(), allowed, "{role} {action:?}: {result:?}");
                if let Err(error) = result {
                    assert!(
                        error
                            .to_string()
                            .contains(&format!("needs role {}", action.required_role())),
                        "{error}"
                    );
                }
            }
        }
    }

    #[test]
    fn callers() {
        let config = config();
        let op = |name: &str| Caller::Operator(config.operator(name).expect("listed"));
        let collector = Caller::Collector(CollectorId::parse("c1").expect("valid"));
        #[track_caller]
        fn check(
            caller: &Caller<'_>,
            action: Action,
            program: Option<&str>,
            expected: Result<&str, &str>,
        ) {
            let got = caller.authorize(action, program);
            match (got, expected) {
                (Ok(actor), Ok(want)) => assert_eq!(actor, want),
                (Err(error), Err(want)) => {
                    assert!(error.to_string().contains(want), "{error} lacks {want:?}");
                }
                (got, want) => {
                    panic!("{caller:?} {action:?} {program:?}: got {got:?}, want {want:?}")
                }
            }
        }
        check(&op("alice"), Action::Resume, Some("anything"), Ok("alice"));
        check(&op("bob"), Action::Pause, Some("demo"), Ok("bob"));
        check(
            &op("bob"),
            Action::Resume,
            Some("demo"),
            Err("Resume needs role owner"),
        );
        check(&op("carol"), Action::Resume, Some("demo"), Ok("carol"));
        check(
            &op("carol"),
            Action::Resume,
            Some("payments"),
            Err("\"payments\" is out of scope"),
        );
        check(
            &op("carol"),
            Action::Status,
            Some("payments"),
            Err("out of scope"),
        );
        check(&op("carol"), Action::ListPrograms, None, Ok("carol"));
        check(
            &op("vic"),
            Action::Pause,
            Some("demo"),
            Err("Pause needs role responder"),
        );
        check(&op("vic"), Action::Status, Some("demo"), Ok("vic"));
        check(
            &collector,
            Action::Status,
            Some("demo"),
            Err("collector credentials cannot call the admin API"),
        );
        check(
            &Caller::Replica("peer".into()),
            Action::ListCollectors,
            Some("demo"),
            Ok("replica peer"),
        );
        check(
            &Caller::Replica("peer".into()),
            Action::Pause,
            Some("demo"),
            Err("replica credentials"),
        );
        check(
            &Caller::Developer("dev".into()),
            Action::Resume,
            Some("demo"),
            Ok("dev"),
        );
    }

    #[test]
    fn spiffe_ids() {
        let collector = |id: &str| {
            Ok(CertSubject::Collector(
                CollectorId::parse(id).expect("valid"),
            ))
        };
        let cases: Vec<(&str, Result<CertSubject, &str>)> = vec![
            ("spiffe://killswitch.test/collector/c-1", collector("c-1")),
            (
                "spiffe://killswitch.test/collector/host.example:9",
                collector("host.example:9"),
            ),
            (
                "spiffe://killswitch.test/operator/alice",
                Ok(CertSubject::Operator("alice".into())),
            ),
            (
                "spiffe://killswitch.test/replica/r1",
                Ok(CertSubject::Replica("r1".into())),
            ),
            (
                "spiffe://other.test/collector/c-1",
                Err("trust domain \"other.test\""),
            ),
            (
                "spiffe://killswitch.test/collector/",
                Err("invalid collector id"),
            ),
            (
                "spiffe://killswitch.test/collector/a/b",
                Err("invalid collector id"),
            ),
            (
                "spiffe://killswitch.test/operator/",
                Err("invalid operator name"),
            ),
            (
                "spiffe://killswitch.test/operator/a/b",
                Err("invalid operator name"),
            ),
            (
                "spiffe://killswitch.test/admin/alice",
                Err("expected collector, operator or replica"),
            ),
            ("spiffe://killswitch.test/collector", Err("has no name")),
            ("spiffe://killswitch.test", Err("has no path")),
            (
                "https://killswitch.test/collector/c-1",
                Err("does not start with spiffe://"),
            ),
        ];
        for (uri, expected) in cases {
            let got = parse_spiffe_id(uri, TD);
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{uri}"),
                (Err(error), Err(want)) => {
                    assert!(
                        error.to_string().contains(want),
                        "{uri}: {error} lacks {want:?}"
                    );
                }
                (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bearer_tokens() {
        let config = config();
        let header = |text: &str| AsciiMetadataValue::try_from(text).expect("ascii");
        let cases: &[(Option<&str>, Result<&str, AuthError>)] = &[
            (Some("Bearer bob-token"), Ok("bob")),
            (Some("bearer carol-token"), Ok("carol")),
            (Some("Bearer  vic-token "), Ok("vic")),
            (Some("Bearer alice-token"), Err(AuthError::UnknownToken)),
            (Some("Bearer bob-token2"), Err(AuthError::UnknownToken)),
            (Some("Bearer "), Err(AuthError::MalformedAuthorization)),
            (Some("Basic Ym9i"), Err(AuthError::MalformedAuthorization)),
            (Some("bob-token"), Err(AuthError::MalformedAuthorization)),
            (None, Err(AuthError::NoCredentials)),
        ];
        for (value, expected) in cases {
            let value = value.map(header);
            let got = identify(&config, b"own", None, value.as_ref()).map(|c| match c {
                Caller::Operator(o) => o.name.as_str(),
                other => panic!("not an operator: {other:?}"),
            });
            assert_eq!(got, expected.clone(), "{value:?}");
        }
        assert!(AuthError::NoCredentials.to_string().contains("--token"));
        assert!(AuthError::NoCredentials.is_unauthenticated());
        assert!(AuthError::UnknownToken.is_unauthenticated());
        assert!(!AuthError::CollectorOnAdmin.is_unauthenticated());
    }

    /// A self-signed certificate with `uris` as URI SANs and `cn` as common name.
    fn certificate(uris: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for uri in uris {
            let uri = rcgen::string::Ia5String::try_from(*uri).expect("ascii");
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn certificate_subjects() {
        let collector = |id: &str| {
            Ok(CertSubject::Collector(
                CollectorId::parse(id).expect("valid"),
            ))
        };
        const SPIFFE: &str = "spiffe://killswitch.test/collector/c-1";
        type Case<'a> = (&'a [&'a str], Option<&'a str>, Result<CertSubject, &'a str>);
        let cases: Vec<Case<'_>> = vec![
            (&[SPIFFE], None, collector("c-1")),
            (&[SPIFFE], Some("ignored"), collector("c-1")),
            (
                &["spiffe://killswitch.test/operator/bob"],
                None,
                Ok(CertSubject::Operator("bob".into())),
            ),
            (&[], Some("collector-7"), collector("collector-7")),
            (
                &[],
                Some("not a collector id"),
                Err("common name is not a collector id"),
            ),
            (
                &[],
                None,
                Err("neither a spiffe:// URI SAN nor a common name"),
            ),
            (
                &[SPIFFE, "spiffe://killswitch.test/collector/c-2"],
                None,
                Err("2 URI SANs"),
            ),
            (
                &["https://example.test/"],
                Some("c-1"),
                Err("does not start with spiffe://"),
            ),
            (
                &["spiffe://evil.test/operator/alice"],
                None,
                Err("trust domain \"evil.test\""),
            ),
        ];
        for (uris, cn, expected) in cases {
            let got = subject_of(&certificate(uris, cn), TD);
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{uris:?} {cn:?}"),
                (Err(error), Err(want)) => {
                    assert!(
                        error.to_string().contains(want),
                        "{uris:?} {cn:?}: {error} lacks {want:?}"
                    );
                }
                (got, want) => panic!("{uris:?} {cn:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(matches!(
            subject_of(b"garbage", TD),
            Err(AuthError::BadCertificate(_))
        ));
    }

    #[test]
    fn certificates_identify_callers() {
        let config = config();
        let own = certificate(&[], Some("control"));
        let cert = |uri: &str| certificate(&[uri], None);
        let token = AsciiMetadataValue::from_static("Bearer vic-token");
        let name = |caller: Result<Caller<'_>, AuthError>| match caller {
            Ok(Caller::Operator(o)) => Ok(format!("operator {}", o.name)),
            Ok(Caller::Collector(id)) => Ok(format!("collector {id}")),
            Ok(Caller::Replica(name)) => Ok(format!("replica {name}")),
            Ok(Caller::Developer(name)) => Ok(format!("developer {name}")),
            Err(error) => Err(error),
        };
        let id = |uri: &str| name(identify(&config, &own, Some(&cert(uri)), None));
        assert_eq!(
            id("spiffe://killswitch.test/operator/alice"),
            Ok("operator alice".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/collector/c1"),
            Ok("collector c1".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/replica/r2"),
            Ok("replica r2".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/operator/carol"),
            Err(AuthError::CertificateNotAllowed("carol".into()))
        );
        assert_eq!(
            id("spiffe://killswitch.test/operator/mallory"),
            Err(AuthError::UnknownOperator("mallory".into()))
        );
        assert_eq!(
            name(identify(&config, &own, Some(&own), None)),
            Ok("replica peer".into())
        );
        // A certificate identifies its holder even if a token comes along.
        let both = cert("spiffe://killswitch.test/collector/c1");
        assert_eq!(
            name(identify(&config, &own, Some(&both), Some(&token))),
            Ok("collector c1".into())
        );
        assert_eq!(
            name(identify(&config, &own, None, Some(&token))),
            Ok("operator vic".into())
        );
    }

    #[test]
    fn hello_must_match_the_certificate() {
        let id = |s: &str| CollectorId::parse(s).expect("valid");
        assert_eq!(check_hello(None, &id("anyone")), Ok(()));
        assert_eq!(check_hello(Some(&id("c1")), &id("c1")), Ok(()));
        let error = check_hello(Some(&id("c1")), &id("c2")).expect_err("mismatch");
        assert!(
            error
                .to_string()
                .starts_with("certificate says c1, Hello claims c2"),
            "{error}"
        );
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

    #[test]
    fn signing_keys_are_optional_and_checked() {
        let key = "ab".repeat(32);
        let text = format!(
            "trust_domain = \"{TD}\"\n\n[[operator]]\nname = \"alice\"\nrole = \"admin\"\ncert = true\nsigning_key = \"{key}\"\n\n[[operator]]\nname = \"bob\"\nrole = \"owner\"\ncert = true\n"
        );
        let config = AuthConfig::parse(&text, "auth.toml").expect("valid");
        let auth = Auth::tls(config, Vec::new(), ClientTlsConfig::new());
        assert_eq!(auth.signing("alice"), Signing::Required([0xab; 32]));
        assert_eq!(auth.signing("bob"), Signing::Unregistered);
        assert_eq!(Auth::insecure_dev().signing("anyone"), Signing::Optional);

        let bad = text.replace(&key, "xyz");
        let error = AuthConfig::parse(&bad, "auth.toml").expect_err("bad key");
        assert_eq!(error.line(), Some(7), "{error}");
        assert!(
            error.to_string().contains("signing_key must be 64"),
            "{error}"
        );
    }
}
