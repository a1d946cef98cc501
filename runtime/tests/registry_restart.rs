//! `kill -9` of `corral registry serve` in the middle of an upload, then a
//! restart on the same data folder and port: what was committed stays, job
//! states stay, and the client's retries finish the work. Also the registry's
//! command line, as a script would use it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::client::{JobUploads, RegistryClient};
use corral::protocol::{CompletionState, FileKind};
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};

fn corral(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .output()
        .expect("corral runs");
    assert!(
        output.status.success(),
        "corral {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Starts the server; returns it and the address it printed first.
fn serve(data: &Path, listen: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["registry", "serve", "--data"])
        .arg(data)
        .args(["--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the registry starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("an address line");
    (child, line.trim().to_string())
}

fn block_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("blocks"))
        .map(|dirs| {
            dirs.flatten()
                .map(|dir| std::fs::read_dir(dir.path()).map_or(0, |files| files.count()))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_upload_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = serve(&data, "127.0.0.1:0");
    let url = format!("http://{addr}");
    let connection = dir.path().join("agent-1.json");
    let connection_arg = connection.to_str().unwrap();
    corral(&[
        "registry",
        "add-agent",
        "--data",
        data.to_str().unwrap(),
        "--name",
        "agent-1",
        "--url",
        &url,
        "--out",
        connection_arg,
    ]);
    let post = |args: &[&str]| {
        let mut all = vec![
            "registry",
            "post-job",
            "--data",
            data.to_str().unwrap(),
            "--agent",
            "agent-1",
        ];
        all.extend_from_slice(args);
        let id = corral(&all);
        assert_eq!(
            id.lines().count(),
            1,
            "post-job prints the id alone: {id:?}"
        );
        id.trim().to_string()
    };
    let done = post(&["--type", "thumbnail", "--device", "cam-1"]);
    let media = post(&[
        "--type",
        "mediarequest",
        "--device",
        "cam-1",
        "--start",
        "2026-11-20T10:00:00Z",
        "--end",
        "2026-11-20T10:05:00Z",
        "--param",
        "quality=high",
    ]);

    let file = ConnectionFile::load(&connection).unwrap();
    let retry = RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
    };
    let client = RegistryClient::from_connection_file(&file, "agent-1", None, None, retry).unwrap();

    // One job finished before the crash.
    let lock = client.lock(&done, Duration::from_secs(300)).await.unwrap();
    let jpeg = [&[0xff, 0xd8, 0xff][..], &[7; 1000], &[0xff, 0xd9]].concat();
    let uploads = JobUploads::new(
        client.clone(),
        &done,
        &lock.lock_token,
        FileKind::Thumbnail,
        Some("cam-1".into()),
        None,
    );
    let sink = UploadSink::new(
        Arc::new(uploads),
        UploadConfig {
            blocks_in_flight: 2,
            retry,
        },
    );
    let mut thumb = sink
        .create(&OutputSpec {
            name: "cam-1.jpg".into(),
            content_type: "image/jpeg".into(),
        })
        .await
        .unwrap();
    thumb.write(Bytes::from(jpeg.clone())).await.unwrap();
    thumb.commit(jpeg.len() as u64, "").await.unwrap();
    client
        .complete(&done, &lock.lock_token, CompletionState::Completed, None)
        .await
        .unwrap();

    // A 48 MiB upload, killed in the middle.
    let lock = client.lock(&media, Duration::from_secs(300)).await.unwrap();
    let bytes: Arc<Vec<u8>> = Arc::new((0..48u32 << 20).map(|i| (i % 253) as u8).collect());
    let uploads = JobUploads::new(
        client.clone(),
        &media,
        &lock.lock_token,
        FileKind::Media,
        Some("cam-1".into()),
        None,
    );
    let sink = UploadSink::new(
        Arc::new(uploads),
        UploadConfig {
            blocks_in_flight: 2,
            retry,
        },
    );
    let writer_bytes = bytes.clone();
    let upload = tokio::spawn(async move {
        let mut file = sink
            .create(&OutputSpec {
                name: "clip.ts".into(),
                content_type: "video/mp2t".into(),
            })
            .await?;
        for chunk in writer_bytes.chunks(1 << 20) {
            file.write(Bytes::copy_from_slice(chunk)).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        file.commit(writer_bytes.len() as u64, "").await
    });
    while block_files(&data) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let (mut server, _) = serve(&data, &addr);

    let file_id = upload
        .await
        .unwrap()
        .expect("the upload finishes through retries");
    client
        .complete(&media, &lock.lock_token, CompletionState::Completed, None)
        .await
        .unwrap();

    let jobs: serde_json::Value = serde_json::from_str(&corral(&[
        "registry",
        "jobs",
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let find = |id: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|job| job["jobId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(find(&done)["state"], "Completed");
    assert_eq!(find(&done)["files"][0]["committed"], true);
    let media_json = find(&media);
    assert_eq!(media_json["state"], "Completed");
    assert_eq!(media_json["type"], "mediarequest");
    assert_eq!(media_json["parameters"]["quality"], "high");
    assert_eq!(media_json["files"][0]["length"], bytes.len());
    assert_eq!(media_json["files"][0]["kind"], "media");

    let out = dir.path().join("clip.ts");
    corral(&[
        "registry",
        "file",
        "--data",
        data.to_str().unwrap(),
        "--file",
        &file_id,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&out).unwrap() == *bytes,
        "the committed file is whole and correct"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
