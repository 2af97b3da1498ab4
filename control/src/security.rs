//! How a replica secures its listener and knows its callers ([`Security`]: TLS with an
//! auth file, or `--insecure-dev` on loopback), and how it reaches etcd ([`EtcdAccess`]).
//! Files are read and checked when the configuration is made, so a replica never starts
//! with unusable credentials.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::api::auth::{Auth, AuthConfig, AuthFileError};

/// The ALPN protocol a replica serves: gRPC is HTTP/2.
const ALPN_H2: &[u8] = b"h2";

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
            Security::Tls(tls) => Auth::tls(tls.auth.clone(), tls.leaf_der.clone(), tls.peer_tls()),
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

/// A TLS replica's certificate, key, client CA and operators, checked, with the TLS
/// server configuration made of them.
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<u8>,
    leaf_der: Vec<u8>,
    auth: AuthConfig,
    server: Arc<ServerConfig>,
    /// The files they were read from, to read again on a reload; `None` when given as
    /// PEM contents.
    files: Option<TlsFiles>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("trust_domain", &self.auth.trust_domain)
            .field("operators", &self.auth.operators.len())
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Checks PEM contents: `cert_pem` is the certificate chain this replica presents
    /// (leaf first), `key_pem` its private key, `client_ca_pem` the CA that issues client
    /// certificates (also trusted for peer replicas' server certificates), and `auth` the
    /// trust domain and operators. Settings made this way cannot be reloaded: there are
    /// no files to read again.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Vec<u8>,
        auth: AuthConfig,
    ) -> Result<Self, SecurityError> {
        Self::build([cert_pem, key_pem, client_ca_pem], auth, None)
    }

    /// Checks the PEM contents (certificate, key, client CA) read from `files`, if any,
    /// whose paths then name them in errors; builds the TLS server configuration, so that
    /// e.g. a key that is not the certificate's fails here, before anything uses it.
    fn build(
        [cert_pem, key_pem, client_ca_pem]: [Vec<u8>; 3],
        auth: AuthConfig,
        files: Option<TlsFiles>,
    ) -> Result<Self, SecurityError> {
        let name = FileName::new;
        let cert_file = name("--tls-cert", files.as_ref().and_then(|f| f.cert.as_ref()));
        let key_file = name("--tls-key", files.as_ref().and_then(|f| f.key.as_ref()));
        let ca_file = name(
            "--client-ca",
            files.as_ref().and_then(|f| f.client_ca.as_ref()),
        );

        let chain = certificates(&cert_pem, &cert_file)?;
        let leaf_der =
            chain
                .first()
                .map(|leaf| leaf.to_vec())
                .ok_or_else(|| SecurityError::NoPem {
                    file: cert_file.clone(),
                    what: "CERTIFICATE",
                })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| match source {
            pem::Error::NoItemsFound => SecurityError::NoPem {
                file: key_file.clone(),
                what: "PRIVATE KEY",
            },
            source => SecurityError::BadPem {
                file: key_file.clone(),
                source,
            },
        })?;
        let mut roots = RootCertStore::empty();
        let authorities = certificates(&client_ca_pem, &ca_file)?;
        if authorities.is_empty() {
            return Err(SecurityError::NoPem {
                file: ca_file,
                what: "CERTIFICATE",
            });
        }
        for authority in authorities {
            roots
                .add(authority)
                .map_err(|source| SecurityError::BadCa {
                    file: ca_file.clone(),
                    source,
                })?;
        }
        // Operators may come with a bearer token instead of a certificate; a caller
        // with neither is refused per call, with a message saying how to authenticate.
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|source| SecurityError::Verifier {
                file: ca_file.clone(),
                source,
            })?;
        let mut server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|source| SecurityError::Tls {
                cert: cert_file,
                key: key_file,
                source,
            })?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self {
            cert_pem,
            key_pem,
            client_ca_pem,
            leaf_der,
            auth,
            server: Arc::new(server),
            files,
        })
    }

    /// The TLS server configuration: this certificate, client certificates from the client
    /// CA optional, ALPN `h2`.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The files these settings came from, `None` when given as PEM contents.
    pub(crate) fn files(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    /// The auth file's contents.
    pub(crate) fn auth_config(&self) -> &AuthConfig {
        &self.auth
    }

    /// The DER certificate this replica presents.
    pub(crate) fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// How this replica connects to its peers: trusting the client CA, presenting its own
    /// certificate (`killswitch certs init` issues both).
    pub(crate) fn peer_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.client_ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// The DER certificates in `pem` (none when it holds no CERTIFICATE block).
fn certificates(
    pem: &[u8],
    file: &FileName,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SecurityError::BadPem {
            file: file.clone(),
            source,
        })
}

/// A file the flags name, for messages: `--tls-cert /etc/killswitch/server.pem`, or just
/// the flag when its contents were given directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    fn new(flag: &str, path: Option<&PathBuf>) -> Self {
        Self(match path {
            Some(path) => format!("{flag} {}", path.display()),
            None => flag.to_owned(),
        })
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
    /// Reads and checks every file; names the flags that are missing. Errors name the
    /// file at fault. A replica reads them again, the same way, when reloaded.
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
        TlsSettings::build(
            [
                read("--tls-cert", cert)?,
                read("--tls-key", key)?,
                read("--client-ca", client_ca)?,
            ],
            AuthConfig::load(auth_file)?,
            Some(self.clone()),
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
    #[error("{file} holds no PEM {what} block")]
    NoPem {
        /// The file.
        file: FileName,
        /// The PEM label expected.
        what: &'static str,
    },
    /// A PEM file cannot be read as PEM.
    #[error("{file} is not valid PEM: {source}")]
    BadPem {
        /// The file.
        file: FileName,
        /// What is wrong with it.
        #[source]
        source: pem::Error,
    },
    /// The client CA holds a certificate that cannot be a trust anchor.
    #[error("cannot trust the certificate in {file}: {source}")]
    BadCa {
        /// The file.
        file: FileName,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The client CA cannot verify client certificates.
    #[error("cannot verify client certificates with {file}: {source}")]
    Verifier {
        /// The file.
        file: FileName,
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The auth file is unusable.
    #[error("--auth-file: {0}")]
    AuthFile(#[from] AuthFileError),
    /// A flag came without the one it needs.
    #[error("{0} needs {1}")]
    Together(&'static str, &'static str),
    /// The certificate and key cannot be used together (e.g. the key is not the
    /// certificate's).
    #[error("cannot serve TLS with {cert} and {key}: {source}")]
    Tls {
        /// The certificate file.
        cert: FileName,
        /// The key file.
        key: FileName,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}
