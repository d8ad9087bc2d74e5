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
    common::http::run_service("order replica", addr, |listener| {
        order::run(listener, config, common::http::shutdown_signal())
    })
    .await
}
