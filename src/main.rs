//! The all-in-one launcher and operator CLI; everything lives in the `cli` crate.

fn main() -> std::process::ExitCode {
    cli::main()
}
