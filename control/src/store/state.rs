//! A program's state: reading and listing it, and changing it. Every read merges the
//! stop-all flag, read at the same revision, into each state
//! ([`ProgramState::with_stop_all`]). Every change goes through [`Store::edit_state`]: it
//! reads the state and the flag, lets the caller decide the new state, and commits it with
//! its audit entry in one transaction that also compares the flag, so the decision and the
//! state it returns were made under the flag that held when it committed.

use std::time::SystemTime;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};

use super::*;

impl Store {
    /// Reads one program's state, under the stop-all flag read at the same revision;
    /// `None` when it does not exist.
    pub async fn get_state(&self, name: &ProgramName) -> Result<Option<ProgramState>, StoreError> {
        let key = self.keys.state(name);
        let response = self.get(key.as_str(), None).await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let stored: store::ProgramState = decode(&key, kv.value())?;
        let flag = self
            .global_at(response.header().map_or(0, |h| h.revision()))
            .await?
            .flag();
        Ok(Some(ProgramState::from_store(
            name.clone(),
            revision(kv.mod_revision()),
            &stored,
            &flag,
        )))
    }

    /// Every program's state, read at one revision (the latest).
    pub async fn list_states(&self) -> Result<Listing, StoreError> {
        self.list_states_at(0).await
    }

    /// Every program's state and the stop-all flag as they were at revision `at` (0: the
    /// latest).
    pub(crate) async fn list_states_at(&self, at: i64) -> Result<Listing, StoreError> {
        let options = GetOptions::new().with_prefix().with_revision(at);
        let response = self.get(self.keys.states(), Some(options)).await?;
        let revision = response.header().map_or(at, |h| h.revision());
        let stop_all = self.global_at(revision).await?.flag();
        let mut states = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            // One unreadable state must not blind the replica to every other program:
            // it is left out (its collectors hold, as for an unknown program), as the
            // watch leaves out such an update.
            match self.decode_state(kv.key(), kv.value(), kv.mod_revision(), &stop_all) {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "ignoring a state this replica cannot read"),
            }
        }
        Ok(Listing {
            revision,
            states,
            stop_all,
        })
    }

    /// Decodes a `state/{name}` key-value under the stop-all flag `stop_all`; `None`
    /// (logged) for a key with an invalid name. An unreadable value is an error, except
    /// while the stop-all is active: it then reads as PAUSED (logged), so the flag reaches
    /// that program's collectors too.
    pub(crate) fn decode_state(
        &self,
        key: &[u8],
        value: &[u8],
        mod_revision: i64,
        stop_all: &StopAllFlag,
    ) -> Result<Option<ProgramState>, StoreError> {
        let key = String::from_utf8_lossy(key);
        let Some(name) = key
            .strip_prefix(&self.keys.states())
            .and_then(|n| ProgramName::parse(n).ok())
        else {
            tracing::warn!(%key, "ignoring a state key whose name is not valid");
            return Ok(None);
        };
        let stored: store::ProgramState = match decode(&key, value) {
            Ok(stored) => stored,
            Err(error) if stop_all.active() => {
                tracing::error!(%error, "reading an unreadable state as PAUSED during stop-all");
                store::ProgramState {
                    state: v1::RunState::Paused as i32,
                    reason: "the stored state is unreadable".to_owned(),
                    ..store::ProgramState::default()
                }
            }
            Err(error) => return Err(error),
        };
        Ok(Some(ProgramState::from_store(
            name,
            revision(mod_revision),
            &stored,
            stop_all,
        )))
    }

    /// Pauses or resumes a program. Already in that state: nothing is written, and the
    /// current state comes back with `changed: false` (a pause that adds `purge` to a
    /// pause without it is a change).
    pub async fn set_state(
        &self,
        name: &ProgramName,
        target: RunState,
        purge: bool,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        self.change_state(name, target, purge, change, None).await
    }

    /// [`set_state`](Self::set_state), for a resume carrying `signed` (the state must
    /// still be the generation it replaces, and keeps its authorization) and, with
    /// `staged`, a staged resume. A whole-program change clears every scoped rule.
    pub(super) async fn change_state(
        &self,
        name: &ProgramName,
        target: RunState,
        purge: bool,
        change: &Change,
        signed: Option<&SignedResume>,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            let plain = current.targeting.rules.is_empty()
                && current.targeting.rollout.is_none()
                && current.targeting.scope.is_none();
            let same = plain
                && current.state == target
                && (target == RunState::Running || current.purge || !purge);
            if same {
                return Ok(None);
            }
            if signed.is_some_and(|s| s.replaces != current.generation) {
                return Err(StoreError::StaleStatement);
            }
            let new = store::ProgramState {
                purge: target == RunState::Paused && purge,
                authorization: signed
                    .filter(|_| target == RunState::Running)
                    .map(|s| s.authorization.clone()),
                ..whole(stored, target)
            };
            let detail = if target == RunState::Paused && purge {
                "purge".to_owned()
            } else {
                String::new()
            };
            Ok(Some(Edit::new(new, target.action(), detail)))
        })
        .await
    }
}

/// The new state a change decided on.
pub(super) struct Edit {
    /// The new stored state; actor, reason and time are filled in.
    pub(crate) stored: store::ProgramState,
    /// The audit action.
    pub(crate) action: &'static str,
    /// The audit detail.
    pub(crate) detail: String,
    /// Further comparisons and operations of the same transaction.
    pub(crate) compares: Vec<Compare>,
    pub(crate) ops: Vec<TxnOp>,
}

impl Edit {
    pub(crate) fn new(stored: store::ProgramState, action: &'static str, detail: String) -> Self {
        Self {
            stored,
            action,
            detail,
            compares: Vec::new(),
            ops: Vec::new(),
        }
    }
}

/// A whole-program state: the base state alone, every rule, staged resume and scope gone.
pub(super) fn whole(current: &store::ProgramState, target: RunState) -> store::ProgramState {
    store::ProgramState {
        state: target.to_wire() as i32,
        policy: current.policy,
        ..store::ProgramState::default()
    }
}

/// The stop-all flag as stored, with its key's mod_revision (0 and an inactive flag when
/// never set).
pub(super) struct Global {
    pub(super) revision: i64,
    pub(super) value: v1::StopAll,
}

impl Global {
    /// The flag as the model knows it.
    pub(super) fn flag(&self) -> StopAllFlag {
        StopAllFlag::from_stored(&self.value, revision(self.revision))
    }
}

impl Store {
    /// The stop-all flag as it is now.
    pub(super) async fn global(&self) -> Result<Global, StoreError> {
        self.global_at(0).await
    }

    /// The stop-all flag as it was at revision `at` (0: the latest).
    async fn global_at(&self, at: i64) -> Result<Global, StoreError> {
        let key = self.keys.global();
        let options = GetOptions::new().with_revision(at);
        let response = self.get(key.as_str(), Some(options)).await?;
        let (revision, value) = match response.kvs().first() {
            Some(kv) => (kv.mod_revision(), decode(&key, kv.value())?),
            None => (0, v1::StopAll::default()),
        };
        Ok(Global { revision, value })
    }

    /// The stop-all flag, with the generation that last changed it.
    pub async fn get_stop_all(&self) -> Result<StopAllFlag, StoreError> {
        Ok(self.global().await?.flag())
    }

    /// Reads a program's state and the stop-all flag, asks `edit` for the new state
    /// (`None`: nothing to change; the state it is given is under the flag, so its
    /// generation is the effective one) and commits it with its audit entry, comparing
    /// the state key's own mod_revision, the flag's and the audit head's. A lost race
    /// reads again, at most [`MAX_ATTEMPTS`] times.
    pub(super) async fn edit_state<F>(
        &self,
        name: &ProgramName,
        change: &Change,
        mut edit: F,
    ) -> Result<ChangeOutcome, StoreError>
    where
        F: FnMut(&ProgramState, &store::ProgramState) -> Result<Option<Edit>, StoreError>,
    {
        let state_key = self.keys.state(name);
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            let (at, stored) = self
                .read::<store::ProgramState>(&state_key)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            let global = self.global().await?;
            let flag = global.flag();
            let current = ProgramState::from_store(name.clone(), revision(at), &stored, &flag);
            let Some(mut edit) = edit(&current, &stored)? else {
                return Ok(ChangeOutcome {
                    state: current,
                    changed: false,
                });
            };
            let head = self.audit_head().await?;
            let now = SystemTime::now();
            let new = &mut edit.stored;
            new.reason.clone_from(&change.reason);
            new.incident_id.clone_from(&change.incident_id);
            new.actor.clone_from(&change.actor);
            new.changed_at = Some(killswitch_proto::timestamp(now));
            new.stop_all = None;
            let to = RunState::from_wire(new.state);
            let entry = audit_entry(
                &head,
                now,
                change,
                Audited {
                    action: edit.action,
                    program: name.as_str(),
                    from: current.state,
                    to,
                    detail: std::mem::take(&mut edit.detail),
                },
            );
            let mut compares = vec![
                Compare::mod_revision(state_key.as_str(), CompareOp::Equal, at),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
                Compare::mod_revision(self.keys.global(), CompareOp::Equal, global.revision),
            ];
            compares.append(&mut edit.compares);
            let mut ops = vec![TxnOp::put(
                state_key.as_str(),
                edit.stored.encode_to_vec(),
                None,
            )];
            ops.append(&mut edit.ops);
            let txn = Txn::new()
                .when(compares)
                .and_then(self.audited_puts(&entry, ops));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                return Ok(ChangeOutcome {
                    state: ProgramState::from_store(name.clone(), generation, &edit.stored, &flag),
                    changed: true,
                });
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }
}
