//! Who owns a device, against a hostile guest, with the real agent, the
//! registry and camera-sim on loopback: a discovery flood does not take the
//! victim's cameras nor cut its list, ownership survives a restart, and a job
//! for an owned device never runs on another guest.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral::agent::catalog::Route;
use corral_camera_sim::SimConfig;
use corral_registry::{JobJson, RegistryConfig};
use corral_tests::world::{RunningAgent, World};

/// Posts a discovery job and waits for its end.
async fn discover(world: &World) -> JobJson {
    let ids = world.post(vec![world.job("discovery", None)]).await;
    world
        .wait_final(&ids, Duration::from_secs(30))
        .await
        .remove(0)
}

/// The ids of `devices`, and whether any was listed from the hostile guest.
fn ids(devices: &[(String, String)]) -> Vec<&str> {
    devices.iter().map(|(id, _)| id.as_str()).collect()
}

fn hijacked(devices: &[(String, String)], id: &str) -> bool {
    devices
        .iter()
        .any(|(device, name)| device == id && name.contains("hijacked"))
}

fn jobs_run(agent: &RunningAgent, name: &str) -> u64 {
    agent.catalog.describe()["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|guest| guest["name"] == name)
        .and_then(|guest| guest["jobsRun"].as_u64())
        .unwrap_or(0)
}

/// A hostile guest, sorted first, reports `max_discovered_devices` of the
/// victim's ids first and then ids of its own past the cap. The cap is its
/// own: the victim's list is whole, the victim keeps every camera, and the
/// flood only cuts the hostile guest's own list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_the_victims_ids_takes_nothing_and_cuts_nothing() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(3)).await;
    let mut config = world.config();
    config.max_discovered_devices = 3;
    let agent = world.agent(config);
    let first = discover(&world).await;
    assert_eq!(first.state, "Completed", "{:?}", first.message);
    let cameras = ["cam-0001", "cam-0002", "cam-0003"];
    assert_eq!(ids(&world.discovered(&first).await), cameras);

    world.add_hostile_guest(
        "aaa-hostile",
        &[
            "cam-0001", "cam-0002", "cam-0003", "evil-1", "evil-2", "evil-3", "evil-4",
        ],
    );
    agent.wait_for_guests(2).await;
    let flooded = discover(&world).await;
    // evil-4 is over the hostile guest's own cap.
    assert_eq!(flooded.state, "PartiallyCompleted", "{:?}", flooded.message);
    let listed = world.discovered(&flooded).await;
    assert_eq!(
        ids(&listed),
        [
            "cam-0001", "cam-0002", "cam-0003", "evil-1", "evil-2", "evil-3"
        ],
        "{listed:?}"
    );
    for camera in cameras {
        assert!(!hijacked(&listed, camera), "{listed:?}");
        assert_eq!(agent.catalog.owner_of(camera).as_deref(), Some("http-vms"));
    }
    assert_eq!(
        agent.catalog.owner_of("evil-1").as_deref(),
        Some("aaa-hostile")
    );
    let conflicts = agent.catalog.device_conflicts();
    assert_eq!(conflicts.len(), 3, "{conflicts:?}");
    assert!(
        conflicts
            .iter()
            .all(|conflict| conflict.claimant == "hostile"
                && conflict.owner.as_deref() == Some("http-vms"))
    );
    world.thumbnail_by_http_vms("cam-0002").await;
    assert_eq!(jobs_run(&agent, "hostile"), 1, "only its discovery ran");
    agent.stop().await;
}

/// The owners are kept in the agent's own folder: an agent started again,
/// now with a hostile guest claiming the cameras beside their owner, knows
/// the owner before any discovery, and the owner keeps them (without the
/// record, both guests would report them at once and neither would get them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_owner_is_unchanged() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    let agent = world.agent(world.config());
    let first = discover(&world).await;
    assert_eq!(first.state, "Completed", "{:?}", first.message);
    agent.stop().await;

    world.add_hostile_guest("aaa-hostile", &["cam-0001", "cam-0002"]);
    let agent = world.agent(world.config());
    assert_eq!(agent.catalog.guests().len(), 2);
    assert_eq!(
        agent.catalog.owner_of("cam-0001").as_deref(),
        Some("http-vms")
    );
    let listed = agent.catalog.describe();
    assert_eq!(listed["deviceOwners"]["http-vms"], 2, "{listed}");
    assert!(listed["deviceOwnersFile"].is_string(), "{listed}");

    let second = discover(&world).await;
    assert_eq!(second.state, "Completed", "{:?}", second.message);
    let devices = world.discovered(&second).await;
    assert_eq!(ids(&devices), ["cam-0001", "cam-0002"]);
    assert!(!hijacked(&devices, "cam-0001") && !hijacked(&devices, "cam-0002"));
    assert_eq!(
        agent.catalog.owner_of("cam-0002").as_deref(),
        Some("http-vms")
    );
    world.thumbnail_by_http_vms("cam-0001").await;
    agent.stop().await;
}

/// http-vms owns the cameras; it is removed from the folder, so the hostile
/// guest alone serves thumbnails. A thumbnail for an owned camera is not run
/// by it: the job is released, naming the owner, `/guests` still shows the
/// owner, and the job completes on http-vms once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_owned_device_never_runs_on_another_guest() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    let agent = world.agent(world.config());
    let first = discover(&world).await;
    assert_eq!(first.state, "Completed", "{:?}", first.message);
    world.add_hostile_guest("aaa-hostile", &["cam-hostile"]);
    agent.wait_for_guests(2).await;
    let wasm = world.guests_dir.join("http-vms.wasm");
    let manifest = world.guests_dir.join("http-vms.toml");
    let (module, text) = (
        std::fs::read(&wasm).unwrap(),
        std::fs::read(&manifest).unwrap(),
    );
    std::fs::remove_file(&wasm).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    agent.wait_for_guests(1).await;

    let mut thumbnail = world.job("thumbnail", Some("cam-0001"));
    thumbnail
        .parameters
        .insert("attack".into(), "tagged-thumbnail".into());
    let ids = world.post(vec![thumbnail]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.metrics.released.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the job was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = world.registry.job(&ids[0]).await;
    assert!(
        matches!(job.state.as_str(), "Available" | "Locked"),
        "{job:?}"
    );
    assert_eq!(jobs_run(&agent, "hostile"), 0, "the hostile guest ran it");
    let job: corral::protocol::Job =
        serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
    match agent.catalog.route(&job) {
        Route::Nowhere(why) => assert!(
            why.contains("belongs to guest http-vms") && why.contains("not loaded"),
            "{why}"
        ),
        Route::To(guests) => panic!("routed to {}", guests[0].manifest().name),
    }
    let listed = agent.catalog.describe();
    assert_eq!(listed["deviceOwners"]["http-vms"], 2, "{listed}");

    // The owner is back: the released job is its.
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(&wasm, module).unwrap();
    agent.wait_for_guests(2).await;
    let done = world.wait_final(&ids, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0].message);
    let jpeg = world.registry.job_plaintext(&done[0]).await;
    assert!(
        !String::from_utf8_lossy(&jpeg).contains("tag:"),
        "a forged image"
    );
    assert_eq!(jobs_run(&agent, "hostile"), 0);
    agent.stop().await;
}
