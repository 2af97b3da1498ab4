//! [`BuildError`]: why [`ClientBuilder::start`](crate::ClientBuilder::start) refused to start.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// A client configuration that cannot work, found by
/// [`ClientBuilder::start`](crate::ClientBuilder::start).
///
/// None of these is retryable: each is a mistake in the collector's configuration or
/// code, and the message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No endpoint was given.
    #[error(
        "no endpoint configured: add the address of a control replica with `endpoint()`, \
         e.g. http://127.0.0.1:7070"
    )]
    NoEndpoint,

    /// An endpoint is not an `https://HOST[:PORT]` URI (with TLS) or an
    /// `http://HOST[:PORT]` URI (without).
    #[error(
        "invalid endpoint {endpoint:?}: {reason}; use the form https://HOST:PORT with \
         `tls()`, or http://HOST:PORT without TLS"
    )]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An endpoint is `https://` but no TLS material was given.
    #[error(
        "endpoint {endpoint:?} uses https but TLS is not configured: give `tls()` the CA \
         certificate and this collector's certificate and key (PEM)"
    )]
    TlsRequired {
        /// The endpoint as given.
        endpoint: String,
    },

    /// The PEM given to `tls()` is not a CA certificate, a certificate and a private key
    /// that TLS can use.
    #[error("invalid TLS configuration: {reason}")]
    InvalidTls {
        /// What is wrong with it.
        reason: String,
    },

    /// The private key given to `tls()` is of a type the SDK cannot sign receipts with
    /// (see "Receipts" in `docs/sdk-guide.md`).
    #[error(
        "the private key (the third argument of `tls()`) cannot sign receipts: it is {key}. \
         Use an ECDSA P-256 or P-384, Ed25519 or RSA (2048 to 8192 bits) key, in PKCS#8 \
         (RSA also PKCS#1, ECDSA also SEC1); `openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out \
         KEY-pkcs8.pem` converts a PKCS#1 or SEC1 key to PKCS#8, and `killswitch certs \
         collector` issues a certificate with an ECDSA P-256 key"
    )]
    ReceiptKey {
        /// What the key is, e.g. "an ECDSA P-521 key (PKCS#8)".
        key: String,
    },

    /// No collector id was given, or it is empty.
    #[error(
        "no collector id configured: set a stable, unique id for this collector with \
         `collector_id()`, e.g. the host name"
    )]
    NoCollectorId,

    /// The collector id does not have the syntax the control plane accepts.
    #[error(
        "invalid collector id {id:?}: use 1 to 128 characters among A-Z, a-z, 0-9, '.', '_', \
         ':' and '-', starting with a letter or digit"
    )]
    InvalidCollectorId {
        /// The id as given.
        id: String,
    },

    /// No program was registered.
    #[error(
        "no program registered: name each program this collector runs with `program()`, \
         e.g. \"keystrokes\""
    )]
    NoProgram,

    /// A program name does not have the syntax the control plane accepts.
    #[error(
        "invalid program name {name:?}: use 1 to 63 characters among a-z, 0-9 and '-', \
         starting with a letter"
    )]
    InvalidProgramName {
        /// The name as given.
        name: String,
    },

    /// A label the control plane would refuse at Hello (so the collector would never
    /// connect): too many labels, a key outside the label-key syntax, or a value too long
    /// or with control characters.
    #[error(
        "invalid label {key:?}: use at most 32 labels, keys of 1 to 63 characters of a-z, \
         0-9, '.', '_', '/' and '-' that start and end with a letter or digit, values of at \
         most 128 bytes without control characters"
    )]
    InvalidLabel {
        /// The key of the offending label.
        key: String,
    },

    /// The backoff's initial delay is zero or larger than its maximum.
    #[error(
        "invalid backoff (initial {initial:?}, max {max:?}): the initial delay must be \
         non-zero and at most the maximum"
    )]
    InvalidBackoff {
        /// The initial delay given.
        initial: Duration,
        /// The maximum delay given.
        max: Duration,
    },

    /// The hook timeout is zero.
    #[error(
        "invalid hook timeout (zero): hooks need time to run; give `hook_timeout()` a \
         non-zero duration, e.g. 10s"
    )]
    InvalidHookTimeout,

    /// The maximum statement lifetime is outside 1 s to 24 h.
    #[error(
        "invalid max statement lifetime {0:?}: give `max_statement_lifetime()` 1s to 24h \
         (default 1h)"
    )]
    StatementLifetime(Duration),

    /// A trusted key is neither 32 bytes nor 64 hex digits.
    #[error(
        "invalid trusted key #{index}: give `trusted_keys()` ed25519 public keys as 32 bytes \
         or 64 hex digits (what `killswitch keys new` prints)"
    )]
    InvalidTrustedKey {
        /// Its position among the keys given, from 0.
        index: usize,
    },

    /// More signatures are required than there are trusted keys: no resume could pass.
    #[error(
        "required_signatures({required}) but only {trusted} distinct trusted keys: no resume \
         could ever open a gate"
    )]
    NotEnoughTrustedKeys {
        /// Signatures required.
        required: usize,
        /// Distinct trusted keys.
        trusted: usize,
    },

    /// The state file path does not name a file.
    #[error("invalid state file {path:?}: {reason}; give `state_file()` the path of a file")]
    InvalidStateFile {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `start()` was called outside a tokio runtime.
    #[error(
        "no tokio runtime: call `start()` from within a tokio runtime, e.g. in `#[tokio::main]`"
    )]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

/// Renders an error and its sources on one line, `outer: inner: root`, for logs and Acks
/// (a tonic transport error alone only says "transport error"). A source that repeats the
/// message of the error it came from, as wrappers often do, is written once.
pub(crate) fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if message != last {
            // Writing to a String cannot fail.
            let _ = write!(text, ": {message}");
            last = message;
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::error::Error;
    use std::fmt;

    /// An error with a message and an optional source.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|layer| layer as &(dyn Error + 'static))
        }
    }

    #[test]
    fn chains() {
        let check = |messages: &[&'static str], expected: &str| {
            let error = messages.iter().rev().fold(None, |source, message| {
                Some(Layer(message, source.map(Box::new)))
            });
            let error = error.expect("at least one message");
            assert_eq!(error_chain(&error), expected, "{messages:?}");
        };
        check(&["alone"], "alone");
        check(&["outer", "inner", "root"], "outer: inner: root");
        check(
            &[
                "transport error",
                "tcp connect error",
                "tcp connect error",
                "refused",
            ],
            "transport error: tcp connect error: refused",
        );
        check(&["a", "b", "a"], "a: b: a");
    }
}
