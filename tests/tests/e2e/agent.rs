//! The agent through the registry: scheduling, leases, outcomes, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral::agent::outcome::ReleaseCause;
use corral_camera_sim::{FaultSettings, SimConfig, recording};
use corral_registry::routes::Endpoint;
use corral_registry::{Fault, RegistryConfig};
use corral_tests::world::{RunningAgent, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_agents_do_each_job_exactly_once() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(6)).await;
    let ids = post_job_mix(&world).await;
    let agents: Vec<_> = (0..3).map(|_| world.agent(world.config())).collect();
    check_job_mix_done(&world, &ids, Duration::from_secs(60)).await;
    // The status port serves the counters.
    let view = corral::agent::status::StatusView {
        metrics: agents[0].metrics.clone(),
        catalog: corral::agent::catalog::Catalog::load(&world.runtime, &world.guests_dir).unwrap(),
        reload: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    let status = corral::agent::status::start("127.0.0.1:0".parse().unwrap(), view)
        .await
        .unwrap();
    let (code, body) = corral_tests::registry::raw(
        &format!("http://{status}"),
        "GET",
        "/metrics",
        None,
        "text/plain",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("corral_jobs_total{outcome=\"completed\"}"));
    let (code, _) = corral_tests::registry::raw(
        &format!("http://{status}"),
        "GET",
        "/healthz",
        None,
        "text/plain",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = corral_tests::registry::raw(
        &format!("http://{status}"),
        "GET",
        "/guests",
        None,
        "text/plain",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"name\":\"http-vms\""));
    completed_by_each(agents, &ids).await;
}

/// Posts the job mix of [`several_agents_do_each_job_exactly_once`] (also
/// run over two registry nodes, `nodes.rs`): 24 thumbnails over the six
/// cameras of `SimConfig::with_devices(6)`, and one discovery. Their ids.
pub(crate) async fn post_job_mix(world: &World) -> Vec<String> {
    let mut jobs: Vec<_> = (0..24)
        .map(|i| world.job("thumbnail", Some(&format!("cam-{:04}", i % 6 + 1))))
        .collect();
    jobs.push(world.job("discovery", None));
    world.post(jobs).await
}

/// Waits up to `within` until the jobs of [`post_job_mix`] are final, then
/// checks them: each Completed with one committed file (a JPEG for a
/// thumbnail), and the admin view of what discovery found: the six
/// devices, each with its latest thumbnail.
pub(crate) async fn check_job_mix_done(world: &World, ids: &[String], within: Duration) {
    let done = world.wait_final(ids, within).await;
    for job in &done {
        assert_eq!(job.state, "Completed", "{job:?}");
        let bytes = world.registry.job_plaintext(job).await;
        if job.job_type == "thumbnail" {
            assert!(bytes.starts_with(&[0xff, 0xd8, 0xff]));
        }
    }
    let store = world.registry.running.registry().store().clone();
    let reader = store.clone();
    let devices = store
        .transaction(move |tx| corral_registry::admin::devices(&reader, tx))
        .await
        .unwrap();
    assert_eq!(devices.len(), 6);
    assert!(
        devices
            .iter()
            .all(|device| device.thumbnail_file_id.is_some()),
        "{devices:?}"
    );
}

/// Stops `agents` and returns how many jobs each completed, by its own
/// count; together they completed each of `ids` once.
pub(crate) async fn completed_by_each(agents: Vec<RunningAgent>, ids: &[String]) -> Vec<u64> {
    let mut completed = Vec::new();
    for agent in agents {
        // Counted once it stops: its last complete may still be answering.
        let metrics = agent.metrics.clone();
        agent.stop().await;
        completed.push(metrics.completed.load(Ordering::Relaxed));
    }
    assert_eq!(
        completed.iter().sum::<u64>(),
        ids.len() as u64,
        "each job completed once, by one agent: {completed:?}"
    );
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_capped_at_3s_is_renewed_through_10s_of_work() {
    // A 10-second recording at 2 Mbit/s is 2.5 MB: ten 256 KiB chunks, one a second.
    let sim = SimConfig {
        bitrate_bps: 2_000_000,
        ..SimConfig::with_devices(1)
    };
    let world = World::start(
        RegistryConfig {
            max_lock_seconds: 3,
            ..RegistryConfig::default()
        },
        sim,
    )
    .await;
    world.sim.faults().set(FaultSettings {
        chunk_delay_ms: 1000,
        ..Default::default()
    });
    let ids = world
        .post(vec![world.job("mediarequest", Some("cam-0001"))])
        .await;
    let mut config = world.config();
    config.lock_duration = Duration::from_secs(30);
    let agent = world.agent(config);
    let done = world.wait_final(&ids, Duration::from_secs(40)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    let renewals = agent.metrics.lock_renewals.load(Ordering::Relaxed);
    assert!(
        renewals >= 3,
        "renewed every 2 s of the 3 s lease: {renewals}"
    );
    let expected =
        recording::recording("cam-0001", 2_000_000, 1_795_168_800_000, 1_795_168_810_000);
    assert!(world.registry.job_plaintext(&done[0]).await == expected);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_guest_and_nothing_is_committed() {
    let sim = SimConfig {
        bitrate_bps: 8_000_000,
        ..SimConfig::with_devices(1)
    };
    let world = World::start(RegistryConfig::default(), sim).await;
    world.sim.faults().set(FaultSettings {
        chunk_delay_ms: 250,
        ..Default::default()
    });
    let ids = world
        .post(vec![world.job("mediarequest", Some("cam-0001"))])
        .await;
    let mut config = world.config();
    config.lock_duration = Duration::from_secs(3);
    let agent = world.agent(config);
    world
        .wait_until(&ids, Duration::from_secs(20), |job| {
            job.state == "Locked" && job.task_progress > 0
        })
        .await;
    // The lock expires under the agent and someone else takes the job.
    // (A renewal landing between the two statements would take the lock
    // back: then expire it again.)
    let mut thief = None;
    for _ in 0..5 {
        let id = ids[0].clone();
        world
            .registry
            .running
            .registry()
            .store()
            .transaction(move |tx| {
                tx.execute(
                    "UPDATE jobs SET lock_expires_ms = 0 WHERE job_id = ?1",
                    corral_registry::params![id],
                )
            })
            .await
            .unwrap();
        if let Ok(lock) = world.client().lock(&ids[0], Duration::from_secs(60)).await {
            thief = Some(lock);
            break;
        }
    }
    let thief = thief.expect("the job is free again");
    // The agent's next renewal answers 409: it stops the guest and completes nothing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while agent.metrics.lock_lost.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never noticed the lost lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = world.registry.job(&ids[0]).await;
    assert_eq!(job.state, "Locked", "still the thief's: {job:?}");
    assert!(
        job.files.iter().flatten().all(|file| !file.committed),
        "nothing committed: {:?}",
        job.files
    );
    assert_eq!(agent.metrics.completed.load(Ordering::Relaxed), 0);
    drop(thief);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_maps_to_its_registry_call() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    // Unsupported (404 for an unknown camera) → cancelled; a malformed job → cancelled.
    let unknown = world
        .post(vec![world.job("thumbnail", Some("cam-9999"))])
        .await;
    let malformed = "malformed-job-1".to_string();
    let inserted = malformed.clone();
    world
        .registry
        .running
        .registry()
        .store()
        .transaction(move |tx| {
            tx.execute(
                "INSERT INTO jobs (job_id, job_type, agent_id, parameters, state, created_ms)
                 VALUES (?1, 'thumbnail', 'agent-1', '{}', 'Available', 0)",
                corral_registry::params![inserted],
            )
        })
        .await
        .unwrap();
    // Unavailable (the camera answers 503 once) → released, then done on the next try.
    world.sim.faults().set(FaultSettings {
        fail_status: Some(503),
        fail_count: 1,
        delay_ms: 0,
        ..Default::default()
    });
    let flaky = world
        .post(vec![world.job("thumbnail", Some("cam-0001"))])
        .await;
    let agent = world.agent(world.config());
    let done = world
        .wait_final(
            &[unknown[0].clone(), malformed.clone(), flaky[0].clone()],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done[0].state, "Cancelled");
    assert!(
        done[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("404"),
        "{:?}",
        done[0].message
    );
    assert_eq!(done[1].state, "Cancelled");
    assert!(
        done[1]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("deviceId is missing"),
        "{:?}",
        done[1].message
    );
    assert_eq!(done[2].state, "Completed");
    assert!(
        agent.metrics.releases(ReleaseCause::Guest) >= 1,
        "the camera's 503 released the job (the guest said unavailable)"
    );
    agent.stop().await;

    // The camera refuses the agent's credentials: a set-up fault, so the
    // job is released (not Failed) and the guest degraded (see scheduling.rs).
    let refused = world.post(vec![world.job("discovery", None)]).await;
    let secrets = corral::bundled::camera_sim_secrets(&world.sim.base_url(), "operator", "wrong");
    let agent = world.agent_with(world.config(), secrets);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while agent.metrics.releases(ReleaseCause::CameraAuth) == 0 {
        assert!(std::time::Instant::now() < deadline, "not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.registry.job(&refused[0]).await.state, "Available");
    assert_eq!(agent.metrics.failed.load(Ordering::Relaxed), 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_or_releases_them() {
    let sim = SimConfig {
        bitrate_bps: 2_000_000,
        ..SimConfig::with_devices(2)
    };
    let world = World::start(RegistryConfig::default(), sim).await;
    world.sim.faults().set(FaultSettings {
        chunk_delay_ms: 300,
        ..Default::default()
    });
    // Graceful: the running job finishes within the grace period.
    let ids = world
        .post(vec![world.job("mediarequest", Some("cam-0001"))])
        .await;
    let agent = world.agent(world.config());
    world
        .wait_until(&ids, Duration::from_secs(20), |job| job.state == "Locked")
        .await;
    agent.stop.drain();
    agent.task.await.unwrap();
    assert_eq!(world.registry.job(&ids[0]).await.state, "Completed");

    // No grace: the running job is released, available for another agent.
    let ids = world
        .post(vec![world.job("mediarequest", Some("cam-0002"))])
        .await;
    let mut config = world.config();
    config.shutdown_grace = Duration::ZERO;
    let agent = world.agent(config);
    world
        .wait_until(&ids, Duration::from_secs(20), |job| job.state == "Locked")
        .await;
    agent.stop.drain();
    agent.task.await.unwrap();
    let job = world.registry.job(&ids[0]).await;
    assert_eq!(
        (job.state.as_str(), job.task_progress),
        ("Available", 0),
        "released: {job:?}"
    );
    assert!(job.files.iter().flatten().all(|file| !file.committed));
    assert_eq!(agent.metrics.released.load(Ordering::Relaxed), 1);
    assert_eq!(agent.metrics.releases(ReleaseCause::Shutdown), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_type_limit_holds_while_other_types_run() {
    let sim = SimConfig {
        bitrate_bps: 2_000_000,
        ..SimConfig::with_devices(2)
    };
    let world = World::start(RegistryConfig::default(), sim).await;
    world.sim.faults().set(FaultSettings {
        chunk_delay_ms: 150,
        ..Default::default()
    });
    let mut jobs: Vec<_> = (0..3)
        .map(|_| world.job("mediarequest", Some("cam-0001")))
        .collect();
    jobs.push(world.job("thumbnail", Some("cam-0002")));
    let ids = world.post(jobs).await;
    let mut config = world.config();
    config.max_jobs = 4;
    config
        .max_jobs_per_type
        .insert(corral::protocol::JobType::MediaRequest, 1);
    let agent = world.agent(config);
    // Sample while the media jobs run: never more than one at once.
    world
        .wait_until(&ids[..1], Duration::from_secs(20), |job| {
            job.state == "Locked"
        })
        .await;
    for _ in 0..20 {
        let mut locked_media = 0;
        for id in &ids[..3] {
            if world.registry.job(id).await.state == "Locked" {
                locked_media += 1;
            }
        }
        assert!(
            locked_media <= 1,
            "{locked_media} media jobs at once with a limit of 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The thumbnail did not wait for the media jobs: it ended while one still ran.
    world
        .wait_until(&ids[3..], Duration::from_secs(20), |job| {
            job.state == "Completed"
        })
        .await;
    let mut media_left = 0;
    for id in &ids[..3] {
        if world.registry.job(id).await.state != "Completed" {
            media_left += 1;
        }
    }
    assert!(media_left > 0, "the thumbnail ran beside the media jobs");
    let done = world.wait_final(&ids, Duration::from_secs(60)).await;
    assert!(done.iter().all(|job| job.state == "Completed"), "{done:?}");
    agent.stop().await;
}

/// The registry's fault switches of `world`.
fn faults(world: &World) -> &corral_registry::Faults {
    world.registry.running.registry().faults()
}

/// A job that ends within its first half second sends no progress at all:
/// the registry keeps a job's last progress, and a thumbnail that ran in
/// well under that has none. (A longer job's progress is forwarded: see
/// `a_registry_that_defeats_progress_gets_the_job_released_not_failed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_job_sends_no_progress_call() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(8)).await;
    let agent = world.agent(world.config());
    // Warm: the first jobs of a debug build pay for cold code paths.
    let warm = world.post_thumbnails(8).await;
    world.wait_final(&warm, Duration::from_secs(30)).await;
    // A loaded machine may stretch a round past the bound: up to five rounds.
    let store = world.registry.running.registry().store().clone();
    let mut short = 0;
    for _round in 0..5 {
        if short > 0 {
            break;
        }
        let ids = world.post_thumbnails(8).await;
        let done = world.wait_final(&ids, Duration::from_secs(30)).await;
        assert!(done.iter().all(|job| job.state == "Completed"), "{done:#?}");
        short += count_short_without_progress(&store, ids).await;
    }
    assert!(short > 0, "no thumbnail ran in under 300 ms in five rounds");
    agent.stop().await;
}

/// How many of `ids` ran in under 300 ms; each of those must have sent no
/// progress.
async fn count_short_without_progress(store: &corral_registry::Store, ids: Vec<String>) -> usize {
    let mut short = 0;
    for id in ids {
        let (row, history) = store
            .transaction(move |tx| {
                let row = corral_registry::store::job(tx, &id)?.expect("the job");
                Ok((row, corral_registry::store::history(tx, &id)?))
            })
            .await
            .unwrap();
        let at = |event: &str| {
            history
                .iter()
                .find(|entry| entry.event == event)
                .map(|entry| entry.at_ms)
                .expect("in the history")
        };
        // Well inside the half second, whatever the clocks' offsets.
        if at("completed") - at("locked") < 300 {
            short += 1;
            assert_eq!(
                (row.task_progress, row.task_total),
                (0, 0),
                "a job of {} ms sent its progress: {history:?}",
                at("completed") - at("locked")
            );
        }
    }
    short
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initialize_whose_answer_is_lost_is_retried_and_the_job_completes() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(1)).await;
    faults(&world).inject(Endpoint::Initialize, Fault::Lose);
    let ids = world
        .post(vec![world.job("thumbnail", Some("cam-0001"))])
        .await;
    let agent = world.agent(world.config());
    let done = world.wait_final(&ids, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    assert_eq!(faults(&world).counts().lost, 1, "the answer was lost once");
    // Two files were made; the orphan, which never received a block, was
    // discarded at complete; the other holds the JPEG.
    let files = done[0].files.clone().unwrap_or_default();
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = world.registry.job_plaintext(&done[0]).await;
    assert!(bytes.starts_with(&[0xff, 0xd8, 0xff]));
    assert_eq!(agent.settled().await.completed.load(Ordering::Relaxed), 1);
    agent.stop().await;
}

/// Makes the next 150 calls of `endpoint` answer 500, so an agent that
/// gives up after 300 ms of retries is defeated by the registry, then lets
/// the job through: it must end Completed, after a release, never Failed.
async fn a_registry_fault_on(endpoint: Endpoint, job_type: &str) {
    let sim = SimConfig {
        bitrate_bps: 2_000_000,
        ..SimConfig::with_devices(1)
    };
    let world = World::start(RegistryConfig::default(), sim).await;
    if endpoint == Endpoint::Progress {
        // Progress is first sent half a second into a job: this recording
        // streams for about two.
        world.sim.faults().set(FaultSettings {
            chunk_delay_ms: 200,
            ..Default::default()
        });
    }
    for _ in 0..150 {
        faults(&world).inject(
            endpoint,
            Fault::Refuse {
                status: 500,
                retry_after: None,
            },
        );
    }
    let device = (job_type != "discovery").then_some("cam-0001");
    let ids = world.post(vec![world.job(job_type, device)]).await;
    let agent = world.agent_giving_up_after(world.config(), Duration::from_millis(300));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while agent.metrics.releases(ReleaseCause::Registry) == 0 {
        let job = world.registry.job(&ids[0]).await;
        assert_ne!(
            job.state, "Failed",
            "a registry fault never fails the job: {job:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never released: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The registry recovers: the job, released and backed off, completes.
    faults(&world).forget_injected();
    let done = world.wait_final(&ids, Duration::from_secs(60)).await;
    assert_eq!(
        done[0].state, "Completed",
        "a registry fault never fails the job: {:?}",
        done[0]
    );
    let metrics = agent.settled().await;
    assert_eq!(metrics.failed.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.completed.load(Ordering::Relaxed), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_defeats_initialize_gets_the_job_released_not_failed() {
    a_registry_fault_on(Endpoint::Initialize, "thumbnail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_defeats_a_block_upload_gets_the_job_released_not_failed() {
    a_registry_fault_on(Endpoint::PutBlock, "mediarequest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_defeats_a_commit_gets_the_job_released_not_failed() {
    a_registry_fault_on(Endpoint::CompleteFile, "discovery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_defeats_progress_gets_the_job_released_not_failed() {
    a_registry_fault_on(Endpoint::Progress, "mediarequest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_defeats_complete_gets_the_job_released_not_failed() {
    a_registry_fault_on(Endpoint::Complete, "thumbnail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_job_releases_its_lock_and_the_agent_goes_on() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    let ids = world
        .post(vec![
            world.job("thumbnail", Some("cam-0001")),
            world.job("thumbnail", Some("cam-0002")),
        ])
        .await;
    let panicked = Arc::new(AtomicBool::new(false));
    let once = panicked.clone();
    let hook: corral::agent::JobHook = Arc::new(move |job| {
        if job.device_id.as_deref() == Some("cam-0001") && !once.swap(true, Ordering::SeqCst) {
            panic!("test hook: a job that panics");
        }
    });
    let mut config = world.config();
    config.max_jobs = 1;
    let agent = world.agent_with_hook(config, hook);
    let done = world.wait_final(&ids, Duration::from_secs(30)).await;
    assert!(panicked.load(Ordering::SeqCst));
    assert!(done.iter().all(|job| job.state == "Completed"), "{done:#?}");
    let metrics = agent.settled().await;
    assert_eq!(metrics.panics.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.releases(ReleaseCause::Panic), 1);
    assert_eq!(metrics.completed.load(Ordering::Relaxed), 2);
    let text = agent.metrics.render();
    assert!(
        text.contains("corral_releases_total{cause=\"panic\"} 1")
            && text.contains("corral_job_panics_total 1"),
        "{text}"
    );
    assert_eq!(agent.metrics.running.load(Ordering::Relaxed), 0);
    agent.stop().await;
}
