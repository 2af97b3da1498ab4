//! Collectors' receipts through real replicas, a real etcd and raw gRPC collectors (not
//! the SDK): a replica counts an Ack only if its receipt matches it and, over TLS, is
//! signed with the session's own certificate; the receipts of counted Acks are in etcd
//! before status counts them, so a replica killed right after loses none; ListReceipts
//! pages through them by generation; a pause costs a bounded number of receipt writes.

mod common;

use std::time::{Duration, SystemTime};

use common::raw::{RawCollector, poll};
use common::{PREFIX, change, create_running, name, store};
use etcd_client::GetOptions;
use killswitch_control::model::RunState;
use killswitch_control::model::receipts::{self, CHUNK_BYTES, RESPONSE_BYTES};
use killswitch_control::store::Store;
use killswitch_proto::prost::Message;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use killswitch_proto::v1::{self, ListReceiptsRequest, control_message};
use killswitch_testkit::{Etcd, Replica, free_addr, http_request, metric_value};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TRUST_DOMAIN: &str = "killswitch.local";
const TOKEN: &str = "receipts-test-token-0123456789abcdef";

/// A CA, the replicas' certificate and an `auth.toml` with one admin (a bearer token).
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, "receipts test CA");
        ca.distinguished_name = subject;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".into()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server.subject_alt_names.push(SanType::URI(
            format!("spiffe://{TRUST_DOMAIN}/replica/test")
                .try_into()
                .expect("URI"),
        ));
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server.signed_by(&server_key, &issuer).expect("server");
        let hash: String = ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let auth = format!(
            "trust_domain = \"{TRUST_DOMAIN}\"\n\n[[operator]]\nname = \"tester\"\n\
             role = \"admin\"\ntoken_sha256 = \"{hash}\"\n"
        );
        for (file, contents) in [
            ("ca.pem", ca_pem.clone()),
            ("server.pem", server_cert.pem()),
            ("server-key.pem", server_key.serialize_pem()),
            ("auth.toml", auth),
        ] {
            std::fs::write(dir.path().join(file), contents).expect("write PKI file");
        }
        Self {
            dir,
            issuer,
            ca_pem,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// A TLS replica on `etcd`.
    fn replica(&self, etcd: &Etcd, extra: &[&str]) -> Replica {
        let files = [
            ("--tls-cert", "server.pem"),
            ("--tls-key", "server-key.pem"),
            ("--client-ca", "ca.pem"),
            ("--auth-file", "auth.toml"),
        ];
        let mut args: Vec<String> = files
            .iter()
            .flat_map(|(flag, file)| [(*flag).to_owned(), self.path(file)])
            .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Replica::start(etcd.endpoint(), &args).expect("start TLS replica")
    }

    /// A collector identity: its certificate for `id` and its signing key.
    fn collector(&self, id: &str) -> Signer {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, id);
        params.distinguished_name = subject;
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{TRUST_DOMAIN}/collector/{id}")
                .try_into()
                .expect("URI"),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("collector key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("collector cert");
        Signer::new(id, cert.der().to_vec(), cert.pem(), &key)
    }
}

/// A collector's certificate and key, which signs its receipts.
struct Signer {
    id: String,
    certificate: Vec<u8>,
    identity: Option<Identity>,
    key: EcdsaKeyPair,
}

impl Signer {
    fn new(id: &str, certificate: Vec<u8>, pem: String, key: &KeyPair) -> Self {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("PKCS#8 key");
        Self {
            id: id.to_owned(),
            certificate,
            identity: Some(Identity::from_pem(pem, key.serialize_pem())),
            key: pair,
        }
    }

    /// A collector without TLS, signing with a self-signed certificate of its own.
    fn plain(id: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![id.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let mut signer = Self::new(id, cert.der().to_vec(), cert.pem(), &key);
        signer.identity = None;
        signer
    }

    fn sign(&self, receipt: Vec<u8>) -> v1::SignedReceipt {
        let signature = self
            .key
            .sign(
                &SystemRandom::new(),
                &killswitch_proto::receipt_signed_bytes(&receipt),
            )
            .expect("sign");
        v1::SignedReceipt {
            receipt,
            signature: signature.as_ref().to_vec(),
            certificate: self.certificate.clone(),
            algorithm: "ecdsa-p256-sha256".into(),
            unsigned_reason: String::new(),
        }
    }
}

/// The receipt `collector` writes for a pause of `program` at `generation`.
fn receipt(collector: &str, program: &str, generation: u64) -> v1::Receipt {
    v1::Receipt {
        collector_id: collector.into(),
        program: program.into(),
        generation,
        effective: v1::RunState::Paused as i32,
        cause: "update".into(),
        hook_returned_at: Some(killswitch_proto::timestamp(SystemTime::now())),
        sdk_version: "raw-test".into(),
        ..Default::default()
    }
}

fn unsigned(receipt: &v1::Receipt, padding: usize) -> v1::SignedReceipt {
    v1::SignedReceipt {
        receipt: receipt.encode_to_vec(),
        unsigned_reason: format!("no certificate{}", " ".repeat(padding)),
        ..Default::default()
    }
}

/// Opens a raw session of `signer` following `program` (over TLS with its certificate
/// when it has one).
async fn connect(replica: &Replica, ca_pem: &str, signer: &Signer, program: &str) -> RawCollector {
    let mut endpoint = Endpoint::from_shared(replica.endpoint())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5));
    if let Some(identity) = &signer.identity {
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .identity(identity.clone())
                    .domain_name("127.0.0.1"),
            )
            .expect("TLS config");
    }
    let channel = endpoint.connect().await.expect("connect");
    RawCollector::open(channel, &signer.id, &[program]).await
}

/// The generation of the next state sent (Snapshot or Update).
async fn next_generation(session: &mut RawCollector) -> u64 {
    match session.next_state().await {
        control_message::Msg::Snapshot(snapshot) => {
            snapshot.states.first().expect("a state").generation
        }
        control_message::Msg::Update(update) => update.state.expect("a state").generation,
        other => panic!("expected a state, got {other:?}"),
    }
}

/// How many Acks of `generation` without error every replica's published summary counts.
async fn counted(store: &Store, program: &str, generation: u64) -> u64 {
    let (_, summaries, _) = store
        .read_status(&name(program))
        .await
        .expect("read status")
        .expect("program exists");
    summaries
        .iter()
        .flat_map(|s| &s.summary.generations)
        .filter(|g| g.generation == generation)
        .map(|g| g.ok)
        .sum()
}

/// Pauses `program` (running); its new generation.
async fn pause(store: &Store, program: &str) -> u64 {
    set(store, program, RunState::Paused).await
}

async fn set(store: &Store, program: &str, state: RunState) -> u64 {
    store
        .set_state(&name(program), state, false, &change("tester", "receipts"))
        .await
        .expect("change state")
        .state
        .generation
}

/// Every receipt ListReceipts returns through `replica`, and the responses' sizes.
async fn list(
    replica: &Replica,
    ca_pem: Option<&str>,
    request: ListReceiptsRequest,
) -> Result<(Vec<v1::SignedReceipt>, Vec<usize>), tonic::Status> {
    let mut endpoint = Endpoint::from_shared(replica.endpoint()).expect("endpoint");
    if let Some(ca_pem) = ca_pem {
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .domain_name("127.0.0.1"),
            )
            .expect("TLS config");
    }
    let channel: Channel = endpoint.connect().await.expect("connect admin");
    let mut client = AdminServiceClient::new(channel);
    let mut request = tonic::Request::new(request);
    let metadata = request.metadata_mut();
    if ca_pem.is_some() {
        metadata.insert(
            "authorization",
            format!("Bearer {TOKEN}").parse().expect("header"),
        );
    } else {
        metadata.insert(
            killswitch_proto::contract::ACTOR_METADATA,
            "tester".parse().expect("header"),
        );
    }
    let mut stream = client.list_receipts(request).await?.into_inner();
    let (mut receipts, mut sizes) = (Vec::new(), Vec::new());
    while let Some(response) = stream.message().await? {
        sizes.push(response.encoded_len());
        receipts.extend(response.receipts);
    }
    Ok((receipts, sizes))
}

fn decoded(signed: &v1::SignedReceipt) -> v1::Receipt {
    v1::Receipt::decode(signed.receipt.as_slice()).expect("a receipt")
}

async fn refused(metrics: std::net::SocketAddr, reason: &str, collector: &str) -> f64 {
    let (_, _, body) = http_request(metrics, "GET", "/metrics")
        .await
        .expect("scrape");
    let series =
        format!("killswitch_refused_acks_total{{reason=\"{reason}\",collector=\"{collector}\"}}");
    metric_value(&body, &series).unwrap_or(0.0)
}

/// Over TLS, only an Ack whose receipt is signed with the session's own certificate and
/// says what the Ack says counts; the others are refused and metered by reason.
#[tokio::test]
async fn a_replica_counts_only_acks_with_a_consistent_receipt_signed_by_the_session() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create_running(&store, "demo").await;
    let pki = Pki::new();
    let metrics = free_addr().expect("free port");
    let metrics_flag = format!("--metrics-listen={metrics}");
    let replica = pki.replica(&etcd, &[&metrics_flag]);
    let c1 = pki.collector("c1");
    let c2 = pki.collector("c2");
    let mut session = connect(&replica, &pki.ca_pem, &c1, "demo").await;
    next_generation(&mut session).await;
    let generation = pause(&store, "demo").await;
    assert_eq!(next_generation(&mut session).await, generation);

    let mine = receipt("c1", "demo", generation);
    // Signed with another collector's key and certificate.
    session
        .ack(
            "demo",
            generation,
            v1::RunState::Paused,
            Some(c2.sign(mine.encode_to_vec())),
        )
        .await;
    // One byte of the signed receipt edited (a letter of its cause).
    let mut edited = c1.sign(mine.encode_to_vec());
    let at = edited
        .receipt
        .windows(6)
        .position(|w| w == b"update")
        .expect("the cause");
    edited.receipt[at] = b'U';
    session
        .ack("demo", generation, v1::RunState::Paused, Some(edited))
        .await;
    // Another collector's id, signed with this session's key.
    let theirs = c1.sign(receipt("c2", "demo", generation).encode_to_vec());
    session
        .ack("demo", generation, v1::RunState::Paused, Some(theirs))
        .await;
    // Unsigned, although the session has a certificate.
    session
        .ack(
            "demo",
            generation,
            v1::RunState::Paused,
            Some(unsigned(&mine, 0)),
        )
        .await;

    let expected = [
        ("receipt-certificate", 1.0),
        ("receipt-signature", 1.0),
        ("receipt-mismatch", 1.0),
        ("receipt-unsigned", 1.0),
    ];
    poll("the refusals to be metered", || async {
        for (reason, count) in expected {
            if refused(metrics, reason, "c1").await != count {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(counted(&store, "demo", generation).await, 0, "none counted");

    let valid = c1.sign(mine.encode_to_vec());
    session
        .ack(
            "demo",
            generation,
            v1::RunState::Paused,
            Some(valid.clone()),
        )
        .await;
    poll("the valid Ack to be counted", || async {
        (counted(&store, "demo", generation).await == 1).then_some(())
    })
    .await;
    let request = ListReceiptsRequest {
        program: "demo".into(),
        ..Default::default()
    };
    let (listed, _) = list(&replica, Some(&pki.ca_pem), request)
        .await
        .expect("list receipts");
    assert_eq!(listed, [valid], "only the valid receipt is kept");
    for (reason, count) in expected {
        assert_eq!(refused(metrics, reason, "c1").await, count, "{reason}");
    }
}

/// Status counts 20 Acks on two replicas; one is SIGKILLed at once: the survivor lists
/// all 20 signed receipts.
#[tokio::test]
async fn no_counted_receipt_is_lost_when_a_replica_is_killed() {
    const COLLECTORS: usize = 20;
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create_running(&store, "demo").await;
    let pki = Pki::new();
    let doomed = pki.replica(&etcd, &[]);
    let survivor = pki.replica(&etcd, &[]);
    let signers: Vec<Signer> = (0..COLLECTORS)
        .map(|i| pki.collector(&format!("c{i:02}")))
        .collect();
    let mut sessions = Vec::new();
    for (i, signer) in signers.iter().enumerate() {
        let replica = if i % 2 == 0 { &doomed } else { &survivor };
        let mut session = connect(replica, &pki.ca_pem, signer, "demo").await;
        next_generation(&mut session).await;
        sessions.push(session);
    }
    let generation = pause(&store, "demo").await;
    for (session, signer) in sessions.iter_mut().zip(&signers) {
        assert_eq!(next_generation(session).await, generation);
        let signed = signer.sign(receipt(&signer.id, "demo", generation).encode_to_vec());
        session
            .ack("demo", generation, v1::RunState::Paused, Some(signed))
            .await;
    }
    poll("status to count every Ack", || async {
        (counted(&store, "demo", generation).await == COLLECTORS as u64).then_some(())
    })
    .await;
    drop(doomed); // SIGKILL, at once.

    let request = ListReceiptsRequest {
        program: "demo".into(),
        from_generation: generation,
        to_generation: generation,
    };
    let (listed, _) = list(&survivor, Some(&pki.ca_pem), request)
        .await
        .expect("list receipts");
    let mut collectors: Vec<String> = listed
        .iter()
        .map(|signed| {
            receipts::verify(signed).expect("a valid signature");
            let receipt = decoded(signed);
            assert_eq!(receipt.generation, generation);
            receipt.collector_id
        })
        .collect();
    collectors.sort();
    let expected: Vec<String> = signers.iter().map(|s| s.id.clone()).collect();
    assert_eq!(collectors, expected, "every receipt, once");
}

/// ListReceipts: generation order across pages, both ends of the range, responses under
/// the size limit, NOT_FOUND and a reversed range refused.
#[tokio::test]
async fn receipts_are_listed_by_generation_in_pages() {
    const COLLECTORS: usize = 8;
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create_running(&store, "demo").await;
    let replica = Replica::start(etcd.endpoint(), &[]).expect("replica");
    let signers: Vec<Signer> = (0..COLLECTORS)
        .map(|i| Signer::plain(&format!("c{i}")))
        .collect();
    let mut sessions = Vec::new();
    for signer in &signers {
        let mut session = connect(&replica, "", signer, "demo").await;
        next_generation(&mut session).await;
        sessions.push(session);
    }
    // Four pauses: at least four chunks, more than a page of them. Receipts of about
    // 7 KiB, so one generation's take more than one response.
    let mut generations = Vec::new();
    for round in 0..4 {
        if round > 0 {
            let resumed = set(&store, "demo", RunState::Running).await;
            for session in &mut sessions {
                assert_eq!(next_generation(session).await, resumed);
            }
        }
        let generation = pause(&store, "demo").await;
        for (session, signer) in sessions.iter_mut().zip(&signers) {
            assert_eq!(next_generation(session).await, generation);
            let padded = unsigned(&receipt(&signer.id, "demo", generation), 7000);
            session
                .ack("demo", generation, v1::RunState::Paused, Some(padded))
                .await;
        }
        poll("the pause to be counted", || async {
            (counted(&store, "demo", generation).await == COLLECTORS as u64).then_some(())
        })
        .await;
        generations.push(generation);
    }

    let request = |from_generation, to_generation| ListReceiptsRequest {
        program: "demo".into(),
        from_generation,
        to_generation,
    };
    let (all, sizes) = list(&replica, None, request(0, 0)).await.expect("list");
    let listed: Vec<u64> = all.iter().map(|r| decoded(r).generation).collect();
    let mut expected: Vec<u64> = generations
        .iter()
        .flat_map(|g| std::iter::repeat_n(*g, COLLECTORS))
        .collect();
    assert_eq!(listed, expected, "every receipt once, in generation order");
    assert!(sizes.len() >= 2 * generations.len(), "{sizes:?}");
    assert!(
        sizes.iter().all(|size| *size <= RESPONSE_BYTES),
        "{sizes:?}"
    );

    let (middle, _) = list(&replica, None, request(generations[1], generations[2]))
        .await
        .expect("list a range");
    let listed: Vec<u64> = middle.iter().map(|r| decoded(r).generation).collect();
    expected = [generations[1], generations[2]]
        .iter()
        .flat_map(|g| std::iter::repeat_n(*g, COLLECTORS))
        .collect();
    assert_eq!(listed, expected);
    let (tail, _) = list(&replica, None, request(generations[3], 0))
        .await
        .expect("list from a generation on");
    assert_eq!(tail.len(), COLLECTORS);
    let (head, _) = list(&replica, None, request(0, generations[0]))
        .await
        .expect("list up to a generation");
    assert_eq!(head.len(), COLLECTORS);
    let (none, _) = list(&replica, None, request(generations[3] + 1, 0))
        .await
        .expect("list past the last");
    assert!(none.is_empty());

    let missing = ListReceiptsRequest {
        program: "nope".into(),
        ..Default::default()
    };
    let error = list(&replica, None, missing).await.expect_err("unknown");
    assert_eq!(error.code(), tonic::Code::NotFound);
    let error = list(&replica, None, request(9, 3))
        .await
        .expect_err("reversed");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

/// Keys and bytes under `{PREFIX}/receipts/`: each put creates a key (chunks are never
/// overwritten), so the keys are the writes.
async fn receipt_keys(etcd: &Etcd) -> (usize, usize) {
    let mut client = etcd.client().await.expect("etcd client");
    let prefix = format!("{PREFIX}/receipts/");
    let response = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("read receipts");
    let bytes = response.kvs().iter().map(|kv| kv.value().len()).sum();
    (response.kvs().len(), bytes)
}

/// A pause of N collectors on R replicas costs at most R × ceil(bytes / chunk) receipt
/// writes; acknowledging again with the same receipt costs none.
#[tokio::test]
async fn a_pause_costs_a_bounded_number_of_receipt_writes() {
    const COLLECTORS: usize = 20;
    const REPLICAS: usize = 2;
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create_running(&store, "demo").await;
    let replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica::start(etcd.endpoint(), &[]).expect("replica"))
        .collect();
    let signers: Vec<Signer> = (0..COLLECTORS)
        .map(|i| Signer::plain(&format!("c{i:02}")))
        .collect();
    let mut sessions = Vec::new();
    for (i, signer) in signers.iter().enumerate() {
        let mut session = connect(&replicas[i % REPLICAS], "", signer, "demo").await;
        next_generation(&mut session).await;
        sessions.push(session);
    }
    let mut watch_client = etcd.client().await.expect("etcd client");
    let mut watch = watch_client
        .watch(
            format!("{PREFIX}/receipts/"),
            Some(etcd_client::WatchOptions::new().with_prefix()),
        )
        .await
        .expect("watch receipts");
    assert_eq!(receipt_keys(&etcd).await, (0, 0), "nothing before a pause");

    let generation = pause(&store, "demo").await;
    let mut signed = Vec::new();
    for (session, signer) in sessions.iter_mut().zip(&signers) {
        assert_eq!(next_generation(session).await, generation);
        let receipt = signer.sign(receipt(&signer.id, "demo", generation).encode_to_vec());
        session
            .ack(
                "demo",
                generation,
                v1::RunState::Paused,
                Some(receipt.clone()),
            )
            .await;
        signed.push(receipt);
    }
    poll("status to count every Ack", || async {
        (counted(&store, "demo", generation).await == COLLECTORS as u64).then_some(())
    })
    .await;
    let (writes, bytes) = receipt_keys(&etcd).await;
    let bound = REPLICAS * bytes.div_ceil(CHUNK_BYTES);
    assert!(
        (1..=bound).contains(&writes),
        "{writes} receipt writes ({bytes} bytes) for a pause of {COLLECTORS} on {REPLICAS} replicas"
    );
    let mut watched = 0;
    while watched < writes {
        let response = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("watch events")
            .expect("watch open")
            .expect("watch not ended");
        for event in response.events() {
            assert_eq!(event.event_type(), etcd_client::EventType::Put);
            watched += 1;
        }
    }
    assert_eq!(watched, writes, "every write is a new key");

    // The same receipts again (an SDK repeating its Acks): nothing new to write. A
    // resume after them flushes its summaries, and with them any receipt pending.
    for (session, receipt) in sessions.iter().zip(&signed) {
        session
            .ack(
                "demo",
                generation,
                v1::RunState::Paused,
                Some(receipt.clone()),
            )
            .await;
    }
    let resumed = set(&store, "demo", RunState::Running).await;
    for session in &mut sessions {
        assert_eq!(next_generation(session).await, resumed);
        session
            .ack("demo", resumed, v1::RunState::Running, None)
            .await;
    }
    poll("the resume to be counted", || async {
        (counted(&store, "demo", resumed).await == COLLECTORS as u64).then_some(())
    })
    .await;
    assert_eq!(
        receipt_keys(&etcd).await.0,
        writes,
        "repeats are not written"
    );
}
