//! Drives staged resumes (see [`crate::model::targeting::Rollout`]) forward, from one replica at
//! a time.
//!
//! Every replica runs [`run_driver`], but only the one holding the driver key
//! `{prefix}/rollout-driver` acts: the key is created only if absent and is bound to the
//! holder's lease, so it passes to another replica when the holder dies (its lease
//! expires) or shuts down (it revokes the lease). The rollout's state lives in etcd, in the
//! program's state, so a new driver carries on where the old one stopped.
//!
//! For each program with a staged resume (found in the replica's [`StateCache`], so an
//! idle driver reads nothing from etcd), the driver reads the fleet-wide status of the
//! current stage: an errored acknowledgement aborts the rollout (PAUSED for everyone); a
//! stage every in-scope collector acknowledged, with every replica reporting, advances
//! once its interval has passed; after the last stage the program is RUNNING for all.
//! Each step is an audited change, and each compares the generation it judged, so a
//! change made meanwhile (by an operator or another driver) wins.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio_util::sync::CancellationToken;

use crate::model::ProgramState;
use crate::model::status;
use crate::replica::cache::StateCache;
use crate::store::{Change, Store, StoreError};

/// How often the driver looks at the rollouts.
const TICK: Duration = Duration::from_millis(250);

/// Ticks between two attempts to take the driver key while another replica holds it.
const CLAIM_EVERY: u32 = 4;

/// Runs until `cancel` fires: competes for the driver key and, while holding it, drives
/// every staged resume. `lease_ttl` bounds how long a dead driver holds the key.
pub async fn run_driver(
    store: Store,
    cache: Arc<StateCache>,
    replica_id: String,
    lease_ttl: Duration,
    cancel: CancellationToken,
) {
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            result = hold_and_drive(&store, &cache, &replica_id, lease_ttl, &cancel) => result,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "rollout driver lost etcd; competing again");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Grants a lease, waits until this replica holds the driver key with it, then drives
/// until cancelled (revoking the lease, so another replica takes over at once) or until
/// the lease is lost.
async fn hold_and_drive(
    store: &Store,
    cache: &StateCache,
    replica_id: &str,
    lease_ttl: Duration,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let lease = store.grant_lease(lease_ttl).await?;
    let (mut keeper, mut responses) = store.client().lease_keep_alive(lease).await?;
    let mut keep_alive = tokio::time::interval(lease_ttl / 3);
    let mut tick = tokio::time::interval(TICK);
    let mut leading = false;
    let mut ticks: u32 = 0;
    let result = loop {
        tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            _ = keep_alive.tick() => {
                if let Err(error) = keeper.keep_alive().await {
                    break Err(error.into());
                }
            }
            response = responses.message() => match response {
                Ok(Some(response)) if response.ttl() > 0 => {}
                Ok(_) => {
                    let lost = format!("lease {lease} expired before it was renewed");
                    break Err(etcd_client::Error::LeaseKeepAliveError(lost).into());
                }
                Err(error) => break Err(error.into()),
            },
            _ = tick.tick() => {
                ticks = ticks.wrapping_add(1);
                // Competing costs an etcd transaction: once a second is enough.
                if !leading && ticks % CLAIM_EVERY == 1 {
                    leading = claim(store, replica_id, lease).await?;
                    if leading {
                        tracing::info!(replica = replica_id, "driving staged resumes");
                    }
                }
                if leading {
                    drive(store, cache, replica_id).await?;
                }
            }
        }
    };
    if let Err(error) = store.revoke_lease(lease).await {
        tracing::debug!(%error, "cannot revoke the driver lease; it will expire");
    }
    result
}

/// Takes the driver key with `lease` if nobody holds it; whether this replica holds it.
async fn claim(store: &Store, replica_id: &str, lease: i64) -> Result<bool, StoreError> {
    let key = store.driver_key();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            replica_id,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = store.client().txn(txn).await?;
    if response.succeeded() {
        return Ok(true);
    }
    // A driver key with our own lease is ours (an earlier claim whose answer was lost).
    Ok(response.op_responses().iter().any(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get.kvs().iter().any(|kv| kv.lease() == lease),
        _ => false,
    }))
}

/// One look at every staged resume.
async fn drive(store: &Store, cache: &StateCache, replica_id: &str) -> Result<(), StoreError> {
    for state in cache.rollouts() {
        if let Err(error) = step(store, replica_id, &state).await {
            if error.is_unavailable() {
                return Err(error);
            }
            tracing::warn!(program = %state.program, %error, "cannot move the staged resume on");
        }
    }
    Ok(())
}

/// Decides and makes the next move of one rollout.
async fn step(store: &Store, replica_id: &str, state: &ProgramState) -> Result<(), StoreError> {
    let Some(rollout) = &state.targeting.rollout else {
        return Ok(());
    };
    let Some((current, summaries, registered)) = store.read_status(&state.program).await? else {
        return Ok(());
    };
    if current.generation != state.generation {
        return Ok(());
    }
    let status = status::aggregate(&current, &summaries, &registered);
    let counts = status.counts;
    let change = |reason: String| Change {
        actor: format!("rollout-driver@{replica_id}"),
        reason,
        incident_id: String::new(),
    };
    if counts.errored_count > 0 {
        let first = counts
            .errored
            .first()
            .map(|e| format!("{}: {}", e.collector_id, e.error))
            .unwrap_or_default();
        let why = format!(
            "{} collector(s) acknowledged stage {} with an error ({first})",
            counts.errored_count,
            rollout.stage + 1
        );
        tracing::warn!(program = %state.program, why, "aborting the staged resume");
        store
            .abort_rollout(&state.program, &change(why.clone()), &why)
            .await?;
        return Ok(());
    }
    let acknowledged = counts.pending_count == 0 && status.replicas_behind.is_empty();
    let waited = rollout
        .stage_started_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|elapsed| elapsed >= rollout.interval);
    if acknowledged && waited {
        let reason = format!(
            "stage {} ({}%) acknowledged by {} collector(s)",
            rollout.stage + 1,
            rollout.percent(),
            counts.acked
        );
        let outcome = store
            .advance_rollout(&state.program, state.generation, &change(reason))
            .await?;
        if outcome.changed {
            tracing::info!(
                program = %state.program, generation = outcome.state.generation,
                rollout = ?outcome.state.targeting.rollout.as_ref().map(|r| r.percent()),
                "staged resume moved on"
            );
        }
    }
    Ok(())
}
