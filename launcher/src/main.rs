//! `launcher`: what `./run.sh` runs once the binaries are built. See [`launcher`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = launcher::Cli::parse();
    match launcher::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("run.sh: {}", common::error::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
