//! The Prometheus endpoint of a real replica (`--metrics-listen`), scraped over plain
//! HTTP while a real SDK collector follows a program that an operator pauses through the
//! admin API.

use std::net::SocketAddr;
use std::time::Duration;

use killswitch_proto::v1::{self, admin_service_client::AdminServiceClient};
use killswitch_sdk::Client;
use killswitch_testkit::{Etcd, Replica, metric_value as value, wait_until};

/// Generous for a loaded two-core machine; the test normally takes about two seconds.
const DEADLINE: Duration = Duration::from_secs(15);

/// A loopback address nothing listens on, for `--metrics-listen`: the replica prints
/// only its gRPC address, so the test chooses the metrics port itself.
fn free_addr() -> SocketAddr {
    killswitch_testkit::free_addr().expect("a free port")
}

/// One plain HTTP/1.1 request; returns the status code and the body, checking that a
/// 200 is Prometheus' text format.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (status, head, body) = killswitch_testkit::http_request(addr, method, path)
        .await
        .expect("an HTTP exchange with the metrics listener");
    if status == 200 {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "not the Prometheus text format: {head}"
        );
    }
    (status, body)
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Scrapes until `check` holds for the exposition; fails with the last one. The replica
/// opens its metrics listener just after it reports its gRPC address: until then the
/// connection is refused.
async fn until(addr: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let last = std::sync::Mutex::new(String::new());
    let waited = wait_until(DEADLINE, what, || async {
        if let Err(error) = tokio::net::TcpStream::connect(addr).await {
            *last.lock().expect("last scrape") = format!("(cannot connect: {error})");
            return false;
        }
        let text = scrape(addr).await;
        let done = check(&text);
        *last.lock().expect("last scrape") = text;
        done
    })
    .await;
    let last = last.into_inner().expect("last scrape");
    if let Err(error) = waited {
        panic!("{error}; last scrape:\n{last}");
    }
    last
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("killswitch-actor", "metrics-test".parse().expect("ascii"));
    request
}

/// The generation a change committed.
fn generation(response: tonic::Response<v1::ChangeResponse>) -> u64 {
    let response = response.into_inner();
    assert!(response.changed, "nothing changed: {response:?}");
    response.state.expect("a state").generation
}

#[tokio::test]
async fn a_replica_exposes_sessions_acks_heartbeats_the_watch_and_admin_calls() {
    let etcd = Etcd::start().await.expect("start etcd");
    let metrics = free_addr();
    let replica = Replica::start(
        etcd.endpoint(),
        &[
            "--metrics-listen",
            &metrics.to_string(),
            "--heartbeat-interval",
            "200ms",
        ],
    )
    .expect("start replica");

    // Before anything happened: the watch lists and becomes healthy, no session yet.
    let text = until(metrics, "a healthy watch", |text| {
        value(text, "killswitch_etcd_watch_healthy") == Some(1.0)
    })
    .await;
    assert_eq!(value(&text, "killswitch_sessions"), Some(0.0), "{text}");
    assert_eq!(
        value(&text, "killswitch_reconcile_differences_total"),
        Some(0.0),
        "{text}"
    );
    let lag = value(&text, "killswitch_etcd_watch_lag_seconds").expect("lag exposed");
    assert!(lag < 5.0, "a healthy watch heard from etcd {lag} s ago");

    let mut admin = AdminServiceClient::connect(replica.endpoint())
        .await
        .expect("connect the admin client");
    let created = admin
        .create_program(request(v1::CreateProgramRequest {
            name: "demo".into(),
            owner: "team".into(),
            ..Default::default()
        }))
        .await
        .expect("create demo")
        .into_inner()
        .state
        .expect("a state")
        .generation;

    let collector = Client::builder()
        .endpoint(replica.endpoint())
        .collector_id("collector-1")
        .program("demo")
        .start()
        .expect("start the collector");
    wait_until(
        DEADLINE,
        "the collector applies the new program",
        || async { collector.applied_generation("demo") == Some(created) },
    )
    .await
    .expect("collector applied the create");

    // A program starts paused: resume it, then pause it again.
    let resumed = generation(
        admin
            .resume(request(v1::ResumeRequest {
                program: "demo".into(),
                reason: "metrics test".into(),
                ..Default::default()
            }))
            .await
            .expect("resume"),
    );
    wait_until(DEADLINE, "the collector applies the resume", || async {
        collector.applied_generation("demo") == Some(resumed)
    })
    .await
    .expect("collector applied the resume");
    let paused = generation(
        admin
            .pause(request(v1::PauseRequest {
                program: "demo".into(),
                reason: "metrics test".into(),
                ..Default::default()
            }))
            .await
            .expect("pause"),
    );
    wait_until(DEADLINE, "the collector applies the pause", || async {
        collector.applied_generation("demo") == Some(paused)
    })
    .await
    .expect("collector applied the pause");

    let not_found = admin
        .get_program(request(v1::GetProgramRequest {
            name: "ghost".into(),
        }))
        .await
        .expect_err("no such program");
    assert_eq!(not_found.code(), tonic::Code::NotFound, "{not_found}");
    // An empty actor is refused before anything else happens.
    let mut anonymous = tonic::Request::new(v1::ListProgramsRequest::default());
    anonymous
        .metadata_mut()
        .insert("killswitch-actor", "".parse().expect("ascii"));
    let refused = admin
        .list_programs(anonymous)
        .await
        .expect_err("an empty actor is refused");

    // Acks reach the replica after the collector applied the state: wait for all three
    // (the new program's pause, the resume and the pause).
    let text = until(metrics, "three acks and heartbeats", |text| {
        value(text, "killswitch_acks_total{result=\"ok\"}").is_some_and(|n| n >= 3.0)
            && value(text, "killswitch_heartbeats_total").is_some_and(|n| n >= 1.0)
    })
    .await;
    for (series, expected) in [
        ("killswitch_sessions", 1.0),
        ("killswitch_etcd_watch_healthy", 1.0),
        (
            "killswitch_admin_calls_total{method=\"CreateProgram\",code=\"OK\"}",
            1.0,
        ),
        (
            "killswitch_admin_calls_total{method=\"Resume\",code=\"OK\"}",
            1.0,
        ),
        (
            "killswitch_admin_calls_total{method=\"Pause\",code=\"OK\"}",
            1.0,
        ),
        (
            "killswitch_admin_calls_total{method=\"GetProgram\",code=\"NotFound\"}",
            1.0,
        ),
        (
            "killswitch_auth_failures_total{reason=\"invalid_actor\"}",
            1.0,
        ),
        ("killswitch_reconcile_differences_total", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series}:\n{text}");
    }
    let refused_code = match refused.code() {
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::Unauthenticated => "Unauthenticated",
        other => panic!("unexpected refusal {other:?}: {refused}"),
    };
    assert_eq!(
        value(
            &text,
            &format!(
                "killswitch_admin_calls_total{{method=\"ListPrograms\",code=\"{refused_code}\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "killswitch_acks_total{result=\"error\"}"),
        None,
        "{text}"
    );
    // One per generation the collector applied while it was current.
    let acked = value(&text, "killswitch_commit_to_ack_seconds_count").expect("histogram");
    assert!((2.0..=3.0).contains(&acked), "{text}");
    assert!(
        value(
            &text,
            "killswitch_admin_call_duration_seconds_count{method=\"Pause\"}"
        ) == Some(1.0),
        "{text}"
    );
    // The cache is current up to at least the pause's revision.
    let revision = value(&text, "killswitch_etcd_watch_revision").expect("revision");
    assert!(revision >= paused as f64, "{revision} < {paused}\n{text}");

    // Only GET /metrics is served.
    for (method, path) in [("GET", "/"), ("POST", "/metrics"), ("GET", "/metrics/x")] {
        let (status, _) = http(metrics, method, path).await;
        assert_eq!(status, 404, "{method} {path}");
    }

    // The collector leaves: the gauge follows.
    collector.shutdown().await;
    until(metrics, "no session", |text| {
        value(text, "killswitch_sessions") == Some(0.0)
    })
    .await;
}
