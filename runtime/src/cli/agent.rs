//! `corral agent`: run the agent; `corral agent check`: validate its set-up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use corral::agent::config::AgentConfig;
use corral::agent::{Agent, status};
use corral::client::RegistryError;
use corral::client::connection::ConnectionFile;
use corral::secrets::Secrets;

/// Arguments of `corral agent`.
#[derive(clap::Args)]
pub struct Args {
    /// Required: the agent's config, agent.toml (see the README for every key).
    #[arg(long, global = true, value_name = "agent.toml")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check the config, the connection file, the guests (and the secrets
    /// they ask for) and the registry (a token, then one poll), then exit:
    /// 0 if all is well, 1 with what to fix otherwise.
    Check,
}

/// How long the registry check waits for an answer.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the agent until SIGINT/SIGTERM (twice: release running jobs at once).
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.config.ok_or_else(|| {
        anyhow::anyhow!("--config <agent.toml> is required: corral agent --config agent.toml")
    })?;
    let config = AgentConfig::load(&path)?;
    let principal = ConnectionFile::load(&config.connection_file)?.principal_id;
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
        return check(&agent, &bound, &principal).await;
    }
    if let Some(addr) = status_listen {
        let view = status::StatusView {
            metrics: agent.metrics(),
            catalog: agent.catalog().clone(),
            reload: agent.reloader(),
        };
        let bound = status::start(addr, view).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot serve the status port on {addr} (status_listen in {}): {error}",
                path.display()
            )
        })?;
        tracing::info!("status on http://{bound}/healthz and /metrics");
    }
    let stop = agent.stopper();
    let mut stopping = agent.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: no new jobs; a second signal releases running jobs");
        stop.drain();
        wait_for_signal().await;
        stop.release_all();
    });
    // A registry that refuses this agent is a set-up fault: stop now. One
    // that does not answer may come back: run, and show it on /healthz.
    tokio::select! {
        checked = agent.check_registry(CHECK_DEADLINE) => match checked {
            Ok(()) => {}
            Err(error) if error.is_transient() => tracing::warn!(
                "{}; the agent runs and keeps trying",
                registry_problem(&error, &agent, &principal)
            ),
            Err(error) => anyhow::bail!(registry_problem(&error, &agent, &principal)),
        },
        () = stopping.wait_for_drain() => {}
    }
    if served.is_empty() {
        tracing::info!(
            "agent running with no guest yet: drop <name>.wasm and <name>.toml into the guests folder"
        );
    } else {
        tracing::info!("agent running with guests: {}", served.join(", "));
    }
    agent.run().await;
    Ok(ExitCode::SUCCESS)
}

/// `corral agent check`: every problem printed, exit 1 if there is one.
async fn check(agent: &Agent, bound: &Secrets, principal: &str) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    for guest in agent.catalog().guests() {
        println!(
            "guest {} {}:",
            guest.manifest().name,
            guest.manifest().version
        );
        for line in super::guests::grant_lines(guest.manifest(), bound, true) {
            println!("  {line}");
        }
    }
    for (stem, why) in agent.catalog().refusals() {
        problems.push(format!("guest {stem}.wasm is refused: {why}"));
    }
    if agent.catalog().guests().is_empty() {
        problems.push(
            "no guest loads: the agent would start and wait for one in guests_dir".to_string(),
        );
    }
    match agent.check_registry(CHECK_DEADLINE).await {
        Ok(()) => println!(
            "registry {}: token granted, polling as agent {} works",
            agent.registry_url(),
            agent.agent_id()
        ),
        Err(error) => problems.push(registry_problem(&error, agent, principal)),
    }
    if problems.is_empty() {
        println!("ok");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// What is wrong with the registry, and which key or command fixes it.
fn registry_problem(error: &RegistryError, agent: &Agent, principal: &str) -> String {
    let url = agent.registry_url();
    let id = agent.agent_id();
    match error {
        RegistryError::Transient { .. } | RegistryError::Unreachable(_) => format!(
            "the registry at {url} does not answer ({error}): check registry_url in agent.toml, or the connection file's ApiBaseAddresses and SecurityTokenServiceBaseAddresses"
        ),
        RegistryError::Unauthorized(_) => format!(
            "{error}: the connection file's key is not (or no longer) the agent's; make a new one (corral registry add-agent --name {principal} --force) and point connection_file at it"
        ),
        RegistryError::Rejected { status: 403, .. } if id != principal => format!(
            "the registry refuses to serve agent id {id} to this connection file, whose ServicePrincipalId is {principal}: set agent_id = \"{principal}\" in agent.toml, or remove agent_id ({error})"
        ),
        RegistryError::Rejected { status: 403, .. } => {
            format!("the registry refuses to serve agent id {id} to this connection file ({error})")
        }
        other => format!("the registry at {url} refused the check: {other}"),
    }
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
