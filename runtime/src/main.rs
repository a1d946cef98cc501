//! The `corral` command: the agent, its dev tools and its simulators.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// corral: a Clearance camera-registry agent whose integrations run as
/// sandboxed WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// How log lines are written: `text`, or `json` (one object a line, for
    /// log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CORRAL_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: cli::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: poll the registry, run jobs in the sandbox, upload.
    Agent(cli::agent::Args),
    /// Run one job with a guest, no registry: the integration author's dev loop.
    RunJob(cli::run_job::Args),
    /// Serve the simulated camera system.
    CameraSim(cli::camera_sim::Args),
    /// Everything on one machine: camera-sim, the bundled guest, real jobs.
    Demo(cli::demo::Args),
    /// The on-premise registry: serve it, or work on its data folder.
    Registry(cli::registry::Args),
    /// Guests: list a folder, check one, write a new project, build it.
    Guests(cli::guests::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws progress on the terminal; only warnings interrupt it.
    let quiet = matches!(cli.command, Command::Demo(_));
    cli::init_logging(
        if quiet { "warn" } else { "warn,corral=info" },
        cli.log_format,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(args) => cli::agent::run(args).await,
            Command::RunJob(args) => cli::run_job::run(args).await,
            Command::CameraSim(args) => cli::camera_sim::run(args).await,
            Command::Demo(args) => cli::demo::run(args).await,
            Command::Registry(args) => cli::registry::run(args).await,
            Command::Guests(args) => cli::guests::run(args).await,
        }
    });
    // A host call stuck on a blocking thread (a guest that reached a FIFO, a
    // dead NFS mount) must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", cli::error_text(&error));
            ExitCode::FAILURE
        }
    }
}
