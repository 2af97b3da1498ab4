//! Generates the Rust types and tonic services from `killswitch/v1/*.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "killswitch/v1/types.proto",
        "killswitch/v1/collector.proto",
        "killswitch/v1/admin.proto",
        "killswitch/v1/store.proto",
    ];
    tonic_prost_build::configure().compile_protos(&protos, &["."])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
