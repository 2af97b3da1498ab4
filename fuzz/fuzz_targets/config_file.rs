//! The control replica's `--config` TOML file: parsed, merged under the defaults,
//! validated and printed back (`--print-config`). None of it may panic, whatever the
//! bytes; a file that is accepted prints back to a file that is accepted too.

#![no_main]

use clap::CommandFactory;
use killswitch_control::config::{ConfigFile, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = ConfigFile::parse(text) else { return };
    let Ok(matches) = Settings::command().try_get_matches_from(["killswitch-control"]) else {
        return;
    };
    let Ok(mut settings) = Settings::from_matches(&matches) else { return };
    settings.merge_file(file, |_| false);
    if settings.validate().is_err() {
        return;
    }
    let printed = settings.to_toml().expect("valid settings print");
    assert!(
        ConfigFile::parse(&printed).is_ok(),
        "--print-config output must parse back: {printed}"
    );
});
