//! What the orchestrator and its subscriber processes (simulated collectors, or etcd
//! watchers) say to each other, and the subscriber side of it.
//!
//! A subscriber process holds many subscribers, each recording when it last heard of a
//! change (and of which generation) in a [`Slots`] table. It writes [`Event`]s to stdout,
//! one JSON object per line, and reads [`Command`]s from stdin the same way; it stops
//! when stdin closes. Keeping the subscribers out of the orchestrator's process is what
//! lets a run go past the per-process open-file limit: each process holds at most
//! [`MAX_PER_PROCESS`] connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Most connections one process holds: under the machine's 20,000 open files, with room
/// for the runtime, logs and a few other sockets.
pub const MAX_PER_PROCESS: usize = 18_000;

/// From the orchestrator to a subscriber process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Wait until every subscriber heard of `generation` (or a newer one), for at most
    /// `timeout_ms`, then send [`Event::Report`].
    Report {
        /// The generation (etcd revision) of the change.
        generation: u64,
        /// How long to wait for stragglers.
        timeout_ms: u64,
    },
}

/// From a subscriber process to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Still connecting: `ready` of `total` subscribers are connected and in sync.
    Progress {
        /// Subscribers ready.
        ready: usize,
        /// Subscribers in this process.
        total: usize,
    },
    /// Every subscriber is connected and in sync; commands are read from now on.
    Ready {
        /// Subscribers in this process.
        total: usize,
    },
    /// The answer to [`Command::Report`].
    Report {
        /// The generation asked about.
        generation: u64,
        /// When each subscriber that heard of exactly this generation heard of it, in
        /// nanoseconds since the Unix epoch, in subscriber order.
        times_ns: Vec<u64>,
        /// Subscribers that had not heard of it (or of anything newer) in time.
        missing: usize,
    },
}

/// One line of JSON for `event`, newline included.
pub fn encode(event: &Event) -> anyhow::Result<String> {
    let mut line = serde_json::to_string(event).context("cannot encode an event")?;
    line.push('\n');
    Ok(line)
}

/// Nanoseconds since the Unix epoch at `at`; 0 before it.
#[must_use]
pub fn unix_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What each subscriber last heard: the generation and when (Unix nanoseconds). Lock
/// free, so recording costs a subscriber two atomic stores.
#[derive(Debug)]
pub struct Slots {
    generation: Vec<AtomicU64>,
    at_ns: Vec<AtomicU64>,
}

impl Slots {
    /// `n` subscribers that heard nothing yet.
    #[must_use]
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            generation: (0..n).map(|_| AtomicU64::new(0)).collect(),
            at_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// How many subscribers there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.generation.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.generation.is_empty()
    }

    /// Subscriber `i` heard of `generation` now. Older generations than one already
    /// recorded are ignored; an index out of range is ignored.
    pub fn record(&self, i: usize, generation: u64) {
        let now = unix_ns(SystemTime::now());
        let (Some(slot), Some(at)) = (self.generation.get(i), self.at_ns.get(i)) else {
            return;
        };
        if slot.load(Ordering::Acquire) >= generation {
            return;
        }
        at.store(now, Ordering::Release);
        slot.store(generation, Ordering::Release);
    }

    /// How many subscribers heard of `generation` or a newer one.
    #[must_use]
    pub fn reached(&self, generation: u64) -> usize {
        self.generation
            .iter()
            .filter(|g| g.load(Ordering::Acquire) >= generation)
            .count()
    }

    /// The times of the subscribers whose last generation is exactly `generation`, and
    /// how many have not reached it.
    #[must_use]
    pub fn report(&self, generation: u64) -> (Vec<u64>, usize) {
        let mut times = Vec::with_capacity(self.len());
        let mut missing = 0;
        for (g, at) in self.generation.iter().zip(&self.at_ns) {
            let g = g.load(Ordering::Acquire);
            if g == generation {
                times.push(at.load(Ordering::Acquire));
            } else if g < generation {
                missing += 1;
            }
        }
        (times, missing)
    }
}

/// Writes events to stdout, one line each.
#[derive(Debug)]
pub struct Output(tokio::io::Stdout);

impl Default for Output {
    fn default() -> Self {
        Self(tokio::io::stdout())
    }
}

impl Output {
    /// Sends one event.
    pub async fn send(&mut self, event: &Event) -> anyhow::Result<()> {
        self.0.write_all(encode(event)?.as_bytes()).await?;
        self.0.flush().await?;
        Ok(())
    }
}

/// Reports progress every 500 ms until `ready()` counts every subscriber in `slots`,
/// then sends [`Event::Ready`].
pub async fn announce_ready(
    out: &mut Output,
    total: usize,
    mut ready: impl FnMut() -> usize,
) -> anyhow::Result<()> {
    let mut last = usize::MAX;
    loop {
        let now = ready();
        if now >= total {
            return out.send(&Event::Ready { total }).await;
        }
        if now != last {
            out.send(&Event::Progress { ready: now, total }).await?;
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Answers commands from stdin until it closes.
pub async fn serve(out: &mut Output, slots: &Slots) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let command: Command = match serde_json::from_str(&line) {
            Ok(command) => command,
            Err(error) => {
                eprintln!("killswitch-fleet: ignoring a bad command ({error}): {line:?}");
                continue;
            }
        };
        match command {
            Command::Report {
                generation,
                timeout_ms,
            } => {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
                // Polling an array of atomics costs microseconds; the interval bounds how
                // late the report is, not what it measures.
                while slots.reached(generation) < slots.len()
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let (times_ns, missing) = slots.report(generation);
                out.send(&Event::Report {
                    generation,
                    times_ns,
                    missing,
                })
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_the_newest_generation() {
        let slots = Slots::new(3);
        slots.record(0, 5);
        slots.record(1, 5);
        slots.record(1, 4);
        slots.record(7, 9);
        assert_eq!(slots.reached(5), 2);
        let (times, missing) = slots.report(5);
        assert_eq!((times.len(), missing), (2, 1));
        slots.record(2, 6);
        assert_eq!(slots.reached(5), 3);
        assert_eq!(slots.report(5).1, 0);
    }

    #[test]
    fn events_round_trip_as_lines() {
        let event = Event::Report {
            generation: 7,
            times_ns: vec![1, 2],
            missing: 0,
        };
        let line = encode(&event).expect("encodes");
        assert!(line.ends_with('\n'));
        let back: Event = serde_json::from_str(line.trim()).expect("decodes");
        assert_eq!(back, event);
        let command: Command =
            serde_json::from_str(r#"{"cmd":"report","generation":3,"timeout_ms":10}"#)
                .expect("decodes");
        assert_eq!(
            command,
            Command::Report {
                generation: 3,
                timeout_ms: 10
            }
        );
    }
}
