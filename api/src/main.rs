//! The `gigledger` binary: everything lives in the library, so tests can run the same code.
fn main() -> std::process::ExitCode {
    gigledger_api::cli::main()
}
