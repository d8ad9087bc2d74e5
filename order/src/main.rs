use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = order::Config::parse();
    common::telemetry::init();
    let addr = match config.listen_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match common::http::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match order::run(listener, config, common::http::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("order replica failed: {e}");
            ExitCode::FAILURE
        }
    }
}
