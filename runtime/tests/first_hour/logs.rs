//! Logs: requests at debug in the registry and camera-sim, JSON lines for
//! log shippers, and the compiler's internals quiet under `RUST_LOG=debug`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use super::support::{CORRAL, MY_VMS_WASM, arg, my_vms_manifest, thumbnail_job};

/// Starts `corral --log-format json args` with `RUST_LOG=debug`; returns it
/// and the address it printed first.
fn start_json(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(CORRAL)
        .args(["--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

/// Stops `child` and parses every log line of its stderr as a JSON object.
fn json_lines(mut child: Child) -> Vec<serde_json::Value> {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // Log lines are JSON; the command's own notes to the operator
    // (`admin token in ...`) are plain sentences, never starting with `{`.
    stderr
        .lines()
        .filter(|line| line.starts_with('{') || line.contains("\"level\""))
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// One GET on a fresh connection; returns the status line.
fn get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn camera_sim_and_the_registry_log_each_request_as_a_json_line() {
    let (sim, addr) = start_json(&["camera-sim", "--listen", "127.0.0.1:0"]);
    assert!(get(&addr, "/vms/v2/cameras").contains("401"));
    let lines = json_lines(sim);
    let request = lines
        .iter()
        .find(|line| message(line).starts_with("GET /vms/v2/cameras 401"));
    let request = request.unwrap_or_else(|| panic!("no request line: {lines:?}"));
    assert_eq!(request["level"], "DEBUG");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reg");
    let (registry, addr) = start_json(&[
        "registry",
        "serve",
        "--data",
        arg(&data),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(get(&addr, "/agentservice/api/v1/agents/a/jobs").contains("401"));
    let lines = json_lines(registry);
    assert!(
        lines
            .iter()
            .any(|line| message(line).starts_with("GET /agentservice/api/v1/agents/a/jobs 401")),
        "no request line: {lines:?}"
    );
}

#[test]
fn rust_log_debug_keeps_wasmtime_and_cranelift_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let job = thumbnail_job(dir.path());
    let manifest = my_vms_manifest();
    // No camera listens there: the job ends unavailable, after the guest was compiled and run.
    let output = Command::new(CORRAL)
        .args([
            "--log-format",
            "json",
            "run-job",
            "--guest",
            MY_VMS_WASM,
            "--manifest",
        ])
        .arg(&manifest)
        .args(["--job", arg(&job), "--out", arg(&dir.path().join("out"))])
        .args([
            "--set",
            "base-url=http://127.0.0.1:1",
            "--secret",
            "camera-sim=a:b",
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("outcome"), "the job ran: {stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| line.starts_with('{')) {
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        let target = json["target"].as_str().unwrap_or_default();
        assert!(
            !target.starts_with("wasmtime") && !target.starts_with("cranelift"),
            "a compiler line at debug: {line}"
        );
    }
}
