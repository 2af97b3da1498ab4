//! The first thing a collector sends: arbitrary bytes decoded as a `CollectorMessage`,
//! then the checks a session runs on it. Validation must never panic, a Hello it accepts
//! must hold every documented bound, and its error messages stay short.

#![no_main]

use std::time::SystemTime;

use killswitch_control::model::{self, RunState};
use killswitch_control::api::session::{MAX_LABELS, MAX_PROGRAMS_PER_SESSION, parse_hello};
use killswitch_proto::prost::Message as _;
use killswitch_proto::v1::{CollectorMessage, collector_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = CollectorMessage::decode(data) else {
        return;
    };
    match message.msg {
        Some(collector_message::Msg::Hello(wire)) => match parse_hello(wire.clone()) {
            Ok(hello) => {
                assert_eq!(hello.collector.as_str(), wire.collector_id);
                assert!(!hello.programs.is_empty());
                assert!(wire.programs.len() <= MAX_PROGRAMS_PER_SESSION);
                assert!(
                    hello.programs.windows(2).all(|w| w[0] < w[1]),
                    "programs sorted, each once"
                );
                for program in &wire.programs {
                    assert!(hello.programs.iter().any(|p| p.as_str() == program));
                }
                assert!(hello.labels.len() <= MAX_LABELS);
                assert_eq!(hello.labels.len(), wire.labels.len());
                for (key, value) in hello.labels.iter() {
                    assert!(model::label_key(key).is_ok(), "{key:?}");
                    assert!(model::label_value(value).is_ok(), "{value:?}");
                    assert_eq!(wire.labels.get(key), Some(value));
                }
            }
            Err(error) => {
                let message = error.to_string();
                // Prose plus at most 128 quoted bytes, each escaped to at most 6 characters.
                assert!(message.len() <= 1024, "{} byte error message", message.len());
            }
        },
        // What a session reads from an Ack before it records it.
        Some(collector_message::Msg::Ack(ack)) => {
            let _ = RunState::from_wire(ack.effective);
            let _ = ack.applied_at.and_then(|t| SystemTime::try_from(t).ok());
        }
        None => {}
    }
});
