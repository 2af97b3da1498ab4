//! The SDK's state file, read when a collector starts: whatever is on disk, parsing must
//! not panic, and what it keeps must be written and read back unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = killswitch_sdk::fuzz_state_file(data) {
        panic!("{problem}");
    }
});
