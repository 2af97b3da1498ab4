//! The replica's log output: human-readable lines or JSON objects on stderr, filtered by
//! `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How log events are written to stderr.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message and fields
    /// (coloured when stderr is a terminal).
    #[default]
    Pretty,
    /// One JSON object per line (`timestamp`, `level`, `target`, the message and fields at
    /// the top level), for log collectors.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` is not a valid filter.
    #[error(
        "RUST_LOG is not a valid log filter ({0}): use a level (error, warn, info, debug, trace) or directives such as `info,killswitch_control=debug`"
    )]
    Filter(#[source] tracing_subscriber::filter::FromEnvError),
    /// A global subscriber was already installed.
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Installs the global logger writing `format` to stderr, filtered by `RUST_LOG` (default
/// `info`). An invalid `RUST_LOG` is an error rather than silently ignored.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(LoggingError::Filter)?;
    // Colours only for a person at a terminal, not for the journal or a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|error| LoggingError::Install(error.to_string()))
}
