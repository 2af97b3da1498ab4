//! [`ClientBuilder`]: configures and validates a [`Client`], then starts its session task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{BuildError, error_chain};
use crate::event::{HookResult, StateEvent};
use crate::hook::{DEFAULT_HOOK_TIMEOUT, Hook, Hooks};
use crate::names::{MAX_LABELS, is_valid_collector_id, is_valid_label, is_valid_program_name};
use crate::programs::Programs;
use crate::receipt::{NO_CLIENT_CERTIFICATE, Receipts, Signer};
use crate::session::{self, Settings};
use crate::signing::{self, Trust};
use crate::state_file::{self, StateFile};

/// Configures a [`Client`]; get one with [`Client::builder`].
///
/// Nothing is checked until [`start`](ClientBuilder::start), which reports the first
/// problem it finds.
#[derive(Debug)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    collector_id: String,
    labels: BTreeMap<String, String>,
    programs: Vec<String>,
    on_pause: Option<Hook>,
    on_resume: Option<Hook>,
    hook_timeout: Duration,
    backoff: Backoff,
    state_file: Option<PathBuf>,
    tls: Option<TlsPem>,
    trusted_keys: Vec<Vec<u8>>,
    required_signatures: usize,
    max_statement_lifetime: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            collector_id: String::new(),
            labels: BTreeMap::new(),
            programs: Vec::new(),
            on_pause: None,
            on_resume: None,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            backoff: Backoff::default(),
            state_file: None,
            tls: None,
            trusted_keys: Vec::new(),
            required_signatures: 0,
            max_statement_lifetime: Duration::from_secs(3600),
        }
    }
}

impl ClientBuilder {
    /// Adds the address of a control replica, e.g. `https://control-1.internal:7070`.
    /// Call it once per replica; the client starts with a random one and moves to the
    /// next whenever a session ends.
    ///
    /// `https://` endpoints need [`tls`](ClientBuilder::tls); `http://` (plaintext, for a
    /// development control plane started with `--insecure-dev`) refuses it. All endpoints
    /// of a client use the same scheme.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Adds several replica addresses, as [`endpoint`](ClientBuilder::endpoint) does.
    #[must_use]
    pub fn endpoints<I>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.endpoints.extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// Sets this collector's stable, unique id (required): 1 to 128 characters among
    /// `A-Z a-z 0-9 . _ : -`, starting with a letter or digit. Operators see it in status.
    #[must_use]
    pub fn collector_id(mut self, id: impl Into<String>) -> Self {
        self.collector_id = id.into();
        self
    }

    /// Adds a descriptive label (region, version, ...); a later value for the same key
    /// replaces an earlier one.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Registers a program this collector obeys (at least one is required): 1 to 63
    /// characters among `a-z 0-9 -`, starting with a letter. Each gets a [`Gate`](crate::Gate).
    #[must_use]
    pub fn program(mut self, name: impl Into<String>) -> Self {
        self.programs.push(name.into());
        self
    }

    /// Sets the hook run when a program is paused, after its gate closed.
    ///
    /// It runs on tokio's blocking pool, so it may block (flush, delete buffers when
    /// [`StateEvent::purge`] is set, then call [`StateEvent::confirm_purge`]). Its error,
    /// panic or timeout (see [`hook_timeout`](ClientBuilder::hook_timeout)) is reported in
    /// the Ack; the gate stays closed whatever it does. [`StateEvent::cause`] says why it
    /// runs: an operator's pause, or [`Cause::LostContact`](crate::Cause::LostContact).
    ///
    /// Replaces any earlier pause hook, sync or async; the default does nothing.
    #[must_use]
    pub fn on_pause<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    {
        self.on_pause = Some(Hook::sync(hook));
        self
    }

    /// Sets the hook run when a program is resumed, before its gate opens.
    ///
    /// It runs on tokio's blocking pool, so it may block. The gate opens only if it
    /// returns `Ok` within the [`hook_timeout`](ClientBuilder::hook_timeout); if it fails,
    /// panics or times out the gate stays closed and the Ack reports the error.
    ///
    /// Replaces any earlier resume hook, sync or async; the default does nothing.
    #[must_use]
    pub fn on_resume<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    {
        self.on_resume = Some(Hook::sync(hook));
        self
    }

    /// Sets an async hook run when a program is paused, after its gate closed: the async
    /// form of [`on_pause`](ClientBuilder::on_pause), for collectors whose cleanup is
    /// async. Its future runs as a task of its own; past the
    /// [`hook_timeout`](ClientBuilder::hook_timeout) it is aborted at its next await and
    /// the Ack reports the timeout.
    ///
    /// Replaces any earlier pause hook, sync or async.
    ///
    /// ```
    /// use killswitch_sdk::{Client, StateEvent};
    ///
    /// # async fn delete_unsent_batches() -> std::io::Result<()> { Ok(()) }
    /// let builder = Client::builder().on_pause_async(|event: StateEvent| async move {
    ///     if event.purge {
    ///         delete_unsent_batches().await?;
    ///         event.confirm_purge();
    ///     }
    ///     Ok(())
    /// });
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn on_pause_async<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(StateEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.on_pause = Some(Hook::from_async(hook));
        self
    }

    /// Sets an async hook run when a program is resumed, before its gate opens: the async
    /// form of [`on_resume`](ClientBuilder::on_resume). The gate opens only if its future
    /// resolves to `Ok` within the [`hook_timeout`](ClientBuilder::hook_timeout).
    ///
    /// Replaces any earlier resume hook, sync or async.
    #[must_use]
    pub fn on_resume_async<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(StateEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.on_resume = Some(Hook::from_async(hook));
        self
    }

    /// Sets how long a hook may run before it counts as failed (default 10 s; must be
    /// non-zero).
    ///
    /// A hook that times out gets an Ack with the error `"pause hook timed out after
    /// 10s"` (or `resume`), and its gate stays closed. An async hook is then aborted. A
    /// sync hook cannot be: it keeps running on the blocking pool until it returns, but
    /// its outcome is ignored, so it can no longer open the gate.
    ///
    /// States are applied one at a time, so a slow hook delays the next state change
    /// (never a gate closing: gates close before pause hooks run, and the lost-contact
    /// watchdog keeps closing gates while a hook runs).
    #[must_use]
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// Keeps each program's last applied state in the file at `path`, so that a restarted
    /// collector never goes back in time.
    ///
    /// After every state applied (when that changes the contents), the client replaces
    /// the file atomically with, for each program, the generation, RUNNING or PAUSED, and
    /// the failure policy (one line per program, e.g. `demo 42 RUNNING keep 30000`; the
    /// format is described in `docs/sdk-guide.md`). On [`start`](ClientBuilder::start) it
    /// reads the file if it exists: a missing file is normal, an unreadable one or an
    /// invalid line is logged and ignored. Then:
    ///
    /// - every program starts from the generation in the file: a state older than it is
    ///   ignored, as it would be had the collector not restarted;
    /// - every gate still starts closed. A fail-closed program reopens only when the
    ///   control plane says RUNNING again (its resume hook runs with
    ///   [`Cause::ContactRestored`](crate::Cause::ContactRestored));
    /// - a fail-open program whose last state was RUNNING runs its resume hook at once,
    ///   with [`Cause::StateFile`](crate::Cause::StateFile), and opens if it succeeds.
    ///
    /// Use one file per client; the client also writes `PATH.tmp` next to it. Writing
    /// failures are logged and do not affect the gates.
    #[must_use]
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Connects over TLS (mutual TLS): the client verifies each replica's certificate
    /// against `ca_pem` and presents `cert_pem` and its key `key_pem`, from which the
    /// control plane learns who this collector is. All three are PEM: the CA certificate(s)
    /// that signed the replicas' certificates, this collector's certificate (followed by
    /// any intermediates), and its private key (PKCS#8, PKCS#1 or SEC1). Only `ca_pem` is
    /// trusted: the system's root certificates are not.
    ///
    /// Every endpoint must then be `https://`; the replica's certificate must be valid for
    /// the endpoint's host (a DNS name or an IP address). A later call replaces an earlier
    /// one. [`start`](ClientBuilder::start) checks the PEM; the handshake itself fails
    /// at connect time (logged, retried with backoff like any connection failure) if the
    /// replica's certificate is not signed by the CA or not valid for the host.
    ///
    /// The key also signs the receipt sent with each Ack of a state change, so it must be
    /// an ECDSA P-256 or P-384, Ed25519 or RSA (2048 to 8192 bits) key: `start()` refuses
    /// another type with [`BuildError::ReceiptKey`]. Without `tls()`, receipts are sent
    /// unsigned (see "Receipts" in `docs/sdk-guide.md`).
    ///
    /// ```no_run
    /// use killswitch_sdk::Client;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let builder = Client::builder()
    ///     .endpoint("https://control-1.internal:7070")
    ///     .tls(
    ///         std::fs::read("/etc/collector/ca.pem")?,
    ///         std::fs::read("/etc/collector/collector.pem")?,
    ///         std::fs::read("/etc/collector/collector-key.pem")?,
    ///     );
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn tls(
        mut self,
        ca_pem: impl Into<Vec<u8>>,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls = Some(TlsPem {
            ca: ca_pem.into(),
            cert: cert_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// Sets the reconnection delays (see [`Backoff`] for the defaults).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Trusts these operators' ed25519 public keys to sign resumes, each as 32 bytes or 64
    /// hex digits (what `killswitch keys new` prints). Only counts once
    /// [`required_signatures`](ClientBuilder::required_signatures) is above 0.
    #[must_use]
    pub fn trusted_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        self.trusted_keys
            .extend(keys.into_iter().map(|key| key.as_ref().to_vec()));
        self
    }

    /// How many distinct trusted operators must have signed a resume for a gate to open
    /// (default 0: resumes are not checked, and whoever controls the control plane or its
    /// etcd can make collectors collect). Production deployments should configure
    /// [`trusted_keys`](ClientBuilder::trusted_keys) and at least 1.
    ///
    /// With n > 0, a RUNNING state opens the gate only if its signed statement names this
    /// program, replaces a generation older than the state and no older than the last
    /// pause this client applied, has not expired by this machine's clock, and carries n
    /// valid signatures from distinct trusted keys. Otherwise the gate stays closed (the
    /// pause hook runs) and the Ack reports why. Pauses need no signature.
    #[must_use]
    pub fn required_signatures(mut self, n: usize) -> Self {
        self.required_signatures = n;
        self
    }

    /// The longest a signed resume statement may still be valid when it reaches this
    /// collector (default 1 hour): a statement that expires later is refused like an
    /// unsigned one, so a leaked or coerced signature opens gates for a bounded time. An
    /// expired statement keeps an open gate open, but no longer opens a closed one (after
    /// lost contact or a restart the program stays paused until a new signed resume).
    /// At least 1 s; longer than a day is refused by [`start`](ClientBuilder::start).
    #[must_use]
    pub fn max_statement_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_statement_lifetime = lifetime;
        self
    }

    /// Validates the configuration, reads the [state file](ClientBuilder::state_file) if
    /// one is set, and starts the session task on the current tokio runtime. Returns at
    /// once: every gate is closed until the control plane says its program is RUNNING
    /// (or, for a fail-open program, its state file does and its resume hook succeeds).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first problem: no or an invalid endpoint (it must be
    /// `https://HOST[:PORT]` with [`tls`](ClientBuilder::tls), `http://HOST[:PORT]`
    /// without), TLS material that is not usable PEM, a missing or invalid collector id, no
    /// or an invalid program name, an invalid [`Backoff`], a zero hook timeout, a state
    /// file path that does not name a file, or no tokio runtime. A client key that cannot
    /// sign receipts is a [`BuildError::ReceiptKey`].
    pub fn start(self) -> Result<Client, BuildError> {
        let Self {
            endpoints,
            collector_id,
            labels,
            programs,
            on_pause,
            on_resume,
            hook_timeout,
            backoff,
            state_file,
            tls,
            trusted_keys,
            required_signatures,
            max_statement_lifetime,
        } = self;

        let (endpoints, receipts) = session_endpoints(&endpoints, tls.as_ref())?;
        check_collector_id(&collector_id)?;
        let programs = check_programs(programs)?;
        check_labels(&labels)?;
        if !backoff.is_valid() {
            return Err(BuildError::InvalidBackoff {
                initial: backoff.initial,
                max: backoff.max,
            });
        }
        if hook_timeout.is_zero() {
            return Err(BuildError::InvalidHookTimeout);
        }
        let path_problem = state_file.as_deref().and_then(state_file::path_problem);
        if let (Some(path), Some(reason)) = (&state_file, path_problem) {
            return Err(BuildError::InvalidStateFile {
                path: path.clone(),
                reason: reason.to_owned(),
            });
        }
        let trust = trust(&trusted_keys, required_signatures, max_statement_lifetime)?;

        let runtime = tokio::runtime::Handle::try_current().map_err(BuildError::NoRuntime)?;

        let programs = Arc::new(Programs::new(programs));
        if let Some(path) = &state_file {
            // Read before the client exists, so that no state is ever applied over the
            // file's generations, and `applied_generation` shows them at once.
            programs.restore(&state_file::load(path), SystemTime::now());
        }
        let settings = Settings {
            endpoints,
            collector_id,
            labels: labels.into_iter().collect(),
            backoff,
            hooks: Hooks {
                on_pause,
                on_resume,
                timeout: hook_timeout,
            },
            state_file: state_file.map(StateFile::new),
            trust,
            receipts,
        };
        let cancel = CancellationToken::new();
        let task = runtime.spawn(session::run(
            settings,
            Arc::clone(&programs),
            cancel.clone(),
        ));
        Ok(Client::new(programs, task, cancel))
    }
}

impl Client {
    /// Starts configuring a client.
    #[must_use]
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

/// The session endpoints for the configured `endpoints`, over TLS with `tls`, and how
/// receipts are signed: with the key of `tls`'s client certificate, or unsigned without.
fn session_endpoints(
    endpoints: &[String],
    tls: Option<&TlsPem>,
) -> Result<(Vec<Endpoint>, Receipts), BuildError> {
    if endpoints.is_empty() {
        return Err(BuildError::NoEndpoint);
    }
    let uris = endpoints
        .iter()
        .map(|endpoint| parse_endpoint(endpoint, tls.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    let (tls, receipts) = match tls.map(TlsPem::client_config).transpose()? {
        Some((config, signer)) => (Some(config), Receipts::Signed(Box::new(signer))),
        None => (None, Receipts::Unsigned(NO_CLIENT_CERTIFICATE.to_owned())),
    };
    let endpoints = uris
        .into_iter()
        .map(|uri| {
            // The PEM was checked; what is left is e.g. a key that is not the
            // certificate's.
            session::endpoint(uri, tls.as_ref()).map_err(|error| BuildError::InvalidTls {
                reason: format!(
                    "the certificate and key cannot be used together ({})",
                    error_chain(&error)
                ),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((endpoints, receipts))
}

/// Checks the collector id: present, and valid.
fn check_collector_id(collector_id: &str) -> Result<(), BuildError> {
    if collector_id.is_empty() {
        return Err(BuildError::NoCollectorId);
    }
    if !is_valid_collector_id(collector_id) {
        return Err(BuildError::InvalidCollectorId {
            id: collector_id.to_owned(),
        });
    }
    Ok(())
}

/// Checks the registered programs (at least one, each a valid name) and returns them
/// without repeats.
fn check_programs(programs: Vec<String>) -> Result<BTreeSet<String>, BuildError> {
    if programs.is_empty() {
        return Err(BuildError::NoProgram);
    }
    if let Some(name) = programs.iter().find(|name| !is_valid_program_name(name)) {
        return Err(BuildError::InvalidProgramName { name: name.clone() });
    }
    Ok(programs.into_iter().collect())
}

/// Checks the labels: each valid, and not too many.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), BuildError> {
    let bad_label = labels
        .iter()
        .find(|(key, value)| !is_valid_label(key, value));
    if let Some((key, _)) = bad_label.or(labels.iter().nth(MAX_LABELS)) {
        return Err(BuildError::InvalidLabel { key: key.clone() });
    }
    Ok(())
}

/// The trusted keys, parsed, with how many must sign a resume and how long a statement
/// may still be valid.
fn trust(
    trusted_keys: &[Vec<u8>],
    required_signatures: usize,
    max_statement_lifetime: Duration,
) -> Result<Trust, BuildError> {
    let mut keys = BTreeSet::new();
    for (index, key) in trusted_keys.iter().enumerate() {
        keys.insert(signing::parse_key(key).ok_or(BuildError::InvalidTrustedKey { index })?);
    }
    if required_signatures > keys.len() {
        return Err(BuildError::NotEnoughTrustedKeys {
            required: required_signatures,
            trusted: keys.len(),
        });
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&max_statement_lifetime)
    {
        return Err(BuildError::StatementLifetime(max_statement_lifetime));
    }
    Ok(Trust {
        keys,
        required: required_signatures,
        max_lifetime_secs: i64::try_from(max_statement_lifetime.as_secs()).unwrap_or(i64::MAX),
    })
}

/// Parses an endpoint as an `https://HOST[:PORT]` URI when TLS is configured, else as an
/// `http://HOST[:PORT]` URI.
fn parse_endpoint(endpoint: &str, tls: bool) -> Result<Uri, BuildError> {
    let invalid = |reason: String| BuildError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|error| invalid(format!("not a URI ({error})")))?;
    match uri.scheme_str() {
        Some("https") if tls => {}
        Some("http") if !tls => {}
        Some("https") => {
            return Err(BuildError::TlsRequired {
                endpoint: endpoint.to_owned(),
            });
        }
        Some("http") => {
            // A plaintext session would present no certificate and verify no replica:
            // with TLS configured, that can only be a mistake.
            return Err(invalid(
                "http is plaintext, but TLS is configured with `tls()`".to_owned(),
            ));
        }
        Some(scheme) => return Err(invalid(format!("unsupported scheme {scheme:?}"))),
        None => return Err(invalid("no scheme".to_owned())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(uri)
}

/// The PEM given to [`ClientBuilder::tls`]. Its `Debug` shows sizes, never key material.
#[derive(Clone)]
struct TlsPem {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &format_args!("{} bytes", self.ca.len()))
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .finish()
    }
}

impl TlsPem {
    /// Checks that the PEM holds what it should, and makes tonic's TLS configuration from
    /// it (the server name is set per endpoint) and the signer of receipts, from the
    /// client certificate and its key.
    ///
    /// tonic silently skips CA certificates it cannot parse, which would only show as
    /// failed handshakes later, so they are checked here. A key that TLS could use but
    /// receipts cannot is refused too, rather than sending unsigned receipts.
    fn client_config(&self) -> Result<(ClientTlsConfig, Signer), BuildError> {
        check_certificates("CA certificate (the first argument)", &self.ca)?;
        check_certificates("certificate (the second argument)", &self.cert)?;
        PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| BuildError::InvalidTls {
            reason: format!(
                "the private key (the third argument) is not a PEM PKCS#8, PKCS#1 or SEC1 \
                 key ({error})"
            ),
        })?;
        let signer = Signer::from_pem(&self.cert, &self.key)?;
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key));
        Ok((config, signer))
    }
}

/// Checks that `pem` holds at least one certificate, and no malformed PEM block.
fn check_certificates(what: &str, pem: &[u8]) -> Result<(), BuildError> {
    let invalid = |problem: String| BuildError::InvalidTls {
        reason: format!("the {what} {problem}"),
    };
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|error| invalid(format!("is not valid PEM ({error})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Backoff, BuildError, Cause, Client, ClientBuilder, StateEvent};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    /// A builder that passes validation.
    fn valid() -> ClientBuilder {
        Client::builder()
            .endpoint("http://127.0.0.1:7070")
            .collector_id("c1")
            .program("keys")
    }

    /// Starts `builder` outside any runtime and renders the error.
    fn error(builder: ClientBuilder) -> String {
        match builder.start() {
            Ok(_) => panic!("start succeeded"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn validation_errors() {
        let check = |builder: ClientBuilder, expected: &str| {
            let error = error(builder);
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        };
        let base = || Client::builder().collector_id("c1").program("keys");
        check(base(), "no endpoint configured");
        check(
            base().endpoints(Vec::<String>::new()),
            "no endpoint configured",
        );
        check(base().endpoint(""), r#"invalid endpoint "": not a URI"#);
        check(
            base().endpoint("http://"),
            r#"invalid endpoint "http://": not a URI"#,
        );
        check(
            base().endpoint("not a uri"),
            r#"invalid endpoint "not a uri": not a URI"#,
        );
        check(
            base().endpoint("127.0.0.1:7070"),
            r#"invalid endpoint "127.0.0.1:7070": no scheme"#,
        );
        check(
            base().endpoint("https://control:7070"),
            r#"endpoint "https://control:7070" uses https but TLS is not configured"#,
        );
        check(
            base().endpoint("ftp://control:7070"),
            r#"invalid endpoint "ftp://control:7070": unsupported scheme "ftp""#,
        );
        check(
            base().endpoints(["http://a:1", "http//b:2"]),
            r#"invalid endpoint "http//b:2""#,
        );

        check(valid().label("Region", "emea"), r#"invalid label "Region""#);
        let crowded = (0..33).fold(valid(), |b, i| b.label(format!("k{i:02}"), "v"));
        check(crowded, r#"invalid label "k32""#);

        let no_id = || Client::builder().endpoint("http://a:1").program("keys");
        check(no_id(), "no collector id configured");
        check(no_id().collector_id(""), "no collector id configured");
        check(
            no_id().collector_id("host 1"),
            r#"invalid collector id "host 1""#,
        );

        let no_program = || Client::builder().endpoint("http://a:1").collector_id("c1");
        check(no_program(), "no program registered");
        check(
            no_program().program("keys").program("Keys"),
            r#"invalid program name "Keys""#,
        );

        check(
            valid().backoff(Backoff::default().initial(Duration::ZERO)),
            "invalid backoff",
        );
        check(
            valid().backoff(Backoff::default().max(Duration::from_millis(10))),
            "invalid backoff",
        );
        check(
            valid().hook_timeout(Duration::ZERO),
            "invalid hook timeout (zero)",
        );
        check(valid().state_file("/"), r#"invalid state file "/""#);
        check(valid().state_file(""), r#"invalid state file """#);
        check(valid(), "no tokio runtime");
        check(
            valid()
                .hook_timeout(Duration::from_millis(1))
                .state_file("killswitch.state"),
            "no tokio runtime",
        );
    }

    #[test]
    fn no_runtime_error_keeps_its_source() {
        let error = valid().start().err();
        assert!(matches!(error, Some(BuildError::NoRuntime(_))), "{error:?}");
        let source = error.as_ref().and_then(std::error::Error::source);
        assert!(source.is_some());
    }

    #[tokio::test]
    async fn started_client_has_closed_gates_and_shuts_down() {
        // Port 9 (discard) refuses connections: the task keeps retrying in the background.
        let client = Client::builder()
            .endpoint("http://127.0.0.1:9")
            .collector_id("c1")
            .program("keys")
            .program("mouse")
            .program("keys")
            .start()
            .expect("valid configuration");
        let keys = client.gate("keys").expect("registered");
        assert!(!keys.is_active());
        assert!(client.gate("mouse").is_some());
        assert!(client.gate("screen").is_none());
        assert_eq!(client.applied_generation("keys"), None);
        assert_eq!(client.applied_generation("screen"), None);
        tokio::time::timeout(Duration::from_secs(5), client.shutdown())
            .await
            .expect("shutdown is prompt");
        assert!(!keys.is_active());
    }

    #[tokio::test]
    async fn starts_from_its_state_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("killswitch.state");
        std::fs::write(
            &path,
            "keys 7 RUNNING keep 5000\nmouse 4 RUNNING pause 5000\nbad line\n",
        )
        .expect("write state file");
        let causes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&causes);
        let client = Client::builder()
            .endpoint("http://127.0.0.1:9")
            .collector_id("c1")
            .program("keys")
            .program("mouse")
            .state_file(&path)
            .on_resume_async(move |event: StateEvent| {
                let recorded = Arc::clone(&recorded);
                async move {
                    recorded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((event.program, event.cause));
                    Ok(())
                }
            })
            .start()
            .expect("valid configuration");
        // The file's generations count from the start, before any hook ran.
        assert_eq!(client.applied_generation("keys"), Some(7));
        assert_eq!(client.applied_generation("mouse"), Some(4));
        let keys = client.gate("keys").expect("registered");
        let mouse = client.gate("mouse").expect("registered");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !keys.is_active() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the fail-open program resumes from its state file");
        assert!(!mouse.is_active(), "fail-closed programs start paused");
        let causes = causes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(causes, [("keys".to_owned(), Cause::StateFile)]);
        client.shutdown().await;
        assert!(!keys.is_active());
    }
    /// PEM for a test PKI: a CA, and a server and a client certificate it signed.
    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: &[&str], usage| {
            let key = KeyPair::generate().expect("key");
            let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            ca: ca.pem(),
            server: leaf(
                &["localhost", "127.0.0.1", "::1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(&["c1"], ExtendedKeyUsagePurpose::ClientAuth),
        }
    }

    #[test]
    fn tls_validation() {
        let check = |builder: ClientBuilder, expected: &str| {
            let error = error(builder);
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        };
        let pki = pki();
        let (cert, key) = &pki.client;
        let base = || Client::builder().collector_id("c1").program("keys");
        let tls = || base().tls(pki.ca.as_bytes(), cert.as_bytes(), key.as_bytes());

        // Valid: every check passes, up to the missing runtime.
        for endpoint in [
            "https://localhost:7070",
            "https://127.0.0.1:7070",
            "https://[::1]:7070",
            "https://control-1.internal",
        ] {
            check(tls().endpoint(endpoint), "no tokio runtime");
        }
        check(
            tls().endpoint("http://127.0.0.1:7070"),
            r#"invalid endpoint "http://127.0.0.1:7070": http is plaintext, but TLS is configured"#,
        );
        check(
            tls().endpoints(["https://a:1", "http://b:2"]),
            r#"invalid endpoint "http://b:2": http is plaintext"#,
        );
        check(
            base().endpoints(["http://a:1", "https://b:2"]),
            r#"endpoint "https://b:2" uses https but TLS is not configured"#,
        );

        let https = || base().endpoint("https://localhost:7070");
        let no_certificate = "invalid TLS configuration: the CA certificate (the first \
                              argument) holds no PEM certificate";
        check(https().tls("", cert.as_str(), key.as_str()), no_certificate);
        check(
            https().tls("not pem", cert.as_str(), key.as_str()),
            no_certificate,
        );
        check(
            https().tls(key.as_str(), cert.as_str(), key.as_str()),
            no_certificate,
        );
        check(
            https().tls(
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                cert.as_str(),
                key.as_str(),
            ),
            "invalid TLS configuration: the CA certificate (the first argument) is not valid PEM",
        );
        check(
            https().tls(pki.ca.as_str(), key.as_str(), key.as_str()),
            "invalid TLS configuration: the certificate (the second argument) holds no PEM \
             certificate",
        );
        check(
            https().tls(pki.ca.as_str(), cert.as_str(), cert.as_str()),
            "invalid TLS configuration: the private key (the third argument) is not a PEM",
        );
        let (_, other_key) = &pki.server;
        check(
            https().tls(pki.ca.as_str(), cert.as_str(), other_key.as_str()),
            "invalid TLS configuration: the certificate and key cannot be used together",
        );
        check(
            https().tls(pki.ca.as_str(), cert.as_str(), ""),
            "invalid TLS configuration: the private key (the third argument) is not a PEM",
        );
    }

    #[test]
    fn a_key_that_cannot_sign_receipts_is_refused_at_start() {
        use crate::receipt::tests::certificate;
        let check = |builder: ClientBuilder, expected: &str| {
            let error = error(builder);
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        };
        let pki = pki();
        let (cert, _) = &pki.client;
        let https = || {
            Client::builder()
                .collector_id("c1")
                .program("keys")
                .endpoint("https://localhost:7070")
        };
        let p521 = include_str!("../testdata/p521.pkcs8.pem");
        check(
            https().tls(pki.ca.as_str(), cert.as_str(), p521),
            "the private key (the third argument of `tls()`) cannot sign receipts: it is an \
             ECDSA P-521 key (PKCS#8). Use an ECDSA P-256 or P-384, Ed25519 or RSA",
        );
        let error = https()
            .tls(pki.ca.as_str(), cert.as_str(), p521)
            .start()
            .err();
        assert!(
            matches!(error, Some(BuildError::ReceiptKey { .. })),
            "{error:?}"
        );
        // A SEC1 key, which TLS accepts, signs too.
        let p256 = rcgen::KeyPair::from_pem(include_str!("../testdata/p256.pkcs8.pem"))
            .expect("P-256 key");
        let (p256_cert, _) = certificate(&p256);
        check(
            https().tls(
                pki.ca.as_str(),
                p256_cert.as_str(),
                include_str!("../testdata/p256.sec1.pem"),
            ),
            "no tokio runtime",
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let pki = pki();
        let (cert, key) = &pki.client;
        let builder = valid().tls(pki.ca.as_bytes(), cert.as_bytes(), key.as_bytes());
        let debug = format!("{builder:?}");
        assert!(debug.contains("TlsPem"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    /// A replica that requires a client certificate, answers every session with a
    /// snapshot saying `keys` is RUNNING, keeps it open, and hands over the Acks it gets.
    struct TlsReplica(tokio::sync::mpsc::UnboundedSender<killswitch_proto::v1::Ack>);

    #[tonic::async_trait]
    impl killswitch_proto::v1::collector_service_server::CollectorService for TlsReplica {
        type SessionStream = std::pin::Pin<
            Box<
                dyn tokio_stream::Stream<
                        Item = Result<killswitch_proto::v1::ControlMessage, tonic::Status>,
                    > + Send,
            >,
        >;

        async fn session(
            &self,
            request: tonic::Request<tonic::Streaming<killswitch_proto::v1::CollectorMessage>>,
        ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
            use killswitch_proto::v1::{ControlMessage, ProgramState, RunState, Snapshot};
            use tokio_stream::StreamExt as _;
            if request.peer_certs().is_none_or(|certs| certs.is_empty()) {
                return Err(tonic::Status::unauthenticated("no client certificate"));
            }
            let mut inbound = request.into_inner();
            let acks = self.0.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = inbound.message().await {
                    if let Some(killswitch_proto::v1::collector_message::Msg::Ack(ack)) =
                        message.msg
                    {
                        let _ = acks.send(ack);
                    }
                }
            });
            let snapshot = ControlMessage {
                msg: Some(killswitch_proto::v1::control_message::Msg::Snapshot(
                    Snapshot {
                        states: vec![ProgramState {
                            program: "keys".to_owned(),
                            state: RunState::Running.into(),
                            generation: 1,
                            ..ProgramState::default()
                        }],
                        unknown_programs: Vec::new(),
                    },
                )),
            };
            let stream = tokio_stream::iter([Ok(snapshot)]).chain(tokio_stream::pending());
            Ok(tonic::Response::new(Box::pin(stream)))
        }
    }

    #[tokio::test]
    async fn connects_with_mutual_tls() {
        use killswitch_proto::v1::collector_service_server::CollectorServiceServer;
        use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

        let pki = pki();
        let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
        let (server_cert, server_key) = &pki.server;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(server_cert, server_key))
            .client_ca_root(Certificate::from_pem(&pki.ca));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = Server::builder()
            .tls_config(tls)
            .expect("server TLS")
            .add_service(CollectorServiceServer::new(TlsReplica(acks_tx)))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        let server = tokio::spawn(server);

        let (cert, key) = &pki.client;
        let client = Client::builder()
            .endpoint(format!("https://127.0.0.1:{port}"))
            .tls(pki.ca.as_bytes(), cert.as_bytes(), key.as_bytes())
            .collector_id("c1")
            .program("keys")
            .start()
            .expect("valid configuration");
        let keys = client.gate("keys").expect("registered");
        tokio::time::timeout(Duration::from_secs(10), async {
            while !keys.is_active() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the gate opens on the replica's RUNNING, over mutual TLS");
        // The Ack carries a receipt signed with the key of the client certificate.
        let ack = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("an Ack")
            .expect("an Ack");
        let signed = ack.receipt.expect("a receipt");
        use rustls_pki_types::pem::PemObject as _;
        let leaf = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes())
            .expect("client certificate");
        assert_eq!(signed.certificate, leaf.as_ref());
        assert_eq!(signed.algorithm, "ecdsa-p256-sha256");
        assert_eq!(
            crate::receipt::tests::verify(&signed, webpki::ring::ECDSA_P256_SHA256),
            Ok(())
        );
        client.shutdown().await;
        stop.cancel();
        let _ = server.await;
    }
}
