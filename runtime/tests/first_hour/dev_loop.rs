//! The integration author's dev loop in Python and JavaScript: `corral run-job`
//! on the guests `tests/polyglot.sh` built, against camera-sim on loopback.

use std::time::{Duration, Instant};

use corral_camera_sim::{CameraSim, SimConfig};

use crate::support::{arg, corral, polyglot_guest, repo_root, thumbnail_job};

/// The guest's manifest from `guests/<name>/`, pointed at camera-sim on
/// `base_url`, written into `dir`.
fn manifest_for(dir: &std::path::Path, name: &str, base_url: &str) -> std::path::PathBuf {
    let shipped = repo_root().join(format!("guests/{name}/{name}.toml"));
    let text = std::fs::read_to_string(shipped).expect("the guest's manifest");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text.replace("http://127.0.0.1:8081", base_url)).expect("written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_guest_starts_from_the_compile_cache_in_well_under_a_second() {
    let sim = CameraSim::start(SimConfig::with_devices(1), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for (name, file) in [
        ("http-vms-py", "http_vms_py.wasm"),
        ("http-vms-js", "http_vms_js.wasm"),
    ] {
        let Some(wasm) = polyglot_guest(file) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest_for(dir.path(), name, &sim.base_url());
        let job = thumbnail_job(dir.path());
        let cache = dir.path().join("cache");
        let run = || {
            let started = Instant::now();
            let run = corral(&[
                "run-job",
                "--guest",
                arg(&wasm),
                "--manifest",
                arg(&manifest),
                "--job",
                arg(&job),
                "--out",
                arg(&dir.path().join("out")),
                "--cache-dir",
                arg(&cache),
                "--secret",
                "camera-sim=operator:sim-secret",
            ]);
            assert!(run.success, "{name}: {}{}", run.stdout, run.stderr);
            (run.stdout, started.elapsed())
        };
        let (first, _) = tokio::task::block_in_place(run);
        assert!(
            first.contains("compiled and stored in the compile cache"),
            "{name}: {first}"
        );
        let (second, took) = tokio::task::block_in_place(run);
        assert!(
            second.contains("from the compile cache"),
            "{name}: {second}"
        );
        assert!(second.contains("outcome   completed"), "{name}: {second}");
        // The whole process: start, load from the cache, the job, exit.
        assert!(
            took < Duration::from_secs(1),
            "{name}: the cached run took {took:?}"
        );
        eprintln!("{name}: second run of run-job took {took:?}");
    }
}
