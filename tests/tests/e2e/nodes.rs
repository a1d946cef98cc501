//! Several registry nodes on one PostgreSQL database and one Azurite
//! container (or, without `CORRAL_TEST_AZURITE`, one data folder for the
//! blocks): locks stay exclusive across nodes, agents spread over the nodes
//! do each job once, and when a node is killed (`kill -9`) its agents move
//! to the other and every job still completes exactly once. These run on
//! PostgreSQL only (SQLite is one node's); without `CORRAL_TEST_POSTGRES`
//! each prints one line and passes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral_camera_sim::SimConfig;
use corral_registry::RegistryConfig;
use corral_registry::blobs::azure::AZURITE_KEY;
use corral_registry::store::{self, Counter};
use corral_tests::backend::Backend;
use corral_tests::registry::{TestRegistry, fast_retry, lock_race, new_job};
use corral_tests::world::World;

/// A copy of the connection file at `path` listing its nodes in reverse
/// order (the same key), for agents that should start on the other node.
fn reversed(path: &Path, name: &str) -> std::path::PathBuf {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for list in ["SecurityTokenServiceBaseAddresses", "ApiBaseAddresses"] {
        json[list].as_array_mut().unwrap().reverse();
    }
    let copy = path.with_file_name(name);
    std::fs::write(&copy, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    copy
}

/// Every job final as Completed with exactly one committed file, and no
/// complete of a job already final was ever attempted.
async fn each_completed_once(world: &World, ids: &[String]) {
    let done = world.wait_final(ids, Duration::from_secs(120)).await;
    for job in &done {
        assert_eq!(job.state, "Completed", "{job:?}");
        let bytes = world.registry.job_plaintext(job).await;
        assert!(bytes.starts_with(&[0xff, 0xd8, 0xff]), "a JPEG");
    }
    let doubles = world
        .registry
        .running
        .registry()
        .store()
        .transaction(|tx| store::count(tx, Counter::DoubleCompletes))
        .await
        .unwrap();
    assert_eq!(doubles, 0, "no job was completed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_lock_attempts_over_two_nodes_lock_each_of_twenty_jobs_once() {
    let Some(backend) = Backend::postgres_shared("two_nodes_lock") else {
        return;
    };
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let second = registry.another_node(RegistryConfig::default()).await;
    let path = registry
        .add_agent_at("agent-1", &[registry.running.base_url(), second.base_url()])
        .await;
    let file = ConnectionFile::load(&path).unwrap();
    let clients: Vec<RegistryClient> = [registry.running.base_url(), second.base_url()]
        .iter()
        .map(|node| {
            RegistryClient::from_connection_file(&file, "agent-1", Some(node), None, fast_retry())
                .unwrap()
        })
        .collect();
    for client in &clients {
        client.check(&[]).await.unwrap();
    }
    let jobs = registry
        .post(
            (0..20)
                .map(|i| new_job("thumbnail", "agent-1", Some(&format!("c{i}"))))
                .collect(),
        )
        .await;
    let ids: Vec<String> = jobs.iter().map(|job| job.job_id.clone()).collect();
    let granted = lock_race(&clients, &ids, 200).await;
    assert_eq!(granted.len(), 20, "every job locked: {granted:?}");
    assert!(granted.values().all(|&n| n == 1), "once each: {granted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_agents_spread_over_two_nodes_do_each_job_exactly_once() {
    let Some(backend) = Backend::postgres_shared("two_nodes_agents") else {
        return;
    };
    let world = World::start_on(
        &backend,
        RegistryConfig::default(),
        SimConfig::with_devices(6),
    )
    .await;
    let second = world.registry.another_node(RegistryConfig::default()).await;
    let forward = world
        .registry
        .add_agent_at(
            &world.agent_id,
            &[world.registry.running.base_url(), second.base_url()],
        )
        .await;
    let backward = reversed(&forward, "agent-1-backward.json");
    let ids = world
        .post(
            (0..24)
                .map(|i| world.job("thumbnail", Some(&format!("cam-{:04}", i % 6 + 1))))
                .collect(),
        )
        .await;
    let _agents: Vec<_> = (0..4)
        .map(|i| {
            let mut config = world.config();
            config.connection_file = if i % 2 == 0 { &forward } else { &backward }.clone();
            world.agent(config)
        })
        .collect();
    each_completed_once(&world, &ids).await;
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node in a process of its own, killed (SIGKILL) when dropped.
struct NodeProcess(Child);

impl NodeProcess {
    /// `kill -9`, and waits for it to be gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `corral registry serve` on `port`, a node of the registry in `data` on
/// `backend`'s database (and container), answering.
async fn serve_node(data: &Path, backend: &Backend, port: u16) -> NodeProcess {
    let mut command = Command::new(corral_tests::processes::corral_binary());
    command
        .args(["registry", "serve", "--data"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    if let Some(url) = backend.postgres_url() {
        command.args(["--database", url]);
    }
    if let Some(container) = backend.container_url() {
        command
            .args(["--blobs", container])
            .env(corral_registry::blobs::azure::KEY_VAR, AZURITE_KEY);
    }
    let mut node = NodeProcess(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("corral registry serve starts"),
    );
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill();
    panic!("the second node did not listen on {port} within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_hands_its_agents_to_the_other_and_each_job_completes_once() {
    let Some(backend) = Backend::postgres_shared("node_killed") else {
        return;
    };
    let world = World::start_on(
        &backend,
        RegistryConfig::default(),
        SimConfig::with_devices(6),
    )
    .await;
    let port = free_port();
    let mut doomed = serve_node(world.registry.dir.path(), &backend, port).await;
    // Every agent starts on the node about to die.
    let file = world
        .registry
        .add_agent_at(
            &world.agent_id,
            &[
                format!("http://127.0.0.1:{port}"),
                world.registry.running.base_url(),
            ],
        )
        .await;
    let ids = world
        .post(
            (0..60)
                .map(|i| world.job("thumbnail", Some(&format!("cam-{:04}", i % 6 + 1))))
                .collect(),
        )
        .await;
    let _agents: Vec<_> = (0..3)
        .map(|_| {
            let mut config = world.config();
            config.connection_file = file.clone();
            world.agent(config)
        })
        .collect();
    world
        .wait_until(&ids[..5], Duration::from_secs(60), |job| {
            job.state == "Completed"
        })
        .await;
    doomed.kill();
    let mut left = 0;
    for id in &ids {
        if world.registry.job(id).await.state != "Completed" {
            left += 1;
        }
    }
    assert!(left > 0, "the node died mid-run, with jobs left");
    each_completed_once(&world, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_at_once_migrate_the_database_once() {
    let Some(backend) = Backend::postgres("migrate_once") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (backend, dir) = (backend.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || backend.open(&dir))
        })
        .collect();
    let stores: Vec<_> = opening.into_iter().map(|t| t.join().unwrap()).collect();
    let versions = stores[0]
        .transaction(|tx| {
            let row = tx.row(
                "SELECT COUNT(*) FROM schema_migrations",
                corral_registry::params![],
            )?;
            row.expect("one row").get::<i64>(0)
        })
        .await
        .unwrap();
    assert_eq!(versions, 2, "each of the two migrations recorded once");
    assert!(stores.iter().all(|store| store.engine() == "PostgreSQL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_version_1_gets_the_consoles_tables_at_open() {
    let Some(backend) = Backend::postgres("migrate_to_2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = backend.open(dir.path());
    // Back to what version 1 made: no job history, no last polls.
    store
        .transaction(|tx| {
            tx.execute(
                "DROP TABLE job_events, agent_polls",
                corral_registry::params![],
            )?;
            tx.execute(
                "DELETE FROM schema_migrations WHERE version = 2",
                corral_registry::params![],
            )
        })
        .await
        .unwrap();
    drop(store);
    let store = backend.open(dir.path());
    let counts = store
        .transaction(|tx| {
            let count = |sql: &str| -> Result<i64, corral_registry::ApiError> {
                tx.row(sql, corral_registry::params![])?
                    .expect("one row")
                    .get::<i64>(0)
            };
            Ok((
                count("SELECT COUNT(*) FROM schema_migrations")?,
                count("SELECT COUNT(*) FROM job_events")?,
                count("SELECT COUNT(*) FROM agent_polls")?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(counts, (2, 0, 0), "migration 2 ran again, once");
}

#[test]
fn a_database_that_does_not_answer_stops_serve_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://corral:hunter2@127.0.0.1:{port}/corral");
    let output = Command::new(corral_tests::processes::corral_binary())
        .args(["registry", "serve", "--data"])
        .arg(dir.path())
        .args(["--database", &url, "--listen", "127.0.0.1:0"])
        .output()
        .expect("corral runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://corral:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password stays hidden: {stderr}"
    );
}
