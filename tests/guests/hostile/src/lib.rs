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
        // Accounting: each tries to make the host spend what is not its own.
        "bind" => match std::net::TcpListener::bind(target) {
            Ok(_) => Err(JobError::Failed(format!("bound {target}"))),
            Err(error) => Err(JobError::Failed(format!(
                "binding {target} was refused: {error}"
            ))),
        },
        "sockets" => {
            let mut held = Vec::new();
            for i in 0..count(job, 15_000) {
                match std::net::TcpStream::connect(target) {
                    Ok(stream) => held.push(stream),
                    Err(error) => {
                        return Err(JobError::Failed(format!("socket {i}: {error}")));
                    }
                }
            }
            Err(JobError::Failed(format!("held {} sockets", held.len())))
        }
        "requests" => accounting::requests(target, count(job, 8_000)),
        "headers" => accounting::header_maps(count(job, 16_000), 100_000),
        "handles" => accounting::header_maps(count(job, 1_000_000), 0),
        "outputs" => {
            let mut open = Vec::new();
            let chunk = vec![0x42u8; 64 << 10];
            for i in 0..count(job, 1_024) {
                let mut output =
                    Output::create(&format!("open-{i}.bin"), "application/octet-stream")
                        .map_err(|error| JobError::Failed(format!("output {i}: {error:?}")))?;
                for _ in 0..16 {
                    output.write_all(&chunk)?;
                }
                open.push(output);
            }
            Err(JobError::Failed(format!("held {} outputs", open.len())))
        }
        // Writes 1 MiB (`chunk` KiB) to each of `count` outputs, finishing none.
        "outputs-big" => {
            let mut open = Vec::new();
            let chunk = vec![0x42u8; 1 << 20];
            for i in 0..count(job, 1_024) {
                let mut output =
                    Output::create(&format!("big-{i}.bin"), "application/octet-stream")
                        .map_err(|error| JobError::Failed(format!("output {i}: {error:?}")))?;
                output
                    .write_all(&chunk)
                    .map_err(|error| JobError::Failed(format!("output {i}: {error}")))?;
                open.push(output);
            }
            Err(JobError::Failed(format!("held {} outputs", open.len())))
        }
        "bodies" => accounting::unsent_bodies(count(job, 4_096)),
        "header-huge" => accounting::header_maps(1, 1 << 20),
        "listings" => {
            let mut open = Vec::new();
            for i in 0..count(job, 1_000) {
                match std::fs::read_dir(target) {
                    Ok(listing) => open.push(listing),
                    Err(error) => {
                        return Err(JobError::Failed(format!("listing {i}: {error}")));
                    }
                }
            }
            Err(JobError::Failed(format!("held {} listings", open.len())))
        }
        // Reads a reflecting page in `Range` slices shorter than the token,
        // each of which alone holds no whole credential.
        "reflect-range" => {
            let mut seen = Vec::new();
            for from in (0..2_000).step_by(6) {
                let response = http::Request::get(target)
                    .header("range", &format!("bytes={from}-{}", from + 5))
                    .send()?;
                let slice = response.bytes()?;
                if slice.is_empty() {
                    break;
                }
                seen.extend_from_slice(&slice);
            }
            log::info(&format!(
                "the camera said: {}",
                String::from_utf8_lossy(&seen)
            ));
            Err(JobError::Failed(format!(
                "read {} bytes in slices",
                seen.len()
            )))
        }
        "random" => loop {
            std::hint::black_box(accounting::random_bytes(count(job, 8 << 20) as u64));
        },
        "random-huge" => {
            accounting::random_bytes(u64::MAX);
            Ok(())
        }
        other => Err(JobError::Unsupported(format!("unknown attack `{other}`"))),
    }
}

/// The job's `count` parameter, or `default`.
fn count(job: &Job, default: usize) -> usize {
    job.parameter("count")
        .and_then(|count| count.parse().ok())
        .unwrap_or(default)
}

/// Attacks on the host's accounting, through the raw WASI imports.
mod accounting {
    use corral_guest::JobError;
    use corral_guest::bindings::wasi::http::outgoing_handler;
    use corral_guest::bindings::wasi::http::types::{Fields, OutgoingRequest, Scheme};

    /// `count` requests at once to `authority` (`host:port`), all held; the
    /// job then reports how the last one ended.
    pub fn requests(authority: &str, count: usize) -> Result<(), JobError> {
        let mut pending = Vec::new();
        for i in 0..count {
            let request = OutgoingRequest::new(Fields::new());
            let _ = request.set_scheme(Some(&Scheme::Http));
            let _ = request.set_authority(Some(authority));
            let _ = request.set_path_with_query(Some("/"));
            match outgoing_handler::handle(request, None) {
                Ok(future) => pending.push(future),
                Err(code) => return Err(JobError::Failed(format!("request {i}: {code:?}"))),
            }
        }
        let last = pending
            .last()
            .ok_or(JobError::Failed("no request".into()))?;
        last.subscribe().block();
        match last.get() {
            Some(Ok(Err(code))) => Err(JobError::Failed(format!("request {count}: {code:?}"))),
            other => Err(JobError::Failed(format!(
                "request {count} ended: {}",
                other.map_or("pending", |_| "answered")
            ))),
        }
    }

    /// `count` requests each with a body written as full as the host lets
    /// it be, never sent; all held.
    pub fn unsent_bodies(count: usize) -> Result<(), JobError> {
        let mut held = Vec::new();
        for i in 0..count {
            let request = OutgoingRequest::new(Fields::new());
            let body = request
                .body()
                .map_err(|()| JobError::Failed(format!("body {i}: refused")))?;
            let stream = body
                .write()
                .map_err(|()| JobError::Failed(format!("stream {i}: refused")))?;
            // As much as the host will queue, in as many writes as it takes.
            for _ in 0..4 {
                match stream.check_write() {
                    Ok(0) => break,
                    Ok(room) => {
                        let chunk = vec![0x55u8; room.min(8 << 20) as usize];
                        if let Err(error) = stream.write(&chunk) {
                            return Err(JobError::Failed(format!("body {i}: {error:?}")));
                        }
                    }
                    Err(error) => return Err(JobError::Failed(format!("body {i}: {error:?}"))),
                }
            }
            held.push((request, body, stream));
        }
        Err(JobError::Failed(format!(
            "held {} unsent bodies",
            held.len()
        )))
    }

    /// `count` header maps of one `bytes`-long value each, all held.
    pub fn header_maps(count: usize, bytes: usize) -> Result<(), JobError> {
        let value = vec![b'a'; bytes];
        let mut held = Vec::new();
        for i in 0..count {
            let fields = Fields::new();
            if bytes > 0 {
                fields
                    .append("x-padding", &value)
                    .map_err(|error| JobError::Failed(format!("map {i}: {error:?}")))?;
            }
            held.push(fields);
        }
        Err(JobError::Failed(format!("held {} header maps", held.len())))
    }

    #[link(wasm_import_module = "wasi:random/random@0.2.0")]
    unsafe extern "C" {
        #[link_name = "get-random-bytes"]
        fn get_random_bytes(len: i64, ret: *mut [u32; 2]);
    }

    /// `get-random-bytes(len)`, called directly (the lengths libc asks for
    /// are small).
    pub fn random_bytes(len: u64) -> usize {
        let mut ret = [0u32; 2];
        // SAFETY: the canonical ABI writes a (pointer, length) pair of a list
        // it allocated with this module's realloc.
        unsafe { get_random_bytes(len as i64, &mut ret) };
        let (ptr, len) = (ret[0] as usize as *mut u8, ret[1] as usize);
        // SAFETY: that list is ours to free.
        drop(unsafe { Vec::from_raw_parts(ptr, len, len) });
        len
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
