//! The command line, as clap derive definitions. Values are parsed into the validated
//! types of [`crate::input`], so clap reports bad input as a usage error (exit 2).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;
use crate::input::{Actor, EndpointUrl, ProgramName, Reason, parse_timeout};
use crate::output::OutputFormat;

/// Default control plane address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// Default per-RPC (and connect) timeout.
pub const DEFAULT_TIMEOUT: &str = "10s";

/// Pause and resume data-collection programs across the fleet.
#[derive(Debug, Parser)]
#[command(name = "killswitch", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Flags accepted by every command.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after any command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Control plane address
    #[arg(
        long,
        global = true,
        env = "KILLSWITCH_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        value_name = "URL",
        value_parser = EndpointUrl::parse,
    )]
    pub endpoint: EndpointUrl,

    /// How to print results: aligned text, or one JSON document for scripts
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Time allowed to connect, and for each request (e.g. 10s, 500ms, 1m)
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_TIMEOUT,
        value_name = "DURATION",
        value_parser = parse_timeout,
    )]
    pub timeout: Duration,

    /// Who is acting, recorded in the audit [default: $USER, else "unknown"]
    #[arg(
        long,
        global = true,
        env = "KILLSWITCH_ACTOR",
        value_name = "NAME",
        value_parser = Actor::parse,
    )]
    pub actor: Option<Actor>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and inspect programs
    #[command(subcommand)]
    Program(ProgramCommand),

    /// Stop a program from collecting, fleet-wide
    Pause(PauseArgs),

    /// Let a paused program collect again
    Resume(ResumeArgs),

    /// Show a program's state and which collectors have acknowledged it
    Status(StatusArgs),
}

/// `killswitch program ...`
#[derive(Debug, Subcommand)]
pub enum ProgramCommand {
    /// Register a program; it starts PAUSED until resumed
    Create(CreateArgs),

    /// List all programs and their states
    List,

    /// Show one program and its state
    Show(ShowArgs),
}

/// `killswitch program create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Program name: lowercase letters, digits and '-', starting with a letter
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Team that owns the program
    #[arg(long, value_name = "TEAM")]
    pub owner: String,

    /// What the program collects
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Why it is created, recorded in the audit
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Option<Reason>,
}

/// `killswitch program show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,
}

/// `killswitch pause`
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// Also ask collectors to delete buffered data not yet uploaded
    #[arg(long)]
    pub purge: bool,
}

/// `killswitch resume`
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,
}

/// `killswitch status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("killswitch").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        for args in [
            &["--output", "json", "--timeout", "2s", "status", "demo"][..],
            &["status", "demo", "--output", "json", "--timeout", "2s"][..],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.global.output, OutputFormat::Json, "{args:?}");
            assert_eq!(cli.global.timeout, Duration::from_secs(2), "{args:?}");
        }
    }

    #[test]
    fn pause_arguments() {
        let cli = parse(&[
            "pause",
            "demo",
            "--reason",
            "leak",
            "--incident",
            "INC-1",
            "--purge",
        ])
        .unwrap();
        let Command::Pause(args) = cli.command else {
            panic!("expected pause, got {:?}", cli.command);
        };
        assert_eq!(args.name.as_str(), "demo");
        assert_eq!(args.reason.into_string(), "leak");
        assert_eq!(args.incident_id.as_deref(), Some("INC-1"));
        assert!(args.purge);
    }

    #[test]
    fn usage_errors() {
        let cases: &[&[&str]] = &[
            &[],
            &["pause", "demo"],
            &["pause", "Demo", "--reason", "x"],
            &["pause", "demo", "--reason", ""],
            &["resume", "demo", "--reason", " "],
            &["program", "create", "demo"],
            &["status"],
            &["status", "demo", "--output", "yaml"],
            &["status", "demo", "--timeout", "0s"],
            &["status", "demo", "--timeout", "ten"],
            &["status", "demo", "--endpoint", "localhost:7070"],
            &["status", "demo", "--actor", "al\nice"],
            &["status", "demo", "--actor", ""],
        ];
        for args in cases {
            let err = parse(args).err();
            let err = err.unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn help_documents_exit_codes_and_defaults() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "Exit codes:",
            "4  denied",
            "KILLSWITCH_ENDPOINT",
            "KILLSWITCH_ACTOR",
            DEFAULT_ENDPOINT,
            "$USER",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
