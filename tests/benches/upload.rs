//! `cargo bench -p corral-tests --bench upload`
//!
//! The whole upload pipeline on this machine: a generated stream written in
//! 1 MiB chunks → 4 MiB regions → AES-256-GCM → 4 blocks in flight over HTTP to
//! a loopback server that counts and discards → commit. 256 MiB per iteration.

use std::sync::Arc;

use bytes::Bytes;
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};
use corral_envelope::keys::WrapAlgorithm;
use corral_tests::blockstore::{BlockStore, Keep};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FILE_LEN: usize = 256 << 20;
const CHUNK: usize = 1 << 20;

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let store = tokio.block_on(BlockStore::start(WrapAlgorithm::A256Kw, Keep::Nothing));
    let sink = UploadSink::new(Arc::new(store.uploads()), UploadConfig::default());
    let chunk = Bytes::from(vec![0x47u8; CHUNK]);
    let spec = OutputSpec {
        name: "bench.ts".into(),
        content_type: "video/mp2t".into(),
    };

    let mut group = c.benchmark_group("upload_pipeline");
    group.throughput(Throughput::Bytes(FILE_LEN as u64));
    group.sample_size(10);
    group.bench_function("256MiB_4_in_flight", |b| {
        b.to_async(&tokio).iter(|| async {
            let mut file = sink.create(&spec).await.expect("initialize");
            for _ in 0..FILE_LEN / CHUNK {
                file.write(chunk.clone()).await.expect("write");
            }
            file.commit(FILE_LEN as u64, "").await.expect("commit");
        });
    });
    group.finish();
}

criterion_group!(upload, benches);
criterion_main!(upload);
