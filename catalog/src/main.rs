use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = catalog::Config::parse();
    common::telemetry::init();
    let listener = match common::http::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match catalog::run(listener, config, common::http::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("catalog failed: {e}");
            ExitCode::FAILURE
        }
    }
}
