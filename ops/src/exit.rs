//! Exit codes, and the error type that carries one from wherever a command fails to `main`.
//!
//! Runbook scripts branch on the exit code, so it is decided here from typed information
//! (a [`tonic::Code`], a failed connection, a usage error), never by matching message text.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};

use crate::input::EndpointUrl;

/// The process exit codes, documented in `--help` by [`EXIT_CODES_HELP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what was asked (including "already in that state").
    Success,
    /// 1: the control plane is unreachable or answered with an error not listed below
    /// (not found, already exists, internal, ...); with `--wait`, a collector's hook failed
    /// or a newer change superseded ours, a staged resume was aborted, or the status
    /// stream broke; `collectors` could not reach every replica; a hook failed in a drill,
    /// or it could not be ended.
    Error,
    /// 2: bad flags or values, or the control plane answered `INVALID_ARGUMENT`.
    Usage,
    /// 3: `--wait` (or a drill's wait) timed out before every connected collector
    /// acknowledged, with its gate in the state intended for it, and while collectors
    /// counted earlier were missing from the counts without having disconnected, or while
    /// the control plane answered UNAVAILABLE when asked for the status.
    AckTimeout,
    /// 4: `PERMISSION_DENIED` or `UNAUTHENTICATED`.
    Denied,
    /// 5: a scoped change (`pause` or `resume --selector` with `--wait`, `approve --wait`
    /// of a scoped resume) or a drill matched no connected collector. The change is stored
    /// and applies to collectors that connect later with matching labels; a drill tested
    /// nothing.
    NoMatch,
}

impl Exit {
    /// The numeric exit code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::AckTimeout => 3,
            Exit::Denied => 4,
            Exit::NoMatch => 5,
        }
    }

    /// The exit code for a gRPC status code.
    #[must_use]
    pub fn from_code(code: Code) -> Self {
        match code {
            Code::Ok => Exit::Success,
            Code::InvalidArgument => Exit::Usage,
            Code::PermissionDenied | Code::Unauthenticated => Exit::Denied,
            _ => Exit::Error,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The `Exit codes` section of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (also when the program already was in the requested state)
  1  error: control plane unreachable, not found, already exists, internal; a collector's
     hook failed (--wait); superseded by a newer change during --wait; a staged resume was
     aborted (--wait); a replica did not answer (collectors); a drill failed or could not
     be ended; a report does not verify (report verify)
  2  usage or invalid input (bad flags or values, or INVALID_ARGUMENT from the control plane;
     a report file or CA that cannot be read)
  3  timed out waiting for acknowledgements (--wait); also while collectors stay
     effectively PAUSED although RUNNING is intended, or vanished from the counts without
     disconnecting, or while the control plane answered UNAVAILABLE for the status
  4  denied (PERMISSION_DENIED or UNAUTHENTICATED)
  5  the scope matched no connected collector (--selector with --wait, drill): the change
     is stored and applies to collectors that connect later; a drill tested nothing";

/// A failed command: the message for stderr and the exit code.
///
/// A command may print its result on stdout and still fail (`--wait` timing out, a
/// partial `collectors` list): the message then says what is wrong with that result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    exit: Exit,
    message: String,
    warning: bool,
    transient: bool,
}

impl Error {
    /// An error with an explicit exit code.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            warning: false,
            transient: false,
        }
    }

    /// Whether the control plane answered that it cannot serve the request for now
    /// (`UNAVAILABLE` from a running replica, e.g. its etcd too slow to answer): asking
    /// again may succeed. A connection that could not be made is not transient here.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// This error as the failure of a status stream once open: exit 1 whatever its code
    /// (the request was accepted, so a code such as `INVALID_ARGUMENT` would not mean bad
    /// input), the message after "the status stream broke: ", still transient if it was.
    #[must_use]
    pub fn into_broken_stream(self) -> Self {
        Self {
            exit: Exit::Error,
            message: format!("the status stream broke: {}", self.message),
            ..self
        }
    }

    /// The result was printed but is incomplete (exit 1); reported as a warning.
    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Exit::Error, message).into_warning()
    }

    /// This error reported as a warning (`killswitch: warning: ...`), with its exit code:
    /// what was asked for is done, but not what it was meant to achieve.
    #[must_use]
    pub fn into_warning(self) -> Self {
        Self {
            warning: true,
            ..self
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// The control plane could not be reached (exit 1); `cause` is what the transport said.
    pub fn unreachable(endpoint: &EndpointUrl, cause: &str) -> Self {
        Self::new(
            Exit::Error,
            format!(
                "cannot reach the control plane at {endpoint}: {cause}; is killswitch-control \
                 running? (set --endpoint or KILLSWITCH_ENDPOINT)"
            ),
        )
    }

    /// Connecting to the control plane failed.
    pub fn connect(endpoint: &EndpointUrl, err: &(dyn StdError + 'static)) -> Self {
        Self::unreachable(endpoint, &error_chain(&err.to_string(), err.source()))
    }

    /// An RPC failed with `status`; `timeout` is the per-RPC timeout, for the message.
    ///
    /// A status with a `source` was raised by this process's transport (tonic attaches the
    /// underlying error); one without was sent by the control plane. The distinction keeps
    /// "cannot reach" for real connection failures: a control plane that answers
    /// `UNAVAILABLE` (e.g. its etcd is down) is running, and is reported as such.
    #[must_use]
    pub fn from_status(status: &Status, endpoint: &EndpointUrl, timeout: Duration) -> Self {
        let local = status.source();
        if local.is_some_and(is_timeout) {
            return Self::new(
                Exit::Error,
                format!(
                    "no answer from the control plane at {endpoint} within {} (set --timeout)",
                    humantime::format_duration(timeout)
                ),
            );
        }
        if status.code() == Code::Unavailable {
            return match local {
                Some(source) => {
                    Self::unreachable(endpoint, &error_chain(status.message(), source.source()))
                }
                None => Self {
                    transient: true,
                    ..Self::new(
                        Exit::Error,
                        format!(
                            "the control plane at {endpoint} is unavailable: {}",
                            message_or_code(status)
                        ),
                    )
                },
            };
        }
        Self::new(Exit::from_code(status.code()), message_or_code(status))
    }

    /// A response that lacks something the API promises (exit 1).
    pub fn bad_response(what: &str) -> Self {
        Self::new(
            Exit::Error,
            format!("the control plane sent an invalid response: {what}"),
        )
    }

    /// The exit code.
    #[must_use]
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The message, without the `killswitch: error:` prefix.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to call the message on stderr: `error`, or `warning` when the result was
    /// printed but is incomplete.
    #[must_use]
    pub fn label(&self) -> &'static str {
        if self.warning { "warning" } else { "error" }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {}

/// The status message, or the code's description when the server sent none.
fn message_or_code(status: &Status) -> &str {
    if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    }
}

/// Whether a client-side error chain contains tonic's per-RPC timeout.
fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// `first: cause: cause...`, skipping causes whose text is already included (transport
/// errors often repeat their source's message).
fn error_chain(first: &str, mut next: Option<&(dyn StdError + 'static)>) -> String {
    let mut text = first.to_owned();
    while let Some(err) = next {
        let cause = err.to_string();
        if !cause.is_empty() && !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
        next = err.source();
    }
    if text.is_empty() {
        text.push_str("unknown transport error");
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use super::*;

    fn endpoint() -> EndpointUrl {
        EndpointUrl::parse("http://127.0.0.1:7070").unwrap()
    }

    #[test]
    fn status_codes_map_to_exit_codes() {
        let cases = [
            (Code::Ok, 0),
            (Code::InvalidArgument, 2),
            (Code::PermissionDenied, 4),
            (Code::Unauthenticated, 4),
            (Code::NotFound, 1),
            (Code::AlreadyExists, 1),
            (Code::FailedPrecondition, 1),
            (Code::Internal, 1),
            (Code::Unavailable, 1),
            (Code::DeadlineExceeded, 1),
            (Code::Unknown, 1),
            (Code::Unimplemented, 1),
        ];
        for (code, exit) in cases {
            assert_eq!(Exit::from_code(code).code(), exit, "{code:?}");
        }
    }

    #[test]
    fn server_statuses_keep_their_message() {
        let cases = [
            (
                Status::not_found("program \"demo\" not found"),
                1,
                "program \"demo\" not found",
            ),
            (
                Status::already_exists("program \"demo\" exists"),
                1,
                "program \"demo\" exists",
            ),
            (
                Status::invalid_argument("reason is required"),
                2,
                "reason is required",
            ),
            (
                Status::permission_denied("alice may not pause"),
                4,
                "alice may not pause",
            ),
            (Status::unauthenticated("no token"), 4, "no token"),
            (Status::internal("internal error"), 1, "internal error"),
            (
                Status::not_found(""),
                1,
                "Some requested entity was not found",
            ),
            (
                Status::unavailable("etcd unavailable"),
                1,
                "the control plane at http://127.0.0.1:7070 is unavailable: etcd unavailable",
            ),
        ];
        for (status, exit, message) in cases {
            let err = Error::from_status(&status, &endpoint(), Duration::from_secs(10));
            assert_eq!(
                (err.exit().code(), err.message()),
                (exit, message),
                "{status:?}"
            );
        }
    }

    #[test]
    fn transport_failure_is_unreachable() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(status.code(), Code::Unavailable);
        let err = Error::from_status(&status, &endpoint(), Duration::from_secs(10));
        assert_eq!(err.exit(), Exit::Error);
        assert!(
            err.message().starts_with(
                "cannot reach the control plane at http://127.0.0.1:7070: connection refused"
            ),
            "{}",
            err.message()
        );
        assert!(
            err.message().ends_with(
                "; is killswitch-control running? (set --endpoint or KILLSWITCH_ENDPOINT)"
            )
        );
    }

    #[test]
    fn rpc_timeout_names_the_timeout() {
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let err = Error::from_status(&status, &endpoint(), Duration::from_secs(10));
        assert_eq!(err.exit(), Exit::Error);
        assert_eq!(
            err.message(),
            "no answer from the control plane at http://127.0.0.1:7070 within 10s (set --timeout)"
        );
    }

    #[test]
    fn connect_error_lists_causes_once() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("transport error")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            Error::connect(&endpoint(), &err).message(),
            "cannot reach the control plane at http://127.0.0.1:7070: transport error: \
             connection refused; is killswitch-control running? (set --endpoint or \
             KILLSWITCH_ENDPOINT)"
        );
    }

    #[test]
    fn warnings_are_labelled() {
        let warning = Error::warning("replicas r2 did not answer");
        assert_eq!((warning.exit(), warning.label()), (Exit::Error, "warning"));
        assert_eq!(Error::usage("bad flag").label(), "error");
        let no_match = Error::new(Exit::NoMatch, "matched nobody").into_warning();
        assert_eq!(
            (no_match.exit().code(), no_match.label(), no_match.message()),
            (5, "warning", "matched nobody")
        );
    }

    #[test]
    fn exit_codes_help_lists_every_code() {
        for exit in [
            Exit::Success,
            Exit::Error,
            Exit::Usage,
            Exit::AckTimeout,
            Exit::Denied,
            Exit::NoMatch,
        ] {
            let line = format!("\n  {}  ", exit.code());
            assert!(EXIT_CODES_HELP.contains(&line), "{exit:?}");
        }
    }
}
