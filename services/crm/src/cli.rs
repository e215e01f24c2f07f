//! The command line. Settings come from the environment (see the README's
//! configuration table); flags choose what to run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use crm_platform::Role;

/// The CRM suite: contacts, interactions, segmentation, alerting and their gateway, in one binary.
///
/// Configuration comes from environment variables (DATABASE_URL, CRM_*, OTEL_*); see the README.
#[derive(Debug, Parser)]
#[command(name = "crm", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process, for a laptop or a small shop.
    ///
    /// Without DATABASE_URL it starts a private PostgreSQL from this machine's
    /// PostgreSQL binaries in the data directory, and reuses it on the next run.
    /// Prints the gateway address and the bootstrap admin API key.
    Up {
        /// Where the private PostgreSQL and the generated secrets are kept
        /// [env: CRM_DATA_DIR; default: ~/.local/share/crm, or /var/lib/crm for root].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run one role, several, or all of them against DATABASE_URL (one Deployment per role).
    Serve {
        /// Roles to run: all, or a comma-separated list of gateway, contacts,
        /// interactions, segmentation, alerting.
        #[arg(long, value_name = "ROLES", default_value = "all", value_parser = parse_targets)]
        target: Targets,
    },
    /// Apply the migrations of every role (or of --target) to DATABASE_URL and exit.
    Migrate {
        /// Roles whose schemas to migrate: all, or a comma-separated list.
        #[arg(long, value_name = "ROLES", default_value = "all", value_parser = parse_targets)]
        target: Targets,
    },
}

/// The roles chosen with `--target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets(pub Vec<Role>);

fn parse_targets(value: &str) -> Result<Targets, String> {
    if value == "all" {
        return Ok(Targets(Role::ALL.to_vec()));
    }
    let mut roles = Vec::new();
    for name in value.split(',').map(str::trim) {
        let role = name.parse::<Role>().map_err(|error| format!("{error}, or all"))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(Targets(roles))
}
