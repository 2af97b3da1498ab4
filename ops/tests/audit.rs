//! `killswitch audit` and `killswitch audit verify` through the real binaries, against
//! an audit log tampered with directly in etcd, the way a runbook script would use them.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{System, parse, until};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::store;
use serde_json::{Value, json};

/// An audit entry's key under the replicas' default prefix.
fn audit_key(seq: u64) -> String {
    format!("/killswitch/v1/audit/{seq:020}")
}

/// Creates `demo` and `other`, resumes both, pauses `demo`: entries 1 to 5.
async fn five_changes(system: &System) {
    system.create("demo").await;
    system.create("other").await;
    system.change("resume", "demo").await;
    system.change("resume", "other").await;
    system.change("pause", "demo").await;
}

fn seqs(entries: &Value) -> Vec<u64> {
    entries
        .as_array()
        .expect("an array of entries")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn verify_passes_then_names_the_entry_edited_or_deleted_in_etcd() {
    let system = System::start().await;
    five_changes(&system).await;

    let (code, stdout, stderr) = system.cli(&["audit", "verify"]).await;
    assert_eq!(
        (code, stdout.as_str()),
        (0, "audit chain intact: 5 entries verified\n"),
        "{stderr}"
    );
    assert_eq!(
        system.json(&["audit", "verify"]).await,
        json!({"ok": true, "entries_checked": 5, "first_bad_seq": 0, "problem": ""})
    );

    // Someone with etcd access rewrites why demo was resumed.
    let mut etcd = system.etcd.client().await.expect("etcd client");
    let response = etcd.get(audit_key(3), None).await.expect("get entry 3");
    let original = response.kvs().first().expect("entry 3").value().to_vec();
    let mut entry = store::AuditEntry::decode(original.as_slice()).expect("decode entry 3");
    assert_eq!(entry.reason, "end-to-end test");
    entry.reason = "approved by security".into();
    etcd.put(audit_key(3), entry.encode_to_vec(), None)
        .await
        .expect("put entry 3");

    let (code, stdout, stderr) = system.cli(&["audit", "verify"]).await;
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains(
            "audit chain BROKEN at entry 3: entry 3 was changed after it was written: its \
             hash does not match its contents"
        ),
        "{stderr}"
    );
    let (code, stdout, _) = system.cli(&["audit", "verify", "--output", "json"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        parse(&stdout),
        json!({
            "ok": false,
            "entries_checked": 2,
            "first_bad_seq": 3,
            "problem": "entry 3 was changed after it was written: its hash does not match its contents",
        })
    );

    etcd.put(audit_key(3), original, None)
        .await
        .expect("restore entry 3");
    let (code, _, stderr) = system.cli(&["audit", "verify"]).await;
    assert_eq!(code, 0, "restored: {stderr}");

    // Someone deletes the entry that shows who created `other`.
    etcd.delete(audit_key(2), None)
        .await
        .expect("delete entry 2");
    let (code, stdout, _) = system.cli(&["audit", "verify", "--output", "json"]).await;
    assert_eq!(code, 1);
    let verdict = parse(&stdout);
    assert_eq!(
        (verdict["first_bad_seq"].clone(), verdict["problem"].clone()),
        (json!(2), json!("entry 2 is missing"))
    );
    let (code, _, stderr) = system.cli(&["audit", "verify"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("audit chain BROKEN at entry 2: entry 2 is missing"),
        "{stderr}"
    );
    // The listing shows the gap.
    assert_eq!(seqs(&system.json(&["audit"]).await), [1, 3, 4, 5]);
}

#[tokio::test]
async fn audit_lists_every_change_and_filters_by_program_time_and_count() {
    let system = System::start().await;
    five_changes(&system).await;

    let all = system.json(&["audit"]).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5], "oldest first");
    let pause = &all[4];
    for (field, value) in [
        ("actor", json!("responder")),
        ("action", json!("pause")),
        ("program", json!("demo")),
        ("from", json!("RUNNING")),
        ("to", json!("PAUSED")),
        ("reason", json!("end-to-end test")),
        ("incident_id", json!("")),
        ("detail", json!("")),
    ] {
        assert_eq!(pause[field], value, "{field}: {pause}");
    }
    assert!(
        pause["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{pause}"
    );
    assert_eq!(all[0]["prev_hash"], json!("0".repeat(64)));
    let entries = all.as_array().expect("array");
    for pair in entries.windows(2) {
        let hash = pair[0]["hash"].as_str().expect("hash");
        assert_eq!(hash.len(), 64, "SHA-256 in hex");
        assert_eq!(
            pair[1]["prev_hash"], hash,
            "entry {} chains",
            pair[1]["seq"]
        );
    }

    assert_eq!(
        seqs(&system.json(&["audit", "--program", "demo"]).await),
        [1, 3, 5]
    );
    assert_eq!(
        seqs(&system.json(&["audit", "--program", "other"]).await),
        [2, 4]
    );
    assert_eq!(seqs(&system.json(&["audit", "--limit", "2"]).await), [4, 5]);
    assert_eq!(
        seqs(
            &system
                .json(&["audit", "--program", "demo", "--limit", "1"])
                .await
        ),
        [5]
    );

    // --since: a duration ago, a time, and a time after every change so far.
    assert_eq!(
        seqs(&system.json(&["audit", "--since", "1h"]).await),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        seqs(
            &system
                .json(&["audit", "--since", "2000-01-01T00:00:00Z"])
                .await
        ),
        [1, 2, 3, 4, 5]
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let boundary = UNIX_EPOCH + Duration::from_secs(now.as_secs() + 1);
    until("the clock to reach the next second", || {
        SystemTime::now() >= boundary
    })
    .await;
    system.change("resume", "demo").await;
    let since = humantime::format_rfc3339_seconds(boundary).to_string();
    assert_eq!(seqs(&system.json(&["audit", "--since", &since]).await), [6]);
    assert_eq!(
        seqs(
            &system
                .json(&["audit", "--since", &since, "--program", "other"])
                .await
        ),
        Vec::<u64>::new()
    );

    let (code, stdout, stderr) = system.cli(&["audit", "--program", "demo"]).await;
    assert_eq!(code, 0, "{stderr}");
    let mut lines = stdout.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("SEQ  TIME")),
        "{stdout}"
    );
    assert_eq!(lines.count(), 4, "{stdout}");
    assert!(stdout.contains("RUNNING→PAUSED"), "{stdout}");

    // Bad input is a usage error before anything is sent; an unknown program is not
    // mistaken for one nobody changed.
    for args in [
        &["audit", "--since", "last tuesday"][..],
        &["audit", "--program", "Demo!"][..],
        &["audit", "--limit", "0"][..],
    ] {
        let (code, _, stderr) = system.cli(args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    let (code, _, stderr) = system.cli(&["audit", "--program", "ghost"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("program ghost does not exist"), "{stderr}");
}
