//! A failure policy from an operator (`CreateProgram`, `SetPolicy`) or from etcd:
//! `FailurePolicy::parse` accepts only grace periods from 1 s to 24 h and known enum
//! values, `from_store` never fails, and an accepted policy survives its wire form.

#![no_main]

use killswitch_control::model::{FailurePolicy, MAX_GRACE, MIN_GRACE};
use killswitch_proto::prost::Message as _;
use killswitch_proto::v1;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = v1::FailurePolicy::decode(data) else {
        return;
    };
    let parsed = FailurePolicy::parse(Some(&wire));
    match &parsed {
        Ok(policy) => {
            assert!((MIN_GRACE..=MAX_GRACE).contains(&policy.grace));
            assert_eq!(FailurePolicy::parse(Some(&policy.to_wire())), Ok(*policy));
            let _ = policy.to_string();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let stored = FailurePolicy::from_store(Some(&wire));
    assert_eq!(stored, parsed.clone().unwrap_or_default());
    assert_eq!(FailurePolicy::parse(Some(&stored.to_wire())), Ok(stored));
});
