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
//!
//! # Layout
//!
//! - `mod.rs` (here): [`Auth`], what the handlers call; [`AuthError`], why a caller is
//!   refused; [`Signing`], what an operator's resumes must carry.
//! - `identity.rs`: who is calling: certificate subjects, bearer tokens, [`Caller`] and
//!   [`identify`], [`check_hello`], the `--insecure-dev` actor.
//! - `roles.rs`: [`Role`], [`Action`] and the role table.
//! - `file.rs`: the auth file: [`AuthConfig`], [`Operator`], [`CollectorRule`] and
//!   [`AuthFileError`].
//! - `revoked.rs`: its `[revoked]` table, [`Revoked`], and certificate serials
//!   ([`serial_of`]).
//!
//! A TLS replica's auth file and certificate can be replaced while it runs
//! ([`Auth::replace`], on SIGHUP or `AdminService.Reload`): every call from then on is
//! judged by the new file, and open sessions re-check their collector against its
//! `[revoked]` table ([`Auth::reloads`], [`Auth::check_revoked`]).
//!
//! Every public item is re-exported here: name them as `crate::api::auth::NAME`.
//!
//! **Layer:** api. The files of this folder may import [`crate::model`], the
//! [`crate::metrics`] counters and `killswitch_proto`; never `crate::store` or
//! `crate::replica`.

use std::collections::{BTreeMap, BTreeSet};
use std::future;
use std::sync::Arc;

use tokio::sync::watch;
use tonic::Request;
use tonic::transport::ClientTlsConfig;

use crate::metrics::Metrics;
use crate::model::{CollectorId, InvalidInput, ProgramName};

mod file;
mod identity;
mod revoked;
mod roles;

pub use file::{AuthConfig, AuthFileError, CollectorRule, Operator};
pub use identity::{
    Caller, CertSubject, CertifiedCollector, check_hello, identify, parse_spiffe_id, subject_of,
};
pub use revoked::{Revoked, serial_of};
pub use roles::{Action, Role};

use identity::dev_actor;

/// The actor recorded under `--insecure-dev` when a request names none.
const ANONYMOUS: &str = "anonymous";

/// How to authenticate, for the `UNAUTHENTICATED` message.
const HOW_TO_AUTHENTICATE: &str = "operators pass --token (KILLSWITCH_TOKEN) or --cert and \
    --key (KILLSWITCH_CERT, KILLSWITCH_KEY) issued for this control plane; collectors use \
    a client certificate from its CA (ClientBuilder::tls)";

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
    /// The operator's bearer token passed its `expires` time.
    #[error(
        "the bearer token of operator {operator:?} expired at {at}: ask an admin for a new one (`killswitch token new {operator} --ttl ...`)"
    )]
    TokenExpired {
        /// Whose token.
        operator: String,
        /// When it expired, RFC 3339.
        at: String,
    },
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
    /// A collector's Hello contradicts a label its certificate pins, or sets a pinned
    /// label its certificate leaves unset.
    #[error(
        "collector {collector} claims label {key}={claimed:?}, but {key} is pinned by the control plane's auth file and {}: remove it from the collector's labels, or issue a certificate with the right value (`killswitch certs collector {collector} --label {key}=...`)",
        match certified { Some(value) => format!("its certificate says {key}={value:?}"), None => "its certificate sets no value for it".to_owned() }
    )]
    PinnedLabel {
        /// The collector.
        collector: CollectorId,
        /// The pinned key.
        key: String,
        /// The value Hello claims.
        claimed: String,
        /// The value the certificate sets, if any.
        certified: Option<String>,
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
    /// The auth file's `[revoked] collectors` lists the collector.
    #[error(
        "collector {0} is revoked: the control plane's auth file lists it under [revoked] collectors; ask an admin"
    )]
    RevokedCollector(CollectorId),
    /// The auth file's `[revoked] serials` lists the client certificate's serial.
    #[error(
        "the client certificate with serial {0} is revoked: the control plane's auth file lists it under [revoked] serials; use a newly issued certificate"
    )]
    RevokedCertificate(String),
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
                | AuthError::TokenExpired { .. }
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
            AuthError::TokenExpired { .. } => "token_expired",
            AuthError::BadCertificate(_) => "bad_certificate",
            AuthError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            AuthError::UnknownOperator(_) => "unknown_operator",
            AuthError::CertificateNotAllowed(_) => "certificate_not_allowed",
            AuthError::CollectorOnAdmin => "collector_on_admin",
            AuthError::NotACollector(_) => "not_a_collector",
            AuthError::PinnedLabel { .. } => "pinned_label",
            AuthError::ReplicaOnAdmin(_) => "replica_on_admin",
            AuthError::RoleTooLow { .. } => "role_too_low",
            AuthError::OutOfScope { .. } => "out_of_scope",
            AuthError::HelloMismatch { .. } => "hello_mismatch",
            AuthError::ProgramNotAllowed { .. } => "program_not_allowed",
            AuthError::InvalidActor(_) => "invalid_actor",
            AuthError::RevokedCollector(_) | AuthError::RevokedCertificate(_) => "revoked",
        }
    }
}

/// Who a caller is, as `WhoAmI` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name the audit records.
    pub name: String,
    /// The role; admin under `--insecure-dev`.
    pub role: Role,
    /// The programs the role covers, sorted; empty: all.
    pub programs: Vec<String>,
    /// Whether resumes and approvals must be signed with the operator's key.
    pub signing_required: bool,
    /// `--insecure-dev`: nobody is authenticated.
    pub insecure_dev: bool,
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

/// The replica's authentication and authorization: either `--insecure-dev` or TLS with
/// an `auth.toml`, which [`Auth::replace`] swaps while the replica runs.
#[derive(Debug, Clone)]
pub struct Auth {
    mode: Mode,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone)]
enum Mode {
    InsecureDev,
    /// The credentials in force; replaced whole, so a call sees one consistent set. A
    /// watch channel: readers clone the `Arc` in a short read lock, and open sessions
    /// learn of a replacement.
    Tls(Arc<watch::Sender<Arc<TlsAuth>>>),
}

/// What a TLS replica judges callers by.
#[derive(Debug)]
struct TlsAuth {
    config: AuthConfig,
    own_cert: Vec<u8>,
    peer_tls: ClientTlsConfig,
}

/// Fires each time a TLS replica's credentials are replaced; never under
/// `--insecure-dev`. From [`Auth::reloads`].
#[derive(Debug)]
pub struct Reloads(Option<watch::Receiver<Arc<TlsAuth>>>);

impl Reloads {
    /// Completes at the next replacement. Cancel-safe: a replacement made while nobody
    /// waited completes the next call at once.
    pub async fn next(&mut self) {
        if let Some(changes) = &mut self.0 {
            if changes.changed().await.is_ok() {
                return;
            }
        }
        // Nothing will ever be replaced.
        future::pending::<()>().await;
    }
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
        let state = TlsAuth {
            config,
            own_cert,
            peer_tls,
        };
        Self {
            mode: Mode::Tls(Arc::new(watch::Sender::new(Arc::new(state)))),
            metrics: Arc::default(),
        }
    }

    /// Counts refusals in `metrics` (`killswitch_auth_failures_total`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Puts a new auth file and replica certificate in force (as [`Auth::tls`] takes
    /// them): every call from now on is judged by them, and open sessions are told (see
    /// [`Auth::reloads`]). `false`, changing nothing, under `--insecure-dev`.
    pub fn replace(
        &self,
        config: AuthConfig,
        own_cert: Vec<u8>,
        peer_tls: ClientTlsConfig,
    ) -> bool {
        match &self.mode {
            Mode::InsecureDev => false,
            Mode::Tls(current) => {
                current.send_replace(Arc::new(TlsAuth {
                    config,
                    own_cert,
                    peer_tls,
                }));
                true
            }
        }
    }

    /// What a session waits on to re-check its collector after a replacement.
    #[must_use]
    pub fn reloads(&self) -> Reloads {
        match &self.mode {
            Mode::InsecureDev => Reloads(None),
            Mode::Tls(current) => Reloads(Some(current.subscribe())),
        }
    }

    /// The credentials in force, `None` under `--insecure-dev`.
    fn current(&self) -> Option<Arc<TlsAuth>> {
        match &self.mode {
            Mode::InsecureDev => None,
            Mode::Tls(current) => Some(current.borrow().clone()),
        }
    }

    /// How to connect to a peer replica: `None` for plain text.
    #[must_use]
    pub fn peer_tls(&self) -> Option<ClientTlsConfig> {
        self.current().map(|tls| tls.peer_tls.clone())
    }

    /// Who sent `request`, judged by `tls` (the credentials in force; `None` under
    /// `--insecure-dev`). A revoked certificate serial or collector is refused.
    fn caller<'a, T>(
        tls: Option<&'a TlsAuth>,
        request: &Request<T>,
    ) -> Result<Caller<'a>, AuthError> {
        let Some(tls) = tls else {
            return Ok(Caller::Developer(dev_actor(request.metadata())?));
        };
        let chain = request.peer_certs();
        let leaf = chain.as_deref().and_then(|c| c.first()).map(AsRef::as_ref);
        if let Some(der) = leaf {
            tls.config.revoked.check_certificate(der)?;
        }
        let caller = identify(
            &tls.config,
            &tls.own_cert,
            leaf,
            request.metadata().get("authorization"),
        )?;
        if let Caller::Collector(collector) = &caller {
            tls.config.revoked.check_collector(&collector.id)?;
        }
        Ok(caller)
    }

    /// Checks that the caller of `request` may perform `action` (on `program`, when it
    /// targets one, as the request spells it); returns the actor to record in the audit.
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        action: Action,
        program: Option<&str>,
    ) -> Result<String, AuthError> {
        let tls = self.current();
        let result = Self::caller(tls.as_deref(), request)
            .and_then(|caller| caller.authorize(action, program));
        if let Err(error) = &result {
            tracing::info!(rpc = action.rpc(), program, %error, "denied");
            self.metrics.auth_failure(error.reason());
        }
        result
    }

    /// Who the caller of `request` is, for `WhoAmI`: authorized like any viewer call.
    pub fn whoami<T>(&self, request: &Request<T>) -> Result<Identity, AuthError> {
        let name = self.authorize(request, Action::WhoAmI, None)?;
        let tls = self.current();
        let Some(tls) = tls.as_deref() else {
            return Ok(Identity {
                name,
                role: Role::Admin,
                programs: Vec::new(),
                signing_required: false,
                insecure_dev: true,
            });
        };
        // `authorize` accepted an operator, so the name is one of the auth file's.
        let operator = tls
            .config
            .operator(&name)
            .ok_or_else(|| AuthError::UnknownOperator(name.clone()))?;
        let mut programs: Vec<String> = operator
            .programs
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        programs.sort();
        Ok(Identity {
            signing_required: operator.signing_key.is_some(),
            role: operator.role,
            programs,
            name,
            insecure_dev: false,
        })
    }

    /// Whether `actor`'s resumes and approvals must be signed, and with which key.
    #[must_use]
    pub fn signing(&self, actor: &str) -> Signing {
        match self.current() {
            None => Signing::Optional,
            Some(tls) => match tls.config.operator(actor).and_then(|o| o.signing_key) {
                Some(key) => Signing::Required(key),
                None => Signing::Unregistered,
            },
        }
    }

    /// The label keys collectors' certificates pin (the auth file's `pinned_labels`);
    /// none under `--insecure-dev`.
    #[must_use]
    pub fn pinned_labels(&self) -> BTreeSet<String> {
        self.current()
            .map(|tls| tls.config.pinned_labels.clone())
            .unwrap_or_default()
    }

    /// Checks that the caller of `request` may open a collector session; returns the
    /// collector its certificate proves, `None` under `--insecure-dev`.
    pub fn collector<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<CertifiedCollector>, AuthError> {
        let Some(tls) = self.current() else {
            return Ok(None);
        };
        let result = match Self::caller(Some(&tls), request) {
            Ok(Caller::Collector(collector)) => Ok(Some(collector)),
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

    /// The serial number of the client certificate of `request` (see [`serial_of`]), for
    /// a session to re-check after a reload; `None` without one.
    #[must_use]
    pub fn client_serial<T>(&self, request: &Request<T>) -> Option<String> {
        let chain = request.peer_certs()?;
        serial_of(chain.first()?.as_ref())
    }

    /// Whether the credentials in force revoke `collector` or the certificate serial it
    /// connected with, counting a refusal in the metrics: what an open session checks
    /// after a reload.
    pub fn check_revoked(
        &self,
        collector: &CollectorId,
        serial: Option<&str>,
    ) -> Result<(), AuthError> {
        let Some(tls) = self.current() else {
            return Ok(());
        };
        let revoked = &tls.config.revoked;
        let result = revoked
            .check_serial(serial)
            .and_then(|()| revoked.check_collector(collector));
        if let Err(error) = &result {
            self.metrics.auth_failure(error.reason());
        }
        result
    }

    /// [`check_hello`] (with the auth file's pinned labels), then whether the collector
    /// may follow each of `programs` (the auth file's `[[collector]]` entries; anything
    /// under `--insecure-dev`), counting a refusal in the metrics. Returns the
    /// collector's labels, pinned values included.
    pub fn check_hello(
        &self,
        certified: Option<&CertifiedCollector>,
        claimed: &CollectorId,
        labels: &BTreeMap<String, String>,
        programs: &[ProgramName],
    ) -> Result<BTreeMap<String, String>, AuthError> {
        let tls = self.current();
        let pinned = tls
            .as_ref()
            .map(|tls| tls.config.pinned_labels.clone())
            .unwrap_or_default();
        let result =
            check_hello(certified, claimed, labels, &pinned).and_then(|merged| match &tls {
                None => Ok(merged),
                Some(tls) => programs
                    .iter()
                    .find(|p| !tls.config.may_follow(claimed.as_str(), p.as_str()))
                    .map_or(Ok(merged), |p| {
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

/// What the tests of several files share: the trust domain and an auth file that lists
/// an operator of each role.
#[cfg(test)]
mod fixtures {
    use sha2::{Digest, Sha256};

    use super::AuthConfig;

    pub(super) const TD: &str = "killswitch.test";

    pub(super) fn sha256_hex(token: &str) -> String {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub(super) fn config() -> AuthConfig {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::fixtures::TD;

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
