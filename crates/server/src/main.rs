//! `tincan-server`: see `tincan-server --help`.

fn main() -> std::process::ExitCode {
    tincan_server::cli::main()
}
