//! Compiles every contract under `proto/` with protox (pure Rust, no system
//! `protoc`) and generates prost messages and tonic clients and servers.
//! The encoded descriptor set is kept for server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = proto_files(&proto_root.join("crm"))?;
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::Compiler::new([&proto_root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("crm_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec plus the check for text PostgreSQL cannot store.
        .codec_path("crate::codec::CheckedCodec")
        .compile_fds_with_config(descriptors, type_names())?;
    Ok(())
}

/// Messages implement `prost::Name`, so events know their full type name.
fn type_names() -> prost_build::Config {
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config
}

/// Every `.proto` file below `dir`, sorted so that builds are reproducible.
fn proto_files(dir: &PathBuf) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(proto_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
