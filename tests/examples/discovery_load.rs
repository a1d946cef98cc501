//! `cargo run --release -p corral-tests --example discovery_load`
//!
//! A thumbnail's latency (from the registry showing it taken to Completed)
//! alone, then beside two discoveries of 100,000 devices each, in one agent
//! with a 3 s lease; and whether every lease was kept. The target: within 2x.

use std::sync::atomic::Ordering;
use std::time::Duration;

use corral_camera_sim::SimConfig;
use corral_registry::RegistryConfig;
use corral_tests::world::{World, median};

const DEVICES: usize = 100_000;
const SAMPLES: usize = 9;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = RegistryConfig {
        max_lock_seconds: 3,
        ..RegistryConfig::default()
    };
    let world = World::start(registry, SimConfig::with_devices(DEVICES)).await;
    let mut config = world.config();
    config.lock_duration = Duration::from_secs(3);
    let agent = world.agent(config);
    let mut alone = Vec::new();
    for _ in 0..SAMPLES {
        alone.push(world.thumbnail_latency("cam-0001").await);
    }
    let (discoveries, beside) = world
        .thumbnails_beside_two_discoveries("cam-0002", SAMPLES)
        .await;
    let done = world
        .wait_final(&discoveries, Duration::from_secs(300))
        .await;
    let (alone, count) = (median(alone), beside.len());
    let beside = median(beside);
    println!("| thumbnail | median | samples |");
    println!("|---|---|---|");
    println!(
        "| alone | {:.1} ms | {SAMPLES} |",
        alone.as_secs_f64() * 1e3
    );
    println!(
        "| beside two discoveries of {DEVICES} devices | {:.1} ms | {count} |",
        beside.as_secs_f64() * 1e3
    );
    println!(
        "ratio {:.2}; discoveries {:?}; leases lost {}; renewals {}",
        beside.as_secs_f64() / alone.as_secs_f64(),
        done.iter()
            .map(|job| job.state.as_str())
            .collect::<Vec<_>>(),
        agent.metrics.lock_lost.load(Ordering::Relaxed),
        agent.metrics.lock_renewals.load(Ordering::Relaxed)
    );
    agent.stop().await;
}
