//! One function per command: build the request from validated arguments, call the control
//! plane through a [`Session`], write the answer to a [`Sink`]. [`run`] dispatches a
//! parsed [`Cli`].
//!
//! A command may write its result and still return an error (`--wait` that did not
//! complete, `collectors` missing a replica): the result is what happened, the error why
//! it is not what was asked for.

use std::path::Path;
use std::time::{Duration, SystemTime};

use killswitch_proto::selector::Selector;
use killswitch_proto::v1;
use tokio::time::Instant;

use crate::cli::{
    ApproveArgs, AuditArgs, AuditCommand, Cli, CollectorsArgs, Command, CreateArgs, DrillArgs,
    PauseArgs, ProgramCommand, ReloadArgs, ReportArgs, ReportCommand, ReportFormat,
    ReportVerifyArgs, ResumeArgs, RolloutAbortArgs, RolloutCommand, SetArgs, ShowArgs, StatusArgs,
    StopAllArgs,
};
use crate::client::Session;
use crate::exit::{Error, Exit};
use crate::input::{Actor, Reason, SelectorArg};
use crate::keys::{self, SigningKey};
use crate::output::{self, OutputFormat, StopAllMode, WatchRenderer, clean};
use crate::progress::Progress;
use crate::report::{self as incident_report, Inputs};
use crate::sink::Sink;
use crate::view::{
    ChangeView, DrillView, Matched, Micros, PolicyView, StateView, StopAllResultView,
    WaitedChangeView, WaitedProgramView, WaitedRolloutView,
};
use crate::wait::{self, Outcome, Waited};

/// How long a scoped change without `--wait` follows the status for the number of
/// connected collectors its scope matched, before saying it is not known yet.
const MATCH_COUNT_WAIT: Duration = Duration::from_secs(2);

/// Whether a change was aimed at the collectors a selector matches, so its result says
/// how many connected collectors that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every collector of the program (or a drill's end, a rollout's abort).
    Whole,
    /// The collectors a selector matches.
    Selector,
}

impl Scope {
    fn of(selector: Option<&SelectorArg>) -> Self {
        if selector.is_some() {
            Scope::Selector
        } else {
            Scope::Whole
        }
    }
}

/// Runs a parsed command line, writing what it shows to `out`.
///
/// The actor is resolved before connecting, so a bad one is a usage error even when the
/// control plane is down.
pub async fn run(cli: Cli, out: &mut Sink<'_>) -> Result<(), Error> {
    // Local commands: no control plane, no actor.
    let format = cli.global.output;
    let cli = match cli.command {
        Command::Certs(command) => return crate::certs::run(command, format, out),
        Command::Token(command) => return crate::token::run(command, format, out),
        Command::Keys(command) => return crate::keys::run(command, format, out),
        Command::Report(ReportArgs {
            command: Some(ReportCommand::Verify(args)),
            ..
        }) => return report_verify(&args, cli.global.credentials.ca.as_deref(), format, out),
        // Checked before connecting: a report about nothing is a usage error.
        Command::Report(args) => {
            args.query(SystemTime::now(), format)?;
            Cli {
                command: Command::Report(args),
                ..cli
            }
        }
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
        Command::Rollout(RolloutCommand::Abort(args)) => {
            rollout_abort(&mut session, args, format, out).await
        }
        Command::StopAll(args) => stop_all(&mut session, args, format, out).await,
        Command::Drill(args) => drill(&mut session, args, format, out).await,
        Command::Status(args) => status(&mut session, args, format, out).await,
        Command::Collectors(args) => collectors(&mut session, args, format, out).await,
        Command::Audit(args) => audit(&mut session, args, format, out).await,
        Command::Reload(args) => reload(&mut session, args, format, out).await,
        Command::Report(args) => report(&mut session, &args, format, out).await,
        Command::Console(args) => crate::console::serve(session, args, out).await,
        // Run above, without connecting.
        Command::Certs(_) | Command::Token(_) | Command::Keys(_) => Ok(()),
    }
}

/// `killswitch reload [--reason TEXT] [--incident ID]`: the replica reads its
/// credentials again; prints what it put in force.
pub async fn reload(
    session: &mut Session,
    args: ReloadArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let request = v1::ReloadRequest {
        reason: args.reason.map(Reason::into_string).unwrap_or_default(),
        incident_id: args.incident_id.unwrap_or_default(),
    };
    let view = session.reload(request).await?;
    out.write(&output::reload(&view, format)?)
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
        ttl_ms: u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX),
    };
    let program = session.set_policy(request).await?;
    out.write(&output::program(&program, format)?)
}

/// `killswitch pause NAME --reason TEXT [--incident ID] [--purge | --selector SELECTOR]
/// [--wait DURATION]`
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
        selector: selector_text(args.selector.as_ref()),
    };
    let change = session
        .pause(request)
        .await
        .map_err(|err| with_pointer(err, args.selector.as_ref()))?;
    let scope = Scope::of(args.selector.as_ref());
    finish_change(session, change, args.wait, scope, format, out).await
}

/// The selector as sent: empty for every collector.
fn selector_text(selector: Option<&SelectorArg>) -> String {
    selector.map(|s| s.as_str().to_owned()).unwrap_or_default()
}

/// A selector the control plane refused, with the selector drawn under the message and a
/// caret at the column it named.
pub(crate) fn with_pointer(err: Error, selector: Option<&SelectorArg>) -> Error {
    let picture = selector
        .filter(|_| err.exit() == Exit::Usage)
        .and_then(|selector| output::selector_pointer(err.message(), selector.as_str()));
    match picture {
        Some(picture) => Error::new(err.exit(), format!("{}\n{picture}", err.message())),
        None => err,
    }
}

/// The scope a signed `resume` names in its statement: the canonical form of its
/// selector (the control plane compares it byte for byte), its stages and interval.
fn statement_scope(args: &ResumeArgs) -> Result<keys::StatementScope, Error> {
    let selector = match &args.selector {
        None => String::new(),
        Some(selector) => Selector::parse(selector.as_str())
            .map_err(|error| {
                Error::new(
                    Exit::Usage,
                    format!(
                        "invalid --selector: {error}\n{}",
                        error.pointer(selector.as_str())
                    ),
                )
            })?
            .to_string(),
    };
    let (stages_percent, stage_interval_ms) = stage_plan(args);
    Ok(keys::StatementScope {
        selector,
        stages_percent,
        stage_interval_ms,
    })
}

/// A `resume --stages`' percentages and interval in milliseconds; nothing without it.
fn stage_plan(args: &ResumeArgs) -> (Vec<u32>, u64) {
    args.stages.as_ref().map_or((Vec::new(), 0), |stages| {
        let interval = args.interval.unwrap_or(ResumeArgs::DEFAULT_INTERVAL);
        (
            stages.percentages().to_vec(),
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        )
    })
}

/// `killswitch resume NAME --reason TEXT [--incident ID] [--selector SELECTOR | --stages
/// PERCENTAGES [--interval DURATION]] [--wait DURATION]`
pub async fn resume(
    session: &mut Session,
    args: ResumeArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let authorization = match &args.signing_key {
        None => None,
        Some(path) => Some(
            resume_authorization(
                session,
                path,
                args.name.as_str(),
                &statement_scope(&args)?,
                args.ttl,
            )
            .await?,
        ),
    };
    let (stages_percent, stage_interval_ms) = stage_plan(&args);
    let request = v1::ResumeRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        ttl_ms: u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX),
        authorization,
        selector: selector_text(args.selector.as_ref()),
        stages_percent,
        stage_interval_ms,
    };
    let change = session
        .resume(request)
        .await
        .map_err(|err| with_pointer(err, args.selector.as_ref()))?;
    if change.approval.is_some() {
        // Nothing changed yet: there is nothing for collectors to acknowledge.
        return out.write(&output::change(&change, format)?);
    }
    match (args.wait, change.state.rollout.is_some()) {
        (Some(limit), true) => finish_rollout(session, change, limit, format, out).await,
        _ => {
            let scope = Scope::of(args.selector.as_ref());
            finish_change(session, change, args.wait, scope, format, out).await
        }
    }
}

/// A resume of `program` signed with the key at `path`: a statement of `scope` replacing
/// the program's generation now, valid for `ttl` at least (a request waiting for approval
/// must still be valid when approved).
pub async fn resume_authorization(
    session: &mut Session,
    path: &Path,
    program: &str,
    scope: &keys::StatementScope,
    ttl: Duration,
) -> Result<v1::ResumeAuthorization, Error> {
    let key = SigningKey::load(path)?;
    // The statement replaces the generation the program is at now; a change in between
    // makes the control plane refuse it (run the command again).
    let current = session.get_program(program).await?;
    keys::check_generation(current.state.generation)?;
    let lifetime = keys::STATEMENT_LIFETIME.max(ttl);
    if lifetime > keys::COLLECTOR_STATEMENT_LIFETIME {
        eprintln!(
            "warning: this statement stays valid for {}, but collectors refuse statements \
             valid for more than {} unless built with a longer max_statement_lifetime: a \
             shorter --ttl keeps it within their limit",
            humantime::format_duration(lifetime),
            humantime::format_duration(keys::COLLECTOR_STATEMENT_LIFETIME)
        );
    }
    let statement = keys::statement(
        program,
        current.state.generation,
        scope,
        SystemTime::now(),
        lifetime,
    )?;
    Ok(v1::ResumeAuthorization {
        signatures: vec![key.sign(&statement)],
        statement,
    })
}

/// Prints a staged resume after following it with `--wait`, stage after stage, until it
/// completes or is aborted.
async fn finish_rollout(
    session: &mut Session,
    change: ChangeView,
    limit: Duration,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let program = change.state.program.clone();
    let first = change.state.generation;
    let began = Instant::now();
    let clock = std::time::Instant::now();
    // The progress of the generation being shown: one per stage, then the completion.
    let mut shown: Option<(u64, Progress)> = None;
    let statuses = || session.watch_status(&program);
    let waited = wait::wait_rollout(statuses, &program, first, began, limit, |status| {
        let generation = status.state.generation;
        if generation < first {
            return;
        }
        if shown.as_ref().map(|(g, _)| *g) != Some(generation) {
            if let Some((_, old)) = shown.take() {
                old.finish();
            }
            let label = match &status.state.rollout {
                Some(r) => format!(
                    "{} stage {}/{} ({}%)",
                    clean(&program),
                    r.stage,
                    r.stage_count(),
                    r.percent
                ),
                None => format!("{} {}", clean(&program), status.state.state),
            };
            let progress = Progress::labelled(&label, generation, clock);
            progress.note(&format!("{label}: generation {generation}"));
            shown = Some((generation, progress));
        }
        if let Some((_, progress)) = shown.as_mut() {
            progress.update(status);
        }
    })
    .await;
    if let Some((_, progress)) = shown {
        progress.finish();
    }
    let result = waited.result();
    let view = WaitedRolloutView {
        complete: waited.complete(),
        outcome: waited.outcome.as_str(),
        change,
        stages: waited.stages,
        status: waited.last,
    };
    out.write(&output::waited_rollout(&view, format)?)?;
    result
}

/// `killswitch rollout abort NAME --reason TEXT [--incident ID] [--wait DURATION]`
pub async fn rollout_abort(
    session: &mut Session,
    args: RolloutAbortArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let request = v1::AbortRolloutRequest {
        program: args.name.as_str().to_owned(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
    };
    let change = session.abort_rollout(request).await?;
    finish_change(session, change, args.wait, Scope::Whole, format, out).await
}

/// `killswitch stop-all --reason TEXT [--incident ID] [--wait DURATION]`, `killswitch
/// stop-all --clear --reason TEXT [--approve ID] [--wait DURATION]`, `killswitch stop-all
/// --show`
pub async fn stop_all(
    session: &mut Session,
    args: StopAllArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    if args.show {
        let view = session.get_stop_all().await?;
        return out.write(&output::stop_all(&view, StopAllMode::Show, format)?);
    }
    // clap requires --reason unless --show.
    let reason = args
        .reason
        .ok_or_else(|| Error::usage("--reason is required (it is recorded in the audit)"))?
        .into_string();
    let incident_id = args.incident_id.unwrap_or_default();
    let (mut view, mode) = if args.clear {
        let request = v1::ClearStopAllRequest {
            reason,
            incident_id,
            approve: args.approve.unwrap_or_default(),
        };
        (session.clear_stop_all(request).await?, StopAllMode::Clear)
    } else {
        let request = v1::StopAllRequest {
            reason,
            incident_id,
        };
        (session.stop_all(request).await?, StopAllMode::Set)
    };
    // Wait only once the flag is as asked: a clear waiting for approval changed nothing.
    let as_asked = view.stop_all.active == (mode == StopAllMode::Set);
    let result = match args.wait {
        Some(limit) if as_asked => wait_every_program(session, limit, &mut view).await,
        _ => Ok(()),
    };
    out.write(&output::stop_all(&view, mode, format)?)?;
    result
}

/// Follows every program until all its connected collectors acknowledged the generation
/// it is at now, within one deadline for all; the programs' results go into `view`.
async fn wait_every_program(
    session: &mut Session,
    limit: Duration,
    view: &mut StopAllResultView,
) -> Result<(), Error> {
    let start = Instant::now();
    let programs = session.list_programs().await?;
    let mut timed_out = Vec::new();
    let mut failed = Vec::new();
    for program in programs {
        let (name, generation) = (program.name, program.state.generation);
        let mut progress = Progress::start(&name, generation);
        let statuses = || session.watch_status(&name);
        let waited = wait::wait(statuses, &name, generation, start, limit, |status| {
            progress.update(status);
        })
        .await;
        progress.finish();
        match &waited.outcome {
            Outcome::Done => {}
            Outcome::TimedOut => timed_out.push(clean(&name)),
            _ => failed.push(format!(
                "{}: {}",
                clean(&name),
                waited
                    .result()
                    .err()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_default()
            )),
        }
        view.programs.push(WaitedProgramView {
            program: name,
            generation,
            complete: waited.complete(),
            status: waited.last,
        });
    }
    if !failed.is_empty() {
        return Err(Error::new(Exit::Error, failed.join("; ")));
    }
    if !timed_out.is_empty() {
        return Err(Error::new(
            Exit::AckTimeout,
            format!(
                "timed out after {} before every collector of {} acknowledged",
                humantime::format_duration(limit),
                timed_out.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `killswitch drill NAME --selector SELECTOR --reason TEXT [--incident ID] [--wait
/// DURATION] [--end]`: start the drill, wait for every selected collector to confirm, end
/// it, wait again, report. Once started, the drill is always ended before returning,
/// also on a timeout, a failure or Ctrl-C.
pub async fn drill(
    session: &mut Session,
    args: DrillArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let program = args.name.as_str().to_owned();
    let selector = args.selector.as_str().to_owned();
    let request = v1::DrillRequest {
        program: program.clone(),
        selector: selector.clone(),
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
    };
    if args.end {
        let change = session
            .end_drill(request)
            .await
            .map_err(|err| with_pointer(err, Some(&args.selector)))?;
        return finish_change(session, change, Some(args.wait), Scope::Whole, format, out).await;
    }
    // Listened for before the drill starts, so a Ctrl-C at any moment ends it.
    let mut interrupt = Interrupt::listen();
    let sent = Instant::now();
    let started = session
        .start_drill(request.clone())
        .await
        .map_err(|err| with_pointer(err, Some(&args.selector)))?;
    let drill_generation = started.state.generation;
    let label = format!("{} drill", clean(&program));
    let (drilled, interrupted) = wait_interruptibly(
        session,
        &program,
        drill_generation,
        (sent, args.wait),
        &label,
        &mut interrupt,
    )
    .await;
    let observed = drilled
        .as_ref()
        .filter(|w| w.complete())
        .map(|_| micros(sent.elapsed()));

    // Whatever happened, the drill ends here.
    let (restore_generation, restored, end_error) =
        end_drill(session, request, interrupted, args.wait, &mut interrupt).await;

    let drill_status = drilled.as_ref().and_then(|w| w.last.clone());
    let restore_status = restored.as_ref().and_then(|w| w.last.clone());
    let counts = drill_status
        .as_ref()
        .filter(|s| s.state.generation == drill_generation)
        .map(|s| &s.collectors);
    let view = DrillView {
        program,
        selector,
        drill_generation,
        restore_generation,
        collectors: counts.map_or(0, |c| c.connected),
        matched: Matched::from_status(drill_generation, drill_status.as_ref()).known(),
        acked: counts.map_or(0, |c| c.acked),
        safe: drilled.as_ref().is_some_and(Waited::complete),
        time_to_safe_ms: drilled
            .as_ref()
            .filter(|w| w.complete())
            .and_then(|w| w.last.as_ref())
            .and_then(|s| s.ack_times)
            .map(|t| t.propagation_ms),
        observed_ms: observed,
        restored: restored.as_ref().is_some_and(Waited::complete),
        drill_status,
        restore_status,
    };
    out.write(&output::drill(&view, format)?)?;
    drill_result(
        &view,
        end_error,
        interrupted,
        drilled.as_ref(),
        restored.as_ref(),
    )
}

/// Ends a started drill with `request` and, unless it was `interrupted`, waits up to
/// `limit` for the restore to be acknowledged (Ctrl-C ends that wait too): the restore's
/// generation and wait, or the error that kept the drill from ending.
async fn end_drill(
    session: &mut Session,
    request: v1::DrillRequest,
    interrupted: bool,
    limit: Duration,
    interrupt: &mut Interrupt,
) -> (Option<u64>, Option<Waited>, Option<Error>) {
    let program = request.program.clone();
    match session.end_drill(request).await {
        // Interrupted: the drill is ended; whoever pressed Ctrl-C wants out, not a wait.
        Ok(change) if interrupted => (Some(change.state.generation), None, None),
        Ok(change) => {
            let generation = change.state.generation;
            let label = format!("{} restore", clean(&program));
            let (waited, _) = wait_interruptibly(
                session,
                &program,
                generation,
                (Instant::now(), limit),
                &label,
                interrupt,
            )
            .await;
            (Some(generation), waited, None)
        }
        Err(err) => (None, None, Some(err)),
    }
}

/// The error of a drill whose report is printed: it could not be ended, it was
/// interrupted, a phase failed or timed out, or it matched no connected collector.
fn drill_result(
    view: &DrillView,
    end_error: Option<Error>,
    interrupted: bool,
    drilled: Option<&Waited>,
    restored: Option<&Waited>,
) -> Result<(), Error> {
    if let Some(err) = end_error {
        return Err(Error::new(
            Exit::Error,
            format!(
                "the drill could not be ended: {}; the selected collectors may STILL BE \
                 PAUSED: end it with `killswitch drill {} --selector '{}' --end --reason TEXT`",
                err.message(),
                clean(&view.program),
                clean(&view.selector)
            ),
        ));
    }
    if interrupted {
        return Err(Error::new(
            Exit::Error,
            "interrupted: the drill was ended, without waiting for its acknowledgements \
             (check with `killswitch status`)",
        ));
    }
    phase_result("drill", drilled)?;
    phase_result("restore", restored)?;
    tested_any(view)
}

/// For a drill whose waits completed: exit 5 when its selector matched no connected
/// collector, so it tested nothing.
fn tested_any(view: &DrillView) -> Result<(), Error> {
    if view.matched != Some(0) {
        return Ok(());
    }
    let program = clean(&view.program);
    Err(Error::new(
        Exit::NoMatch,
        format!(
            "no connected collector of {program} matches {}: the drill tested nothing (check \
             the labels with `killswitch collectors {program}`)",
            clean(&view.selector),
        ),
    ))
}

/// Waits for `generation` as [`wait::wait`] does (from `start`, up to `limit`), with
/// progress under `label`, unless `interrupt` comes first: then `(None, true)`.
async fn wait_interruptibly(
    session: &mut Session,
    program: &str,
    generation: u64,
    (start, limit): (Instant, Duration),
    label: &str,
    interrupt: &mut Interrupt,
) -> (Option<Waited>, bool) {
    let mut progress = Progress::labelled(label, generation, std::time::Instant::now());
    let waited = tokio::select! {
        waited = wait::wait(|| session.watch_status(program), program, generation, start, limit, |status| {
            progress.update(status);
        }) => Some(waited),
        () = interrupt.recv() => None,
    };
    progress.finish();
    let interrupted = waited.is_none();
    (waited, interrupted)
}

/// Ctrl-C (SIGINT), listened for from [`Interrupt::listen`] on: once listening, Ctrl-C no
/// longer kills the process, so a drill can end what it started.
struct Interrupt {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    /// Starts listening. If the handler cannot be installed, Ctrl-C keeps its default
    /// effect and [`Interrupt::recv`] never returns.
    fn listen() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    /// Returns once Ctrl-C was pressed (also before this call, since [`listen`]).
    ///
    /// [`listen`]: Interrupt::listen
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// The error of one phase of a drill (a timeout names the stragglers).
fn phase_result(phase: &str, waited: Option<&Waited>) -> Result<(), Error> {
    let Some(waited) = waited else {
        return Ok(());
    };
    waited
        .result()
        .map_err(|err| Error::new(err.exit(), format!("{phase}: {}", err.message())))
}

/// A duration as the microseconds the views carry.
fn micros(duration: Duration) -> Micros {
    Micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
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
        Some(path) => approval_signature(session, path, &args.id).await?,
    };
    let request = v1::ApproveRequest {
        request_id: args.id,
        reason: args.reason.into_string(),
        incident_id: args.incident_id.unwrap_or_default(),
        signature,
    };
    let change = session.approve(request).await?;
    // The approved request may be a staged resume: then follow its stages.
    match (args.wait, change.state.rollout.is_some()) {
        (Some(limit), true) => finish_rollout(session, change, limit, format, out).await,
        _ => {
            // ... or a scoped one: then say how many collectors it matched.
            let scope = if change.state.scoped_rule().is_some() {
                Scope::Selector
            } else {
                Scope::Whole
            };
            finish_change(session, change, args.wait, scope, format, out).await
        }
    }
}

/// The signature of the key at `path` over the statement of approval request `id`,
/// checked first to be what the request says; `None` for a policy change, which
/// collectors check no signature for.
pub async fn approval_signature(
    session: &mut Session,
    path: &Path,
    id: &str,
) -> Result<Option<v1::Signature>, Error> {
    let key = SigningKey::load(path)?;
    let pending = session.get_approval(id).await?;
    if let Some(change) = &pending.policy_change {
        eprintln!(
            "approving a policy change of {}: {}",
            clean(&pending.program),
            keys::describe_policy_change(change)
        );
        return Ok(None);
    }
    // The approver signs the very statement the requester signed, once it has read it: a
    // replica cannot make it sign anything else.
    let scope = keys::StatementScope {
        selector: pending.selector.clone(),
        stages_percent: pending.stages_percent.clone(),
        stage_interval_ms: pending.stage_interval_ms,
    };
    let statement = keys::check_statement(
        &pending.statement,
        &pending.program,
        pending.replaces_generation,
        &scope,
        SystemTime::now(),
    )?;
    eprintln!("signing: {}", keys::describe(&statement));
    Ok(Some(key.sign(&pending.statement)))
}

/// Prints a committed change; with `--wait`, first follows it until every connected
/// collector has acknowledged its generation (also when nothing changed: the collectors
/// may still be catching up with it).
///
/// A change of a [`Scope::Selector`] also says how many connected collectors it matched:
/// from the wait's last status, or without `--wait` from a status followed for at most
/// [`MATCH_COUNT_WAIT`]. With `--wait`, matching none is exit 5 ([`Exit::NoMatch`]).
async fn finish_change(
    session: &mut Session,
    mut change: ChangeView,
    wait: Option<Duration>,
    scope: Scope,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let (program, generation) = (change.state.program.clone(), change.state.generation);
    let Some(limit) = wait else {
        if scope == Scope::Selector {
            let statuses = session.watch_status(&program);
            let status = wait::reported(statuses, generation, MATCH_COUNT_WAIT).await;
            change.matched = Some(Matched::from_status(generation, status.as_ref()));
        }
        return out.write(&output::change(&change, format)?);
    };
    let start = Instant::now();
    let mut progress = Progress::start(&program, generation);
    let statuses = || session.watch_status(&program);
    let waited = wait::wait(statuses, &program, generation, start, limit, |status| {
        progress.update(status);
    })
    .await;
    progress.finish();
    let mut result = waited.result();
    if scope == Scope::Selector {
        let matched = Matched::from_status(generation, waited.last.as_ref());
        change.matched = Some(matched);
        result = result.and_then(|()| matched_any(matched, &change.state));
    }
    let view = WaitedChangeView {
        change,
        complete: waited.complete(),
        status: waited.last,
    };
    out.write(&output::waited_change(&view, format)?)?;
    result
}

/// For a scoped change whose wait completed: the exit-5 warning when its scope matched no
/// connected collector. A completed wait's last status is one every replica reported on,
/// so the count is known then; an unknown one fails nothing.
fn matched_any(matched: Matched, state: &StateView) -> Result<(), Error> {
    if matched != Matched::Known(0) {
        return Ok(());
    }
    Err(Error::new(
        Exit::NoMatch,
        format!(
            "the scope {} matched no connected collector of {}: the change is stored (generation \
             {}) and applies to collectors that connect later with matching labels",
            clean(state.scope.as_deref().unwrap_or("-")),
            clean(&state.program),
            state.generation
        ),
    )
    .into_warning())
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

/// `killswitch report (--incident ID | --program NAME) [--since TIME] [--until TIME]
/// [--format text|html] [--out FILE]`: reads the whole audit log, then the receipts and
/// collectors of the programs the relevant entries concern, and writes the report.
pub async fn report(
    session: &mut Session,
    args: &ReportArgs,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let now = SystemTime::now();
    let query = args.query(now, format)?;
    let built = gather_report(session, &query, now).await?;
    let (text, what) = match args.format {
        ReportFormat::Html => (output::report_html(&built)?, "an HTML report"),
        ReportFormat::Text => (
            output::report(&built, format)?,
            if format == OutputFormat::Json {
                "the JSON report"
            } else {
                "the report summary"
            },
        ),
    };
    match &args.out {
        None => out.write(&text),
        Some(path) => {
            std::fs::write(path, text).map_err(|err| {
                Error::new(
                    Exit::Error,
                    format!(
                        "cannot write {}: {err} (does its directory exist and can you write \
                         to it?)",
                        path.display()
                    ),
                )
            })?;
            out.write(&format!(
                "wrote {what} to {}: {} changes, {} receipts, audit entries {}..{}; check it \
                 with `killswitch report verify {} --ca CA.pem`\n",
                path.display(),
                built.totals.changes,
                built.totals.receipts,
                built.totals.first_seq,
                built.totals.last_seq,
                path.display()
            ))
        }
    }
}

/// The report on `query`: the whole audit log (unfiltered, so that the segment between
/// the relevant entries has no gap), the receipts of the programs it concerns and their
/// collectors now, as `report` and the console's report page show it.
pub async fn gather_report(
    session: &mut Session,
    query: &incident_report::Query,
    now: SystemTime,
) -> Result<incident_report::Report, Error> {
    let listed = session
        .audit_entries(v1::ListAuditRequest {
            program: String::new(),
            since: None,
            limit: 0,
        })
        .await?;
    let mut selection = incident_report::select(query, &listed.entries)?;
    if selection.every_program {
        let programs = session.list_programs().await?;
        selection
            .programs
            .extend(programs.into_iter().map(|p| p.name));
    }
    let (from, to) = selection.generations;
    let mut inputs = Inputs {
        audit: listed.entries,
        omitted: listed.omitted,
        receipts: Vec::new(),
        collectors: Vec::new(),
        now,
    };
    for program in &selection.programs {
        inputs
            .receipts
            .extend(session.list_receipts(program, from, to).await?);
        inputs.collectors.push(
            session
                .list_collectors(program, crate::input::CollectorFilter::All)
                .await?,
        );
    }
    incident_report::build(query, &selection, inputs)
}

/// `killswitch report verify FILE --ca CA.pem [--require-signed]`: offline. The verdict
/// on stdout; a report that does not verify is exit 1, one that cannot be read exit 2.
pub fn report_verify(
    args: &ReportVerifyArgs,
    ca: Option<&Path>,
    format: OutputFormat,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let ca = ca.ok_or_else(|| {
        Error::usage(
            "report verify needs --ca CA.pem: the CA that issued the collectors' certificates",
        )
    })?;
    let read = |path: &Path, what: &str| {
        std::fs::read(path)
            .map_err(|err| Error::usage(format!("cannot read {what} {}: {err}", path.display())))
    };
    let evidence = incident_report::verify::read_evidence(&read(&args.file, "the report")?)
        .map_err(|why| {
            Error::usage(format!(
                "cannot read {} as a report: {why}",
                args.file.display()
            ))
        })?;
    let anchors = incident_report::verify::read_ca(&read(ca, "--ca")?)
        .map_err(|why| Error::usage(format!("cannot use --ca {}: {why}", ca.display())))?;
    match incident_report::verify::verify(&evidence, &anchors, args.require_signed) {
        Ok(verified) => out.write(&output::report_verdict(&verified, format)?),
        Err(failure) => {
            let problem = failure.to_string();
            out.write(&output::report_failure(&problem, format)?)?;
            Err(Error::new(
                Exit::Error,
                format!("report does NOT verify: {problem}"),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use killswitch_proto::v1;

    use super::*;

    fn scoped(generation: u64) -> StateView {
        StateView::from(v1::ProgramState {
            program: "demo".to_owned(),
            state: v1::RunState::Running.into(),
            generation,
            scope: "region=apac".to_owned(),
            ..v1::ProgramState::default()
        })
    }

    #[test]
    fn a_scoped_change_that_matched_nobody_exits_5() {
        let err = matched_any(Matched::Known(0), &scoped(9)).unwrap_err();
        assert_eq!(
            (err.exit().code(), err.label(), err.message()),
            (
                5,
                "warning",
                "the scope region=apac matched no connected collector of demo: the change is \
                 stored (generation 9) and applies to collectors that connect later with \
                 matching labels"
            )
        );
        assert!(matched_any(Matched::Known(1), &scoped(9)).is_ok());
        assert!(matched_any(Matched::Unknown, &scoped(9)).is_ok());
    }

    #[test]
    fn a_drill_that_matched_nobody_exits_5() {
        let view = |matched: Option<u64>| DrillView {
            program: "demo".to_owned(),
            selector: "region=mars".to_owned(),
            drill_generation: 14,
            restore_generation: Some(15),
            collectors: matched.unwrap_or(0),
            matched,
            acked: 0,
            safe: true,
            time_to_safe_ms: None,
            observed_ms: None,
            restored: true,
            drill_status: None,
            restore_status: None,
        };
        let err = tested_any(&view(Some(0))).unwrap_err();
        assert_eq!(
            (err.exit(), err.label(), err.message()),
            (
                Exit::NoMatch,
                "error",
                "no connected collector of demo matches region=mars: the drill tested nothing \
                 (check the labels with `killswitch collectors demo`)"
            )
        );
        assert!(tested_any(&view(Some(2))).is_ok());
        assert!(tested_any(&view(None)).is_ok());
    }
}
