//! `ListAudit` and `VerifyAudit` against a real etcd: filters, tampering done directly in
//! etcd, long logs read in pages, and verification racing concurrent changes.

use std::time::Duration;

use killswitch_control::model::audit::audit_hash;
use killswitch_control::model::{FailurePolicy, Program, ProgramName, RunState};
use killswitch_control::store::{Change, Store};
use killswitch_proto::prost::Message;
use killswitch_proto::prost_types;
use killswitch_proto::v1::{self, admin_service_client::AdminServiceClient, store};
use killswitch_testkit::Etcd;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const PREFIX: &str = "/killswitch/v1";

fn audit_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}/audit/{seq:020}")
}

/// An in-process replica on a free port, and an admin client connected to it.
struct Replica {
    admin: AdminServiceClient<Channel>,
    stop: CancellationToken,
    server: JoinHandle<Result<(), killswitch_control::ServerError>>,
}

impl Replica {
    async fn start(etcd: &Etcd) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = killswitch_control::Config::new(
            vec![etcd.endpoint().to_owned()],
            "r1",
            format!("http://{addr}"),
        );
        let stop = CancellationToken::new();
        let server = tokio::spawn(killswitch_control::serve(
            config,
            listener,
            stop.clone().cancelled_owned(),
        ));
        let admin = AdminServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Self {
            admin,
            stop,
            server,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.server.await.expect("server task").expect("server ran");
    }

    async fn verify(&mut self) -> v1::VerifyAuditResponse {
        self.admin
            .verify_audit(v1::VerifyAuditRequest {})
            .await
            .expect("verify")
            .into_inner()
    }

    async fn list(
        &mut self,
        program: &str,
        since: Option<prost_types::Timestamp>,
        limit: u32,
    ) -> Vec<v1::AuditEntry> {
        let request = v1::ListAuditRequest {
            program: program.to_owned(),
            since,
            limit,
        };
        self.admin
            .list_audit(request)
            .await
            .expect("list audit")
            .into_inner()
            .entries
    }

    /// Creates `demo` and `other`, then pauses and resumes them: 6 entries. Returns the
    /// generation the pause (entry 5) produced, as its response said.
    async fn make_changes(&mut self) -> u64 {
        for name in ["demo", "other"] {
            self.admin
                .create_program(v1::CreateProgramRequest {
                    name: name.into(),
                    owner: "team".into(),
                    ..Default::default()
                })
                .await
                .expect("create");
        }
        let resume = |program: &str| v1::ResumeRequest {
            program: program.into(),
            reason: format!("{program} is safe again"),
            ..Default::default()
        };
        self.admin.resume(resume("demo")).await.expect("resume");
        self.admin.resume(resume("other")).await.expect("resume");
        let paused = self
            .admin
            .pause(v1::PauseRequest {
                program: "demo".into(),
                reason: "leaking PII".into(),
                incident_id: "INC-42".into(),
                purge: true,
                ..Default::default()
            })
            .await
            .expect("pause")
            .into_inner();
        self.admin.resume(resume("demo")).await.expect("resume");
        paused.state.expect("the paused state").generation
    }
}

fn seqs(entries: &[v1::AuditEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn changes_are_listed_oldest_first_and_verify() {
    let etcd = Etcd::start().await.expect("start etcd");
    let mut replica = Replica::start(&etcd).await;
    let empty = replica.verify().await;
    assert!(empty.ok && empty.entries_checked == 0, "{empty:?}");
    let paused_at = replica.make_changes().await;

    let verdict = replica.verify().await;
    assert_eq!(
        verdict,
        v1::VerifyAuditResponse {
            ok: true,
            entries_checked: 6,
            first_bad_seq: 0,
            problem: String::new(),
        }
    );

    let all = replica.list("", None, 0).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6]);
    let pause = &all[4];
    assert_eq!(
        (
            pause.action.as_str(),
            pause.program.as_str(),
            pause.reason.as_str(),
            pause.incident_id.as_str(),
            pause.detail.as_str(),
            pause.from(),
            pause.to(),
        ),
        (
            "pause",
            "demo",
            "leaking PII",
            "INC-42",
            "purge",
            v1::RunState::Running,
            v1::RunState::Paused
        )
    );
    assert_eq!(
        pause.generation, paused_at,
        "the entry records the generation the pause produced"
    );
    assert!(
        all.windows(2).all(|w| w[0].generation < w[1].generation),
        "every entry its own, growing generation: {all:?}"
    );
    assert_eq!(all[0].prev_hash, vec![0; 32], "entry 1 starts the chain");
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "entry {} chains",
            pair[1].seq
        );
        assert_eq!(pair[1].hash.len(), 32);
    }

    assert_eq!(seqs(&replica.list("demo", None, 0).await), [1, 3, 5, 6]);
    assert_eq!(seqs(&replica.list("other", None, 0).await), [2, 4]);
    assert_eq!(seqs(&replica.list("", None, 2).await), [5, 6], "the newest");
    assert_eq!(seqs(&replica.list("demo", None, 3).await), [3, 5, 6]);

    let since = all[3].at.expect("entries carry their time");
    let recent = replica.list("", Some(since), 0).await;
    assert_eq!(seqs(&recent), [4, 5, 6]);
    assert_eq!(seqs(&replica.list("demo", Some(since), 0).await), [5, 6]);
    let later = prost_types::Timestamp {
        seconds: all[5].at.expect("time").seconds + 60,
        nanos: 0,
    };
    assert!(replica.list("", Some(later), 0).await.is_empty());

    let bad = replica
        .admin
        .list_audit(v1::ListAuditRequest {
            program: "Demo!".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad name");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let unknown = replica
        .admin
        .list_audit(v1::ListAuditRequest {
            program: "ghost".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown program");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    replica.stop().await;
}

#[tokio::test]
async fn tampering_in_etcd_is_found_where_it_happened() {
    let etcd = Etcd::start().await.expect("start etcd");
    let mut replica = Replica::start(&etcd).await;
    replica.make_changes().await;
    let mut etcd_client = etcd.client().await.expect("etcd client");
    let read = |client: &mut etcd_client::Client, seq: u64| {
        let mut client = client.clone();
        async move {
            let response = client
                .get(audit_key(PREFIX, seq), None)
                .await
                .expect("get entry");
            let kv = response.kvs().first().expect("entry exists");
            (
                kv.value().to_vec(),
                store::AuditEntry::decode(kv.value()).expect("decode entry"),
            )
        }
    };

    // A reason rewritten after the fact.
    let (original, mut entry) = read(&mut etcd_client, 5).await;
    entry.reason = "routine maintenance".into();
    etcd_client
        .put(audit_key(PREFIX, 5), entry.encode_to_vec(), None)
        .await
        .expect("put");
    let verdict = replica.verify().await;
    assert_eq!(
        (verdict.ok, verdict.first_bad_seq, verdict.entries_checked),
        (false, 5, 4),
        "{verdict:?}"
    );
    assert_eq!(
        verdict.problem,
        "entry 5 was changed after it was written: its hash does not match its contents"
    );
    // Listing still shows what is stored: the investigator sees the forged reason.
    let listed = replica.list("", None, 0).await;
    assert_eq!(listed[4].reason, "routine maintenance");

    // ...and re-hashed to cover it up: the next entry no longer chains.
    entry.hash = audit_hash(&entry);
    etcd_client
        .put(audit_key(PREFIX, 5), entry.encode_to_vec(), None)
        .await
        .expect("put");
    let verdict = replica.verify().await;
    assert_eq!(
        (verdict.ok, verdict.first_bad_seq),
        (false, 6),
        "{verdict:?}"
    );
    assert_eq!(
        verdict.problem,
        "entry 6 does not chain to entry 5: its previous hash is not entry 5's hash"
    );

    etcd_client
        .put(audit_key(PREFIX, 5), original, None)
        .await
        .expect("restore");
    assert!(replica.verify().await.ok, "restored");

    // An entry deleted.
    etcd_client
        .delete(audit_key(PREFIX, 3), None)
        .await
        .expect("delete");
    let verdict = replica.verify().await;
    assert_eq!(
        (verdict.ok, verdict.first_bad_seq, verdict.problem.as_str()),
        (false, 3, "entry 3 is missing"),
        "{verdict:?}"
    );
    assert_eq!(seqs(&replica.list("", None, 0).await), [1, 2, 4, 5, 6]);

    replica.stop().await;
}

#[tokio::test]
async fn the_last_entry_deleted_is_caught_by_the_head() {
    let etcd = Etcd::start().await.expect("start etcd");
    let mut replica = Replica::start(&etcd).await;
    replica.make_changes().await;
    let mut client = etcd.client().await.expect("etcd client");
    client
        .delete(audit_key(PREFIX, 6), None)
        .await
        .expect("delete");
    let verdict = replica.verify().await;
    assert_eq!(
        (verdict.ok, verdict.first_bad_seq, verdict.problem.as_str()),
        (
            false,
            6,
            "the head points at entry 6 but the last entry is 5"
        ),
        "{verdict:?}"
    );
    replica.stop().await;
}

/// A deleted audit head over an existing log blocks every change (a new chain would
/// start at entry 1 and hide the old one), with an error naming the key; nothing is
/// written.
#[tokio::test]
async fn a_deleted_audit_head_blocks_changes() {
    let etcd = Etcd::start().await.expect("start etcd");
    let mut replica = Replica::start(&etcd).await;
    replica.make_changes().await;
    let mut client = etcd.client().await.expect("etcd client");
    client
        .delete(format!("{PREFIX}/audit/head"), None)
        .await
        .expect("delete the head");
    let before = etcd.dump(PREFIX).await.expect("dump");
    let refused = replica
        .admin
        .pause(v1::PauseRequest {
            program: "demo".into(),
            reason: "after the head went missing".into(),
            purge: true,
            ..Default::default()
        })
        .await
        .expect_err("no change without the head");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert!(
        refused
            .message()
            .contains(&format!("its head ({PREFIX}/audit/head) is missing")),
        "{}",
        refused.message()
    );
    let after = etcd.dump(PREFIX).await.expect("dump");
    let changed = |dump: &[(Vec<u8>, Vec<u8>)]| {
        dump.iter()
            .filter(|(key, _)| {
                let key = String::from_utf8_lossy(key);
                key.contains("/audit/") || key.contains("/state/")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(changed(&before), changed(&after), "nothing written");
    replica.stop().await;
}

/// Writes a valid chain of `n` entries and its head under `prefix`, directly.
async fn write_log(client: &mut etcd_client::Client, prefix: &str, n: u64) {
    let mut prev_hash = vec![0; 32];
    let mut ops = Vec::new();
    for seq in 1..=n {
        let mut entry = store::AuditEntry {
            seq,
            at: Some(prost_types::Timestamp {
                seconds: 1_795_942_800 + i64::try_from(seq).expect("small"),
                nanos: 0,
            }),
            actor: "loader".into(),
            action: "pause".into(),
            program: "demo".into(),
            reason: format!("change {seq}"),
            prev_hash: prev_hash.clone(),
            ..Default::default()
        };
        entry.hash = audit_hash(&entry);
        prev_hash = entry.hash.clone();
        ops.push(etcd_client::TxnOp::put(
            audit_key(prefix, seq),
            entry.encode_to_vec(),
            None,
        ));
    }
    let head = store::AuditHead {
        seq: n,
        hash: prev_hash,
    };
    ops.push(etcd_client::TxnOp::put(
        format!("{prefix}/audit/head"),
        head.encode_to_vec(),
        None,
    ));
    // etcd allows 128 operations per transaction.
    for chunk in ops.chunks(100) {
        client
            .txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await
            .expect("write log");
    }
}

#[tokio::test]
async fn long_logs_are_read_in_pages() {
    let etcd = Etcd::start().await.expect("start etcd");
    let mut client = etcd.client().await.expect("etcd client");
    let prefix = "/paged";
    write_log(&mut client, prefix, 1_234).await;
    let store = Store::from_client(client.clone(), prefix);

    let verdict = store.verify_audit().await.expect("verify");
    assert_eq!((verdict.entries_checked, verdict.problem), (1_234, None));

    let query = killswitch_control::model::audit::Query::from_wire(&v1::ListAuditRequest {
        limit: 700,
        ..Default::default()
    })
    .expect("valid query");
    let list = store.list_audit(&query).await.expect("list");
    let listed: Vec<u64> = list.entries.iter().map(|e| e.entry.seq).collect();
    assert_eq!(listed, (535..=1_234).collect::<Vec<_>>());
    assert_eq!(list.omitted, 534);

    // A problem on a later page is found there.
    client
        .delete(audit_key(prefix, 777), None)
        .await
        .expect("delete");
    let verdict = store.verify_audit().await.expect("verify");
    assert_eq!(verdict.entries_checked, 776);
    assert_eq!(
        verdict.problem.map(|p| (p.seq(), p.to_string())),
        Some((777, "entry 777 is missing".to_owned()))
    );
}

#[tokio::test]
async fn verification_never_sees_a_change_half_written() {
    let etcd = Etcd::start().await.expect("start etcd");
    let endpoints = [etcd.endpoint().to_owned()];
    let connect = || Store::connect(&endpoints, PREFIX, Duration::from_secs(5));
    let (writer, reader) = (
        connect().await.expect("connect"),
        connect().await.expect("connect"),
    );
    let name = ProgramName::parse("demo").expect("valid name");
    let program = Program {
        name: name.clone(),
        owner: "team".into(),
        description: String::new(),
        created_at: None,
        created_by: String::new(),
        policy: FailurePolicy::default(),
        resume_approvals: 1,
    };
    let change = Change {
        actor: "tester".into(),
        reason: "flip".into(),
        incident_id: String::new(),
    };
    writer
        .create_program(&program, &change)
        .await
        .expect("create");
    let flips = 60;
    let flipping = tokio::spawn(async move {
        for i in 0..flips {
            let target = if i % 2 == 0 {
                RunState::Running
            } else {
                RunState::Paused
            };
            writer
                .set_state(&name, target, false, &change)
                .await
                .expect("set state");
        }
    });
    let mut verified = 0;
    while !flipping.is_finished() {
        let verdict = reader.verify_audit().await.expect("verify");
        assert_eq!(
            verdict.problem, None,
            "after {} entries",
            verdict.entries_checked
        );
        verified += 1;
    }
    flipping.await.expect("writer");
    assert!(verified > 0);
    let verdict = reader.verify_audit().await.expect("verify");
    assert_eq!(
        (verdict.entries_checked, verdict.problem),
        (flips + 1, None)
    );
}
