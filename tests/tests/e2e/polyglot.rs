//! Guests in Python and JavaScript: http-vms in each language inside the
//! agent, through the registry and its encrypted upload; guests that go
//! wrong fail the job with their own last words (the traceback's last line;
//! the error and its stack), escaped and cut, not with the trap of the
//! language runtime; and componentize-py's `--stub-wasi` build fits the
//! engine's limits.

use std::time::Duration;

use corral::guest::JobOutcome;
use corral::manifest::Manifest;
use corral::protocol::JobType;
use corral_camera_sim::{SimConfig, recording};
use corral_registry::RegistryConfig;
use corral_tests::world::World;
use corral_tests::{Harness, Lang, job, polyglot_component, unix_millis};
use sha2::{Digest, Sha256};

async fn thumbnail_fails_with(component: &str) -> Option<String> {
    let wasm = polyglot_component(component)?;
    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let manifest = Manifest::parse(
        "name = \"crash\"\nversion = \"0.1.0\"\njobs = [\"thumbnail\"]\n",
        std::path::Path::new("crash.toml"),
    )
    .unwrap();
    let guest = corral_tests::cached_runtime(2)
        .load_bytes(&wasm, manifest)
        .expect("the guest loads");
    let report = harness
        .run_with(&guest, &job("c1", JobType::Thumbnail, Some("cam-0001")))
        .await;
    let JobOutcome::Failed(message) = report.outcome else {
        panic!("{component}: expected a failure, got {:?}", report.outcome);
    };
    assert!(
        !message.contains('\n') && !message.contains('\x1b'),
        "{message}"
    );
    assert!(message.len() <= corral::sandbox::guest_text::MAX_MESSAGE);
    Some(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_python_exception_fails_the_job_with_the_tracebacks_last_line() {
    let Some(message) = thumbnail_fails_with("crash_py.wasm").await else {
        return;
    };
    assert!(
        message.starts_with(
            r#"uncaught Python exception KeyError: 'cam-0001\nforged line' (File "/0/app.py", line 10, in lookup)"#
        ),
        "{message}"
    );
    assert!(!message.contains("Python function threw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_javascript_error_fails_the_job_with_the_error_and_its_stack() {
    let Some(message) = thumbnail_fails_with("crash_js.wasm").await else {
        return;
    };
    assert!(
        message.starts_with(
            r#"uncaught JavaScript error TypeError: can't access property "name", (intermediate value)[camera] is undefined (stack: lookup@crash_js.js:"#
        ),
        "{message}"
    );
    assert!(message.contains("<- thumbnail@crash_js.js:"), "{message}");
    assert!(!message.contains("mozalloc_abort"), "{message}");
}

/// The agent with http-vms written in `lang` alone in its guests folder (the
/// Rust one taken out), against the registry and camera-sim on loopback: a
/// discovery, a thumbnail and a recording of 10 s at 8 Mbit/s (several
/// encryption regions) each end Completed with one committed file, which the
/// registry decrypts to what the camera has: its devices, a JPEG of 320x180,
/// its recording byte for byte. The guest of `lang` ran all three.
async fn the_agent_runs_http_vms_written_in(lang: Lang) {
    let Some(wasm) = lang.http_vms() else {
        return;
    };
    let sim = SimConfig {
        bitrate_bps: 8_000_000,
        ..SimConfig::with_devices(3)
    };
    let world = World::start(RegistryConfig::default(), sim).await;
    let name = lang.guest_name();
    let manifest = std::fs::read_to_string(world.guests_dir.join("http-vms.toml"))
        .unwrap()
        .replace("name = \"http-vms\"", &format!("name = \"{name}\""));
    for file in ["http-vms.wasm", "http-vms.toml"] {
        std::fs::remove_file(world.guests_dir.join(file)).unwrap();
    }
    std::fs::write(world.guests_dir.join(format!("{name}.wasm")), &wasm).unwrap();
    std::fs::write(world.guests_dir.join(format!("{name}.toml")), manifest).unwrap();
    let jobs = vec![
        world.job("discovery", None),
        world.job("thumbnail", Some("cam-0002")),
        world.job("mediarequest", Some("cam-0003")),
    ];
    let ids = world.post(jobs).await;
    // Loading compiles the component (once: the tests' cache keeps it) and
    // blocks; the agent's first poll comes after.
    let config = world.config();
    let agent = tokio::task::block_in_place(|| world.agent(config));
    let guests = agent.catalog.guests();
    assert_eq!(guests.len(), 1, "{}", agent.catalog.describe());
    assert_eq!(guests[0].manifest().name, name);
    let done = world.wait_final(&ids, Duration::from_secs(120)).await;
    for job in &done {
        assert_eq!(job.state, "Completed", "{lang:?}: {job:?}");
    }

    let mut cameras: Vec<_> = world
        .sim
        .config()
        .devices
        .iter()
        .map(|device| (device.id.clone(), device.name.clone()))
        .collect();
    cameras.sort();
    assert_eq!(world.discovered(&done[0]).await, cameras, "{lang:?}");

    let jpeg = world.registry.job_plaintext(&done[1]).await;
    let mut decoder = jpeg_decoder::Decoder::new(jpeg.as_slice());
    decoder.decode().expect("the thumbnail decodes as a JPEG");
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (320, 180));

    let media = &done[2];
    let millis = |time: &Option<String>| {
        unix_millis(corral_registry::store::parse_rfc3339(time.as_deref().unwrap()).unwrap())
    };
    let camera = recording::recording(
        "cam-0003",
        8_000_000,
        millis(&media.start_time_utc),
        millis(&media.end_time_utc),
    );
    assert!(
        camera.len() > 2 * corral_envelope::REGION_LEN,
        "several encryption regions"
    );
    let plaintext = world.registry.job_plaintext(media).await;
    assert!(
        plaintext == camera,
        "{lang:?}: the recording decrypts to {} bytes that are not the camera's {}",
        plaintext.len(),
        camera.len()
    );
    let file = &media.files.as_ref().unwrap()[0];
    assert_eq!(
        file.sha256.as_deref(),
        Some(format!("{:x}", Sha256::digest(&camera)).as_str())
    );
    agent.stop().await;
    assert_eq!(guests[0].jobs_run(), 3, "{lang:?} ran the three jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_the_python_http_vms_through_the_registry() {
    the_agent_runs_http_vms_written_in(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_the_javascript_http_vms_through_the_registry() {
    the_agent_runs_http_vms_written_in(Lang::JavaScript).await;
}

/// The README says a `componentize-py --stub-wasi` build of http-vms-py
/// passes `corral guests check`: it has 44 core instances (the normal build
/// 14), over the 32 the engine once allowed. `tests/polyglot.sh` builds one;
/// its compile is kept in a cache under `target/` between runs.
#[test]
fn a_stub_wasi_build_of_the_python_http_vms_passes_guests_check() {
    let Some(wasm) = polyglot_component("http_vms_py_stub_wasi.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http-vms-py.wasm");
    std::fs::write(&path, wasm).unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/http-vms-py/http-vms-py.toml");
    std::fs::copy(manifest, path.with_extension("toml")).unwrap();
    let output = std::process::Command::new(corral_tests::processes::corral_binary())
        .args(["guests", "check"])
        .arg(&path)
        .env(
            "XDG_CACHE_HOME",
            corral_tests::workspace_target().join("e2e-check-cache"),
        )
        .output()
        .expect("corral runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.starts_with("ok: http-vms-py 0.1.0"),
        "{stdout}{stderr}"
    );
}
