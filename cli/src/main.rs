//! `leasehold`: see the `leasehold_cli` library for the commands.

fn main() -> std::process::ExitCode {
    leasehold_cli::main_with_args(std::env::args_os())
}
