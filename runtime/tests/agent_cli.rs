//! The operator's first hour with `corral agent`: `agent check` catches a
//! missing secret, a wrong agent id and an unreachable registry before a job
//! is spent; a running agent shows a dead registry on `/healthz` and stops at
//! once on SIGINT.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use corral_camera_sim::SimConfig;
use support::{Site, corral, text};

const SECRET: &str = "operator:sim-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_check_passes_a_good_set_up_and_names_what_to_fix_otherwise() {
    let site = Site::start(SimConfig::with_devices(1)).await;
    // Good: no agent_id, so it is the connection file's ServicePrincipalId.
    let config = site.config("");
    let output = corral(&["agent", "check"], &config, Some(SECRET))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("polling as agent agent-1 works"),
        "{stdout}"
    );
    assert!(stdout.ends_with("ok\n"), "{stdout}");

    // The camera secret is not set: the guest is refused, naming the variable.
    let stderr = check_fails(&config, None);
    assert!(
        stderr.contains("http-vms.wasm is refused")
            && stderr.contains("set CORRAL_SECRET_CAMERA_SIM=user:password"),
        "{stderr}"
    );

    // Another agent's id with agent-1's connection file.
    let config = site.config("agent_id = \"agent-2\"");
    let stderr = check_fails(&config, Some(SECRET));
    assert!(
        stderr.contains("agent id agent-2") && stderr.contains("agent_id = \"agent-1\""),
        "{stderr}"
    );

    // A registry that does not answer: named, with the keys to check.
    let dead = dead_port();
    let config = site.config(&format!("registry_url = \"http://127.0.0.1:{dead}\""));
    let started = Instant::now();
    let stderr = check_fails(&config, Some(SECRET));
    assert!(
        stderr.contains(&format!("127.0.0.1:{dead} does not answer"))
            && stderr.contains("registry_url"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Runs `agent check`, which must exit 1; returns what it printed on stderr.
fn check_fails(config: &std::path::Path, secret: Option<&str>) -> String {
    let output = corral(&["agent", "check"], config, secret)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    stderr
}

/// A loopback port nobody listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `GET path` on the status port: the status code and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_registry_shows_on_healthz_and_sigint_stops_the_agent_at_once() {
    let site = Site::start(SimConfig::with_devices(1)).await;
    let dead = dead_port();
    let status = dead_port();
    let config = site.config(&format!(
        "registry_url = \"http://127.0.0.1:{dead}\"\nstatus_listen = \"127.0.0.1:{status}\""
    ));
    let mut agent = corral(&["agent"], &config, Some(SECRET))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((503, body)) = get(status, "/healthz") {
            break body;
        }
        assert!(Instant::now() < deadline, "/healthz never answered 503");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.contains(&format!(
            "the registry at http://127.0.0.1:{dead} has not answered"
        )),
        "{body}"
    );
    let (_, metrics) = get(status, "/metrics").unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("corral_registry_errors_total "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(errors >= 1, "{metrics}");
    assert!(metrics.contains("corral_registry_up 0"), "{metrics}");

    let signalled = Instant::now();
    // SAFETY: kill(2) with the child's pid; no memory is involved.
    unsafe { libc::kill(agent.id() as i32, libc::SIGINT) };
    let code = loop {
        if let Some(code) = agent.try_wait().unwrap() {
            break code;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "the agent did not stop within 1 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let warnings = log.matches("did not answer: ").count();
    assert_eq!(warnings, 1, "the first failure is logged once: {log}");
}
