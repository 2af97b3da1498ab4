//! The syntax rules shared with the control plane, from `killswitch_proto::contract`: what
//! a program name, a collector id and a label must look like, so that the builder refuses
//! what a replica would refuse and the state file never holds a name no program can have.

use killswitch_proto::contract;

/// Whether `name` matches `^[a-z][a-z0-9-]{0,62}$`, the syntax of a program name.
pub(crate) fn is_valid_program_name(name: &str) -> bool {
    contract::program_name(name).is_ok()
}

/// Whether `id` matches `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`, the syntax the control
/// plane accepts for a collector id.
pub(crate) fn is_valid_collector_id(id: &str) -> bool {
    contract::collector_id(id).is_ok()
}

/// Most labels a collector may send (the control plane refuses more).
pub(crate) const MAX_LABELS: usize = contract::MAX_LABELS;

/// Whether a label would pass the control plane's Hello checks: the key matches
/// `^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`, the value is at most 128 bytes without
/// control characters.
pub(crate) fn is_valid_label(key: &str, value: &str) -> bool {
    contract::label_key(key).is_ok() && contract::label_value(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::{is_valid_collector_id, is_valid_label, is_valid_program_name};

    #[test]
    fn label_syntax_matches_the_control_plane() {
        for (key, value, valid) in [
            ("region", "emea", true),
            ("k8s.io/zone-a", "", true),
            ("a", "x", true),
            ("Region", "emea", false),
            ("-region", "x", false),
            ("region-", "x", false),
            ("", "x", false),
            ("region", "a\u{7}b", false),
        ] {
            assert_eq!(is_valid_label(key, value), valid, "{key:?}={value:?}");
        }
        assert!(!is_valid_label(&"a".repeat(64), "x"));
        assert!(!is_valid_label("region", &"x".repeat(129)));
    }

    #[test]
    fn program_names() {
        let check = |name: &str, valid: bool| {
            assert_eq!(is_valid_program_name(name), valid, "{name:?}");
        };
        check("a", true);
        check("keystrokes", true);
        check("screen-v2", true);
        check("a-", true);
        check(&format!("a{}", "b".repeat(62)), true);
        check(&format!("a{}", "b".repeat(63)), false);
        check("", false);
        check("1abc", false);
        check("-abc", false);
        check("Keys", false);
        check("keys_v2", false);
        check("keys.v2", false);
        check("keys v2", false);
        check("clé", false);
    }

    #[test]
    fn collector_ids() {
        let check = |id: &str, valid: bool| {
            assert_eq!(is_valid_collector_id(id), valid, "{id:?}");
        };
        check("c1", true);
        check("7", true);
        check("host-42.eu-west:worker_3", true);
        check("HOST", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check(".host", false);
        check("-host", false);
        check("host 42", false);
        check("host/42", false);
        check("hôte", false);
    }
}
