//! `cargo bench -p corral-envelope --bench encrypt`
//!
//! AES-256-GCM over one 4 MiB region on one core: aws-lc-rs (what corral
//! uses) beside the `aes-gcm` crate (the design card's first choice).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use corral_envelope::{FileEncryptor, NONCE_LEN, REGION_LEN};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("encrypt_region");
    group.throughput(Throughput::Bytes(REGION_LEN as u64));

    let encryptor = FileEncryptor::new();
    let mut block = vec![0x5a; NONCE_LEN + REGION_LEN];
    group.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            block.truncate(NONCE_LEN + REGION_LEN);
            encryptor.seal(7, &mut block);
        });
    });

    let cipher = aes_gcm::Aes256Gcm::new(&[3u8; 32].into());
    let mut region = vec![0x5a; REGION_LEN];
    group.bench_function("aes-gcm", |b| {
        b.iter(|| {
            let nonce = aes_gcm::Nonce::from_slice(&[0u8; 12]);
            let tag = cipher
                .encrypt_in_place_detached(nonce, b"", &mut region)
                .expect("encrypts");
            std::hint::black_box(tag);
        });
    });
    group.finish();
}

criterion_group!(encrypt, benches);
criterion_main!(encrypt);
