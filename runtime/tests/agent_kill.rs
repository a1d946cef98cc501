//! `kill -9` of a `corral agent` process in the middle of an upload: once its
//! lock expires another agent takes the job and completes it, and the committed
//! file is whole and correct.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use corral::agent::Agent;
use corral::agent::catalog::Catalog;
use corral::agent::config::AgentConfig;
use corral::bundled;
use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::engine::{Runtime, RuntimeConfig};
use corral_camera_sim::{FaultSettings, SimConfig, recording};
use corral_registry::{NewJob, files, jobs};
use support::{Site, corral};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_job_is_done_by_another_once_its_lock_expires() {
    let site = Site::start(SimConfig::with_devices(1)).await;
    let (sim, store, guests) = (&site.sim, site.store.clone(), site.guests.clone());
    sim.faults().set(FaultSettings {
        chunk_delay_ms: 40,
        ..Default::default()
    });
    let connection_path = site.connection.clone();
    let config_path = site
        .config("agent_id = \"agent-1\"\nmax_jobs = 1\npoll_interval_secs = 0.2\nlock_secs = 3");

    // A 30-second recording (15 MB, four blocks), slowed so the kill lands mid-upload.
    let job = NewJob {
        job_type: "mediarequest".into(),
        agent_id: "agent-1".into(),
        device_id: Some("cam-0001".into()),
        start_time_utc: Some("2026-11-20T10:00:00Z".into()),
        end_time_utc: Some("2026-11-20T10:00:30Z".into()),
        parameters: Default::default(),
    };
    let job_id = store
        .transaction(move |tx| jobs::post(tx, &job))
        .await
        .unwrap()
        .job_id;

    // `corral agent check` validates the set-up without running jobs.
    let check = corral(
        &["agent", "check"],
        &config_path,
        Some("operator:sim-secret"),
    )
    .output()
    .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("http-vms 0.1.0"));
    let mut child = corral(&["agent"], &config_path, Some("operator:sim-secret"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts");
    let blocks = site.dir.path().join("registry/blocks");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uploaded = std::fs::read_dir(&blocks)
            .map(|dirs| {
                dirs.flatten().any(|dir| {
                    std::fs::read_dir(dir.path()).is_ok_and(|mut files| files.next().is_some())
                })
            })
            .unwrap_or(false);
        if uploaded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never uploaded a block"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();
    sim.faults().clear();

    // Another agent: it gets the job once the dead agent's 3 s lock expires.
    let secrets = bundled::camera_sim_secrets(&sim.base_url(), "operator", "sim-secret");
    let runtime = Runtime::new(RuntimeConfig { max_instances: 8 })
        .unwrap()
        .with_secrets(std::sync::Arc::new(secrets));
    let catalog = Catalog::load(&runtime, &guests).unwrap();
    let file = ConnectionFile::load(&connection_path).unwrap();
    let client =
        RegistryClient::from_connection_file(&file, "agent-1", None, None, RetryPolicy::default())
            .unwrap();
    let mut config = AgentConfig::new("agent-1", connection_path.clone(), guests.clone());
    config.poll_interval = Duration::from_millis(200);
    let agent = Agent::with_parts(client, catalog, config, RetryPolicy::default());
    let stop = agent.stopper();
    let task = tokio::spawn(agent.run());

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let id = job_id.clone();
        let list = store
            .transaction(move |tx| jobs::list(tx, None, None))
            .await
            .unwrap();
        let job = list.into_iter().find(|job| job.job_id == id).unwrap();
        if job.state == "Completed" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the job was never completed: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.drain();
    task.await.unwrap();
    let committed: Vec<_> = done
        .files
        .iter()
        .flatten()
        .filter(|file| file.committed)
        .collect();
    assert_eq!(committed.len(), 1, "one committed file: {:?}", done.files);
    let id = committed[0].file_id.clone();
    let row = store
        .transaction(move |tx| files::committed(tx, &id))
        .await
        .unwrap();
    let plaintext = files::decrypt(&store, &row).unwrap();
    let expected =
        recording::recording("cam-0001", 4_000_000, 1_795_168_800_000, 1_795_168_830_000);
    assert!(
        plaintext == expected,
        "the committed file is whole and correct"
    );
}
