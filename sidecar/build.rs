// The migrations are embedded in the binary by `sqlx::migrate!`; rebuild when they change.
// The gRPC types of AssembleContext are generated from proto/ with protoc (PROTOC, or `protoc` on
// PATH; Debian's protobuf-compiler package).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../sql/migrations");
    println!("cargo:rerun-if-changed=../proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["../proto/ibex/context/v1/context.proto"], &["../proto"])?;
    Ok(())
}
