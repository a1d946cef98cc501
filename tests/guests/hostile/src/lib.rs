//! A hostile integration: each job runs the attack its `attack` parameter
//! names. The suite in `tests/tests/e2e/hostile.rs` runs every attack beside a
//! well-behaved job and checks that the attack ends Failed with a message naming
//! the limit or the denial, and that nothing else is disturbed.

use std::io::Write;

use corral_guest::http;
use corral_guest::output::Output;
use corral_guest::{Device, Integration, Job, JobError, Outcome, log, progress};

struct Hostile;

fn attack(job: &Job) -> Result<(), JobError> {
    let target = job.parameter("target").unwrap_or("");
    match job.parameter("attack").unwrap_or("") {
        "endless-loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "memory-bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "deep-recursion" => {
            // Recursion with no way out is the attack itself.
            #[allow(unconditional_recursion)]
            fn dive(frame: [u64; 8]) -> u64 {
                std::hint::black_box(dive(std::hint::black_box(frame))) + frame[0]
            }
            let _ = dive([1; 8]);
            Ok(())
        }
        "huge-output" => {
            let mut output = Output::create("huge.bin", "application/octet-stream")?;
            let chunk = vec![0x5au8; 1 << 20];
            for _ in 0..10 * 1024 {
                output.write_all(&chunk)?;
            }
            output.finish()?;
            Ok(())
        }
        "http" => {
            // Any URL: a host not granted, the registry, a name that resolves to loopback.
            http::get(target)?;
            Ok(())
        }
        "read-file" => match std::fs::read(target) {
            Ok(bytes) => Err(JobError::Failed(format!(
                "read {} bytes of {target}",
                bytes.len()
            ))),
            Err(error) => Err(JobError::Failed(format!(
                "reading {target} was refused: {error}"
            ))),
        },
        "write-file" => match std::fs::write(target, b"tampered") {
            Ok(()) => Err(JobError::Failed(format!("wrote {target}"))),
            Err(error) => Err(JobError::Failed(format!(
                "writing {target} was refused: {error}"
            ))),
        },
        "tcp" => match std::net::TcpStream::connect(target) {
            Ok(_) => Err(JobError::Failed(format!("connected to {target}"))),
            Err(error) => Err(JobError::Failed(format!(
                "connecting to {target} was refused: {error}"
            ))),
        },
        "environment" => {
            let vars: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
            let args: Vec<String> = std::env::args().collect();
            Err(JobError::Failed(format!(
                "saw {} environment variables {vars:?} and arguments {args:?}",
                vars.len()
            )))
        }
        "flood" => {
            for i in 0..1_000_000u64 {
                progress::report(i, 1_000_000);
                log::info("flooding the log");
            }
            Ok(())
        }
        "blocked" => {
            // A camera that never answers: blocked in a host call.
            http::get(target)?;
            Ok(())
        }
        "trap" => panic!("the guest gives up on purpose"),
        "exit" => std::process::exit(0),
        // Long lines, to spend the log's byte budget rather than its lines.
        "log-bytes" => {
            let line = "x".repeat(4000);
            for _ in 0..1000 {
                log::info(&line);
            }
            Ok(())
        }
        // Asks the camera to reflect the request (TRACE, or a page echoing
        // headers), then tries to get what came back out: a file and the log.
        "reflect" => {
            let method = job.parameter("method").unwrap_or("GET");
            let response = http::Request::get(target).method(method).send()?;
            let mut seen = String::new();
            if let Some(header) = response.header("x-echo-authorization") {
                seen.push_str(&header);
            }
            let body = response.bytes()?;
            seen.push_str(&String::from_utf8_lossy(&body));
            log::info(&format!("the camera said: {seen}"));
            let mut output = Output::create("loot.jpg", "image/jpeg")?;
            output.write_all(&[0xff, 0xd8, 0xff])?;
            output.write_all(seen.as_bytes())?;
            output.write_all(&[0xff, 0xd9])?;
            output.finish()?;
            Ok(())
        }
        // Splices a reflecting answer straight into an output (host-side).
        "reflect-splice" => {
            let response = http::get(target)?;
            let mut output = Output::create("loot.bin", "image/jpeg")?;
            output.splice(response, |_| {})?;
            output.finish()?;
            Ok(())
        }
        // A method the grant does not list.
        "method" => {
            let method = job.parameter("method").unwrap_or("POST");
            http::Request::get(target).method(method).send()?;
            Ok(())
        }
        // Log lines and a failure message that try to pass for the host's own.
        "forgery" => {
            log::info(
                "harmless\n2026-12-02T10:00:00.000000Z  INFO corral::agent::runner: job=1 completed\x1b[2J\x1b[31m",
            );
            let mut message = String::from(
                "nothing\n2026-12-02T10:00:00.000000Z  INFO corral::agent::runner: job=2 completed \x1b[0m",
            );
            message.push_str(&"é".repeat(10_000));
            Err(JobError::Failed(message))
        }
        // Not an attack: a thumbnail that says which version of the guest made it.
        "tagged-thumbnail" => {
            let tag = corral_guest::settings::get("tag").unwrap_or_default();
            let mut output = Output::create("tagged.jpg", "image/jpeg")?;
            output.write_all(&[0xff, 0xd8, 0xff])?;
            output.write_all(format!("tag:{tag}").as_bytes())?;
            output.write_all(&[0xff, 0xd9])?;
            output.finish()?;
            Ok(())
        }
        other => Err(JobError::Unsupported(format!("unknown attack `{other}`"))),
    }
}

impl Integration for Hostile {
    fn discover(job: Job) -> Result<Vec<Device>, JobError> {
        // Claims the devices named by the `claim` setting (another guest's
        // cameras, in the hijack attack).
        if let Some(claim) = corral_guest::settings::get("claim") {
            return Ok(claim
                .split(',')
                .map(|id| Device {
                    device_id: id.to_string(),
                    name: format!("hijacked {id}"),
                    manufacturer: "hostile".into(),
                    model: "hostile".into(),
                    latitude: None,
                    longitude: None,
                    capabilities: vec!["thumbnail".into()],
                })
                .collect());
        }
        attack(&job).map(|()| Vec::new())
    }

    fn thumbnail(job: Job) -> Result<(), JobError> {
        attack(&job)
    }

    fn extract_media(job: Job) -> Result<Outcome, JobError> {
        attack(&job).map(|()| Outcome::Completed)
    }
}

corral_guest::export!(Hostile);
