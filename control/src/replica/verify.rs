//! The receipt verification pool: a few threads of its own that verify receipts'
//! signatures, so that the replica's async workers, which send every collector its
//! Updates, never spend the 30-50 µs of a signature verification.
//!
//! A session submits the signature of an Ack's receipt once every cheap check passed
//! ([`crate::model::receipts::precheck`]) and counts the Ack only when the verdict is an `Ok`; it reads
//! nothing more from its collector until then, so the queue holds at most one signature
//! per session. Each thread takes every signature queued at once (up to [`BATCH`]) and
//! verifies them in a row.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::model::receipts::{PendingSignature, ReceiptRefusal};

/// Most signatures a pool thread takes from the queue at once.
pub const BATCH: usize = 64;

/// A signature to verify and where its verdict goes.
struct Job {
    signature: PendingSignature,
    verdict: oneshot::Sender<Result<(), ReceiptRefusal>>,
}

/// The queue of signatures to verify, shared by the pool's threads.
type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Job>>>;

/// Verifies receipts' signatures on its own threads. The threads end when the last clone
/// of the pool is dropped.
#[derive(Debug, Clone)]
pub struct Verifier {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Verifier {
    /// Starts a pool of `threads` threads (at least one). Should the system refuse every
    /// thread, signatures are verified where they are submitted, as before the pool.
    #[must_use]
    pub fn start(threads: usize) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue: Queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("receipts-{n}"))
                .spawn(move || work(&queue));
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start a receipt verification thread");
            }
        }
        Self { jobs }
    }

    /// Queues `signature`; the returned [`Verdict`] resolves to its verification's result.
    #[must_use]
    pub fn submit(&self, signature: PendingSignature) -> Verdict {
        let (verdict, receiver) = oneshot::channel();
        match self.jobs.send(Job { signature, verdict }) {
            Ok(()) => Verdict(VerdictState::Queued(receiver)),
            // No thread left to verify (they end only with the pool): verify here.
            Err(mpsc::error::SendError(job)) => {
                Verdict(VerdictState::Ready(Some(job.signature.verify())))
            }
        }
    }
}

/// The result of a submitted verification, to be awaited.
#[derive(Debug)]
pub struct Verdict(VerdictState);

#[derive(Debug)]
enum VerdictState {
    Queued(oneshot::Receiver<Result<(), ReceiptRefusal>>),
    Ready(Option<Result<(), ReceiptRefusal>>),
}

impl std::future::Future for Verdict {
    type Output = Result<(), ReceiptRefusal>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            VerdictState::Queued(receiver) => std::pin::Pin::new(receiver).poll(cx).map(|r| {
                r.unwrap_or_else(|_| {
                    Err(ReceiptRefusal::Signature(
                        "the verification was abandoned".into(),
                    ))
                })
            }),
            VerdictState::Ready(result) => {
                std::task::Poll::Ready(result.take().unwrap_or_else(|| {
                    Err(ReceiptRefusal::Signature(
                        "the verdict was already taken".into(),
                    ))
                }))
            }
        }
    }
}

/// One pool thread: takes what is queued, verifies it, until the pool is dropped.
fn work(queue: &Queue) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        {
            let mut jobs = queue.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.blocking_recv() {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        for job in batch.drain(..) {
            // The session may have ended meanwhile; nobody waits for its verdict then.
            let _ = job.verdict.send(job.signature.verify());
        }
    }
}

/// How many threads verify receipts by default: half the cores, at least one, so the
/// async workers keep the other half while a round of signed receipts is verified.
#[must_use]
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::receipts::{self, Checked, Expected, PeerCertificate, fixtures};
    use killswitch_proto::v1;

    /// A signed receipt of collector c1 for demo at `generation`, and its certificate.
    fn signed(generation: u64) -> (v1::SignedReceipt, Vec<u8>) {
        let signer = fixtures::new_signer();
        let signed = fixtures::sign(&signer, fixtures::receipt("c1", generation));
        (signed, signer.certificate)
    }

    fn pending(signed: v1::SignedReceipt, leaf: &[u8]) -> PendingSignature {
        let peer = PeerCertificate::parse(Arc::from(leaf));
        let expected = Expected {
            collector: "c1",
            program: "demo",
            generation: 7,
            effective: v1::RunState::Paused as i32,
        };
        match receipts::precheck(&Arc::new(signed), &expected, Some(&peer)) {
            Ok(Checked::Signed(signature)) => signature,
            other => panic!("not a signed receipt to verify: {other:?}"),
        }
    }

    #[tokio::test]
    async fn good_signatures_pass_and_forged_ones_are_refused_through_the_pool() {
        let verifier = Verifier::start(2);
        let (good, leaf) = signed(7);
        let mut forged = good.clone();
        forged.signature[12] ^= 1;
        let verdicts: Vec<Verdict> = (0..100)
            .map(|i| {
                let receipt = if i % 10 == 3 { &forged } else { &good };
                verifier.submit(pending(receipt.clone(), &leaf))
            })
            .collect();
        for (i, verdict) in verdicts.into_iter().enumerate() {
            let result = verdict.await;
            if i % 10 == 3 {
                assert_eq!(result.map_err(|r| r.reason()), Err("receipt-signature"));
            } else {
                assert_eq!(result, Ok(()), "receipt {i}");
            }
        }
    }

    #[tokio::test]
    async fn a_certificate_that_does_not_parse_refuses_its_signed_receipts() {
        let verifier = Verifier::start(1);
        let (mut good, _) = signed(7);
        good.certificate = b"not a certificate".to_vec();
        let result = verifier
            .submit(pending(good, b"not a certificate"))
            .await
            .expect_err("no key");
        assert!(result.to_string().contains("does not parse"), "{result}");
    }
}
