//! [`ClientBuilder`]: configures and validates a [`Client`], then starts its session task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Uri};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::BuildError;
use crate::event::{Hook, HookResult, Hooks, StateEvent, noop_hook};
use crate::programs::Programs;
use crate::session::{self, Settings};

/// Configures a [`Client`]; get one with [`Client::builder`].
///
/// Nothing is checked until [`start`](ClientBuilder::start), which reports the first
/// problem it finds.
#[derive(Default)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    collector_id: String,
    labels: BTreeMap<String, String>,
    programs: Vec<String>,
    on_pause: Option<Hook>,
    on_resume: Option<Hook>,
    backoff: Backoff,
}

impl ClientBuilder {
    /// Adds the address of a control replica, e.g. `http://control-1.internal:7070`.
    /// Call it once per replica; the client starts with a random one and moves to the
    /// next whenever a session ends.
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

    /// Sets the hook run when a program is paused, after its gate closed. It runs on
    /// tokio's blocking pool, so it may block (flush, delete buffers when
    /// [`StateEvent::purge`] is set); its error or panic is reported in the Ack.
    /// Replaces any earlier pause hook; the default does nothing.
    #[must_use]
    pub fn on_pause<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    {
        self.on_pause = Some(Arc::new(hook));
        self
    }

    /// Sets the hook run when a program is resumed, before its gate opens. It runs on
    /// tokio's blocking pool, so it may block; if it fails or panics the gate stays
    /// closed and the Ack reports the error. Replaces any earlier resume hook; the
    /// default does nothing.
    #[must_use]
    pub fn on_resume<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    {
        self.on_resume = Some(Arc::new(hook));
        self
    }

    /// Sets the reconnection delays (see [`Backoff`] for the defaults).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Validates the configuration and starts the session task on the current tokio
    /// runtime. Returns at once: every gate is closed until the control plane says its
    /// program is RUNNING.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first problem: no or an invalid endpoint (only
    /// `http://HOST[:PORT]` is supported), a missing or invalid collector id, no or an
    /// invalid program name, an invalid [`Backoff`], or no tokio runtime.
    pub fn start(self) -> Result<Client, BuildError> {
        let Self {
            endpoints,
            collector_id,
            labels,
            programs,
            on_pause,
            on_resume,
            backoff,
        } = self;

        if endpoints.is_empty() {
            return Err(BuildError::NoEndpoint);
        }
        let endpoints = endpoints
            .iter()
            .map(|endpoint| parse_endpoint(endpoint))
            .collect::<Result<Vec<_>, _>>()?;

        if collector_id.is_empty() {
            return Err(BuildError::NoCollectorId);
        }
        if !is_valid_collector_id(&collector_id) {
            return Err(BuildError::InvalidCollectorId { id: collector_id });
        }

        if programs.is_empty() {
            return Err(BuildError::NoProgram);
        }
        if let Some(name) = programs.iter().find(|name| !is_valid_program_name(name)) {
            return Err(BuildError::InvalidProgramName { name: name.clone() });
        }
        let programs: BTreeSet<String> = programs.into_iter().collect();

        if !backoff.is_valid() {
            return Err(BuildError::InvalidBackoff {
                initial: backoff.initial,
                max: backoff.max,
            });
        }

        let runtime = tokio::runtime::Handle::try_current().map_err(BuildError::NoRuntime)?;

        let programs = Arc::new(Programs::new(programs));
        let settings = Settings {
            endpoints,
            collector_id,
            labels: labels.into_iter().collect(),
            backoff,
            hooks: Hooks {
                on_pause: on_pause.unwrap_or_else(noop_hook),
                on_resume: on_resume.unwrap_or_else(noop_hook),
            },
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

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("collector_id", &self.collector_id)
            .field("labels", &self.labels)
            .field("programs", &self.programs)
            .field("on_pause", &self.on_pause.is_some())
            .field("on_resume", &self.on_resume.is_some())
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Parses an endpoint as an `http://HOST[:PORT]` URI.
fn parse_endpoint(endpoint: &str) -> Result<Endpoint, BuildError> {
    let invalid = |reason: String| BuildError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|error| invalid(format!("not a URI ({error})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported yet (this version has no TLS)".to_owned(),
            ));
        }
        Some(scheme) => return Err(invalid(format!("unsupported scheme {scheme:?}"))),
        None => return Err(invalid("no scheme".to_owned())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(session::endpoint(uri))
}

/// Whether `id` matches `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`, the syntax the control
/// plane accepts for a collector id.
fn is_valid_collector_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `name` matches `^[a-z][a-z0-9-]{0,62}$`, the syntax of a program name.
fn is_valid_program_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::{is_valid_collector_id, is_valid_program_name};
    use crate::{Backoff, BuildError, Client, ClientBuilder};
    use std::time::Duration;

    #[test]
    fn program_names() {
        let check = |name: &str, valid: bool| {
            assert_eq!(is_valid_program_name(name), valid, "{name:?}");
        };
        check("a", true);
        check("keystrokes", true);
        check("screen-v2", true);
        check("a-", true);
        check(&format!("a{}", "b".repeat(62)), true);
        check(&format!("a{}", "b".repeat(63)), false);
        check("", false);
        check("1abc", false);
        check("-abc", false);
        check("Keys", false);
        check("keys_v2", false);
        check("keys.v2", false);
        check("keys v2", false);
        check("clé", false);
    }

    #[test]
    fn collector_ids() {
        let check = |id: &str, valid: bool| {
            assert_eq!(is_valid_collector_id(id), valid, "{id:?}");
        };
        check("c1", true);
        check("7", true);
        check("host-42.eu-west:worker_3", true);
        check("HOST", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check(".host", false);
        check("-host", false);
        check("host 42", false);
        check("host/42", false);
        check("hôte", false);
    }

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
            r#"invalid endpoint "https://control:7070": https is not supported yet"#,
        );
        check(
            base().endpoint("ftp://control:7070"),
            r#"invalid endpoint "ftp://control:7070": unsupported scheme "ftp""#,
        );
        check(
            base().endpoints(["http://a:1", "http//b:2"]),
            r#"invalid endpoint "http//b:2""#,
        );

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
        check(valid(), "no tokio runtime");
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
}
