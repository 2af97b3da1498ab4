//! `CollectorService.Session`: one task per connected collector.
//!
//! The task reads Hello, sends a Snapshot of the requested programs from the cache, then
//! forwards every change as an Update, heartbeats while the replica's etcd watch is
//! healthy, records Acks in the [`AckBook`], and sends Drain when the replica shuts down.
//! It never reads etcd: fan-out is served from the [`StateCache`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::{
    self, CollectorMessage, ControlMessage, collector_message,
    collector_service_server::CollectorService, control_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::acks::{AckBook, AckRecord, Labels, SessionId};
use crate::cache::{Slot, StateCache};
use crate::domain::{CollectorId, Generation, InvalidInput, ProgramName, RunState};

/// Most programs one collector may follow.
pub const MAX_PROGRAMS_PER_SESSION: usize = 64;
/// Most labels one collector may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Session timing.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often a healthy replica heartbeats. Default 5 s.
    pub heartbeat_interval: Duration,
    /// How long a collector may take to send Hello. Default 10 s.
    pub hello_timeout: Duration,
    /// Drain asks collectors to reconnect after a random delay up to this. Default 2 s.
    pub drain_spread: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(10),
            drain_spread: Duration::from_secs(2),
        }
    }
}

/// The collector-facing gRPC service.
#[derive(Debug, Clone)]
pub struct Sessions {
    cache: Arc<StateCache>,
    book: Arc<AckBook>,
    config: SessionConfig,
    drain: CancellationToken,
    next_id: Arc<AtomicU64>,
}

impl Sessions {
    /// Sessions fed from `cache`, recording into `book`, draining when `drain` fires.
    #[must_use]
    pub fn new(
        cache: Arc<StateCache>,
        book: Arc<AckBook>,
        config: SessionConfig,
        drain: CancellationToken,
    ) -> Self {
        Self {
            cache,
            book,
            config,
            drain,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }
}

type Outbound = mpsc::Sender<Result<ControlMessage, Status>>;

#[tonic::async_trait]
impl CollectorService for Sessions {
    type SessionStream =
        Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send + 'static>>;

    async fn session(
        &self,
        request: Request<Streaming<CollectorMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let remote = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        // Ends when the collector goes away (inbound ends or outbound closes) or on drain.
        tokio::spawn(
            async move { this.run(id, inbound, tx).await }
                .instrument(tracing::info_span!("session", id, remote = ?remote)),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A validated Hello.
struct Hello {
    collector: CollectorId,
    programs: Vec<ProgramName>,
    labels: Labels,
}

fn parse_hello(hello: v1::Hello) -> Result<Hello, InvalidInput> {
    let collector = CollectorId::parse(&hello.collector_id)?;
    if hello.programs.is_empty() {
        return Err(InvalidInput::Missing {
            field: "programs",
            hint: "name at least one program to follow",
        });
    }
    if hello.programs.len() > MAX_PROGRAMS_PER_SESSION {
        return Err(InvalidInput::TooLong {
            field: "programs",
            len: hello.programs.len(),
            max: MAX_PROGRAMS_PER_SESSION,
        });
    }
    let mut programs = hello
        .programs
        .iter()
        .map(|p| ProgramName::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    programs.sort();
    programs.dedup();
    if hello.labels.len() > MAX_LABELS {
        return Err(InvalidInput::TooLong {
            field: "labels",
            len: hello.labels.len(),
            max: MAX_LABELS,
        });
    }
    for (key, value) in &hello.labels {
        for (field, text) in [("label key", key), ("label value", value)] {
            if text.len() > MAX_LABEL_BYTES {
                return Err(InvalidInput::TooLong {
                    field,
                    len: text.len(),
                    max: MAX_LABEL_BYTES,
                });
            }
            if text.chars().any(char::is_control) {
                return Err(InvalidInput::ControlCharacters { field });
            }
        }
    }
    Ok(Hello {
        collector,
        programs,
        labels: Arc::new(hello.labels.into_iter().collect()),
    })
}

/// Removes the session from the book and the cache subscriptions when it ends, however.
struct Registration<'a> {
    sessions: &'a Sessions,
    id: SessionId,
    hello: &'a Hello,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sessions
            .book
            .disconnect(self.id, &self.hello.collector, &self.hello.programs);
        for program in &self.hello.programs {
            self.sessions.cache.release(program);
        }
        tracing::info!(collector = %self.hello.collector, "collector disconnected");
    }
}

impl Sessions {
    async fn run(&self, id: SessionId, mut inbound: Streaming<CollectorMessage>, tx: Outbound) {
        let hello = match self.read_hello(&mut inbound).await {
            Ok(hello) => hello,
            Err(status) => {
                tracing::info!(error = %status.message(), "rejected session");
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        let mut health = self.cache.health();
        if !*health.borrow_and_update() {
            let status = Status::unavailable(
                "this replica has lost etcd and cannot vouch for program state; try another replica",
            );
            let _ = tx.send(Err(status)).await;
            return;
        }
        tracing::info!(collector = %hello.collector, programs = ?hello.programs, labels = ?hello.labels, "collector connected");
        self.book
            .connect(id, &hello.collector, &hello.labels, &hello.programs);
        let _registration = Registration {
            sessions: self,
            id,
            hello: &hello,
        };

        let mut sent: HashMap<ProgramName, Generation> = HashMap::new();
        let mut changes = StreamMap::new();
        let mut snapshot = v1::Snapshot::default();
        for program in &hello.programs {
            let mut rx = self.cache.subscribe(program);
            match rx.borrow_and_update().as_deref() {
                Some(state) => {
                    sent.insert(program.clone(), state.generation);
                    snapshot.states.push(state.to_wire());
                }
                None => snapshot.unknown_programs.push(program.to_string()),
            }
            changes.insert(program.clone(), WatchStream::from_changes(rx));
        }
        if !send(&tx, control_message::Msg::Snapshot(snapshot)).await {
            return;
        }

        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.drain.cancelled() => {
                    let delay = self.config.drain_spread.mul_f64(fastrand::f64());
                    let drain = v1::Drain { reconnect_after_ms: millis(delay) };
                    send(&tx, control_message::Msg::Drain(drain)).await;
                    return;
                }
                () = tx.closed() => return,
                Some((program, slot)) = changes.next() => {
                    if !self.forward(&tx, &mut sent, &program, slot).await {
                        return;
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Back in touch with etcd: vouch again for the current state, so
                    // collectors that paused for lost contact can reopen.
                    if *health.borrow_and_update() && !self.resend(&tx, &hello, &mut sent).await {
                        return;
                    }
                }
                _ = heartbeat.tick() => {
                    if self.cache.is_healthy() {
                        let beat = v1::Heartbeat {
                            revision: self.cache.revision(),
                            valid_for_ms: millis(self.config.heartbeat_interval * 3),
                        };
                        if !send(&tx, control_message::Msg::Heartbeat(beat)).await {
                            return;
                        }
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.receive(id, &hello, message),
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status, "collector stream ended");
                        return;
                    }
                },
            }
        }
    }

    async fn read_hello(&self, inbound: &mut Streaming<CollectorMessage>) -> Result<Hello, Status> {
        let first = tokio::time::timeout(self.config.hello_timeout, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Hello received in time: send Hello first")
            })??;
        match first.and_then(|m| m.msg) {
            Some(collector_message::Msg::Hello(hello)) => {
                parse_hello(hello).map_err(|e| Status::invalid_argument(e.to_string()))
            }
            _ => Err(Status::invalid_argument(
                "the first message of a session must be Hello",
            )),
        }
    }

    /// Sends the current state of every program again.
    async fn resend(
        &self,
        tx: &Outbound,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Generation>,
    ) -> bool {
        for program in &hello.programs {
            if let Some(state) = self.cache.get(program) {
                sent.insert(program.clone(), state.generation);
                let update = v1::Update {
                    state: Some(state.to_wire()),
                };
                if !send(tx, control_message::Msg::Update(update)).await {
                    return false;
                }
            }
        }
        true
    }

    /// Sends a changed state if it is newer than what this collector was sent.
    async fn forward(
        &self,
        tx: &Outbound,
        sent: &mut HashMap<ProgramName, Generation>,
        program: &ProgramName,
        slot: Slot,
    ) -> bool {
        let Some(state) = slot else { return true };
        if sent.get(program).is_some_and(|&g| g >= state.generation) {
            return true;
        }
        sent.insert(program.clone(), state.generation);
        send(
            tx,
            control_message::Msg::Update(v1::Update {
                state: Some(state.to_wire()),
            }),
        )
        .await
    }

    fn receive(&self, id: SessionId, hello: &Hello, message: CollectorMessage) {
        match message.msg {
            Some(collector_message::Msg::Ack(ack)) => {
                let Some(program) = hello.programs.iter().find(|p| p.as_str() == ack.program)
                else {
                    tracing::debug!(
                        program = ack.program,
                        "ignoring an ack for a program not in Hello"
                    );
                    return;
                };
                let record = AckRecord {
                    generation: ack.generation,
                    effective: RunState::from_wire(ack.effective),
                    error: truncate(ack.error, 1024),
                    applied_at: ack.applied_at.and_then(|t| SystemTime::try_from(t).ok()),
                    purged: ack.purged,
                };
                tracing::debug!(collector = %hello.collector, %program, generation = record.generation, "ack");
                self.book.ack(id, &hello.collector, program, record);
            }
            Some(collector_message::Msg::Hello(_)) => tracing::debug!("ignoring a second Hello"),
            None => tracing::debug!("ignoring an empty message"),
        }
    }
}

async fn send(tx: &Outbound, msg: control_message::Msg) -> bool {
    tx.send(Ok(ControlMessage { msg: Some(msg) })).await.is_ok()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, programs: &[&str]) -> v1::Hello {
        v1::Hello {
            collector_id: id.into(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hello_validation() {
        assert!(parse_hello(hello("c1", &["demo"])).is_ok());
        assert!(matches!(
            parse_hello(hello("", &["demo"])),
            Err(InvalidInput::CollectorId(_))
        ));
        assert!(matches!(
            parse_hello(hello("c1", &[])),
            Err(InvalidInput::Missing { .. })
        ));
        assert!(matches!(
            parse_hello(hello("c1", &["Bad"])),
            Err(InvalidInput::ProgramName(_))
        ));
        let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            parse_hello(hello("c1", &many)),
            Err(InvalidInput::TooLong { .. })
        ));
        let mut labelled = hello("c1", &["demo"]);
        labelled.labels.insert("region".into(), "x".repeat(129));
        assert!(matches!(
            parse_hello(labelled),
            Err(InvalidInput::TooLong {
                field: "label value",
                ..
            })
        ));
    }

    #[test]
    fn duplicate_programs_are_followed_once() {
        let parsed = parse_hello(hello("c1", &["b", "a", "b"])).expect("valid hello");
        assert_eq!(
            parsed
                .programs
                .iter()
                .map(ProgramName::as_str)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("aé".into(), 2), "a");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}
