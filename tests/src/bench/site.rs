//! A site of real processes for the benches: `corral camera-sim`, `corral
//! registry serve` and, if asked, `corral agent`, on loopback, each in a
//! temporary folder of the site's. The bench process posts jobs through the
//! admin API and watches them in the registry's SQLite file (a reader beside
//! the registry's writer), so it adds no calls to the registry's work.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_registry::store::JobRow;
use corral_registry::{NewJob, Store};

use crate::processes::{Admin, Process, corral_binary, free_port, start};

/// What to start.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Cameras camera-sim serves.
    pub devices: usize,
    /// The agent's `max_jobs`; `None` starts no agent process.
    pub agent_max_jobs: Option<usize>,
}

/// The running processes.
pub struct Site {
    root: tempfile::TempDir,
    corral: PathBuf,
    data: PathBuf,
    /// The registry's admin API.
    pub admin: Admin,
    /// camera-sim's base URL.
    pub sim_url: String,
    /// The registry's base URL.
    pub registry_url: String,
    /// The agent identity the agent process runs as.
    pub agent_id: String,
    /// The processes by name: "camera-sim", "registry" and maybe "agent".
    pub processes: Vec<(&'static str, Process)>,
    store: Store,
}

impl Site {
    /// Starts camera-sim, the registry (A256KW key wrapping: an RSA key per
    /// file would measure key generation) and the agent if asked (the
    /// bundled http-vms granted camera-sim; its compile cache its own).
    pub async fn start(config: SiteConfig) -> Site {
        let root = tempfile::tempdir().expect("temporary folder");
        let dir = root.path().to_path_buf();
        let corral = corral_binary();
        let log = |name: &str| dir.join(format!("{name}.log"));
        let devices = config.devices.to_string();
        let (sim, sim_addr) = start(
            &corral,
            &words(&[
                "camera-sim",
                "--listen",
                "127.0.0.1:0",
                "--devices",
                &devices,
            ]),
            &[],
            &log("camera-sim"),
            true,
        );
        let data = dir.join("registry");
        let port = free_port();
        let (registry, _) = start(
            &corral,
            &words(&[
                "registry",
                "serve",
                "--data",
                &data.display().to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--oct-keys",
            ]),
            &[],
            &log("registry"),
            true,
        );
        let registry_url = format!("http://127.0.0.1:{port}");
        let admin = Admin::of(&registry_url, &data);
        let store = Store::open(&data).expect("the registry's data opens");
        let mut site = Site {
            corral,
            data,
            admin,
            sim_url: format!("http://{sim_addr}"),
            registry_url,
            agent_id: "agent-1".into(),
            processes: vec![("camera-sim", sim), ("registry", registry)],
            store,
            root,
        };
        if let Some(max_jobs) = config.agent_max_jobs {
            let connection = site.add_agent(&site.agent_id.clone());
            let agent_config = site.write_agent_folder(&connection, max_jobs);
            let (agent, _) = start(
                &site.corral,
                &words(&["agent", "--config", &agent_config.display().to_string()]),
                &[("CORRAL_SECRET_CAMERA_SIM", "operator:sim-secret")],
                &log("agent"),
                false,
            );
            site.processes.push(("agent", agent));
        }
        site
    }

    /// Registers agent `name`; returns its connection file.
    pub fn add_agent(&self, name: &str) -> PathBuf {
        let connection = self.root.path().join(format!("{name}.json"));
        let added = Command::new(&self.corral)
            .args(["registry", "add-agent", "--data"])
            .arg(&self.data)
            .args(["--name", name, "--url", &self.registry_url, "--out"])
            .arg(&connection)
            .stderr(Stdio::null())
            .status()
            .expect("add-agent runs");
        assert!(added.success(), "add-agent failed");
        connection
    }

    /// The agent's folder: the bundled http-vms granted camera-sim, and its
    /// config; returns the config's path.
    fn write_agent_folder(&self, connection: &Path, max_jobs: usize) -> PathBuf {
        let folder = self.root.path().join("agent");
        let guests = folder.join("guests");
        std::fs::create_dir_all(&guests).expect("guests folder");
        std::fs::write(guests.join("http-vms.wasm"), corral::bundled::HTTP_VMS).expect("guest");
        std::fs::write(guests.join("http-vms.toml"), self.guest_manifest()).expect("manifest");
        let path = folder.join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "connection_file = \"{}\"\nagent_id = \"{}\"\nguests_dir = \"guests\"\n\
                 cache_dir = \"cache\"\nmax_jobs = {max_jobs}\npoll_interval_secs = 0.05\n\
                 [secrets.camera-sim]\norigins = [\"{}\"]\n",
                connection.display(),
                self.agent_id,
                self.sim_url,
            ),
        )
        .expect("agent config");
        path
    }

    /// The bundled http-vms manifest granted this camera-sim, with an hour
    /// of wall time (a recording of many GiB).
    pub fn guest_manifest(&self) -> String {
        corral::bundled::HTTP_VMS_MANIFEST
            .replace("http://127.0.0.1:8081", &self.sim_url)
            .replace("wall_secs = 300", "wall_secs = 3600")
    }

    /// A process's id by name.
    pub fn pid(&self, name: &str) -> u32 {
        self.processes
            .iter()
            .find(|(process, _)| *process == name)
            .map(|(_, process)| process.child.id())
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Posts `jobs`; returns their ids.
    pub async fn post(&self, jobs: &[NewJob]) -> Vec<String> {
        let body = serde_json::to_vec(jobs).expect("jobs serialize");
        let posted = self
            .admin
            .call("POST", "/admin/api/v1/jobs", body)
            .await
            .expect("jobs posted");
        posted
            .as_array()
            .expect("a list")
            .iter()
            .map(|job| job["jobId"].as_str().expect("an id").to_string())
            .collect()
    }

    /// The jobs not final yet (Available or Locked).
    pub async fn open_jobs(&self) -> Vec<JobRow> {
        self.store
            .transaction(|tx| {
                corral_registry::store::jobs_where(tx, "state IN ('Available', 'Locked')", &[])
            })
            .await
            .expect("jobs read")
    }

    /// Waits until every job is final, reading the database every `every`;
    /// `watch` sees the open jobs at each look.
    pub async fn wait_all_final(&self, every: Duration, mut watch: impl FnMut(&[JobRow])) {
        let started = Instant::now();
        loop {
            let open = self.open_jobs().await;
            if open.is_empty() {
                return;
            }
            watch(&open);
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{} jobs still open after 600 s",
                open.len()
            );
            tokio::time::sleep(every).await;
        }
    }

    /// Job `id` as the registry keeps it.
    pub async fn job(&self, id: &str) -> JobRow {
        let id = id.to_string();
        self.store
            .transaction(move |tx| corral_registry::store::job(tx, &id))
            .await
            .expect("job read")
            .expect("the job exists")
    }

    /// The registry's database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// The thumbnail jobs for `agent`, round the `devices` cameras.
pub fn thumbnails(agent: &str, count: usize, devices: usize) -> Vec<NewJob> {
    (0..count)
        .map(|i| {
            crate::registry::new_job(
                "thumbnail",
                agent,
                Some(&format!("cam-{:04}", i % devices + 1)),
            )
        })
        .collect()
}

/// A value from `/proc/<pid>/status` in KiB (e.g. `VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}
