//! The command line, as clap derive definitions. Values are parsed into the validated
//! types of [`crate::input`], so clap reports bad input as a usage error (exit 2).
//!
//! [`command`] is the whole command line: [`Cli`]'s commands plus [`Generate`]'s
//! `completions` and `man`, which describe the command line itself and need nothing else;
//! [`parse`] tells them apart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::builder::Resettable;
use clap::{ArgGroup, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::Shell;

use crate::exit::{Error, Exit};
use crate::sink::Sink;

use crate::exit::EXIT_CODES_HELP;
use crate::input::{
    Actor, BearerToken, CollectorFilter, EndpointUrl, Grace, LostContact, MAX_AUDIT_LIMIT,
    ProgramName, Reason, SelectorArg, Since, Stages, parse_interval, parse_request_id,
    parse_timeout, parse_ttl, parse_wait,
};
use crate::output::OutputFormat;
use crate::report::Query;
use crate::view::PolicyView;

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

    /// Time allowed to connect, and for each request (e.g. 10s, 500ms, 1m); a stream
    /// (--wait, --watch) only needs to start within it
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_TIMEOUT,
        value_name = "DURATION",
        value_parser = parse_timeout,
    )]
    pub timeout: Duration,

    /// Who is acting, recorded in the audit by a control plane run with --insecure-dev;
    /// over TLS the audit records the authenticated operator instead [default: $USER,
    /// else "unknown"]
    #[arg(
        long,
        global = true,
        env = "KILLSWITCH_ACTOR",
        value_name = "NAME",
        value_parser = Actor::parse,
    )]
    pub actor: Option<Actor>,

    /// How to check the control plane and prove who you are (https:// endpoints).
    #[command(flatten)]
    pub credentials: Credentials,
}

/// TLS files and bearer token, for `https://` endpoints.
#[derive(Debug, Clone, Default, Args)]
pub struct Credentials {
    /// PEM CA certificate that signed the control plane's certificate (required for
    /// https:// endpoints); for `report verify`, the CA that issued the collectors'
    /// certificates
    #[arg(long, global = true, env = "KILLSWITCH_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// PEM client certificate that identifies you (with --key)
    #[arg(long, global = true, env = "KILLSWITCH_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert
    #[arg(long, global = true, env = "KILLSWITCH_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Bearer token that identifies you, instead of --cert and --key (sent only over
    /// https://)
    #[arg(
        long,
        global = true,
        env = "KILLSWITCH_TOKEN",
        value_name = "TOKEN",
        value_parser = BearerToken::parse,
        hide_env_values = true,
    )]
    pub token: Option<BearerToken>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and inspect programs
    #[command(subcommand)]
    Program(ProgramCommand),

    /// Stop a program from collecting, fleet-wide or on the collectors a selector matches
    #[command(after_help = format!("{SELECTOR_HELP}\n\n{WAIT_HELP}"))]
    Pause(PauseArgs),

    /// Let a paused program collect again (or request it, when it needs two operators)
    #[command(after_help = format!("{SELECTOR_HELP}\n\n{STAGES_HELP}\n\n{APPROVAL_HELP}\n\n{WAIT_HELP}"))]
    Resume(ResumeArgs),

    /// Act on a staged resume in progress
    #[command(subcommand)]
    Rollout(RolloutCommand),

    /// Emergency stop of every program for every collector, or clear it (admins only)
    #[command(after_help = STOP_ALL_HELP)]
    StopAll(StopAllArgs),

    /// Rehearse a pause: pause the selected collectors, check they all confirm, restore
    #[command(after_help = DRILL_HELP)]
    Drill(DrillArgs),

    /// Approve another operator's resume request: the program resumes
    #[command(after_help = WAIT_HELP)]
    Approve(ApproveArgs),

    /// Show a program's state and which collectors have acknowledged it
    Status(StatusArgs),

    /// List a program's connected collectors, from every control replica
    #[command(after_help = COLLECTORS_HELP)]
    Collectors(CollectorsArgs),

    /// Create development certificates (works offline)
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),

    /// Create operator bearer tokens (works offline)
    #[command(subcommand)]
    Token(crate::token::TokenCommand),

    /// Create operator signing keys for resumes (works offline)
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),

    /// Show who changed what, when and why; `audit verify` checks nothing was tampered with
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),

    /// Make a control replica read its TLS certificate, key, client CA and auth file again
    /// (admins only)
    #[command(after_help = RELOAD_HELP)]
    Reload(ReloadArgs),

    /// After an incident: who paused, who confirmed and how fast, with the signed evidence;
    /// `report verify` checks a report offline
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),

    /// Serve the web console on this machine: every program, a live view of each pause,
    /// the audit log and reports, and the actions your role allows, under your name
    #[command(after_help = CONSOLE_HELP)]
    Console(ConsoleArgs),
}

/// After `console --help`.
const CONSOLE_HELP: &str = "\
The console talks to the control plane with your credentials (--endpoint, --ca, --cert
and --key or --token, exactly as every other command), so every action it takes is
audited under your name and refused when your role does not allow it. Open the URL it
prints; stop it with Ctrl-C.

It listens on 127.0.0.1:8080 unless told otherwise, and only accepts requests addressed
to that loopback address (or localhost). Serving another address needs --allow-remote:
the console then prints a URL with an access token made for this start, and refuses
every request without it (a browser that opened the URL keeps it in a cookie).

Every change it makes asks for confirmation first, and carries the page's CSRF token:
a request without it, or from another site, is refused. With --signing-key, resumes and
approvals made on the page are signed with that key, as `resume --signing-key` does.

Examples:
  killswitch console
  killswitch console --listen 127.0.0.1:9090 --endpoint https://killswitch.internal:7443 \\
      --ca ca.pem --cert alice.pem --key alice-key.pem
  killswitch console --listen 0.0.0.0:8080 --allow-remote";

/// `killswitch console`
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Address to serve on (a loopback address unless --allow-remote)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve a non-loopback --listen address; requests then need the access token the
    /// console prints at start
    #[arg(long)]
    pub allow_remote: bool,

    /// ed25519 signing key (PKCS#8 PEM) that signs resumes and approvals made on the page
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

/// After `report --help`.
const REPORT_HELP: &str = "\
The report gathers, for an incident (--incident: its audit entries, every entry of the
same programs between the first and the last, and the stages a staged resume went
through after) or a program (--program, within --since and --until):
  - the timeline from the audit log: pauses, approvals, resumes, stages, stop-alls, drills;
  - for each change that produced a generation: the collectors in scope, how many
    confirmed and when, the stragglers and when they were last heard of, purge
    confirmations, commit-to-gate and commit-to-ack percentiles (p50, p90, p99, max) and a
    plot of confirmations against time since the commit.
Confirmation times are the collectors' own clocks, measured from the control plane's
commit time.

--output json prints the whole report, which is also the evidence: it embeds the audit
chain segment from the first relevant entry to the last (every entry between, with its
stored bytes) and every receipt as its collector signed it. --format html --out FILE
writes one self-contained page (no script, nothing fetched) that embeds the same JSON.
`killswitch report verify FILE --ca CA.pem` checks either file offline: exit 0 when the
chain segment is intact and every signed receipt chains to the CA, names its collector
and verifies; exit 1 naming the first entry or receipt that does not; exit 2 when the
file cannot be read. Unsigned receipts are listed, and fail only with --require-signed.

The control plane must keep receipts (ListReceipts); one that does not is an error
(exit 1).

Examples:
  killswitch report --incident INC-7
  killswitch report --program clickstream --since 2026-11-29T09:00:00Z --until 2h
  killswitch report --incident INC-7 --output json > inc-7.json
  killswitch report --incident INC-7 --format html --out inc-7.html
  killswitch report verify inc-7.html --ca collectors-ca.pem";

/// `killswitch report`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    /// Verify a report instead of making one
    #[command(subcommand)]
    pub command: Option<ReportCommand>,

    /// The incident: the changes made with --incident ID
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// The program (with --incident: only its changes)
    #[arg(long, value_name = "NAME", value_parser = ProgramName::parse)]
    pub program: Option<ProgramName>,

    /// Only changes at or after TIME: RFC 3339 (2026-11-29T09:00:00Z) or a duration ago
    /// (2h, 30m)
    #[arg(long, value_name = "TIME", value_parser = Since::parse)]
    pub since: Option<Since>,

    /// Only changes at or before TIME: RFC 3339 or a duration ago
    #[arg(long, value_name = "TIME", value_parser = Since::parse)]
    pub until: Option<Since>,

    /// text: the summary (or JSON with --output json); html: one self-contained page,
    /// written to --out
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Write the report to FILE instead of stdout (required with --format html)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// How `report` writes the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// The terminal summary, or the JSON report with `--output json`.
    Text,
    /// One self-contained HTML page.
    Html,
}

impl ReportArgs {
    /// The query, checked: an incident or a program, a window that is not empty, and a file
    /// for an HTML page (`format` is `--output`).
    pub fn query(&self, now: SystemTime, format: OutputFormat) -> Result<Query, Error> {
        if self.incident_id.is_none() && self.program.is_none() {
            return Err(Error::usage(
                "a report needs --incident ID or --program NAME (or both): which incident or \
                 program is it about?",
            ));
        }
        if self
            .incident_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(Error::usage("--incident is empty: give the incident's id"));
        }
        if self.format == ReportFormat::Html {
            if self.out.is_none() {
                return Err(Error::usage(
                    "--format html needs --out FILE: the page is written to a file",
                ));
            }
            if format == OutputFormat::Json {
                return Err(Error::usage(
                    "--format html and --output json both choose the format: give one (the \
                     page embeds the JSON report anyway)",
                ));
            }
        }
        let query = Query {
            incident: self.incident_id.clone(),
            program: self.program.as_ref().map(|p| p.as_str().to_owned()),
            since: self.since.map(|since| since.resolve(now)),
            until: self.until.map(|until| until.resolve(now)),
        };
        if let (Some(since), Some(until)) = (query.since, query.until) {
            if until < since {
                return Err(Error::usage(
                    "--until is before --since: the window would hold nothing",
                ));
            }
        }
        Ok(query)
    }
}

/// `killswitch report ...`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Check a report's evidence offline (JSON or HTML): the audit chain segment and every
    /// receipt's certificate, identity and signature
    #[command(after_help = REPORT_VERIFY_HELP)]
    Verify(ReportVerifyArgs),
}

/// After `report verify --help`.
const REPORT_VERIFY_HELP: &str = "\
No control plane is contacted. --ca is the CA that issued the collectors' certificates.
Exit 0 with `report verified: N receipts, M audit entries`; 1 naming the first audit entry
(seq) or receipt (collector, generation) that does not verify, and why; 2 when FILE or the
CA cannot be read.

Example:
  killswitch report verify inc-7.json --ca collectors-ca.pem --require-signed";

/// `killswitch report verify`
#[derive(Debug, Args)]
pub struct ReportVerifyArgs {
    /// The report: the JSON (--output json) or the HTML page (--format html)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// An unsigned receipt fails the verification too
    #[arg(long)]
    pub require_signed: bool,
}

/// After `reload --help`.
const RELOAD_HELP: &str = "\
Rotating a certificate, removing an operator or token, or revoking a collector
([revoked] collectors and serials in auth.toml) takes effect without a restart: the
replica --endpoint names reads every file again, new connections get the new
certificate, every call is judged by the new auth file, and the sessions of collectors
it revokes end. Other sessions stay connected. An unusable file is refused with its name
and the replica keeps the credentials it had (exit 1). Each replica reloads on its own:
run it against every replica, or send each one SIGHUP. The reload is audited.";

/// `killswitch reload`
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Option<Reason>,

    /// Incident identifier, recorded with the reload
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,
}

/// What the command line asks for: a command for the control plane (or a local one), or a
/// description of the command line itself.
#[derive(Debug)]
pub enum Invocation {
    /// One of [`Cli`]'s commands.
    Run(Box<Cli>),
    /// `completions` or `man`.
    Generate(Generate),
}

/// Commands that print the command line's own description for the shell and the manual.
/// They are added to [`Cli`] by [`command`] rather than being [`Command`]s: they need no
/// control plane, no credentials and no output format.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), or write one page per command into a directory
    #[command(after_help = MAN_HELP)]
    Man(ManArgs),
}

/// `killswitch completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// `killswitch man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write killswitch.1 and one page per command (killswitch-pause.1, ...) into DIR
    /// instead of printing killswitch.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// After `completions --help`.
const COMPLETIONS_HELP: &str = "\
Install it where your shell looks for completions, e.g.:
  bash:  killswitch completions bash > /etc/bash_completion.d/killswitch
  zsh:   killswitch completions zsh > \"${fpath[1]}/_killswitch\"
  fish:  killswitch completions fish > ~/.config/fish/completions/killswitch.fish";

/// After `man --help`.
const MAN_HELP: &str = "\
Read it with `killswitch man | man -l -`, or install the pages with
`killswitch man --dir /usr/local/share/man/man1`.";

/// The whole command line: [`Cli`] and the [`Generate`] commands.
#[must_use]
pub fn command() -> clap::Command {
    let cli = Cli::command();
    // The derive also gives the command `Generate`'s doc comment as its description:
    // keep `Cli`'s.
    let (about, long_about) = (cli.get_about().cloned(), cli.get_long_about().cloned());
    let reset =
        |text: Option<clap::builder::StyledStr>| text.map_or(Resettable::Reset, Resettable::Value);
    Generate::augment_subcommands(cli)
        .about(reset(about))
        .long_about(reset(long_about))
}

/// Parses `argv` (with the environment) into what it asks for. A usage error, `--help`
/// or `--version` comes back as clap's error, to print and exit with.
pub fn parse<I, T>(argv: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(argv)?;
    invocation(&matches)
}

fn invocation(matches: &ArgMatches) -> Result<Invocation, clap::Error> {
    match matches.subcommand_name() {
        Some(name) if Generate::has_subcommand(name) => {
            Ok(Invocation::Generate(Generate::from_arg_matches(matches)?))
        }
        _ => Ok(Invocation::Run(Box::new(Cli::from_arg_matches(matches)?))),
    }
}

impl Generate {
    /// Prints the completion script or the manual page to `out`, or writes the pages.
    pub fn run(&self, out: &mut Sink<'_>) -> Result<(), Error> {
        match self {
            Generate::Completions(args) => {
                // Rendered into memory: the generators panic if the writer fails.
                let mut script = Vec::new();
                clap_complete::generate(args.shell, &mut command(), "killswitch", &mut script);
                out.write(&String::from_utf8_lossy(&script))
            }
            Generate::Man(ManArgs { dir: None }) => {
                let mut page = Vec::new();
                clap_mangen::Man::new(command())
                    .render(&mut page)
                    .map_err(|err| {
                        Error::new(Exit::Error, format!("cannot render the manual page: {err}"))
                    })?;
                out.write(&String::from_utf8_lossy(&page))
            }
            Generate::Man(ManArgs { dir: Some(dir) }) => {
                clap_mangen::generate_to(command(), dir).map_err(|err| {
                    Error::new(
                        Exit::Error,
                        format!(
                            "cannot write the manual pages into {}: {err} (does the directory exist and can you write to it?)",
                            dir.display()
                        ),
                    )
                })?;
                out.write(&format!("wrote the manual pages into {}\n", dir.display()))
            }
        }
    }
}

/// After `audit --help`.
const AUDIT_HELP: &str = "\
Entries are listed oldest first; with --limit, the newest N that match. Times are UTC.
The table shortens long reasons; --output json shows every field whole, with the hashes.

Every change is written with an audit entry that carries the SHA-256 hash of the entry
before it. `audit verify` recomputes the whole chain from etcd: it exits 0 when it is
intact, and 1 naming the first entry that was changed, deleted or added outside the
control plane.";

/// After the `--wait` flag's help: what the wait does and how it ends.
const WAIT_HELP: &str = "\
With --wait, the change is followed until every connected collector has acknowledged its
generation with its gate in the state intended for it (exit 0). A collector that answered
but is effectively PAUSED although RUNNING is intended (it lost contact) is counted as
diverged, not as a confirmation: the wait goes on while the control plane sends it the
state again. So does it while collectors counted earlier are missing from the counts
without having disconnected (a replica's summaries may be missing). It fails with exit 1
when nothing is pending but some collectors' hooks failed, or when a newer change
supersedes it, and with exit 3 when DURATION passes first; the stragglers, diverged and
missing collectors are then named. Progress goes to stderr, the result to stdout.";

/// After `pause --help` and `resume --help`: what a selector does.
const SELECTOR_HELP: &str = "\
With --selector, only the collectors whose labels match change (e.g. 'region=emea',
'region in (emea,apac),version!=2'); the others keep their state. The last matching
scoped change wins; a pause or resume without --selector applies to every collector and
clears every scoped change. status and --wait then count only the selected collectors,
and the result says how many connected collectors the selector matched (JSON: matched;
without --wait, counted within 2s or said to be not known yet). With --wait, matching
none exits 5: the change is stored and applies to collectors that connect later with
matching labels. A selector that does not parse is refused (exit 2) and changes nothing;
the error names the column of the problem.";

/// After `resume --help`: staged resumes.
const STAGES_HELP: &str = "\
With --stages (e.g. 1%,10%,50%,100%), the resume reaches the collectors in stages, by a
stable hash of their id. The control plane starts the next stage once every collector of
the current one acknowledged without error and --interval has passed; an errored
acknowledgement aborts the resume (PAUSED for everyone). With --wait, the command
follows every stage: exit 0 once RUNNING is acknowledged everywhere, 1 if it was
aborted, 3 on timeout. `killswitch rollout abort NAME` stops it.";

/// After `stop-all --help`.
const STOP_ALL_HELP: &str = "\
stop-all pauses every program for every collector at once, whatever their state or
scoped changes, until it is cleared; programs keep their own state underneath. Clearing
returns each program to it. When any program needs two operators to resume, clearing
needs two admins: the first `stop-all --clear` prints a request id, and a second admin
runs `stop-all --clear --approve ID --reason TEXT`.

With --wait, every program is followed until all its connected collectors acknowledged
(exit 3 on timeout, naming the programs that did not get there).";

/// After `drill --help`.
const DRILL_HELP: &str = "\
A drill pauses the collectors --selector matches (audited as drill-start), waits until
every one of them acknowledged, ends the drill (drill-end: they return to the state they
had before) and waits again. It reports how many collectors took part and the time to
safe: from the drill's commit to the last collector's acknowledgement, by the control
plane's ack times (collectors' clocks), and as the CLI observed it.

Exit 0 when every selected collector confirmed both; 5 when the selector matched no
connected collector (the drill tested nothing); 1 when a hook failed or the drill could
not be ended; 3 when --wait passed first (the drill is still ended, and the stragglers
listed). Ctrl-C ends the drill before exiting. `drill NAME --selector SEL --end --reason
TEXT` ends a drill left running.";

/// After `resume --help`: two-person resumes.
const APPROVAL_HELP: &str = "\
A program created or set with --resume-approvals 2 does not resume on one operator's word:
resume records a request (exit 0) that lives for --ttl, and a different operator runs
`killswitch approve ID --reason TEXT` to resume it. A pause meanwhile voids the request.";

/// After `collectors --help`.
const COLLECTORS_HELP: &str = "\
Pending and errored are judged against the program's current generation. STATE is the
collector's gate as it acknowledged it, followed by the state the control plane intends
for it where the two differ, e.g. PAUSED (RUNNING intended) for a collector paused for
lost contact. If a control replica does not answer, its collectors are missing: the list
is printed with a warning and the exit code is 1.";

/// After `program create --help` and `program set --help`: what the policy means.
const POLICY_HELP: &str = "\
The failure policy says what collectors do when they lose contact with the control plane:
with 'pause' (fail closed) they pause by themselves once the grace period passes without a
heartbeat or update; with 'keep' (fail open) they keep the last state they received, so a
program left running goes on collecting until contact is restored.";

/// After `program set --help`.
const SET_HELP: &str = "\
A flag not given keeps its current value. Collectors receive the new policy as a new
generation; setting the policy a program already has changes nothing.";

/// `killswitch program ...`
#[derive(Debug, Subcommand)]
pub enum ProgramCommand {
    /// Register a program; it starts PAUSED until resumed
    #[command(after_help = POLICY_HELP)]
    Create(CreateArgs),

    /// List all programs and their states
    List,

    /// Show one program and its state
    Show(ShowArgs),

    /// Change what a program's collectors do when they lose contact with the control plane
    #[command(after_help = format!("{POLICY_HELP}\n\n{SET_HELP}"))]
    Set(SetArgs),
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

    /// What collectors do when they lose contact with the control plane [default: pause]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_lost_contact: Option<LostContact>,

    /// How long collectors may go without hearing from the control plane before they
    /// pause (1s to 24h, e.g. 30s, 5m) [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = Grace::parse)]
    pub grace: Option<Grace>,

    /// How many different operators a resume needs: 1, or 2 (one requests, another
    /// approves) [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2))]
    pub resume_approvals: Option<u32>,
}

impl CreateArgs {
    /// The policy to create the program with: the flags given over the default, or `None`
    /// when neither is given (the control plane applies its default).
    #[must_use]
    pub fn policy(&self) -> Option<PolicyView> {
        if self.on_lost_contact.is_none() && self.grace.is_none() {
            return None;
        }
        Some(PolicyView::default().merge(self.on_lost_contact, self.grace))
    }
}

/// `killswitch program set`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("policy")
        .args(["on_lost_contact", "grace", "resume_approvals"])
        .multiple(true)
        .required(true)
))]
pub struct SetArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// What collectors do when they lose contact with the control plane [default: current]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_lost_contact: Option<LostContact>,

    /// How long collectors may go without hearing from the control plane before they
    /// pause (1s to 24h, e.g. 30s, 5m) [default: current]
    #[arg(long, value_name = "DURATION", value_parser = Grace::parse)]
    pub grace: Option<Grace>,

    /// How many different operators a resume needs: 1 or 2 [default: current]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2))]
    pub resume_approvals: Option<u32>,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// On a program that needs two operators, a change that weakens it (fewer approvals,
    /// fail open, a longer grace) waits for another operator's approval: how long that
    /// request lives (2s to 24h)
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "15m")]
    pub ttl: Duration,
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

    /// Also ask collectors to delete buffered data not yet uploaded (whole-program pauses
    /// only)
    #[arg(long, conflicts_with = "selector")]
    pub purge: bool,

    /// Pause only the collectors whose labels match, e.g. 'region=emea'
    #[arg(long, value_name = "SELECTOR", value_parser = SelectorArg::parse)]
    pub selector: Option<SelectorArg>,

    /// Wait up to DURATION (e.g. 30s) for every connected collector to acknowledge
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,
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

    /// Wait up to DURATION (e.g. 30s) for every connected collector to acknowledge (not
    /// when the resume waits for approval); with --stages, for the last stage
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,

    /// Resume only the collectors whose labels match, e.g. 'region=emea'
    #[arg(long, value_name = "SELECTOR", value_parser = SelectorArg::parse)]
    pub selector: Option<SelectorArg>,

    /// Resume in stages: growing percentages of the collectors, the last 100%, e.g.
    /// 1%,10%,50%,100%
    #[arg(
        long,
        value_name = "PERCENTAGES",
        value_parser = Stages::parse,
        conflicts_with = "selector"
    )]
    pub stages: Option<Stages>,

    /// With --stages: the least time each stage runs before the next one starts (0s to
    /// 24h) [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, requires = "stages")]
    pub interval: Option<Duration>,

    /// How long a resume request waits for approval, for programs that need two
    /// operators (2s to 24h)
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "15m")]
    pub ttl: Duration,

    /// Sign the resume with this ed25519 key (PKCS#8, from `killswitch keys new`); required
    /// when auth.toml gives you a signing_key
    #[arg(long, env = "KILLSWITCH_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

impl ResumeArgs {
    /// The interval between stages when --stages is given without --interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
}

/// `killswitch rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Stop a staged resume: the program returns to PAUSED for every collector
    #[command(after_help = WAIT_HELP)]
    Abort(RolloutAbortArgs),
}

/// `killswitch rollout abort`
#[derive(Debug, Args)]
pub struct RolloutAbortArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// Wait up to DURATION (e.g. 30s) for every connected collector to acknowledge
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,
}

/// `killswitch stop-all`
#[derive(Debug, Args)]
pub struct StopAllArgs {
    /// Clear the stop-all: every program returns to its own state
    #[arg(long)]
    pub clear: bool,

    /// Only show whether a stop-all is active (any operator may)
    #[arg(
        long,
        conflicts_with_all = ["clear", "reason", "incident_id", "approve", "wait"]
    )]
    pub show: bool,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(
        long,
        value_name = "TEXT",
        value_parser = Reason::parse,
        required_unless_present = "show"
    )]
    pub reason: Option<Reason>,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// With --clear: approve another admin's request to clear (the id it printed)
    #[arg(long, value_name = "ID", value_parser = parse_request_id, requires = "clear")]
    pub approve: Option<String>,

    /// Wait up to DURATION (e.g. 30s) for every connected collector of every program to
    /// acknowledge
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,
}

/// `killswitch drill`
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// The collectors the drill pauses, e.g. 'region=emea'
    #[arg(long, value_name = "SELECTOR", value_parser = SelectorArg::parse)]
    pub selector: SelectorArg,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the drill
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// How long to wait for the acknowledgements, once for the drill and once for the
    /// restore (e.g. 60s)
    #[arg(long, value_name = "DURATION", value_parser = parse_wait, default_value = "60s")]
    pub wait: Duration,

    /// Only end a drill of this selector that was left running
    #[arg(long)]
    pub end: bool,
}

/// `killswitch approve`
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request id `killswitch resume` printed
    #[arg(value_name = "ID", value_parser = parse_request_id)]
    pub id: String,

    /// Why, recorded in the audit (at most 1024 bytes)
    #[arg(long, value_name = "TEXT", value_parser = Reason::parse)]
    pub reason: Reason,

    /// Incident identifier, recorded with the change
    #[arg(long = "incident", value_name = "ID")]
    pub incident_id: Option<String>,

    /// Wait up to DURATION (e.g. 30s) for every connected collector to acknowledge
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,

    /// Sign the resume with this ed25519 key (PKCS#8, from `killswitch keys new`); required
    /// when auth.toml gives you a signing_key
    #[arg(long, env = "KILLSWITCH_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

/// `killswitch status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Keep printing the status whenever it changes, until the control plane ends the
    /// stream (JSON: one document per line)
    #[arg(long)]
    pub watch: bool,
}

/// `killswitch collectors`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("filter").args(["pending", "errored"])))]
pub struct CollectorsArgs {
    /// Program name
    #[arg(value_name = "NAME", value_parser = ProgramName::parse)]
    pub name: ProgramName,

    /// Only collectors that have not acknowledged the current generation
    #[arg(long)]
    pub pending: bool,

    /// Only collectors whose hooks failed at the current generation
    #[arg(long)]
    pub errored: bool,
}

impl CollectorsArgs {
    /// The filter the flags select (clap makes them mutually exclusive).
    #[must_use]
    pub fn filter(&self) -> CollectorFilter {
        if self.pending {
            CollectorFilter::Pending
        } else if self.errored {
            CollectorFilter::Errored
        } else {
            CollectorFilter::All
        }
    }
}

/// `killswitch audit`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Verify instead of listing
    #[command(subcommand)]
    pub command: Option<AuditCommand>,

    /// Only changes to this program
    #[arg(long, value_name = "NAME", value_parser = ProgramName::parse)]
    pub program: Option<ProgramName>,

    /// Only changes at or after TIME: RFC 3339 (2026-11-29T09:00:00Z) or a duration ago
    /// (2h, 30m)
    #[arg(long, value_name = "TIME", value_parser = Since::parse)]
    pub since: Option<Since>,

    /// At most N entries, the newest (1 to 10000) [default: all, up to 10000]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_AUDIT_LIMIT)),
    )]
    pub limit: Option<u32>,
}

/// `killswitch audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain and name the first entry changed, deleted or added
    /// outside the control plane (exit 1 if there is one)
    Verify,
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
        command().debug_assert();
        assert_eq!(
            command().get_about().map(ToString::to_string),
            Cli::command().get_about().map(ToString::to_string)
        );
    }

    #[test]
    fn generate_commands_are_told_apart_from_the_others() {
        let invocation = |args: &[&str]| {
            super::parse(std::iter::once("killswitch").chain(args.iter().copied())).unwrap()
        };
        for (args, shell) in [
            (&["completions", "bash"][..], Shell::Bash),
            (&["completions", "zsh"][..], Shell::Zsh),
            (&["completions", "fish"][..], Shell::Fish),
            (&["completions", "elvish"][..], Shell::Elvish),
            (&["completions", "powershell"][..], Shell::PowerShell),
        ] {
            let Invocation::Generate(Generate::Completions(parsed)) = invocation(args) else {
                panic!("{args:?} is not completions");
            };
            assert_eq!(parsed.shell, shell, "{args:?}");
        }
        assert!(matches!(
            invocation(&["man"]),
            Invocation::Generate(Generate::Man(ManArgs { dir: None }))
        ));
        let Invocation::Run(cli) = invocation(&["status", "demo"]) else {
            panic!("status is not run");
        };
        assert!(matches!(cli.command, Command::Status(_)), "{cli:?}");
        for args in [
            &["completions"][..],
            &["completions", "tcsh"],
            &["man", "extra"],
        ] {
            let err = super::parse(std::iter::once("killswitch").chain(args.iter().copied()))
                .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
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
    fn credentials_are_global() {
        let cli = parse(&[
            "--endpoint",
            "https://127.0.0.1:7070",
            "status",
            "demo",
            "--ca",
            "ca.pem",
            "--cert",
            "me.pem",
            "--key",
            "me-key.pem",
            "--token",
            "t0k",
        ])
        .unwrap();
        let credentials = &cli.global.credentials;
        assert!(cli.global.endpoint.is_https());
        assert_eq!(
            credentials.ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(
            credentials.cert.as_deref(),
            Some(std::path::Path::new("me.pem"))
        );
        assert_eq!(
            credentials.key.as_deref(),
            Some(std::path::Path::new("me-key.pem"))
        );
        assert_eq!(
            credentials
                .token
                .as_ref()
                .unwrap()
                .authorization()
                .to_str()
                .unwrap(),
            "Bearer t0k"
        );
        assert_eq!(
            parse(&["--token", "two words", "status", "demo"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
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
        assert_eq!(args.wait, None);
    }

    #[test]
    fn create_sends_a_policy_only_when_asked() {
        use LostContact::{Keep, Pause};
        #[track_caller]
        fn check(flags: &[&str], expected: Option<(LostContact, u64)>) {
            let mut all = vec!["program", "create", "demo", "--owner", "team"];
            all.extend_from_slice(flags);
            let Command::Program(ProgramCommand::Create(args)) = parse(&all).unwrap().command
            else {
                panic!("expected program create");
            };
            let got = args.policy().map(|p| (p.on_lost_contact, p.grace_ms));
            assert_eq!(got, expected, "{flags:?}");
        }
        check(&[], None);
        check(&["--on-lost-contact", "keep"], Some((Keep, 30_000)));
        check(&["--on-lost-contact", "pause"], Some((Pause, 30_000)));
        check(&["--grace", "10s"], Some((Pause, 10_000)));
        check(&["--grace", "1s"], Some((Pause, 1_000)));
        check(&["--grace", "24h"], Some((Pause, 86_400_000)));
        check(
            &["--on-lost-contact", "keep", "--grace", "2m"],
            Some((Keep, 120_000)),
        );
    }

    #[test]
    fn set_arguments() {
        use LostContact::Keep;
        let cases: &[(&[&str], Option<LostContact>, Option<u64>)] = &[
            (&["--on-lost-contact", "keep"], Some(Keep), None),
            (&["--grace", "45s"], None, Some(45_000)),
            (
                &["--grace", "45s", "--on-lost-contact", "keep"],
                Some(Keep),
                Some(45_000),
            ),
        ];
        for (flags, on_lost_contact, grace_ms) in cases {
            let mut all = vec!["program", "set", "demo", "--reason", "owner asked"];
            all.extend_from_slice(flags);
            let Command::Program(ProgramCommand::Set(args)) = parse(&all).unwrap().command else {
                panic!("expected program set");
            };
            assert_eq!(args.name.as_str(), "demo");
            assert_eq!(args.on_lost_contact, *on_lost_contact, "{flags:?}");
            assert_eq!(args.grace.map(Grace::as_millis), *grace_ms, "{flags:?}");
            assert_eq!(args.reason.into_string(), "owner asked");
            assert_eq!(args.incident_id, None);
        }
        let cli = parse(&[
            "program",
            "set",
            "demo",
            "--grace",
            "1m",
            "--reason",
            "x",
            "--incident",
            "INC-7",
        ])
        .unwrap();
        let Command::Program(ProgramCommand::Set(args)) = cli.command else {
            panic!("expected program set");
        };
        assert_eq!(args.incident_id.as_deref(), Some("INC-7"));
    }

    #[test]
    fn wait_watch_and_filters() {
        let cli = parse(&["pause", "demo", "--reason", "leak", "--wait", "30s"]).unwrap();
        let Command::Pause(args) = cli.command else {
            panic!("expected pause, got {:?}", cli.command);
        };
        assert_eq!(args.wait, Some(Duration::from_secs(30)));

        let cli = parse(&["resume", "demo", "--reason", "ok", "--wait", "2s"]).unwrap();
        let Command::Resume(args) = cli.command else {
            panic!("expected resume, got {:?}", cli.command);
        };
        assert_eq!(args.wait, Some(Duration::from_secs(2)));

        let cli = parse(&["status", "demo", "--watch"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("expected status, got {:?}", cli.command);
        };
        assert!(args.watch);

        for (flags, filter) in [
            (&[][..], CollectorFilter::All),
            (&["--pending"][..], CollectorFilter::Pending),
            (&["--errored"][..], CollectorFilter::Errored),
        ] {
            let mut all = vec!["collectors", "demo"];
            all.extend_from_slice(flags);
            let Command::Collectors(args) = parse(&all).unwrap().command else {
                panic!("expected collectors");
            };
            assert_eq!(args.filter(), filter, "{flags:?}");
        }
    }

    #[test]
    fn targeting_arguments() {
        let Command::Pause(args) = parse(&[
            "pause",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "x",
        ])
        .unwrap()
        .command
        else {
            panic!("expected pause");
        };
        assert_eq!(args.selector.unwrap().as_str(), "region=emea");

        let Command::Resume(args) =
            parse(&["resume", "demo", "--stages", "1%,10%,100%", "--reason", "x"])
                .unwrap()
                .command
        else {
            panic!("expected resume");
        };
        assert_eq!(args.stages.unwrap().percentages(), [1, 10, 100]);
        assert_eq!(args.interval, None, "the default is applied when sending");
        assert_eq!(args.selector, None);
        let Command::Resume(args) = parse(&[
            "resume",
            "demo",
            "--stages",
            "50%,100%",
            "--interval",
            "2s",
            "--reason",
            "x",
        ])
        .unwrap()
        .command
        else {
            panic!("expected resume");
        };
        assert_eq!(args.interval, Some(Duration::from_secs(2)));

        let Command::Rollout(RolloutCommand::Abort(args)) =
            parse(&["rollout", "abort", "demo", "--reason", "x", "--wait", "5s"])
                .unwrap()
                .command
        else {
            panic!("expected rollout abort");
        };
        assert_eq!(
            (args.name.as_str(), args.wait),
            ("demo", Some(Duration::from_secs(5)))
        );

        let stop_all = |flags: &[&str]| {
            let mut all = vec!["stop-all"];
            all.extend_from_slice(flags);
            let Command::StopAll(args) = parse(&all).unwrap().command else {
                panic!("expected stop-all");
            };
            args
        };
        let set = stop_all(&["--reason", "leak", "--incident", "INC-9", "--wait", "9s"]);
        assert!(!set.clear && !set.show);
        assert_eq!(set.incident_id.as_deref(), Some("INC-9"));
        let clear = stop_all(&["--clear", "--reason", "ok", "--approve", "0badcafe"]);
        assert!(clear.clear);
        assert_eq!(clear.approve.as_deref(), Some("0badcafe"));
        let show = stop_all(&["--show"]);
        assert!(show.show && show.reason.is_none());

        let Command::Drill(args) = parse(&[
            "drill",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "drill",
        ])
        .unwrap()
        .command
        else {
            panic!("expected drill");
        };
        assert_eq!(args.selector.as_str(), "region=emea");
        assert_eq!((args.wait, args.end), (Duration::from_secs(60), false));
        let Command::Drill(args) = parse(&[
            "drill",
            "demo",
            "--selector",
            "a=b",
            "--reason",
            "x",
            "--end",
            "--wait",
            "5s",
        ])
        .unwrap()
        .command
        else {
            panic!("expected drill");
        };
        assert_eq!((args.wait, args.end), (Duration::from_secs(5), true));
    }

    #[test]
    fn targeting_usage_errors() {
        let cases: &[&[&str]] = &[
            &["pause", "demo", "--reason", "x", "--selector", ""],
            &[
                "pause",
                "demo",
                "--reason",
                "x",
                "--selector",
                "a=b",
                "--purge",
            ],
            &["resume", "demo", "--reason", "x", "--selector", " "],
            &["resume", "demo", "--reason", "x", "--stages", "10%"],
            &["resume", "demo", "--reason", "x", "--stages", "1.5%,100%"],
            &["resume", "demo", "--reason", "x", "--interval", "1s"],
            &[
                "resume",
                "demo",
                "--reason",
                "x",
                "--stages",
                "100%",
                "--interval",
                "25h",
            ],
            &[
                "resume",
                "demo",
                "--reason",
                "x",
                "--stages",
                "100%",
                "--selector",
                "a=b",
            ],
            &["rollout", "abort", "demo"],
            &["rollout", "demo", "--reason", "x"],
            &["stop-all"],
            &["stop-all", "--clear"],
            &["stop-all", "--show", "--reason", "x"],
            &["stop-all", "--show", "--clear"],
            &["stop-all", "--reason", "x", "--approve", "0badcafe"],
            &[
                "stop-all",
                "--clear",
                "--reason",
                "x",
                "--approve",
                "nothex!!",
            ],
            &["drill", "demo", "--reason", "x"],
            &["drill", "demo", "--selector", "a=b"],
            &["drill", "demo", "--selector", "", "--reason", "x"],
            &[
                "drill",
                "demo",
                "--selector",
                "a=b",
                "--reason",
                "x",
                "--wait",
                "0s",
            ],
        ];
        for args in cases {
            let err = parse(args).err();
            let err = err.unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn audit_arguments() {
        let Command::Audit(args) = parse(&["audit"]).unwrap().command else {
            panic!("expected audit");
        };
        assert!(args.command.is_none() && args.program.is_none());
        assert_eq!((args.since, args.limit), (None, None));

        let cli = parse(&[
            "audit",
            "--program",
            "demo",
            "--since",
            "2h",
            "--limit",
            "50",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("expected audit");
        };
        assert_eq!(args.program.unwrap().as_str(), "demo");
        assert_eq!(args.since, Some(Since::Ago(Duration::from_secs(7200))));
        assert_eq!(args.limit, Some(50));

        for args in [
            &["audit", "verify"][..],
            &["audit", "verify", "--output", "json"][..],
            &["--output", "json", "audit", "verify"][..],
        ] {
            let cli = parse(args).unwrap();
            let Command::Audit(audit) = cli.command else {
                panic!("expected audit");
            };
            assert!(
                matches!(audit.command, Some(AuditCommand::Verify)),
                "{args:?}"
            );
        }
    }

    #[test]
    fn report_arguments() {
        let report = |args: &[&str]| {
            let mut all = vec!["report"];
            all.extend_from_slice(args);
            let Command::Report(report) = parse(&all).unwrap().command else {
                panic!("expected report");
            };
            report
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_950_000);
        let args = report(&["--incident", "INC-7", "--since", "2h"]);
        let query = args.query(now, OutputFormat::Table).unwrap();
        assert_eq!(query.incident.as_deref(), Some("INC-7"));
        assert_eq!(query.since, Some(now - Duration::from_secs(7200)));
        assert_eq!((query.program, query.until), (None, None));
        let args = report(&["--program", "demo", "--format", "html", "--out", "r.html"]);
        assert_eq!(args.format, ReportFormat::Html);
        assert!(args.query(now, OutputFormat::Table).is_ok());

        let Some(ReportCommand::Verify(verify)) =
            report(&["verify", "r.json", "--ca", "ca.pem", "--require-signed"]).command
        else {
            panic!("expected report verify");
        };
        assert_eq!(verify.file, PathBuf::from("r.json"));
        assert!(verify.require_signed);

        for (args, format, message) in [
            (
                &["--since", "1h"][..],
                OutputFormat::Table,
                "a report needs --incident ID or --program NAME",
            ),
            (
                &["--incident", "INC-7", "--format", "html"][..],
                OutputFormat::Table,
                "--format html needs --out FILE",
            ),
            (
                &["--program", "demo", "--format", "html", "--out", "r.html"][..],
                OutputFormat::Json,
                "--format html and --output json both choose the format",
            ),
            (
                &["--program", "demo", "--since", "1h", "--until", "2h"][..],
                OutputFormat::Table,
                "--until is before --since",
            ),
            (
                &["--incident", " "][..],
                OutputFormat::Table,
                "--incident is empty",
            ),
        ] {
            let err = report(args).query(now, format).unwrap_err();
            assert_eq!(err.exit(), Exit::Usage, "{args:?}");
            assert!(
                err.message().starts_with(message),
                "{args:?}: {}",
                err.message()
            );
        }
        for args in [
            &["report", "--program", "Demo"][..],
            &["report", "--incident", "I", "--format", "pdf"][..],
            &["report", "--incident", "I", "--until", "soon"][..],
            &["report", "verify"][..],
            &["report", "--incident", "I", "verify", "r.json"][..],
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
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
            &["pause", "demo", "--reason", "x", "--wait", "0s"],
            &["pause", "demo", "--reason", "x", "--wait"],
            &["resume", "demo", "--reason", "x", "--wait", "soon"],
            &["collectors"],
            &["collectors", "demo", "--pending", "--errored"],
            &["program", "create", "demo", "--owner", "t", "--grace", "0s"],
            &[
                "program", "create", "demo", "--owner", "t", "--grace", "999ms",
            ],
            &[
                "program", "create", "demo", "--owner", "t", "--grace", "25h",
            ],
            &["program", "create", "demo", "--owner", "t", "--grace", "30"],
            &[
                "program",
                "create",
                "demo",
                "--owner",
                "t",
                "--on-lost-contact",
                "open",
            ],
            &["program", "set", "demo", "--reason", "x"],
            &["program", "set", "demo", "--on-lost-contact", "keep"],
            &[
                "program", "set", "demo", "--reason", "x", "--grace", "24h 1s",
            ],
            &[
                "program",
                "set",
                "demo",
                "--reason",
                "x",
                "--on-lost-contact",
                "PAUSE",
            ],
            &["program", "set", "--reason", "x", "--grace", "10s"],
            &["audit", "--since", "yesterday"],
            &["audit", "--since", "30"],
            &["audit", "--program", "Demo"],
            &["audit", "--limit", "0"],
            &["audit", "--limit", "10001"],
            &["audit", "--limit", "-1"],
            &["audit", "verify", "--program", "demo"],
            &["audit", "--limit", "5", "verify"],
            &["audit", "check"],
        ];
        for args in cases {
            let err = parse(args).err();
            let err = err.unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn subcommand_help_explains_wait_partial_lists_and_policy() {
        let mut cli = Cli::command();
        for (command, needle) in [
            ("pause", "exit 3 when DURATION passes"),
            ("resume", "exit 3 when DURATION passes"),
            ("collectors", "the exit code is 1"),
            ("collectors", "PAUSED (RUNNING intended)"),
            ("program create", "fail open"),
            ("program create", "1s to 24h"),
            ("program set", "A flag not given keeps its current value"),
            ("program set", "fail closed"),
            ("audit", "the newest N that match"),
            ("audit", "exits 0 when it is"),
            ("pause", "the column of the problem"),
            ("resume", "aborts the resume"),
            ("rollout abort", "exit 3 when DURATION passes"),
            ("stop-all", "needs two admins"),
            ("drill", "how many collectors took part"),
            ("drill", "Ctrl-C ends the drill"),
            ("drill", "5 when the selector matched no"),
            ("pause", "none exits 5"),
            ("resume", "how many connected collectors the selector"),
            ("pause", "effectively PAUSED although RUNNING is intended"),
            ("resume", "not as a confirmation"),
            ("approve", "without having disconnected"),
            (
                "report",
                "killswitch report --incident INC-7 --format html --out inc-7.html",
            ),
            ("report", "the collectors' own clocks"),
            ("report", "exit 2 when the"),
            ("report verify", "No control plane is contacted"),
        ] {
            let mut sub = &mut cli;
            for name in command.split(' ') {
                sub = sub.find_subcommand_mut(name).unwrap();
            }
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains(needle),
                "{command} help lacks {needle:?}:\n{help}"
            );
        }
    }

    #[test]
    fn help_documents_exit_codes_and_defaults() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "Exit codes:",
            "3  timed out waiting for acknowledgements (--wait)",
            "4  denied",
            "5  the scope matched no connected collector",
            "KILLSWITCH_ENDPOINT",
            "KILLSWITCH_ACTOR",
            DEFAULT_ENDPOINT,
            "$USER",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
