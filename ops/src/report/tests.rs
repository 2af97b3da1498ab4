//! Building a report and verifying its evidence, on the synthetic incident of
//! [`super::fixtures`].

use killswitch_proto::v1;

use super::fixtures::{Change, Incident, Pki, audit_log, receipt};
use super::verify::{Failure, read_ca, read_evidence, verify};
use super::*;

#[test]
fn a_report_needs_an_incident_or_a_program() {
    let err = select(&Query::default(), &[]).unwrap_err();
    assert_eq!(err.exit(), Exit::Usage);
    assert!(err.message().contains("--incident ID or --program NAME"));
}

#[test]
fn an_unknown_incident_is_an_error_that_says_where_to_look() {
    let incident = Incident::new();
    let query = Query {
        incident: Some("INC-9".to_owned()),
        ..Query::default()
    };
    let err = select(&query, &incident.audit).unwrap_err();
    assert_eq!(err.exit(), Exit::Error);
    assert_eq!(
        err.message(),
        "no audit entry matches incident INC-9: check the incident id, program and times \
         with `killswitch audit`"
    );
}

#[test]
fn an_incident_covers_its_programs_entries_and_the_stages_after_it() {
    let incident = Incident::new();
    let selection = select(&incident.query, &incident.audit).unwrap();
    // 3 pause, 5 resume-request, 6 scoped resume, 7 staged resume (INC-7), then the
    // rollout driver's 8 and 9; not 4 (another program) nor 10 (after the rollout).
    assert_eq!(selection.seqs, [3, 5, 6, 7, 8, 9]);
    assert_eq!(
        selection.programs.iter().collect::<Vec<_>>(),
        ["demo"],
        "{selection:?}"
    );
    assert!(!selection.every_program);
    assert_eq!(selection.generations, (10, 16));
}

#[test]
fn a_program_and_a_window_select_its_entries_and_stop_alls() {
    let audit = audit_log(&[
        Change("pause", "demo", RunState::Paused, "", "", 5, 0),
        Change(
            "stop-all",
            "*",
            RunState::Paused,
            "2 programs",
            "INC-1",
            6,
            1_000,
        ),
        Change("pause", "other", RunState::Paused, "", "", 7, 2_000),
        Change(
            "stop-all-clear",
            "*",
            RunState::Running,
            "",
            "INC-1",
            8,
            3_000,
        ),
        Change("resume", "demo", RunState::Running, "", "", 9, 9_000),
    ]);
    let query = Query {
        program: Some("demo".to_owned()),
        since: Some(UNIX_EPOCH + Duration::from_secs(1_795_942_801)),
        until: Some(UNIX_EPOCH + Duration::from_secs(1_795_942_803)),
        ..Query::default()
    };
    assert_eq!(select(&query, &audit).unwrap().seqs, [2, 4]);
    // An incident of stop-alls concerns every program: the command adds them.
    let query = Query {
        incident: Some("INC-1".to_owned()),
        ..Query::default()
    };
    let selection = select(&query, &audit).unwrap();
    assert!(selection.every_program);
    assert_eq!(selection.seqs, [2, 3, 4]);
}

#[test]
fn the_report_counts_confirmations_stragglers_and_percentiles() {
    let report = Incident::new().report();
    assert_eq!(
        report.totals,
        Totals {
            timeline_entries: 6,
            audit_entries: 7,
            first_seq: 3,
            last_seq: 9,
            receipts: 12,
            signed: 11,
            unsigned: 1,
            changes: 5,
        }
    );
    assert_eq!(
        report.timeline.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 5, 6, 7, 8, 9]
    );
    let generations: Vec<u64> = report.changes.iter().map(|c| c.generation).collect();
    assert_eq!(
        generations,
        [10, 13, 14, 15, 16],
        "no change for the request"
    );

    let pause = &report.changes[0];
    assert_eq!(
        (
            pause.collectors,
            pause.confirmed,
            pause.errored,
            pause.purged
        ),
        (6, 4, 0, 4)
    );
    assert_eq!(pause.scope, None);
    assert_eq!(
        pause.commit_to_ack_ms,
        Some(Percentiles {
            count: 4,
            p50: 240.0,
            p90: 480.0,
            p99: 480.0,
            max: 480.0
        })
    );
    assert_eq!(pause.commit_to_gate_changed_ms.map(|p| p.p50), Some(220.0));
    assert_eq!(
        pause
            .plot
            .iter()
            .map(|p| (p.ms, p.confirmed))
            .collect::<Vec<_>>(),
        [(120.0, 1), (240.0, 2), (360.0, 3), (480.0, 4)]
    );
    assert_eq!(
        pause.first_confirmed_at.as_deref(),
        Some("2026-11-29T09:00:00.120Z")
    );
    // c-5 never confirmed: last heard of by the collector list, later than its receipts;
    // c-6 connected later and is only in the list.
    assert_eq!(
        pause.stragglers,
        [
            Straggler {
                collector_id: "c-5".to_owned(),
                last_contact: Some("2026-11-29T09:33:20.000Z".to_owned()),
                last_contact_from: Some("collectors"),
            },
            Straggler {
                collector_id: "c-6".to_owned(),
                last_contact: Some("2026-11-29T09:41:40.000Z".to_owned()),
                last_contact_from: Some("collectors"),
            },
        ]
    );
    assert!(
        pause
            .receipts
            .iter()
            .any(|r| r.collector_id == "c-4" && !r.signed)
    );

    // The scoped resume: the emea receipts are in scope; c-3's (another scope) is not,
    // and of the rest only c-6 matches the selector.
    let scoped = &report.changes[1];
    assert_eq!(scoped.scope.as_deref(), Some("region=emea"));
    assert_eq!((scoped.collectors, scoped.confirmed), (3, 2));
    assert_eq!(
        scoped
            .stragglers
            .iter()
            .map(|s| s.collector_id.as_str())
            .collect::<Vec<_>>(),
        ["c-6"]
    );
    assert_eq!(scoped.commit_to_ack_ms.map(|p| p.max), Some(90.0));

    // The first stage had no receipts: everyone known is a straggler.
    assert_eq!(
        (
            report.changes[2].confirmed,
            report.changes[2].stragglers.len()
        ),
        (0, 6)
    );
    assert_eq!(report.changes[2].commit_to_ack_ms, None);

    let complete = &report.changes[4];
    assert_eq!(complete.action, "rollout-complete");
    assert_eq!(complete.actor, "rollout-driver@r1");
    assert_eq!((complete.confirmed, complete.errored), (4, 1));
    assert_eq!(report.evidence.audit.len(), 7);
    assert_eq!(report.evidence.receipts.len(), 12);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

#[test]
fn a_gap_in_the_listed_audit_log_refuses_the_report() {
    let incident = Incident::new();
    let (selection, mut inputs) = incident.inputs();
    inputs.audit.retain(|e| e.seq != 4);
    inputs.omitted = 0;
    let err = build(&incident.query, &selection, inputs).unwrap_err();
    assert!(
        err.message()
            .starts_with("cannot make the report: audit entry 4 is missing from the segment 3..9"),
        "{}",
        err.message()
    );
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let p = Percentiles::of((1..=100).map(|ms| ms * 1000).collect()).unwrap();
    assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    let one = Percentiles::of(vec![-1500]).unwrap();
    assert_eq!((one.count, one.p50, one.max), (1, -1.5, -1.5));
    assert_eq!(Percentiles::of(Vec::new()), None);
}

/// The incident's evidence, its CA's trust anchors, and what verify says.
fn verified(
    evidence: &Evidence,
    pki: &Pki,
    require_signed: bool,
) -> Result<verify::Verified, Failure> {
    let anchors = read_ca(pki.ca_pem().as_bytes()).unwrap();
    verify(evidence, &anchors, require_signed)
}

#[test]
fn verify_passes_on_the_report_as_made() {
    let incident = Incident::new();
    let report = incident.report();
    let verdict = verified(&report.evidence, &incident.pki, false).unwrap();
    assert_eq!(
        (verdict.receipts, verdict.signed, verdict.audit_entries),
        (12, 11, 7)
    );
    assert_eq!((verdict.first_seq, verdict.last_seq), (3, 9));
    assert_eq!(verdict.unsigned.len(), 1);
    assert_eq!(
        (
            verdict.unsigned[0].collector_id.as_str(),
            verdict.unsigned[0].generation
        ),
        ("c-4", 10)
    );
    // From the JSON file too.
    let json = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(read_evidence(json.as_bytes()).unwrap(), report.evidence);
}

#[test]
fn verify_with_require_signed_names_the_unsigned_receipt() {
    let incident = Incident::new();
    let failure = verified(&incident.report().evidence, &incident.pki, true).unwrap_err();
    assert_eq!(
        failure.to_string(),
        "the receipt of collector c-4 for generation 10: it is unsigned (the collector has \
         no certificate), and --require-signed was given"
    );
}

/// The index in the evidence of the receipt of `collector` for `generation`.
fn receipt_index(evidence: &Evidence, collector: &str, generation: u64) -> usize {
    evidence
        .receipts
        .iter()
        .position(|r| {
            let r = v1::Receipt::decode(r.receipt.0.as_slice()).unwrap();
            r.collector_id == collector && r.generation == generation
        })
        .unwrap()
}

#[test]
fn verify_fails_on_a_receipt_with_one_byte_changed() {
    let incident = Incident::new();
    let mut evidence = incident.report().evidence;
    let i = receipt_index(&evidence, "c-2", 16);
    // The last byte is in the SDK version string: it still decodes, but as something the
    // collector did not sign.
    let bytes = &mut evidence.receipts[i].receipt.0;
    *bytes.last_mut().unwrap() ^= 0x01;
    let failure = verified(&evidence, &incident.pki, false).unwrap_err();
    let message = failure.to_string();
    assert!(
        message.starts_with(
            "the receipt of collector c-2 for generation 16: its signature does not verify \
             with ecdsa-p256-sha256 and its certificate's key"
        ),
        "{message}"
    );
}

#[test]
fn verify_fails_on_a_receipt_signed_by_a_certificate_of_another_ca() {
    let incident = Incident::new();
    let mut evidence = incident.report().evidence;
    let i = receipt_index(&evidence, "c-1", 10);
    let forger = Pki::new("another CA").collector("c-1");
    let forged = forger.sign(&receipt(
        "c-1",
        10,
        v1::RunState::Paused,
        "",
        Some(100),
        120,
        "",
        true,
    ));
    evidence.receipts[i] = ReceiptEvidence::from_wire(&forged);
    let message = verified(&evidence, &incident.pki, false)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "the receipt of collector c-1 for generation 10: its certificate does not chain \
             to the CA in --ca for client authentication at 2026-11-29T09:00:00.120Z"
        ),
        "{message}"
    );
}

#[test]
fn verify_fails_on_a_receipt_signed_with_another_collectors_certificate() {
    let incident = Incident::new();
    let mut evidence = incident.report().evidence;
    let i = receipt_index(&evidence, "c-1", 16);
    let c2 = incident.pki.collector("c-2");
    let r = v1::Receipt::decode(evidence.receipts[i].receipt.0.as_slice()).unwrap();
    evidence.receipts[i] = ReceiptEvidence::from_wire(&c2.sign(&r));
    assert_eq!(
        verified(&evidence, &incident.pki, false)
            .unwrap_err()
            .to_string(),
        "the receipt of collector c-1 for generation 16: its certificate is collector \
         \"c-2\"'s, not \"c-1\"'s"
    );
}

#[test]
fn verify_fails_on_a_removed_or_edited_audit_entry() {
    let incident = Incident::new();
    let report = incident.report();

    let mut removed = report.evidence.clone();
    removed.audit.retain(|e| e.seq != 5);
    assert_eq!(
        verified(&removed, &incident.pki, false).unwrap_err(),
        Failure::Entry {
            seq: 5,
            problem: "it is missing: the segment goes from entry 4 to entry 6".to_owned()
        }
    );

    let mut edited = report.evidence.clone();
    let mut entry = v1::store::AuditEntry::decode(edited.audit[2].stored.0.as_slice()).unwrap();
    entry.reason = "approved by security".to_owned();
    edited.audit[2].stored = Base64(entry.encode_to_vec());
    assert_eq!(
        verified(&edited, &incident.pki, false)
            .unwrap_err()
            .to_string(),
        "audit entry 5: its hash does not match its contents: it was changed after it was \
         written"
    );

    // Rehashed after the edit, it no longer links to the entry before... from the next.
    entry.hash = verify::audit_hash(&entry);
    edited.audit[2].stored = Base64(entry.encode_to_vec());
    assert_eq!(
        verified(&edited, &incident.pki, false)
            .unwrap_err()
            .to_string(),
        "audit entry 6: its prev_hash is not the hash of entry 5: the chain is broken there"
    );
}

#[test]
fn verify_fails_on_a_receipt_for_a_generation_the_segment_does_not_record() {
    let incident = Incident::new();
    let mut evidence = incident.report().evidence;
    let c1 = incident.pki.collector("c-1");
    let stray = receipt("c-1", 99, v1::RunState::Paused, "", None, 5_000, "", false);
    evidence
        .receipts
        .push(ReceiptEvidence::from_wire(&c1.sign(&stray)));
    let message = verified(&evidence, &incident.pki, false)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "the receipt of collector c-1 for generation 99: no audit entry of the report \
             produced generation 99"
        ),
        "{message}"
    );
}

#[test]
fn unreadable_files_say_why() {
    for (bytes, needle) in [
        (&b"\xff\xfe"[..], "not UTF-8"),
        (b"hello", "neither a JSON report nor an HTML report"),
        (b"{\"format\": 1}", "not a killswitch report"),
        (
            b"{\"format\": \"v0\", \"evidence\": {\"audit\": [], \"receipts\": []}}",
            "its format is \"v0\"",
        ),
        (
            b"<html><script type=\"application/json\" id=\"evidence\">{",
            "is not closed",
        ),
    ] {
        let err = read_evidence(bytes).unwrap_err();
        assert!(err.contains(needle), "{err}");
    }
    assert!(
        read_ca(b"not pem")
            .unwrap_err()
            .contains("no PEM certificate")
    );
}
