use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["common.proto", "registry.proto", "issuance.proto", "crl.proto", "revocation.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    // protox compiles the protos in-process, so no protoc is needed.
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // The large oneof members go behind a Box, so the enums stay small.
    tonic_prost_build::configure()
        .boxed(".hpki.registry.v1.CardStep.step.begin")
        .boxed(".hpki.registry.v1.CardStepAnswer.answer.begun")
        .compile_fds(fds)?;
    Ok(())
}
