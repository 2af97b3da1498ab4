//! Values read from etcd become domain types: `ProgramState::from_store`,
//! `Program::from_store` and the audit chain's hash. A corrupt or hostile value must not
//! panic, and what comes out must be valid: a known run state, a policy that parses, a
//! timestamp that survives the wire.
//!
//! Input: one byte picks the message, eight more give the generation, the rest is the
//! encoded message.

#![no_main]

use std::time::SystemTime;

use killswitch_control::model::{FailurePolicy, Program, ProgramName, ProgramState, RunState};
use killswitch_control::model::audit::audit_hash;
use killswitch_control::store::revision;
use killswitch_proto::prost::Message as _;
use killswitch_proto::prost_types;
use killswitch_proto::v1::{self, store};
use libfuzzer_sys::fuzz_target;

/// A timestamp that became a `SystemTime` must come back as the same time.
fn check_time(at: Option<SystemTime>, wire: Option<prost_types::Timestamp>) {
    assert_eq!(at.is_some(), wire.is_some());
    if let (Some(at), Some(wire)) = (at, wire) {
        assert_eq!(SystemTime::try_from(wire).ok(), Some(at));
    }
}

fn check_policy(policy: FailurePolicy, wire: Option<v1::FailurePolicy>) {
    assert_eq!(FailurePolicy::parse(wire.as_ref()), Ok(policy));
}



fuzz_target!(|data: &[u8]| {
    let [kind, rest @ ..] = data else { return };
    let (generation, value) = match rest.split_first_chunk::<8>() {
        Some((generation, value)) => (i64::from_le_bytes(*generation), value),
        None => (0, rest),
    };
    let generation = revision(generation);
    let Ok(name) = ProgramName::parse("demo") else {
        return;
    };
    match kind % 3 {
        0 => {
            let Ok(stored) = store::ProgramState::decode(value) else {
                return;
            };
            let state = ProgramState::from_store(name, generation, &stored);
            assert_eq!(state.generation, generation);
            let wire = state.to_wire();
            assert_eq!(RunState::from_wire(wire.state), state.state);
            assert!(
                wire.state == v1::RunState::Running as i32
                    || wire.state == v1::RunState::Paused as i32
            );
            check_time(state.changed_at, wire.changed_at);
            check_policy(state.policy, wire.policy);
        }
        1 => {
            let Ok(stored) = store::Program::decode(value) else {
                return;
            };
            let program = Program::from_store(name, &stored);
            let wire = program.to_wire();
            assert_eq!(wire.name, "demo");
            check_time(program.created_at, wire.created_at);
            check_policy(program.policy, wire.policy);
        }
        _ => {
            let Ok(entry) = store::AuditEntry::decode(value) else {
                return;
            };
            let hash = audit_hash(&entry);
            assert_eq!(hash.len(), 32);
            let rehashed = store::AuditEntry {
                hash: hash.clone(),
                ..entry.clone()
            };
            assert_eq!(audit_hash(&rehashed), hash, "the hash does not cover itself");
            let _ = (RunState::from_wire(entry.from), RunState::from_wire(entry.to));
            let _ = entry.at.and_then(|t| SystemTime::try_from(t).ok());
        }
    }
});
