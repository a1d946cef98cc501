//! `corral camera-sim`: serve the simulated camera system.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use corral_camera_sim::{CameraSim, SimConfig};

/// Arguments of `corral camera-sim`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free one. The address is printed
    /// as the first line of output.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Number of simulated cameras.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Recording bitrate, in bits per second.
    #[arg(long, default_value_t = 4_000_000)]
    bitrate: u64,
    /// HTTP Basic user name.
    #[arg(long, default_value = "operator")]
    user: String,
    /// HTTP Basic password.
    #[arg(long, env = "CAMERA_SIM_PASSWORD", default_value = "sim-secret")]
    password: String,
}

/// Serves until interrupted.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = SimConfig {
        username: args.user,
        password: args.password,
        bitrate_bps: args.bitrate,
        ..SimConfig::with_devices(args.devices)
    };
    let sim = CameraSim::start(config, args.listen)
        .await
        .map_err(|error| {
            anyhow::anyhow!("{error}: pass another --listen (port 0 picks a free one)")
        })?;
    println!("{}", sim.addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(sim);
    Ok(ExitCode::SUCCESS)
}
