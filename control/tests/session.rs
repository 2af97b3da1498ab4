//! Collector sessions against a real etcd and an in-process replica: what a misbehaving
//! client gets.

use std::time::{Duration, Instant};

use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::{CollectorMessage, Hello, collector_message};
use killswitch_testkit::Etcd;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_connection_that_sends_no_hello_is_closed_and_a_bad_hello_is_refused() {
    let etcd = Etcd::start().await.expect("start etcd");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let mut config = killswitch_control::Config::new(
        vec![etcd.endpoint().to_owned()],
        "r1",
        format!("http://{addr}"),
    );
    config.session.hello_timeout = Duration::from_millis(500);
    let server = tokio::spawn(killswitch_control::serve(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let mut client = CollectorServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    // Silent: the stream stays open on our side, but the replica gives up on it.
    let (_silent, outbound) = tokio::sync::mpsc::channel::<CollectorMessage>(1);
    let started = Instant::now();
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("open")
        .into_inner();
    let status = tokio::time::timeout(Duration::from_secs(10), inbound.message())
        .await
        .expect("the replica closes a silent session")
        .expect_err("closed without Hello");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the Hello timeout"
    );

    // A Hello with an invalid collector id is refused with a reason.
    let hello = CollectorMessage {
        msg: Some(collector_message::Msg::Hello(Hello {
            collector_id: "bad id!".into(),
            programs: vec!["demo".into()],
            ..Default::default()
        })),
    };
    let mut inbound = client
        .session(tokio_stream::iter([hello]))
        .await
        .expect("open")
        .into_inner();
    let status = inbound.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("invalid collector id"),
        "{}",
        status.message()
    );

    stop.cancel();
    server.await.expect("server task").expect("server ran");
}
