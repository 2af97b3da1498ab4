//! How a replica secures its listener and knows its callers ([`Security`]: TLS with an
//! auth file, or `--insecure-dev` on loopback), and how it reaches etcd ([`EtcdAccess`]).
//! Files are read and checked when the configuration is made, so a replica never starts
//! with unusable credentials.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::pem::Pem;

use crate::api::auth::{Auth, AuthConfig, AuthFileError};

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a replica secures its listener and knows its callers.
#[derive(Debug, Clone, Default)]
pub enum Security {
    /// `--insecure-dev`: plain text and no authentication. Every caller is an admin named
    /// by its `killswitch-actor` metadata and collectors are whoever their Hello says.
    /// Only allowed on a loopback address.
    #[default]
    InsecureDev,
    /// TLS on the listener; callers authenticate with a client certificate or a bearer
    /// token and are authorized by role (see [`crate::api::auth`]).
    Tls(Box<TlsSettings>),
}

impl Security {
    /// `--insecure-dev` on `listen`, which must be a loopback address.
    pub fn insecure_dev(listen: SocketAddr) -> Result<Self, SecurityError> {
        check_loopback(listen)?;
        Ok(Security::InsecureDev)
    }

    /// The URL scheme clients use: `http` or `https`.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        match self {
            Security::InsecureDev => "http",
            Security::Tls(_) => "https",
        }
    }

    /// The authentication and authorization the services apply.
    pub(crate) fn auth(&self) -> Auth {
        match self {
            Security::InsecureDev => Auth::insecure_dev(),
            Security::Tls(tls) => {
                // Peers present this replica's certificate and verify each other's server
                // certificates against the client CA (`killswitch certs init` issues both).
                let peer = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.client_ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
                Auth::tls(tls.auth.clone(), tls.leaf_der.clone(), peer)
            }
        }
    }
}

pub(crate) fn check_loopback(addr: SocketAddr) -> Result<(), SecurityError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(SecurityError::NotLoopback(addr))
    }
}

/// A TLS replica's certificate, key, client CA and operators, checked.
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<u8>,
    leaf_der: Vec<u8>,
    auth: AuthConfig,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("trust_domain", &self.auth.trust_domain)
            .field("operators", &self.auth.operators.len())
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Checks PEM contents: `cert_pem` is the certificate chain this replica presents
    /// (leaf first), `key_pem` its private key, `client_ca_pem` the CA that issues client
    /// certificates (also trusted for peer replicas' server certificates), and `auth` the
    /// trust domain and operators.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Vec<u8>,
        auth: AuthConfig,
    ) -> Result<Self, SecurityError> {
        let leaf_der =
            first_pem(&cert_pem, |label| label == "CERTIFICATE").ok_or(SecurityError::NoPem {
                flag: "--tls-cert",
                what: "CERTIFICATE",
            })?;
        first_pem(&client_ca_pem, |label| label == "CERTIFICATE").ok_or(SecurityError::NoPem {
            flag: "--client-ca",
            what: "CERTIFICATE",
        })?;
        first_pem(&key_pem, |label| label.ends_with("PRIVATE KEY")).ok_or(
            SecurityError::NoPem {
                flag: "--tls-key",
                what: "PRIVATE KEY",
            },
        )?;
        let settings = Self {
            cert_pem,
            key_pem,
            client_ca_pem,
            leaf_der,
            auth,
        };
        // Builds the TLS acceptor once now, so that e.g. a key that is not the
        // certificate's fails at startup rather than after the replica says it listens.
        tonic::transport::Server::builder()
            .tls_config(settings.server_config())
            .map_err(SecurityError::Tls)?;
        Ok(settings)
    }

    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.client_ca_pem))
            // Operators may come with a bearer token instead of a certificate; a caller
            // with neither is refused per call, with a message saying how to authenticate.
            .client_auth_optional(true)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }
}

/// The contents of the first PEM block in `pem` whose label `wanted` accepts.
fn first_pem(pem: &[u8], wanted: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    Pem::iter_from_buffer(pem)
        .map_while(Result::ok)
        .find(|block| wanted(&block.label))
        .map(|block| block.contents)
}

/// The TLS files, as the flags name them; [`TlsFiles::load`] requires all four.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// `--tls-cert`: PEM certificate chain the replica presents.
    pub cert: Option<PathBuf>,
    /// `--tls-key`: its PEM private key.
    pub key: Option<PathBuf>,
    /// `--client-ca`: PEM CA certificate that issues client certificates.
    pub client_ca: Option<PathBuf>,
    /// `--auth-file`: the trust domain and operators (`auth.toml`).
    pub auth_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads and checks every file; names the flags that are missing.
    pub fn load(&self) -> Result<TlsSettings, SecurityError> {
        let named = [
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
            ("--client-ca", &self.client_ca),
            ("--auth-file", &self.auth_file),
        ];
        let missing: Vec<&str> = named
            .iter()
            .filter(|(_, path)| path.is_none())
            .map(|(flag, _)| *flag)
            .collect();
        let [Some(cert), Some(key), Some(client_ca), Some(auth_file)] =
            named.map(|(_, path)| path.as_deref())
        else {
            return Err(SecurityError::MissingTls(missing.join(", ")));
        };
        TlsSettings::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
            read("--client-ca", client_ca)?,
            AuthConfig::load(auth_file)?,
        )
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// How a replica authenticates to etcd. Default: plain text, no user.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// PEM CA of etcd's server certificates; with it, etcd endpoints must be `https://`.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for etcd's client certificate authentication.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd user and password.
    pub user: Option<(String, String)>,
}

impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl EtcdAccess {
    pub(crate) fn connect_options(&self, timeout: Duration) -> etcd_client::ConnectOptions {
        // As `Store::connect`, plus credentials.
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_require_leader(true);
        if let Some(ca) = &self.ca_pem {
            let mut tls = etcd_client::TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &self.user {
            options = options.with_user(user, password);
        }
        options
    }
}

/// The etcd credential flags; [`EtcdFiles::load`] reads the files.
#[derive(Clone, Default)]
pub struct EtcdFiles {
    /// `--etcd-ca`: PEM CA of etcd's server certificates.
    pub ca: Option<PathBuf>,
    /// `--etcd-cert`: PEM client certificate (needs `--etcd-key` and `--etcd-ca`).
    pub cert: Option<PathBuf>,
    /// `--etcd-key`: its PEM private key.
    pub key: Option<PathBuf>,
    /// `--etcd-user` (needs `--etcd-password`).
    pub user: Option<String>,
    /// `--etcd-password` (`KILLSWITCH_ETCD_PASSWORD`).
    pub password: Option<String>,
}

impl fmt::Debug for EtcdFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdFiles")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl EtcdFiles {
    /// Reads the files and checks that the flags that go together came together.
    pub fn load(&self) -> Result<EtcdAccess, SecurityError> {
        let pair = |a: &'static str, b: &'static str| SecurityError::Together(a, b);
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read("--etcd-cert", cert)?, read("--etcd-key", key)?)),
            (None, None) => None,
            _ => return Err(pair("--etcd-cert", "--etcd-key")),
        };
        if identity.is_some() && self.ca.is_none() {
            return Err(pair("--etcd-cert", "--etcd-ca"));
        }
        let user = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => return Err(pair("--etcd-user", "--etcd-password")),
        };
        let ca_pem = self
            .ca
            .as_deref()
            .map(|ca| read("--etcd-ca", ca))
            .transpose()?;
        Ok(EtcdAccess {
            ca_pem,
            identity,
            user,
        })
    }
}

/// Why the security settings are unusable. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// TLS is the default and some of its flags are missing.
    #[error(
        "missing {0}: a replica serves TLS unless --insecure-dev is given (plain text without authentication, on a loopback address only)"
    )]
    MissingTls(String),
    /// `--insecure-dev` on an address others can reach.
    #[error(
        "--insecure-dev serves plain text and trusts every caller, so it only listens on a loopback address, and {0} is not one: use --tls-cert, --tls-key, --client-ca and --auth-file instead"
    )]
    NotLoopback(SocketAddr),
    /// A file cannot be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing of the expected kind.
    #[error("{flag} holds no PEM {what} block")]
    NoPem {
        /// The flag naming the file.
        flag: &'static str,
        /// The PEM label expected.
        what: &'static str,
    },
    /// The auth file is unusable.
    #[error("--auth-file: {0}")]
    AuthFile(#[from] AuthFileError),
    /// A flag came without the one it needs.
    #[error("{0} needs {1}")]
    Together(&'static str, &'static str),
    /// The certificate, key and client CA cannot be used together.
    #[error("cannot use --tls-cert, --tls-key and --client-ca: {}", error_chain(.0))]
    Tls(#[source] tonic::transport::Error),
}

/// `error: cause: cause`, for errors whose `Display` leaves out their source.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}
