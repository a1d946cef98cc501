//! The upload pipeline against a loopback server: interop with the Azure SDK's
//! reader, retries under faults, a lost lock, and a guest's output uploaded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::client::retry::RetryPolicy;
use corral::sink::{OutputSink, OutputSpec, SinkError};
use corral::upload::{UploadConfig, UploadSink};
use corral_envelope::REGION_LEN;
use corral_envelope::keys::WrapAlgorithm;
use corral_tests::blockstore::{BlockStore, Keep};
use sha2::{Digest, Sha256};

fn sink(store: &BlockStore) -> UploadSink {
    let config = UploadConfig {
        blocks_in_flight: 4,
        retry: RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            deadline: Duration::from_secs(60),
        },
    };
    UploadSink::new(Arc::new(store.uploads()), config)
}

/// Uploads `bytes` in chunks of `chunk` bytes; returns the file id.
async fn upload(sink: &UploadSink, bytes: &[u8], chunk: usize) -> Result<String, SinkError> {
    let spec = OutputSpec {
        name: "clip.ts".into(),
        content_type: "video/mp2t".into(),
    };
    let mut file = sink.create(&spec).await?;
    for part in bytes.chunks(chunk.max(1)) {
        file.write(Bytes::copy_from_slice(part)).await?;
    }
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    file.commit(bytes.len() as u64, &sha256).await
}

fn sample(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Decrypts a committed file with azure-storage-blob's reader.
fn azure_decrypt(file: &corral_tests::blockstore::CommittedFile, length: usize) -> Vec<u8> {
    let data = serde_json::to_string(&file.encryption_data).unwrap();
    corral_tests::interop::azure_decrypt(&file.ciphertext, &data, &file.private_jwk, length as u64)
}

/// What an open upload holds (and the sandbox charges to its job) grows with
/// what was written: a thumbnail's file holds about its bytes, not a 4 MiB
/// region and its blocks in flight; a recording's at most its region, and
/// its blocks in flight and their buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_upload_holds_what_was_written_to_it_not_whole_blocks() {
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Everything).await;
    let sink = sink(&store);
    assert_eq!(sink.buffer_bytes(), 0, "nothing is held before a write");
    let spec = OutputSpec {
        name: "thumb.jpg".into(),
        content_type: "image/jpeg".into(),
    };
    let mut small = sink.create(&spec).await.unwrap();
    small.write(Bytes::from(vec![7u8; 30_000])).await.unwrap();
    assert!(
        small.held_bytes() < 64 << 10,
        "a 30 kB file holds {}",
        small.held_bytes()
    );
    let mut large = sink.create(&spec).await.unwrap();
    for _ in 0..40 {
        large.write(Bytes::from(vec![9u8; 1 << 20])).await.unwrap();
        let most = (1 + 2 * 4) as u64 * (REGION_LEN as u64 + 28);
        assert!(large.held_bytes() <= most, "{}", large.held_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_region_edges_decrypt_with_the_azure_sdk() {
    let sizes = [
        0,
        1,
        REGION_LEN - 1,
        REGION_LEN,
        REGION_LEN + 1,
        9 * (1 << 20) + 123,
    ];
    for algorithm in [WrapAlgorithm::RsaOaep, WrapAlgorithm::A256Kw] {
        let store = BlockStore::start(algorithm, Keep::Everything).await;
        let sink = sink(&store);
        for (i, &size) in sizes.iter().enumerate() {
            let plaintext = sample(size, i as u8);
            let file_id = upload(&sink, &plaintext, 1 << 20).await.unwrap();
            let committed = store.committed(&file_id).expect("committed");
            assert_eq!(
                committed.ciphertext.len() as u64,
                corral_envelope::encrypted_len(size as u64)
            );
            assert!(
                committed.plaintext == plaintext,
                "our decryptor, {size} bytes, {algorithm:?}"
            );
            let azure = azure_decrypt(&committed, size);
            assert!(
                azure == plaintext,
                "azure-storage-blob, {size} bytes, {algorithm:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_write_sizes_make_the_same_regions() {
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Everything).await;
    let sink = sink(&store);
    let plaintext = sample(2 * REGION_LEN + 5000, 9);
    for chunk in [1, 4095, 777_777, 5 * REGION_LEN] {
        let file_id = upload(
            &sink,
            &plaintext[..if chunk == 1 { 70_000 } else { plaintext.len() }],
            chunk,
        )
        .await
        .unwrap();
        let committed = store.committed(&file_id).unwrap();
        let expected = if chunk == 1 {
            &plaintext[..70_000]
        } else {
            &plaintext[..]
        };
        assert!(committed.plaintext == expected, "chunks of {chunk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_block_uploads_are_retried_into_a_correct_file() {
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Everything).await;
    store.set_fault_rate(0.3);
    let plaintext = sample(20 * (1 << 20) + 17, 3);
    let file_id = upload(&sink(&store), &plaintext, 1 << 20).await.unwrap();
    assert!(
        store
            .stats()
            .faults
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "faults were injected"
    );
    assert!(store.committed(&file_id).unwrap().plaintext == plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_upload_and_commits_nothing() {
    let store = BlockStore::start(WrapAlgorithm::A256Kw, Keep::Everything).await;
    store.lose_lock();
    let error = upload(&sink(&store), &sample(10 * (1 << 20), 1), 1 << 20)
        .await
        .unwrap_err();
    assert!(error.0.contains("the lock is lost"), "{error}");
    assert!(error.0.contains("409"), "{error}");
    assert_eq!(store.committed_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_recording_is_uploaded_encrypted_and_decrypts_to_the_cameras_bytes() {
    use corral::guest::{JobEnv, JobOutcome};
    use corral::sandbox::progress;
    use corral_camera_sim::{SimConfig, recording};
    use corral_tests::{Harness, media_job, unix_millis};
    use time::macros::datetime;

    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let store = BlockStore::start(WrapAlgorithm::RsaOaep, Keep::Everything).await;
    let start = datetime!(2026-11-20 10:00 UTC);
    let job = media_job("m-up", "cam-0001", start, Duration::from_secs(20));
    // The same guest, the same job: only the sink differs from run-job's.
    let env = JobEnv {
        sink: Arc::new(sink(&store)),
        progress: progress::channel().0,
    };
    let report = harness.guest.run(&job, env).await;
    assert_eq!(
        report.outcome,
        JobOutcome::Completed,
        "{:?}",
        report.log_tail
    );
    let [file] = report.files.as_slice() else {
        panic!("one file expected: {:?}", report.files);
    };
    let committed = store
        .committed(&file.location)
        .expect("committed under its file id");
    let from = unix_millis(start);
    let expected = recording::recording(
        "cam-0001",
        harness.sim.config().bitrate_bps,
        from,
        from + 20_000,
    );
    assert_eq!(committed.name, file.name);
    assert!(
        committed.plaintext == expected,
        "the registry's plaintext is the camera's bytes"
    );
    assert_eq!(file.sha256, format!("{:x}", Sha256::digest(&expected)));
}
