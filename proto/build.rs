//! Generates the Rust types and tonic services from `killswitch/v1/*.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "killswitch/v1/types.proto",
        "killswitch/v1/collector.proto",
        "killswitch/v1/admin.proto",
        "killswitch/v1/store.proto",
    ];
    // The descriptor set lets the control replica serve gRPC reflection.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Small per-call buffers: see src/codec.rs.
        .codec_path("crate::codec::LeanCodec")
        .file_descriptor_set_path(out_dir.join("killswitch_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
