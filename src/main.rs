//! `autowrkers`: thin on purpose. Parsing, dispatch and exit codes live in `cli`; everything
//! else is the library.

mod cli;

fn main() -> std::process::ExitCode {
    // The sandbox helper must start before any thread does.
    if let Some(code) = autowrkers::sandbox::helper::main_if_helper() {
        return std::process::ExitCode::from(code);
    }
    cli::main()
}
