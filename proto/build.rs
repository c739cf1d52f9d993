//! Compiles the .proto contracts with protox (pure Rust; no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["tark/plugin/v1/plugin.proto", "tark/worker/v1/worker.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    // The agent API's descriptors alone, for server reflection (the worker
    // channel is not a service anyone but tarkd's workers may call).
    let agent_api = protox::compile(["tark/plugin/v1/plugin.proto"], ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("agent_api_descriptor.bin"),
        prost::Message::encode_to_vec(&agent_api),
    )?;
    // RPCs tarkd does not implement yet answer UNIMPLEMENTED by default.
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
