//! `cargo run --release -p corral-tests --example hotswap_latency`
//!
//! Time from the rename of a new guest version into the guests folder to the
//! first job that runs it, cold (compiled) and cached (swapped back to a
//! version compiled before). The agent watches the folder through file
//! events: a renamed-in file is loaded at once, so what remains is compiling
//! (or reading the cache), the swap, and the next poll and job.

use std::time::{Duration, Instant};

use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::RegistryConfig;
use corral_tests::test_guests::install_variant;
use corral_tests::world::World;

/// Renames `tag` in; posts a job every 10 ms until one completes with it.
async fn swap(world: &World, dir: &std::path::Path, tag: &str) -> Duration {
    let renamed = Instant::now();
    install_variant(dir, "v", tag);
    loop {
        let mut job = world.job("thumbnail", Some("cam-0001"));
        job.parameters
            .insert("attack".into(), "tagged-thumbnail".into());
        let ids = world.post(vec![job]).await;
        let done = world.wait_final(&ids, Duration::from_secs(30)).await;
        let bytes = world.registry.job_plaintext(&done[0]).await;
        if String::from_utf8_lossy(&bytes).contains(&format!("tag:{tag}")) {
            return renamed.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let config = RegistryConfig {
        key_algorithm: WrapAlgorithm::A256Kw,
        ..RegistryConfig::default()
    };
    let world = World::start(config, SimConfig::with_devices(1)).await;
    let dir = world.registry.dir.path().join("guests-hotswap");
    std::fs::create_dir_all(&dir).unwrap();
    install_variant(&dir, "v", "1");
    let mut agent_config = world.config();
    agent_config.guests_dir = dir.clone();
    agent_config.cache_dir = world.registry.dir.path().join("cache");
    agent_config.poll_interval = Duration::from_millis(20);
    let runtime = corral::engine::Runtime::new(corral::engine::RuntimeConfig { max_instances: 16 })
        .unwrap()
        .with_cache(&agent_config.cache_dir)
        .unwrap()
        .with_secrets(world.runtime.secrets().clone());
    let catalog = corral::agent::catalog::Catalog::load(&runtime, &dir).unwrap();
    let agent = corral::agent::Agent::with_parts(
        world.client(),
        catalog,
        agent_config,
        corral_tests::registry::fast_retry(),
    );
    let stop = agent.stopper();
    let task = tokio::spawn(agent.run());
    let cold = swap(&world, &dir, "2").await;
    let cached = swap(&world, &dir, "1").await;
    println!(
        "rename → first job on the new version: cold (compile) {:.0} ms, cached {:.0} ms",
        cold.as_secs_f64() * 1000.0,
        cached.as_secs_f64() * 1000.0
    );
    stop.drain();
    let _ = task.await;
}
