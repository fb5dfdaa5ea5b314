//! Generates the gRPC code from `proto/hybrid.proto` with a vendored `protoc`, so a fresh machine without
//! a system protobuf compiler builds the workspace.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/hybrid.proto");
    // Messages that do not parse are InvalidArgument, not Internal (see src/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::HybridCodec")
        .compile_protos(&["proto/hybrid.proto"], &["proto"])?;
    Ok(())
}
