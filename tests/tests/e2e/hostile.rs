//! The hostile-guest suite: every attack runs while a well-behaved job runs
//! beside it; the attack must end Failed with a message naming the limit or
//! the denial, within its wall time, and the good job must complete untouched.
//! The results are written to `docs/security.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use corral::guest::{GuestError, JobOutcome};
use corral::manifest::Manifest;
use corral::protocol::JobType;
use corral_camera_sim::SimConfig;
use corral_tests::test_guests::{HOSTILE, OTHER_WORLD};
use corral_tests::{Harness, job};

const WALL_SECS: u64 = 3;

fn manifest(camera: &str) -> Manifest {
    manifest_with(camera, "")
}

/// The suite's manifest, plus `extra` TOML (tcp and folder grants).
fn manifest_with(camera: &str, extra: &str) -> Manifest {
    let port = camera.rsplit(':').next().unwrap_or("80");
    let text = format!(
        r#"
name = "hostile"
version = "0.1.0"
jobs = ["discovery", "thumbnail", "mediarequest"]

[[http]]
origin = "{camera}"

[[http]]
origin = "http://localhost:{port}"

{extra}

[limits]
memory_mib = 64
cpu_secs = 1
wall_secs = {WALL_SECS}
output_mib = 16
log_lines = 1000
"#
    );
    Manifest::parse(&text, Path::new("hostile.toml")).expect("the suite's manifest")
}

struct Attack {
    name: &'static str,
    what: &'static str,
    params: Vec<(&'static str, String)>,
    expect: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_with_the_limit_or_denial_and_disturb_nothing() {
    let harness = Harness::start(SimConfig::with_devices(2)).await;
    let camera = harness.sim.base_url();
    // A read-only folder and a raw TCP endpoint are granted; others are not.
    let exports = tempfile::tempdir().unwrap();
    std::fs::write(exports.path().join("hello.txt"), b"hello").unwrap();
    let tcp_peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_granted = tcp_peer.local_addr().unwrap();
    let extra = format!(
        "[[tcp]]\naddress = \"{tcp_granted}\"\n\n[[folders]]\nhost = \"{}\"\nguest = \"/exports\"\n",
        exports.path().display()
    );
    let hostile = harness
        .runtime
        .load_bytes(HOSTILE, manifest_with(&camera, &extra))
        .expect("the hostile guest is a valid component");
    // What the grants allow works.
    for (attack, target, expect) in [
        (
            "read-file",
            "/exports/hello.txt".to_string(),
            "read 5 bytes of /exports/hello.txt".to_string(),
        ),
        (
            "tcp",
            tcp_granted.to_string(),
            format!("connected to {tcp_granted}"),
        ),
    ] {
        let mut allowed = job("allowed", JobType::Thumbnail, Some("cam-0001"));
        allowed.parameters = [
            ("attack".to_string(), attack.to_string()),
            ("target".to_string(), target),
        ]
        .into();
        let report = harness.run_with(&hostile, &allowed).await;
        assert!(
            matches!(&report.outcome, JobOutcome::Failed(message) if message.contains(&expect)),
            "{:?}",
            report.outcome
        );
    }
    let tcp_refused = {
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        other.local_addr().unwrap()
    };
    // A peer that accepts and never answers, granted below, to block the guest in a host call.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut blocked_manifest = manifest(&camera);
    blocked_manifest
        .http
        .push(corral::manifest::HttpGrant::parse(&format!("http://{silent_addr}"), None).unwrap());
    let blocked_guest = harness
        .runtime
        .load_bytes(HOSTILE, blocked_manifest)
        .unwrap();
    let registry_like = "http://127.0.0.1:9/agentservice/api/v1/agents/a/jobs".to_string();
    let config_file = harness.out.path().join("agent.toml");
    std::fs::write(&config_file, "agent_id = \"secret-agent\"\n").unwrap();
    let camera_port = camera.rsplit(':').next().unwrap().to_string();

    let attacks = vec![
        Attack {
            name: "endless loop",
            what: "`loop {}` in guest code",
            params: vec![("attack", "endless-loop".into())],
            expect: "CPU time limit of 1s exceeded".into(),
        },
        Attack {
            name: "memory bomb",
            what: "allocates 16 MiB at a time forever",
            params: vec![("attack", "memory-bomb".into())],
            expect: "memory limit of 64 MiB exceeded".into(),
        },
        Attack {
            name: "deep recursion",
            what: "unbounded recursion",
            params: vec![("attack", "deep-recursion".into())],
            expect: "call stack exhausted".into(),
        },
        Attack {
            name: "10 GiB output",
            what: "writes 10 GiB to an output file",
            params: vec![("attack", "huge-output".into())],
            expect: "output limit of 16777216 bytes exceeded".into(),
        },
        Attack {
            name: "HTTP to a host not granted",
            what: "GET http://10.255.255.1/",
            params: vec![
                ("attack", "http".into()),
                ("target", "http://10.255.255.1/".into()),
            ],
            expect: "http://10.255.255.1:80 is not granted by the manifest".into(),
        },
        Attack {
            name: "HTTP to the registry",
            what: "GET the registry's agent API",
            params: vec![("attack", "http".into()), ("target", registry_like)],
            expect: "http://127.0.0.1:9 is not granted by the manifest".into(),
        },
        Attack {
            name: "a granted name resolving elsewhere",
            what: "GET http://localhost:PORT (granted by name; it resolves to loopback)",
            params: vec![
                ("attack", "http".into()),
                (
                    "target",
                    format!("http://localhost:{camera_port}/vms/v2/cameras"),
                ),
            ],
            expect: "resolved to 127.0.0.1".into(),
        },
        Attack {
            name: "reading /etc/passwd",
            what: "std::fs::read(\"/etc/passwd\")",
            params: vec![
                ("attack", "read-file".into()),
                ("target", "/etc/passwd".into()),
            ],
            expect: "reading /etc/passwd was refused".into(),
        },
        Attack {
            name: "reading the agent's config",
            what: "std::fs::read(<agent.toml>)",
            params: vec![
                ("attack", "read-file".into()),
                ("target", config_file.display().to_string()),
            ],
            expect: "was refused".into(),
        },
        Attack {
            name: "writing into a read-only folder",
            what: "std::fs::write(\"/exports/x\") into the granted read-only folder",
            params: vec![
                ("attack", "write-file".into()),
                ("target", "/exports/x".into()),
            ],
            expect: "writing /exports/x was refused".into(),
        },
        Attack {
            name: "raw TCP to an endpoint not granted",
            what: "TcpStream::connect to a local port not granted",
            params: vec![
                ("attack", "tcp".into()),
                ("target", tcp_refused.to_string()),
            ],
            expect: "was refused".into(),
        },
        Attack {
            name: "reading the environment",
            what: "std::env::vars() and args()",
            params: vec![("attack", "environment".into())],
            expect: "saw 0 environment variables [] and arguments []".into(),
        },
        Attack {
            name: "a flood of progress and log calls",
            what: "a million progress reports and log lines",
            params: vec![("attack", "flood".into())],
            expect: "log limit of 1000 lines exceeded".into(),
        },
        Attack {
            name: "blocked forever in a host call",
            what: "GET to a granted peer that never answers",
            params: vec![
                ("attack", "blocked".into()),
                ("target", format!("http://{silent_addr}/")),
            ],
            expect: format!("wall time limit of {WALL_SECS}s exceeded"),
        },
        Attack {
            name: "a trap",
            what: "panic!()",
            params: vec![("attack", "trap".into())],
            expect: "the guest gives up on purpose".into(),
        },
    ];

    let mut rows = Vec::new();
    for (index, attack) in attacks.into_iter().enumerate() {
        let mut bad = job(
            &format!("attack-{index}"),
            JobType::Thumbnail,
            Some("cam-0001"),
        );
        bad.parameters = attack
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let guest = if attack.name.starts_with("blocked") {
            &blocked_guest
        } else {
            &hostile
        };
        let good = job(
            &format!("good-{index}"),
            JobType::Thumbnail,
            Some("cam-0002"),
        );
        let started = Instant::now();
        let (bad_report, good_report) =
            tokio::join!(harness.run_with(guest, &bad), harness.run(&good));
        let elapsed = started.elapsed();
        assert_eq!(
            good_report.outcome,
            JobOutcome::Completed,
            "the good job beside {}",
            attack.name
        );
        let JobOutcome::Failed(message) = &bad_report.outcome else {
            panic!(
                "{}: expected a failure, got {:?}",
                attack.name, bad_report.outcome
            );
        };
        assert!(
            message.contains(&attack.expect),
            "{}: {message:?} should contain {:?}",
            attack.name,
            attack.expect
        );
        assert!(
            elapsed < Duration::from_secs(WALL_SECS + 2),
            "{} took {elapsed:?}",
            attack.name
        );
        // The report names places, not this run's temporary paths and ports.
        let message = message
            .replace(&config_file.display().to_string(), "<agent.toml>")
            .replace(&camera_port, "PORT")
            .replace(&tcp_refused.port().to_string(), "PORT");
        rows.push((
            attack.name.to_string(),
            attack.what.to_string(),
            message,
            elapsed,
        ));
    }

    // Files that are not a guest of our world.
    let runtime = &harness.runtime;
    let refusals = [
        (
            "a component of another world",
            runtime.load_bytes(OTHER_WORLD, manifest(&camera)).map(drop),
        ),
        (
            "a core module instead of a component",
            runtime
                .load_bytes(b"\0asm\x01\0\0\0", manifest(&camera))
                .map(drop),
        ),
        (
            "a corrupt file",
            runtime
                .load_bytes(&HOSTILE[..HOSTILE.len() / 3], manifest(&camera))
                .map(drop),
        ),
    ];
    for (name, result) in refusals {
        let error: GuestError = result.expect_err(name);
        let message = error.to_string();
        let expected = match name {
            "a component of another world" => "is not of the corral:integration world",
            "a core module instead of a component" => "core WebAssembly module",
            _ => "does not compile",
        };
        assert!(message.contains(expected), "{name}: {message}");
        rows.push((
            name.to_string(),
            "loaded as a guest".to_string(),
            first_line(&message),
            Duration::ZERO,
        ));
    }
    write_report(&rows);
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Writes `docs/security.md`: the grant model, then the suite's results.
fn write_report(rows: &[(String, String, String, Duration)]) {
    let mut doc = String::from(include_str!("security_header.md"));
    doc.push_str("| attack | what the guest does | how it ended (the job's message) | time |\n|---|---|---|---|\n");
    for (name, what, message, elapsed) in rows {
        let message = message.replace('|', "\\\\|");
        let time = if elapsed.is_zero() {
            "refused at load".to_string()
        } else {
            format!("{:.2} s", elapsed.as_secs_f64())
        };
        let _ = writeln!(doc, "| {name} | {what} | {message} | {time} |");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, doc).unwrap();
}
