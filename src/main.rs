//! The all-in-one launcher and operator CLI; everything lives in the `cli` crate.

// The store (sled) and gRPC allocate per record and per frame; mimalloc cut
// the CA's CPU outside signing by about 8 % at 64 clients (docs/operations.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
