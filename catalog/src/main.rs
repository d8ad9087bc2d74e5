use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = catalog::Config::parse();
    common::telemetry::init();
    common::http::run_service("catalog", config.listen, |listener| {
        catalog::run(listener, config, common::http::shutdown_signal())
    })
    .await
}
