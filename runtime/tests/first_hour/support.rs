//! What the first-hour tests share: running the real `corral` binary, the
//! guests the build made, free ports, and a registry's data folder with agents.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `corral` binary cargo built for these tests.
pub const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// The README's example integration (`guests/my-vms`), built by the build script.
pub const MY_VMS_WASM: &str = env!("CORRAL_GUEST_MY_VMS");

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ lives in the repository")
        .to_path_buf()
}

/// What one run of `corral` did.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `corral args` to its end, with no camera secret in its environment.
pub fn corral(args: &[&str]) -> Run {
    corral_env(args, &[])
}

/// Runs `corral args` to its end with `env` added to its environment (and
/// no camera secret).
pub fn corral_env(args: &[&str], env: &[(&str, &OsStr)]) -> Run {
    Command::new(CORRAL)
        .args(args)
        .env_remove("CORRAL_SECRET_CAMERA_SIM")
        .env_remove("CORRAL_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("corral runs")
        .into()
}

/// Runs `corral args`, which must succeed; returns its stdout.
pub fn corral_ok(args: &[&str]) -> String {
    let run = corral(args);
    assert!(run.success, "corral {args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs `corral args`, which must fail; returns its stderr.
pub fn corral_refused(args: &[&str]) -> String {
    let run = corral(args);
    assert!(
        !run.success,
        "corral {args:?} should fail: {}{}",
        run.stdout, run.stderr
    );
    run.stderr
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A path as an argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary paths")
}

/// A registry data folder in `dir` with agent `agent-1` (made by the real
/// `add-agent`); returns the folder and the connection file.
pub fn registry_with_agent(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("reg");
    let connection = dir.join("agent-1.json");
    corral_ok(&[
        "registry",
        "add-agent",
        "--data",
        arg(&data),
        "--name",
        "agent-1",
        "--url",
        url,
        "--out",
        arg(&connection),
    ]);
    (data, connection)
}

/// Writes a thumbnail job for `cam-0001` into `dir`; returns its path.
pub fn thumbnail_job(dir: &Path) -> PathBuf {
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        r#"{"jobId":"1","type":"thumbnail","deviceId":"cam-0001"}"#,
    )
    .expect("job file written");
    job
}

/// The README example's manifest.
pub fn my_vms_manifest() -> PathBuf {
    repo_root().join("guests/my-vms/my-vms.toml")
}

/// The id of the first file of job `job_id`, from `corral registry jobs --json`.
pub fn first_file_id(data: &Path, job_id: &str) -> String {
    let listed = corral_ok(&["registry", "jobs", "--data", arg(data), "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let job = listed
        .as_array()
        .and_then(|jobs| jobs.iter().find(|job| job["jobId"] == job_id));
    let id = job.and_then(|job| job["files"][0]["fileId"].as_str());
    id.unwrap_or_else(|| panic!("job {job_id} has no file: {listed}"))
        .to_string()
}

/// A guest `tests/polyglot.sh` built (`http_vms_py.wasm`, `http_vms_js.wasm`),
/// or `None` after saying on stderr that the test skips (its toolchain was
/// missing). Under CI (`CI=true`) a missing guest panics instead.
pub fn polyglot_guest(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CORRAL_POLYGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/guests/polyglot"));
    let path = dir.join(file);
    if path.exists() {
        return Some(path);
    }
    skip(&format!(
        "{} is missing: run `bash tests/polyglot.sh` (tests/run.sh does)",
        path.display()
    ));
    None
}

/// Says on stderr that a test skips, and why; under CI (`CI=true`) a test
/// may not skip, so this panics instead.
pub fn skip(why: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
}
