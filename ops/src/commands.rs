//! One function per command: build the request from validated arguments, call the control
//! plane through a [`Session`], write the answer to a [`Sink`]. [`run`] dispatches a
//! parsed [`Cli`].
//!
//! A command may write its result and still return an error (`--wait` that did not
//! complete, `collectors` missing a replica): the result is what happened, the error why
//! it is not what was asked for.

use std::time::{Duration, SystemTime};

use killswitch_proto::v1;
use tokio::time::Instant;

use crate::cli::{
    ApproveArgs, AuditArgs, AuditCommand, Cli, CollectorsArgs, Command, CreateArgs, PauseArgs,
    ProgramCommand, ResumeArgs, SetArgs, ShowArgs, StatusArgs,
};
use crate::client::Session;
use crate::exit::{Error, Exit};
use crate::input::Actor;
use crate::keys::{self, SigningKey};
use crate::output::{self, OutputFormat, WatchRenderer};
use crate::progress::Progress;
use crate::sink::Sink;
use crate::view::{ChangeView, PolicyView, WaitedChangeView};
use crate::wait;

/// Runs a parsed command line, writing what it shows to `out`.
///
/// The actor is resolved before connecting, so a bad one is a usage error even when the
/// control plane is down.
pub async fn run(cli: Cli, out: &mut Sink<'_>) -> Result<(), Error> {
    // Local commands: no control plane, no actor.
    let cli = match cli.command {
        Command::Certs(command) => return crate::certs::run(command, out),
        Command::Token(command) => return crate::token::run(command, out),
        Command::Keys(command) => return crate::keys::run(command, out),
        command => Cli { command, ..cli },
    };
    let global = cli.global;
    let actor = Actor::resolve(global.actor, std::env::var_os("USER")).map_err(Error::usage)?;
    let mut session = Session::connect(
        &global.endpoint,
        global.timeout,
        &actor,
        &global.credentials,
    )
    .await?;
    let format = global.output;
    match cli.command {
        Command::Program(ProgramCommand::Create(args)) => {
            program_create(&mut session, args, format, out).await
        }
        Command::Program(ProgramCommand::List) => program_list(&mut session, format, out).await,
        Command::Program(ProgramCommand::Show(args)) => {
            program_show(&mut session, args, format, out).await
        }
        Command::Program(ProgramCommand::Set(args)) => {
            program_set(&mut session, args, format, out).await
        }
        Command::Pause(args) => pause(&mut session, args, format, out).await,
        Command::Resume(args) => resume(&mut session, args, format, out).await,
        Command::Approve(args) => approve(&mut session, args, format, out).await,
        Command::Status(args) => status(&mut session, args, format, out).await,
        Command::Collectors(args) => collectors(&mut session, args, format, out).await,
        Command::Audit(args) => audit(&mut session, args, format, out).await,
        // Run above, without connecting.
        Command::Certs(_) | Command::Token(_) | Command::Keys(_) => Ok(()),
    }
}

/// `killswitch program create NAME --owner TEAM [--description TEXT] [--reason TEXT]
/// [--on-lost-contact pause|keep] [--grace DURATION]`
pub async fn program_create(
    session: &mut Session,
    args: CreateArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let request = v1::CreateProgramRequest {
        policy: args.policy().map(v1::FailurePolicy::from),
        name: args.name.as_str().to_owned(),
        owner: args.owner,
        description: args.description.unwrap_or_default(),
        reason: args.reason.map(|r| r.into_string()).unwrap_or_default(),
        resume_approvals: args.resume_approvals.unwrap_or(0),
    };
    let program = session.create_program(request).await?;
    out.write(&output::program(&program, format)?)
}

/// `killswitch program list`
pub async fn program_list(
    session: &mut Session,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let programs = session.list_programs().await?;
    out.write(&output::programs(&programs, format)?)
}

/// `killswitch program show NAME`
pub async fn program_show(
    session: &mut Session,
    args: ShowArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let program = session.get_program(args.name.as_str()).await?;
    out.write(&output::program(&program, format)?)
}

/// `killswitch program set NAME [--on-lost-contact pause|keep] [--grace DURATION] --reason
/// TEXT [--incident ID]`
///
/// `SetPolicy` replaces the whole policy, so when only one flag is given the other is read
/// from the program first. Nothing guards that read against a concurrent change of the
/// other half; the audit shows both changes.
pub async fn program_set(
    session: &mut Session,
    args: SetArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let policy = if args.on_lost_contact.is_none() && args.grace.is_none() {
        // Only --resume-approvals: the control plane keeps the policy.
        None
    } else if args.on_lost_contact.is_some() && args.grace.is_some() {
        // Both halves given: nothing to keep, and nothing to read.
        Some(PolicyView::default().merge(args.on_lost_contact, args.grace))
    } else {
        let current = session.get_program(args.name.as_str()).await?.policy;
        Some(current.merge(args.on_lost_contact, args.grace))
    };
    let request = v1::SetPolicyRequest {
        program: args.name.as_str().to_owned(),
        policy: policy.map(Into::into),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        resume_approvals: args.resume_approvals.unwrap_or(0),
    };
    let program = session.set_policy(request).await?;
    out.write(&output::program(&program, format)?)
}

/// `killswitch pause NAME --reason TEXT [--incident ID] [--purge] [--wait DURATION]`
pub async fn pause(
    session: &mut Session,
    args: PauseArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let request = v1::PauseRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        purge: args.purge,
    };
    let change = session.pause(request).await?;
    finish_change(session, change, args.wait, format, out).await
}

/// `killswitch resume NAME --reason TEXT [--incident ID] [--wait DURATION]`
pub async fn resume(
    session: &mut Session,
    args: ResumeArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let authorization = match &args.signing_key {
        None => None,
        Some(path) => {
            let key = SigningKey::load(path)?;
            // The statement replaces the generation the program is at now; a change in
            // between makes the control plane refuse it (run the command again).
            let current = session.get_program(args.name.as_str()).await?;
            // A request waiting for approval must still be valid when approved.
            let lifetime = keys::STATEMENT_LIFETIME.max(args.ttl);
            let statement = keys::statement(
                args.name.as_str(),
                current.state.generation,
                SystemTime::now(),
                lifetime,
            )?;
            Some(v1::ResumeAuthorization {
                signatures: vec![key.sign(&statement)],
                statement,
            })
        }
    };
    let request = v1::ResumeRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        ttl_ms: u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX),
        authorization,
    };
    let change = session.resume(request).await?;
    if change.approval.is_some() {
        // Nothing changed yet: there is nothing for collectors to acknowledge.
        return out.write(&output::change(&change, format)?);
    }
    finish_change(session, change, args.wait, format, out).await
}

/// `killswitch approve ID --reason TEXT [--incident ID] [--wait DURATION]`
pub async fn approve(
    session: &mut Session,
    args: ApproveArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let signature = match &args.signing_key {
        None => None,
        Some(path) => {
            let key = SigningKey::load(path)?;
            // The approver signs the very statement the requester signed.
            let pending = session.get_approval(&args.id).await?;
            Some(key.sign(&pending.statement))
        }
    };
    let request = v1::ApproveRequest {
        request_id: args.id,
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        signature,
    };
    let change = session.approve(request).await?;
    finish_change(session, change, args.wait, format, out).await
}

/// Prints a committed change; with `--wait`, first follows it until every connected
/// collector has acknowledged its generation (also when nothing changed: the collectors
/// may still be catching up with it).
async fn finish_change(
    session: &mut Session,
    change: ChangeView,
    wait: Option<Duration>,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let Some(limit) = wait else {
        return out.write(&output::change(&change, format)?);
    };
    let (program, generation) = (change.state.program.clone(), change.state.generation);
    let start = Instant::now();
    let mut progress = Progress::start(&program, generation);
    let waited = wait::wait(session, &program, generation, start, limit, |status| {
        progress.update(status);
    })
    .await;
    progress.finish();
    let result = waited.result();
    let view = WaitedChangeView {
        change,
        complete: waited.complete(),
        status: waited.last,
    };
    out.write(&output::waited_change(&view, format)?)?;
    result
}

/// `killswitch status NAME [--watch]`
pub async fn status(
    session: &mut Session,
    args: StatusArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    if !args.watch {
        let status = session.status(args.name.as_str()).await?;
        return out.write(&output::status(&status, format)?);
    }
    let mut stream = session.watch_status(args.name.as_str()).await?;
    let mut renderer = WatchRenderer::new(format);
    while let Some(status) = stream.next().await? {
        out.write(&renderer.render(&status)?)?;
        if out.is_closed() {
            break;
        }
    }
    Ok(())
}

/// `killswitch collectors NAME [--pending | --errored]`
pub async fn collectors(
    session: &mut Session,
    args: CollectorsArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let list = session
        .list_collectors(args.name.as_str(), args.filter())
        .await?;
    out.write(&output::collectors(&list, format)?)?;
    match output::missing_replicas(&list) {
        None => Ok(()),
        Some(warning) => Err(Error::warning(warning)),
    }
}

/// `killswitch audit [--program NAME] [--since TIME] [--limit N]`, or `killswitch audit
/// verify`
pub async fn audit(
    session: &mut Session,
    args: AuditArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    if let Some(AuditCommand::Verify) = args.command {
        return audit_verify(session, format, out).await;
    }
    let request = v1::ListAuditRequest {
        program: args
            .program
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        since: args
            .since
            .map(|since| killswitch_proto::timestamp(since.resolve(SystemTime::now()))),
        // 0: as many as the control plane returns.
        limit: args.limit.unwrap_or(0),
    };
    let list = session.list_audit(request).await?;
    out.write(&output::audit(&list, format)?)
}

/// `killswitch audit verify`: the verdict on stdout (JSON, or the intact line), and a
/// broken chain as the error, exit 1.
pub async fn audit_verify(
    session: &mut Session,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let verdict = session.verify_audit().await?;
    out.write(&output::audit_verdict(&verdict, format)?)?;
    match output::broken_chain(&verdict) {
        None => Ok(()),
        Some(broken) => Err(Error::new(Exit::Error, broken)),
    }
}
