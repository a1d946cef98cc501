//! Hot swap: from the rename of a new guest version into the guests folder
//! to the catalog serving it, and to the first job done on it.
//!
//! The agent runs with a 10 ms idle poll, so what is measured is the swap
//! (the file event, reading the file, compiling or reading the compile
//! cache, pre-instantiating, the catalog's switch) and one thumbnail job,
//! not the poll pacing a site chooses.

use std::path::Path;
use std::time::{Duration, Instant};

use corral::agent::catalog::Catalog;
use corral::engine::{Runtime, RuntimeConfig};
use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::RegistryConfig;
use sha2::Digest;

use super::{Figure, ms};
use crate::test_guests::{install_variant, variant};
use crate::world::World;

/// One swap's two times, both from the rename.
#[derive(Debug, Clone, Copy)]
pub struct Swap {
    /// Until the catalog serves the new version.
    pub serving: Duration,
    /// Until the first job run by the new version is Completed.
    pub first_job: Duration,
}

/// Medians over the runs.
#[derive(Debug, Clone, Copy)]
pub struct HotSwap {
    /// A version compiled before (its compile read from the cache).
    pub cached: Swap,
    /// A version never seen (compiled on the swap).
    pub cold: Swap,
    /// Compiling the cold versions alone, without the agent.
    pub compile: Duration,
}

/// Swaps `runs` new versions in (cold), and `runs` times back to one seen
/// before (cached).
pub async fn measure(runs: usize) -> HotSwap {
    let config = RegistryConfig {
        key_algorithm: WrapAlgorithm::A256Kw,
        ..RegistryConfig::default()
    };
    let world = World::start(config, SimConfig::with_devices(1)).await;
    let dir = world.registry.dir.path().join("guests-hotswap");
    std::fs::create_dir_all(&dir).expect("guests folder");
    install_variant(&dir, "v", "1");
    let mut agent_config = world.config();
    agent_config.guests_dir = dir.clone();
    agent_config.cache_dir = world.registry.dir.path().join("cache");
    agent_config.poll_interval = Duration::from_millis(10);
    agent_config.min_poll_interval = Duration::from_millis(5);
    let runtime = Runtime::new(RuntimeConfig { max_instances: 16 })
        .expect("engine")
        .with_cache(&agent_config.cache_dir)
        .expect("cache folder")
        .with_secrets(world.runtime.secrets().clone());
    let uncached = Runtime::new(RuntimeConfig { max_instances: 4 })
        .expect("engine")
        .with_secrets(world.runtime.secrets().clone());
    let staging = world.registry.dir.path().join("guests-compiled-alone");
    std::fs::create_dir_all(&staging).expect("staging folder");
    let catalog = Catalog::load(&runtime, &dir).expect("guests");
    let agent = corral::agent::Agent::with_parts(
        world.client(),
        catalog.clone(),
        agent_config,
        crate::registry::fast_retry(),
    );
    let stop = agent.stopper();
    let task = tokio::spawn(agent.run());
    // The watch is up once the catalog says so.
    while catalog.describe()["watch"].as_str().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let swapper = Swapper {
        world: &world,
        catalog: &catalog,
        dir: &dir,
    };
    // A first job, so connections and tokens are warm.
    swapper.first_job_on("1").await;

    let (mut cold, mut cached, mut compile) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let tag = (run + 2).to_string();
        // The same load the swap does, by a runtime without a cache, from a
        // folder of its own.
        install_variant(&staging, "v", &tag);
        let (uncached, wasm) = (uncached.clone(), staging.join("v.wasm"));
        let started = Instant::now();
        tokio::task::spawn_blocking(move || uncached.load(&wasm).expect("compiles"))
            .await
            .expect("compile task");
        compile.push(started.elapsed());
        cold.push(swapper.swap(&tag).await);
        // Back to the version before, compiled already.
        cached.push(swapper.swap(&(run + 1).to_string()).await);
    }
    stop.drain();
    let _ = task.await;
    HotSwap {
        cached: Swap::median(&cached),
        cold: Swap::median(&cold),
        compile: median(&mut compile),
    }
}

struct Swapper<'a> {
    world: &'a World,
    catalog: &'a Catalog,
    dir: &'a Path,
}

impl Swapper<'_> {
    async fn swap(&self, tag: &str) -> Swap {
        let renamed = Instant::now();
        install_variant(self.dir, "v", tag);
        let version = format!("{tag}.0.0");
        let wasm = variant(tag);
        while !serves(self.catalog, &version, &wasm) {
            assert!(
                renamed.elapsed() < Duration::from_secs(120),
                "version {version} never served: {}",
                self.catalog.describe()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let serving = renamed.elapsed();
        self.first_job_on(tag).await;
        Swap {
            serving,
            first_job: renamed.elapsed(),
        }
    }

    /// Posts thumbnail jobs one at a time until one is run by version `tag`.
    async fn first_job_on(&self, tag: &str) {
        loop {
            let mut job = self.world.job("thumbnail", Some("cam-0001"));
            job.parameters
                .insert("attack".into(), "tagged-thumbnail".into());
            let id = self.world.post(vec![job]).await.remove(0);
            let done = loop {
                let job = self.world.registry.job(&id).await;
                if !matches!(job.state.as_str(), "Available" | "Locked") {
                    break job;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            assert_eq!(done.state, "Completed", "{done:?}");
            let bytes = self.world.registry.job_plaintext(&done).await;
            if String::from_utf8_lossy(&bytes).contains(&format!("tag:{tag}")) {
                return;
            }
        }
    }
}

/// Whether the catalog serves `version` of a guest built from `wasm` (its
/// manifest and its module: a swap renames the manifest in first).
pub fn serves(catalog: &Catalog, version: &str, wasm: &[u8]) -> bool {
    let sha256 = format!("{:x}", sha2::Sha256::digest(wasm));
    catalog
        .guests()
        .iter()
        .any(|guest| guest.manifest().version == version && guest.sha256() == sha256)
}

impl Swap {
    fn median(swaps: &[Swap]) -> Swap {
        let mut serving: Vec<_> = swaps.iter().map(|swap| swap.serving).collect();
        let mut first_job: Vec<_> = swaps.iter().map(|swap| swap.first_job).collect();
        Swap {
            serving: median(&mut serving),
            first_job: median(&mut first_job),
        }
    }
}

/// The median of `times` (the upper one of an even count).
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The goals table's rows for `swap`.
pub fn figures(swap: &HotSwap) -> Vec<Figure> {
    let cold_overhead = swap.cold.first_job.saturating_sub(swap.compile);
    vec![
        Figure::checked(
            "hot swap, cached: rename → first job done on the new version",
            ms(swap.cached.first_job),
            "≤ 100 ms",
            swap.cached.first_job <= Duration::from_millis(100),
        ),
        Figure::shown(
            "hot swap, cached: rename → the catalog serves it",
            ms(swap.cached.serving),
        ),
        Figure::checked(
            "hot swap, cold: rename → first job done, beyond compiling alone",
            format!(
                "{} ({} − {} compile)",
                ms(cold_overhead),
                ms(swap.cold.first_job),
                ms(swap.compile)
            ),
            "≤ 100 ms",
            cold_overhead <= Duration::from_millis(100),
        ),
    ]
}
