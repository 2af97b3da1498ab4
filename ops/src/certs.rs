//! `killswitch certs init`: a development PKI in one directory: a CA, the control plane's
//! server certificate, client certificates for collectors and operators, and the control
//! plane's `auth.toml` listing the operators. `killswitch certs collector`: one more
//! collector certificate from that CA, whose SPIFFE ID may pin labels
//! (`spiffe://TRUST-DOMAIN/collector/ID?region=emea`, see `pinned_labels` in `auth.toml`).
//!
//! Identities are SPIFFE IDs in a URI SAN (`spiffe://TRUST-DOMAIN/collector/NAME`,
//! `spiffe://TRUST-DOMAIN/operator/NAME`), with the name also as the common name. Keys are
//! ECDSA P-256, written `0600`. Everything is generated in memory first and nothing is
//! written if any file already exists: the commands never overwrite, so they cannot
//! replace a CA that certificates in use depend on.
//!
//! This is for development and tests: the CA key sits next to everything it signed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use killswitch_proto::contract;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use time::OffsetDateTime;

use crate::exit::{Error, Exit};
use crate::output::OutputFormat;
use crate::sink::Sink;
use crate::token::{Credential, OperatorEntry, OperatorName, Role};

/// Default SPIFFE trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "killswitch.local";

/// Default number of collector certificates.
pub const DEFAULT_COLLECTORS: u16 = 3;

/// Most collector certificates one `init` makes.
pub const MAX_COLLECTORS: u16 = 1000;

/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// How long the server, collector and operator certificates are valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How far in the past certificates start, so that a machine whose clock is a little
/// behind accepts them at once.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The server certificate's names: whatever a local control plane is reached by.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The replica name in the server certificate's SPIFFE ID.
const REPLICA_NAME: &str = "control";

/// The CA certificate and key `certs init` writes, which `certs collector` issues with.
const CA_CERT: &str = "ca.pem";
/// See [`CA_CERT`].
const CA_KEY: &str = "ca-key.pem";
/// The control plane's auth file `certs init` writes next to the CA.
const AUTH_FILE: &str = "auth.toml";

/// `killswitch certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, the control plane's certificate, collector and operator
    /// client certificates, and the control plane's auth.toml, in DIR
    #[command(after_help = INIT_HELP)]
    Init(InitArgs),

    /// Issue a collector client certificate from the development CA in --ca-dir, pinning
    /// labels in its SPIFFE ID
    #[command(after_help = COLLECTOR_HELP)]
    Collector(CollectorArgs),
}

/// After `certs init --help`.
const INIT_HELP: &str = "\
DIR gets ca.pem and ca-key.pem (the CA, valid 10 years), server.pem and server-key.pem
(serverAuth for localhost, 127.0.0.1 and ::1, and clientAuth as
spiffe://TRUST-DOMAIN/replica/control, which replicas present to each other),
collector-N.pem and collector-N-key.pem
(clientAuth, spiffe://TRUST-DOMAIN/collector/collector-N), operator-NAME.pem and
operator-NAME-key.pem (clientAuth, spiffe://TRUST-DOMAIN/operator/NAME), and auth.toml,
the control plane's list of operators and roles. Certificates other than the CA are valid
1 year; keys are ECDSA P-256, readable only by their owner. Existing files are never
overwritten: if one is there, nothing is written (exit 2). This is a development PKI: the
CA key sits next to what it signed.";

/// After `certs collector --help`.
const COLLECTOR_HELP: &str = "\
Writes collector-ID.pem (clientAuth, spiffe://TRUST-DOMAIN/collector/ID?KEY=VALUE&...,
keys sorted, valid 1 year) and collector-ID-key.pem (ECDSA P-256, readable only by its
owner), signed with ca.pem and ca-key.pem of --ca-dir, as `certs init` wrote them. The
values of the keys auth.toml lists under pinned_labels come from this certificate: the
control plane refuses a Hello that contradicts them. Existing files are never
overwritten: if one is there, nothing is written (exit 2).";

/// `killswitch certs init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write to; created if missing
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// SPIFFE trust domain of the identities: lowercase letters, digits, '.', '-' and '_'
    #[arg(
        long,
        value_name = "DOMAIN",
        default_value = DEFAULT_TRUST_DOMAIN,
        value_parser = TrustDomain::parse,
    )]
    pub trust_domain: TrustDomain,

    /// How many collector certificates to create (collector-1 to collector-N, at most 1000)
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_COLLECTORS,
        value_parser = clap::value_parser!(u16).range(0..=i64::from(MAX_COLLECTORS)),
    )]
    pub collectors: u16,

    /// An operator and its role (viewer, responder, owner or admin); repeat for several
    /// [default: alice:admin and bob:responder]
    #[arg(long = "operator", value_name = "NAME:ROLE", value_parser = Operator::parse)]
    pub operators: Vec<Operator>,
}

/// `killswitch certs collector`
#[derive(Debug, Args)]
pub struct CollectorArgs {
    /// The collector's id, which its Hello must claim: 1 to 128 characters of A-Z, a-z,
    /// 0-9, '.', '_', ':' and '-'
    #[arg(value_name = "ID", value_parser = CollectorId::parse)]
    pub id: CollectorId,

    /// A label the certificate pins; repeat for several
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = Label::parse)]
    pub labels: Vec<Label>,

    /// The directory `certs init` wrote: its ca.pem and ca-key.pem sign the certificate
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,

    /// Directory to write to; created if missing [default: --ca-dir]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// SPIFFE trust domain of the identity [default: trust_domain of auth.toml in
    /// --ca-dir, else killswitch.local]
    #[arg(long, value_name = "DOMAIN", value_parser = TrustDomain::parse)]
    pub trust_domain: Option<TrustDomain>,
}

/// A collector id, by the control plane's rule (`killswitch_proto::contract`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorId(String);

impl CollectorId {
    /// Parses a collector id; the error says what the rule is.
    pub fn parse(s: &str) -> Result<Self, String> {
        contract::collector_id(s).map_err(|e| e.to_string())?;
        Ok(Self(s.to_owned()))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `--label KEY=VALUE` to pin in a collector certificate: the key and value follow the
/// control plane's rules for labels (`killswitch_proto::contract`), and the value uses
/// only characters that go as they are into a SPIFFE ID's query ([`Label::VALUE_RULE`]),
/// which the control plane reads without decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl Label {
    /// What a pinned label's value may hold, besides the control plane's rule.
    pub const VALUE_RULE: &str =
        "a pinned value uses only A-Z, a-z, 0-9, '.', '_', '-', '~', ':', '/' and '@'";

    /// Parses `KEY=VALUE`; the error names the label and the rule it breaks.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, e.g. region=emea, got {s:?}"))?;
        contract::label_key(key).map_err(|e| e.to_string())?;
        contract::label_value(value).map_err(|e| format!("label {key}: {e}"))?;
        let uri_safe = |c: char| c.is_ascii_alphanumeric() || "._-~:/@".contains(c);
        if let Some(bad) = value.chars().find(|c| !uri_safe(*c)) {
            return Err(format!(
                "label {key}={}: {bad:?} cannot go into a certificate's SPIFFE ID; {}",
                contract::quoted(value),
                Self::VALUE_RULE
            ));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// A SPIFFE trust domain: 1 to 255 characters among `a-z 0-9 . - _`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain; the error says what the rule is.
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
        if valid && !s.is_empty() && s.len() <= 255 {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid trust domain {s:?}: use 1 to 255 lowercase letters, digits, '.', '-' \
                 and '_', e.g. {DEFAULT_TRUST_DOMAIN}"
            ))
        }
    }

    /// The trust domain.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of `name` of `kind` (`collector` or `operator`).
    #[must_use]
    pub fn spiffe_id(&self, kind: &str, name: &str) -> String {
        format!("spiffe://{}/{kind}/{name}", self.0)
    }

    /// The SPIFFE ID of collector `id` with `labels` in its query, sorted by key:
    /// `spiffe://TD/collector/ID?region=emea&team=pay` (no query without labels).
    #[must_use]
    pub fn collector_spiffe_id(&self, id: &str, labels: &BTreeMap<String, String>) -> String {
        let mut uri = self.spiffe_id("collector", id);
        for (i, (key, value)) in labels.iter().enumerate() {
            let _ = write!(uri, "{}{key}={value}", if i == 0 { '?' } else { '&' });
        }
        uri
    }
}

/// An `--operator NAME:ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Its name.
    pub name: OperatorName,
    /// Its role.
    pub role: Role,
}

impl Operator {
    /// Parses `NAME:ROLE`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, role) = s
            .split_once(':')
            .ok_or_else(|| format!("expected NAME:ROLE, e.g. alice:admin, got {s:?}"))?;
        let name = OperatorName::parse(name)?;
        let role = Role::from_str(role, false).map_err(|_| {
            format!("invalid role {role:?}: expected viewer, responder, owner or admin")
        })?;
        Ok(Self { name, role })
    }

    /// The operators when none is given.
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        [("alice", Role::Admin), ("bob", Role::Responder)]
            .into_iter()
            .filter_map(|(name, role)| {
                let name = OperatorName::parse(name).ok()?;
                Some(Self { name, role })
            })
            .collect()
    }
}

/// A file to write into DIR.
#[derive(Debug, Clone)]
pub struct File {
    /// Its name in DIR.
    pub name: String,
    /// What it holds.
    pub contents: String,
    /// A private key: written `0600`.
    pub secret: bool,
    /// What it is, for the listing.
    pub what: String,
}

/// What to generate, from the validated flags.
#[derive(Debug, Clone)]
pub struct Plan {
    /// SPIFFE trust domain.
    pub trust_domain: TrustDomain,
    /// Number of collector certificates.
    pub collectors: u16,
    /// Operators, none repeated.
    pub operators: Vec<Operator>,
}

impl Plan {
    /// The plan for `args`; operator names must be distinct (usage error otherwise).
    pub fn from_args(args: &InitArgs) -> Result<Self, Error> {
        let operators = if args.operators.is_empty() {
            Operator::defaults()
        } else {
            args.operators.clone()
        };
        for (i, operator) in operators.iter().enumerate() {
            if operators[..i].iter().any(|o| o.name == operator.name) {
                return Err(Error::usage(format!(
                    "operator {} is given twice; give each operator once",
                    operator.name
                )));
            }
        }
        Ok(Self {
            trust_domain: args.trust_domain.clone(),
            collectors: args.collectors,
            operators,
        })
    }

    /// Generates every file, in the order they are listed, with certificates valid from
    /// `now` (less an hour).
    pub fn generate(&self, now: SystemTime) -> Result<Vec<File>, Error> {
        let td = &self.trust_domain;
        let ca_params = ca_params(td, now)?;
        let ca_key = new_key()?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(generation_failed)?;
        let mut files = vec![
            File::new(
                CA_CERT,
                ca_cert.pem(),
                "CA certificate: the control plane, collectors and CLI trust it",
            ),
            File::key(
                CA_KEY,
                &ca_key,
                "CA key: it can issue any identity, keep it away from the fleet",
            ),
        ];
        let ca = Issuer::new(ca_params, ca_key);

        // Replicas also present their certificate to each other as clients (listing
        // collectors across replicas), hence clientAuth and a replica SPIFFE ID.
        let replica_id = td.spiffe_id("replica", REPLICA_NAME);
        let mut server_sans = server_sans()?;
        server_sans.push(uri_san(&replica_id)?);
        let server = Leaf {
            file: "server",
            common_name: "killswitch-control".to_owned(),
            sans: server_sans,
            usages: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            what: format!(
                "control plane certificate, for {}; {replica_id}",
                SERVER_NAMES.join(", ")
            ),
        };
        files.extend(server.generate(&ca, now)?);

        for i in 1..=self.collectors {
            let name = format!("collector-{i}");
            let id = td.spiffe_id("collector", &name);
            files.extend(collector_leaf(&name, &name, &id)?.generate(&ca, now)?);
        }

        for operator in &self.operators {
            let id = td.spiffe_id("operator", operator.name.as_str());
            let leaf = Leaf {
                file: &format!("operator-{}", operator.name),
                common_name: operator.name.as_str().to_owned(),
                sans: vec![uri_san(&id)?],
                usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
                what: format!("operator certificate, {id} ({})", operator.role),
            };
            files.extend(leaf.generate(&ca, now)?);
        }

        files.push(File::new(
            AUTH_FILE,
            self.auth_toml(),
            "the control plane's operators and their roles",
        ));
        Ok(files)
    }

    /// The control plane's `auth.toml`: the trust domain and one entry per operator, each
    /// allowed to authenticate with its certificate, for every program.
    #[must_use]
    pub fn auth_toml(&self) -> String {
        let mut toml = format!(
            "# The Killswitch control plane's operators, written by `killswitch certs init`.\n\
             # Add token users with `killswitch token new`.\n\
             trust_domain = \"{}\"\n",
            self.trust_domain.as_str()
        );
        for operator in &self.operators {
            let entry = OperatorEntry {
                name: operator.name.clone(),
                role: operator.role,
                programs: Vec::new(),
                credential: Credential::Certificate,
            };
            toml.push('\n');
            toml.push_str(&entry.to_toml());
        }
        toml
    }

    /// What to tell the user once `files` are in `dir`.
    #[must_use]
    pub fn summary(&self, dir: &Path, files: &[File]) -> String {
        let path = |name: &str| dir.join(name).display().to_string();
        let mut text = listing("a development PKI", dir, files);
        let ca = path(CA_CERT);
        text.push_str("\nOperators (killswitch CLI):\n");
        for operator in &self.operators {
            let name = format!("operator-{}", operator.name);
            let _ = writeln!(
                text,
                "  {} ({}): --ca {ca} --cert {} --key {}",
                operator.name,
                operator.role,
                path(&format!("{name}.pem")),
                path(&format!("{name}-key.pem")),
            );
        }
        if self.collectors > 0 {
            text.push_str("\nCollectors (killswitch-sdk's example collector):\n");
            for i in 1..=self.collectors {
                let name = format!("collector-{i}");
                text.push_str(&collector_flags(&name, &ca, dir, &name, &BTreeMap::new()));
            }
        }
        let _ = writeln!(
            text,
            "\nControl plane (killswitch-control), reached at https://localhost:PORT or \
             https://127.0.0.1:PORT:\n  --tls-cert {} --tls-key {} --client-ca {ca} \
             --auth-file {}",
            path("server.pem"),
            path("server-key.pem"),
            path(AUTH_FILE),
        );
        text
    }
}

/// What `certs collector` issues, from the validated flags and the auth file next to
/// the CA.
#[derive(Debug, Clone)]
pub struct CollectorPlan {
    /// The collector's id.
    pub id: CollectorId,
    /// The labels its certificate pins, by key.
    pub labels: BTreeMap<String, String>,
    /// SPIFFE trust domain.
    pub trust_domain: TrustDomain,
    /// Where the trust domain came from, for the summary: `--trust-domain`, the auth file
    /// or the default.
    pub trust_domain_from: String,
    /// What the user should know: labels the auth file does not pin, keys it pins that
    /// the certificate leaves unset, a trust domain it does not share.
    pub notes: Vec<String>,
}

/// What `certs collector` reads from the `auth.toml` next to the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthFacts {
    trust_domain: TrustDomain,
    pinned_labels: Vec<String>,
}

impl CollectorPlan {
    /// The plan for `args`: each label key once and at most
    /// [`contract::MAX_LABELS`] (usage error otherwise); the trust domain from
    /// `--trust-domain`, else from `auth.toml` in `--ca-dir`, else the default.
    pub fn from_args(args: &CollectorArgs) -> Result<Self, Error> {
        let mut labels = BTreeMap::new();
        for label in &args.labels {
            if labels
                .insert(label.key.clone(), label.value.clone())
                .is_some()
            {
                return Err(Error::usage(format!(
                    "label {} is given twice; give each label once",
                    label.key
                )));
            }
        }
        if labels.len() > contract::MAX_LABELS {
            return Err(Error::usage(format!(
                "{} labels given; a collector may carry at most {}",
                labels.len(),
                contract::MAX_LABELS
            )));
        }
        let auth_path = args.ca_dir.join(AUTH_FILE);
        // With --trust-domain the auth file only adds notes: a broken one is no obstacle.
        let auth = match &args.trust_domain {
            Some(_) => read_auth_file(&auth_path).ok().flatten(),
            None => read_auth_file(&auth_path)?,
        };
        let (trust_domain, trust_domain_from) = match (&args.trust_domain, &auth) {
            (Some(td), _) => (td.clone(), "--trust-domain".to_owned()),
            (None, Some(auth)) => (
                auth.trust_domain.clone(),
                format!("from {}", auth_path.display()),
            ),
            (None, None) => (
                TrustDomain(DEFAULT_TRUST_DOMAIN.to_owned()),
                format!("the default: no {}", auth_path.display()),
            ),
        };
        let notes = auth
            .map(|auth| notes(&auth, &auth_path, &trust_domain, &labels))
            .unwrap_or_default();
        Ok(Self {
            id: args.id.clone(),
            labels,
            trust_domain,
            trust_domain_from,
            notes,
        })
    }

    /// The certificate's SPIFFE ID, `spiffe://TD/collector/ID?KEY=VALUE&...`.
    #[must_use]
    pub fn spiffe_id(&self) -> String {
        self.trust_domain
            .collector_spiffe_id(self.id.as_str(), &self.labels)
    }

    /// `collector-ID.pem` and `collector-ID-key.pem`, signed by `ca`, valid from `now`
    /// (less an hour).
    pub fn generate(&self, ca: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<[File; 2], Error> {
        let file = format!("collector-{}", self.id.as_str());
        collector_leaf(&file, self.id.as_str(), &self.spiffe_id())?.generate(ca, now)
    }

    /// What to tell the user once `files` are in `dir`; `ca` is the CA certificate's path.
    #[must_use]
    pub fn summary(&self, ca: &Path, dir: &Path, files: &[File]) -> String {
        let mut text = listing("a collector certificate", dir, files);
        let _ = writeln!(
            text,
            "trust domain: {} ({})",
            self.trust_domain.as_str(),
            self.trust_domain_from
        );
        for note in &self.notes {
            let _ = writeln!(text, "note: {note}");
        }
        let _ = writeln!(
            text,
            "\nCollector (killswitch-sdk's example collector, repeating the certificate's \
             labels in Hello):\n{}",
            collector_flags(
                self.id.as_str(),
                &ca.display().to_string(),
                dir,
                &format!("collector-{}", self.id.as_str()),
                &self.labels,
            )
            .trim_end()
        );
        text
    }
}

/// Reads `trust_domain` and `pinned_labels` from the auth file at `path`; `None` when
/// there is no such file.
fn read_auth_file(path: &Path) -> Result<Option<AuthFacts>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                Exit::Error,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let unusable = |why: String| {
        Error::usage(format!(
            "cannot take the trust domain from {}: {why}; fix the file or pass --trust-domain",
            path.display()
        ))
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| unusable(e.message().to_owned()))?;
    let trust_domain = table
        .get("trust_domain")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| unusable("it sets no trust_domain string".to_owned()))
        .and_then(|td| TrustDomain::parse(td).map_err(unusable))?;
    let pinned_labels = match table.get("pinned_labels") {
        None => Vec::new(),
        Some(keys) => keys
            .as_array()
            .and_then(|keys| keys.iter().map(|k| k.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| unusable("pinned_labels is not a list of strings".to_owned()))?,
    };
    Ok(Some(AuthFacts {
        trust_domain,
        pinned_labels,
    }))
}

/// What the user should know about a certificate for `labels` in `trust_domain`, judged
/// by the auth file at `path` that says `auth`.
fn notes(
    auth: &AuthFacts,
    path: &Path,
    trust_domain: &TrustDomain,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let path = path.display();
    let mut notes = Vec::new();
    if auth.trust_domain != *trust_domain {
        notes.push(format!(
            "{path} says trust_domain = {:?}: a control plane using it refuses this certificate",
            auth.trust_domain.as_str()
        ));
    }
    for key in labels.keys() {
        if !auth.pinned_labels.contains(key) {
            notes.push(format!(
                "{path} does not list {key} in pinned_labels: the control plane takes its \
                 value from the collector's Hello, not from this certificate"
            ));
        }
    }
    for key in &auth.pinned_labels {
        if !labels.contains_key(key) {
            notes.push(format!(
                "{path} pins {key} and this certificate sets no value for it: the control \
                 plane refuses a Hello that sets {key}"
            ));
        }
    }
    notes
}

impl File {
    fn new(name: &str, contents: String, what: &str) -> Self {
        Self {
            name: name.to_owned(),
            contents,
            secret: false,
            what: what.to_owned(),
        }
    }

    fn key(name: &str, key: &KeyPair, what: &str) -> Self {
        Self {
            secret: true,
            ..Self::new(name, key.serialize_pem(), what)
        }
    }
}

/// A certificate signed by the CA, and its key.
struct Leaf<'a> {
    file: &'a str,
    common_name: String,
    sans: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
    what: String,
}

impl Leaf<'_> {
    /// `FILE.pem` and `FILE-key.pem`.
    fn generate(self, ca: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<[File; 2], Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&self.common_name);
        params.subject_alt_names = self.sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = self.usages;
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(now, LEAF_VALIDITY)?;
        let key = new_key()?;
        let cert = params.signed_by(&key, ca).map_err(generation_failed)?;
        Ok([
            File::new(&format!("{}.pem", self.file), cert.pem(), &self.what),
            File::key(&format!("{}-key.pem", self.file), &key, "its key"),
        ])
    }
}

/// A collector's certificate, written as `FILE.pem`: clientAuth, `spiffe_id` as its URI
/// SAN and `id` as its common name.
fn collector_leaf<'a>(file: &'a str, id: &str, spiffe_id: &str) -> Result<Leaf<'a>, Error> {
    Ok(Leaf {
        file,
        common_name: id.to_owned(),
        sans: vec![uri_san(spiffe_id)?],
        usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        what: format!("collector certificate, {spiffe_id}"),
    })
}

/// `wrote WHAT to DIR:` and one line per file: its name and what it is.
fn listing(what: &str, dir: &Path, files: &[File]) -> String {
    let width = files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut text = format!("wrote {what} to {}:\n", dir.display());
    for file in files {
        let _ = writeln!(text, "  {:width$}  {}", file.name, file.what);
    }
    text
}

/// The example collector's flags for collector `id` whose certificate is `FILE.pem` in
/// `dir`, trusting the CA at `ca`, with `--label` for each of `labels`.
fn collector_flags(
    id: &str,
    ca: &str,
    dir: &Path,
    file: &str,
    labels: &BTreeMap<String, String>,
) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut line = format!(
        "  --id {id} --ca {ca} --cert {} --key {}",
        path(&format!("{file}.pem")),
        path(&format!("{file}-key.pem")),
    );
    for (key, value) in labels {
        let _ = write!(line, " --label {key}={value}");
    }
    line.push('\n');
    line
}

/// The CA `certs init` wrote in `dir`, to issue with: its certificate and key, which
/// must belong together.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            let exit = match e.kind() {
                io::ErrorKind::NotFound => Exit::Usage,
                _ => Exit::Error,
            };
            Error::new(
                exit,
                format!(
                    "cannot read {}: {e}; --ca-dir must be a directory `killswitch certs init` wrote",
                    path.display()
                ),
            )
        })
    };
    let (cert_pem, key_pem) = (read(CA_CERT)?, read(CA_KEY)?);
    let unusable = |why: String| {
        Error::usage(format!(
            "{} and {} are not a usable CA: {why}",
            dir.join(CA_CERT).display(),
            dir.join(CA_KEY).display()
        ))
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| unusable(format!("{CA_KEY}: {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| unusable(format!("{CA_CERT}: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| unusable(format!("{CA_CERT}: {e}")))?;
    if !cert.is_ca() {
        return Err(unusable(format!("{CA_CERT} is not a CA certificate")));
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(unusable(format!("{CA_KEY} is not the key of {CA_CERT}")));
    }
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| unusable(e.to_string()))
}

/// The CA: may sign end-entity certificates only (path length 0).
fn ca_params(td: &TrustDomain, now: SystemTime) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name =
        distinguished_name(&format!("Killswitch development CA ({})", td.as_str()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = validity(now, CA_VALIDITY)?;
    Ok(params)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Killswitch development");
    name.push(DnType::CommonName, common_name);
    name
}

fn server_sans() -> Result<Vec<SanType>, Error> {
    SERVER_NAMES
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(
                (*name).try_into().map_err(generation_failed)?,
            )),
        })
        .collect()
}

fn uri_san(uri: &str) -> Result<SanType, Error> {
    Ok(SanType::URI(uri.try_into().map_err(generation_failed)?))
}

/// From `now` less [`BACKDATE`] to `now` plus `length`.
fn validity(now: SystemTime, length: Duration) -> Result<(OffsetDateTime, OffsetDateTime), Error> {
    let at = |time: Option<SystemTime>| {
        time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .and_then(|since| i64::try_from(since.as_secs()).ok())
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .ok_or_else(|| {
                Error::new(
                    Exit::Error,
                    "the system clock is outside the range certificates can express",
                )
            })
    };
    Ok((at(now.checked_sub(BACKDATE))?, at(now.checked_add(length))?))
}

/// A new ECDSA P-256 key.
fn new_key() -> Result<KeyPair, Error> {
    KeyPair::generate().map_err(generation_failed)
}

fn generation_failed(error: rcgen::Error) -> Error {
    Error::new(
        Exit::Error,
        format!("cannot generate the certificates: {error}"),
    )
}

/// Writes `files` into `dir`, creating it if needed. If any file already exists, writes
/// nothing and fails with a usage error naming it.
pub fn write(dir: &Path, files: &[File]) -> Result<(), Error> {
    for file in files {
        let path = dir.join(&file.name);
        // `symlink_metadata`: a dangling symlink counts as existing too.
        if path.symlink_metadata().is_ok() {
            return Err(already_exists(&path));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            Exit::Error,
            format!("cannot create directory {}: {e}", dir.display()),
        )
    })?;
    for file in files {
        let path = dir.join(&file.name);
        write_new(&path, file).map_err(|e| match e.kind() {
            // Created since the check above.
            io::ErrorKind::AlreadyExists => already_exists(&path),
            _ => Error::new(Exit::Error, format!("cannot write {}: {e}", path.display())),
        })?;
    }
    Ok(())
}

fn already_exists(path: &Path) -> Error {
    Error::usage(format!(
        "{} already exists; killswitch certs never overwrites files: choose another \
         directory or remove the old files",
        path.display()
    ))
}

/// Creates `path`, which must not exist, with `file`'s contents; keys are `0600`.
fn write_new(path: &Path, file: &File) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if file.secret { 0o600 } else { 0o644 });
    }
    let mut handle = options.open(path)?;
    handle.write_all(file.contents.as_bytes())?;
    handle.sync_all()
}

/// Runs `killswitch certs ...`.
pub fn run(command: CertsCommand, format: OutputFormat, out: &mut Sink<'_>) -> Result<(), Error> {
    match command {
        CertsCommand::Init(args) => init(&args, format, out),
        CertsCommand::Collector(args) => collector(&args, format, out),
    }
}

/// `killswitch certs init`
fn init(args: &InitArgs, format: OutputFormat, out: &mut Sink<'_>) -> Result<(), Error> {
    let plan = Plan::from_args(args)?;
    let files = plan.generate(SystemTime::now())?;
    write(&args.dir, &files)?;
    match format {
        OutputFormat::Table => out.write(&plan.summary(&args.dir, &files)),
        OutputFormat::Json => out.write(&crate::output::json(&written(&args.dir, &files))?),
    }
}

/// `killswitch certs collector`
fn collector(args: &CollectorArgs, format: OutputFormat, out: &mut Sink<'_>) -> Result<(), Error> {
    let plan = CollectorPlan::from_args(args)?;
    let ca = load_ca(&args.ca_dir)?;
    let files = plan.generate(&ca, SystemTime::now())?;
    let dir = args.out.as_deref().unwrap_or(&args.ca_dir);
    write(dir, &files)?;
    match format {
        OutputFormat::Table => out.write(&plan.summary(&args.ca_dir.join(CA_CERT), dir, &files)),
        OutputFormat::Json => {
            let mut value = written(dir, &files);
            value["spiffe_id"] = plan.spiffe_id().into();
            value["trust_domain"] = plan.trust_domain.as_str().into();
            value["notes"] = plan.notes.clone().into();
            out.write(&crate::output::json(&value)?)
        }
    }
}

/// `{"dir": DIR, "files": [{"path", "what", "secret"}, ...]}`: what `files` in `dir` are.
fn written(dir: &Path, files: &[File]) -> serde_json::Value {
    let listed: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "path": dir.join(&f.name).display().to_string(),
                "what": f.what,
                "secret": f.secret,
            })
        })
        .collect();
    serde_json::json!({
        "dir": dir.display().to_string(),
        "files": listed,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    use super::*;

    fn plan(collectors: u16, operators: &[&str]) -> Plan {
        let args = InitArgs {
            dir: PathBuf::from("unused"),
            trust_domain: TrustDomain::parse("example.test").unwrap(),
            collectors,
            operators: operators
                .iter()
                .map(|o| Operator::parse(o).unwrap())
                .collect(),
        };
        Plan::from_args(&args).unwrap()
    }

    fn der(files: &[File], name: &str) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject as _;
        let file = files.iter().find(|f| f.name == name).unwrap();
        CertificateDer::from_pem_slice(file.contents.as_bytes()).unwrap()
    }

    /// Verifies `name` against the CA in `files` as webpki (so rustls) does, for `usage`.
    fn verify(files: &[File], name: &str, usage: KeyUsage) -> Result<(), webpki::Error> {
        let ca = der(files, "ca.pem");
        let anchors = [anchor_from_trusted_cert(&ca).unwrap()];
        let leaf = der(files, name);
        let leaf = EndEntityCert::try_from(&leaf).unwrap();
        let now = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap(),
        );
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            now,
            usage,
            None,
            None,
        )?;
        Ok(())
    }

    /// The URI SANs and common name of certificate `name`.
    fn identity(files: &[File], name: &str) -> (Vec<String>, String) {
        let der = der(files, name);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let uris = cert
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap()
            .to_owned();
        (uris, cn)
    }

    #[test]
    fn generated_chain_verifies_with_identities() {
        let plan = plan(2, &["carol:owner"]);
        let files = plan.generate(SystemTime::now()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca-key.pem",
                "server.pem",
                "server-key.pem",
                "collector-1.pem",
                "collector-1-key.pem",
                "collector-2.pem",
                "collector-2-key.pem",
                "operator-carol.pem",
                "operator-carol-key.pem",
                "auth.toml",
            ]
        );
        let secret: Vec<&str> = files
            .iter()
            .filter(|f| f.secret)
            .map(|f| f.name.as_str())
            .collect();
        assert!(
            secret.iter().all(|name| name.ends_with("-key.pem")),
            "{secret:?}"
        );
        assert_eq!(secret.len(), 5);

        // The server certificate is valid for its names, and as a replica's client
        // certificate.
        verify(&files, "server.pem", KeyUsage::server_auth()).unwrap();
        verify(&files, "server.pem", KeyUsage::client_auth()).unwrap();
        assert_eq!(
            identity(&files, "server.pem"),
            (
                vec!["spiffe://example.test/replica/control".to_owned()],
                "killswitch-control".to_owned()
            )
        );
        let server = der(&files, "server.pem");
        let server = EndEntityCert::try_from(&server).unwrap();
        for name in SERVER_NAMES {
            let name = ServerName::try_from(name).unwrap();
            server.verify_is_valid_for_subject_name(&name).unwrap();
        }
        let other = ServerName::try_from("example.com").unwrap();
        assert!(server.verify_is_valid_for_subject_name(&other).is_err());

        // Client certificates: clientAuth only, with their SPIFFE ID and name.
        for (file, id, cn) in [
            (
                "collector-1.pem",
                "spiffe://example.test/collector/collector-1",
                "collector-1",
            ),
            (
                "collector-2.pem",
                "spiffe://example.test/collector/collector-2",
                "collector-2",
            ),
            (
                "operator-carol.pem",
                "spiffe://example.test/operator/carol",
                "carol",
            ),
        ] {
            verify(&files, file, KeyUsage::client_auth()).unwrap();
            assert!(
                verify(&files, file, KeyUsage::server_auth()).is_err(),
                "{file}"
            );
            assert_eq!(identity(&files, file), (vec![id.to_owned()], cn.to_owned()));
        }

        // A certificate from another run's CA does not verify against this one.
        let others = plan.generate(SystemTime::now()).unwrap();
        let mut mixed = others.clone();
        mixed.retain(|f| f.name != "ca.pem");
        mixed.extend(files.iter().filter(|f| f.name == "ca.pem").cloned());
        assert!(verify(&mixed, "collector-1.pem", KeyUsage::client_auth()).is_err());
    }

    #[test]
    fn certificates_expire_as_documented() {
        let now = SystemTime::now();
        let files = plan(1, &[]).generate(now).unwrap();
        let years = |name: &str| {
            let der = der(&files, name);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let validity = cert.validity();
            let length = validity.not_after.timestamp() - validity.not_before.timestamp();
            (length - BACKDATE.as_secs() as i64) / (365 * 24 * 60 * 60)
        };
        assert_eq!(years("ca.pem"), 10);
        assert_eq!(years("server.pem"), 1);
        assert_eq!(years("collector-1.pem"), 1);
        assert_eq!(years("operator-alice.pem"), 1);
    }

    #[test]
    fn auth_toml_lists_the_operators() {
        let toml = plan(0, &[]).auth_toml();
        assert!(toml.contains("trust_domain = \"example.test\"\n"), "{toml}");
        let table: toml::Table = toml.parse().unwrap();
        let operators = table["operator"].as_array().unwrap();
        let entries: Vec<(&str, &str, bool)> = operators
            .iter()
            .map(|o| {
                assert_eq!(o["programs"].as_array().unwrap().len(), 0);
                (
                    o["name"].as_str().unwrap(),
                    o["role"].as_str().unwrap(),
                    o["cert"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [("alice", "admin", true), ("bob", "responder", true)]
        );
    }

    #[test]
    fn operators_and_trust_domains() {
        let op = Operator::parse("dave.x:viewer").unwrap();
        assert_eq!((op.name.as_str(), op.role), ("dave.x", Role::Viewer));
        for bad in [
            "dave",
            "dave:",
            ":admin",
            "-dave:admin",
            "dave:root",
            "dave:Admin",
        ] {
            assert!(Operator::parse(bad).is_err(), "{bad}");
        }
        let args = InitArgs {
            dir: PathBuf::from("x"),
            trust_domain: TrustDomain::parse(DEFAULT_TRUST_DOMAIN).unwrap(),
            collectors: 0,
            operators: vec![
                Operator::parse("a:admin").unwrap(),
                Operator::parse("a:viewer").unwrap(),
            ],
        };
        let err = Plan::from_args(&args).unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
        assert!(err.message().contains("operator a is given twice"), "{err}");

        for good in ["killswitch.local", "a", "prod-eu_1.example.com"] {
            assert!(TrustDomain::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Killswitch.local",
            "a/b",
            "a b",
            "a:1",
            &"a".repeat(256),
        ] {
            assert!(TrustDomain::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line() {
        use clap::Parser as _;

        use crate::cli::{Cli, Command};

        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("killswitch").chain(args.iter().copied()))
        };
        let Command::Certs(CertsCommand::Init(args)) =
            parse(&["certs", "init", "pki"]).unwrap().command
        else {
            panic!("expected certs init");
        };
        assert_eq!(args.dir, PathBuf::from("pki"));
        assert_eq!(args.trust_domain.as_str(), DEFAULT_TRUST_DOMAIN);
        assert_eq!(args.collectors, DEFAULT_COLLECTORS);
        let operators = Plan::from_args(&args).unwrap().operators;
        assert_eq!(operators, Operator::defaults());
        assert_eq!(operators.len(), 2);

        for bad in [
            &["certs", "init"][..],
            &["certs", "init", "pki", "--collectors", "1001"],
            &["certs", "init", "pki", "--collectors", "-1"],
            &["certs", "init", "pki", "--operator", "alice"],
            &["certs", "init", "pki", "--trust-domain", "Example.com"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn writes_keys_private_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let files = plan(1, &[]).generate(SystemTime::now()).unwrap();
        write(&dir, &files).unwrap();
        for file in &files {
            let path = dir.join(&file.name);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), file.contents);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                if file.secret {
                    assert_eq!(mode, 0o600, "{}", file.name);
                } else {
                    assert_eq!(mode & 0o077 & !0o044, 0, "{}: {mode:o}", file.name);
                }
            }
        }

        // A second run fails before writing anything, naming the first file in its way.
        let again = plan(1, &[]).generate(SystemTime::now()).unwrap();
        let err = write(&dir, &again).unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
        let ca = dir.join("ca.pem");
        assert!(
            err.message()
                .starts_with(&format!("{} already exists", ca.display())),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&ca).unwrap(),
            files[0].contents,
            "ca.pem was replaced"
        );

        // One file in the way is enough; nothing else is written.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("auth.toml"), "keep me").unwrap();
        let err = write(&other, &again).unwrap_err();
        assert!(err.message().contains("auth.toml already exists"), "{err}");
        let left: Vec<_> = std::fs::read_dir(&other).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    /// `certs init` (trust domain example.test) in a temp dir: the dir and its files.
    fn initialized() -> (tempfile::TempDir, Vec<File>) {
        let tmp = tempfile::tempdir().unwrap();
        let files = plan(0, &[]).generate(SystemTime::now()).unwrap();
        write(tmp.path(), &files).unwrap();
        (tmp, files)
    }

    fn collector_args(dir: &Path, id: &str, labels: &[&str]) -> CollectorArgs {
        CollectorArgs {
            id: CollectorId::parse(id).unwrap(),
            labels: labels.iter().map(|l| Label::parse(l).unwrap()).collect(),
            ca_dir: dir.to_owned(),
            out: None,
            trust_domain: None,
        }
    }

    /// Runs `certs collector` as `main` does: its exit code (0 on success) and output.
    fn run_collector(args: CollectorArgs, format: OutputFormat) -> (u8, String) {
        let mut buffer = Vec::new();
        let result = run(
            CertsCommand::Collector(args),
            format,
            &mut Sink::new(&mut buffer),
        );
        let code = result.map_or_else(|e| e.exit().code(), |()| 0);
        (code, String::from_utf8(buffer).unwrap())
    }

    #[test]
    fn collector_certificates_chain_to_the_ca_and_pin_their_labels() {
        let (tmp, mut files) = initialized();
        // Labels given out of order come out sorted by key.
        let args = collector_args(tmp.path(), "emea-1", &["team=pay", "region=emea"]);
        let plan = CollectorPlan::from_args(&args).unwrap();
        assert_eq!(plan.trust_domain.as_str(), "example.test", "from auth.toml");
        let issued = plan
            .generate(&load_ca(tmp.path()).unwrap(), SystemTime::now())
            .unwrap();
        let names: Vec<&str> = issued.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["collector-emea-1.pem", "collector-emea-1-key.pem"]);
        assert_eq!(
            issued.iter().map(|f| f.secret).collect::<Vec<_>>(),
            [false, true]
        );
        files.extend(issued);

        verify(&files, "collector-emea-1.pem", KeyUsage::client_auth()).unwrap();
        assert!(verify(&files, "collector-emea-1.pem", KeyUsage::server_auth()).is_err());
        const URI: &str = "spiffe://example.test/collector/emea-1?region=emea&team=pay";
        assert_eq!(
            identity(&files, "collector-emea-1.pem"),
            (vec![URI.to_owned()], "emea-1".to_owned())
        );
        // The control plane reads back exactly these labels.
        use killswitch_control::api::auth::{CertSubject, subject_of};
        let Ok(CertSubject::Collector(collector)) =
            subject_of(&der(&files, "collector-emea-1.pem"), "example.test")
        else {
            panic!("not a collector certificate");
        };
        assert_eq!(collector.id.as_str(), "emea-1");
        assert_eq!(
            collector.labels.into_iter().collect::<Vec<_>>(),
            [
                ("region".to_owned(), "emea".to_owned()),
                ("team".to_owned(), "pay".to_owned())
            ]
        );

        // Without labels, the SPIFFE ID has no query.
        let bare = CollectorPlan::from_args(&collector_args(tmp.path(), "c:9", &[])).unwrap();
        assert_eq!(bare.spiffe_id(), "spiffe://example.test/collector/c:9");
    }

    #[test]
    fn collector_certificates_are_written_once_with_notes() {
        let (tmp, _) = initialized();
        let args = || collector_args(tmp.path(), "emea-1", &["region=emea"]);
        let (code, shown) = run_collector(args(), OutputFormat::Table);
        assert_eq!(code, 0, "{shown}");
        let path = |name: &str| tmp.path().join(name).display().to_string();
        for needle in [
            format!("wrote a collector certificate to {}:", tmp.path().display()),
            "  collector-emea-1.pem      collector certificate, \
             spiffe://example.test/collector/emea-1?region=emea\n"
                .to_owned(),
            format!("trust domain: example.test (from {})", path("auth.toml")),
            format!(
                "note: {} does not list region in pinned_labels",
                path("auth.toml")
            ),
            format!(
                "  --id emea-1 --ca {} --cert {} --key {} --label region=emea\n",
                path("ca.pem"),
                path("collector-emea-1.pem"),
                path("collector-emea-1-key.pem")
            ),
        ] {
            assert!(shown.contains(&needle), "{needle:?} not in:\n{shown}");
        }
        let written = std::fs::read_to_string(path("collector-emea-1.pem")).unwrap();

        // A second run refuses to overwrite (exit 2) and leaves the file as it was.
        let (code, _) = run_collector(args(), OutputFormat::Table);
        assert_eq!(code, 2);
        assert_eq!(
            std::fs::read_to_string(path("collector-emea-1.pem")).unwrap(),
            written
        );

        // --out elsewhere; JSON names the identity. With region pinned, no note.
        let toml = std::fs::read_to_string(path("auth.toml")).unwrap();
        let toml = toml.replace(
            "trust_domain = \"example.test\"\n",
            "trust_domain = \"example.test\"\npinned_labels = [\"region\"]\n",
        );
        std::fs::write(path("auth.toml"), toml).unwrap();
        let out = tmp.path().join("elsewhere");
        let (code, json) = run_collector(
            CollectorArgs {
                out: Some(out.clone()),
                ..args()
            },
            OutputFormat::Json,
        );
        assert_eq!(code, 0, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["spiffe_id"],
            "spiffe://example.test/collector/emea-1?region=emea"
        );
        assert_eq!(value["trust_domain"], "example.test");
        assert_eq!(value["notes"], serde_json::json!([]));
        assert!(out.join("collector-emea-1-key.pem").is_file());

        // A pinned key the certificate leaves unset, and another trust domain, are noted.
        let other = CollectorPlan::from_args(&CollectorArgs {
            trust_domain: Some(TrustDomain::parse("other.test").unwrap()),
            ..collector_args(tmp.path(), "c2", &[])
        })
        .unwrap();
        assert_eq!(other.trust_domain_from, "--trust-domain");
        assert_eq!(other.notes.len(), 2, "{:?}", other.notes);
        assert!(other.notes[0].contains("trust_domain = \"example.test\""));
        assert!(other.notes[1].contains("pins region and this certificate sets no value"));
    }

    #[test]
    fn collector_certificates_need_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let (code, _) = run_collector(
            collector_args(tmp.path(), "c1", &["region=emea"]),
            OutputFormat::Table,
        );
        assert_eq!(code, 2);
        let plan = CollectorPlan::from_args(&collector_args(tmp.path(), "c1", &[])).unwrap();
        assert_eq!(plan.trust_domain.as_str(), DEFAULT_TRUST_DOMAIN);
        let err = load_ca(tmp.path()).unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
        assert!(
            err.message().contains("--ca-dir must be a directory"),
            "{err}"
        );

        // A key that is not the CA's.
        let (dir, _) = initialized();
        let other = new_key().unwrap().serialize_pem();
        std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), other).unwrap();
        let err = load_ca(dir.path()).unwrap_err();
        assert!(
            err.message()
                .ends_with("ca-key.pem is not the key of ca.pem"),
            "{err}"
        );
        let before = std::fs::read_dir(dir.path()).unwrap().count();
        let (code, _) = run_collector(
            collector_args(dir.path(), "c1", &["region=emea"]),
            OutputFormat::Table,
        );
        assert_eq!(code, 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    }

    #[test]
    fn bad_collector_ids_and_labels_are_refused() {
        for (label, why) in [
            ("region", "expected KEY=VALUE"),
            (
                "Region=emea",
                "invalid label key \"Region\": use 1 to 63 characters",
            ),
            ("-x=1", "invalid label key \"-x\""),
            (
                "region=a b",
                "label region=a b: ' ' cannot go into a certificate's SPIFFE ID",
            ),
            ("region=a&team=b", "'&' cannot go into"),
            ("region=émea", "'é' cannot go into"),
            (
                "region=a\u{7}",
                "label region: label value must not contain control characters",
            ),
        ] {
            let err = Label::parse(label).unwrap_err();
            assert!(err.contains(why), "{label:?}: {err}");
        }
        assert!(
            Label::parse("region=a b")
                .unwrap_err()
                .ends_with(Label::VALUE_RULE)
        );
        for good in [
            "region=",
            "k8s.io/zone=eu-west-1",
            "owner=ops@example.com:x/y~z",
        ] {
            assert!(Label::parse(good).is_ok(), "{good}");
        }
        assert!(
            CollectorId::parse("a/b")
                .unwrap_err()
                .contains("invalid collector id \"a/b\"")
        );

        // A key twice, or too many labels: usage errors before anything is read or written.
        let tmp = tempfile::tempdir().unwrap();
        let twice = collector_args(tmp.path(), "c1", &["region=a", "region=b"]);
        let err = CollectorPlan::from_args(&twice).unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
        assert!(
            err.message().contains("label region is given twice"),
            "{err}"
        );
        let many: Vec<String> = (0..=contract::MAX_LABELS)
            .map(|i| format!("k{i}=v"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = CollectorPlan::from_args(&collector_args(tmp.path(), "c1", &many)).unwrap_err();
        assert!(err.message().contains("at most 32"), "{err}");
        let (code, _) = run_collector(twice, OutputFormat::Table);
        assert_eq!(code, 2);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

        // On the command line: clap refuses with exit 2, naming the label and the rule.
        use clap::Parser as _;
        let err = crate::cli::Cli::try_parse_from([
            "killswitch",
            "certs",
            "collector",
            "c1",
            "--ca-dir",
            "pki",
            "--label",
            "Region=emea",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("invalid label key \"Region\""),
            "{err}"
        );
    }

    #[test]
    fn summary_gives_the_flags() {
        let plan = plan(1, &[]);
        let files = plan.generate(SystemTime::now()).unwrap();
        let dir = Path::new("/tmp/pki");
        let summary = plan.summary(dir, &files);
        for needle in [
            "wrote a development PKI to /tmp/pki:",
            "  ca-key.pem ",
            "alice (admin): --ca /tmp/pki/ca.pem --cert /tmp/pki/operator-alice.pem --key \
             /tmp/pki/operator-alice-key.pem",
            "--id collector-1 --ca /tmp/pki/ca.pem --cert /tmp/pki/collector-1.pem --key \
             /tmp/pki/collector-1-key.pem",
            "--tls-cert /tmp/pki/server.pem --tls-key /tmp/pki/server-key.pem --client-ca \
             /tmp/pki/ca.pem --auth-file /tmp/pki/auth.toml",
        ] {
            assert!(summary.contains(needle), "{needle:?} not in:\n{summary}");
        }
    }
}
