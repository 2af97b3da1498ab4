//! Label selectors from operators (`--selector`, scoped pauses and staged resumes): any
//! text must parse or fail without panicking; an error points inside the input and its
//! message stays short; an accepted selector's canonical form parses back to an equal
//! selector, is a fixed point, and matches the same collectors.

#![no_main]

use std::collections::BTreeMap;

use killswitch_control::model::selector::{MAX_SELECTOR_BYTES, Selector};
use libfuzzer_sys::fuzz_target;

/// Longest error message allowed: prose plus at most 128 quoted bytes, escaped.
const MAX_MESSAGE: usize = 1024;

/// A few collectors' labels, to compare what two selectors match.
fn fleet() -> Vec<BTreeMap<String, String>> {
    let collector = |labels: &[(&str, &str)]| {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    vec![
        collector(&[]),
        collector(&[("a", "x")]),
        collector(&[("a", "y"), ("b", "")]),
        collector(&[("region", "emea"), ("tier", "1"), ("site", "Room 4, \"B\"")]),
        collector(&[("a", ""), ("b", "x"), ("in", "notin"), ("k", "é")]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let input = input.as_ref();
    match Selector::parse(input) {
        Ok(selector) => {
            assert!(input.len() <= MAX_SELECTOR_BYTES);
            let canonical = selector.to_string();
            let again = match Selector::parse(&canonical) {
                Ok(again) => again,
                Err(error) => panic!("{input:?} -> {canonical:?}: {error}"),
            };
            assert_eq!(again, selector, "{input:?} -> {canonical:?}");
            assert_eq!(
                again.to_string(),
                canonical,
                "canonical form is a fixed point"
            );
            for labels in fleet() {
                assert_eq!(
                    selector.matches(&labels),
                    again.matches(&labels),
                    "{canonical:?} on {labels:?}"
                );
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.len() <= MAX_MESSAGE,
                "{} byte error message",
                message.len()
            );
            assert!(
                input.is_char_boundary(error.offset()),
                "offset {} of {input:?}",
                error.offset()
            );
            let before = input.get(..error.offset()).map(|s| s.chars().count());
            assert_eq!(
                before.map(|n| n + 1),
                Some(error.column()),
                "{input:?}: {message}"
            );
            assert_eq!(error.pointer(input).lines().count(), 2);
        }
    }
});
