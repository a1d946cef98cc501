//! `cargo run --release -p corral-tests --example backends`
//!
//! The registry's backends side by side, in one run: thumbnail jobs a second
//! through the agent (300 jobs, max_jobs 8) and one 1 GiB recording end to
//! end, on SQLite plus the blocks folder, on PostgreSQL plus Azurite with one
//! node, and with two nodes (two agents, each listing the nodes in its own
//! order, so each talks to its own node). Registry, camera-sim and agents run
//! in this process on the 2 cores; the agents' minimum poll interval is 5 ms
//! (not the default 250 ms), so that the registry is what is measured. PostgreSQL and Azurite come from the
//! environment as for the tests (`CORRAL_TEST_POSTGRES`, `CORRAL_TEST_AZURITE`;
//! `source tests/postgres.sh; source tests/azurite.sh; start_postgres;
//! start_azurite` starts them); without them only the SQLite row runs.

use std::time::{Duration, Instant};

use corral_camera_sim::SimConfig;
use corral_envelope::keys::WrapAlgorithm;
use corral_registry::RegistryConfig;
use corral_tests::backend::Backend;
use corral_tests::world::World;

const THUMBNAILS: usize = 300;
const AGENT_SLOTS: usize = 8;
/// camera-sim records 4 Mbit/s: 500,000 bytes a second.
const RECORDING_SECS: u64 = (1 << 30) / 500_000;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(run());
}

async fn run() {
    let mut rows = vec![("SQLite + blocks folder, one node", Backend::SQLITE, 1)];
    // A fresh database and container for each row.
    let one = Backend::postgres_azurite("bench_backends_one_node");
    let two = Backend::postgres_azurite("bench_backends_two_nodes");
    match one.zip(two) {
        Some((one, two)) => {
            rows.push(("PostgreSQL + Azurite, one node", one, 1));
            rows.push(("PostgreSQL + Azurite, two nodes", two, 2));
        }
        None => {
            eprintln!("no CORRAL_TEST_POSTGRES / CORRAL_TEST_AZURITE: only the SQLite row runs")
        }
    }
    println!("| backend | thumbnail jobs/s | 1 GiB recording |");
    println!("|---|---|---|");
    for (label, backend, nodes) in rows {
        let (rate, throughput) = measure(&backend, nodes).await;
        println!("| {label} | {rate:.0} | {throughput:.0} MB/s |");
    }
}

/// Thumbnail jobs a second and a 1 GiB recording's MB/s on `backend`.
async fn measure(backend: &Backend, nodes: usize) -> (f64, f64) {
    let config = RegistryConfig {
        key_algorithm: WrapAlgorithm::A256Kw,
        ..RegistryConfig::default()
    };
    let world = World::start_on(backend, config.clone(), SimConfig::with_devices(8)).await;
    let mut connections = vec![world.connection.clone()];
    let _second = if nodes == 2 {
        let second = world.registry.another_node(config).await;
        let (one, two) = (world.registry.running.base_url(), second.base_url());
        connections = vec![
            world
                .registry
                .add_agent_at(&world.agent_id, &[one.clone(), two.clone()])
                .await,
        ];
        // The same identity, the nodes the other way round.
        let reversed = world.registry.dir.path().join("reversed.json");
        let text = std::fs::read_to_string(&connections[0]).unwrap();
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        for list in ["ApiBaseAddresses", "SecurityTokenServiceBaseAddresses"] {
            if let Some(entries) = file[list].as_array_mut() {
                entries.reverse();
            }
        }
        std::fs::write(&reversed, serde_json::to_vec(&file).unwrap()).unwrap();
        connections.push(reversed);
        Some(second)
    } else {
        None
    };
    let start_agents = || {
        connections
            .iter()
            .map(|connection| {
                let mut config = world.config();
                config.connection_file = connection.clone();
                config.max_jobs = AGENT_SLOTS / connections.len();
                config.poll_interval = Duration::from_millis(100);
                // What is measured is the registry: the agent may poll again
                // as soon as a job ends (by default it waits 250 ms between
                // polls, which caps it near max_jobs / 0.25 s).
                config.min_poll_interval = Duration::from_millis(5);
                // Through its own file: one agent starts on each node.
                world.agent_through_its_file(config)
            })
            .collect::<Vec<_>>()
    };

    // Warm up: connections, tokens, the compiled guest.
    let warm = world.post_thumbnails(16).await;
    let agents = start_agents();
    world.wait_final(&warm, Duration::from_secs(60)).await;
    for agent in agents {
        agent.stop().await;
    }

    let ids = world.post_thumbnails(THUMBNAILS).await;
    let started = Instant::now();
    let agents = start_agents();
    let done = world.wait_final(&ids, Duration::from_secs(300)).await;
    let rate = THUMBNAILS as f64 / started.elapsed().as_secs_f64();
    assert!(done.iter().all(|job| job.state == "Completed"), "{done:#?}");

    let mut recording = world.job("mediarequest", Some("cam-0001"));
    let from = time::macros::datetime!(2026-11-20 00:00 UTC);
    let to = from + Duration::from_secs(RECORDING_SECS);
    recording.start_time_utc = Some(corral::protocol::format_rfc3339(from));
    recording.end_time_utc = Some(corral::protocol::format_rfc3339(to));
    let started = Instant::now();
    let ids = world.post(vec![recording]).await;
    let done = world.wait_final(&ids, Duration::from_secs(600)).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    let bytes: u64 = done[0]
        .files
        .iter()
        .flatten()
        .filter_map(|file| file.length)
        .sum();
    for agent in agents {
        agent.stop().await;
    }
    (rate, bytes as f64 / 1e6 / elapsed)
}
