//! Names, ids, label keys and free text from operators and collectors: the one
//! implementation of the shared syntax (`killswitch_proto::contract`) and every validator
//! of `killswitch_control::model` built on it must accept exactly the documented syntax,
//! return their input unchanged when they accept it, and never panic or echo unbounded
//! input back.

#![no_main]

use killswitch_control::model::{self, CollectorId, InvalidInput, ProgramName};
use killswitch_proto::contract;
use libfuzzer_sys::fuzz_target;

/// Longest error message any validator may produce, whatever the input's length: the
/// prose plus at most 128 quoted bytes, each escaped to at most 6 characters (`\u{1b}`).
const MAX_MESSAGE: usize = 1024;

/// `^[a-z][a-z0-9-]{0,62}$`, written independently of the code under test.
fn is_program_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
fn is_collector_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
fn is_operator_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`.
fn is_label_key(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && edge(&b[0])
        && edge(&b[b.len() - 1])
        && b.iter().all(|c| edge(c) || b"._/-".contains(c))
}

fn check_error(error: &InvalidInput) {
    let message = error.to_string();
    assert!(
        message.len() <= MAX_MESSAGE,
        "{} byte error message",
        message.len()
    );
}

/// A validator's verdict must match `expected`; what it accepts it returns unchanged.
fn check<T>(input: &str, result: Result<T, InvalidInput>, as_str: impl Fn(&T) -> &str, expected: bool) {
    match &result {
        Ok(value) => assert_eq!(as_str(value), input),
        Err(error) => check_error(error),
    }
    assert_eq!(result.is_ok(), expected, "{input:?}");
}

/// A free-text field: at most `max` bytes, no control characters but `\n`, and not blank
/// when required.
fn check_text(input: &str, result: Result<String, InvalidInput>, required: bool, max: usize) {
    let expected = input.len() <= max
        && !input.chars().any(|c| c.is_control() && c != '\n')
        && !(required && input.trim().is_empty());
    check(input, result, String::as_str, expected);
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let input = input.as_ref();

    assert_eq!(contract::program_name(input).is_ok(), is_program_name(input), "{input:?}");
    assert_eq!(contract::collector_id(input).is_ok(), is_collector_id(input), "{input:?}");
    assert_eq!(contract::operator_name(input).is_ok(), is_operator_name(input), "{input:?}");
    assert_eq!(contract::label_key(input).is_ok(), is_label_key(input), "{input:?}");
    check(input, ProgramName::parse(input), ProgramName::as_str, is_program_name(input));
    check(input, CollectorId::parse(input), CollectorId::as_str, is_collector_id(input));
    check(input, model::label_key(input), String::as_str, is_label_key(input));
    let printable = input.len() <= model::MAX_LABEL_VALUE_BYTES && !input.chars().any(char::is_control);
    check(input, model::label_value(input), String::as_str, printable);

    check_text(input, model::reason(input), true, model::MAX_REASON_BYTES);
    check_text(input, model::incident_id(input), false, model::MAX_SHORT_FIELD_BYTES);
    check_text(input, model::owner(input), true, model::MAX_SHORT_FIELD_BYTES);
    check_text(input, model::description(input), false, model::MAX_DESCRIPTION_BYTES);
    check_text(input, model::actor(input), true, model::MAX_SHORT_FIELD_BYTES);
});
