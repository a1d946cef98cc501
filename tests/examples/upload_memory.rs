//! `cargo run --release -p corral-tests --example upload_memory [GiB]`
//!
//! Uploads a generated stream (1 GiB by default) through the whole pipeline to
//! a loopback server that discards it, and prints the peak resident memory
//! (VmHWM) of the uploading process above the baseline taken just before the
//! upload. The server runs in a child process (this program with `--serve`),
//! so its buffers are not counted as the agent's.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};
use corral_envelope::keys::WrapAlgorithm;
use corral_tests::blockstore::{BlockStore, Keep};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Serves until stdin closes, printing the base URL first.
async fn serve() {
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Nothing).await;
    println!("{}", store.base_url());
    let mut stdin = tokio::io::stdin();
    let _ = tokio::io::AsyncReadExt::read(&mut stdin, &mut [0u8; 1]).await;
}

/// Starts the server process and reads its URL.
fn start_server() -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server process starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("server prints its URL");
    (child, line.trim().to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--serve") {
        return serve().await;
    }
    let gib: u64 = arg.and_then(|arg| arg.parse().ok()).unwrap_or(1);
    let (mut server, url) = start_server();
    let uploads = corral_tests::blockstore::uploads_for(&url);
    let sink = UploadSink::new(Arc::new(uploads), UploadConfig::default());
    let spec = OutputSpec {
        name: "big.ts".into(),
        content_type: "video/mp2t".into(),
    };
    let chunk = Bytes::from(vec![0x47u8; 1 << 20]);
    let baseline = status_kib("VmRSS:");
    let started = Instant::now();
    let mut file = sink.create(&spec).await.expect("initialize");
    for _ in 0..gib * 1024 {
        file.write(chunk.clone()).await.expect("write");
    }
    file.commit(gib << 30, "").await.expect("commit");
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:");
    println!(
        "uploaded {gib} GiB in {:.2} s ({:.2} GB/s); peak RSS {} MiB, {} MiB above the baseline of {} MiB",
        elapsed.as_secs_f64(),
        (gib << 30) as f64 / elapsed.as_secs_f64() / 1e9,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        baseline / 1024
    );
    drop(server.stdin.take());
    let _ = server.wait();
}
