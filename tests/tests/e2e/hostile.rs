//! The hostile-guest suite: every attack runs while a well-behaved job runs
//! beside it; the attack must end Failed with a message naming the limit or
//! the denial, within its wall time, and the good job must complete untouched.
//! The results are written to `docs/security.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use std::net::IpAddr;
use std::sync::Arc;

use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::{Guest, GuestError, JobOutcome};
use corral::manifest::Manifest;
use corral::origin::OriginPattern;
use corral::policy::OperatorPolicy;
use corral::protocol::JobType;
use corral::sandbox::address::this_machine_addresses;
use corral::sandbox::resolver::StaticResolver;
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
    /// The guest that attacks (the hostile guest under some manifest).
    guest: Guest,
}

impl Attack {
    /// The job that runs this attack (a thumbnail of cam-0001).
    fn job(&self, id: &str) -> corral::protocol::Job {
        let mut bad = job(id, JobType::Thumbnail, Some("cam-0001"));
        bad.parameters = self
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        bad
    }
}

/// A peer on loopback that accepts connections, holds them and never answers.
async fn silent_peer() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// What an attack is, before it is given its guest.
fn attack(
    name: &'static str,
    what: &'static str,
    params: Vec<(&'static str, String)>,
    expect: impl Into<String>,
    guest: &Guest,
) -> Attack {
    Attack {
        name,
        what,
        params,
        expect: expect.into(),
        guest: guest.clone(),
    }
}

/// The two suites that run many jobs at once take turns, so that neither's
/// attacks run out of wall time on the other's load.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_with_the_limit_or_denial_and_disturb_nothing() {
    let _turn = HEAVY.lock().await;
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
    // The operator's policy allows the exports folder (and no other), and
    // the TCP peer on loopback by its address (`[policy] local_grants`).
    let with_exports = Runtime::new(RuntimeConfig { max_instances: 4 })
        .unwrap()
        .with_secrets(harness.secrets.clone())
        .with_policy(Arc::new(
            OperatorPolicy::default()
                .allowing_folders([exports.path().to_path_buf()])
                .with_local_grants(&[tcp_granted.to_string()])
                .unwrap(),
        ));
    let hostile = with_exports
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
    let silent_addr = silent_peer().await;
    let mut blocked_manifest = manifest(&camera);
    blocked_manifest
        .http
        .push(corral::manifest::HttpGrant::parse(&format!("http://{silent_addr}"), None).unwrap());
    let blocked_guest = harness
        .runtime
        .clone()
        .with_policy(Arc::new(
            OperatorPolicy::default()
                .with_local_grants(&[format!("http://{silent_addr}")])
                .unwrap(),
        ))
        .load_bytes(HOSTILE, blocked_manifest)
        .unwrap();
    let registry_like = "http://127.0.0.1:9/agentservice/api/v1/agents/a/jobs".to_string();
    let config_file = harness.out.path().join("agent.toml");
    std::fs::write(&config_file, "agent_id = \"secret-agent\"\n").unwrap();
    let camera_port = camera.rsplit(':').next().unwrap().to_string();

    // Cameras that reflect requests, to which the operator bound the camera
    // secret (they are the operator's cameras, just badly behaved ones).
    let echo = corral_tests::echo::start().await;
    let echo_body = corral_tests::echo::start_body_only(3 << 20).await;
    let echo_twisted = corral_tests::echo::start_transforming().await;
    let mut reflecting_secrets = harness.secrets.as_ref().clone();
    for addr in [echo, echo_body, echo_twisted] {
        let origin = OriginPattern::parse(&format!("http://{addr}")).unwrap();
        reflecting_secrets.bind(corral::bundled::CAMERA_SIM_SECRET, &[origin]);
    }
    let reflecting_secrets = Arc::new(reflecting_secrets);
    let reflecting = Runtime::new(RuntimeConfig { max_instances: 4 })
        .unwrap()
        .with_secrets(reflecting_secrets.clone())
        .load_bytes(
            HOSTILE,
            manifest_with(
                &camera,
                &format!(
                    "[[http]]\norigin = \"http://{echo}\"\ncredentials = \"camera-sim\"\n\n\
                     [[http]]\norigin = \"http://{echo_body}\"\ncredentials = \"camera-sim\"\n\n\
                     [[http]]\norigin = \"http://{echo_twisted}\"\ncredentials = \"camera-sim\"\n"
                ),
            ),
        )
        .expect("the reflecting manifest loads");

    // Names pointed at this machine, metadata services and IPv6 forms of
    // loopback by the test resolver, each granted by name; and a wildcard.
    let lan: Option<IpAddr> = this_machine_addresses().into_iter().find(IpAddr::is_ipv4);
    let mut names: Vec<(&str, IpAddr, &str)> = vec![
        (
            "imds.test",
            "169.254.169.254".parse().unwrap(),
            "a cloud metadata service",
        ),
        (
            "alibaba.test",
            "100.100.100.200".parse().unwrap(),
            "a cloud metadata service",
        ),
        (
            "azure.test",
            "168.63.129.16".parse().unwrap(),
            "a cloud metadata service",
        ),
        (
            "aws6.test",
            "fd00:ec2::254".parse().unwrap(),
            "a cloud metadata service",
        ),
        (
            "mapped.test",
            "::ffff:127.0.0.1".parse().unwrap(),
            "an IPv6 form of a refused IPv4 address",
        ),
        (
            "compat.test",
            "::127.0.0.1".parse().unwrap(),
            "an IPv6 form of a refused IPv4 address",
        ),
        (
            "nat64.test",
            "64:ff9b::7f00:1".parse().unwrap(),
            "an IPv6 form of a refused IPv4 address",
        ),
        (
            "sixtofour.test",
            "2002:7f00:1::1".parse().unwrap(),
            "an IPv6 form of a refused IPv4 address",
        ),
        ("a.cams.test", "127.0.0.1".parse().unwrap(), "loopback"),
    ];
    if let Some(lan) = lan {
        names.push(("lan.test", lan, "this machine"));
    } else {
        eprintln!("this machine has no non-loopback IPv4 address: the LAN attack is skipped");
    }
    let mut resolver = StaticResolver::default();
    let mut grants = format!("[[http]]\norigin = \"http://*.cams.test:{camera_port}\"\n");
    for (name, ip, _) in &names {
        resolver = resolver.with(name, &[*ip]);
        if !name.ends_with(".cams.test") {
            grants.push_str(&format!(
                "[[http]]\norigin = \"http://{name}:{camera_port}\"\n"
            ));
        }
    }
    let resolver = resolver
        .with("cams.test", &["10.0.0.1".parse().unwrap()])
        .with("evilcams.test", &["10.0.0.1".parse().unwrap()]);
    let named = Runtime::new(RuntimeConfig { max_instances: 4 })
        .unwrap()
        .with_secrets(harness.secrets.clone())
        .with_resolver(Arc::new(resolver))
        .load_bytes(HOSTILE, manifest_with(&camera, &grants))
        .expect("the manifest of names loads");
    let secret_token = format!(
        "{}:{}",
        harness.sim.config().username,
        harness.sim.config().password
    );

    let mut attacks = vec![
        attack(
            "endless loop",
            "`loop {}` in guest code",
            vec![("attack", "endless-loop".into())],
            "CPU time limit of 1s exceeded",
            &hostile,
        ),
        attack(
            "memory bomb",
            "allocates 16 MiB at a time forever",
            vec![("attack", "memory-bomb".into())],
            "memory limit of 64 MiB exceeded",
            &hostile,
        ),
        attack(
            "deep recursion",
            "unbounded recursion",
            vec![("attack", "deep-recursion".into())],
            "call stack exhausted",
            &hostile,
        ),
        attack(
            "10 GiB output",
            "writes 10 GiB to an output file",
            vec![("attack", "huge-output".into())],
            "output limit of 16777216 bytes exceeded",
            &hostile,
        ),
        attack(
            "HTTP to a host not granted",
            "GET http://10.255.255.1/",
            vec![
                ("attack", "http".into()),
                ("target", "http://10.255.255.1/".into()),
            ],
            "http://10.255.255.1:80 is not granted by the manifest",
            &hostile,
        ),
        attack(
            "HTTP to the registry",
            "GET the registry's agent API",
            vec![("attack", "http".into()), ("target", registry_like)],
            "http://127.0.0.1:9 is not granted by the manifest",
            &hostile,
        ),
        attack(
            "a granted name resolving elsewhere",
            "GET http://localhost:PORT (granted by name; it resolves to loopback)",
            vec![
                ("attack", "http".into()),
                (
                    "target",
                    format!("http://localhost:{camera_port}/vms/v2/cameras"),
                ),
            ],
            "resolved to 127.0.0.1",
            &hostile,
        ),
        attack(
            "reading /etc/passwd",
            "std::fs::read(\"/etc/passwd\")",
            vec![
                ("attack", "read-file".into()),
                ("target", "/etc/passwd".into()),
            ],
            "reading /etc/passwd was refused",
            &hostile,
        ),
        attack(
            "reading the agent's config",
            "std::fs::read(<agent.toml>)",
            vec![
                ("attack", "read-file".into()),
                ("target", config_file.display().to_string()),
            ],
            "was refused",
            &hostile,
        ),
        attack(
            "writing into a read-only folder",
            "std::fs::write(\"/exports/x\") into the granted read-only folder",
            vec![
                ("attack", "write-file".into()),
                ("target", "/exports/x".into()),
            ],
            "writing /exports/x was refused",
            &hostile,
        ),
        attack(
            "raw TCP to an endpoint not granted",
            "TcpStream::connect to a local port not granted",
            vec![
                ("attack", "tcp".into()),
                ("target", tcp_refused.to_string()),
            ],
            "was refused",
            &hostile,
        ),
        attack(
            "reading the environment",
            "std::env::vars() and args()",
            vec![("attack", "environment".into())],
            "saw 0 environment variables [] and arguments []",
            &hostile,
        ),
        attack(
            "a flood of progress and log calls",
            "a million progress reports and log lines",
            vec![("attack", "flood".into())],
            "log limit of 1000 lines exceeded",
            &hostile,
        ),
        attack(
            "blocked forever in a host call",
            "GET to a granted peer that never answers",
            vec![
                ("attack", "blocked".into()),
                ("target", format!("http://{silent_addr}/")),
            ],
            format!("wall time limit of {WALL_SECS}s exceeded"),
            &blocked_guest,
        ),
        attack(
            "a trap",
            "panic!()",
            vec![("attack", "trap".into())],
            "the guest gives up on purpose",
            &hostile,
        ),
        attack(
            "a flood of long log lines",
            "a thousand log lines of 4000 bytes",
            vec![("attack", "log-bytes".into())],
            "log limit of 1048576 bytes exceeded (policy.log_bytes_per_job)",
            &hostile,
        ),
        attack(
            "exit(0) instead of a result",
            "std::process::exit(0)",
            vec![("attack", "exit".into())],
            "the guest called exit(0) instead of returning a result",
            &hostile,
        ),
        attack(
            "credentials reflected by TRACE",
            "TRACE to a camera granted with credentials, which reflects the request",
            vec![
                ("attack", "reflect".into()),
                ("method", "TRACE".into()),
                ("target", format!("http://{echo}/")),
            ],
            format!("TRACE to http://{echo} is not granted (the grant allows GET, HEAD)"),
            &reflecting,
        ),
        attack(
            "credentials reflected by an echo page",
            "GET to a camera page that echoes request headers (in a header and the body)",
            vec![
                ("attack", "reflect".into()),
                ("target", format!("http://{echo}/debug/echo")),
            ],
            "reflected the credentials the host added (secret `camera-sim`)",
            &reflecting,
        ),
        attack(
            "credentials reflected deep in a spliced body",
            "splices (host-side) a 3 MiB answer that ends with the reflected request",
            vec![
                ("attack", "reflect-splice".into()),
                ("target", format!("http://{echo_body}/")),
            ],
            "reflected the credentials the host added (secret `camera-sim`)",
            &reflecting,
        ),
        attack(
            "credentials reflected in Range slices shorter than the token",
            "GET a page echoing the request, 6 bytes at a time with `Range` (the host strips `Range` from a request with credentials)",
            vec![
                ("attack", "reflect-range".into()),
                ("target", format!("http://{echo_twisted}/")),
            ],
            "reflected the credentials the host added (secret `camera-sim`)",
            &reflecting,
        ),
        attack(
            "the password alone reflected",
            "GET a page that decodes `Authorization` and shows the password",
            vec![
                ("attack", "reflect".into()),
                ("target", format!("http://{echo_twisted}/password")),
            ],
            "reflected the credentials the host added (secret `camera-sim`)",
            &reflecting,
        ),
        attack(
            "the token reflected without its padding",
            "GET a page that shows the base64 token with its `=` cut",
            vec![
                ("attack", "reflect".into()),
                ("target", format!("http://{echo_twisted}/unpadded")),
            ],
            "reflected the credentials the host added (secret `camera-sim`)",
            &reflecting,
        ),
        attack(
            "credentials reflected in a compressed answer",
            "GET a page that answers `Content-Encoding: gzip` (the host asked for identity)",
            vec![
                ("attack", "reflect".into()),
                ("target", format!("http://{echo_twisted}/gzip")),
            ],
            "came with coding `gzip`, which the host cannot search for the credentials",
            &reflecting,
        ),
        attack(
            "a method the grant does not list",
            "POST to the granted camera",
            vec![
                ("attack", "method".into()),
                ("method", "POST".into()),
                ("target", format!("{camera}/vms/v2/cameras")),
            ],
            "POST to http://127.0.0.1:PORT is not granted (the grant allows GET, HEAD)"
                .replace("PORT", &camera_port),
            &hostile,
        ),
        attack(
            "a wildcard grant and the bare domain",
            "GET http://cams.test:PORT under a grant of http://*.cams.test:PORT",
            vec![
                ("attack", "http".into()),
                ("target", format!("http://cams.test:{camera_port}/")),
            ],
            format!("http://cams.test:{camera_port} is not granted"),
            &named,
        ),
        attack(
            "a wildcard grant and a look-alike domain",
            "GET http://evilcams.test:PORT under a grant of http://*.cams.test:PORT",
            vec![
                ("attack", "http".into()),
                ("target", format!("http://evilcams.test:{camera_port}/")),
            ],
            format!("http://evilcams.test:{camera_port} is not granted"),
            &named,
        ),
        attack(
            "a wildcard grant and a suffix trick",
            "GET http://a.cams.test.evil.test:PORT under a grant of http://*.cams.test:PORT",
            vec![
                ("attack", "http".into()),
                (
                    "target",
                    format!("http://a.cams.test.evil.test:{camera_port}/"),
                ),
            ],
            format!("http://a.cams.test.evil.test:{camera_port} is not granted"),
            &named,
        ),
        attack(
            "log and message forgery",
            "logs and fails with newlines, a fake host log line, ANSI escapes and 20 kB",
            vec![("attack", "forgery".into())],
            "nothing\\n2026-12-02T10:00:00.000000Z  INFO corral::agent::runner: job=2 completed \\u{1b}[0m",
            &hostile,
        ),
    ];
    for (name, ip, why) in &names {
        let label: &'static str = Box::leak(
            if name.ends_with(".cams.test") {
                format!("a wildcard grant matching {name}, resolving to {ip}")
            } else {
                format!("a granted name resolving to {ip} ({why})")
            }
            .into_boxed_str(),
        );
        attacks.push(attack(
            label,
            "GET a granted name the resolver points there",
            vec![
                ("attack", "http".into()),
                ("target", format!("http://{name}:{camera_port}/")),
            ],
            format!("which is {why}"),
            &named,
        ));
    }

    let mut rows = Vec::new();
    for (index, attack) in attacks.into_iter().enumerate() {
        let bad = attack.job(&format!("attack-{index}"));
        let good = job(
            &format!("good-{index}"),
            JobType::Thumbnail,
            Some("cam-0002"),
        );
        let started = Instant::now();
        let (bad_report, good_report) =
            tokio::join!(harness.run_with(&attack.guest, &bad), harness.run(&good));
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
        // The guest's stderr (a panic's message) reaches the job's log.
        if attack.name == "a trap" {
            assert!(
                bad_report
                    .log_tail
                    .iter()
                    .any(|line| line.starts_with("stderr: ") && line.contains("panicked at")),
                "{:?}",
                bad_report.log_tail
            );
        }
        // Nothing the guest wrote or logged holds the credentials, and no
        // guest text spans lines or carries escapes.
        assert!(message.len() <= 4096 && !message.contains('\n') && !message.contains('\x1b'));
        for line in &bad_report.log_tail {
            assert!(!line.contains('\n') && !line.contains('\x1b'), "{line:?}");
            assert!(
                !line.contains(&secret_token),
                "{}: the log holds the password",
                attack.name
            );
        }
        for file in harness.files() {
            let bytes = std::fs::read(harness.out.path().join(&file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&secret_token) && !text.contains("b3BlcmF0b3I6c2ltLXNlY3JldA"),
                "{}: output {file} holds the credentials",
                attack.name
            );
        }
        // The report names places, not this run's temporary paths and ports.
        let mut message = message
            .replace(&config_file.display().to_string(), "<agent.toml>")
            .replace(&camera_port, "PORT")
            .replace(&tcp_refused.port().to_string(), "PORT")
            .replace(&echo.port().to_string(), "PORT")
            .replace(&echo_body.port().to_string(), "PORT")
            .replace(&echo_twisted.port().to_string(), "PORT");
        if let Some(lan) = lan {
            message = message.replace(&lan.to_string(), "<this machine's LAN address>");
        }
        let message: String = first_line(&message);
        rows.push((
            attack.name.to_string(),
            attack.what.to_string(),
            message,
            elapsed,
        ));
    }

    // Files that are not a guest of our world.
    let runtime = &harness.runtime;
    let foreign = Manifest::parse(
        "name = \"x\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n[[http]]\norigin = \"https://collector.attacker.example\"\ncredentials = \"camera-sim\"\n",
        Path::new("x.toml"),
    )
    .unwrap();
    let trace_with_credentials = Manifest::parse(
        "name = \"x\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n[[http]]\norigin = \"http://10.0.0.5\"\ncredentials = \"camera-sim\"\nmethods = [\"GET\", \"TRACE\"]\n",
        Path::new("x.toml"),
    )
    .map(drop)
    .unwrap_err();
    assert!(
        trace_with_credentials
            .to_string()
            .contains("a grant with credentials cannot allow TRACE"),
        "{trace_with_credentials}"
    );
    rows.push((
        "a grant with credentials that allows TRACE".to_string(),
        "loaded as a guest".to_string(),
        first_line(&trace_with_credentials.to_string()),
        Duration::ZERO,
    ));
    let policy_refusals = [
        (
            "a folder grant of /",
            "[[folders]]\nhost = \"/\"\nguest = \"/host\"\n",
            "it is never granted",
        ),
        (
            "a folder grant the policy does not list",
            "[[folders]]\nhost = \"/usr\"\nguest = \"/usr\"\n",
            "is not allowed by the operator's policy.folders",
        ),
        (
            "a folder grant holding the agent's own files",
            "[[folders]]\nhost = \"CONFIG_DIR\"\nguest = \"/agent\"\n",
            "holds the agent's own",
        ),
        (
            "a guest that would hold its job for 115 days",
            "[limits]\nwall_secs = 9999999\n",
            "is over the operator's policy.max_wall_secs = 3600",
        ),
        (
            "a guest asking for 4 GiB of memory",
            "[limits]\nmemory_mib = 4096\n",
            "is over the operator's policy.max_memory_mib = 1024",
        ),
        (
            "a guest asking for 4294967295 log lines",
            "[limits]\nlog_lines = 4294967295\n",
            "is over the operator's policy.max_log_lines = 10000",
        ),
    ];
    let agent_dir = harness.out.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let guarded = Runtime::new(RuntimeConfig { max_instances: 2 })
        .unwrap()
        .with_policy(Arc::new(
            OperatorPolicy::default()
                .allowing_folders([agent_dir.clone()])
                .protecting([agent_dir.join("agent.toml")]),
        ));
    for (name, extra, expected) in policy_refusals {
        let text = format!(
            "name = \"x\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n{}",
            extra.replace("CONFIG_DIR", &agent_dir.display().to_string())
        );
        let manifest = Manifest::parse(&text, Path::new("x.toml")).unwrap();
        let error = guarded
            .load_bytes(HOSTILE, manifest)
            .map(drop)
            .expect_err(name)
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
        rows.push((
            name.to_string(),
            "loaded as a guest".to_string(),
            first_line(&error.replace(&agent_dir.display().to_string(), "<agent folder>")),
            Duration::ZERO,
        ));
    }
    // The operator's agent.toml: camera-sim's secret for http-vms alone, with
    // GET and HEAD. Manifests ask for more, or grant themselves this machine
    // or a metadata service by IP.
    let operator_dir = harness.out.path().join("operator");
    std::fs::create_dir_all(&operator_dir).unwrap();
    let operator_toml = operator_dir.join("agent.toml");
    std::fs::write(
        &operator_toml,
        format!(
            "connection_file = \"agent-1.json\"\nguests_dir = \"guests\"\n\
             [secrets.camera-sim]\norigins = [\"{camera}\"]\nguests = [\"http-vms\"]\n"
        ),
    )
    .unwrap();
    let operator = corral::agent::config::AgentConfig::load(&operator_toml).unwrap();
    let mut operator_secrets = corral::secrets::Secrets::default();
    operator_secrets
        .insert(corral::bundled::CAMERA_SIM_SECRET, &secret_token)
        .unwrap();
    operator.bind_secrets(&mut operator_secrets);
    let operated = Runtime::new(RuntimeConfig { max_instances: 2 })
        .unwrap()
        .with_secrets(Arc::new(operator_secrets))
        .with_policy(Arc::new(operator.policy.clone()));
    let asks = |name: &str, grants: &str| {
        Manifest::parse(
            &format!("name = \"{name}\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n{grants}"),
            Path::new("x.toml"),
        )
        .unwrap()
    };
    // What the operator meant loads: http-vms reading its camera.
    let meant = format!("[[http]]\norigin = \"{camera}\"\ncredentials = \"camera-sim\"\n");
    operated
        .load_bytes(HOSTILE, asks("http-vms", &meant))
        .expect("http-vms reading its camera loads");
    let operator_refusals = [
        (
            "a manifest granting itself a cloud metadata service by IP",
            asks("x", "[[http]]\norigin = \"http://169.254.169.254\"\n"),
            "http grant http://169.254.169.254:80 is a cloud metadata service: a manifest cannot grant itself that; to allow it, add \"http://169.254.169.254:80\" to [policy] local_grants in agent.toml",
        ),
        (
            "a manifest granting itself the agent's status port by IP",
            asks("x", "[[http]]\norigin = \"http://127.0.0.1:9187\"\n"),
            "http grant http://127.0.0.1:9187 is loopback (this machine)",
        ),
        (
            "a manifest granting itself loopback in an IPv6 form",
            asks(
                "x",
                "[[http]]\norigin = \"http://[::ffff:127.0.0.1]:9187\"\n",
            ),
            "is an IPv6 form of a refused IPv4 address",
        ),
        (
            "a manifest granting itself a Redis on loopback by raw TCP",
            asks("x", "[[tcp]]\naddress = \"127.0.0.1:6379\"\n"),
            "tcp grant 127.0.0.1:6379 is loopback (this machine): a manifest cannot grant itself that; to allow it, add \"127.0.0.1:6379\" to [policy] local_grants in agent.toml",
        ),
        (
            "a manifest asking for the camera secret with writes",
            asks(
                "http-vms",
                &format!("{meant}methods = [\"GET\", \"POST\", \"PUT\", \"DELETE\"]\n"),
            ),
            "asks for secret `camera-sim` with POST, PUT, DELETE, which the operator has not allowed for it (in agent.toml: [secrets.camera-sim] methods = [",
        ),
        (
            "a guest the operator did not name asking for the camera secret",
            asks("x", &meant),
            "guest `x` asks for secret `camera-sim`",
        ),
    ];
    for (name, manifest, expected) in operator_refusals {
        let error = operated
            .load_bytes(HOSTILE, manifest)
            .map(drop)
            .expect_err(name)
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
        rows.push((
            name.to_string(),
            "loaded as a guest".to_string(),
            first_line(&error.replace(&camera_port, "PORT")),
            Duration::ZERO,
        ));
    }
    // A file the operator did not name, whose manifest claims the name of
    // the guest the secret is for: the operator knows guests by file.
    let impostor = operator_dir.join("impostor.wasm");
    std::fs::write(&impostor, HOSTILE).unwrap();
    std::fs::write(
        operator_dir.join("impostor.toml"),
        format!("name = \"http-vms\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n{meant}"),
    )
    .unwrap();
    let claimed = operated
        .load(&impostor)
        .map(drop)
        .expect_err("a file claiming http-vms's name")
        .to_string();
    assert!(
        claimed.contains("guest `impostor` asks for secret `camera-sim`"),
        "{claimed}"
    );
    rows.push((
        "impostor.wasm whose manifest claims the name `http-vms`, asking for its secret"
            .to_string(),
        "loaded as a guest".to_string(),
        first_line(&claimed.replace(&camera_port, "PORT")),
        Duration::ZERO,
    ));
    let own_ca = Manifest::parse(
        "name = \"x\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n[[http]]\norigin = \"https://10.0.0.5\"\ncredentials = \"camera-sim\"\ntls_ca = \"attacker-ca.pem\"\n",
        Path::new("x.toml"),
    )
    .map(drop)
    .unwrap_err()
    .to_string();
    assert!(
        own_ca.contains("cannot name its own tls_ca")
            && own_ca.contains("[secrets.camera-sim] tls_ca"),
        "{own_ca}"
    );
    rows.push((
        "a grant with credentials bringing its own CA".to_string(),
        "loaded as a guest".to_string(),
        first_line(&own_ca),
        Duration::ZERO,
    ));
    let refusals = [
        (
            "a manifest asking for the camera secret on its author's origin",
            runtime.load_bytes(HOSTILE, foreign).map(drop),
        ),
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
            "a manifest asking for the camera secret on its author's origin" => {
                "asks for secret `camera-sim`, which the operator has not bound to that origin"
            }
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
        .take(300)
        .collect()
}

/// The two tests that write `docs/security.md` take turns.
static REPORT: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Where the accounting suite's section of `docs/security.md` begins.
const ACCOUNTING_SECTION: &str = "\n## The accounting suite\n";

fn report_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md")
}

/// The suite's rows as a Markdown table.
fn table(rows: &[(String, String, String, Duration)]) -> String {
    let mut doc = String::from(
        "| attack | what the guest does | how it ended (the job's message) | time |\n|---|---|---|---|\n",
    );
    for (name, what, message, elapsed) in rows {
        let message = message.replace('|', "\\\\|");
        let time = if elapsed.is_zero() {
            "refused at load".to_string()
        } else {
            format!("{:.2} s", elapsed.as_secs_f64())
        };
        let _ = writeln!(doc, "| {name} | {what} | {message} | {time} |");
    }
    doc
}

/// Writes `docs/security.md`: the grant model, then the suite's results
/// (keeping the accounting suite's section, which its own test writes).
fn write_report(rows: &[(String, String, String, Duration)]) {
    let _turn = REPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = report_path();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut doc = String::from(include_str!("security_header.md"));
    doc.push_str(&table(rows));
    if let Some(at) = old.find(ACCOUNTING_SECTION) {
        doc.push_str(&old[at..]);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, doc).unwrap();
}

/// Writes the accounting suite's section at the end of `docs/security.md`.
fn write_accounting_report(rows: &[(String, String, String, Duration)], figures: &str) {
    let _turn = REPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = report_path();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut doc = match old.find(ACCOUNTING_SECTION) {
        Some(at) => old[..at].to_string(),
        None => old,
    };
    doc.push_str(ACCOUNTING_SECTION);
    doc.push_str(
        "\nEach attack below ran at the same time as all the others, in one process, each beside well-behaved jobs of its own (http-vms taking a thumbnail) run one after another for as long as the attack ran, while well-behaved jobs ran one after another in another process (`corral run-job`) until every attack had ended; every good job completed. Limits as above (64 MiB memory, 1 s CPU, 3 s wall; 16 MiB for the header maps and 0.2 s CPU for the random bytes, so that on a loaded machine the limit under test, not the wall, stops them), the caps at their defaults.\n\n",
    );
    doc.push_str(&table(rows));
    doc.push_str(figures);
    std::fs::write(path, doc).unwrap();
}

/// Two guests under one agent: http-vms discovered camera-sim's cameras; a
/// hostile guest hot-loaded beside it (its manifest with a wildcard grant, so
/// the agent's own loader parses one) reports the same device ids. Its claims
/// are refused and shown, the merged discovery file lists each camera once,
/// and the next thumbnail for a camera still goes to http-vms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_take_another_guests_cameras() {
    use corral_registry::RegistryConfig;
    use corral_tests::world::World;

    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(2)).await;
    let agent = world.agent(world.config());
    let first = world.post(vec![world.job("discovery", None)]).await;
    let done = world.wait_final(&first, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed");

    // The hostile guest arrives, sorted before http-vms, claiming its cameras.
    std::fs::write(
        world.guests_dir.join("aaa-hostile.toml"),
        "name = \"hostile\"\nversion = \"6.6.6\"\njobs = [\"discovery\", \"thumbnail\"]\n\
         [settings]\nclaim = \"cam-0001,cam-0002,cam-hostile\"\n\
         [[http]]\norigin = \"https://*.cams.example.com\"\n",
    )
    .unwrap();
    std::fs::write(world.guests_dir.join("aaa-hostile.wasm"), HOSTILE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.catalog.guests().len() < 2 {
        assert!(Instant::now() < deadline, "{}", agent.catalog.describe());
        agent.reload.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let second = world.post(vec![world.job("discovery", None)]).await;
    let done = world.wait_final(&second, Duration::from_secs(30)).await;
    assert_eq!(done[0].state, "Completed", "{:?}", done[0].message);
    let listed: serde_json::Value =
        serde_json::from_slice(&world.registry.job_plaintext(&done[0]).await).unwrap();
    let devices = listed["devices"].as_array().unwrap();
    let mut ids: Vec<&str> = devices
        .iter()
        .map(|device| device["deviceId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["cam-0001", "cam-0002", "cam-hostile"], "{listed}");
    for device in devices {
        let hijacked = device["name"]
            .as_str()
            .unwrap_or_default()
            .contains("hijacked");
        assert_eq!(hijacked, device["deviceId"] == "cam-hostile", "{listed}");
    }
    let conflicts = agent.catalog.device_conflicts();
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert!(
        conflicts
            .iter()
            .all(|conflict| conflict.claimant == "hostile"
                && conflict.owner.as_deref() == Some("http-vms"))
    );
    assert!(agent.catalog.describe()["deviceConflicts"][0]["owner"] == "http-vms");

    // The thumbnail, asking for a forgery should the hostile guest get it.
    world.thumbnail_by_http_vms("cam-0001").await;
    agent.stop().await;
}

/// Whoever may write the guests folder or the cache cannot slip code in under
/// a loaded guest's name: a second file reusing the name is refused (both file
/// names in the reason), a guest file that is a link is refused, a compiled
/// artifact planted under another guest's SHA-256 does not verify, and a cache
/// folder others may write is refused.
#[test]
fn impostors_links_and_planted_code_are_refused() {
    use corral::agent::catalog::{Catalog, Change};
    use corral::cache::{ArtifactCache, CacheUse};

    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("guests");
    std::fs::create_dir(&guests).unwrap();
    let secrets = corral::bundled::camera_sim_secrets("http://127.0.0.1:8081", "u", "p");
    let runtime = Runtime::new(RuntimeConfig { max_instances: 4 })
        .unwrap()
        .with_secrets(Arc::new(secrets));
    std::fs::write(guests.join("http-vms.wasm"), corral::bundled::HTTP_VMS).unwrap();
    std::fs::write(
        guests.join("http-vms.toml"),
        corral::bundled::HTTP_VMS_MANIFEST,
    )
    .unwrap();
    let catalog = Catalog::load(&runtime, &guests).unwrap();

    // An impostor: another file, the same name, a newer version.
    std::fs::write(
        guests.join("aaa-update.toml"),
        "name = \"http-vms\"\nversion = \"0.1.1\"\njobs = [\"thumbnail\"]\n",
    )
    .unwrap();
    std::fs::write(guests.join("aaa-update.wasm"), HOSTILE).unwrap();
    // A link into a folder someone else controls.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("linked.wasm"), HOSTILE).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("linked.wasm"), guests.join("linked.wasm")).unwrap();
    std::fs::write(
        guests.join("linked.toml"),
        "name = \"linked\"\nversion = \"1\"\njobs = [\"thumbnail\"]\n",
    )
    .unwrap();
    let mut changes = catalog.rescan();
    changes.extend(catalog.rescan());
    let refused = |stem: &str| {
        changes.iter().find_map(|change| match change {
            Change::Refused(which, why) if which == stem => Some(why.clone()),
            _ => None,
        })
    };
    let impostor = refused("aaa-update").expect("the impostor is refused");
    assert!(
        impostor.contains("http-vms.wasm") && impostor.contains("aaa-update.wasm"),
        "{impostor}"
    );
    let link = refused("linked").expect("the link is refused");
    assert!(link.contains("is a symbolic link"), "{link}");
    assert_eq!(catalog.guests().len(), 1);
    let listed = catalog.describe();
    assert_eq!(listed["guests"][0]["file"], "http-vms.wasm", "{listed}");
    assert!(listed["refused"]["aaa-update"].is_string(), "{listed}");

    // A planted artifact: the hostile module compiled by someone else's
    // cache, copied in under http-vms's SHA-256 with its sidecar.
    let cache_dir = dir.path().join("cache");
    let cache = ArtifactCache::new(&cache_dir, runtime.engine()).unwrap();
    let http_vms_sha = catalog.guests()[0].sha256().to_string();
    let theirs = dir.path().join("theirs");
    let other = ArtifactCache::new(&theirs, runtime.engine()).unwrap();
    other
        .load_or_compile(runtime.engine(), HOSTILE, &http_vms_sha)
        .unwrap();
    for entry in std::fs::read_dir(&theirs).unwrap().flatten() {
        std::fs::copy(entry.path(), cache_dir.join(entry.file_name())).unwrap();
    }
    let (_, used) = cache
        .load_or_compile(runtime.engine(), corral::bundled::HTTP_VMS, &http_vms_sha)
        .unwrap();
    assert_eq!(used, CacheUse::Miss, "the planted artifact was trusted");
    let (_, used) = cache
        .load_or_compile(runtime.engine(), corral::bundled::HTTP_VMS, &http_vms_sha)
        .unwrap();
    assert_eq!(used, CacheUse::Hit, "the agent's own artifact is used");

    // A cache under a folder everyone may write is refused.
    use std::os::unix::fs::PermissionsExt;
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = ArtifactCache::new(&open.join("cache"), runtime.engine()).unwrap_err();
    assert!(
        error.to_string().contains("writable by other users"),
        "{error}"
    );
    assert!(
        !runtime
            .clone()
            .with_cache(&open.join("cache"))
            .unwrap()
            .caches()
    );
}

/// What this process holds: resident memory (bytes), open file descriptors
/// and threads, read from `/proc/self`.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    rss: u64,
    fds: u64,
    threads: u64,
}

impl Held {
    fn now() -> Held {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Held {
            rss: field("VmRSS:") << 10,
            fds: std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64),
            threads: field("Threads:"),
        }
    }

    fn max(self, other: Held) -> Held {
        Held {
            rss: self.rss.max(other.rss),
            fds: self.fds.max(other.fds),
            threads: self.threads.max(other.threads),
        }
    }
}

/// Samples [`Held`] every 10 ms until dropped; the peak is read at the end.
struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Held>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Held::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(Held::now());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> Held {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// What the agent process may hold above its baseline besides the jobs' own
/// limits: the runtime's worker and blocking threads, its engine's mappings,
/// the harness's servers (documented in docs/security.md).
const SLACK_RSS: u64 = 128 << 20;
const SLACK_FDS: u64 = 64;
const SLACK_THREADS: u64 = 16;

/// The attacks of issue #12, one per way the host was made to spend what was
/// not the job's, and one per cap: all at once in this process (the agent),
/// each beside a good job of its own, while another process runs a good job
/// too. Every attack fails naming the resource; the good jobs complete; this
/// process's memory, descriptors and threads stay under the jobs' limits
/// plus a constant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_attacks_fail_their_own_job_and_disturb_nothing() {
    use corral::manifest::Caps;

    let _turn = HEAVY.lock().await;
    // A camera for each good job, so that their files never share a name.
    let harness = Harness::start(SimConfig::with_devices(32)).await;
    let camera = harness.sim.base_url();
    let exports = tempfile::tempdir().unwrap();
    let fifo = exports.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|status| status.success()), "mkfifo");
    let tcp_granted = silent_peer().await;
    let silent_addr = silent_peer().await;
    let extra = format!(
        "[[tcp]]\naddress = \"{tcp_granted}\"\n\n[[folders]]\nhost = \"{}\"\nguest = \"/exports\"\n\n\
         [[http]]\norigin = \"http://{silent_addr}\"\n\n[[http]]\norigin = \"http://dns-silent.test\"\n",
        exports.path().display()
    );
    let resolver = StaticResolver::default().silent("dns-silent.test");
    let runtime = Runtime::new(RuntimeConfig { max_instances: 24 })
        .unwrap()
        .with_secrets(harness.secrets.clone())
        .with_resolver(Arc::new(resolver))
        .with_policy(Arc::new(
            OperatorPolicy::default()
                .allowing_folders([exports.path().to_path_buf()])
                .with_local_grants(&[tcp_granted.to_string(), format!("http://{silent_addr}")])
                .unwrap(),
        ));
    let hostile = runtime
        .load_bytes(HOSTILE, manifest_with(&camera, &extra))
        .expect("the accounting manifest loads");
    // Header maps cost the host about 4 ms of CPU per 100 kB map in a debug
    // build: under a 16 MiB limit the memory limit, not the CPU's, stops it.
    let mut small = manifest_with(&camera, &extra);
    small.limits.memory_bytes = 16 << 20;
    let small_memory = runtime
        .load_bytes(HOSTILE, small)
        .expect("the 16 MiB manifest loads");
    // Host CPU, not guest CPU, is what the random attack spends: a limit of
    // 200 ms shows it is counted even when a loaded machine gives the job
    // little of a core within its wall time.
    let mut short = manifest_with(&camera, &extra);
    short.limits.cpu = Duration::from_millis(200);
    let short_cpu = runtime
        .load_bytes(HOSTILE, short)
        .expect("the 200 ms manifest loads");
    // Three more core instances of 60 MiB each: every memory is under the
    // 64 MiB limit, all of them together are not.
    let many_memories = runtime
        .load_bytes(
            &corral_tests::test_guests::with_extra_memories(3, 60),
            manifest_with(&camera, &extra),
        )
        .expect("the guest with more core instances loads");
    // As many open outputs as a manifest may ask for: the memory limit, not
    // the cap, must then stop a guest holding them full.
    let mut wide = manifest_with(&camera, &extra);
    wide.caps.open_outputs = 1024;
    wide.limits.output_bytes = 4 << 30;
    wide.limits.memory_bytes = 32 << 20;
    let many_outputs = runtime
        .load_bytes(HOSTILE, wide)
        .expect("the 1,024-outputs manifest loads");
    let caps = Caps::default();
    let cap = |resource: &str, limit: u32, key: &str| {
        format!("{resource} limit of {limit} exceeded (limits.{key})")
    };
    let attacks = vec![
        attack(
            "binding a port under a [[tcp]] grant",
            "TcpListener::bind(\"0.0.0.0:0\") (the grant allows connecting to one endpoint)",
            vec![("attack", "bind".into()), ("target", "0.0.0.0:0".into())],
            "binding 0.0.0.0:0 was refused",
            &hostile,
        ),
        attack(
            "15,000 sockets held open",
            "connects to the granted endpoint again and again, holding every socket",
            vec![
                ("attack", "sockets".into()),
                ("target", tcp_granted.to_string()),
            ],
            cap("open sockets", caps.open_sockets, "open_sockets"),
            &hostile,
        ),
        attack(
            "8,000 requests at once to a peer that never answers",
            "wasi:http handle() 8,000 times, every future held",
            vec![
                ("attack", "requests".into()),
                ("target", silent_addr.to_string()),
            ],
            cap(
                "outgoing requests in flight",
                caps.requests_in_flight,
                "requests_in_flight",
            ),
            &hostile,
        ),
        attack(
            "2,000 requests to a name whose DNS server never answers",
            "wasi:http handle() 2,000 times to a granted name the resolver never answers",
            vec![
                ("attack", "requests".into()),
                ("target", "dns-silent.test".into()),
                ("count", "2000".into()),
            ],
            cap(
                "name lookups in flight",
                caps.name_lookups_in_flight,
                "name_lookups_in_flight",
            ),
            &hostile,
        ),
        attack(
            "16,000 header maps of 100 kB",
            "creates header maps (wasi:http fields) of one 100 kB value and keeps them (memory_mib = 16)",
            vec![("attack", "headers".into())],
            "memory limit of 16 MiB exceeded (limits.memory_mib)",
            &small_memory,
        ),
        attack(
            "a million empty header maps",
            "creates empty header maps and keeps them",
            vec![("attack", "handles".into())],
            cap("resource-table entries (handles)", caps.handles, "handles"),
            &hostile,
        ),
        attack(
            "1,024 output files left open",
            "opens outputs and writes 1 MiB to each, finishing none",
            vec![("attack", "outputs".into())],
            cap("open outputs", caps.open_outputs, "open_outputs"),
            &hostile,
        ),
        attack(
            "random bytes in a loop",
            "get-random-bytes(1 MiB) forever, with cpu_secs = 0.2 (host time, not guest time)",
            vec![
                ("attack", "random".into()),
                ("count", (1 << 20).to_string()),
            ],
            "CPU time limit of 200ms exceeded",
            &short_cpu,
        ),
        attack(
            "get-random-bytes(u64::MAX)",
            "one call asking for 2^64 - 1 bytes",
            vec![("attack", "random-huge".into())],
            "get-random-bytes asked for 18446744073709551615 bytes, over the 1048576 bytes a call the host allows",
            &hostile,
        ),
        attack(
            "four core instances, each with a memory under the limit",
            "a component whose three extra core instances each ask for a 60 MiB memory (its job would read the environment)",
            vec![("attack", "environment".into())],
            "memory limit of 64 MiB exceeded (limits.memory_mib)",
            &many_memories,
        ),
        attack(
            "4,096 request bodies written and never sent",
            "writes each request body as full as the host lets it (wasi:http outgoing-body) and holds them all unsent",
            vec![("attack", "bodies".into())],
            "memory limit of 64 MiB exceeded (limits.memory_mib)",
            &hostile,
        ),
        attack(
            "1,024 open outputs of 1 MiB each, under a cap of 1,024",
            "open_outputs = 1024 and memory_mib = 32 in the manifest; writes 1 MiB to each output, finishing none",
            vec![("attack", "outputs-big".into())],
            "memory limit of 32 MiB exceeded (limits.memory_mib)",
            &many_outputs,
        ),
        attack(
            "an over-large request header map",
            "one header value of 1 MiB in a wasi:http fields map",
            vec![("attack", "header-huge".into())],
            "bytes in one header map limit of 131072 exceeded (fixed by the host)",
            &hostile,
        ),
        attack(
            "a thousand folder listings held open",
            "std::fs::read_dir(\"/exports\") again and again, holding each",
            vec![("attack", "listings".into()), ("target", "/exports".into())],
            "folder listings open limit of 4 exceeded (fixed by the host)",
            &hostile,
        ),
        attack(
            "exit(0) instead of a result",
            "std::process::exit(0)",
            vec![("attack", "exit".into())],
            "the guest called exit(0) instead of returning a result",
            &hostile,
        ),
        attack(
            "reading a named pipe in a granted folder",
            "std::fs::read(\"/exports/pipe\") (a FIFO no one writes)",
            vec![
                ("attack", "read-file".into()),
                ("target", "/exports/pipe".into()),
            ],
            "reading /exports/pipe was refused",
            &hostile,
        ),
    ];

    // `ACCOUNTING_ONLY=<part of a name>` runs only the attacks it names.
    let only = std::env::var("ACCOUNTING_ONLY").unwrap_or_default();
    let attacks: Vec<Attack> = attacks
        .into_iter()
        .filter(|attack| attack.name.contains(only.as_str()))
        .collect();
    // A good job in another process, for the whole time the attacks run.
    let other = harness.out.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let guest_wasm = other.join("http-vms.wasm");
    std::fs::write(&guest_wasm, corral::bundled::HTTP_VMS).unwrap();
    std::fs::write(
        other.join("http-vms.toml"),
        corral::bundled::HTTP_VMS_MANIFEST.replace("http://127.0.0.1:8081", &camera),
    )
    .unwrap();
    std::fs::write(
        other.join("job.json"),
        r#"{"jobId":"other-process","type":"thumbnail","deviceId":"cam-0002","parameters":{}}"#,
    )
    .unwrap();
    let secret = format!(
        "camera-sim={}:{}",
        harness.sim.config().username,
        harness.sim.config().password
    );
    let binary = corral_tests::processes::corral_binary();
    let baseline = Held::now();
    let sampler = Sampler::start();
    let mut command = std::process::Command::new(binary);
    command
        .args(["run-job", "--guest"])
        .arg(&guest_wasm)
        .arg("--job")
        .arg(other.join("job.json"))
        .arg("--out")
        .arg(other.join("out"))
        .args(["--secret", &secret]);
    // Good jobs in another process, one after another until the attacks end.
    let attacks_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let over = attacks_over.clone();
    let other_process = tokio::task::spawn_blocking(move || {
        let mut runs = Vec::new();
        loop {
            runs.push(command.output());
            if over.load(std::sync::atomic::Ordering::SeqCst) {
                break runs;
            }
        }
    });
    let runs = attacks.iter().enumerate().map(|(index, attack)| {
        let bad = attack.job(&format!("accounting-{index}"));
        let device = format!("cam-{:04}", index + 3);
        let good = job(
            &format!("beside-{index}"),
            JobType::Thumbnail,
            Some(&device),
        );
        let harness = &harness;
        async move {
            // Good jobs one after another for as long as the attack runs.
            let started = Instant::now();
            let attack_over = std::sync::atomic::AtomicBool::new(false);
            let attack_run = async {
                let report = harness.run_with(&attack.guest, &bad).await;
                attack_over.store(true, std::sync::atomic::Ordering::SeqCst);
                report
            };
            let good_runs = async {
                let mut reports = Vec::new();
                loop {
                    reports.push(harness.run(&good).await);
                    if attack_over.load(std::sync::atomic::Ordering::SeqCst) {
                        break reports;
                    }
                }
            };
            let (bad, goods) = tokio::join!(attack_run, good_runs);
            (bad, goods, started.elapsed())
        }
    });
    let reports = futures::future::join_all(runs).await;
    attacks_over.store(true, std::sync::atomic::Ordering::SeqCst);
    let other_runs = other_process.await.unwrap();
    let peak = sampler.peak();
    for other_ran in &other_runs {
        let other_ran = other_ran.as_ref().expect("run-job runs");
        assert!(
            other_ran.status.success(),
            "a good job in another process: {}",
            String::from_utf8_lossy(&other_ran.stdout)
        );
    }
    eprintln!(
        "{} good jobs ran in another process while the attacks ran",
        other_runs.len()
    );
    for (attack, (bad, goods, elapsed)) in attacks.iter().zip(&reports) {
        for good in goods {
            assert_eq!(
                good.outcome,
                JobOutcome::Completed,
                "a good job beside {}",
                attack.name
            );
        }
        let JobOutcome::Failed(message) = &bad.outcome else {
            panic!("{}: expected a failure, got {:?}", attack.name, bad.outcome);
        };
        assert!(
            message.contains(&attack.expect),
            "{}: {message:?} should contain {:?}",
            attack.name,
            attack.expect
        );
        assert!(
            *elapsed < Duration::from_secs(WALL_SECS + 2),
            "{} took {elapsed:?}",
            attack.name
        );
        eprintln!(
            "{}: {message} ({elapsed:.2?}, {} good jobs beside it)",
            attack.name,
            goods.len()
        );
    }
    // Each attack's job may hold its memory limit, its sockets, requests and
    // outputs, and its lookups' threads; the agent holds no more than that
    // plus the constants above.
    let jobs = attacks.len() as u64 * 2;
    let memory_limit = 64u64 << 20;
    let fds_per_job = u64::from(caps.open_sockets + caps.requests_in_flight + caps.open_outputs);
    let grown_rss = peak.rss.saturating_sub(baseline.rss);
    let grown_fds = peak.fds.saturating_sub(baseline.fds);
    let grown_threads = peak.threads.saturating_sub(baseline.threads);
    eprintln!(
        "peak above baseline: {} MiB, {grown_fds} fds, {grown_threads} threads",
        grown_rss >> 20
    );
    assert!(
        grown_rss <= jobs * memory_limit + SLACK_RSS,
        "RSS grew {grown_rss}"
    );
    assert!(
        grown_fds <= jobs * fds_per_job + SLACK_FDS,
        "fds grew {grown_fds}"
    );
    assert!(
        grown_threads <= jobs * u64::from(caps.name_lookups_in_flight) + SLACK_THREADS,
        "threads grew {grown_threads}"
    );
    // The suite's table in docs/security.md.
    let rows: Vec<(String, String, String, Duration)> = attacks
        .iter()
        .zip(&reports)
        .map(|(attack, (bad, _, elapsed))| {
            let JobOutcome::Failed(message) = &bad.outcome else {
                unreachable!()
            };
            let message = message
                .replace(&tcp_granted.port().to_string(), "PORT")
                .replace(&silent_addr.port().to_string(), "PORT");
            (
                attack.name.to_string(),
                attack.what.to_string(),
                first_line(&message),
                *elapsed,
            )
        })
        .collect();
    let figures = format!(
        "\nPeak of this process above its baseline while the {} accounting attacks and their good jobs ran at once: \
         {} MiB resident, {grown_fds} file descriptors, {grown_threads} threads (bounds: the jobs' limits plus \
         {} MiB, {SLACK_FDS} descriptors, {SLACK_THREADS} threads).\n",
        attacks.len(),
        grown_rss >> 20,
        SLACK_RSS >> 20
    );
    write_accounting_report(&rows, &figures);
}

/// `corral run-job` ends a job stuck in a host call at its wall limit and then
/// exits: nothing it started keeps the process alive past the job's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_exits_when_the_wall_limit_ends_a_stuck_job() {
    let silent = silent_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("hostile.wasm");
    std::fs::write(&guest, HOSTILE).unwrap();
    std::fs::write(
        dir.path().join("hostile.toml"),
        format!(
            "name = \"hostile\"\nversion = \"0.1.0\"\njobs = [\"thumbnail\"]\n\n\
             [[http]]\norigin = \"http://{silent}\"\n\n[limits]\nwall_secs = 1\n"
        ),
    )
    .unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        format!(
            r#"{{"jobId":"stuck","type":"thumbnail","deviceId":"cam-0001","parameters":{{"attack":"blocked","target":"http://{silent}/"}}}}"#
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(corral_tests::processes::corral_binary());
    command
        .args(["run-job", "--guest"])
        .arg(&guest)
        .arg("--job")
        .arg(&job)
        .arg("--out")
        .arg(dir.path().join("out"));
    // When the job's outcome is printed, and when the process has exited.
    let timed = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run-job starts");
        let started = Instant::now();
        let mut printed = String::new();
        let mut ended = None;
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line.starts_with("outcome") {
                ended = Some(Instant::now());
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        let status = child.wait().unwrap();
        let exited = Instant::now();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut printed).unwrap();
        let ended = ended.unwrap_or_else(|| panic!("no outcome printed: {printed}"));
        (status, printed, ended - started, exited - ended)
    });
    let (status, printed, until_end, until_exit) = timed.await.unwrap();
    assert!(!status.success(), "the stuck job fails: {printed}");
    assert!(
        printed.contains("wall time limit of 1s exceeded (limits.wall_secs)"),
        "{printed}"
    );
    // The job's own time, from its start to its report: the wall limit,
    // then everything released within a second.
    let job_elapsed = printed
        .lines()
        .find_map(|line| {
            line.strip_prefix("guest ")?
                .rsplit_once("elapsed ")?
                .1
                .strip_suffix('s')
        })
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no elapsed time in seconds printed: {printed}"));
    assert!(
        (1.0..2.0).contains(&job_elapsed),
        "the job took {job_elapsed} s"
    );
    assert!(
        until_exit < Duration::from_secs(1),
        "run-job exited {until_exit:?} after the job ended"
    );
    eprintln!(
        "run-job: the job ended after {until_end:.2?}, the process exited {until_exit:.2?} later"
    );
}
