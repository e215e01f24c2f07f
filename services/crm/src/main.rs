//! `crm`: parse the command line, read the configuration, install telemetry,
//! run the command. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use crm::cli::Cli;
use crm_platform::{Config, telemetry::Telemetry};

/// Bulk imports and ingests allocate many small values per row; mimalloc
/// spends less of the two cores on that than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    crm::commands::name_the_service(&cli.command, &mut config);
    let telemetry = match Telemetry::build(&config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry.install_subscriber(&config) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    let outcome = crm::commands::run(cli.command, config, &telemetry).await;
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "crm stopped");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
