//! A site on loopback for tests of the `corral agent` binary: camera-sim, an
//! on-premise registry with agent-1, a guests folder holding http-vms granted
//! the camera, and an `agent.toml` written next to them.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use corral::bundled;
use corral_camera_sim::{CameraSim, SimConfig};
use corral_registry::{Registry, RegistryConfig, RunningRegistry, Store, auth};

/// Everything an agent process of a test talks to, in one temporary folder.
pub struct Site {
    /// The folder holding the registry's data, the guests, and the files.
    pub dir: tempfile::TempDir,
    /// The camera system.
    pub sim: CameraSim,
    /// The registry.
    pub registry: RunningRegistry,
    /// The registry's store.
    pub store: Store,
    /// agent-1's connection file.
    pub connection: PathBuf,
    /// The guests folder.
    pub guests: PathBuf,
}

impl Site {
    /// Starts camera-sim with `sim` and a registry, and registers agent-1.
    pub async fn start(sim: SimConfig) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let sim = CameraSim::start(sim, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let registry = Registry::open(&dir.path().join("registry"), RegistryConfig::default())
            .unwrap()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let store = registry.registry().store().clone();
        let url = registry.base_url();
        let (connection_file, _) = store
            .transaction(move |tx| auth::add_agent(tx, "agent-1", &url))
            .await
            .unwrap();
        let connection = dir.path().join("agent-1.json");
        std::fs::write(&connection, serde_json::to_vec(&connection_file).unwrap()).unwrap();
        let guests = dir.path().join("guests");
        std::fs::create_dir_all(&guests).unwrap();
        std::fs::write(guests.join("http-vms.wasm"), bundled::HTTP_VMS).unwrap();
        std::fs::write(
            guests.join("http-vms.toml"),
            bundled::HTTP_VMS_MANIFEST.replace("http://127.0.0.1:8081", &sim.base_url()),
        )
        .unwrap();
        Site {
            dir,
            sim,
            registry,
            store,
            connection,
            guests,
        }
    }

    /// Writes `agent.toml`: agent-1's files, camera-sim's secret bound to it,
    /// and `extra` lines of top-level keys; returns its path.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "connection_file = \"agent-1.json\"\nguests_dir = \"guests\"\n{extra}\n\
                 [secrets.camera-sim]\norigins = [\"{}\"]\n",
                self.sim.base_url()
            ),
        )
        .unwrap();
        path
    }
}

/// The `corral` binary with `args`, camera-sim's secret set as the operator
/// would unless `secret` is `None`.
pub fn corral(args: &[&str], config: &Path, secret: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
    command.args(args).arg("--config").arg(config);
    command.env_remove("CORRAL_SECRET_CAMERA_SIM");
    if let Some(secret) = secret {
        command.env("CORRAL_SECRET_CAMERA_SIM", secret);
    }
    command
}

/// Its standard output and error, as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
