use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = frontend::Config::parse();
    common::telemetry::init();
    let listener = match common::http::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match frontend::run(listener, config, common::http::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("front-end failed: {e}");
            ExitCode::FAILURE
        }
    }
}
