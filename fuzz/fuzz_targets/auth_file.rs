//! The operators file (`auth.toml`: names, roles, program scopes, token hashes, signing
//! keys), read at replica start-up, and the identities read from client certificates'
//! SPIFFE URIs. Neither may panic, whatever the bytes.

#![no_main]

use killswitch_control::api::auth::{AuthConfig, parse_spiffe_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = AuthConfig::parse(text, "fuzz") {
        let _ = config.operator("alice");
        let _ = config.operator_by_token(text);
    }
    let _ = parse_spiffe_id(text, "killswitch.local");
});
