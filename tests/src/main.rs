//! The `gigledger` binary, built under this package so its tests can spawn it.
fn main() -> std::process::ExitCode {
    gigledger_api::cli::main()
}
