//! Reading the audit log: every entry, a verified chain, a filtered listing; and
//! recording an action on a replica rather than on program state ([`Store::record`]).

use etcd_client::GetOptions;
use killswitch_proto::v1::store;

use super::*;

impl Store {
    /// Every audit entry, oldest first.
    pub async fn audit_entries(&self) -> Result<Vec<store::AuditEntry>, StoreError> {
        let prefix = format!("{}/audit/0", self.keys.prefix);
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        response
            .kvs()
            .iter()
            .map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect()
    }
}

impl Store {
    /// Records `action` (with `detail`), which changes no program state, such as a
    /// replica's credentials reload: an entry for every program (`*`) with no state
    /// (`UNSPECIFIED` before and after), in one transaction that moves the audit head.
    /// Returns its revision.
    pub async fn record(
        &self,
        change: &Change,
        action: &'static str,
        detail: String,
    ) -> Result<Generation, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            let head = self.audit_head().await?;
            let what = Audited {
                action,
                program: "*",
                from: RunState::Paused,
                to: RunState::Paused,
                detail: detail.clone(),
            };
            let mut entry = audit_entry(&head, SystemTime::now(), change, what);
            entry.from = v1::RunState::Unspecified as i32;
            entry.to = v1::RunState::Unspecified as i32;
            entry.hash = audit_hash(&entry);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    self.keys.audit_head(),
                    CompareOp::Equal,
                    head.revision,
                )])
                .and_then(self.audited_puts(&entry, Vec::new()));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                return Ok(generation);
            }
            tracing::debug!("{action} lost a race for the audit head; retrying");
        }
        Err(StoreError::Contention)
    }
}

/// Reading the whole audit log for `ListAudit` and `VerifyAudit`.
///
/// The log is read at one etcd revision (the head's), so a change committed meanwhile is
/// either wholly in the snapshot or wholly out of it, and page by page, so no response
/// nears the gRPC message limit however long the log grows.
impl Store {
    /// Verifies the audit chain: see [`Chain`] for the rules.
    pub async fn verify_audit(&self) -> Result<Verdict, StoreError> {
        let mut attempts = 0;
        loop {
            let mut chain = Chain::new();
            match self
                .scan_audit(|key, value, _| chain.push(key, value))
                .await
            {
                Ok(head) => return Ok(chain.finish(head.as_deref())),
                Err(error) if error.is_compacted() && attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!("etcd compacted the audit snapshot; reading it again");
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The newest audit entries matching `query`, oldest first.
    pub async fn list_audit(&self, query: &Query) -> Result<AuditList, StoreError> {
        let mut attempts = 0;
        loop {
            let mut selection = Selection::new(query.clone());
            match self
                .scan_audit(|key, value, at| selection.push(key, value, revision(at)))
                .await
            {
                Ok(_) => return Ok(selection.finish()),
                Err(error) if error.is_compacted() && attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!("etcd compacted the audit snapshot; reading it again");
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the head, then every other key under `audit/` at the head's revision in key
    /// order, [`AUDIT_PAGE`] keys per request, handing `visit` each key's last segment,
    /// value and mod_revision. Returns the head's value, `None` when there is none.
    async fn scan_audit(
        &self,
        mut visit: impl FnMut(&str, &[u8], i64),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let head_key = self.keys.audit_head();
        let response = self.get(head_key.as_str(), None).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let head = response.kvs().first().map(|kv| kv.value().to_vec());

        let dir = format!("{}/audit/", self.keys.prefix);
        // '0' follows '/': the end of the range of keys that start with `dir`.
        let end = format!("{}/audit0", self.keys.prefix);
        let mut from = dir.clone().into_bytes();
        loop {
            let options = GetOptions::new()
                .with_range(end.as_str())
                .with_revision(revision)
                .with_limit(AUDIT_PAGE);
            let page = self.get(from.clone(), Some(options)).await?;
            for kv in page.kvs() {
                if kv.key() == head_key.as_bytes() {
                    continue;
                }
                let key = kv.key().strip_prefix(dir.as_bytes()).unwrap_or(kv.key());
                visit(&String::from_utf8_lossy(key), kv.value(), kv.mod_revision());
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    // The smallest key after the last one read.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(head),
            }
        }
    }
}

/// Keys read per request when scanning the audit log.
const AUDIT_PAGE: i64 = 500;
