//! One function per command: build the request from validated arguments, call the control
//! plane through a [`Session`], render the answer. [`run`] dispatches a parsed [`Cli`].

use killswitch_proto::v1;

use crate::cli::{
    Cli, Command, CreateArgs, PauseArgs, ProgramCommand, ResumeArgs, ShowArgs, StatusArgs,
};
use crate::client::Session;
use crate::exit::Error;
use crate::input::Actor;
use crate::output::{self, OutputFormat};

/// Runs a parsed command line and returns what to print on stdout.
///
/// The actor is resolved before connecting, so a bad one is a usage error even when the
/// control plane is down.
pub async fn run(cli: Cli) -> Result<String, Error> {
    let global = cli.global;
    let actor = Actor::resolve(global.actor, std::env::var_os("USER")).map_err(Error::usage)?;
    let mut session = Session::connect(&global.endpoint, global.timeout, &actor).await?;
    let format = global.output;
    match cli.command {
        Command::Program(ProgramCommand::Create(args)) => {
            program_create(&mut session, args, format).await
        }
        Command::Program(ProgramCommand::List) => program_list(&mut session, format).await,
        Command::Program(ProgramCommand::Show(args)) => {
            program_show(&mut session, args, format).await
        }
        Command::Pause(args) => pause(&mut session, args, format).await,
        Command::Resume(args) => resume(&mut session, args, format).await,
        Command::Status(args) => status(&mut session, args, format).await,
    }
}

/// `killswitch program create NAME --owner TEAM [--description TEXT] [--reason TEXT]`
pub async fn program_create(
    session: &mut Session,
    args: CreateArgs,
    format: OutputFormat,
) -> Result<String, Error> {
    let request = v1::CreateProgramRequest {
        name: args.name.as_str().to_owned(),
        owner: args.owner,
        description: args.description.unwrap_or_default(),
        reason: args.reason.map(|r| r.into_string()).unwrap_or_default(),
    };
    let program = session.create_program(request).await?;
    output::program(&program, format)
}

/// `killswitch program list`
pub async fn program_list(session: &mut Session, format: OutputFormat) -> Result<String, Error> {
    let programs = session.list_programs().await?;
    output::programs(&programs, format)
}

/// `killswitch program show NAME`
pub async fn program_show(
    session: &mut Session,
    args: ShowArgs,
    format: OutputFormat,
) -> Result<String, Error> {
    let program = session.get_program(args.name.as_str()).await?;
    output::program(&program, format)
}

/// `killswitch pause NAME --reason TEXT [--incident ID] [--purge]`
pub async fn pause(
    session: &mut Session,
    args: PauseArgs,
    format: OutputFormat,
) -> Result<String, Error> {
    let request = v1::PauseRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        purge: args.purge,
    };
    let change = session.pause(request).await?;
    output::change(&change, format)
}

/// `killswitch resume NAME --reason TEXT [--incident ID]`
pub async fn resume(
    session: &mut Session,
    args: ResumeArgs,
    format: OutputFormat,
) -> Result<String, Error> {
    let request = v1::ResumeRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
    };
    let change = session.resume(request).await?;
    output::change(&change, format)
}

/// `killswitch status NAME`
pub async fn status(
    session: &mut Session,
    args: StatusArgs,
    format: OutputFormat,
) -> Result<String, Error> {
    let status = session.status(args.name.as_str()).await?;
    output::status(&status, format)
}
