//! The committed header is what cbindgen generates from the crate today: a C collector
//! never compiles against a stale one. Run with `KILLSWITCH_BLESS=1` to rewrite it.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("include/killswitch.h");
    if std::env::var_os("KILLSWITCH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `KILLSWITCH_BLESS=1 cargo test -p killswitch-ffi --test header` and commit it",
        path.display()
    );
}
