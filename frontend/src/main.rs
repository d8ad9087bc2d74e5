use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = frontend::Config::parse();
    common::telemetry::init();
    common::http::run_service("front-end", config.listen, |listener| {
        frontend::run(listener, config, common::http::shutdown_signal())
    })
    .await
}
