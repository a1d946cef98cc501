//! A recording of many GiB end to end, beside a plain copy over the same
//! path in the same run.
//!
//! - The media job: `corral agent` (a process) runs http-vms, which splices
//!   camera-sim's recording into the upload pipeline (4 MiB regions,
//!   AES-256-GCM, 4 blocks in flight); the registry decrypts and checks
//!   every block before it accepts the commit, and the job completes.
//! - The plain copy: the same bytes from the same camera-sim, read by a
//!   plain Rust HTTP client (this process) and sent as 4 MiB PUTs, 4 in
//!   flight, to the same registry as blocks of a file, which it stores; no
//!   wasm, no encryption, and no commit (so no check).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use corral::client::RegistryClient;
use corral::client::connection::ConnectionFile;
use corral::client::retry::RetryPolicy;
use corral::protocol::{FileKind, InitializeUpload};
use corral_registry::NewJob;
use http_body_util::{BodyExt, Empty};

use super::site::{Site, SiteConfig, status_kib};
use super::{Figure, mb_per_sec};

/// camera-sim's default bitrate: 4 Mbit/s, 500,000 bytes a second.
const BYTES_PER_SEC: u64 = 500_000;
/// The device recorded.
const DEVICE: &str = "cam-0001";
/// Blocks of the copy, as the agent's.
const BLOCK: usize = 4 << 20;
/// Blocks in flight, as the agent's default.
const IN_FLIGHT: usize = 4;

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Media {
    /// The recording's length.
    pub bytes: u64,
    /// The media job, posted → Completed.
    pub job: Duration,
    /// Posted → the guest had moved every byte (the rest is the commit
    /// and the registry's check), when seen.
    pub streamed: Option<Duration>,
    /// The plain copy.
    pub copy: Duration,
    /// The agent's RSS before the job and its peak, in KiB.
    pub agent_rss_kib: (u64, u64),
}

impl Media {
    /// The job's throughput as a share of the plain copy's.
    pub fn share_of_copy(&self) -> f64 {
        self.copy.as_secs_f64() / self.job.as_secs_f64()
    }
}

/// Measures a recording of `gib` GiB: the plain copy, then the job.
pub async fn measure(gib: u64) -> Media {
    let site = Site::start(SiteConfig {
        devices: 1,
        agent_max_jobs: Some(2),
    })
    .await;
    let bytes = gib << 30;
    let start = time::macros::datetime!(2026-11-20 00:00 UTC);
    let end = start + Duration::from_millis(bytes * 1000 / BYTES_PER_SEC);
    let range = Range {
        start: corral::protocol::format_rfc3339(start),
        end: corral::protocol::format_rfc3339(end),
        start_ms: (start.unix_timestamp_nanos() / 1_000_000) as i64,
        end_ms: (end.unix_timestamp_nanos() / 1_000_000) as i64,
    };
    let expected =
        corral_camera_sim::recording::byte_range(BYTES_PER_SEC * 8, range.start_ms, range.end_ms);
    let copy = plain_copy(&site, &range, expected.end - expected.start).await;

    let agent = site.pid("agent");
    let baseline = status_kib(agent, "VmRSS:");
    let posted = Instant::now();
    let id = site.post(&[range.job(&site.agent_id)]).await.remove(0);
    let mut streamed = None;
    site.wait_all_final(Duration::from_millis(20), |open| {
        let moved_all = open
            .iter()
            .any(|job| job.task_total > 0 && job.task_progress == job.task_total);
        if streamed.is_none() && moved_all {
            streamed = Some(posted.elapsed());
        }
    })
    .await;
    let job = posted.elapsed();
    let peak = status_kib(agent, "VmHWM:");
    let done = site.job(&id).await;
    assert_eq!(done.state, "Completed", "{done:?}");
    let length = site
        .store()
        .transaction(move |tx| corral_registry::store::files_of(tx, &id))
        .await
        .expect("files read")
        .iter()
        .filter(|file| file.committed)
        .map(|file| file.content_length.unwrap_or(0) as u64)
        .sum::<u64>();
    assert_eq!(
        length,
        expected.end - expected.start,
        "the recording's length"
    );
    Media {
        bytes: length,
        job,
        streamed,
        copy,
        agent_rss_kib: (baseline, peak),
    }
}

/// The recording's time range, as the job and the camera take it.
struct Range {
    start: String,
    end: String,
    start_ms: i64,
    end_ms: i64,
}

impl Range {
    fn job(&self, agent: &str) -> NewJob {
        NewJob {
            start_time_utc: Some(self.start.clone()),
            end_time_utc: Some(self.end.clone()),
            ..crate::registry::new_job("mediarequest", agent, Some(DEVICE))
        }
    }
}

/// The plain copy of the recording (`length` bytes) under an agent identity
/// of its own (so the agent process never takes its job); how long it took.
async fn plain_copy(site: &Site, range: &Range, length: u64) -> Duration {
    let copier = "copier";
    let connection = site.add_agent(copier);
    let client = RegistryClient::from_connection_file(
        &ConnectionFile::load(&connection).expect("connection file"),
        copier,
        None,
        None,
        RetryPolicy::default(),
    )
    .expect("client");
    let id = site.post(&[range.job(copier)]).await.remove(0);
    let lock = client
        .lock(&id, Duration::from_secs(3600))
        .await
        .expect("lock");
    let file = client
        .initialize(
            &id,
            FileKind::Media,
            &InitializeUpload {
                lock_token: &lock.lock_token,
                file_name: "copy.ts",
                content_type: "video/mp2t",
                device_id: Some(DEVICE),
                start_time_utc: Some(&range.start),
                end_time_utc: Some(&range.end),
            },
        )
        .await
        .expect("initialize");
    let started = Instant::now();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri = format!(
        "{}/vms/v2/cameras/{DEVICE}/archive?from={}&to={}",
        site.sim_url, range.start_ms, range.end_ms
    );
    let request = hyper::Request::get(uri)
        .header("authorization", "Basic b3BlcmF0b3I6c2ltLXNlY3JldA==") // operator:sim-secret
        .body(Empty::new())
        .expect("request");
    let mut body = http
        .request(request)
        .await
        .expect("the recording")
        .into_body();
    let mut puts = tokio::task::JoinSet::new();
    let mut block = BytesMut::with_capacity(BLOCK);
    let (mut index, mut moved) = (0u64, 0u64);
    let mut send = |block: Bytes, puts: &mut tokio::task::JoinSet<()>| {
        let (client, file_id, block_id) = (
            client.clone(),
            file.file_id.clone(),
            corral_envelope::block_id(index),
        );
        index += 1;
        puts.spawn(async move {
            client
                .put_block(&file_id, &block_id, block)
                .await
                .expect("block stored");
        });
    };
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("the recording streams").into_data() else {
            continue;
        };
        moved += data.len() as u64;
        block.extend_from_slice(&data);
        while block.len() >= BLOCK {
            let full = block.split_to(BLOCK).freeze();
            send(full, &mut puts);
            while puts.len() >= IN_FLIGHT {
                puts.join_next().await.expect("a put").expect("put task");
            }
        }
    }
    if !block.is_empty() {
        send(block.freeze(), &mut puts);
    }
    while let Some(put) = puts.join_next().await {
        put.expect("put task");
    }
    let elapsed = started.elapsed();
    assert_eq!(moved, length, "the copy moved the whole recording");
    client
        .cancel(&id, &lock.lock_token, "the plain copy is not committed")
        .await
        .expect("cancel");
    elapsed
}

/// The goals table's rows for `media`.
pub fn figures(media: &Media) -> Vec<Figure> {
    let gib = media.bytes as f64 / (1u64 << 30) as f64;
    let (baseline, peak) = media.agent_rss_kib;
    let mut rows = vec![
        Figure::checked(
            &format!(
                "{gib:.0} GiB recording end to end (job posted → Completed, the registry's check included) as a share of a plain copy over the same path"
            ),
            format!(
                "{:.0}% ({} against {})",
                media.share_of_copy() * 100.0,
                mb_per_sec(media.bytes, media.job),
                mb_per_sec(media.bytes, media.copy)
            ),
            "≥ 60%",
            media.share_of_copy() >= 0.6,
        ),
        Figure::shown(
            "the agent's peak RSS during it (above its baseline)",
            format!(
                "{} MiB ({} MiB)",
                peak / 1024,
                peak.saturating_sub(baseline) / 1024
            ),
        ),
    ];
    if let Some(streamed) = media.streamed {
        rows.push(Figure::shown(
            "the guest had moved every byte after (the rest: the commit and its check)",
            format!(
                "{:.2} s of {:.2} s",
                streamed.as_secs_f64(),
                media.job.as_secs_f64()
            ),
        ));
    }
    rows
}
