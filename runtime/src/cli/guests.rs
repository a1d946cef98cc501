//! `corral guests list` and `corral guests check <file.wasm>`.

use std::path::PathBuf;
use std::process::ExitCode;

use corral::agent::catalog::Catalog;
use corral::engine::{Runtime, RuntimeConfig};

/// Arguments of `corral guests`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Load every guest of a folder and list them (name, version, SHA-256, job types).
    List {
        /// The guests folder.
        #[arg(long, default_value = "guests")]
        dir: PathBuf,
    },
    /// Validate one guest (a component of our world, with a manifest that
    /// parses and grants that make sense) without running it.
    Check {
        /// The `.wasm`; its manifest is the `.toml` beside it.
        wasm: PathBuf,
    },
}

/// Runs a guests subcommand.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig { max_instances: 2 })?;
    match args.command {
        Command::List { dir } => {
            let catalog = Catalog::load(&runtime, &dir)?;
            println!("{:<20} {:<10} {:<14} serves", "name", "version", "sha256");
            for guest in catalog.guests() {
                let (name, version, serves) = identity(&guest);
                println!(
                    "{name:<20} {version:<10} {:<14} {serves}",
                    &guest.sha256()[..12]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { wasm } => match runtime.load(&wasm) {
            Ok(guest) => {
                let (name, version, serves) = identity(&guest);
                println!(
                    "ok: {name} {version} (sha256 {}) serves {serves}",
                    guest.sha256()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("refused {}: {error}", wasm.display());
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// A guest's name, version, and the job types it serves as the registry spells them.
fn identity(guest: &corral::guest::Guest) -> (&str, &str, String) {
    let serves: Vec<&str> = guest
        .manifest()
        .jobs
        .iter()
        .map(|job| job.as_str())
        .collect();
    (
        &guest.manifest().name,
        &guest.manifest().version,
        serves.join(", "),
    )
}
