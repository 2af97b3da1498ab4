//! Replicas in etcd: leases, registration, acknowledgement summaries, and the read that
//! status aggregates.

use std::time::Duration;

use etcd_client::{GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::store;

use super::*;

/// Most operations this replica puts in one etcd transaction: below etcd's default
/// `--max-txn-ops` (128), with room for the comparisons a state change adds.
pub const MAX_TXN_OPS: usize = 100;

/// Replica registration and acknowledgement summaries: lease-bound, so they vanish with
/// a replica that dies.
impl Store {
    /// Grants a lease of `ttl` and returns its id.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        // A lease granted by an attempt whose answer was lost simply expires.
        let lease = self
            .call(|mut client| async move { client.lease_grant(seconds, None).await })
            .await?;
        Ok(lease.id())
    }

    /// Revokes a lease, deleting every key bound to it.
    pub async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.call(|mut client| async move { client.lease_revoke(lease).await })
            .await?;
        Ok(())
    }

    /// Writes `{prefix}/replicas/{id}` bound to `lease`.
    pub async fn register_replica(
        &self,
        lease: i64,
        id: &str,
        replica: &store::Replica,
    ) -> Result<(), StoreError> {
        let key = format!("{}{id}", self.keys.replicas());
        let options = etcd_client::PutOptions::new().with_lease(lease);
        let value = replica.encode_to_vec();
        self.call(|mut client| {
            let (key, value, options) = (key.clone(), value.clone(), options.clone());
            async move { client.put(key, value, Some(options)).await }
        })
        .await?;
        Ok(())
    }

    /// Every registered replica: id and registration.
    pub async fn list_replicas(&self) -> Result<Vec<(String, store::Replica)>, StoreError> {
        let prefix = self.keys.replicas();
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let id = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
                Ok((id, decode(&key, kv.value())?))
            })
            .collect()
    }

    /// Writes (or, for `None`, deletes) this replica's summaries: one transaction (one
    /// etcd revision) per [`MAX_TXN_OPS`] programs, however many collectors they cover.
    pub async fn publish_summaries(
        &self,
        lease: i64,
        replica: &str,
        summaries: &[(ProgramName, Option<store::AckSummary>)],
    ) -> Result<(), StoreError> {
        // etcd refuses a transaction of more than `--max-txn-ops` operations (128 by
        // default): write in chunks below that, each safe to resend (unconditional puts
        // and deletes of the same values).
        for chunk in summaries.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(program, summary)| {
                    let key = format!("{}{replica}", self.keys.acks(program));
                    match summary {
                        Some(summary) => TxnOp::put(
                            key,
                            summary.encode_to_vec(),
                            Some(etcd_client::PutOptions::new().with_lease(lease)),
                        ),
                        None => TxnOp::delete(key, None),
                    }
                })
                .collect();
            let txn = Txn::new().and_then(ops);
            self.call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Watches every replica's acknowledgement summary of `name`.
    pub async fn watch_summaries(
        &self,
        name: &ProgramName,
    ) -> Result<etcd_client::WatchStream, StoreError> {
        let options = etcd_client::WatchOptions::new().with_prefix();
        Ok(self
            .client
            .clone()
            .watch(self.keys.acks(name), Some(options))
            .await?)
    }

    /// A program's state, every replica's acknowledgement summary and the ids of the
    /// registered replicas; `None` when the program does not exist.
    pub async fn read_status(
        &self,
        name: &ProgramName,
    ) -> Result<Option<(ProgramState, Vec<ReplicaSummary>, Vec<String>)>, StoreError> {
        let Some(state) = self.get_state(name).await? else {
            return Ok(None);
        };
        let prefix = self.keys.acks(name);
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut summaries = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let replica = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
            summaries.push(ReplicaSummary {
                replica,
                summary: decode(&key, kv.value())?,
            });
        }
        let prefix = self.keys.replicas();
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self.get(prefix.as_str(), Some(options)).await?;
        let registered = response
            .kvs()
            .iter()
            .map(|kv| {
                String::from_utf8_lossy(kv.key())
                    .trim_start_matches(prefix.as_str())
                    .to_owned()
            })
            .collect();
        Ok(Some((state, summaries, registered)))
    }
}
