//! TLS material for a run with `--tls`, as deployed: a CA, the replicas' server
//! certificate, an `auth.toml` with one admin operator (a bearer token), and one client
//! certificate per simulated collector.
//!
//! The control plane takes a collector's id from its certificate and refuses a Hello that
//! claims another, so collectors cannot share a certificate. Each simulator process
//! issues its own collectors' certificates at start (an ECDSA P-256 key and a certificate
//! with the SPIFFE ID `spiffe://killswitch.local/collector/ID`, about 0.1 ms each),
//! signed with the CA key the orchestrator wrote. The handshake each collector then
//! makes is the one a real collector makes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use sha2::{Digest, Sha256};

/// The SPIFFE trust domain of the run.
pub const TRUST_DOMAIN: &str = "killswitch.local";

/// Files in the PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA key, read by simulators to issue collector certificates.
pub const CA_KEY: &str = "ca-key.pem";
/// The replicas' certificate (serverAuth for 127.0.0.1 and localhost; clientAuth as a
/// replica, which replicas present to each other).
pub const SERVER_CERT: &str = "server.pem";
/// The key of [`SERVER_CERT`].
pub const SERVER_KEY: &str = "server-key.pem";
/// The control plane's operators.
pub const AUTH_FILE: &str = "auth.toml";

/// The CA's parameters: the same in the orchestrator, which self-signs it, and in the
/// simulators, which issue with it (the issuer name must match the CA's subject).
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "killswitch-fleet CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(params)
}

/// The directory written by [`create`], and the operator's bearer token.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The admin operator's bearer token.
    pub token: String,
}

impl Pki {
    /// The path of `file` in the directory.
    #[must_use]
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(self.path(CA_CERT)).context("cannot read the CA certificate")
    }
}

/// Writes a CA, the server certificate and `auth.toml` (one admin, `fleet`, with a random
/// bearer token) to `dir`.
pub fn create(dir: &Path) -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.subject_alt_names.push(SanType::URI(
        format!("spiffe://{TRUST_DOMAIN}/replica/fleet").try_into()?,
    ));
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let token: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
    let hash = Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
    let auth = format!(
        "trust_domain = \"{TRUST_DOMAIN}\"\n\n[[operator]]\nname = \"fleet\"\nrole = \"admin\"\n\
         token_sha256 = \"{hash}\"\n"
    );
    for (file, contents) in [
        (CA_CERT, ca_cert.pem()),
        (CA_KEY, ca_key.serialize_pem()),
        (SERVER_CERT, server_cert.pem()),
        (SERVER_KEY, server_key.serialize_pem()),
        (AUTH_FILE, auth),
    ] {
        std::fs::write(dir.join(file), contents)
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    Ok(Pki {
        dir: dir.to_owned(),
        token,
    })
}

/// Issues collector certificates with the CA in a PKI directory.
pub struct CollectorIssuer {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what collectors trust.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for CollectorIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorIssuer").finish_non_exhaustive()
    }
}

impl CollectorIssuer {
    /// Reads the CA from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let key = std::fs::read_to_string(dir.join(CA_KEY)).context("cannot read the CA key")?;
        let key = KeyPair::from_pem(&key).context("the CA key is not a PEM key")?;
        let ca_pem = std::fs::read(dir.join(CA_CERT)).context("cannot read the CA certificate")?;
        Ok(Self {
            issuer: Issuer::new(ca_params()?, key),
            ca_pem,
        })
    }

    /// A new key and a certificate for collector `id`: (certificate PEM, key PEM).
    pub fn issue(&self, id: &str) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, id);
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{TRUST_DOMAIN}/collector/{id}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_files_and_issues_collector_certificates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = create(dir.path()).expect("pki");
        for file in [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, AUTH_FILE] {
            assert!(pki.path(file).is_file(), "{file}");
        }
        let auth = std::fs::read_to_string(pki.path(AUTH_FILE)).expect("auth.toml");
        let parsed = killswitch_control::api::auth::AuthConfig::load(&pki.path(AUTH_FILE));
        assert!(parsed.is_ok(), "{auth}: {parsed:?}");
        let issuer = CollectorIssuer::load(dir.path()).expect("issuer");
        let (cert, key) = issuer.issue("sim-000001").expect("certificate");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
