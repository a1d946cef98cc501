//! A whole world on loopback for agent tests: camera-sim, the on-premise
//! registry, a guests folder with http-vms granted the camera, a connection
//! file, and agents made from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::agent::catalog::Catalog;
use corral::agent::config::AgentConfig;
use corral::agent::{Agent, JobHook, Stop};
use corral::bundled;
use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::engine::{Runtime, RuntimeConfig};
use corral::secrets::Secrets;
use corral_camera_sim::{CameraSim, SimConfig};
use corral_registry::{JobJson, NewJob, RegistryConfig};

use crate::backend::Backend;
use crate::registry::{TestRegistry, fast_retry};

/// Everything an agent talks to.
pub struct World {
    /// The camera system.
    pub sim: CameraSim,
    /// The registry.
    pub registry: TestRegistry,
    /// The engine agents share.
    pub runtime: Runtime,
    /// The guests folder.
    pub guests_dir: PathBuf,
    /// The agent id every agent of this world uses.
    pub agent_id: String,
    /// Its connection file.
    pub connection: PathBuf,
}

/// A running agent: stop it, or wait for it.
pub struct RunningAgent {
    /// Its stop handle.
    pub stop: Stop,
    /// Its counters.
    pub metrics: std::sync::Arc<corral::agent::metrics::Metrics>,
    /// Its task.
    pub task: tokio::task::JoinHandle<()>,
    /// Its guests (the folder named in its config).
    pub catalog: Catalog,
    /// Wakes its guests-folder watcher (what `POST /reload` does).
    pub reload: std::sync::Arc<tokio::sync::Notify>,
}

impl World {
    /// Starts a world with `config` for the registry and `sim` for the camera.
    pub async fn start(config: RegistryConfig, sim: SimConfig) -> World {
        World::start_on(&Backend::SQLITE, config, sim).await
    }

    /// Like [`World::start`], with the registry's state on `backend`.
    pub async fn start_on(backend: &Backend, config: RegistryConfig, sim: SimConfig) -> World {
        let sim = CameraSim::start(sim, crate::loopback())
            .await
            .expect("camera-sim");
        let registry = TestRegistry::start_on(backend, config).await;
        let agent_id = "agent-1".to_string();
        let (connection, _) = registry.add_agent(&agent_id).await;
        let guests_dir = registry.dir.path().join("guests");
        std::fs::create_dir_all(&guests_dir).unwrap();
        std::fs::write(guests_dir.join("http-vms.wasm"), bundled::HTTP_VMS).unwrap();
        let manifest = bundled::HTTP_VMS_MANIFEST.replace("http://127.0.0.1:8081", &sim.base_url());
        std::fs::write(guests_dir.join("http-vms.toml"), manifest).unwrap();
        let runtime = Runtime::new(RuntimeConfig { max_instances: 32 })
            .expect("engine")
            .with_secrets(Arc::new(bundled::camera_sim_secrets(
                &sim.base_url(),
                &sim.config().username,
                &sim.config().password,
            )));
        World {
            sim,
            registry,
            runtime,
            guests_dir,
            agent_id,
            connection,
        }
    }

    /// The secrets an agent needs for camera-sim.
    pub fn secrets(&self) -> Secrets {
        self.runtime.secrets().as_ref().clone()
    }

    /// An agent config for this world, polling every 200 ms.
    pub fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(
            &self.agent_id,
            self.connection.clone(),
            self.guests_dir.clone(),
        );
        config.poll_interval = Duration::from_millis(200);
        config.min_poll_interval = config.min_poll_interval.min(config.poll_interval);
        // The tests' shared compile cache, not the user's.
        config.cache_dir = crate::test_cache_dir();
        config
    }

    /// A client of the world's agent identity.
    pub fn client(&self) -> RegistryClient {
        let file = ConnectionFile::load(&self.connection).expect("connection file");
        RegistryClient::from_connection_file(&file, &self.agent_id, None, None, fast_retry())
            .expect("client")
    }

    /// Starts an agent with `config`, through the world's connection file
    /// (not `config.connection_file`: see [`World::agent_through_its_file`]).
    pub fn agent(&self, config: AgentConfig) -> RunningAgent {
        self.agent_with(config, self.secrets())
    }

    /// Starts an agent with `config` (its guests folder) and `secrets`.
    pub fn agent_with(&self, config: AgentConfig, secrets: Secrets) -> RunningAgent {
        self.agent_built(config, secrets, fast_retry(), None)
    }

    /// Starts an agent whose registry calls give up after `deadline` of retries.
    pub fn agent_giving_up_after(&self, config: AgentConfig, deadline: Duration) -> RunningAgent {
        let retry = RetryPolicy {
            deadline,
            ..fast_retry()
        };
        self.agent_built(config, self.secrets(), retry, None)
    }

    /// Starts an agent that runs `hook` at the start of every job.
    pub fn agent_with_hook(&self, config: AgentConfig, hook: JobHook) -> RunningAgent {
        self.agent_built(config, self.secrets(), fast_retry(), Some(hook))
    }

    /// Starts an agent that reaches the registry through the connection
    /// file `config` names, as `corral agent` does (the other starters use
    /// the world's own file whatever `config` says): an agent bound to the
    /// nodes that file lists.
    pub fn agent_through_its_file(&self, config: AgentConfig) -> RunningAgent {
        let connection = config.connection_file.clone();
        self.agent_built_from(&connection, config, self.secrets(), fast_retry(), None)
    }

    fn agent_built(
        &self,
        config: AgentConfig,
        secrets: Secrets,
        retry: RetryPolicy,
        hook: Option<JobHook>,
    ) -> RunningAgent {
        self.agent_built_from(&self.connection, config, secrets, retry, hook)
    }

    fn agent_built_from(
        &self,
        connection: &std::path::Path,
        config: AgentConfig,
        secrets: Secrets,
        retry: RetryPolicy,
        hook: Option<JobHook>,
    ) -> RunningAgent {
        // The agent's guests are loaded against its secrets, through its
        // compile cache, as `Agent::start` does.
        let runtime = Runtime::new(RuntimeConfig { max_instances: 32 })
            .expect("engine")
            .with_cache(&config.cache_dir)
            .expect("cache folder")
            .with_secrets(Arc::new(secrets));
        let catalog = Catalog::load(&runtime, &config.guests_dir).expect("guests");
        catalog
            .keep_owners(&self.agent_id)
            .expect("the device-owner record");
        let file = ConnectionFile::load(connection).expect("connection file");
        let client = RegistryClient::from_connection_file(&file, &self.agent_id, None, None, retry)
            .expect("client");
        let mut agent = Agent::with_parts(client, catalog.clone(), config, retry);
        if let Some(hook) = hook {
            agent = agent.with_job_hook(hook);
        }
        RunningAgent {
            stop: agent.stopper(),
            metrics: agent.metrics(),
            reload: agent.reloader(),
            task: tokio::spawn(agent.run()),
            catalog,
        }
    }

    /// Posts jobs.
    pub async fn post(&self, jobs: Vec<NewJob>) -> Vec<String> {
        self.registry
            .post(jobs)
            .await
            .into_iter()
            .map(|job| job.job_id)
            .collect()
    }

    /// Posts `count` thumbnail jobs spread over the first 8 cameras; their ids.
    pub async fn post_thumbnails(&self, count: usize) -> Vec<String> {
        let jobs = (0..count)
            .map(|i| self.job("thumbnail", Some(&format!("cam-{:04}", i % 8 + 1))))
            .collect();
        self.post(jobs).await
    }

    /// A job of this world's agent.
    pub fn job(&self, job_type: &str, device: Option<&str>) -> NewJob {
        crate::registry::new_job(job_type, &self.agent_id, device)
    }

    /// Waits (checking every 50 ms, up to `limit`) until `done` holds for the jobs `ids`.
    pub async fn wait_until(
        &self,
        ids: &[String],
        limit: Duration,
        done: impl Fn(&JobJson) -> bool,
    ) -> Vec<JobJson> {
        let deadline = Instant::now() + limit;
        loop {
            let mut jobs = Vec::new();
            for id in ids {
                jobs.push(self.registry.job(id).await);
            }
            if jobs.iter().all(&done) {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "jobs did not reach the state in {limit:?}: {jobs:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the jobs are final.
    pub async fn wait_final(&self, ids: &[String], limit: Duration) -> Vec<JobJson> {
        self.wait_until(ids, limit, |job| {
            !matches!(job.state.as_str(), "Available" | "Locked")
        })
        .await
    }
}

impl World {
    /// Posts a thumbnail job for `device` and returns how long the agent held
    /// it: from the registry showing it taken to it being Completed, read
    /// every 5 ms (so the agent's poll interval is not part of it).
    pub async fn thumbnail_latency(&self, device: &str) -> Duration {
        let ids = self.post(vec![self.job("thumbnail", Some(device))]).await;
        let taken = loop {
            if self.registry.job(&ids[0]).await.state != "Available" {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        loop {
            let job = self.registry.job(&ids[0]).await;
            if !matches!(job.state.as_str(), "Available" | "Locked") {
                assert_eq!(job.state, "Completed", "{job:?}");
                return taken.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl World {
    /// Posts two discovery jobs, waits until the agent has taken them, then
    /// measures [`World::thumbnail_latency`] for `device` while both still
    /// run, at most `samples` times. Returns the discoveries and the samples.
    pub async fn thumbnails_beside_two_discoveries(
        &self,
        device: &str,
        samples: usize,
    ) -> (Vec<String>, Vec<Duration>) {
        let discoveries = self
            .post(vec![
                self.job("discovery", None),
                self.job("discovery", None),
            ])
            .await;
        self.wait_until(&discoveries, Duration::from_secs(30), |job| {
            job.state != "Available"
        })
        .await;
        let mut beside = Vec::new();
        while beside.len() < samples {
            // A sample counts if both discoveries were running when it began.
            let mut running = true;
            for id in &discoveries {
                running &= self.registry.job(id).await.state == "Locked";
            }
            if !running {
                break;
            }
            beside.push(self.thumbnail_latency(device).await);
        }
        (discoveries, beside)
    }
}

/// The median of `samples` (not empty).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

impl RunningAgent {
    /// Waits (checking every 10 ms, up to 5 s) until none of its jobs runs,
    /// so its outcome counters are final. The registry shows a job Completed
    /// a moment before the agent, having read the answer, counts it.
    pub async fn settled(&self) -> &corral::agent::metrics::Metrics {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .metrics
            .running
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        &self.metrics
    }

    /// Drains it and waits for it to end.
    pub async fn stop(self) {
        self.stop.drain();
        let _ = self.task.await;
    }
}

impl World {
    /// Drops the hostile test guest into the guests folder as `<stem>.wasm`,
    /// named `hostile`, serving discovery and thumbnails, its discovery
    /// reporting the device ids of `claim` (the hijack attack), with a
    /// wildcard grant so the agent's own loader parses one.
    pub fn add_hostile_guest(&self, stem: &str, claim: &[&str]) {
        std::fs::write(
            self.guests_dir.join(format!("{stem}.toml")),
            format!(
                "name = \"hostile\"\nversion = \"6.6.6\"\njobs = [\"discovery\", \"thumbnail\"]\n\
                 [settings]\nclaim = \"{}\"\n\
                 [[http]]\norigin = \"https://*.cams.example.com\"\n",
                claim.join(",")
            ),
        )
        .unwrap();
        std::fs::write(
            self.guests_dir.join(format!("{stem}.wasm")),
            crate::test_guests::HOSTILE,
        )
        .unwrap();
    }

    /// The devices a finished discovery job listed: `(id, name)`, sorted.
    pub async fn discovered(&self, job: &JobJson) -> Vec<(String, String)> {
        let listed: serde_json::Value =
            serde_json::from_slice(&self.registry.job_plaintext(job).await).unwrap();
        let mut devices: Vec<(String, String)> = listed["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|device| {
                let text = |key: &str| device[key].as_str().unwrap_or_default().to_string();
                (text("deviceId"), text("name"))
            })
            .collect();
        devices.sort();
        devices
    }

    /// Posts a thumbnail for `device` asking for a forgery (which only the
    /// hostile guest makes, `attack = tagged-thumbnail`) and checks that the
    /// camera's own JPEG came back: the job went to http-vms.
    pub async fn thumbnail_by_http_vms(&self, device: &str) {
        let mut thumbnail = self.job("thumbnail", Some(device));
        thumbnail
            .parameters
            .insert("attack".into(), "tagged-thumbnail".into());
        let ids = self.post(vec![thumbnail]).await;
        let done = self.wait_final(&ids, Duration::from_secs(30)).await;
        assert_eq!(done[0].state, "Completed", "{:?}", done[0].message);
        let jpeg = self.registry.job_plaintext(&done[0]).await;
        assert!(jpeg.starts_with(&[0xff, 0xd8, 0xff]) && jpeg.len() > 1000);
        assert!(
            !String::from_utf8_lossy(&jpeg).contains("tag:"),
            "a forged image"
        );
    }
}

impl RunningAgent {
    /// Waits (waking its folder watcher, up to 20 s) until it has loaded
    /// exactly `count` guests.
    pub async fn wait_for_guests(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.catalog.guests().len() != count {
            assert!(Instant::now() < deadline, "{}", self.catalog.describe());
            self.reload.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
