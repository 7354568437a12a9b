//! `autowrkers`: thin on purpose. Parsing, dispatch and exit codes live in `cli`; everything
//! else is the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
