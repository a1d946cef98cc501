//! `corral registry` for people: what it refuses, what it says, what `jobs`
//! shows, where `file` writes. The real binary on a real data folder, with the
//! registry serving it on loopback where an agent's side is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::client::{JobUploads, RegistryClient};
use corral::protocol::{CompletionState, FileKind};
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};
use corral_registry::{Registry, RegistryConfig, RunningRegistry};

use super::support::{arg, corral, corral_ok, corral_refused, first_file_id, registry_with_agent};

const QUICK: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(10),
    cap: Duration::from_millis(50),
    deadline: Duration::from_secs(5),
};

async fn serve(data: &Path) -> RunningRegistry {
    Registry::open(data, RegistryConfig::default())
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A registry serving a data folder in `dir`, with agent-1 and its client.
async fn serving_with_agent(dir: &Path) -> (RunningRegistry, PathBuf, RegistryClient) {
    let data = dir.join("reg");
    let running = serve(&data).await;
    let (_, connection) = registry_with_agent(dir, &running.base_url());
    (running, data, client(&connection))
}

fn client(connection: &Path) -> RegistryClient {
    let file = ConnectionFile::load(connection).unwrap();
    RegistryClient::from_connection_file(&file, "agent-1", None, None, QUICK).unwrap()
}

fn post(data: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "registry",
        "post-job",
        "--data",
        arg(data),
        "--agent",
        "agent-1",
    ];
    all.extend_from_slice(args);
    corral_ok(&all).trim().to_string()
}

/// Locks `job`, uploads `bytes` as its thumbnail `name`, completes it.
async fn complete_with_file(client: &RegistryClient, job: &str, name: &str, bytes: &[u8]) {
    let lock = client.lock(job, Duration::from_secs(60)).await.unwrap();
    let uploads = JobUploads::new(
        client.clone(),
        job,
        &lock.lock_token,
        FileKind::Thumbnail,
        Some("cam-0001".into()),
        None,
    );
    let config = UploadConfig {
        blocks_in_flight: 1,
        retry: QUICK,
    };
    let sink = UploadSink::new(Arc::new(uploads), config);
    let spec = OutputSpec {
        name: name.into(),
        content_type: "image/jpeg".into(),
    };
    let mut file = sink.create(&spec).await.unwrap();
    file.write(Bytes::copy_from_slice(bytes)).await.unwrap();
    file.commit(bytes.len() as u64, "").await.unwrap();
    client
        .complete(job, &lock.lock_token, CompletionState::Completed, None)
        .await
        .unwrap();
}

fn jpeg(len: usize) -> Vec<u8> {
    [&[0xff, 0xd8, 0xff][..], &vec![7; len - 5], &[0xff, 0xd9]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_agent_replaces_an_agent_only_with_force_and_the_old_file_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reg");
    let running = serve(&data).await;
    let url = running.base_url();
    let first = dir.path().join("first.json");
    let data_arg = arg(&data);
    let args = |out: &Path| -> Vec<String> {
        let args = [
            "registry",
            "add-agent",
            "--data",
            data_arg,
            "--name",
            "agent-1",
            "--url",
        ];
        let mut args: Vec<String> = args.map(str::to_string).to_vec();
        args.extend([url.clone(), "--out".into(), arg(out).to_string()]);
        args
    };
    let run = |args: Vec<String>| corral(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let first_run = run(args(&first));
    assert!(first_run.success, "{}", first_run.stderr);
    client(&first)
        .check(&[])
        .await
        .expect("the first file works");

    let second = dir.path().join("second.json");
    let refused_run = run(args(&second));
    assert!(!refused_run.success, "a second add-agent must be refused");
    let refused = refused_run.stderr;
    assert!(refused.contains("agent-1 already exists"), "{refused}");
    assert!(refused.contains("--force"), "{refused}");
    assert!(
        refused.contains("connection file stops working"),
        "{refused}"
    );
    assert!(!second.exists(), "nothing written when refused");
    client(&first)
        .check(&[])
        .await
        .expect("the first file still works");

    let mut forced = args(&second);
    forced.push("--force".into());
    let forced = run(forced);
    assert!(forced.success, "{}", forced.stderr);
    assert!(forced.stderr.contains("replaced"), "{}", forced.stderr);
    client(&second)
        .check(&[])
        .await
        .expect("the new file works");
    let old = client(&first).check(&[]).await;
    assert!(old.is_err(), "the replaced file no longer gets a token");
}

#[test]
fn serve_and_add_agent_say_when_they_create_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reg");
    let out = dir.path().join("a.json");
    let add = |name: &str| {
        corral(&[
            "registry",
            "add-agent",
            "--data",
            arg(&data),
            "--name",
            name,
            "--url",
            "http://127.0.0.1:1",
            "--out",
            arg(&out),
        ])
    };
    let first = add("agent-1");
    assert!(first.success, "{}", first.stderr);
    assert!(
        first.stderr.contains("creating a new registry in"),
        "{}",
        first.stderr
    );
    let second = add("agent-2");
    assert!(second.success, "{}", second.stderr);
    assert!(!second.stderr.contains("creating"), "{}", second.stderr);
}

#[test]
fn post_job_refuses_an_agent_the_registry_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = registry_with_agent(dir.path(), "http://127.0.0.1:1");
    let refused = corral_refused(&[
        "registry",
        "post-job",
        "--data",
        arg(&data),
        "--type",
        "thumbnail",
        "--agent",
        "agent-2",
        "--device",
        "cam-0001",
    ]);
    assert!(
        refused.contains("--agent agent-2: no such agent"),
        "{refused}"
    );
    assert!(refused.contains("its agents: agent-1"), "{refused}");
    assert!(refused.contains("corral registry add-agent"), "{refused}");
    let listed = corral_ok(&["registry", "jobs", "--data", arg(&data), "--json"]);
    assert_eq!(listed.trim(), "[]", "no job was posted");
}

#[test]
fn commands_that_read_a_registry_refuse_a_folder_that_holds_none() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = registry_with_agent(dir.path(), "http://127.0.0.1:1");
    let typo = dir.path().join("regg");
    let typo_arg = arg(&typo);
    for args in [
        vec!["registry", "jobs", "--data", typo_arg],
        vec![
            "registry",
            "post-job",
            "--data",
            typo_arg,
            "--type",
            "discovery",
            "--agent",
            "agent-1",
        ],
        vec![
            "registry", "file", "--data", typo_arg, "--file", "f", "--out", "-",
        ],
        vec!["registry", "cancel-job", "--data", typo_arg, "--job", "j"],
    ] {
        let refused = corral_refused(&args);
        assert!(refused.contains(&format!("--data {typo_arg}")), "{refused}");
        assert!(refused.contains("holds no registry"), "{refused}");
        assert!(refused.contains("corral registry serve"), "{refused}");
        assert!(refused.contains("corral registry add-agent"), "{refused}");
        assert!(!typo.exists(), "{args:?} created {typo_arg}");
    }
    assert!(data.join("registry.sqlite3").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_shows_agent_message_file_ids_and_human_sizes_in_aligned_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (_running, data, client) = serving_with_agent(dir.path()).await;
    let done = post(&data, &["--type", "thumbnail", "--device", "cam-0001"]);
    let cancelled = post(&data, &["--type", "thumbnail", "--device", "cam-0002"]);
    let waiting = post(&data, &["--type", "discovery"]);
    complete_with_file(&client, &done, "cam-0001.jpg", &jpeg(3000)).await;
    // An operator's cancel of a job an agent holds: the agent loses its lock.
    let lock = client
        .lock(&cancelled, Duration::from_secs(60))
        .await
        .unwrap();
    corral_ok(&[
        "registry",
        "cancel-job",
        "--data",
        arg(&data),
        "--job",
        &cancelled,
        "--reason",
        "camera removed",
    ]);
    let renewed = client
        .renew(&cancelled, &lock.lock_token, Duration::from_secs(60))
        .await;
    assert!(renewed.is_err(), "the cancelled job's lock is gone");
    let again = corral_refused(&[
        "registry",
        "cancel-job",
        "--data",
        arg(&data),
        "--job",
        &cancelled,
    ]);
    assert!(again.contains("Cancelled"), "{again}");

    let table = corral_ok(&["registry", "jobs", "--data", arg(&data)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header = lines[0];
    for column in [
        "job", "type", "agent", "device", "state", "progress", "files", "message",
    ] {
        assert!(
            header.split_whitespace().any(|word| word == column),
            "{header}"
        );
    }
    let row = |id: &str| *lines.iter().find(|line| line.starts_with(id)).unwrap();
    let file_id = first_file_id(&data, &done);
    let done_row = row(&done);
    assert!(done_row.contains("agent-1"), "{table}");
    assert!(done_row.contains("Completed"), "{table}");
    assert!(
        done_row.contains(&format!("{file_id} cam-0001.jpg (2.9 KiB)")),
        "{table}"
    );
    let cancelled_row = row(&cancelled);
    assert!(cancelled_row.contains("Cancelled"), "{table}");
    assert!(cancelled_row.ends_with("camera removed"), "{table}");
    assert!(row(&waiting).contains("Available"), "{table}");
    // Aligned: every column starts where its header does.
    for column in ["agent", "state", "files", "message"] {
        let at = header.find(column).unwrap();
        for line in &lines[1..] {
            let before = &line[..at];
            assert!(
                before.ends_with("  ") || before.ends_with(' '),
                "column {column} not aligned:\n{table}"
            );
            assert_ne!(
                &line[at..at + 1],
                " ",
                "column {column} not aligned:\n{table}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_writes_into_a_folder_under_its_name_and_to_stdout_for_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let (_running, data, client) = serving_with_agent(dir.path()).await;
    let job = post(&data, &["--type", "thumbnail", "--device", "cam-0001"]);
    let bytes = jpeg(1000);
    complete_with_file(&client, &job, "cam-0001.jpg", &bytes).await;
    let file_id = first_file_id(&data, &job);
    let file = |out: &str| {
        corral(&[
            "registry",
            "file",
            "--data",
            arg(&data),
            "--file",
            &file_id,
            "--out",
            out,
        ])
    };

    let folder = dir.path().join("out");
    std::fs::create_dir(&folder).unwrap();
    assert!(file(arg(&folder)).success);
    assert_eq!(std::fs::read(folder.join("cam-0001.jpg")).unwrap(), bytes);

    let new_folder = format!("{}/", dir.path().join("new").display());
    assert!(file(&new_folder).success);
    assert_eq!(
        std::fs::read(dir.path().join("new/cam-0001.jpg")).unwrap(),
        bytes
    );

    let output = std::process::Command::new(super::support::CORRAL)
        .args(["registry", "file", "--data", arg(&data), "--file"])
        .args([&file_id, "--out", "-"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout, bytes, "the file on stdout");
    assert!(!dir.path().join("-").exists(), "no file named -");
}
