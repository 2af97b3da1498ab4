//! `killswitch certs init`: a development PKI in one directory: a CA, the control plane's
//! server certificate, client certificates for collectors and operators, and the control
//! plane's `auth.toml` listing the operators.
//!
//! Identities are SPIFFE IDs in a URI SAN (`spiffe://TRUST-DOMAIN/collector/NAME`,
//! `spiffe://TRUST-DOMAIN/operator/NAME`), with the name also as the common name. Keys are
//! ECDSA P-256, written `0600`. Everything is generated in memory first and nothing is
//! written if any file already exists: the command never overwrites, so it cannot replace
//! a CA that certificates in use depend on.
//!
//! This is for development and tests: the CA key sits next to everything it signed.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
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

/// `killswitch certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a development CA, the control plane's certificate, collector and operator
    /// client certificates, and the control plane's auth.toml, in DIR
    #[command(after_help = INIT_HELP)]
    Init(InitArgs),
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
                "ca.pem",
                ca_cert.pem(),
                "CA certificate: the control plane, collectors and CLI trust it",
            ),
            File::key(
                "ca-key.pem",
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
            let collector = Leaf {
                file: &name,
                common_name: name.clone(),
                sans: vec![uri_san(&id)?],
                usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
                what: format!("collector certificate, {id}"),
            };
            files.extend(collector.generate(&ca, now)?);
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
            "auth.toml",
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
        let width = files.iter().map(|f| f.name.len()).max().unwrap_or(0);
        let mut text = format!("wrote a development PKI to {}:\n", dir.display());
        for file in files {
            let _ = writeln!(text, "  {:width$}  {}", file.name, file.what);
        }
        let ca = path("ca.pem");
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
                let _ = writeln!(
                    text,
                    "  --id {name} --ca {ca} --cert {} --key {}",
                    path(&format!("{name}.pem")),
                    path(&format!("{name}-key.pem")),
                );
            }
        }
        let _ = writeln!(
            text,
            "\nControl plane (killswitch-control), reached at https://localhost:PORT or \
             https://127.0.0.1:PORT:\n  --tls-cert {} --tls-key {} --client-ca {ca} \
             --auth-file {}",
            path("server.pem"),
            path("server-key.pem"),
            path("auth.toml"),
        );
        text
    }
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
        "{} already exists; certs init never overwrites files: choose another directory or \
         remove the old files",
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
    let CertsCommand::Init(args) = command;
    let plan = Plan::from_args(&args)?;
    let files = plan.generate(SystemTime::now())?;
    write(&args.dir, &files)?;
    match format {
        OutputFormat::Table => out.write(&plan.summary(&args.dir, &files)),
        OutputFormat::Json => {
            let listed: Vec<serde_json::Value> = files
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "path": args.dir.join(&f.name).display().to_string(),
                        "what": f.what,
                        "secret": f.secret,
                    })
                })
                .collect();
            out.write(&crate::output::json(&serde_json::json!({
                "dir": args.dir.display().to_string(),
                "files": listed,
            }))?)
        }
    }
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
