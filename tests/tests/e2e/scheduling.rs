//! Every job ends and none comes back too fast: a result the registry refuses,
//! a guest that keeps answering `unavailable`, a camera that refuses the
//! host's credentials, and discoveries large enough to load every worker.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral::agent::outcome::ReleaseCause;
use corral::bundled;
use corral_camera_sim::{FaultSettings, SimConfig};
use corral_registry::RegistryConfig;
use corral_tests::world::{World, median};

/// Requests the registry has seen from agents (admin calls excluded).
fn registry_requests(world: &World) -> u64 {
    world.registry.running.registry().faults().counts().requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_the_registry_refuses_ends_failed_within_its_attempt() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    // The camera answers its login page, labelled image/jpeg: the guest
    // uploads it, and the registry refuses the file (not a JPEG), then the
    // Failed outcome (a file of the lock got blocks and was not committed).
    world.sim.faults().set(FaultSettings {
        html_snapshots: true,
        ..Default::default()
    });
    let ids = world
        .post(vec![world.job("thumbnail", Some("cam-0001"))])
        .await;
    let agent = world.agent(world.config());
    let done = world.wait_final(&ids, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Failed", "{:?}", done[0]);
    let message = done[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("JPEG") && message.contains("abandoned"),
        "{message}"
    );
    // One attempt: released once to abandon the refused file, then failed.
    let metrics = agent.settled().await;
    assert_eq!(metrics.releases(ReleaseCause::Refused), 1);
    assert_eq!(metrics.released.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.failed.load(Ordering::Relaxed), 1);
    // A good job beside it completes.
    world.sim.faults().clear();
    let good = world
        .post(vec![world.job("thumbnail", Some("cam-0002"))])
        .await;
    let done = world.wait_final(&good, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_guest_costs_a_few_registry_calls_a_second() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(1)).await;
    // Every camera request answers 503: http-vms says `unavailable` at once.
    world.sim.faults().set(FaultSettings {
        fail_status: Some(503),
        fail_count: 0,
        ..Default::default()
    });
    let ids = world
        .post(vec![world.job("thumbnail", Some("cam-0001"))])
        .await;
    // The operator's defaults: polls at most every 0.25 s, idle up to 5 s.
    let mut config = world.config();
    config.poll_interval = Duration::from_secs(5);
    let before = registry_requests(&world);
    let agent = world.agent(config);
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let calls = registry_requests(&world) - before;
    let releases = agent.metrics.releases(ReleaseCause::Guest);
    assert!(
        calls as f64 / window.as_secs_f64() <= 3.0,
        "{calls} registry calls in {window:?}"
    );
    // Released at 0 s, again after 2 s, then after 4 s more: the third
    // `unavailable` in a row pauses the guest for 5 s.
    assert!((2..=3).contains(&releases), "{releases} releases");
    let job = world.registry.job(&ids[0]).await;
    assert_eq!(job.state, "Available", "never failed for good: {job:?}");
    let guest = &agent.catalog.guests()[0];
    if releases == 3 {
        assert!(agent.catalog.breakers().paused_for(guest).is_some());
    }
    // The camera comes back: the job completes once the pauses are over.
    world.sim.faults().clear();
    let done = world.wait_final(&ids, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    assert!(agent.catalog.breakers().paused_for(guest).is_none());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_refusing_the_credentials_releases_the_job_and_degrades_the_guest() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(1)).await;
    let wrong = bundled::camera_sim_secrets(
        &world.sim.base_url(),
        &world.sim.config().username,
        "not-the-password",
    );
    let ids = world
        .post(vec![world.job("thumbnail", Some("cam-0001"))])
        .await;
    let agent = world.agent_with(world.config(), wrong);
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.metrics.releases(ReleaseCause::CameraAuth) == 0 {
        assert!(Instant::now() < deadline, "the job was not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Released, not failed; and no second try while the guest is degraded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = world.registry.job(&ids[0]).await;
    assert_eq!(job.state, "Available", "{job:?}");
    assert_eq!(agent.metrics.failed.load(Ordering::Relaxed), 0);
    assert_eq!(agent.metrics.releases(ReleaseCause::CameraAuth), 1);
    let degraded = agent.catalog.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    let (guest, why) = &degraded[0];
    assert_eq!(guest, "http-vms");
    assert!(
        why.contains("401") && why.contains("CORRAL_SECRET_CAMERA_SIM"),
        "{why}"
    );
    let listed = agent.catalog.describe().to_string();
    assert!(
        listed.contains("\"degraded\":\"") && listed.contains("401"),
        "{listed}"
    );
    // A changed manifest is a new guest, not degraded: it gets the job at
    // once (and, the secret being still wrong, is degraded again).
    let manifest = world.guests_dir.join("http-vms.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\n# edited\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.metrics.releases(ReleaseCause::CameraAuth) < 2 {
        assert!(Instant::now() < deadline, "the reloaded guest got no job");
        agent.reload.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_discoveries_keep_every_lease_and_thumbnails_run_beside_them() {
    // The latency figure (within 2x of a thumbnail alone) is measured by
    // `--example discovery_load`: a timed assertion here would be flaky on
    // shared cores. This shows what can fail for certain: leases and jobs.
    let world = World::start(
        RegistryConfig {
            max_lock_seconds: 3,
            ..RegistryConfig::default()
        },
        SimConfig::with_devices(DISCOVERED),
    )
    .await;
    let mut config = world.config();
    config.lock_duration = Duration::from_secs(3);
    let agent = world.agent(config);
    let (discoveries, beside) = world
        .thumbnails_beside_two_discoveries("cam-0002", usize::MAX)
        .await;
    let done = world
        .wait_final(&discoveries, Duration::from_secs(180))
        .await;
    for job in &done {
        assert_eq!(job.state, "Completed", "{job:?}");
        let file = world.registry.job_plaintext(job).await;
        let devices: serde_json::Value = serde_json::from_slice(&file).unwrap();
        assert_eq!(devices["devices"].as_array().unwrap().len(), DISCOVERED);
    }
    assert_eq!(agent.metrics.lock_lost.load(Ordering::Relaxed), 0);
    assert!(agent.metrics.lock_renewals.load(Ordering::Relaxed) > 0);
    assert!(
        !beside.is_empty(),
        "the discoveries ended before a thumbnail ran beside them"
    );
    eprintln!(
        "{} thumbnails beside two discoveries of {DISCOVERED} devices, median {:?}",
        beside.len(),
        median(beside)
    );
    agent.stop().await;
}

/// Devices each large discovery reports.
const DISCOVERED: usize = 100_000;

/// A queue of small jobs drains as fast as they run, not at the pacing of
/// the minimum poll interval: a poll that filled every free slot lets the
/// next one come as soon as a job ends. Paced, these eight jobs on one slot
/// would take at least seven intervals of 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_small_jobs_is_not_held_to_the_poll_pacing() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    let jobs = (0..8)
        .map(|i| world.job("thumbnail", Some(&format!("cam-{:04}", i % 2 + 1))))
        .collect();
    let ids = world.post(jobs).await;
    let mut config = world.config();
    config.max_jobs = 1;
    config.poll_interval = Duration::from_secs(5);
    config.min_poll_interval = Duration::from_secs(2);
    let started = Instant::now();
    let agent = world.agent(config);
    let done = world.wait_final(&ids, Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert!(done.iter().all(|job| job.state == "Completed"), "{done:#?}");
    assert!(
        took < Duration::from_secs(10),
        "8 jobs on one slot took {took:?}: held to the 2 s pacing"
    );
    agent.stop().await;
}
