//! `corral agent`: run the agent; `corral agent check`: validate its set-up.

use std::path::PathBuf;
use std::process::ExitCode;

use corral::agent::config::AgentConfig;
use corral::agent::{Agent, status};
use corral::secrets::Secrets;

/// Arguments of `corral agent`.
#[derive(clap::Args)]
pub struct Args {
    /// The agent's config (see the README for every key).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check the config, the connection file (a token is fetched) and the
    /// guests, then exit.
    Check,
}

/// Runs the agent until SIGINT/SIGTERM (twice: release running jobs at once).
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args
        .config
        .ok_or_else(|| anyhow::anyhow!("--config <agent.toml> is required"))?;
    let config = AgentConfig::load(&path)?;
    let secrets = Secrets::from_env()?;
    let mut bound = secrets.clone();
    config.bind_secrets(&mut bound);
    let status_listen = config.status_listen;
    let agent = Agent::start(config, secrets).await?;
    let served: Vec<String> = agent
        .catalog()
        .guests()
        .iter()
        .map(|guest| format!("{} {}", guest.manifest().name, guest.manifest().version))
        .collect();
    if matches!(args.command, Some(Command::Check)) {
        println!(
            "ok: registry reachable, token granted, guests: {}",
            served.join(", ")
        );
        for guest in agent.catalog().guests() {
            println!("{}:", guest.manifest().name);
            for line in super::guests::grant_lines(guest.manifest(), &bound, true) {
                println!("  {line}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(addr) = status_listen {
        let view = status::StatusView {
            metrics: agent.metrics(),
            catalog: agent.catalog().clone(),
            reload: agent.reloader(),
        };
        let bound = status::start(addr, view).await?;
        tracing::info!("status on http://{bound}/healthz and /metrics");
    }
    tracing::info!("agent running with guests: {}", served.join(", "));
    let stop = agent.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: no new jobs; a second signal releases running jobs");
        stop.drain();
        wait_for_signal().await;
        stop.release_all();
    });
    agent.run().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
