//! `killswitch report`: what happened during an incident, from the audit log and the
//! receipts collectors signed, as one document that is also the evidence for it.
//!
//! Building a report is pure: [`select`] picks the audit entries a [`Query`] is about,
//! the command fetches the receipts and collectors of the programs they name, and
//! [`build`] turns it all into a [`Report`]. `report verify` ([`verify`]) later checks the
//! [`Evidence`] a report embeds, offline.
//!
//! # Layout
//! - this file: the query, the selection of entries, the report and its JSON contract.
//! - [`evidence`]: the audit chain segment and the signed receipts, as embedded (base64).
//! - [`verify`]: `report verify`, the offline check of that evidence.
//!
//! The terminal summary and the HTML page are rendered by [`crate::output`].

pub mod evidence;
pub mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use killswitch_proto::prost::Message as _;
use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::selector::Selector;
use killswitch_proto::v1;
use serde::Serialize;

use crate::exit::{Error, Exit};
use crate::view::{AuditEntryView, CollectorListView, RunState};

pub use evidence::{AuditEvidence, Base64, Evidence, ReceiptEvidence};

/// The `format` every report carries, so `report verify` knows what it reads.
pub const FORMAT: &str = "killswitch-report-v1";

/// The program of an audit entry that concerns every program (stop-all).
pub const EVERY_PROGRAM: &str = "*";

/// The actions that commit a new state for a program, so that collectors apply a new
/// generation and send receipts for it. Others (`resume-request`, `reload`, ...) change
/// nothing collectors see.
const STATE_ACTIONS: [&str; 11] = [
    "create",
    "pause",
    "resume",
    "policy",
    "drill-start",
    "drill-end",
    "rollout-advance",
    "rollout-complete",
    "rollout-abort",
    "stop-all",
    "stop-all-clear",
];

/// The stages of a staged resume, which the rollout driver commits after the resume that
/// started it: a report on an incident follows them past its last entry.
const STAGE_ACTIONS: [&str; 2] = ["rollout-advance", "rollout-complete"];

/// What the clock caveat says, in every rendering.
pub const CLOCK_NOTE: &str = "Confirmation times are the collectors' own clocks (receipts) \
     measured from the control plane's commit time (audit): a collector whose clock is off \
     shows early or late, even before the commit.";

/// What a report is about: an incident, a program, or both, within an optional window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Only the audit entries of this incident (and the stages of its staged resumes).
    pub incident: Option<String>,
    /// Only this program (and stop-alls, which concern every program).
    pub program: Option<String>,
    /// Only entries committed at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries committed at or before this time.
    pub until: Option<SystemTime>,
}

impl Query {
    /// Whether an entry's commit time falls in the window (an entry without a time only
    /// when there is no window).
    fn in_window(&self, entry: &v1::AuditEntry) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(at) = entry.at.as_ref().and_then(system_time) else {
            return false;
        };
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at <= until)
    }

    /// The query as the report shows it.
    fn view(&self) -> QueryView {
        QueryView {
            incident: self.incident.clone(),
            program: self.program.clone(),
            since: self.since.map(stamp),
            until: self.until.map(stamp),
        }
    }

    /// The query in words, for messages: `incident INC-7, program demo`.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(incident) = &self.incident {
            parts.push(format!("incident {incident}"));
        }
        if let Some(program) = &self.program {
            parts.push(format!("program {program}"));
        }
        if let Some(since) = self.since {
            parts.push(format!("since {}", stamp(since)));
        }
        if let Some(until) = self.until {
            parts.push(format!("until {}", stamp(until)));
        }
        parts.join(", ")
    }
}

/// The audit entries a query is about, and what to fetch for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Sequence numbers of the relevant entries, ascending.
    pub seqs: Vec<u64>,
    /// The programs named by them (or by the query).
    pub programs: BTreeSet<String>,
    /// A stop-all is among them and no program was asked for: every program is concerned,
    /// so the command adds every program to `programs` before fetching receipts.
    pub every_program: bool,
    /// The lowest and highest generation the relevant changes produced (0 when none).
    pub generations: (u64, u64),
}

/// Picks the entries `query` is about from the whole audit log (oldest first).
///
/// With an incident: its entries, every entry of the same programs between the first and
/// the last of them, and the stages the rollout driver committed right after. Without one:
/// every entry of the program. Stop-alls (program `*`) count for every program. Both
/// within `since` and `until`.
pub fn select(query: &Query, audit: &[v1::AuditEntry]) -> Result<Selection, Error> {
    if query.incident.is_none() && query.program.is_none() {
        return Err(Error::usage(
            "a report needs --incident ID or --program NAME (or both): which incident or \
             program is it about?",
        ));
    }
    let of_program = |entry: &v1::AuditEntry, programs: &BTreeSet<String>, every: bool| {
        every || entry.program == EVERY_PROGRAM || programs.contains(&entry.program)
    };
    let mut programs: BTreeSet<String> = query.program.iter().cloned().collect();
    let mut every_program = false;
    let relevant: Vec<&v1::AuditEntry> = match &query.incident {
        Some(incident) => {
            let anchors: Vec<&v1::AuditEntry> = audit
                .iter()
                .filter(|e| query.in_window(e) && &e.incident_id == incident)
                .filter(|e| {
                    query
                        .program
                        .as_ref()
                        .is_none_or(|p| &e.program == p || e.program == EVERY_PROGRAM)
                })
                .collect();
            let (Some(first), Some(last)) = (anchors.first(), anchors.last()) else {
                return Err(no_entries(query));
            };
            if query.program.is_none() {
                every_program = anchors.iter().any(|e| e.program == EVERY_PROGRAM);
                programs.extend(
                    anchors
                        .iter()
                        .filter(|e| e.program != EVERY_PROGRAM)
                        .map(|e| e.program.clone()),
                );
            }
            let (first, last) = (first.seq, last.seq);
            let mut relevant: Vec<&v1::AuditEntry> = audit
                .iter()
                .filter(|e| (first..=last).contains(&e.seq) && query.in_window(e))
                .filter(|e| of_program(e, &programs, every_program))
                .collect();
            relevant.extend(stages_after(query, audit, last, &programs, every_program));
            relevant
        }
        None => audit
            .iter()
            .filter(|e| query.in_window(e) && of_program(e, &programs, false))
            .collect(),
    };
    if relevant.is_empty() {
        return Err(no_entries(query));
    }
    let generations = relevant
        .iter()
        .filter(|e| produces_generation(e))
        .map(|e| e.generation);
    let low = generations.clone().min().unwrap_or(0);
    let high = generations.max().unwrap_or(0);
    Ok(Selection {
        seqs: relevant.iter().map(|e| e.seq).collect(),
        programs,
        every_program,
        generations: (low, high),
    })
}

/// The rollout driver's stages committed after entry `last`, for each program until
/// another change of it (or a stop-all) comes.
fn stages_after<'a>(
    query: &Query,
    audit: &'a [v1::AuditEntry],
    last: u64,
    programs: &BTreeSet<String>,
    every: bool,
) -> Vec<&'a v1::AuditEntry> {
    let mut open: BTreeSet<&str> = programs.iter().map(String::as_str).collect();
    let mut stages = Vec::new();
    for entry in audit.iter().filter(|e| e.seq > last) {
        if entry.program == EVERY_PROGRAM {
            break;
        }
        let concerned = every || programs.contains(&entry.program);
        if !concerned || !open.contains(entry.program.as_str()) {
            continue;
        }
        if STAGE_ACTIONS.contains(&entry.action.as_str()) && query.in_window(entry) {
            stages.push(entry);
        } else {
            open.remove(entry.program.as_str());
        }
    }
    stages
}

fn no_entries(query: &Query) -> Error {
    Error::new(
        Exit::Error,
        format!(
            "no audit entry matches {}: check the incident id, program and times with \
             `killswitch audit`",
            query.describe()
        ),
    )
}

/// Whether an entry committed a new state that collectors acknowledge.
fn produces_generation(entry: &v1::AuditEntry) -> bool {
    entry.generation > 0 && STATE_ACTIONS.contains(&entry.action.as_str())
}

/// The selector of a scoped change, which its entry's detail names as `selector: ...`
/// (possibly followed by `; approved by ...`).
fn scoped_selector(entry: &v1::AuditEntry) -> Option<String> {
    if !["pause", "resume", "drill-start", "drill-end"].contains(&entry.action.as_str()) {
        return None;
    }
    entry
        .detail
        .split("; ")
        .find_map(|part| part.strip_prefix("selector: "))
        .map(str::to_owned)
}

/// What the command fetched for a [`Selection`].
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The whole audit log the control plane returned, oldest first, unfiltered (so the
    /// segment between the relevant entries has no gap).
    pub audit: Vec<v1::AuditEntry>,
    /// How many older entries the control plane left out of `audit`.
    pub omitted: u64,
    /// The receipts of the selected programs, for the generations of the selection.
    pub receipts: Vec<v1::SignedReceipt>,
    /// The connected collectors of each selected program, now.
    pub collectors: Vec<CollectorListView>,
    /// When the report is made.
    pub now: SystemTime,
}

/// `report --output json`: the whole report, with the evidence it is built from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: &'static str,
    /// When the report was made, RFC 3339 UTC.
    pub generated_at: String,
    /// What it is about.
    pub query: QueryView,
    /// The programs it covers.
    pub programs: Vec<String>,
    /// Counts over the whole report.
    pub totals: Totals,
    /// The relevant audit entries, oldest first: who paused, approved, resumed, staged,
    /// stopped everything or drilled, when and why.
    pub timeline: Vec<AuditEntryView>,
    /// One per program and change that produced a generation for it, oldest first.
    pub changes: Vec<ChangeReport>,
    /// [`CLOCK_NOTE`].
    pub clock_note: &'static str,
    /// What the report had to leave out or could not know, in words; empty when nothing.
    pub notes: Vec<String>,
    /// The audit chain segment and the receipts, as signed: what `report verify` checks.
    pub evidence: Evidence,
}

/// The query, as the report shows it (`null` for what was not asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryView {
    /// Incident id.
    pub incident: Option<String>,
    /// Program name.
    pub program: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
}

/// Counts over the whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Entries in the timeline.
    pub timeline_entries: usize,
    /// Entries in the embedded audit chain segment (the timeline's and those between).
    pub audit_entries: usize,
    /// First and last seq of the segment.
    pub first_seq: u64,
    /// Last seq of the segment.
    pub last_seq: u64,
    /// Receipts embedded.
    pub receipts: usize,
    /// Of which signed by the collector.
    pub signed: usize,
    /// Of which unsigned.
    pub unsigned: usize,
    /// Changes reported.
    pub changes: usize,
}

/// One change that produced a generation for one program: who it reached and how fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeReport {
    /// Program.
    pub program: String,
    /// The audit entry's seq.
    pub seq: u64,
    /// The generation collectors acknowledged.
    pub generation: u64,
    /// The audit action (`pause`, `resume`, `rollout-advance`, `stop-all`, ...).
    pub action: String,
    /// Who made it.
    pub actor: String,
    /// When it was committed (the control plane's clock), RFC 3339 with milliseconds.
    pub committed_at: Option<String>,
    /// The state it set (for a scoped change, for the collectors in its scope).
    pub state: RunState,
    /// The selector of a scoped change; `null` for the whole program.
    pub scope: Option<String>,
    /// Collectors in scope: every collector with a receipt for this generation (a scoped
    /// change: whose receipt names its selector), and the stragglers.
    pub collectors: usize,
    /// Receipts without error.
    pub confirmed: usize,
    /// Receipts whose hook failed.
    pub errored: usize,
    /// Confirmed receipts that confirm deleting buffered data.
    pub purged: usize,
    /// Collectors the report knows in scope with no receipt for this generation.
    pub stragglers: Vec<Straggler>,
    /// The earliest and latest confirmation (hook returned), collectors' clocks.
    pub first_confirmed_at: Option<String>,
    /// The latest confirmation.
    pub last_confirmed_at: Option<String>,
    /// From the commit to the gate closing or opening (receipts whose gate moved).
    pub commit_to_gate_changed_ms: Option<Percentiles>,
    /// From the commit to the hook returning (confirmed receipts).
    pub commit_to_ack_ms: Option<Percentiles>,
    /// The cumulative confirmations against time since the commit: one point per
    /// confirmation, in order.
    pub plot: Vec<PlotPoint>,
    /// Every receipt in scope, by time.
    pub receipts: Vec<ReceiptLine>,
}

/// Percentiles of durations in milliseconds (nearest rank); may be negative when a
/// collector's clock is behind the control plane's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many durations.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Of durations in microseconds; `None` for none.
    fn of(mut micros: Vec<i64>) -> Option<Self> {
        micros.sort_unstable();
        let last = *micros.last()?;
        let rank = |p: usize| {
            // Nearest rank: the smallest value with at least p% at or below it.
            let index = (p * micros.len()).div_ceil(100).saturating_sub(1);
            millis(micros[index.min(micros.len() - 1)])
        };
        Some(Self {
            count: micros.len(),
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: millis(last),
        })
    }
}

/// One point of the cumulative plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlotPoint {
    /// Milliseconds since the commit.
    pub ms: f64,
    /// Confirmations so far.
    pub confirmed: usize,
}

/// A collector in scope that sent no receipt for the generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Straggler {
    /// Collector id.
    pub collector_id: String,
    /// Its last contact: its latest receipt, or when the collector list last heard from it
    /// (acknowledged or connected); `null` when unknown.
    pub last_contact: Option<String>,
    /// Where `last_contact` comes from: `receipt` or `collectors`.
    pub last_contact_from: Option<&'static str>,
}

/// One receipt for the generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiptLine {
    /// Collector id.
    pub collector_id: String,
    /// Its gate after applying the generation.
    pub effective: RunState,
    /// Why its hooks ran.
    pub cause: String,
    /// When the gate moved (collector's clock); `null` when it did not.
    pub gate_changed_at: Option<String>,
    /// When the hook returned (collector's clock).
    pub hook_returned_at: Option<String>,
    /// Milliseconds from the commit to the gate moving.
    pub commit_to_gate_changed_ms: Option<f64>,
    /// Milliseconds from the commit to the hook returning.
    pub commit_to_ack_ms: Option<f64>,
    /// Empty when the hook succeeded.
    pub error: String,
    /// It confirmed deleting buffered data.
    pub purged: bool,
    /// Signed by the collector's certificate key.
    pub signed: bool,
}

/// A decoded receipt and whether it is signed.
struct Decoded {
    receipt: v1::Receipt,
    signed: bool,
}

/// What the report knows about one collector of a program.
#[derive(Default)]
struct Known {
    /// Latest receipt time.
    receipt: Option<SystemTime>,
    /// Latest time the collector list heard from it.
    listed: Option<SystemTime>,
    /// Its labels, when it is connected now.
    labels: Option<BTreeMap<String, String>>,
    /// The scopes its receipts named.
    scopes: BTreeSet<String>,
}

/// Builds the report for `selection` from what the command fetched.
///
/// Fails when the audit log the control plane returned does not hold every entry from the
/// first relevant one to the last (it lists at most 10,000), so the evidence would have a
/// gap.
pub fn build(query: &Query, selection: &Selection, inputs: Inputs) -> Result<Report, Error> {
    let (Some(&first), Some(&last)) = (selection.seqs.first(), selection.seqs.last()) else {
        return Err(no_entries(query));
    };
    let segment: Vec<&v1::AuditEntry> = inputs
        .audit
        .iter()
        .filter(|e| (first..=last).contains(&e.seq))
        .collect();
    check_segment(&segment, first, last, inputs.omitted)?;
    let mut notes = Vec::new();
    if segment.iter().any(|e| e.stored.is_empty()) {
        return Err(Error::new(
            Exit::Error,
            "the control plane's audit entries carry no stored bytes, so the report could \
             not be verified: upgrade every replica to a version that serves them",
        ));
    }
    let generations: BTreeSet<u64> = segment.iter().map(|e| e.generation).collect();

    let mut decoded: Vec<(Decoded, &v1::SignedReceipt)> = Vec::new();
    let (mut undecodable, mut outside) = (0usize, 0usize);
    for signed in &inputs.receipts {
        match v1::Receipt::decode(signed.receipt.as_slice()) {
            Err(_) => undecodable += 1,
            Ok(receipt)
                if !selection.programs.contains(&receipt.program)
                    || !generations.contains(&receipt.generation) =>
            {
                outside += 1;
            }
            Ok(receipt) => decoded.push((
                Decoded {
                    receipt,
                    signed: !signed.signature.is_empty(),
                },
                signed,
            )),
        }
    }
    if undecodable > 0 {
        notes.push(format!(
            "{undecodable} receipt{} from the control plane could not be decoded and {} left out",
            plural(undecodable),
            if undecodable == 1 { "is" } else { "are" }
        ));
    }
    if outside > 0 {
        notes.push(format!(
            "{outside} receipt{} for generations no entry of the audit segment records {} left out",
            plural(outside),
            if outside == 1 { "is" } else { "are" }
        ));
    }
    for list in &inputs.collectors {
        if !list.unreachable_replicas.is_empty() {
            notes.push(format!(
                "replicas {} did not answer: their connected collectors of {} are missing \
                 from the stragglers",
                list.unreachable_replicas.join(", "),
                list.program
            ));
        }
    }

    let known = known_collectors(&decoded, &inputs.collectors);
    let timeline: Vec<AuditEntryView> = segment
        .iter()
        .filter(|e| selection.seqs.binary_search(&e.seq).is_ok())
        .map(|e| AuditEntryView::from((*e).clone()))
        .collect();
    let mut changes = Vec::new();
    for entry in segment
        .iter()
        .filter(|e| selection.seqs.binary_search(&e.seq).is_ok() && produces_generation(e))
    {
        let programs: Vec<&String> = if entry.program == EVERY_PROGRAM {
            selection.programs.iter().collect()
        } else {
            selection
                .programs
                .iter()
                .filter(|p| **p == entry.program)
                .collect()
        };
        for program in programs {
            let empty = BTreeMap::new();
            let known = known.get(program).unwrap_or(&empty);
            changes.push(change_report(entry, program, &decoded, known));
        }
    }

    let signed = decoded.iter().filter(|(d, _)| d.signed).count();
    let evidence = Evidence {
        audit: segment
            .iter()
            .map(|e| AuditEvidence {
                seq: e.seq,
                generation: e.generation,
                stored: Base64(e.stored.clone()),
            })
            .collect(),
        receipts: decoded
            .iter()
            .map(|(_, signed)| ReceiptEvidence::from_wire(signed))
            .collect(),
    };
    Ok(Report {
        format: FORMAT,
        generated_at: stamp(inputs.now),
        query: query.view(),
        programs: selection.programs.iter().cloned().collect(),
        totals: Totals {
            timeline_entries: timeline.len(),
            audit_entries: segment.len(),
            first_seq: first,
            last_seq: last,
            receipts: decoded.len(),
            signed,
            unsigned: decoded.len() - signed,
            changes: changes.len(),
        },
        timeline,
        changes,
        clock_note: CLOCK_NOTE,
        notes,
        evidence,
    })
}

/// Every entry from `first` to `last`, with no gap.
fn check_segment(
    segment: &[&v1::AuditEntry],
    first: u64,
    last: u64,
    omitted: u64,
) -> Result<(), Error> {
    let mut expected = first;
    for entry in segment {
        if entry.seq != expected {
            break;
        }
        expected += 1;
    }
    if expected > last {
        return Ok(());
    }
    let cause = if omitted > 0 {
        format!(
            "the control plane left out {omitted} older entries (it lists at most 10000): \
             narrow the report with --since"
        )
    } else {
        "the control plane did not return it (it leaves out entries it cannot decode; \
         run `killswitch audit verify`)"
            .to_owned()
    };
    Err(Error::new(
        Exit::Error,
        format!(
            "cannot make the report: audit entry {expected} is missing from the segment \
             {first}..{last} it must embed: {cause}"
        ),
    ))
}

/// What the report knows about each program's collectors: from every receipt in it and
/// from the collector lists.
fn known_collectors(
    decoded: &[(Decoded, &v1::SignedReceipt)],
    lists: &[CollectorListView],
) -> BTreeMap<String, BTreeMap<String, Known>> {
    let mut known: BTreeMap<String, BTreeMap<String, Known>> = BTreeMap::new();
    for (d, _) in decoded {
        let r = &d.receipt;
        let entry = known
            .entry(r.program.clone())
            .or_default()
            .entry(r.collector_id.clone())
            .or_default();
        let at = r.hook_returned_at.as_ref().and_then(system_time);
        entry.receipt = entry.receipt.max(at);
        entry.scopes.insert(r.scope.clone());
    }
    for list in lists {
        for collector in &list.collectors {
            let entry = known
                .entry(list.program.clone())
                .or_default()
                .entry(collector.collector_id.clone())
                .or_default();
            let seen = [collector.acked_at, collector.connected_at]
                .into_iter()
                .flatten()
                .map(|t| t.system_time())
                .max();
            entry.listed = entry.listed.max(seen);
            entry.labels = Some(collector.labels.clone());
        }
    }
    known
}

/// The report on one change of one program.
fn change_report(
    entry: &v1::AuditEntry,
    program: &str,
    decoded: &[(Decoded, &v1::SignedReceipt)],
    known: &BTreeMap<String, Known>,
) -> ChangeReport {
    let commit = entry.at.as_ref().and_then(system_time);
    let scope = scoped_selector(entry);
    let for_generation: Vec<&v1::Receipt> = decoded
        .iter()
        .map(|(d, _)| &d.receipt)
        .filter(|r| r.program == program && r.generation == entry.generation)
        .collect();
    let answered: BTreeSet<&str> = for_generation
        .iter()
        .map(|r| r.collector_id.as_str())
        .collect();
    let mut in_scope: Vec<(&v1::Receipt, bool)> = decoded
        .iter()
        .filter(|(d, _)| {
            let r = &d.receipt;
            r.program == program
                && r.generation == entry.generation
                && scope.as_ref().is_none_or(|s| &r.scope == s)
        })
        .map(|(d, _)| (&d.receipt, d.signed))
        .collect();
    in_scope.sort_by_key(|(r, _)| {
        (
            r.hook_returned_at.as_ref().and_then(system_time),
            r.collector_id.clone(),
        )
    });
    let since_commit = |ts: Option<&Timestamp>| -> Option<i64> {
        let at = ts.and_then(system_time)?;
        Some(signed_micros(at, commit?))
    };
    let lines: Vec<ReceiptLine> = in_scope
        .iter()
        .map(|(r, signed)| ReceiptLine {
            collector_id: r.collector_id.clone(),
            effective: RunState::from_wire(r.effective),
            cause: r.cause.clone(),
            gate_changed_at: r.gate_changed_at.as_ref().and_then(system_time).map(stamp),
            hook_returned_at: r.hook_returned_at.as_ref().and_then(system_time).map(stamp),
            commit_to_gate_changed_ms: since_commit(r.gate_changed_at.as_ref()).map(millis),
            commit_to_ack_ms: since_commit(r.hook_returned_at.as_ref()).map(millis),
            error: r.error.clone(),
            purged: r.purged && r.error.is_empty(),
            signed: *signed,
        })
        .collect();
    let confirmed: Vec<&(&v1::Receipt, bool)> = in_scope
        .iter()
        .filter(|(r, _)| r.error.is_empty())
        .collect();
    let ack_micros: Vec<i64> = confirmed
        .iter()
        .filter_map(|(r, _)| since_commit(r.hook_returned_at.as_ref()))
        .collect();
    let gate_micros: Vec<i64> = in_scope
        .iter()
        .filter_map(|(r, _)| since_commit(r.gate_changed_at.as_ref()))
        .collect();
    let mut sorted_acks = ack_micros.clone();
    sorted_acks.sort_unstable();
    let plot = sorted_acks
        .iter()
        .enumerate()
        .map(|(i, us)| PlotPoint {
            ms: millis(*us),
            confirmed: i + 1,
        })
        .collect();
    let confirmed_times: Vec<SystemTime> = confirmed
        .iter()
        .filter_map(|(r, _)| r.hook_returned_at.as_ref().and_then(system_time))
        .collect();
    let selector = scope.as_deref().and_then(|s| Selector::parse(s).ok());
    let stragglers: Vec<Straggler> = known
        .iter()
        .filter(|(id, _)| !answered.contains(id.as_str()))
        .filter(|(_, k)| match (&scope, &selector) {
            (None, _) => true,
            (Some(scope), selector) => {
                k.scopes.contains(scope)
                    || selector
                        .as_ref()
                        .zip(k.labels.as_ref())
                        .is_some_and(|(s, labels)| s.matches(labels))
            }
        })
        .map(|(id, k)| {
            let (last_contact, from) = match (k.receipt, k.listed) {
                (Some(r), Some(l)) if l > r => (Some(l), Some("collectors")),
                (Some(r), _) => (Some(r), Some("receipt")),
                (None, Some(l)) => (Some(l), Some("collectors")),
                (None, None) => (None, None),
            };
            Straggler {
                collector_id: id.clone(),
                last_contact: last_contact.map(stamp),
                last_contact_from: from,
            }
        })
        .collect();
    ChangeReport {
        program: program.to_owned(),
        seq: entry.seq,
        generation: entry.generation,
        action: entry.action.clone(),
        actor: entry.actor.clone(),
        committed_at: commit.map(stamp),
        state: RunState::from_wire(entry.to),
        collectors: in_scope.len() + stragglers.len(),
        confirmed: confirmed.len(),
        errored: in_scope.len() - confirmed.len(),
        purged: lines.iter().filter(|l| l.purged).count(),
        first_confirmed_at: confirmed_times.iter().min().copied().map(stamp),
        last_confirmed_at: confirmed_times.iter().max().copied().map(stamp),
        commit_to_gate_changed_ms: Percentiles::of(gate_micros),
        commit_to_ack_ms: Percentiles::of(ack_micros),
        stragglers,
        scope,
        plot,
        receipts: lines,
    }
}

/// Last second `humantime` can format (9999-12-31T23:59:59Z).
const MAX_SECONDS: u64 = 253_402_300_799;

/// A wire timestamp as a time; `None` outside 1970..=9999.
fn system_time(ts: &Timestamp) -> Option<SystemTime> {
    let mut ts = *ts;
    ts.normalize();
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    if seconds > MAX_SECONDS {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// RFC 3339 UTC with milliseconds; times outside 1970..=9999 are clamped (they come only
/// from [`system_time`] and the system clock).
fn stamp(at: SystemTime) -> String {
    let max = UNIX_EPOCH + Duration::from_secs(MAX_SECONDS);
    humantime::format_rfc3339_millis(at.clamp(UNIX_EPOCH, max)).to_string()
}

/// `at - from` in microseconds, negative when `at` is earlier.
fn signed_micros(at: SystemTime, from: SystemTime) -> i64 {
    match at.duration_since(from) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Microseconds as milliseconds.
fn millis(micros: i64) -> f64 {
    // Exact up to 2^53 us (285 years).
    micros as f64 / 1000.0
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
