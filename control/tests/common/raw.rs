//! A collector speaking the protocol by hand (not the SDK), for tests of what a replica
//! accepts from any client.

use std::time::{Duration, Instant, SystemTime};

use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::{
    self, Ack, CollectorMessage, ControlMessage, Hello, collector_message, control_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// A raw collector session.
pub struct RawCollector {
    tx: mpsc::Sender<CollectorMessage>,
    inbound: Streaming<ControlMessage>,
    /// The first message, read to learn that the session was accepted.
    first: Option<ControlMessage>,
}

impl RawCollector {
    /// Opens a plain-text session of `id` following `programs` at `endpoint`.
    pub async fn connect(endpoint: &str, id: &str, programs: &[&str]) -> Self {
        let channel = Channel::from_shared(endpoint.to_owned())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Self::open(channel, id, programs).await
    }

    /// Opens a session of `id` following `programs` over `channel`; retried while the
    /// replica is still catching up with etcd (it refuses sessions with UNAVAILABLE until
    /// its watch is healthy).
    pub async fn open(channel: Channel, id: &str, programs: &[&str]) -> Self {
        let client = CollectorServiceClient::new(channel);
        poll("a session to open", || {
            let mut client = client.clone();
            async move {
                let (tx, rx) = mpsc::channel(64);
                let hello = Hello {
                    collector_id: id.into(),
                    programs: programs.iter().map(|p| (*p).to_owned()).collect(),
                    ..Default::default()
                };
                tx.send(CollectorMessage {
                    msg: Some(collector_message::Msg::Hello(hello)),
                })
                .await
                .expect("queue hello");
                let mut inbound = client
                    .session(ReceiverStream::new(rx))
                    .await
                    .expect("open session")
                    .into_inner();
                // The first message says whether the session was taken.
                match inbound.message().await {
                    Ok(Some(first)) => Some(Self {
                        tx,
                        inbound,
                        first: Some(first),
                    }),
                    Err(status) if status.code() == tonic::Code::Unavailable => None,
                    other => panic!("session refused: {other:?}"),
                }
            }
        })
        .await
    }

    /// The next Snapshot or Update (heartbeats skipped), within 5 s.
    pub async fn next_state(&mut self) -> control_message::Msg {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let message = match self.first.take() {
                Some(first) => first,
                None => tokio::time::timeout_at(deadline, self.inbound.message())
                    .await
                    .expect("a state within 5 s")
                    .expect("session open")
                    .expect("stream not ended"),
            };
            match message.msg {
                Some(control_message::Msg::Heartbeat(_)) => {}
                Some(msg) => return msg,
                None => panic!("empty control message"),
            }
        }
    }

    /// The next message, which must be a Snapshot.
    pub async fn snapshot(&mut self) -> v1::Snapshot {
        match self.next_state().await {
            control_message::Msg::Snapshot(snapshot) => snapshot,
            other => panic!("expected a Snapshot, got {other:?}"),
        }
    }

    /// The next message, which must be an Update.
    pub async fn update(&mut self) -> v1::ProgramState {
        match self.next_state().await {
            control_message::Msg::Update(update) => update.state.expect("a state"),
            other => panic!("expected an Update, got {other:?}"),
        }
    }

    /// The status the replica ends the session with, within 5 s.
    pub async fn ended(&mut self) -> tonic::Status {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.inbound.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the stream ended without a status"),
                    Err(status) => return status,
                }
            }
        })
        .await
        .expect("closed within 5 s")
    }

    /// Acknowledges `generation` of `program` as `effective`, with `receipt`.
    pub async fn ack(
        &self,
        program: &str,
        generation: u64,
        effective: v1::RunState,
        receipt: Option<v1::SignedReceipt>,
    ) {
        let ack = Ack {
            program: program.into(),
            generation,
            effective: effective as i32,
            applied_at: Some(killswitch_proto::timestamp(SystemTime::now())),
            receipt,
            ..Default::default()
        };
        self.tx
            .send(CollectorMessage {
                msg: Some(collector_message::Msg::Ack(ack)),
            })
            .await
            .expect("queue ack");
    }
}

/// Polls `probe` every 20 ms until it returns a value; fails the test after 8 s.
pub async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
