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
