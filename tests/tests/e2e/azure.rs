//! The Azure Blob Storage file store, against Azurite: a file an agent
//! committed is an ordinary client-side-encrypted blob that the Python
//! `azure-storage-blob` SDK downloads and decrypts by itself, and `corral
//! registry serve --blobs` refuses an endpoint that does not answer in one
//! sentence that keeps the key hidden. Without `CORRAL_TEST_AZURITE` each
//! prints one line and passes (under `CI=true` it fails).

use std::process::Command;
use std::time::Duration;

use corral_camera_sim::SimConfig;
use corral_camera_sim::recording;
use corral_registry::RegistryConfig;
use corral_registry::blobs::azure::{AZURITE_KEY, KEY_VAR};
use corral_tests::backend::Backend;
use corral_tests::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_committed_into_azurite_is_decrypted_by_the_azure_sdk_alone() {
    let Some(backend) = Backend::sqlite_azurite("outside_reader") else {
        return;
    };
    let sim = SimConfig {
        bitrate_bps: 8_000_000,
        ..SimConfig::with_devices(1)
    };
    let world = World::start_on(&backend, RegistryConfig::default(), sim).await;
    let ids = world
        .post(vec![world.job("mediarequest", Some("cam-0001"))])
        .await;
    let agent = world.agent(world.config());
    let done = world.wait_final(&ids, Duration::from_secs(60)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0]);
    agent.stop().await;
    let camera = recording::recording("cam-0001", 8_000_000, 1_795_168_800_000, 1_795_168_810_000);
    assert!(
        camera.len() > 2 * corral_envelope::REGION_LEN,
        "several blocks"
    );
    let file = done[0].files.as_ref().unwrap()[0].file_id.clone();
    let store = world.registry.running.registry().store().clone();
    let id = file.clone();
    let row = store
        .transaction(move |tx| corral_registry::files::committed(tx, &id))
        .await
        .unwrap();
    let container_url = backend.container_url().unwrap();
    let (account_url, container) = container_url.rsplit_once('/').unwrap();
    let plaintext = corral_tests::interop::azure_download(
        account_url,
        AZURITE_KEY,
        container,
        &file,
        &row.private_jwk,
    );
    assert!(
        plaintext == camera,
        "the Azure SDK's download_blob decrypts the blob to the camera's bytes ({} bytes, expected {})",
        plaintext.len(),
        camera.len()
    );
}

#[test]
fn a_blob_endpoint_that_does_not_answer_stops_serve_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/devstoreaccount1/corral");
    let output = Command::new(corral_tests::processes::corral_binary())
        .args(["registry", "serve", "--data"])
        .arg(dir.path())
        .args(["--blobs", &url, "--listen", "127.0.0.1:0"])
        .env(KEY_VAR, AZURITE_KEY)
        .output()
        .expect("corral runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("--blobs {url}")), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(
        !stderr.contains(AZURITE_KEY),
        "the key stays hidden: {stderr}"
    );
    let without_key = Command::new(corral_tests::processes::corral_binary())
        .args(["registry", "serve", "--data"])
        .arg(dir.path())
        .args(["--blobs", &url, "--listen", "127.0.0.1:0"])
        .env_remove(KEY_VAR)
        .output()
        .expect("corral runs");
    assert!(
        String::from_utf8_lossy(&without_key.stderr).contains(KEY_VAR),
        "a missing key is named: {}",
        String::from_utf8_lossy(&without_key.stderr)
    );
}
